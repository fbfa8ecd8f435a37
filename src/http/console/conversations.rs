//! The conversations pages: every conversation (a customer and one of our numbers) with its latest message and
//! 24-hour window, and one conversation's thread both ways with a reply box. They read what the history API reads
//! ([`crate::history`]); a reply goes the way a tenant API send goes (`message::validate`, the window, then
//! `outbound::enqueue_on` through `notify::commit_send`), as a send of origin `console`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::pages::{flash, kept, problem_at, status_of, ListQuery, Problem};
use super::{done, guard, layout, page, session, to_login, when, Fields, Oops, Session, PAGE};
use crate::history::{self, HistoryQuery, MessageView};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::message::{self, MessageInput};
use crate::outbound::{NewSend, Origin};
use crate::store::history::ConversationRow;
use crate::store::now_ms;
use crate::store::registry::Phone;
use crate::store::templates::TemplateView;
use crate::translate::window::{self, Window};

/// The longest customer key accepted in a path (WhatsApp ids and business-scoped user ids are far shorter).
const MAX_CONTACT: usize = 128;

/// A path segment: letters, digits, `.`, `_` and `-` as they are, everything else percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query value, form-encoded.
fn qv(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The thread's address.
pub fn thread_url(phone_id: i64, contact: &str) -> String {
    format!("/admin/conversations/{phone_id}/{}", segment(contact))
}

/// The customer as people read it: the number with its `+` when the key is a WhatsApp id (digits), else the
/// business-scoped user id as it is (the number is hidden).
fn customer_number(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{key}")
    } else {
        key.to_string()
    }
}

/// An RFC 3339 time of the history (`2026-12-06T21:04:10.000Z`) as the console shows times.
fn short_time(rfc: &str) -> String {
    let t = rfc.replace('T', " ");
    format!("{} UTC", t.trim_end_matches('Z').split('.').next().unwrap_or_default())
}

