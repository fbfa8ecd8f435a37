//! Every message wabridge sends to WhatsApp: operator replies, SMS-provider sends, API sends and
//! notifications. A send is an `outbound` row plus its `wa.send` job, committed together before the first
//! attempt ([`enqueue_on`]); the send dispatcher
//! ([`dispatch`], the job engine's lane for sends) paces it and sends it through the one sender ([`sender`]).
//!
//! States of an outbound row ([`SendState`]): `queued` (also while its request is out) → `accepted` (Meta gave a wamid) or
//! `failed` (a permanent error, with its reason); `unknown` when a request went out and no answer came (it may
//! have reached Meta), or an earlier attempt was started (`started`, marked before the request may go out) and
//! left no outcome: it waits `send_reconcile_seconds` for a status webhook carrying its
//! `biz_opaque_callback_data` before it is tried again. The outcome of an attempt commits together with its
//! job's end. `status` follows Meta's status webhooks (`sent`, `delivered`, `read`,
//! `failed`).

pub mod dispatch;
pub mod pace;
pub mod sender;

use serde::Serialize;
use serde_json::Value;
use sqlx::Any;
use utoipa::ToSchema;

use crate::jobs::catalogue::{OutboundReport, WaSend};
use crate::jobs::{Enqueue, Kind, Task};
use crate::store::{self, now_ms, StoreError};

/// Prefix of our `biz_opaque_callback_data`: `wb:<outbound id>`; Meta echoes it in status webhooks.
pub const OPAQUE_PREFIX: &str = "wb:";

/// Who asked for a send; decides where its outcome is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// An operator's reply in a CRM open line: outcomes go back to the chat.
    Crm,
    /// The CRM's SMS provider: outcomes go back with `messageservice.message.status.update`.
    Sms,
    /// `POST /api/v1/notifications`: outcomes are read back by the caller.
    Api,
    /// A reply typed into the web console's conversation page: its outcome shows in the conversation.
    Console,
    /// A read mark (`{"status": "read", "message_id": …}`), not a message: sent when an operator answers a
    /// customer (`crm.reply`), so the customer's messages show as read. Paced within the number's throughput
    /// like every request to `/messages`, but outside every rule about messages to a customer: no 24-hour window,
    /// no pair rate, no order among the customer's messages, no report to anyone (a permanent error is only
    /// recorded on the row), and no status webhook to reconcile an unanswered one from (it is simply sent again:
    /// marking read twice is harmless).
    Read,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Crm => "crm",
            Origin::Sms => "sms",
            Origin::Api => "api",
            Origin::Console => "console",
            Origin::Read => "read",
        }
    }

    /// The origin stored as `s` (`None` for a value this version does not know).
    pub fn parse(s: &str) -> Option<Origin> {
        [Origin::Crm, Origin::Sms, Origin::Api, Origin::Console, Origin::Read].into_iter().find(|o| o.as_str() == s)
    }

    /// A message to the customer (as opposed to a read mark): kept in order per customer and paced by the pair
    /// rate.
    pub fn is_message(self) -> bool {
        !matches!(self, Origin::Read)
    }

    /// Whoever asked wants to be told what became of it (CRM chats, the SMS provider); API callers read sends
    /// back, and read marks concern nobody.
    pub fn reports(self) -> bool {
        matches!(self, Origin::Crm | Origin::Sms)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a send stands (`outbound.state`). A request in flight leaves its send `queued`; the attempt is marked in
/// `started` first. (Versions before the send dispatcher had a `sending` state; migration 0012 made such rows
/// `unknown`, which is what they were.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendState {
    /// Not sent yet, or its request is out.
    Queued,
    /// A request went out and no answer came (or an attempt left no outcome): it waits for a status webhook.
    Unknown,
    /// Meta took it (a wamid), or took the read mark.
    Accepted,
    /// Will never go: refused by Meta, or given up on, with its reason.
    Failed,
}

