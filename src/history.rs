//! Conversation history as the tenant and admin APIs show it: contacts, conversations and messages of both
//! directions, each message as structured JSON, with the revoke / edit / reaction semantics folded onto the
//! message they are about. Pure functions over stored rows ([`crate::store::history`] reads them).
//!
//! A message's `content` is the object of its type exactly as WhatsApp's Cloud API spells it (`{"body": …}` for
//! `text`, `{"id", "mime_type", "caption", …}` for `image`, the `interactive` object, the `template` object of a
//! send, …): the customer's from the webhook, the business's from the send request. `text` is the readable text
//! (body or caption; the latest edit's when edited). A message the customer deleted shows `deleted: true`, its
//! time, and no content or text any more; an edited one its `edits` (each with its time and new content, oldest
//! first); a message reacted to its `reactions` (latest per side; an empty emoji removes one).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::meta::webhook::{self, Content};
use crate::store::history::{ContactRow, ConversationRow, Filter, MessageRow, Related};
use crate::store::{rfc3339, Store};
use crate::translate::window::{window, Window};

/// The object of a message's type in its raw JSON (`raw[type]`), `null` when it has none.
pub fn content_of(msg_type: &str, raw: &Value) -> Value {
    raw.get(msg_type).cloned().unwrap_or(Value::Null)
}

/// The message a reaction, an edit or a revoke is about.
pub fn target_of(c: &Content) -> Option<&str> {
    match c {
        Content::Reaction { message_id, .. } => Some(message_id),
        Content::Edit { original_message_id, .. } | Content::Revoke { original_message_id } => {
            Some(original_message_id)
        }
        _ => None,
    }
}

/// The readable text of a type's content object (body, caption, the chosen reply's title, ...).
pub fn text_of(msg_type: &str, content: &Value) -> Option<String> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    match msg_type {
        "text" => content.get("body").and_then(s),
        "image" | "video" | "document" => content.get("caption").and_then(s),
        "button" => content.get("text").and_then(s),
        "reaction" => content.get("emoji").and_then(s),
        "interactive" => content
            .get("button_reply")
            .or_else(|| content.get("list_reply"))
            .and_then(|r| r.get("title"))
            .and_then(s)
            .or_else(|| content.get("body").and_then(|b| b.get("text")).and_then(s)),
        "location" => content.get("name").and_then(s).or_else(|| content.get("address").and_then(s)),
        "template" => content.get("name").and_then(s),
        _ => None,
    }
}

/// The customer's 24-hour window as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowView {
    /// True while free-form messages may be sent.
    pub open: bool,
    /// When it closes (open) or closed (closed); null when the customer never wrote.
    pub closes_at: Option<String>,
}

pub fn window_view(last_inbound_at: Option<i64>, now: i64) -> WindowView {
    match window(last_inbound_at, now) {
        Window::Open { closes_at_ms } => WindowView { open: true, closes_at: Some(rfc3339(closes_at_ms)) },
        Window::Closed { closed_at_ms } => WindowView { open: false, closes_at: Some(rfc3339(closed_at_ms)) },
        Window::Never => WindowView { open: false, closes_at: None },
    }
}

/// A customer of one of our numbers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactView {
    pub id: i64,
    /// The wabridge id of our number.
    pub phone: i64,
    /// The WhatsApp id (the number's digits), or the business-scoped user id when the number is hidden.
    pub contact: String,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub last_inbound_at: Option<String>,
    pub window: WindowView,
    pub created_at: String,
}

pub fn contact_view(c: &ContactRow, now: i64) -> ContactView {
    ContactView {
        id: c.id,
        phone: c.phone_id,
        contact: c.contact_key.clone(),
        wa_id: c.wa_id.clone(),
        user_id: c.user_id.clone(),
        profile_name: c.profile_name.clone(),
        last_inbound_at: c.last_inbound_at.map(rfc3339),
        window: window_view(c.last_inbound_at, now),
        created_at: rfc3339(c.created_at),
    }
}