/// The window in words, with its colour.
fn window_words(last_inbound_at: Option<i64>, now: i64) -> Markup {
    match window::window(last_inbound_at, now) {
        Window::Open { closes_at_ms } => html! { span.ok { "open" } " until " (when(closes_at_ms)) },
        Window::Closed { closed_at_ms } => html! { span.muted { "closed" } " since " (when(closed_at_ms)) },
        Window::Never => html! { span.muted { "never opened" } " (the customer has not written)" },
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A one-line description of a message: its text, or what kind of message it is.
pub fn summary(m: &MessageView) -> String {
    if m.deleted {
        return "(deleted by the customer)".into();
    }
    let text = m.text.as_deref().unwrap_or_default();
    let c = &m.content;
    let with = |label: &str| if text.is_empty() { format!("[{label}]") } else { format!("[{label}] {text}") };
    match m.msg_type.as_str() {
        "text" => text.to_string(),
        "reaction" if text.is_empty() => "removed a reaction".into(),
        "reaction" => format!("reacted {text}"),
        "edit" => "edited a message".into(),
        "revoke" => "deleted a message".into(),
        "template" => {
            let lang = c.get("language").and_then(|l| str_at(l, "code")).unwrap_or_default();
            format!(
                "[template {}{}]",
                str_at(c, "name").unwrap_or("?"),
                if lang.is_empty() { String::new() } else { format!(" ({lang})") }
            )
        }
        "document" => match str_at(c, "filename") {
            Some(f) if text.is_empty() => format!("[document {f}]"),
            Some(f) => format!("[document {f}] {text}"),
            None => with("document"),
        },
        "location" => {
            let at = match (c.get("latitude"), c.get("longitude")) {
                (Some(a), Some(o)) => format!(" {a}, {o}"),
                _ => String::new(),
            };
            if text.is_empty() {
                format!("[location{at}]")
            } else {
                format!("[location{at}] {text}")
            }
        }
        "contacts" => {
            let names: Vec<&str> = c
                .as_array()
                .map(|a| a.iter().filter_map(|k| k.get("name").and_then(|n| str_at(n, "formatted_name"))).collect())
                .unwrap_or_default();
            format!("[contact card{}] {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))
        }
        "order" => {
            let n = c.get("product_items").and_then(Value::as_array).map_or(0, Vec::len);
            format!("[order: {n} item{}]", if n == 1 { "" } else { "s" })
        }
        "system" => with("system"),
        "unsupported" | "" => "[a message type WhatsApp does not support here]".into(),
        other => with(other),
    }
}

/// Our send's progress in words: wabridge's state, Meta's status, and the error with what it means.
fn send_status(m: &MessageView) -> Markup {
    let status = m.status.as_deref();
    let state = m.state.as_deref().unwrap_or("queued");
    html! {
        @match (state, status) {
            (_, Some("failed")) | ("failed", _) => span.bad { "failed" },
            (_, Some("read")) => span.ok { "read" },
            (_, Some("delivered")) => span.ok { "delivered" },
            (_, Some("sent")) => span.ok { "sent" },
            ("accepted", _) => span.ok { "accepted by Meta" },
            ("unknown", _) => span.warn { "no answer from Meta yet (waiting for a status)" },
            _ => span.warn { "queued" },
        }
        @if let Some(e) = &m.error {
            " · " span.bad { @if let Some(c) = e.code { "error " (c) ": " } (e.message) }
            @if let Some(c) = e.code { span.help { " — " (crate::meta::errors::explain(c)) } }
        }
    }
}

// ------------------------------------------------------------------------------------------------ the list

pub async fn conversations(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    let phones = s.store.list_phones().await?;
    let hq = HistoryQuery {
        phone: q.phone.clone().filter(|p| !p.trim().is_empty()),
        contact: q.contact.clone().filter(|c| !c.trim().is_empty()),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
        limit: Some(PAGE),
        ..HistoryQuery::default()
    };
    let now = now_ms();
    let (rows, next, problem) = match history::conversations(&s.store, None, &hq).await {
        Ok(p) => (p.data, p.next_cursor, None),
        Err(e) => (Vec::new(), None, Problem::at("filter", ApiError::from(e))),
    };
    let mut previews = Vec::with_capacity(rows.len());
    for c in &rows {
        previews.push(history::latest(&s.store, c.phone, &c.contact).await.map_err(ApiError::from)?);
    }
    let number = |id: i64| phones.iter().find(|p| p.id == id).map_or(id.to_string(), |p| p.number.clone());
    let chosen = hq.phone.as_deref().unwrap_or_default();
    let filters =
        format!("/admin/conversations?phone={}&contact={}", qv(chosen), qv(hq.contact.as_deref().unwrap_or_default()));
    let content = html! {
        form.inline #conv-filter method="get" action="/admin/conversations" {
            label for="conv-phone" { "Our number" }
            select #conv-phone name="phone" {
                option value="" selected[chosen.is_empty()] { "All numbers" }
                @for p in &phones {
                    option value=(p.id) selected[chosen == p.id.to_string() || chosen == p.number] {
                        (p.number) @if p.archived_at.is_some() { " (archived)" }
                    }
                }
            }
            label for="conv-contact" { "Customer (number or WhatsApp id)" }
            input #conv-contact name="contact" type="search" inputmode="tel" value=(hq.contact.as_deref().unwrap_or_default());
            button type="submit" { "Show" }
        }
        (problem_at(&problem, "filter"))
        @if rows.is_empty() && problem.is_none() { p { "No conversation yet: they appear when a customer writes or a message is sent." } }
        @if !rows.is_empty() {
            div.scroll { table.conversations {
                thead { tr {
                    th scope="col" { "Customer" } th scope="col" { "Our number" } th scope="col" { "Last message" }
                    th scope="col" { "Preview" } th scope="col" { "24-hour window" }
                } }
                tbody { @for (c, m) in rows.iter().zip(&previews) {
                    @let last_inbound = c.last_inbound_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.timestamp_millis());
                    tr.conversation {
                        td { a href=(thread_url(c.phone, &c.contact)) {
                            @if let Some(n) = &c.profile_name { strong { (n) } " " }
                            (customer_number(&c.contact))
                        } }
                        td { (number(c.phone)) }
                        td { (short_time(&c.last_message_at)) }
                        td.text { @if let Some(m) = m {
                            @if m.direction == "in" { span title="from the customer" { "← " } } @else { span title="from us" { "→ " } }
                            (summary(m).chars().take(120).collect::<String>())
                        } }
                        td { (window_words(last_inbound, now)) }
                    }
                } }
            } }
        }
        nav.pager aria-label="Pages" {
            @if hq.cursor.is_some() { a href=(filters) { "← Latest" } }
            @if let Some(n) = &next { a href={ (filters) "&cursor=" (qv(n)) } { "Older →" } }
        }
    };
    Ok(page(status_of(&problem), layout("Conversations", Some(&sess), flash.as_deref(), content)))
}

// ------------------------------------------------------------------------------------------------ one thread

