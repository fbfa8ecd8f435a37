//! The one sender: what every send goes through. Pure decisions ([`admit`]: may a leased send go out now?),
//! the attempt itself ([`Sender::attempt`]: the Graph request, its answer classified by `meta::errors`), and
//! recording an outcome on a transaction ([`record_on`]: the outbound row, its report and its job's end commit
//! together). The send dispatcher (`dispatch.rs`) leases, paces and calls these.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Any;

use super::{Outbound, SendState, OPAQUE_PREFIX};
use crate::channel::meta::MetaCloud;
use crate::channel::{Channel, Number, SendClass, Sent};
use crate::config::Config;
use crate::jobs::{self, Job, JobError};
use crate::store::{self, Store, StoreError};

/// The Graph client and the settings every attempt needs.
pub struct Sender {
    channel: MetaCloud,
    timeout: Duration,
    pub reconcile_ms: i64,
    pub pair_interval_ms: i64,
    pub pair_burst: u32,
}

/// How long a send waits behind an earlier message to the same customer before it looks again.
pub const ORDER_WAIT: Duration = Duration::from_millis(250);
/// How long sends of a WABA whose token Meta refused wait before they look again (a new token makes them due
/// at once, see [`resume_waba`]).
pub const PAUSE_WAIT: Duration = Duration::from_secs(300);

/// What becomes of a leased send: the result of an attempt, or a decision taken without one.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Meta took it.
    Accepted { wamid: String },
    /// Meta took a read mark (`{"success": true}`: no wamid, no status webhooks, nothing to report).
    Marked,
    /// The request went out and no answer came: it may have reached Meta.
    Unknown { reason: String },
    /// Worth trying again (throughput, pair rate, 5xx, connection), after `after` if Meta said.
    Retry { code: Option<i64>, reason: String, after: Option<Duration> },
    /// Meta refused the token (190): the WABA's sends pause.
    Paused { code: i64, reason: String, waba_id: i64 },
    /// Will never succeed; reported to whoever asked.
    Failed { code: Option<i64>, reason: String },
    /// Not now, without spending an attempt. With `unknown`, an earlier attempt left no outcome, so the row
    /// becomes `unknown` and waits for a status webhook first. With `unstart`, the send was marked started but
    /// never went out: the mark is taken back.
    Wait { message: String, after: Duration, unknown: bool, unstart: bool },
    /// Already accepted or failed (a webhook confirmed it, or another process finished it): the job just ends.
    Settled,
}

impl Outcome {
    /// True when the send is over (its successors to the same customer may go).
    pub fn is_final(&self) -> bool {
        matches!(self, Outcome::Accepted { .. } | Outcome::Marked | Outcome::Failed { .. } | Outcome::Settled)
    }
}

/// May a leased send go out now? `None`: yes. Pure: the row as stored, the time and the reconcile window. (A
/// paused WABA's sends are not leased at all; see `dispatch.rs`.)
pub fn admit(out: &Outbound, now: i64, reconcile_ms: i64) -> Option<Outcome> {
    match out.state {
        SendState::Accepted | SendState::Failed => return Some(Outcome::Settled),
        // A read mark has no status webhook to reconcile an unanswered attempt from, and marking read twice is
        // harmless: it simply goes again.
        _ if out.is_read_mark() => {}
        // A request went out and its answer was lost: wait for a status webhook to say whether Meta took it before
        // sending again.
        SendState::Unknown => {
            let since = out.unknown_since.unwrap_or(out.updated_at_ms);
            let left = since + reconcile_ms - now;
            if left > 0 {
                return Some(Outcome::Wait {
                    message: "waiting for a status webhook to tell whether an unanswered send reached Meta".into(),
                    after: Duration::from_millis(left as u64),
                    unknown: false,
                    unstart: false,
                });
            }
        }
        // Every attempt is marked started before its request may go out, and records its outcome (counting it in
        // `attempts`) in the same commit as its job's end. More started than recorded: the process died while a
        // request may have been out, so it is treated as unanswered.
        _ if out.started > out.attempts => {
            return Some(Outcome::Wait {
                message: "an earlier attempt may have reached Meta; reconciling from status webhooks".into(),
                after: Duration::from_millis(reconcile_ms.max(0) as u64),
                unknown: true,
                unstart: false,
            })
        }
        _ => {}
    }
    None
}