/// One conversation: a customer and one of our numbers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationView {
    pub phone: i64,
    /// The customer's WhatsApp id (or user id).
    pub contact: String,
    pub profile_name: Option<String>,
    /// The latest message either way.
    pub last_message_at: String,
    pub last_inbound_at: Option<String>,
    pub window: WindowView,
}

pub fn conversation_view(c: &ConversationRow, now: i64) -> ConversationView {
    ConversationView {
        phone: c.phone_id,
        contact: c.contact_key.clone(),
        profile_name: c.profile_name.clone(),
        last_message_at: rfc3339(c.last_at),
        last_inbound_at: c.last_inbound_at.map(rfc3339),
        window: window_view(c.last_inbound_at, now),
    }
}

/// An error of a message (Meta's code and text).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageError {
    pub code: Option<i64>,
    pub message: String,
}

/// An edit of a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EditView {
    pub at: String,
    /// The new content (the type's object), e.g. `{"body": "…"}`.
    #[schema(value_type = Object)]
    pub content: Value,
    pub text: Option<String>,
}

/// A reaction to a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionView {
    /// `customer` or `business`.
    pub by: String,
    pub emoji: String,
    pub at: String,
}

/// One message, either way.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    /// `in-<n>` for a customer's message, `out-<n>` for ours (`<n>` is the send's id).
    pub id: String,
    /// `in` (from the customer) or `out` (to the customer).
    pub direction: String,
    pub phone: i64,
    /// The customer's WhatsApp id (or user id).
    pub contact: Option<String>,
    /// WhatsApp's message id; null for a send Meta has not taken (yet).
    pub wamid: Option<String>,
    /// WhatsApp's type: `text`, `image`, `audio`, `video`, `document`, `sticker`, `location`, `contacts`,
    /// `interactive`, `button`, `reaction`, `order`, `system`, `edit`, `revoke`, `template`, `unsupported`, ...
    #[serde(rename = "type")]
    pub msg_type: String,
    /// The type's object as WhatsApp spells it; null once the customer deleted the message.
    #[schema(value_type = Object)]
    pub content: Value,
    /// Body or caption (the latest edit's); null once deleted.
    pub text: Option<String>,
    /// The message this one replies to (its wamid).
    pub reply_to: Option<String>,
    /// For `reaction`, `edit` and `revoke` messages: the message they are about.
    pub target: Option<String>,
    /// Sends only: `queued`, `unknown`, `accepted` or `failed` (wabridge's side of the send).
    pub state: Option<String>,
    /// WhatsApp's latest status: `sent`, `delivered`, `read`, `failed` (ours), null for the customer's.
    pub status: Option<String>,
    pub status_at: Option<String>,
    pub error: Option<MessageError>,
    /// Sends only: who asked for it (`api`, `crm`, `sms`, `console`).
    pub origin: Option<String>,
    /// WhatsApp's time for the customer's messages; when it was queued for ours.
    pub timestamp: String,
    pub deleted: bool,
    pub deleted_at: Option<String>,
    pub edits: Vec<EditView>,
    pub reactions: Vec<ReactionView>,
}