impl SendState {
    pub fn as_str(self) -> &'static str {
        match self {
            SendState::Queued => "queued",
            SendState::Unknown => "unknown",
            SendState::Accepted => "accepted",
            SendState::Failed => "failed",
        }
    }

    /// The state stored as `s` (`None` for a value this version does not know).
    pub fn parse(s: &str) -> Option<SendState> {
        [SendState::Queued, SendState::Unknown, SendState::Accepted, SendState::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// Accepted or failed: nothing more happens to the send (statuses aside).
    pub fn is_over(self) -> bool {
        matches!(self, SendState::Accepted | SendState::Failed)
    }
}

impl std::fmt::Display for SendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A send to commit.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub phone_id: i64,
    /// The customer's WhatsApp id / number, digits only.
    pub recipient: String,
    pub origin: Origin,
    /// What the reporter needs (portal, chat and message ids, SMS message id, ...).
    pub origin_ref: Value,
    /// The Graph `/messages` body without `messaging_product`, `recipient_type` and `to` (added by the sender).
    pub request: Value,
    /// Requests with the same key are one send (a duplicated CRM event, a retried API call).
    pub idempotency_key: Option<String>,
    pub api_key_id: Option<i64>,
}

/// The result of committing a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// True when the idempotency key named an existing send; nothing new was queued.
    pub duplicate: bool,
}

/// Commits a send and its job on `tx` (part of the caller's transaction).
pub async fn enqueue_on(
    tx: &mut sqlx::Transaction<'static, Any>,
    send: &NewSend,
    max_attempts: i64,
) -> Result<Enqueued, StoreError> {
    let now = now_ms();
    if let Some(key) = &send.idempotency_key {
        if let Some(id) = store::outbound::id_by_idempotency_key_on(tx, key).await? {
            return Ok(Enqueued { id, duplicate: true });
        }
    }
    let id = store::outbound::insert_on(tx, send, now).await?;
    let key = Kind::WaSend.key(id);
    let opts = Enqueue {
        dedup_key: Some(&key),
        run_at: Some(now),
        lane: Some(send.phone_id),
        max_attempts: Some(max_attempts),
        order: None,
    };
    crate::jobs::enqueue(&mut **tx, &Task::WaSend(WaSend { outbound_id: id }), opts).await?;
    Ok(Enqueued { id, duplicate: false })
}

/// Commits on `tx` a read mark of the customer's inbound message `wamid` (Meta marks the customer's earlier
/// messages read with it): a send of its own ([`Origin::Read`]) with the request `{"status": "read",
/// "message_id": wamid}`, to `recipient` (the customer, for the listing; a read mark names no recipient at Meta).
/// One per inbound message (its idempotency key is `read:<phone>:<wamid>`), so a burst of replies to the same
/// latest message sends one mark, and the customer's last marked message is the newest `read` send of the
/// contact. Returns the send's id and whether it already existed.
pub async fn mark_read_on(
    tx: &mut sqlx::Transaction<'static, Any>,
    phone_id: i64,
    recipient: &str,
    wamid: &str,
    origin_ref: Value,
    max_attempts: i64,
) -> Result<Enqueued, StoreError> {
    let send = NewSend {
        phone_id,
        recipient: recipient.to_string(),
        origin: Origin::Read,
        origin_ref,
        request: serde_json::json!({"status": "read", "message_id": wamid}),
        idempotency_key: Some(format!("read:{phone_id}:{wamid}")),
        api_key_id: None,
    };
    enqueue_on(tx, &send, max_attempts).await
}

/// Commits a report job (deduplicated per send and event) for sends whose requester wants to be told
/// ([`Origin::reports`]: CRM chats and the SMS provider); API sends are read back by their caller and read marks
/// concern nobody, so they add nothing.
pub async fn report_on<'c, E>(
    conn: E,
    origin: Origin,
    outbound_id: i64,
    event: &str,
    reason: Option<&str>,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    if !origin.reports() {
        return Ok(());
    }
    let task = Task::OutboundReport(OutboundReport {
        outbound_id,
        event: event.to_string(),
        reason: reason.map(str::to_string),
    });
    let key = format!("report:{outbound_id}:{event}");
    crate::jobs::enqueue(conn, &task, Enqueue { dedup_key: Some(&key), ..Enqueue::default() }).await?;
    Ok(())
}

