//! `crm.reply`: an operator's message in a contact-centre line (`ONIMCONNECTORMESSAGEADD`, bitrix24.md §2.8)
//! becomes sends to WhatsApp. A template command (`template-NAME+LANG+v1|v2 ...`) sends that approved
//! template; anything else is free-form text and files, allowed only inside the customer's 24-hour window.
//! A refusal is explained in the chat as a system message, and nothing reaches Meta.
//!
//! A reply that goes out also marks the customer's latest inbound message read at Meta (blue ticks; Meta marks the
//! earlier ones with it): a read mark ([`Origin::Read`]) committed with the reply's sends, queued after them, paced
//! with the number's other requests; once per inbound message, so a burst of replies sends one mark.

use std::sync::Arc;

use serde_json::{json, Value};

use super::lines::CrmLines;
use super::Bridge;
use crate::jobs::{Job, JobError};
use crate::outbound::{self, NewSend, Origin};
use crate::store::{contacts, messages, now_ms, phones};
use crate::translate::{bbcode, command, media_kind, template, window};

/// One operator message as the event carried it: the payload of a `crm.reply` job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub portal_id: i64,
    pub line: String,
    pub im_chat_id: String,
    pub im_message_id: String,
    /// Our external chat id (`chat.id`): the customer's key.
    pub chat_id: String,
    pub user_id: String,
    pub text: String,
    #[serde(default)]
    pub files: Vec<File>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct File {
    pub name: String,
    pub link: String,
    pub mime: Option<String>,
}

/// The order key of a reply's job: replies in one chat of one portal line take effect in the order they came.
pub fn order_key(portal_id: i64, r: &Reply) -> String {
    crate::jobs::Kind::CrmReply.key(format_args!("{portal_id}:{}:{}", r.line, r.chat_id))
}

pub async fn run(b: Arc<Bridge>, job: Job, r: Reply) -> Result<(), JobError> {
    if crate::jobs::earlier_in_order(&b.store, job.id).await? {
        // An earlier reply of this chat is still on its way (another worker, a retry): its sends go first.
        return Err(JobError::Defer {
            message: "an earlier reply in this chat is still on its way".into(),
            after: std::time::Duration::from_millis(200),
        });
    }
    if r.user_id == "0" {
        return Ok(()); // a system or automatic message of the portal, not for the customer
    }
    let Some(portal) = b.store.get_portal(r.portal_id).await? else { return Ok(()) };
    if !portal.active {
        return Ok(());
    }
    let Some(phone_id) = phones::id_on_line(&b.store, r.portal_id, &r.line).await? else {
        return Err(JobError::Permanent(format!("no phone is bound to line {} of this portal", r.line)));
    };
    let Some(phone) = b.store.get_phone(phone_id).await? else { return Ok(()) };
    let (contact_id, wa_id, last_inbound) = match contacts::find(&b.store, phone_id, &r.chat_id).await? {
        Some(c) => (Some(c.id), c.wa_id, c.last_inbound_at),
        None => (None, None, None),
    };
    let recipient = wa_id.unwrap_or_else(|| r.chat_id.clone());
    let (_, body) = bbcode::split_signature(&r.text);
    let text = bbcode::to_whatsapp(body).trim().to_string();

    let requests = match command::parse_chat(&text) {
        Some(Ok(cmd)) => {
            let defs = crate::templates::load(&b.store, phone.waba_id).await?;
            match template::from_command(&defs, &cmd) {
                Ok(t) => vec![json!({"type": "template", "template": t})],
                Err(e) => return refuse(&b, &r, &format!("The template was not sent: {e}")).await,
            }
        }
        Some(Err(e)) => return refuse(&b, &r, &format!("The template command was not understood: {e}")).await,
        None => match free_form_requests(&text, &r.files, last_inbound, now_ms()) {
            Ok(requests) => requests,
            Err(why) => return refuse(&b, &r, &why).await,
        },
    };
    if requests.is_empty() {
        return Ok(());
    }
    let origin_ref = json!({
        "portal_id": r.portal_id, "line": r.line, "im_chat_id": r.im_chat_id,
        "im_message_id": r.im_message_id, "chat_id": r.chat_id,
    });
    let turn = b.store.write_turn().await;
    let mut tx = b.store.begin_write().await?;
    for (i, request) in requests.into_iter().enumerate() {
        let send = NewSend {
            phone_id,
            recipient: recipient.clone(),
            origin: Origin::Crm,
            origin_ref: origin_ref.clone(),
            request,
            idempotency_key: Some(format!("crm:{}:{}:{}:{i}", r.portal_id, r.im_chat_id, r.im_message_id)),
            api_key_id: None,
        };
        outbound::enqueue_on(&mut tx, &send, b.config.job_max_attempts).await?;
    }
    if let Some(wamid) = latest_inbound(&mut tx, phone_id, contact_id).await? {
        let origin_ref = json!({"portal_id": r.portal_id, "line": r.line, "chat_id": r.chat_id,
                                "im_message_id": r.im_message_id});
        outbound::mark_read_on(&mut tx, phone_id, &recipient, &wamid, origin_ref, b.config.job_max_attempts).await?;
    }
    tx.commit().await?;
    drop(turn);
    Ok(())
}