impl Sender {
    pub fn new(config: &Config) -> Sender {
        Sender {
            channel: MetaCloud::from_config(config),
            timeout: Duration::from_millis(config.send_timeout_ms),
            reconcile_ms: config.send_reconcile_seconds as i64 * 1000,
            pair_interval_ms: config.send_pair_interval_ms as i64,
            pair_burst: config.send_pair_burst,
        }
    }

    /// One attempt: the Graph request and its answer, classified. `attempts` counts this one.
    pub async fn attempt(&self, out: &Outbound, ctx: &Context, attempts: i64) -> Outcome {
        let Some(token) = ctx.token.as_deref() else {
            return Outcome::Failed {
                code: None,
                reason: "no access token is configured for this number's WABA or app".into(),
            };
        };
        let body = graph_body(out);
        let from = Number { id: &ctx.phone_number_id, token };
        let sent = if out.is_read_mark() {
            self.channel.mark_read(from, &body, self.timeout, attempts).await
        } else {
            self.channel.send(from, &body, self.timeout, attempts).await
        };
        outcome_of(sent, ctx.waba_id)
    }
}

/// The sender's outcome for what the channel said (pure).
pub fn outcome_of(sent: Sent, waba_id: i64) -> Outcome {
    match sent {
        Sent::Accepted { id } => Outcome::Accepted { wamid: id },
        Sent::Marked => Outcome::Marked,
        Sent::Unanswered { reason } => Outcome::Unknown { reason },
        Sent::Unreachable { reason } => Outcome::Retry { code: None, reason, after: None },
        Sent::Refused(r) => match r.class {
            SendClass::Retry { after, reason } => {
                Outcome::Retry { code: r.code, reason: format!("{reason} ({})", r.detail), after }
            }
            SendClass::TokenInvalid { code, reason } => Outcome::Paused { code, reason, waba_id },
            SendClass::Permanent { code, reason } => {
                let detail = r.details.map(|d| format!(": {d}")).unwrap_or_default();
                Outcome::Failed { code: Some(code), reason: format!("{reason} (Meta error {code}{detail})") }
            }
        },
    }
}

/// Records what became of a leased send on `tx`: the outbound row, the report to whoever asked, and the job's
/// end (done, retried with backoff, put off, or dead), so they commit together. Returns the job's outcome.
pub async fn record_on(
    tx: &mut sqlx::Transaction<'static, Any>,
    owner: &str,
    job: &Job,
    out: &Outbound,
    outcome: &Outcome,
    reconcile_ms: i64,
    now: i64,
) -> Result<jobs::Outcome, StoreError> {
    let id = out.id;
    let result = match outcome {
        Outcome::Accepted { wamid } => {
            // Not over a webhook's confirmation, nor a failure recorded meanwhile.
            store::outbound::accept_on(tx, id, Some(wamid), now).await?;
            super::report_on(&mut **tx, out.origin, id, "accepted", None).await?;
            Ok(())
        }
        Outcome::Marked => {
            // A read mark: over, with nothing to report and no wamid of its own.
            store::outbound::accept_on(tx, id, None, now).await?;
            Ok(())
        }
        Outcome::Unknown { reason } => {
            // Only from `queued`: a status webhook may already have confirmed it (`accepted`) while we waited.
            store::outbound::unanswered_on(tx, id, &format!("no answer from Meta: {reason}"), now).await?;
            tracing::warn!(outbound = id, %reason, "send unanswered; waiting for a status webhook before any retry");
            Err(JobError::Defer {
                message: format!("no answer from Meta ({reason}); reconciling from status webhooks"),
                after: Duration::from_millis(reconcile_ms.max(0) as u64),
            })
        }
        Outcome::Retry { code, reason, after } => {
            if job.attempts >= job.max_attempts {
                let reason = format!("gave up after {} attempts: {reason}", job.attempts);
                fail_on(tx, out, *code, &reason, now).await?;
                Err(JobError::Permanent(reason))
            } else {
                store::outbound::set_state_on(tx, id, SendState::Queued, *code, reason, 1, now).await?;
                Err(JobError::Retry { message: reason.clone(), after: *after })
            }
        }
        Outcome::Paused { code, reason, waba_id } => {
            pause_waba_on(&mut **tx, *waba_id, &format!("{reason} (Meta error {code})")).await?;
            // The attempt is recorded (it went out, Meta refused the token); the job spends none while paused.
            store::outbound::set_state_on(tx, id, SendState::Queued, Some(*code), reason, 1, now).await?;
            Err(JobError::Defer { message: format!("sends paused: {reason}"), after: PAUSE_WAIT })
        }
        Outcome::Failed { code, reason } => {
            fail_on(tx, out, *code, reason, now).await?;
            Ok(())
        }
        Outcome::Wait { message, after, unknown, unstart } => {
            if *unstart {
                store::outbound::unstart_on(tx, id).await?;
            }
            if *unknown {
                store::outbound::left_unknown_on(tx, id, now).await?;
                tracing::warn!(outbound = id, "an earlier attempt left no outcome; waiting for a status webhook first");
            }
            Err(JobError::Defer { message: message.clone(), after: *after })
        }
        Outcome::Settled => Ok(()),
    };
    jobs::record_on(&mut **tx, owner, job, result, now).await
}

