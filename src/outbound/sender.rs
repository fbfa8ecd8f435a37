//! The one sender: the `wa.send` job handler. Decides (pacing, order, window of a lost answer), sends
//! through the Graph client, classifies the answer (`meta::errors`) and records the outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;

use super::pace::{PairPacer, PhonePacer, Verdict};
use super::{Outbound, OPAQUE_PREFIX};
use crate::config::Config;
use crate::jobs::{Job, JobError};
use crate::meta::errors::{classify, SendClass};
use crate::meta::graph;
use crate::store::{now_ms, Store};

/// Shared by every `wa.send` job of a process.
pub struct Sender {
    store: Store,
    graph: graph::Client,
    phones: Mutex<PhonePacer>,
    pairs: Mutex<PairPacer>,
    timeout: Duration,
    reconcile_ms: i64,
    pair_interval_ms: i64,
    pair_burst: u32,
}

/// How long a send waits behind an earlier message to the same customer before it looks again.
const ORDER_WAIT: Duration = Duration::from_millis(250);
/// How long sends of a WABA whose token Meta refused wait before they look again (a new token makes them due
/// at once, see [`resume_waba`]).
const PAUSE_WAIT: Duration = Duration::from_secs(300);

impl Sender {
    pub fn new(store: Store, config: &Config) -> Arc<Sender> {
        Arc::new(Sender {
            store,
            graph: graph::Client::from_config(config),
            phones: Mutex::new(PhonePacer::default()),
            pairs: Mutex::new(PairPacer::default()),
            timeout: Duration::from_millis(config.send_timeout_ms),
            reconcile_ms: config.send_reconcile_seconds as i64 * 1000,
            pair_interval_ms: config.send_pair_interval_ms as i64,
            pair_burst: config.send_pair_burst,
        })
    }

    pub async fn handle(self: Arc<Self>, job: Job) -> Result<(), JobError> {
        let id = serde_json::from_str::<Value>(&job.payload)
            .ok()
            .and_then(|v| v["outbound_id"].as_i64())
            .ok_or_else(|| JobError::Permanent(format!("payload {:?} names no outbound_id", job.payload)))?;
        let Some(out) = super::get(&self.store, id).await? else {
            return Err(JobError::Permanent(format!("outbound {id} does not exist")));
        };
        let now = now_ms();
        match out.state.as_str() {
            "accepted" | "failed" => return Ok(()),
            // A request went out and its answer was lost (or the process died while sending): wait for a status
            // webhook to say whether Meta took it before sending again.
            "unknown" | "sending" => {
                let since = out.unknown_since.unwrap_or(out.updated_at_ms);
                let left = since + self.reconcile_ms - now;
                if left > 0 {
                    return Err(JobError::Defer {
                        message: "waiting for a status webhook to tell whether an unanswered send reached Meta".into(),
                        after: Duration::from_millis(left as u64),
                    });
                }
                tracing::warn!(outbound = id, "no status webhook for an unanswered send; sending it again");
            }
            _ => {}
        }
        // Every attempt that reached the request records its outcome (and counts it in `outbound.attempts`) in the
        // same commit as its job's end. A lease of this job whose attempt left no outcome (the process died while
        // the request was out) may have reached Meta: it is treated as unanswered.
        if out.state == "queued" && job.attempts - 1 > out.attempts {
            sqlx::query(
                "UPDATE outbound SET state = 'unknown', unknown_since = $2, updated_at = $2 WHERE id = $1 AND state = 'queued'",
            )
            .bind(id)
            .bind(now)
            .execute(&self.store.pool)
            .await?;
            tracing::warn!(outbound = id, "an earlier attempt left no outcome; waiting for a status webhook first");
            return Err(JobError::Defer {
                message: "an earlier attempt may have reached Meta; reconciling from status webhooks".into(),
                after: Duration::from_millis(self.reconcile_ms as u64),
            });
        }
        let ctx = load_context(&self.store, out.phone_id).await?;
        if let Some(reason) = &ctx.paused {
            return Err(JobError::Defer {
                message: format!("sends of this WABA are paused: {reason}"),
                after: PAUSE_WAIT,
            });
        }
        // Messages to one customer keep their order.
        let earlier = sqlx::query(
            "SELECT id FROM outbound WHERE phone_id = $1 AND recipient = $2 AND id < $3 \
             AND state IN ('queued', 'sending', 'unknown') LIMIT 1",
        )
        .bind(out.phone_id)
        .bind(&out.recipient)
        .bind(id)
        .fetch_optional(&self.store.pool)
        .await?;
        if earlier.is_some() {
            return Err(JobError::Defer {
                message: "an earlier message to this customer is still queued".into(),
                after: ORDER_WAIT,
            });
        }
        // Pair rate, then the number's throughput.
        let verdict = lock(&self.pairs).ask(out.phone_id, &out.recipient, self.pair_interval_ms, self.pair_burst, now);
        if let Verdict::WaitUntil(t) = verdict {
            return Err(defer_until("pair rate: paced to Meta's limit for one customer", t, now));
        }
        loop {
            let now = now_ms();
            let verdict = lock(&self.phones).ask(out.phone_id, id, ctx.mps, now);
            match verdict {
                Verdict::Go => break,
                Verdict::WaitUntil(t) if t - now <= 20 => {
                    tokio::time::sleep(Duration::from_millis((t - now) as u64)).await
                }
                Verdict::WaitUntil(t) => return Err(defer_until("paced to the number's throughput", t, now)),
            }
        }
        self.send(&out, &ctx, &job).await
    }

