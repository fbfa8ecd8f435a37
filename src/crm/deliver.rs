//! `crm.deliver`: one inbound WhatsApp message into the phone's contact-centre line with
//! `imconnector.send.messages` (bitrix24.md §2.5). One chat per customer per line: `user.id = chat.id =` the
//! customer's key (WhatsApp id, or business-scoped user id when the number is hidden). The portal's chat id
//! and session are stored against the customer, and its message ids against the `wamid`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{changes, id_text, media, set_connector, Bridge};
use crate::bitrix::client::Error as BitrixError;
use crate::jobs::catalogue::{CrmBind, CrmDeliver};
use crate::jobs::{Enqueue, Job, JobError, Kind, Task};
use crate::meta::webhook;
use crate::store::phones::ConnectorStatus;
use crate::store::registry::Phone;
use crate::store::{crm_chats, inbox, messages, now_ms, sends, StoreError};
use crate::translate::render;

/// Why the portal did not take one message of `imconnector.send.messages`, from its item in `DATA.RESULT`
/// (bitrix24.md §2.5: each item has its own `SUCCESS` and `ERRORS`): `None` when it took it. An item that is
/// missing, or says neither `SUCCESS: true` nor carries the message back, is not taken either.
pub fn refusal(item: &Value) -> Option<String> {
    let errors: Vec<String> = item["ERRORS"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| match (e["code"].as_str(), e["message"].as_str()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    (None, Some(m)) => m.to_string(),
                    (None, None) => e.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let success = match &item["SUCCESS"] {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(s.as_str(), "Y" | "true" | "1")),
        Value::Number(n) => Some(n.as_i64() == Some(1)),
        _ => None,
    };
    match (success, errors.is_empty()) {
        (Some(true), true) => None,
        (_, false) => Some(errors.join("; ")),
        (Some(false), true) => Some("SUCCESS is false, no ERRORS given".into()),
        (None, true) if item.is_null() => Some("the answer has no result for the message".into()),
        (None, true) => None, // an older portal without per-message SUCCESS: the call itself succeeded
    }
}

pub async fn run(b: Arc<Bridge>, job: Job, task: CrmDeliver) -> Result<(), JobError> {
    let message_id = task.message_id;
    let row = messages::for_delivery(&b.store, message_id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("message {message_id} is gone")))?;
    if row.crm_message_id.is_some() {
        return Ok(()); // already in the portal
    }
    let wamid = row.wamid.clone();
    let phone_id = row.phone_id;
    let Some(phone) = b.store.get_phone(phone_id).await? else { return Ok(()) };
    let Some(portal_id) = phone.portal_id else { return Ok(()) };
    let portal = b.store.get_portal(portal_id).await?;
    if !portal.as_ref().is_some_and(|p| p.active) {
        return Ok(()); // uninstalled: traffic for this portal stops
    }
    let (Some(line), Some(ConnectorStatus::Ok)) =
        (phone.line_id.clone(), phone.connector_status.as_deref().and_then(ConnectorStatus::parse))
    else {
        return Err(JobError::retry("the phone's contact-centre line is not ready yet"));
    };
    // One customer's messages reach the chat in the order they arrived: wait while an earlier webhook of the
    // app is not processed yet (it may hold an earlier message of this chat), then while an earlier message of
    // the chat is still on its way (its job is before this one in the chat's order).
    if let Some(arrival) = row.arrival {
        let inbox_id = arrival / crate::inbound::ARRIVAL_SLOTS;
        if inbox::earlier_unprocessed(&b.store, inbox_id, now_ms() - UNPROCESSED_HOLD_MS).await? {
            return Err(JobError::Defer {
                message: "an earlier webhook is not processed yet".into(),
                after: std::time::Duration::from_millis(50),
            });
        }
    }
    if crate::jobs::earlier_in_order(&b.store, job.id).await? {
        return Err(JobError::Defer {
            message: "an earlier message of this customer is still on its way to the CRM".into(),
            after: std::time::Duration::from_millis(200),
        });
    }
    let Some(key) = row.contact_key.clone() else {
        return Err(JobError::Permanent("the message has no sender to show".into()));
    };
    let parsed = row
        .raw
        .clone()
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
        .and_then(|v| webhook::parse_message(v).ok())
        .ok_or_else(|| JobError::Permanent("the stored message cannot be read".into()))?;
    // A reply quotes the message it answers; a reaction names the message it reacts to.
    let quoted_wamid = match &parsed.content {
        webhook::Content::Reaction { message_id, .. } => Some(message_id.clone()),
        _ => row.context_wamid.clone(),
    };
    let quoted = match quoted_wamid {
        Some(q) => quoted_text(&b, &q).await?,
        None => None,
    };
    // An edit or a deletion of a message the portal has changes that message; otherwise it is posted as a line.
    let change =
        changes::Change { message_id, phone: &phone, contact_id: row.contact_id, portal_id, line: &line, key: &key };
    if changes::revoked(&b, &change, &wamid).await? {
        return Ok(()); // deleted by the customer before it reached the portal: never shown
    }
    let changed = match &parsed.content {
        webhook::Content::Edit { original_message_id, message } => {
            changes::edit(&b, &change, original_message_id, message).await?
        }
        webhook::Content::Revoke { original_message_id } => changes::revoke(&b, &change, original_message_id).await?,
        _ => false,
    };
    if changed {
        return Ok(());
    }
    // An earlier attempt may have reached the portal (the process died, or the answer was lost): ask the portal
    // before sending again (and before fetching its media), since it does not deduplicate by `message.id`.
    let mut resent_uncertain = false;
    if row.crm_attempt_at.is_some() {
        match already_in_portal(&b, portal_id, phone_id, &key, &wamid).await {
            Recheck::Found { message, chat_id, session_id } => {
                b.metrics.crm_deliveries_rechecked.get_or_create(&outcome("already_there")).inc();
                record_delivered(&b, message_id, phone_id, &key, portal_id, &line, chat_id, session_id, &message)
                    .await?;
                return Ok(());
            }
            Recheck::NotThere => {
                b.metrics.crm_deliveries_rechecked.get_or_create(&outcome("not_there")).inc();
            }
            Recheck::CannotTell(why) => {
                b.metrics.crm_deliveries_rechecked.get_or_create(&outcome("could_not_tell")).inc();
                resent_uncertain = true;
                tracing::warn!(job = job.id, portal = portal_id, reason = %why,
                    "an earlier delivery may have reached the portal and the portal cannot tell; sending it again");
            }
        }
    }
    let text = render::crm_text(&parsed, quoted.as_deref());
    let files = files_for(&b, &phone, &parsed.content).await?;
    let item = ClientMessage {
        key: &key,
        wa_id: row.wa_id.as_deref(),
        profile: row.profile_name.as_deref(),
        wamid: &wamid,
        date: parsed.timestamp.max(row.sent_at / 1000),
        text: &text,
        files,
    };
    let params = send_messages_params(b.connector(), &line, item);
    // Recorded before the call: whatever happens next, a later run knows this one may have reached the portal.
    set_attempt(&b, message_id, Some(now_ms())).await?;
    if resent_uncertain {
        messages::count_crm_resent_uncertain(&b.store, message_id).await?;
    }
    let answer = match b.bitrix.call(portal_id, "imconnector.send.messages", &params).await {
        Ok(a) => a,
        Err(e) => {
            if !may_have_reached(&e) {
                set_attempt(&b, message_id, None).await?;
            }
            if let BitrixError::Api { code, description, .. } = &e {
                if code == "NOT_ACTIVE_LINE" {
                    // The line or the connector on it went away: show it and bind again.
                    set_connector(&b.store, phone_id, ConnectorStatus::Error, Some(&format!("{code}: {description}")))
                        .await?;
                    let task = Task::CrmBind(CrmBind { phone_id });
                    crate::jobs::enqueue(&b.store.pool, &task, Enqueue::default()).await?;
                    return Err(JobError::retry("the portal says the line is not active; binding it again"));
                }
            }
            return Err(e.into());
        }
    };
    let first = &answer["result"]["DATA"]["RESULT"][0];
    if let Some(reason) = refusal(first) {
        // Not in the portal: never recorded as delivered. Retried with backoff; dead after the job's attempts,
        // with the portal's reason as its last error (GET /admin/api/v1/jobs?state=dead).
        set_attempt(&b, message_id, None).await?;
        return Err(JobError::retry(format!("the portal did not take the message: {reason}")));
    }
    let chat_id = id_text(&first["session"]["CHAT_ID"]);
    let session_id = id_text(&first["session"]["ID"]);
    let crm_message = match &first["message"]["id"] {
        Value::Array(ids) => ids.first().and_then(id_text),
        other => id_text(other),
    }
    .unwrap_or_else(|| "sent".to_string());
    record_delivered(&b, message_id, phone_id, &key, portal_id, &line, chat_id, session_id, &crm_message).await?;
    Ok(())
}