/// A permanent failure: recorded with its reason and reported to whoever asked.
async fn fail_on(
    tx: &mut sqlx::Transaction<'static, Any>,
    out: &Outbound,
    code: Option<i64>,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    store::outbound::set_state_on(tx, out.id, SendState::Failed, code, reason, 1, now).await?;
    super::report_on(&mut **tx, out.origin, out.id, "failed", Some(reason)).await?;
    if out.origin.is_message() {
        let data = crate::events::send_failed(out.id, &out.recipient, out.origin.as_str(), code, reason);
        crate::events::emit_for_phone_on(tx, crate::events::EventType::SendFailed, out.phone_id, data).await?;
    }
    tracing::info!(outbound = out.id, code, "send failed permanently");
    Ok(())
}

/// The full Graph body of a send. A read mark is its request with `messaging_product` only (no recipient, no
/// `biz_opaque_callback_data`: Meta sends no status webhooks for it).
pub fn graph_body(out: &Outbound) -> Value {
    if out.is_read_mark() {
        let mut body = json!({"messaging_product": "whatsapp"});
        if let (Some(b), Some(r)) = (body.as_object_mut(), out.request.as_object()) {
            for (k, v) in r {
                b.insert(k.clone(), v.clone());
            }
        }
        return body;
    }
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": format!("+{}", out.recipient.trim_start_matches('+'))});
    if let (Some(b), Some(r)) = (body.as_object_mut(), out.request.as_object()) {
        for (k, v) in r {
            b.insert(k.clone(), v.clone());
        }
        b.insert("biz_opaque_callback_data".into(), json!(format!("{OPAQUE_PREFIX}{}", out.id)));
    }
    body
}

/// What sending from one number needs, loaded for every number at once (one query) and kept by the dispatcher.
#[derive(Debug, Clone)]
pub struct Context {
    pub phone_number_id: String,
    pub mps: u32,
    pub waba_id: i64,
    pub token: Option<String>,
    /// The token as stored (sealed): a changed one is opened again.
    sealed: Option<String>,
    pub paused: Option<String>,
}

#[cfg(test)]
impl Context {
    /// A number sending at `mps` for WABA `waba_id`, with a token.
    pub(crate) fn for_tests(mps: u32, waba_id: i64) -> Context {
        Context {
            phone_number_id: "1000".into(),
            mps,
            waba_id,
            token: Some("token".into()),
            sealed: None,
            paused: None,
        }
    }
}

/// Loads every number's [`Context`]. Tokens unchanged since `previous` are not opened again.
pub async fn load_contexts(
    store: &Store,
    previous: &std::collections::HashMap<i64, std::sync::Arc<Context>>,
) -> Result<std::collections::HashMap<i64, std::sync::Arc<Context>>, StoreError> {
    let phones = store::outbound::phones_sending(store).await?;
    let mut out = std::collections::HashMap::with_capacity(phones.len());
    for p in phones {
        let (field, sealed) = p.token;
        let token = match previous.get(&p.phone_id) {
            Some(c) if c.sealed == sealed => c.token.clone(),
            _ => store.open_opt(field, sealed.clone())?,
        };
        let ctx = Context {
            phone_number_id: p.phone_number_id,
            mps: p.throughput_mps.clamp(1, 1000) as u32,
            waba_id: p.waba_id,
            token,
            sealed,
            paused: p.paused,
        };
        out.insert(p.phone_id, std::sync::Arc::new(ctx));
    }
    Ok(out)
}

/// Pauses every send of a WABA (its token was refused) and raises the alert: an ERROR log, the
/// `wabridge_waba_sends_paused` gauge, and the pause shown on the WABA in the admin API. Changing the WABA's
/// or app's token through the admin API or CLI lifts it.
async fn pause_waba_on<'c, E>(conn: E, waba_id: i64, reason: &str) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    if store::outbound::pause_waba_on(conn, waba_id, reason).await? {
        tracing::error!(waba = waba_id, %reason, "ALERT: Meta refused the access token; sends of this WABA are paused until the token is replaced");
    }
    Ok(())
}