    async fn send(&self, out: &Outbound, ctx: &Context, job: &Job) -> Result<(), JobError> {
        let id = out.id;
        let body = graph_body(out);
        let Some(token) = ctx.token.clone() else {
            return self.fail(out, None, "no access token is configured for this number's WABA or app").await;
        };
        let result = self.graph.send_message(&ctx.phone_number_id, &token, &body, self.timeout).await;
        let now = now_ms();
        match result {
            Ok(acc) => {
                // The outcome, its report and the job's end: one commit.
                let mut tx = self.store.begin_write().await?;
                sqlx::query(
                    "UPDATE outbound SET state = 'accepted', wamid = $2, unknown_since = NULL, error_code = NULL, \
                     error_text = NULL, attempts = attempts + 1, updated_at = $3 \
                     WHERE id = $1 AND state IN ('queued', 'unknown', 'sending')",
                )
                .bind(id)
                .bind(&acc.wamid)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                super::report_on(&mut *tx, &out.origin, id, "accepted", None).await?;
                crate::jobs::finish_on(&mut *tx, job, now).await?;
                tx.commit().await?;
                Ok(())
            }
            Err(graph::Error::Unknown { reason, .. }) => {
                // Only from `sending`: a status webhook may already have confirmed it (`accepted`) while we waited.
                sqlx::query(
                    "UPDATE outbound SET state = 'unknown', unknown_since = $2, error_text = $3, attempts = attempts + 1, \
                     updated_at = $2 WHERE id = $1 AND state IN ('queued', 'sending')",
                )
                .bind(id)
                .bind(now)
                .bind(format!("no answer from Meta: {reason}"))
                .execute(&self.store.pool)
                .await?;
                tracing::warn!(outbound = id, %reason, "send unanswered; waiting for a status webhook before any retry");
                Err(JobError::Defer {
                    message: format!("no answer from Meta ({reason}); reconciling from status webhooks"),
                    after: Duration::from_millis(self.reconcile_ms as u64),
                })
            }
            Err(graph::Error::Graph(g)) => {
                let retry_after = g.retry_after_secs.map(Duration::from_secs);
                match classify(g.http_status, Some(g.code), retry_after, job.attempts) {
                    SendClass::Retry { after, reason } => {
                        if g.code == 130429 {
                            lock(&self.phones).back_off(out.phone_id, now, 1000);
                        }
                        if g.code == 131056 {
                            let until = now + after.map(|d| d.as_millis() as i64).unwrap_or(self.pair_interval_ms);
                            lock(&self.pairs).hold(
                                out.phone_id,
                                &out.recipient,
                                until,
                                self.pair_interval_ms,
                                self.pair_burst,
                            );
                        }
                        self.retry(out, job, Some(g.code), &format!("{reason} ({g})"), after).await
                    }
                    SendClass::TokenInvalid { code, reason } => {
                        pause_waba(&self.store, ctx.waba_id, &format!("{reason} (Meta error {code})")).await?;
                        sqlx::query("UPDATE outbound SET state = 'queued', error_code = $2, error_text = $3, updated_at = $4 WHERE id = $1")
                            .bind(id)
                            .bind(code)
                            .bind(&reason)
                            .bind(now)
                            .execute(&self.store.pool)
                            .await?;
                        Err(JobError::Defer { message: format!("sends paused: {reason}"), after: PAUSE_WAIT })
                    }
                    SendClass::Permanent { code, reason } => {
                        let detail = g.details.clone().map(|d| format!(": {d}")).unwrap_or_default();
                        self.fail(out, Some(code), &format!("{reason} (Meta error {code}{detail})")).await
                    }
                }
            }
            Err(e @ graph::Error::Connection { .. }) | Err(e @ graph::Error::Protocol { .. }) => {
                self.retry(out, job, None, &e.to_string(), None).await
            }
        }
    }

    async fn retry(
        &self,
        out: &Outbound,
        job: &Job,
        code: Option<i64>,
        reason: &str,
        after: Option<Duration>,
    ) -> Result<(), JobError> {
        if job.attempts >= job.max_attempts {
            self.fail(out, code, &format!("gave up after {} attempts: {reason}", job.attempts)).await?;
            return Err(JobError::Permanent(reason.to_string()));
        }
        sqlx::query(
            "UPDATE outbound SET state = 'queued', error_code = $2, error_text = $3, attempts = attempts + 1, \
             updated_at = $4 WHERE id = $1",
        )
        .bind(out.id)
        .bind(code)
        .bind(reason)
        .bind(now_ms())
        .execute(&self.store.pool)
        .await?;
        Err(JobError::Retry { message: reason.to_string(), after })
    }