/// Renders a stored message with what is about it (`related`: the reactions, edits and revokes whose target is
/// this message, in time order).
pub fn message_view(m: &MessageRow, related: &[&Related]) -> MessageView {
    let raw: Value = m.raw.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
    let (msg_type, mut content) = if m.direction == "out" {
        let t = raw.get("type").and_then(Value::as_str).unwrap_or(&m.msg_type).to_string();
        let c = content_of(&t, &raw);
        (t, c)
    } else {
        (m.msg_type.clone(), content_of(&m.msg_type, &raw))
    };
    let mut text = text_of(&msg_type, &content).or_else(|| m.body.clone().filter(|_| m.direction == "in"));
    let reply_to = if m.direction == "out" {
        raw.get("context").and_then(|c| c.get("message_id")).and_then(Value::as_str).map(str::to_string)
    } else {
        m.context_wamid.clone()
    };
    let mut edits = Vec::new();
    let mut reactions: Vec<ReactionView> = Vec::new();
    let mut deleted_at = None;
    for r in related {
        let rraw: Value = r.raw.as_deref().and_then(|x| serde_json::from_str(x).ok()).unwrap_or(Value::Null);
        match r.msg_type.as_str() {
            "edit" if r.direction == "in" => {
                if let Ok(parsed) = webhook::parse_message(rraw.clone()) {
                    if let Content::Edit { message, .. } = parsed.content {
                        let new_type = message.type_name().to_string();
                        let inner = rraw.get("edit").and_then(|e| e.get("message")).cloned().unwrap_or(Value::Null);
                        let new_content = content_of(&new_type, &inner);
                        let new_text = text_of(&new_type, &new_content);
                        edits.push(EditView { at: rfc3339(r.at), content: new_content, text: new_text });
                    }
                }
            }
            "revoke" if r.direction == "in" => deleted_at = Some(r.at),
            "reaction" => {
                let obj = content_of("reaction", &rraw);
                let emoji = obj.get("emoji").and_then(Value::as_str).unwrap_or_default().to_string();
                let by = if r.direction == "in" { "customer" } else { "business" };
                reactions.retain(|x| x.by != by);
                if !emoji.is_empty() {
                    reactions.push(ReactionView { by: by.into(), emoji, at: rfc3339(r.at) });
                }
            }
            _ => {}
        }
    }
    if let Some(last) = edits.last() {
        content = last.content.clone();
        text = last.text.clone();
    }
    let deleted = deleted_at.is_some();
    if deleted {
        content = Value::Null;
        text = None;
        edits.clear();
    }
    let error = match (m.error_code, &m.error_text) {
        (None, None) => None,
        (code, text) => Some(MessageError { code, message: text.clone().unwrap_or_default() }),
    };
    MessageView {
        id: format!("{}-{}", m.direction, m.id),
        direction: m.direction.clone(),
        phone: m.phone_id,
        contact: m.contact.clone(),
        wamid: m.wamid.clone(),
        msg_type,
        content,
        text,
        reply_to,
        target: m.target_wamid.clone(),
        state: m.state.clone(),
        status: m.status.clone(),
        status_at: m.status_at.map(rfc3339),
        error,
        origin: m.origin.clone(),
        timestamp: rfc3339(m.at),
        deleted,
        deleted_at: deleted_at.map(rfc3339),
        edits,
        reactions,
    }
}

/// A page cursor: the sort key of the last item shown, opaque to callers (`<at>.<direction>.<id>`, base64url).
pub fn encode_cursor(at: i64, rank: i64, id: i64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}.{rank}.{id}"))
}

/// The sort key in a cursor; `None` when it is not one of ours.
pub fn decode_cursor(c: &str) -> Option<(i64, i64, i64)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('.').map(|p| p.parse::<i64>().ok());
    let (a, b, c) = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some((a, b, c))
}

/// Why a history request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A query parameter is wrong (422 naming it).
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
    /// A number outside the caller's scope (403 naming the field).
    #[error("{field}: {message}")]
    Forbidden { field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn bad(field: &'static str, message: impl Into<String>) -> HistoryError {
    HistoryError::Field { field, message: message.into() }
}

/// Most items in one page, and the default.
pub const MAX_LIMIT: i64 = 200;
pub const DEFAULT_LIMIT: i64 = 50;

/// What a history request asks for, as given (query parameters or CLI flags).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Our number: its E.164 form (`+5511930001234`) or its wabridge id.
    pub phone: Option<String>,
    /// The customer: WhatsApp id or number (`5511987654321`, `+55 11 98765-4321`), or business-scoped user id.
    pub contact: Option<String>,
    /// Messages only: `in` (from customers) or `out` (to customers).
    pub direction: Option<String>,
    /// Messages only: at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Messages only: before this time (RFC 3339).
    pub until: Option<String>,
    /// Contacts only: part of the profile name or of the WhatsApp id.
    pub q: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page: 1-200, default 50.
    pub limit: Option<i64>,
}