/// What an operator's free-form message becomes at WhatsApp (pure): the Graph request bodies (a text, then one per
/// file: image, video, audio or document by MIME type and extension, documents with their file name), or, outside
/// the customer's 24-hour window, why nothing may go (`window::refusal`, shown to the operator).
pub fn free_form_requests(
    text: &str,
    files: &[File],
    last_inbound: Option<i64>,
    now: i64,
) -> Result<Vec<Value>, String> {
    let w = window::window(last_inbound, now);
    if !matches!(w, window::Window::Open { .. }) {
        return Err(window::refusal(&w, now));
    }
    let mut requests = Vec::new();
    if !text.is_empty() {
        requests.push(json!({"type": "text", "text": {"body": text, "preview_url": true}}));
    }
    for f in files {
        let kind = media_kind::media_kind(f.mime.as_deref(), &f.name);
        let mut media = json!({"link": f.link});
        if kind == media_kind::MediaKind::Document {
            media["filename"] = json!(f.name);
        }
        requests.push(json!({"type": kind.as_str(), kind.as_str(): media}));
    }
    Ok(requests)
}

/// The customer's latest inbound message on this number (Meta's time, then arrival order), if any.
async fn latest_inbound(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    phone_id: i64,
    contact_id: Option<i64>,
) -> Result<Option<String>, JobError> {
    let Some(contact_id) = contact_id else { return Ok(None) };
    Ok(messages::latest_inbound_on(tx, phone_id, contact_id).await?)
}

/// Tells the operator, in the chat, why their message did not go out.
async fn refuse(b: &Bridge, r: &Reply, text: &str) -> Result<(), JobError> {
    tracing::info!(portal = r.portal_id, line = %r.line, "operator message refused; explained in the chat");
    system_message(b, r.portal_id, &r.im_chat_id, text).await
}

/// A system message in an open-line chat (visible to operators; not sent to the customer).
pub async fn system_message(b: &Bridge, portal_id: i64, im_chat_id: &str, text: &str) -> Result<(), JobError> {
    Ok(b.lines.notice(portal_id, im_chat_id, text).await?)
}

/// A reply from a parsed `ONIMCONNECTORMESSAGEADD` message item (`bitrix::event`).
pub fn from_operator(portal_id: i64, line: &str, m: &crate::bitrix::event::OperatorMessage) -> Reply {
    Reply {
        portal_id,
        line: line.to_string(),
        im_chat_id: m.im_chat_id.clone(),
        im_message_id: m.im_message_id.clone(),
        chat_id: m.chat_id.clone(),
        user_id: m.user_id.clone(),
        text: m.text.clone(),
        files: m
            .files
            .iter()
            .map(|f| File { name: f.name.clone(), link: f.link.clone(), mime: f.mime.clone() })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{free_form_requests, File};
    use serde_json::json;

    #[test]
    fn an_operators_message_becomes_graph_requests_inside_the_window_only() {
        let now = 1_700_000_000_000;
        let files = vec![
            File { name: "photo.jpg".into(), link: "https://p/1".into(), mime: Some("image/jpeg".into()) },
            File { name: "offer.pdf".into(), link: "https://p/2".into(), mime: None },
        ];
        let r = free_form_requests("Olá *Maria*", &files, Some(now - 3_600_000), now).unwrap();
        assert_eq!(
            r,
            vec![
                json!({"type": "text", "text": {"body": "Olá *Maria*", "preview_url": true}}),
                json!({"type": "image", "image": {"link": "https://p/1"}}),
                json!({"type": "document", "document": {"link": "https://p/2", "filename": "offer.pdf"}}),
            ]
        );
        assert_eq!(free_form_requests("", &[], Some(now - 1_000), now).unwrap(), Vec::<serde_json::Value>::new());
        let closed = free_form_requests("hi", &[], Some(now - 25 * 3_600_000), now).unwrap_err();
        assert!(closed.contains("template"), "{closed}");
        assert!(free_form_requests("hi", &[], None, now).is_err(), "never wrote: no window");
    }
}