    /// A permanent failure: recorded with its reason and reported to whoever asked. The job itself is done.
    async fn fail(&self, out: &Outbound, code: Option<i64>, reason: &str) -> Result<(), JobError> {
        lock(&self.phones).forget(out.id);
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "UPDATE outbound SET state = 'failed', error_code = $2, error_text = $3, attempts = attempts + 1, \
             updated_at = $4 WHERE id = $1",
        )
        .bind(out.id)
        .bind(code)
        .bind(reason)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        super::report_on(&mut *tx, &out.origin, out.id, "failed", Some(reason)).await?;
        tx.commit().await?;
        tracing::info!(outbound = out.id, code, "send failed permanently");
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn defer_until(message: &str, t: i64, now: i64) -> JobError {
    JobError::Defer { message: message.into(), after: Duration::from_millis((t - now).max(1) as u64) }
}

/// The full Graph body of a send.
pub fn graph_body(out: &Outbound) -> Value {
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": format!("+{}", out.recipient.trim_start_matches('+'))});
    if let (Some(b), Some(r)) = (body.as_object_mut(), out.request.as_object()) {
        for (k, v) in r {
            b.insert(k.clone(), v.clone());
        }
        b.insert("biz_opaque_callback_data".into(), json!(format!("{OPAQUE_PREFIX}{}", out.id)));
    }
    body
}

struct Context {
    phone_number_id: String,
    mps: u32,
    waba_id: i64,
    token: Option<String>,
    paused: Option<String>,
}

async fn load_context(store: &Store, phone_id: i64) -> Result<Context, JobError> {
    let row = sqlx::query(
        "SELECT p.phone_number_id, p.throughput_mps, w.id AS waba_id, w.access_token AS waba_token, \
         a.access_token AS app_token, w.sends_paused_at, w.sends_paused_reason \
         FROM phones p JOIN wabas w ON w.id = p.waba_id JOIN meta_apps a ON a.id = w.app_id WHERE p.id = $1",
    )
    .bind(phone_id)
    .fetch_optional(&store.pool)
    .await?
    .ok_or_else(|| JobError::Permanent(format!("phone {phone_id} no longer exists")))?;
    let token = match row.try_get::<Option<String>, _>("waba_token")? {
        Some(t) => Some(store.open("wabas.access_token", &t)?),
        None => store.open_opt("meta_apps.access_token", row.try_get("app_token")?)?,
    };
    let paused_at: Option<i64> = row.try_get("sends_paused_at")?;
    Ok(Context {
        phone_number_id: row.try_get("phone_number_id")?,
        mps: row.try_get::<i64, _>("throughput_mps")?.clamp(1, 1000) as u32,
        waba_id: row.try_get("waba_id")?,
        token,
        paused: paused_at
            .map(|_| row.try_get::<Option<String>, _>("sends_paused_reason").ok().flatten().unwrap_or_default()),
    })
}

/// Pauses every send of a WABA (its token was refused) and raises the alert: an ERROR log, the
/// `wabridge_waba_sends_paused` gauge, and the pause shown on the WABA in the admin API. Changing the WABA's
/// or app's token through the admin API or CLI lifts it.
pub async fn pause_waba(store: &Store, waba_id: i64, reason: &str) -> Result<(), JobError> {
    let n = sqlx::query(
        "UPDATE wabas SET sends_paused_at = $2, sends_paused_reason = $3 WHERE id = $1 AND sends_paused_at IS NULL",
    )
    .bind(waba_id)
    .bind(now_ms())
    .bind(reason)
    .execute(&store.pool)
    .await?
    .rows_affected();
    if n > 0 {
        tracing::error!(waba = waba_id, %reason, "ALERT: Meta refused the access token; sends of this WABA are paused until the token is replaced");
    }
    Ok(())
}

/// Lifts a pause (after a token change) and makes the WABA's waiting sends due now.
pub async fn resume_waba(store: &Store, waba_id: i64) -> Result<(), crate::store::StoreError> {
    let lifted = sqlx::query(
        "UPDATE wabas SET sends_paused_at = NULL, sends_paused_reason = NULL WHERE id = $1 AND sends_paused_at IS NOT NULL",
    )
    .bind(waba_id)
    .execute(&store.pool)
    .await?
    .rows_affected();
    if lifted > 0 {
        sqlx::query(
            "UPDATE jobs SET run_at = $2 WHERE kind = 'wa.send' AND done_at IS NULL AND NOT dead AND lease_owner IS NULL \
             AND dedup_key IN (SELECT 'wa.send:' || o.id FROM outbound o JOIN phones p ON p.id = o.phone_id \
                               WHERE p.waba_id = $1 AND o.state = 'queued')",
        )
        .bind(waba_id)
        .bind(now_ms())
        .execute(&store.pool)
        .await?;
        tracing::info!(waba = waba_id, "sends resumed after a token change");
    }
    Ok(())
}