/// One customer message as the portal's `imconnector.send.messages` takes it.
#[derive(Debug, Clone)]
pub struct ClientMessage<'a> {
    /// The customer's key: `user.id` and `chat.id` (one chat per customer per line).
    pub key: &'a str,
    pub wa_id: Option<&'a str>,
    /// The WhatsApp profile name, as the customer set it.
    pub profile: Option<&'a str>,
    /// `message.id`: the portal keeps it as the message's `connectorMid`.
    pub wamid: &'a str,
    /// Unix seconds.
    pub date: i64,
    /// The rendered text (BBCode); may be empty when there are files.
    pub text: &'a str,
    /// `message.files` (`[{url, name}]`).
    pub files: Vec<Value>,
}

/// The params of `imconnector.send.messages` for one customer message (bitrix24.md §2.5), pure:
/// - `user`: `id` = the customer's key, `skip_phone_validate: Y`, the profile name as the portal's fields take it
///   ([`crm_names`]), `phone` = `+<wa_id>` when known;
/// - `message`: `id` = the wamid, `date`, `text` (always when there are no files, so the call is never empty),
///   `files` when any;
/// - `chat`: `id` = the customer's key, `name` = `WhatsApp +<wa_id>`, with the full profile name in brackets
///   when the user fields could not hold it as it is.
pub fn send_messages_params(connector: &str, line: &str, m: ClientMessage<'_>) -> Value {
    let mut user = json!({"id": m.key, "skip_phone_validate": "Y"});
    let names = m.profile.map(crm_names).unwrap_or_default();
    if let Some(first) = &names.0 {
        user["name"] = json!(first);
    }
    if let Some(last) = &names.1 {
        user["last_name"] = json!(last);
    }
    if let Some(w) = m.wa_id {
        user["phone"] = json!(format!("+{w}"));
    }
    let mut message = json!({"id": m.wamid, "date": m.date});
    if !m.text.is_empty() || m.files.is_empty() {
        message["text"] = json!(m.text);
    }
    if !m.files.is_empty() {
        message["files"] = Value::Array(m.files);
    }
    let mut chat_name = match m.wa_id {
        Some(w) => format!("WhatsApp +{w}"),
        None => "WhatsApp".to_string(),
    };
    // A profile name the portal's user fields cannot hold as it is stays readable in the chat's name.
    if let Some(p) = m.profile.map(str::trim).filter(|p| !p.is_empty()) {
        let shown = [names.0.as_deref(), names.1.as_deref()].iter().flatten().copied().collect::<Vec<_>>().join(" ");
        if shown != p {
            chat_name = format!("{chat_name} ({p})");
        }
    }
    json!({
        "CONNECTOR": connector,
        "LINE": line,
        "MESSAGES": [{"user": user, "message": message, "chat": {"id": m.key, "name": chat_name}}],
    })
}

