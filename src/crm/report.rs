//! `outbound.report`: tells whoever asked for a send what became of it.
//! - CRM chat: accepted or delivered → `imconnector.send.status.delivery` (clears the operator's spinner and
//!   stores our wamid as the message's external id), read → `imconnector.send.status.reading`, failed → a
//!   short system message in the chat saying why.
//! - SMS provider: `messageservice.message.status.update` with `sent`, `delivered`, `undelivered` (Meta took
//!   the message, then its status webhook said `failed`) or `failed` (Meta refused the send). Bitrix24 has no
//!   `read` (a read message is `delivered`), and marks a message `sent` itself when it hands it to us, so
//!   `queued` is never reported.
//! - API: nothing to call; the caller reads the send back.

use std::sync::Arc;

use serde_json::json;

use super::lines::{At, CrmLines, Mark, OperatorMessage};
use super::Bridge;
use crate::jobs::catalogue::OutboundReport;
use crate::jobs::{Job, JobError};
use crate::outbound;

pub async fn run(b: Arc<Bridge>, _job: Job, task: OutboundReport) -> Result<(), JobError> {
    let (id, event, reason) = (task.outbound_id, task.event.as_str(), task.reason.as_deref());
    let Some(out) = outbound::get(&b.store, id).await? else { return Ok(()) };
    let r = &out.origin_ref;
    let Some(portal_id) = r["portal_id"].as_i64() else { return Ok(()) };
    match b.store.get_portal(portal_id).await? {
        Some(p) if p.active => {}
        _ => return Ok(()), // uninstalled: nothing goes to that portal any more
    }
    match out.origin.as_str() {
        "crm" => {
            let line = r["line"].as_str().map(String::from).unwrap_or_else(|| r["line"].to_string());
            let at = At { portal_id, line: &line };
            let our_id = out.wamid.clone().unwrap_or_else(|| format!("wb-{id}"));
            let m = OperatorMessage {
                im_chat_id: &r["im_chat_id"],
                im_message_id: &r["im_message_id"],
                chat_id: &r["chat_id"],
                our_id: &our_id,
            };
            match event {
                "accepted" | "delivered" => b.lines.mark(at, m, Mark::Delivered).await?,
                "read" => b.lines.mark(at, m, Mark::Read).await?,
                "failed" | "undelivered" => {
                    let text = format!("Not delivered to WhatsApp: {}", reason.unwrap_or("Meta reported a failure"));
                    let chat =
                        r["im_chat_id"].as_str().map(String::from).unwrap_or_else(|| r["im_chat_id"].to_string());
                    super::reply::system_message(&b, portal_id, &chat, &text).await?;
                }
                _ => {}
            }
        }
        "sms" => {
            let status = match event {
                "accepted" | "sent" => "sent",
                "delivered" | "read" => "delivered",
                "failed" => "failed",
                "undelivered" => "undelivered",
                _ => return Ok(()),
            };
            let params = json!({"CODE": r["code"], "MESSAGE_ID": r["message_id"], "STATUS": status});
            b.bitrix.call(portal_id, "messageservice.message.status.update", &params).await?;
        }
        _ => {}
    }
    Ok(())
}
