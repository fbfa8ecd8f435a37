//! `crm.deliver`: one inbound WhatsApp message into the customer's chat on the phone's CRM line, through the CRM
//! seam (`crm/lines.rs`; Bitrix24: `imconnector.send.messages`, bitrix24.md §2.5). One chat per customer per
//! line, named by the customer's key (WhatsApp id, or business-scoped user id when the number is hidden). The
//! CRM's chat id and session are stored against the customer, and its message ids against the `wamid`. This job
//! decides (order, the attempt recorded before the post, the recheck, what is stored); the seam only calls.

use std::sync::Arc;

use serde_json::Value;

use super::lines::{At, ClientMessage, CrmLines, File, KnownChat, Posted, Recheck};
use super::{changes, media, set_connector, Bridge};
use crate::jobs::catalogue::{CrmBind, CrmDeliver};
use crate::jobs::{Enqueue, Job, JobError, Kind, Task};
use crate::meta::webhook;
use crate::store::phones::ConnectorStatus;
use crate::store::registry::Phone;
use crate::store::{crm_chats, inbox, messages, now_ms, outbound, StoreError};
use crate::translate::render;

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
    if let Some(wait) = must_wait(&b, job.id, row.arrival).await? {
        return Err(wait);
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
        match already_in_portal(&b, At { portal_id, line: &line }, phone_id, &key, &wamid).await {
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
    // Recorded before the call: whatever happens next, a later run knows this one may have reached the portal.
    set_attempt(&b, message_id, Some(now_ms())).await?;
    if resent_uncertain {
        messages::count_crm_resent_uncertain(&b.store, message_id).await?;
    }
    let at = At { portal_id, line: &line };
    match b.lines.post(at, item).await {
        Ok(Posted::Taken { message, chat_id, session_id }) => {
            record_delivered(&b, message_id, phone_id, &key, portal_id, &line, chat_id, session_id, &message).await?;
            Ok(())
        }
        Ok(Posted::NotTaken(reason)) => {
            // Not in the portal: never recorded as delivered. Retried with backoff; dead after the job's
            // attempts, with the portal's reason as its last error (GET /admin/api/v1/jobs?state=dead).
            set_attempt(&b, message_id, None).await?;
            Err(JobError::retry(format!("the portal did not take the message: {reason}")))
        }
        Ok(Posted::LineGone(reason)) => {
            // The line or the connector on it went away: show it and bind again.
            set_attempt(&b, message_id, None).await?;
            set_connector(&b.store, phone_id, ConnectorStatus::Error, Some(&reason)).await?;
            b.store.enqueue(&Task::CrmBind(CrmBind { phone_id }), Enqueue::default()).await?;
            Err(JobError::retry("the portal says the line is not active; binding it again"))
        }
        Err(e) => {
            if !e.may_have_reached {
                set_attempt(&b, message_id, None).await?;
            }
            Err(e.into())
        }
    }
}

/// One customer's messages reach the chat in the order they arrived: a delivery (job `job_id`, the message's
/// `arrival`) waits while an earlier webhook of the app is not processed yet (it may hold an earlier message of
/// this chat), then while an earlier message of the chat is still on its way (its job is before this one in the
/// chat's order). `Some(defer)` while it must.
pub async fn must_wait(b: &Bridge, job_id: i64, arrival: Option<i64>) -> Result<Option<JobError>, StoreError> {
    if let Some(arrival) = arrival {
        let inbox_id = arrival / crate::inbound::ARRIVAL_SLOTS;
        if inbox::earlier_unprocessed(&b.store, inbox_id, unprocessed_since()).await? {
            return Ok(Some(wait_for_webhook()));
        }
    }
    if crate::jobs::earlier_in_order(&b.store, job_id).await? {
        return Ok(Some(wait_for_earlier()));
    }
    Ok(None)
}

/// Unprocessed webhooks received since then hold back later deliveries of their app.
pub(crate) fn unprocessed_since() -> i64 {
    now_ms() - UNPROCESSED_HOLD_MS
}

/// The defer of a delivery behind an earlier webhook of its app that is not processed yet.
pub(crate) fn wait_for_webhook() -> JobError {
    JobError::Defer {
        message: "an earlier webhook is not processed yet".into(),
        after: std::time::Duration::from_millis(50),
    }
}

/// The defer of a delivery behind an earlier message of its customer that is still on its way.
pub(crate) fn wait_for_earlier() -> JobError {
    JobError::Defer {
        message: "an earlier message of this customer is still on its way to the CRM".into(),
        after: std::time::Duration::from_millis(200),
    }
}

/// How long an unprocessed earlier webhook holds back deliveries: one that has failed for this long (its job
/// retrying or dead) no longer does.
const UNPROCESSED_HOLD_MS: i64 = 10 * 60_000;

fn outcome(o: &str) -> crate::metrics::OutcomeLabels {
    crate::metrics::OutcomeLabels { outcome: o.to_string() }
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

/// Asks the CRM whether the customer's chat holds our message (`wamid`). The chat is known once an earlier
/// message of the customer reached it.
async fn already_in_portal(b: &Bridge, at: At<'_>, phone_id: i64, key: &str, wamid: &str) -> Recheck {
    let chat = match crm_chats::get(&b.store, phone_id, key).await {
        Ok(Some(c)) => c,
        Ok(None) => return Recheck::CannotTell("no chat of this customer is known yet".into()),
        Err(e) => return Recheck::CannotTell(e.to_string()),
    };
    let crm_chats::CrmChat { chat_id: Some(chat_id), session_id } = chat else {
        return Recheck::CannotTell("no chat of this customer is known yet".into());
    };
    b.lines.find(at, KnownChat { chat_id: &chat_id, session_id: session_id.as_deref() }, wamid).await
}

/// The attachment of a media message, as `message.files` takes it: kept locally first unless the phone proxies
/// files; a fresh signed link each time.
pub async fn files_for(b: &Bridge, phone: &Phone, content: &webhook::Content) -> Result<Vec<File>, JobError> {
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
        files.push(File { url, name });
    }
    Ok(files)
}

pub async fn quoted_text(b: &Bridge, wamid: &str) -> Result<Option<String>, StoreError> {
    Ok(match messages::quoted(&b.store, wamid).await? {
        Some(q) => Some(q.body.unwrap_or_else(|| format!("[{}]", q.msg_type))),
        // A message we sent: its text is in the send's request.
        None => outbound::request_by_wamid(&b.store, wamid).await?.map(|v| match v["text"]["body"].as_str() {
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

/// Queues delivery of a new inbound message `message_id` of a phone bound to a portal (called inside the inbox
/// transaction that stored it, so a message is queued for the CRM exactly when it is first stored). The job is
/// ordered within its chat by the message's `arrival` ([`order_key`]).
pub async fn enqueue_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    phone_id: i64,
    contact_id: Option<i64>,
    message_id: i64,
    arrival: Option<i64>,
) -> Result<(), StoreError> {
    let key = order_key(phone_id, contact_id, message_id);
    let order = crate::jobs::Order { key: &key, seq: arrival };
    let task = Task::CrmDeliver(CrmDeliver { message_id });
    crate::jobs::enqueue(&mut **tx, &task, Enqueue { order: Some(order), ..Enqueue::default() }).await?;
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
    use super::extension;

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
}