/// How long an unprocessed earlier webhook holds back deliveries: one that has failed for this long (its job
/// retrying or dead) no longer does.
const UNPROCESSED_HOLD_MS: i64 = 10 * 60_000;

fn outcome(o: &str) -> crate::metrics::OutcomeLabels {
    crate::metrics::OutcomeLabels { outcome: o.to_string() }
}

/// Whether a failed `imconnector.send.messages` may still have taken effect: the portal could not be reached or
/// its answer could not be read (a timeout, a cut connection, a gateway error). A portal that answered with
/// its own error, or a call we never sent, did not take the message.
fn may_have_reached(e: &BitrixError) -> bool {
    matches!(e, BitrixError::Unavailable(_) | BitrixError::Protocol { .. })
}

async fn set_attempt(b: &Bridge, message_id: i64, at: Option<i64>) -> Result<(), StoreError> {
    messages::set_crm_attempt(&b.store, message_id, at).await
}

#[allow(clippy::too_many_arguments)]
async fn record_delivered(
    b: &Bridge,
    message_id: i64,
    phone_id: i64,
    key: &str,
    portal_id: i64,
    line: &str,
    chat_id: Option<String>,
    session_id: Option<String>,
    crm_message: &str,
) -> Result<(), StoreError> {
    let mut tx = b.store.begin_write().await?;
    messages::set_crm_ids_on(&mut *tx, message_id, chat_id.as_deref(), crm_message).await?;
    crm_chats::upsert_on(&mut tx, phone_id, key, portal_id, line, chat_id.as_deref(), session_id.as_deref()).await?;
    tx.commit().await?;
    Ok(())
}