/// An outbound row as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Outbound {
    pub id: i64,
    pub phone_id: i64,
    pub recipient: String,
    pub origin: Origin,
    #[schema(value_type = Object)]
    pub origin_ref: Value,
    #[schema(value_type = Object)]
    pub request: Value,
    pub state: SendState,
    pub wamid: Option<String>,
    /// Meta's latest status: `sent`, `delivered`, `read` or `failed`.
    pub status: Option<String>,
    pub error_code: Option<i64>,
    pub error_text: Option<String>,
    pub attempts: i64,
    /// How many times this send went out again after its answer never came and no status webhook said, within
    /// `send_reconcile_seconds`, whether Meta had it: each such resend may have reached the customer twice.
    pub resent_unconfirmed: i64,
    /// Attempts started (marked before their request may go out); more than `attempts` after a crash means an
    /// attempt may have reached Meta without its outcome being recorded.
    #[serde(skip)]
    pub started: i64,
    #[serde(skip)]
    pub unknown_since: Option<i64>,
    #[serde(skip)]
    pub api_key_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub updated_at_ms: i64,
}

impl Outbound {
    /// True for a read mark ([`Origin::Read`]) rather than a message to the customer.
    pub fn is_read_mark(&self) -> bool {
        self.origin == Origin::Read
    }
}

pub use crate::store::outbound::{get, get_many_with_blocker, list, mark_started_on};

/// Called inside the transaction that records a status webhook: ties the status to our send (by wamid, or
/// by `biz_opaque_callback_data` when the send's answer never came), moves its status forward and queues
/// the report. Returns true when the status belonged to one of our sends.
pub async fn on_status(
    tx: &mut sqlx::Transaction<'static, Any>,
    wamid: &str,
    opaque: Option<&str>,
    status: &str,
    rank: i64,
    error: Option<(i64, String)>,
) -> Result<bool, StoreError> {
    let by_opaque = opaque.and_then(|o| o.strip_prefix(OPAQUE_PREFIX)).and_then(|id| id.parse::<i64>().ok());
    let Some(target) = store::outbound::status_target_on(tx, wamid, by_opaque).await? else { return Ok(false) };
    let (id, current) = (target.id, target.status);
    let now = now_ms();
    // Not over: the request may still be waiting for its answer (`queued`), or its answer was lost (`unknown`);
    // either way Meta took the message.
    if !target.state.is_over() {
        // The answer to our request was lost, but Meta took the message: reconciled, never resent.
        store::outbound::confirm_on(tx, id, wamid, now).await?;
        tracing::info!(outbound = id, "a send whose answer was lost is confirmed by a status webhook");
    }
    let current_rank = current.as_deref().map(status_rank).unwrap_or(0);
    if current.as_deref() == Some("failed") || rank <= current_rank {
        return Ok(true);
    }
    store::outbound::set_status_on(tx, id, status, error.as_ref().map(|(c, t)| (*c, t.as_str())), now).await?;
    let reason = error.as_ref().map(|(c, t)| format!("{} ({c}: {t})", crate::meta::errors::explain(*c)));
    // Meta took the message and then could not deliver it: `undelivered` (a send Meta refused is `failed`).
    let event = if status == "failed" { "undelivered" } else { status };
    report_on(&mut **tx, target.origin, id, event, reason.as_deref()).await?;
    Ok(true)
}

fn status_rank(s: &str) -> i64 {
    match s {
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "played" => 4,
        "failed" => 5,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::{Origin, SendState};

    #[test]
    fn states_round_trip_and_only_accepted_and_failed_are_over() {
        for st in [SendState::Queued, SendState::Unknown, SendState::Accepted, SendState::Failed] {
            assert_eq!(SendState::parse(st.as_str()), Some(st));
            assert_eq!(st.is_over(), matches!(st, SendState::Accepted | SendState::Failed));
        }
        assert_eq!(SendState::parse("sending"), None, "not written since the send dispatcher; migration 0012");
        assert_eq!(format!("{:<9}|", SendState::Queued), "queued   |");
    }

    #[test]
    fn origins_round_trip_and_only_messages_to_requesters_are_reported() {
        for o in [Origin::Crm, Origin::Sms, Origin::Api, Origin::Console, Origin::Read] {
            assert_eq!(Origin::parse(o.as_str()), Some(o));
        }
        assert_eq!(Origin::parse("other"), None);
        assert!(Origin::Crm.reports() && Origin::Sms.reports());
        assert!(!Origin::Api.reports() && !Origin::Read.reports() && !Origin::Console.reports());
        assert!(Origin::Console.is_message());
        assert!(Origin::Crm.is_message() && !Origin::Read.is_message());
    }
}