/// The conversation's phone and customer from the path, or a 404 page.
async fn conversation_of(s: &AppState, phone_id: i64, contact: &str) -> Result<(Phone, ConversationRow), ApiError> {
    let not_found =
        || ApiError::field("conversation", "no such conversation").with_status(StatusCode::NOT_FOUND, "not_found");
    if contact.is_empty() || contact.len() > MAX_CONTACT {
        return Err(not_found());
    }
    let phone = s.store.get_phone(phone_id).await?.ok_or_else(not_found)?;
    let f = crate::store::history::Filter {
        phone: Some(phone_id),
        contact: Some(contact.to_string()),
        ..Default::default()
    };
    let rows = crate::store::history::conversations(&s.store, &f, None, 1).await?;
    let row = rows.into_iter().next().ok_or_else(not_found)?;
    Ok((phone, row))
}

pub async fn thread(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((phone_id, contact)): Path<(i64, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    thread_page(&s, &sess, phone_id, &contact, &q, flash, None).await
}

async fn thread_page(
    s: &AppState,
    sess: &Session,
    phone_id: i64,
    contact: &str,
    q: &ListQuery,
    flash: Option<String>,
    problem: Option<Problem>,
) -> Result<Response, Oops> {
    let (phone, conv) = conversation_of(s, phone_id, contact).await?;
    let hq = HistoryQuery {
        phone: Some(phone.id.to_string()),
        contact: Some(conv.contact_key.clone()),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
        limit: Some(PAGE),
        ..HistoryQuery::default()
    };
    let page_of = history::messages(&s.store, None, &hq).await.map_err(ApiError::from)?;
    let mut msgs = page_of.data;
    msgs.reverse();
    let now = now_ms();
    let w = window::window(conv.last_inbound_at, now);
    let url = thread_url(phone.id, &conv.contact_key);
    let name = conv.profile_name.clone().unwrap_or_default();
    let who = customer_number(&conv.contact_key);
    let hidden_number = !conv.contact_key.bytes().all(|b| b.is_ascii_digit());
    let approved: Vec<TemplateView> = if w.is_open() {
        Vec::new()
    } else {
        crate::templates::list_views(&s.store, phone.waba_id)
            .await?
            .into_iter()
            .filter(|t| t.status == "APPROVED")
            .collect()
    };
    let content = html! {
        p.conversation-head {
            "Customer " @if !name.is_empty() { strong { (name) } " " } code { (who) }
            " · our number " (phone.number) @if phone.archived_at.is_some() { " " span.muted { "(archived)" } }
            " · window " (window_words(conv.last_inbound_at, now))
        }
        p { a href={ "/admin/conversations?phone=" (phone.id) } { "← All conversations of " (phone.number) } }
        nav.pager aria-label="Older messages" {
            @if let Some(n) = &page_of.next_cursor { a href={ (url) "?cursor=" (qv(n)) } { "← Older messages" } }
        }
        @if msgs.is_empty() { p { "No message on this page." } }
        ol.thread aria-label="Messages, oldest first" {
            @for m in &msgs { (message_item(m)) }
        }
        @if hq.cursor.is_some() { nav.pager aria-label="Newer messages" { a href=(url) { "Newest messages →" } } }
        section.card aria-labelledby="reply-h" {
            h2 #reply-h { "Reply" }
            (problem_at(&problem, "reply"))
            @match w {
                _ if phone.archived_at.is_some() => p.warn #window-closed { "This number is archived: unarchive it on the "
                    a href="/admin/phones?archived=1" { "phones page" } " to send from it." },
                _ if hidden_number => p.warn #window-closed { "This customer's number is hidden (only their business-scoped user id "
                    "is known), so a reply cannot be addressed to them from here." },
                Window::Open { closes_at_ms } => {
                    form #reply method="post" action=(url) {
                        (super::csrf_field(sess))
                        input type="hidden" name="nonce" value=(crate::seal::random_token(24));
                        label for="reply-body" { "Text to " (who) " (the window is open until " (when(closes_at_ms)) ")" }
                        textarea #reply-body name="body" rows="4" maxlength="4096" required { (kept(&problem, "reply", "body")) }
                        button type="submit" { "Send reply" }
                    }
                },
                Window::Closed { closed_at_ms } => {
                    p.warn #window-closed {
                        "The customer's 24-hour window closed at " (when(closed_at_ms)) ", 24 hours after their last message. "
                        "Free text cannot be sent now: only an approved template can. The customer's next message opens a new window."
                    }
                    (template_form(sess, &url, &problem, &approved, phone.waba_id))
                },
                Window::Never => {
                    p.warn #window-closed {
                        "The customer has never written to this number, so no 24-hour window is open: only an approved "
                        "template can be sent."
                    }
                    (template_form(sess, &url, &problem, &approved, phone.waba_id))
                },
            }
        }
    };
    let title = format!("Conversation with {}", if name.is_empty() { who.as_str() } else { name.as_str() });
    Ok(page(status_of(&problem), layout(&title, Some(sess), flash.as_deref(), content)))
}