/// What the portal says about a message an earlier attempt may have sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Recheck {
    /// It has it: its message id, and the chat and session it is in.
    Found { message: String, chat_id: Option<String>, session_id: Option<String> },
    /// It does not have it in the customer's chat.
    NotThere,
    /// We cannot ask: no chat of this customer is known yet (the first message), or the portal did not answer.
    CannotTell(String),
}

/// Asks the portal whether the customer's open-line chat holds a message with our `message.id` (`wamid`), which
/// the portal keeps as the message's `connectorMid` (`imopenlines.session.history.get`, bitrix24.md §2.5). The
/// chat is known once an earlier message of the customer reached it; the session we know is looked at first,
/// then the chat's latest (our message may have opened a new session).
async fn already_in_portal(b: &Bridge, portal_id: i64, phone_id: i64, key: &str, wamid: &str) -> Recheck {
    let chat = match crm_chats::get(&b.store, phone_id, key).await {
        Ok(Some(c)) => c,
        Ok(None) => return Recheck::CannotTell("no chat of this customer is known yet".into()),
        Err(e) => return Recheck::CannotTell(e.to_string()),
    };
    let crm_chats::CrmChat { chat_id: Some(chat_id), session_id } = chat else {
        return Recheck::CannotTell("no chat of this customer is known yet".into());
    };
    let mut asks = Vec::new();
    if let Some(s) = &session_id {
        asks.push(json!({"CHAT_ID": chat_id, "SESSION_ID": s}));
    }
    asks.push(json!({"CHAT_ID": chat_id}));
    for params in asks {
        match b.bitrix.call(portal_id, "imopenlines.session.history.get", &params).await {
            Ok(answer) => {
                if let Some(found) = history_has(&answer["result"], wamid) {
                    return found;
                }
            }
            Err(e) => return Recheck::CannotTell(format!("imopenlines.session.history.get: {e}")),
        }
    }
    Recheck::NotThere
}

/// Finds our message in an `imopenlines.session.history.get` result: a message whose `params.connectorMid`
/// holds `wamid` (pure).
pub fn history_has(result: &Value, wamid: &str) -> Option<Recheck> {
    let messages = result["message"].as_object()?;
    let session_id = id_text(&result["sessionId"]);
    let chat_id = id_text(&result["chatId"]);
    messages.iter().find_map(|(id, m)| {
        let mids = &m["params"]["connectorMid"];
        let ours = match mids {
            Value::Array(a) => a.iter().any(|x| id_text(x).as_deref() == Some(wamid)),
            other => id_text(other).as_deref() == Some(wamid),
        };
        ours.then(|| Recheck::Found {
            message: id_text(&m["id"]).unwrap_or_else(|| id.clone()),
            chat_id: chat_id.clone().or_else(|| id_text(&m["chatid"])),
            session_id: session_id.clone(),
        })
    })
}

/// The attachment of a media message, as `message.files` takes it: kept locally first unless the phone proxies
/// files; a fresh signed link each time.
pub async fn files_for(b: &Bridge, phone: &Phone, content: &webhook::Content) -> Result<Vec<Value>, JobError> {
    let mut files = Vec::new();
    if let Some((m, kind)) = render::media_of(content) {
        let name = m.filename.clone().unwrap_or_else(|| default_name(&m.id, kind.as_str(), m.mime_type.as_deref()));
        if !phone.file_proxy {
            let token = b.store.graph_token(phone.waba_id).await?;
            media::keep_local(b, phone, &token, &m.id, &name)
                .await
                .map_err(|e| JobError::retry(format!("downloading the media from Meta: {e}")))?;
        }
        let url = media::link(&b.public_base, &b.media_key, phone.id, &m.id, &name, b.config.media_url_ttl_seconds);
        files.push(json!({"url": url, "name": name}));
    }
    Ok(files)
}

async fn quoted_text(b: &Bridge, wamid: &str) -> Result<Option<String>, StoreError> {
    Ok(match messages::quoted(&b.store, wamid).await? {
        Some(q) => Some(q.body.unwrap_or_else(|| format!("[{}]", q.msg_type))),
        // A message we sent: its text is in the send's request.
        None => sends::request_by_wamid(&b.store, wamid).await?.map(|v| match v["text"]["body"].as_str() {
            Some(t) => t.to_string(),
            None => format!("[{}]", v["type"].as_str().unwrap_or("message")),
        }),
    })
}