/// One page: the items, newest first, and the cursor of the next page (null on the last).
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The OpenAPI shapes of the pages (utoipa describes concrete types).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MessagePage {
    pub data: Vec<MessageView>,
    /// Give it as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ContactPage {
    pub data: Vec<ContactView>,
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConversationPage {
    pub data: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

fn time_param(field: &'static str, v: &Option<String>) -> Result<Option<i64>, HistoryError> {
    v.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t.trim())
                .map(|d| d.timestamp_millis())
                .map_err(|_| bad(field, "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))
        })
        .transpose()
}

/// A customer as given: a number's digits (spaces, dashes and `+` dropped), else the text as is (a user id).
fn contact_param(v: &Option<String>) -> Result<Option<String>, HistoryError> {
    let Some(c) = v.as_deref().map(str::trim) else { return Ok(None) };
    if c.is_empty() || c.len() > 128 {
        return Err(bad("contact", "must be a WhatsApp id, a number or a user id (1-128 characters)"));
    }
    let stripped: String = c.chars().filter(|ch| !matches!(ch, ' ' | '-' | '(' | ')' | '+')).collect();
    Ok(Some(if stripped.chars().all(|ch| ch.is_ascii_digit()) { stripped } else { c.to_string() }))
}

/// Turns a request into a store filter for a caller who may see `scope` (`None`: every phone). A number outside
/// the scope is refused (403), an unknown one is a bad parameter (422).
pub async fn filter(store: &Store, scope: Option<Vec<i64>>, q: &HistoryQuery) -> Result<Filter, HistoryError> {
    let phone = match q.phone.as_deref().map(str::trim) {
        None => None,
        Some(p) if p.starts_with('+') => {
            let e164 = crate::phone::normalize_e164(p).map_err(|e| bad("phone", e.to_string()))?;
            Some(
                crate::store::history::phone_by_number(store, &e164)
                    .await?
                    .ok_or_else(|| bad("phone", format!("{e164} is not a number registered in wabridge")))?,
            )
        }
        Some(p) => {
            let id: i64 = p.parse().map_err(|_| bad("phone", "must be an E.164 number (+…) or a wabridge phone id"))?;
            if store.get_phone(id).await?.is_none() {
                return Err(bad("phone", format!("no phone with id {id}")));
            }
            Some(id)
        }
    };
    if let (Some(p), Some(ids)) = (phone, &scope) {
        if !ids.contains(&p) {
            return Err(HistoryError::Forbidden {
                field: "phone",
                message: "this number is outside the API key's scope".into(),
            });
        }
    }
    let direction = match q.direction.as_deref() {
        None => None,
        Some(d @ ("in" | "out")) => Some(d.to_string()),
        Some(_) => return Err(bad("direction", "must be in or out")),
    };
    if q.q.as_ref().is_some_and(|t| t.len() > 100) {
        return Err(bad("q", "must be at most 100 characters"));
    }
    Ok(Filter {
        scope,
        phone,
        contact: contact_param(&q.contact)?,
        direction,
        since: time_param("since", &q.since)?,
        until: time_param("until", &q.until)?,
        q: q.q.clone(),
    })
}

fn limit_of(q: &HistoryQuery) -> Result<i64, HistoryError> {
    let l = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&l) {
        return Err(bad("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    Ok(l)
}

fn bad_cursor() -> HistoryError {
    bad("cursor", "is not a cursor of this list (use next_cursor of the previous page)")
}

/// A page of messages, both directions, with reactions, edits and revokes folded onto their targets.
pub async fn messages(
    store: &Store,
    scope: Option<Vec<i64>>,
    q: &HistoryQuery,
) -> Result<Page<MessageView>, HistoryError> {
    let limit = limit_of(q)?;
    let f = filter(store, scope, q).await?;
    let cursor = q.cursor.as_deref().map(|c| decode_cursor(c).ok_or_else(bad_cursor)).transpose()?;
    let mut rows = crate::store::history::messages(store, &f, cursor, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let wamids: Vec<String> = rows.iter().filter_map(|r| r.wamid.clone()).collect();
    let related = crate::store::history::related(store, &wamids).await?;
    let data = rows
        .iter()
        .map(|r| {
            let about: Vec<&Related> =
                related.iter().filter(|x| r.wamid.as_deref() == Some(x.target.as_str())).collect();
            message_view(r, &about)
        })
        .collect();
    let next_cursor = more.then(|| rows.last().map(|r| encode_cursor(r.at, r.rank, r.id))).flatten();
    Ok(Page { data, next_cursor })
}

/// The latest message of one conversation (what the console's list previews), with what is about it folded on.
pub async fn latest(store: &Store, phone_id: i64, contact: &str) -> Result<Option<MessageView>, HistoryError> {
    let f = Filter { phone: Some(phone_id), contact: Some(contact.to_string()), ..Filter::default() };
    let rows = crate::store::history::messages(store, &f, None, 1).await?;
    let Some(r) = rows.first() else { return Ok(None) };
    let related = match &r.wamid {
        Some(w) => crate::store::history::related(store, std::slice::from_ref(w)).await?,
        None => Vec::new(),
    };
    Ok(Some(message_view(r, &related.iter().collect::<Vec<_>>())))
}

/// A page of contacts, newest first.
pub async fn contacts(
    store: &Store,
    scope: Option<Vec<i64>>,
    q: &HistoryQuery,
) -> Result<Page<ContactView>, HistoryError> {
    let limit = limit_of(q)?;
    let f = filter(store, scope, q).await?;
    let before =
        q.cursor.as_deref().map(|c| decode_cursor(c).map(|(_, _, id)| id).ok_or_else(bad_cursor)).transpose()?;
    let mut rows = crate::store::history::contacts(store, &f, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let now = crate::store::now_ms();
    let next_cursor = more.then(|| rows.last().map(|r| encode_cursor(0, 0, r.id))).flatten();
    Ok(Page { data: rows.iter().map(|r| contact_view(r, now)).collect(), next_cursor })
}

/// A page of conversations, latest first.
pub async fn conversations(
    store: &Store,
    scope: Option<Vec<i64>>,
    q: &HistoryQuery,
) -> Result<Page<ConversationView>, HistoryError> {
    use base64::Engine as _;
    let limit = limit_of(q)?;
    let f = filter(store, scope, q).await?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => {
            let text = b64.decode(c).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad_cursor)?;
            let mut parts = text.splitn(3, '.');
            let (at, phone, key) = (parts.next(), parts.next(), parts.next());
            match (at.and_then(|a| a.parse().ok()), phone.and_then(|p| p.parse().ok()), key) {
                (Some(at), Some(phone), Some(key)) => Some((at, phone, key.to_string())),
                _ => return Err(bad_cursor()),
            }
        }
    };
    let mut rows = crate::store::history::conversations(store, &f, cursor, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let now = crate::store::now_ms();
    let next_cursor = more
        .then(|| rows.last().map(|r| b64.encode(format!("{}.{}.{}", r.last_at, r.phone_id, r.contact_key))))
        .flatten();
    Ok(Page { data: rows.iter().map(|r| conversation_view(r, now)).collect(), next_cursor })
}

/// The phones an API key may see: those it is limited to, its WABA's, or every phone (`None`) for a key without
/// either.
pub async fn scope_of(store: &Store, caller: &crate::apikeys::Caller) -> Result<Option<Vec<i64>>, HistoryError> {
    let of_waba = match caller.waba {
        None => None,
        Some(w) => Some(crate::store::history::phones_of_waba(store, w).await?),
    };
    if caller.phones.is_empty() {
        return Ok(of_waba);
    }
    Ok(Some(caller.phones.iter().copied().filter(|p| of_waba.as_ref().is_none_or(|w| w.contains(p))).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(direction: &str, msg_type: &str, raw: Value) -> MessageRow {
        MessageRow {
            direction: direction.into(),
            id: 1,
            phone_id: 2,
            contact: Some("5511987654321".into()),
            wamid: Some("wamid.A".into()),
            msg_type: msg_type.into(),
            body: None,
            raw: Some(raw.to_string()),
            context_wamid: None,
            target_wamid: None,
            state: None,
            status: None,
            status_at: None,
            error_code: None,
            error_text: None,
            origin: None,
            at: 1_700_000_000_000,
            rank: 0,
        }
    }

    fn rel(direction: &str, msg_type: &str, at: i64, raw: Value) -> Related {
        Related {
            target: "wamid.A".into(),
            direction: direction.into(),
            msg_type: msg_type.into(),
            raw: Some(raw.to_string()),
            at,
        }
    }

    #[test]
    fn an_edited_message_shows_its_latest_text_and_its_history() {
        let m = row("in", "text", json!({"type": "text", "text": {"body": "helo"}}));
        let e1 = rel(
            "in",
            "edit",
            1,
            json!({"id": "wamid.E1", "type": "edit", "timestamp": "1",
                   "edit": {"original_message_id": "wamid.A", "message": {"type": "text", "text": {"body": "hello"}}}}),
        );
        let e2 = rel(
            "in",
            "edit",
            2,
            json!({"id": "wamid.E2", "type": "edit", "timestamp": "2",
                   "edit": {"original_message_id": "wamid.A", "message": {"type": "text", "text": {"body": "hello!"}}}}),
        );
        let v = message_view(&m, &[&e1, &e2]);
        assert_eq!(v.text.as_deref(), Some("hello!"));
        assert_eq!(v.content, json!({"body": "hello!"}));
        assert_eq!(v.edits.len(), 2);
        assert_eq!(v.edits[0].text.as_deref(), Some("hello"));
        assert!(!v.deleted);
    }

    #[test]
    fn a_deleted_message_shows_as_deleted_without_its_content() {
        let m = row("in", "image", json!({"type": "image", "image": {"id": "M1", "caption": "secret"}}));
        let r = rel("in", "revoke", 5, json!({"type": "revoke", "revoke": {"original_message_id": "wamid.A"}}));
        let v = message_view(&m, &[&r]);
        assert!(v.deleted);
        assert_eq!(v.deleted_at.as_deref(), Some("1970-01-01T00:00:00.005Z"));
        assert_eq!(v.content, Value::Null);
        assert_eq!(v.text, None);
    }

    #[test]
    fn reactions_keep_the_latest_per_side_and_an_empty_one_removes() {
        let m = row("out", "text", json!({"type": "text", "text": {"body": "Order 42 shipped"}}));
        let a =
            rel("in", "reaction", 1, json!({"type": "reaction", "reaction": {"message_id": "wamid.A", "emoji": "👍"}}));
        let b =
            rel("in", "reaction", 2, json!({"type": "reaction", "reaction": {"message_id": "wamid.A", "emoji": "❤️"}}));
        let c = rel(
            "out",
            "reaction",
            3,
            json!({"type": "reaction", "reaction": {"message_id": "wamid.A", "emoji": "🙏"}}),
        );
        let d =
            rel("out", "reaction", 4, json!({"type": "reaction", "reaction": {"message_id": "wamid.A", "emoji": ""}}));
        let v = message_view(&m, &[&a, &b, &c, &d]);
        assert_eq!(v.text.as_deref(), Some("Order 42 shipped"));
        assert_eq!(v.reactions.len(), 1);
        assert_eq!((v.reactions[0].by.as_str(), v.reactions[0].emoji.as_str()), ("customer", "❤️"));
    }

    #[test]
    fn contents_and_texts_follow_the_types() {
        let raw = json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "y", "title": "Yes"}}});
        let c = content_of("interactive", &raw);
        assert_eq!(text_of("interactive", &c).as_deref(), Some("Yes"));
        assert_eq!(text_of("template", &json!({"name": "order_ready"})).as_deref(), Some("order_ready"));
        assert_eq!(content_of("sticker", &json!({"type": "sticker"})), Value::Null);
    }

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let c = encode_cursor(1_700_000_000_000, 1, 42);
        assert_eq!(decode_cursor(&c), Some((1_700_000_000_000, 1, 42)));
        assert_eq!(decode_cursor("nope"), None);
        assert_eq!(decode_cursor("MS4y"), None, "two parts");
    }

    #[test]
    fn windows_are_open_closed_or_never() {
        let now = 100 * 3_600_000;
        assert!(window_view(Some(now - 3_600_000), now).open);
        let closed = window_view(Some(now - 25 * 3_600_000), now);
        assert!(!closed.open && closed.closes_at.is_some());
        let never = window_view(None, now);
        assert!(!never.open && never.closes_at.is_none());
    }
}
