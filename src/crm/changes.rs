//! Edits and deletions of customer messages already in the CRM (issue 12). A WhatsApp `edit` of a message we
//! delivered becomes `imconnector.update.messages` for it, a `revoke` becomes `imconnector.delete.messages`
//! (bitrix24.md §2.6: matched on the same external `message.id` — the original wamid — and `chat.id` used in
//! `imconnector.send.messages`). The edit or revoke itself stays stored as a message of its own (history keeps
//! it) and is marked as delivered once the portal took the change.
//!
//! When the original is not in the portal (never delivered, unknown to us, or the portal no longer has it), these
//! give `Ok(false)` and `crm.deliver` posts a readable line instead ("[edited] …", "[the customer deleted a
//! message]", see `translate::render`). A message the customer deleted before it reached the portal (both in one
//! webhook, or its delivery still retrying) is not delivered at all ([`revoked`]).

use serde_json::Value;

use super::lines::{At, CrmLines};
use super::Bridge;
use crate::jobs::JobError;
use crate::meta::webhook::{self, Content};
use crate::store::messages;
use crate::store::registry::Phone;
use crate::translate::render;

/// The change of one stored message (the edit or revoke) to make in the portal.
pub struct Change<'a> {
    /// `messages.id` of the edit or revoke.
    pub message_id: i64,
    pub phone: &'a Phone,
    pub contact_id: Option<i64>,
    pub portal_id: i64,
    pub line: &'a str,
    /// The customer's key: `user.id` and `chat.id` of the chat.
    pub key: &'a str,
}

/// A message of this customer that reached the portal.
struct Delivered {
    chat_id: Option<String>,
    crm_message_id: String,
    content: Option<Content>,
}

async fn delivered(b: &Bridge, c: &Change<'_>, wamid: &str) -> Result<Option<Delivered>, JobError> {
    let Some(row) = messages::inbound_in_crm(&b.store, c.phone.id, wamid).await? else { return Ok(None) };
    // Only the customer's own messages, and only those the portal has.
    if row.contact_id != c.contact_id {
        return Ok(None);
    }
    let Some(crm_message_id) = row.crm_message_id else { return Ok(None) };
    let content = row
        .raw
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
        .and_then(|v| webhook::parse_message(v).ok())
        .map(|m| m.content);
    Ok(Some(Delivered { chat_id: row.crm_chat_id, crm_message_id, content }))
}

impl Change<'_> {
    fn at(&self) -> At<'_> {
        At { portal_id: self.portal_id, line: self.line }
    }
}

/// The edit or revoke is done: recorded as delivered (against the original's portal message), so a rerun of
/// the job does nothing.
async fn mark_done(b: &Bridge, c: &Change<'_>, original: &Delivered) -> Result<(), JobError> {
    messages::set_crm_ids(&b.store, c.message_id, original.chat_id.as_deref(), &original.crm_message_id).await?;
    Ok(())
}

/// An edit of `original` (wamid) with the new content `new`: the portal's message gets the new text (its
/// files, if it had any, are sent again so they stay). `Ok(false)`: post a line instead.
pub async fn edit(b: &Bridge, c: &Change<'_>, original: &str, new: &Content) -> Result<bool, JobError> {
    let Some(d) = delivered(b, c, original).await? else { return Ok(false) };
    let text = render::edited_text(new);
    if text.is_empty() {
        return Ok(false);
    }
    let mut files = Vec::new();
    if let Some(content) = &d.content {
        // The portal's message keeps its attachment only if it is sent again; without it, a line instead.
        files = match super::deliver::files_for(b, c.phone, content).await {
            Ok(files) => files,
            Err(e) => {
                tracing::info!(message = c.message_id, error = %e, "the edited message's file is gone; posting a line");
                return Ok(false);
            }
        };
    }
    if !b.lines.edit(c.at(), c.key, original, &text, files).await? {
        return Ok(false);
    }
    // Quotes of the message from now on show what it says now.
    let plain = match new {
        Content::Text { body } => Some(body.clone()),
        other => other.media().and_then(|m| m.caption.clone()),
    };
    if let Some(body) = plain {
        messages::set_body(&b.store, c.phone.id, original, &body).await?;
    }
    mark_done(b, c, &d).await?;
    Ok(true)
}

/// A revoke of `original` (wamid): the portal's message is deleted. `Ok(false)`: post a line instead.
pub async fn revoke(b: &Bridge, c: &Change<'_>, original: &str) -> Result<bool, JobError> {
    let Some(d) = delivered(b, c, original).await? else { return Ok(false) };
    if !b.lines.delete(c.at(), c.key, original).await? {
        return Ok(false);
    }
    mark_done(b, c, &d).await?;
    Ok(true)
}

/// True when the customer deleted `wamid` (a stored revoke of this customer names it): a message not yet in
/// the portal is then not delivered at all.
pub async fn revoked(b: &Bridge, c: &Change<'_>, wamid: &str) -> Result<bool, JobError> {
    for raw in messages::revokes_of(&b.store, c.phone.id, c.contact_id).await? {
        let names = raw
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["revoke"]["original_message_id"].as_str() == Some(wamid));
        if names {
            return Ok(true);
        }
    }
    Ok(false)
}