/// Lifts a pause (after a token change) and makes the WABA's waiting sends due now.
pub async fn resume_waba(store: &Store, waba_id: i64) -> Result<(), crate::store::StoreError> {
    if store::outbound::unpause_waba(store, waba_id).await? {
        store::jobs::make_waba_lanes_due(store, waba_id).await?;
        tracing::info!(waba = waba_id, "sends resumed after a token change");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, attempts: i64, unknown_since: Option<i64>) -> Outbound {
        Outbound {
            id: 7,
            phone_id: 1,
            recipient: "5511987654321".into(),
            origin: crate::outbound::Origin::Api,
            origin_ref: Value::Null,
            request: json!({"type": "text", "text": {"body": "hi"}}),
            state: SendState::parse(state).expect("a state"),
            wamid: None,
            status: None,
            error_code: None,
            error_text: None,
            attempts,
            resent_unconfirmed: 0,
            started: attempts,
            unknown_since,
            api_key_id: None,
            created_at: String::new(),
            updated_at: String::new(),
            updated_at_ms: 0,
        }
    }

    fn started(mut r: Outbound, started: i64) -> Outbound {
        r.started = started;
        r
    }

    #[test]
    fn a_queued_send_with_an_outcome_for_every_started_attempt_goes() {
        assert_eq!(admit(&row("queued", 0, None), 1_000, 300_000), None);
        assert_eq!(admit(&started(row("queued", 2, None), 2), 1_000, 300_000), None);
    }

    #[test]
    fn an_attempt_that_left_no_outcome_is_reconciled_not_resent() {
        // Marked started, but no outcome recorded (the process died while the request may have been out).
        let Some(Outcome::Wait { after, unknown, .. }) = admit(&started(row("queued", 0, None), 1), 1_000, 300_000)
        else {
            panic!("must wait")
        };
        assert!(unknown);
        assert_eq!(after, Duration::from_secs(300));
    }

    #[test]
    fn an_unanswered_send_waits_out_the_reconcile_window_then_goes() {
        let r = started(row("unknown", 1, Some(10_000)), 1);
        let Some(Outcome::Wait { after, unknown, .. }) = admit(&r, 70_000, 300_000) else { panic!() };
        assert!(!unknown);
        assert_eq!(after, Duration::from_millis(240_000));
        assert_eq!(admit(&r, 310_000, 300_000), None);
    }

    #[test]
    fn finished_sends_just_end() {
        assert_eq!(admit(&row("accepted", 1, None), 0, 300_000), Some(Outcome::Settled));
        assert_eq!(admit(&row("failed", 1, None), 0, 300_000), Some(Outcome::Settled));
        assert!(Outcome::Accepted { wamid: "w".into() }.is_final());
        assert!(!Outcome::Retry { code: Some(130429), reason: String::new(), after: None }.is_final());
    }

    fn read_mark(state: &str, attempts: i64, started: i64) -> Outbound {
        let mut r = row(state, attempts, Some(10_000));
        r.origin = crate::outbound::Origin::Read;
        r.request = json!({"status": "read", "message_id": "wamid.IN"});
        r.started = started;
        r
    }

    #[test]
    fn an_unanswered_read_mark_goes_again_without_waiting_for_a_status_webhook() {
        // No status webhook ever comes for a read mark, and marking read twice is harmless.
        assert_eq!(admit(&read_mark("queued", 0, 1), 1_000, 300_000), None);
        assert_eq!(admit(&read_mark("unknown", 1, 1), 11_000, 300_000), None);
        assert_eq!(admit(&read_mark("accepted", 1, 1), 0, 300_000), Some(Outcome::Settled));
        assert!(Outcome::Marked.is_final());
    }

    #[test]
    fn a_read_mark_body_names_the_message_and_no_recipient() {
        let b = graph_body(&read_mark("queued", 0, 0));
        assert_eq!(b, json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"}));
    }

    #[test]
    fn the_graph_body_carries_the_recipient_and_our_opaque_id() {
        let b = graph_body(&row("queued", 0, None));
        assert_eq!(b["to"], "+5511987654321");
        assert_eq!(b["biz_opaque_callback_data"], "wb:7");
        assert_eq!(b["messaging_product"], "whatsapp");
        assert_eq!(b["text"]["body"], "hi");
    }
}