/// Outside the window: a template send, from the WABA's approved templates, with its placeholder values.
fn template_form(sess: &Session, url: &str, problem: &Option<Problem>, approved: &[TemplateView], waba: i64) -> Markup {
    let chosen = kept(problem, "reply", "template");
    html! {
        @if approved.is_empty() {
            p { "No approved template of this number's WABA is synced: sync them on the "
                a href={ "/admin/templates?waba=" (waba) } { "templates page" } "." }
        } @else {
            form #template-send method="post" action=(url) {
                (super::csrf_field(sess))
                input type="hidden" name="kind" value="template";
                input type="hidden" name="nonce" value=(crate::seal::random_token(24));
                label for="template-name" { "Approved template" }
                select #template-name name="template" {
                    @for t in approved {
                        @let v = format!("{}|{}", t.name, t.language);
                        option value=(v) selected[chosen == v] { (t.name) " (" (t.language) ")" }
                    }
                }
                label for="template-params" { "Values of its placeholders, one per line, in order (none: leave empty)" }
                textarea #template-params name="parameters" rows="3" { (kept(problem, "reply", "parameters")) }
                p.help { "The template's text and placeholders are on the " a href={ "/admin/templates?waba=" (waba) } { "templates page" } "; "
                    "the API (" code { "POST /api/v1/messages" } " with " code { "\"type\": \"template\"" } ") also takes media headers and buttons." }
                button type="submit" { "Send template" }
            }
        }
    }
}

/// One message of the thread.
fn message_item(m: &MessageView) -> Markup {
    let (class, who) = if m.direction == "in" { ("msg in", "Customer") } else { ("msg out", "Us") };
    html! {
        li class=(class) id={ "msg-" (m.id) } {
            p.meta {
                strong { (who) } " · " (short_time(&m.timestamp)) " · " (m.msg_type)
                @if let Some(o) = m.origin.as_deref().filter(|_| m.direction == "out") { " · from " (o) }
            }
            @if m.deleted {
                p.body.muted { "Deleted by the customer" @if let Some(at) = &m.deleted_at { " (" (short_time(at)) ")" } "." }
            } @else {
                p.body { (summary(m)) }
            }
            @if !m.edits.is_empty() {
                details.edits {
                    summary { "edited " (m.edits.len()) " time" @if m.edits.len() > 1 { "s" } }
                    ol { @for e in &m.edits {  li { (short_time(&e.at)) ": " (e.text.as_deref().unwrap_or("(no text)")) } } }
                }
            }
            @if let Some(t) = &m.target { p.help { "about message " code { (t) } } }
            @if let Some(r) = &m.reply_to { p.help { "replying to " code { (r) } } }
            @if !m.reactions.is_empty() {
                p.reactions { "Reactions: " @for (i, r) in m.reactions.iter().enumerate() {
                    @if i > 0 { ", " } (if r.by == "customer" { "customer" } else { "us" }) " " (r.emoji)
                } }
            }
            @if m.direction == "out" {
                p.status { "Send #" (m.id.trim_start_matches("out-")) ": " (send_status(m)) }
            }
        }
    }
}

/// The reply box: a text message inside the window, or an approved template outside it, sent the way a tenant
/// API send is (validated, the window checked for text, a template against its synced definition, then queued).
pub async fn thread_reply(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((phone_id, contact)): Path<(i64, String)>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let what = if f.get("kind") == Some("template") { "Template" } else { "Reply" };
    match reply(&s, phone_id, &contact, &f).await {
        Ok((id, duplicate)) => {
            let msg = if duplicate {
                format!("This {} was already queued as send #{id}: nothing new was sent.", what.to_lowercase())
            } else {
                format!("{what} queued, send #{id}: the workers send it to WhatsApp; its status shows below on reload.")
            };
            done(&s, &sess, &thread_url(phone_id, &contact), &msg).await
        }
        Err(err) => {
            let q = ListQuery::default();
            thread_page(&s, &sess, phone_id, &contact, &q, None, Problem::typed("reply", err, f)).await
        }
    }
}