fn default_name(id: &str, kind: &str, mime: Option<&str>) -> String {
    let ext = mime.and_then(extension).map(|e| format!(".{e}")).unwrap_or_default();
    format!("{kind}-{id}{ext}")
}

/// The file extension for a media MIME type, as the portal knows it: Bitrix24 shows jpe/jpg/jpeg/png/webp/gif/bmp
/// inline, so images get those (never `.jfif`, which `mime_guess` lists first for `image/jpeg`); the usual
/// WhatsApp audio, video and document types get their common extension; anything else what `mime_guess` says.
pub fn extension(mime: &str) -> Option<&'static str> {
    let essence = mime.split(';').next().unwrap_or(mime).trim().to_ascii_lowercase();
    let known = match essence.as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "image/bmp" | "image/x-ms-bmp" => "bmp",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "audio/mp4" | "audio/x-m4a" => "m4a",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.ms-powerpoint" => "ppt",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        _ => return mime_guess::get_mime_extensions_str(&essence).and_then(|e| e.first()).copied(),
    };
    Some(known)
}

/// The most of a WhatsApp profile name the portal's `user.name` / `user.last_name` take (bitrix24.md §2.5:
/// letters, spaces, `-` and `'` only, at most 25 characters each): all of it as the name when it fits (Bitrix
/// splits "A B" itself), else the first word as the name and as much of the rest as fits as the last name. Other characters (emoji, punctuation) are dropped, and so are words with digits ("2nd").
pub fn crm_names(profile: &str) -> (Option<String>, Option<String>) {
    const MAX: usize = 25;
    let allowed = |c: char| c.is_alphabetic() || c == '-' || c == '\'' || c == '’';
    let words: Vec<String> = profile
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_numeric()))
        .map(|w| w.chars().filter(|c| allowed(*c)).map(|c| if c == '’' { '\'' } else { c }).collect::<String>())
        .map(|w| w.trim_matches(|c| c == '-' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let fit = |words: &[String]| -> Option<String> {
        let mut out = String::new();
        for w in words {
            let len = out.chars().count() + usize::from(!out.is_empty()) + w.chars().count();
            if len > MAX {
                if out.is_empty() {
                    out = w.chars().take(MAX).collect();
                }
                break;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        }
        (!out.is_empty()).then_some(out)
    };
    let whole = words.join(" ");
    match words.split_first() {
        None => (None, None),
        Some(_) if whole.chars().count() <= MAX => (Some(whole), None),
        Some((first, rest)) => (fit(std::slice::from_ref(first)), fit(rest)),
    }
}

/// Queues delivery of a new inbound message when its phone is bound to a portal (called inside the inbox
/// transaction, so a message is queued for the CRM exactly when it is first stored). The job is ordered within
/// its chat by the message's arrival ([`order_key`]).
pub async fn enqueue_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    phone_id: i64,
    wamid: &str,
) -> Result<(), StoreError> {
    if let Some(m) = messages::deliverable_on(tx, phone_id, wamid).await? {
        let id = m.id;
        let key = order_key(phone_id, m.contact_id, id);
        let order = crate::jobs::Order { key: &key, seq: m.arrival };
        let task = Task::CrmDeliver(CrmDeliver { message_id: id });
        crate::jobs::enqueue(&mut **tx, &task, Enqueue { order: Some(order), ..Enqueue::default() }).await?;
    }
    Ok(())
}

/// One customer's messages to one phone reach the portal one after the other, in the order they arrived.
pub fn order_key(phone_id: i64, contact_id: Option<i64>, message_id: i64) -> String {
    match contact_id {
        Some(c) => Kind::CrmDeliver.key(format_args!("{phone_id}:{c}")),
        None => Kind::CrmDeliver.key(format_args!("{phone_id}:message:{message_id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{crm_names, extension, refusal, send_messages_params, ClientMessage};
    use serde_json::json;

    fn client<'a>(profile: Option<&'a str>, text: &'a str, files: Vec<serde_json::Value>) -> ClientMessage<'a> {
        ClientMessage {
            key: "5511987654321",
            wa_id: Some("5511987654321"),
            profile,
            wamid: "wamid.X",
            date: 1_700_000_000,
            text,
            files,
        }
    }

    #[test]
    fn the_portal_gets_one_message_per_call_in_its_documented_shape() {
        let p = send_messages_params("wabridge_whatsapp", "107", client(Some("Maria Souza"), "oi", vec![]));
        assert_eq!(
            p,
            json!({"CONNECTOR": "wabridge_whatsapp", "LINE": "107", "MESSAGES": [{
                "user": {"id": "5511987654321", "skip_phone_validate": "Y", "name": "Maria Souza",
                         "phone": "+5511987654321"},
                "message": {"id": "wamid.X", "date": 1_700_000_000, "text": "oi"},
                "chat": {"id": "5511987654321", "name": "WhatsApp +5511987654321"},
            }]})
        );
        // A name the fields cannot hold: what fits, and the whole name in the chat's name.
        let p =
            send_messages_params("c", "1", client(Some("Zoë 😊 2nd"), "", vec![json!({"url": "u", "name": "a.jpg"})]));
        let m = &p["MESSAGES"][0];
        assert_eq!(m["user"]["name"], "Zoë");
        assert_eq!(m["chat"]["name"], "WhatsApp +5511987654321 (Zoë 😊 2nd)");
        assert!(m["message"].get("text").is_none(), "a file alone carries no empty text");
        assert_eq!(m["message"]["files"][0]["name"], "a.jpg");
        // No text and no file: the text is sent (empty), so the call is never without both.
        let p = send_messages_params("c", "1", ClientMessage { wa_id: None, ..client(None, "", vec![]) });
        let m = &p["MESSAGES"][0];
        assert_eq!(m["message"]["text"], "");
        assert!(m["user"].get("phone").is_none() && m["user"].get("name").is_none());
        assert_eq!(m["chat"]["name"], "WhatsApp");
    }

    #[test]
    fn names_the_portal_takes() {
        let n = |p: &str| crm_names(p);
        let s = |v: &str| Some(v.to_string());
        assert_eq!(n("Maria Souza"), (s("Maria Souza"), None));
        assert_eq!(n("Zoë 😊 Müller-Lüdenscheidt 2nd"), (s("Zoë Müller-Lüdenscheidt"), None));
        assert_eq!(n("O’Brien"), (s("O'Brien"), None));
        assert_eq!(n("😊🎉 123"), (None, None));
        assert_eq!(n("   "), (None, None));
        let long = n("Maximiliana Alexandrovna Konstantinopolskaya-Smith Jr");
        assert_eq!(long.0, s("Maximiliana"));
        assert_eq!(long.1, s("Alexandrovna"), "whole words, at most 25 characters");
        let one = n("Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(one.0.map(|x| x.chars().count()), Some(25));
        for p in ["Zoë 😊 Müller-Lüdenscheidt 2nd", "a.b@c! d_e", "Ünïcödé Ñame — the “best”"] {
            let (a, b) = n(p);
            for part in [a, b].into_iter().flatten() {
                assert!(part.chars().count() <= 25, "{part}");
                assert!(part.chars().all(|c| c.is_alphabetic() || " -'".contains(c)), "{part}");
            }
        }
    }

    #[test]
    fn extensions_the_portal_shows() {
        assert_eq!(extension("image/jpeg"), Some("jpg"));
        assert_eq!(extension("image/jpeg; charset=binary"), Some("jpg"));
        assert_eq!(extension("image/webp"), Some("webp"));
        assert_eq!(extension("audio/ogg; codecs=opus"), Some("ogg"));
        assert_eq!(extension("video/mp4"), Some("mp4"));
        assert_eq!(extension("application/pdf"), Some("pdf"));
        assert_eq!(extension("application/zip"), Some("zip"));
        assert_eq!(extension("nonsense/nothing"), None);
    }

    #[test]
    fn what_the_portal_did_not_take() {
        assert_eq!(refusal(&json!({"SUCCESS": true, "session": {"ID": 1}})), None);
        assert_eq!(refusal(&json!({"session": {"ID": 1}})), None, "no per-message SUCCESS: the call succeeded");
        assert_eq!(
            refusal(&json!({"SUCCESS": false, "ERRORS": [{"code": "ERROR_CHAT", "message": "chat is closed"}]})),
            Some("ERROR_CHAT: chat is closed".into())
        );
        assert_eq!(refusal(&json!({"SUCCESS": true, "ERRORS": [{"code": "X"}]})), Some("X".into()), "errors win");
        assert_eq!(refusal(&json!({"SUCCESS": false})), Some("SUCCESS is false, no ERRORS given".into()));
        assert_eq!(refusal(&json!({"SUCCESS": "N"})), Some("SUCCESS is false, no ERRORS given".into()));
        assert_eq!(refusal(&json!(null)), Some("the answer has no result for the message".into()));
    }
}