async fn reply(s: &AppState, phone_id: i64, contact: &str, f: &Fields) -> Result<(i64, bool), ApiError> {
    let (phone, conv) = conversation_of(s, phone_id, contact).await?;
    if phone.archived_at.is_some() {
        return Err(ApiError::field("phone", "this number is archived: unarchive it to send from it"));
    }
    let key = conv.contact_key;
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::field("to", "this customer's number is hidden, so a reply cannot be addressed to them"));
    }
    let template = f.get("kind") == Some("template");
    let input = if template {
        let chosen = f.get("template").ok_or_else(|| ApiError::field("template", "choose an approved template"))?;
        let (name, language) =
            chosen.rsplit_once('|').ok_or_else(|| ApiError::field("template", "choose an approved template"))?;
        let values: Vec<&str> =
            f.get("parameters").unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let mut t = json!({"name": name, "locale": language});
        if !values.is_empty() {
            t["parameters"] = json!(values);
        }
        json!({"from": phone.number, "to": format!("+{key}"), "type": "template", "template": t})
    } else {
        let text = f.get("body").unwrap_or_default();
        json!({"from": phone.number, "to": format!("+{key}"), "type": "text", "text": {"body": text}})
    };
    let input: MessageInput = serde_json::from_value(input).map_err(|e| ApiError::field("body", e.to_string()))?;
    let m = message::validate(input).map_err(ApiError::fields)?;
    let defs = if template {
        crate::templates::load(&s.store, phone.waba_id).await?
    } else {
        let last = crate::store::contacts::last_inbound(&s.store, phone.id, &key).await?;
        let now = now_ms();
        let w = window::window(last, now);
        if !w.is_open() {
            return Err(crate::http::messages::outside_window(&w, now));
        }
        Vec::new()
    };
    let built = message::graph::request(&m, &defs).map_err(|e| ApiError::fields(vec![e]))?;
    let nonce = f.get("nonce").filter(|n| n.len() <= 64);
    let send = NewSend {
        phone_id: phone.id,
        recipient: key,
        origin: Origin::Console,
        origin_ref: json!({"console": true}),
        request: built.request,
        idempotency_key: nonce.map(|n| format!("console:{n}")),
        api_key_id: None,
    };
    let e = crate::http::notify::commit_send(s, &send).await?;
    Ok((e.id, e.duplicate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(msg_type: &str, content: Value, text: Option<&str>) -> MessageView {
        MessageView {
            id: "in-1".into(),
            direction: "in".into(),
            phone: 1,
            contact: None,
            wamid: None,
            msg_type: msg_type.into(),
            content,
            text: text.map(String::from),
            reply_to: None,
            target: None,
            state: None,
            status: None,
            status_at: None,
            error: None,
            origin: None,
            timestamp: "2026-12-06T21:04:10.000Z".into(),
            deleted: false,
            deleted_at: None,
            edits: Vec::new(),
            reactions: Vec::new(),
        }
    }

    #[test]
    fn messages_are_summed_up_by_type() {
        assert_eq!(summary(&view("text", json!({"body": "hi"}), Some("hi"))), "hi");
        assert_eq!(summary(&view("image", json!({"id": "1"}), Some("look"))), "[image] look");
        assert_eq!(summary(&view("sticker", json!({"id": "1"}), None)), "[sticker]");
        assert_eq!(summary(&view("document", json!({"filename": "a.pdf"}), None)), "[document a.pdf]");
        assert_eq!(summary(&view("reaction", json!({"emoji": "👍"}), Some("👍"))), "reacted 👍");
        assert_eq!(summary(&view("reaction", json!({"emoji": ""}), None)), "removed a reaction");
        assert_eq!(summary(&view("revoke", Value::Null, None)), "deleted a message");
        assert_eq!(
            summary(&view("template", json!({"name": "order_ready", "language": {"code": "pt_BR"}}), None)),
            "[template order_ready (pt_BR)]"
        );
        assert_eq!(
            summary(&view("location", json!({"latitude": 1.5, "longitude": 2.5}), Some("Shop"))),
            "[location 1.5, 2.5] Shop"
        );
        let mut gone = view("text", Value::Null, None);
        gone.deleted = true;
        assert_eq!(summary(&gone), "(deleted by the customer)");
    }

    #[test]
    fn paths_and_numbers() {
        assert_eq!(thread_url(3, "5511987654321"), "/admin/conversations/3/5511987654321");
        assert_eq!(thread_url(3, "US.12/3 x"), "/admin/conversations/3/US.12%2F3%20x");
        assert_eq!(customer_number("5511987654321"), "+5511987654321");
        assert_eq!(customer_number("US.123"), "US.123");
    }
}
