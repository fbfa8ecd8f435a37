//! The `event.deliver` job: one signed POST of an event to one subscription, recorded as an attempt.
//!
//! A 2xx answer delivers it. Anything else (another status, no answer in `events_timeout_ms`, a refused address)
//! is a failed attempt: retried after [`super::retry_delay`] until the retry window
//! (`events_retry_window_seconds`, from the first attempt) is over, then the delivery is dead (redrive:
//! `POST /admin/api/v1/event-deliveries/{id}/redrive`). An endpoint whose attempts have failed without a success
//! for `events_disable_after_seconds` is disabled with the reason, and its pending deliveries die at their next
//! turn. A crash between the POST and its record sends it again with the same `webhook-id` (at least once).

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::jobs::catalogue::EventDeliver;
use crate::jobs::{Job, JobError};
use crate::store::events::{self as stored, After, NewAttempt};
use crate::store::{now_ms, rfc3339, Store};

/// At most this much of an endpoint's answer is kept with the attempt.
pub const ANSWER_KEPT: usize = 1024;

/// What delivering needs: the HTTP client and the settings.
#[derive(Clone)]
pub struct Deliverer {
    /// The guarded client; its build error when it could not be made (every attempt then fails with it, rather
    /// than going out through an unguarded client).
    http: Result<reqwest::Client, String>,
    allow_private: bool,
    window: Duration,
    disable_after: Duration,
}

impl Deliverer {
    pub fn from_config(config: &Config) -> Deliverer {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.events_timeout_ms))
            .connect_timeout(Duration::from_millis(config.events_timeout_ms.min(10_000)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(super::url::resolver(config.events_allow_private_urls))
            .user_agent(concat!("wabridge/", env!("CARGO_PKG_VERSION"), " (Standard Webhooks)"))
            .build()
            .map_err(|e| format!("the event HTTP client could not be built: {e}"));
        Deliverer {
            http,
            allow_private: config.events_allow_private_urls,
            window: Duration::from_secs(config.events_retry_window_seconds),
            disable_after: Duration::from_secs(config.events_disable_after_seconds),
        }
    }

    /// Runs one delivery job.
    pub async fn run(&self, store: &Store, _job: Job, p: EventDeliver) -> Result<(), JobError> {
        let Some(d) = stored::to_deliver(store, p.delivery_id).await? else {
            // Its subscription was deleted with its deliveries: nothing left to do.
            tracing::debug!(delivery = p.delivery_id, "event delivery gone with its subscription");
            return Ok(());
        };
        if d.state == "delivered" {
            return Ok(());
        }
        let sub = &d.subscription;
        if sub.disabled_at.is_some() {
            let reason = format!(
                "the endpoint is disabled: {}",
                sub.disabled_reason.as_deref().unwrap_or("disabled by an administrator")
            );
            stored::mark_dead(store, d.delivery_id, &reason).await?;
            return Err(JobError::Permanent(reason));
        }
        let secret = store.open("event_subscriptions.secret", &sub.secret_sealed)?;
        let key = super::secret_key(&secret).map_err(JobError::Permanent)?;
        let started_at = now_ms();
        let clock = Instant::now();
        let result = self.post(&sub.url, &key, &d.event_id, &d.body).await;
        let latency_ms = clock.elapsed().as_millis() as i64;
        let (status_code, answer, error) = match &result {
            Ok((status, answer)) => {
                let error = (!(200..300).contains(status)).then(|| format!("the endpoint answered HTTP {status}"));
                (Some(i64::from(*status)), Some(answer.as_str()), error)
            }
            Err(e) => (None, None, Some(e.clone())),
        };
        let first = d.first_attempt_at.unwrap_or(started_at);
        let after = match &error {
            None => After::Delivered,
            Some(_) if super::gives_up(first, started_at, self.window) => After::Dead,
            Some(_) => After::Retry,
        };
        let since = sub.failing_since.unwrap_or(started_at);
        let disable_reason = format!(
            "every delivery failed since {} ({} days or more); last error: {}",
            rfc3339(since),
            self.disable_after.as_secs() / 86_400,
            error.as_deref().unwrap_or_default()
        );
        let attempt = NewAttempt {
            delivery_id: d.delivery_id,
            attempted_at: started_at,
            status_code,
            latency_ms,
            answer,
            error: error.as_deref(),
        };
        let disabled = stored::record_attempt(
            store,
            &attempt,
            after,
            sub.id,
            self.disable_after.as_millis() as i64,
            &disable_reason,
        )
        .await?;
        if disabled {
            tracing::warn!(subscription = sub.id, "event endpoint disabled after failing for too long");
        }
        match (after, error) {
            (After::Delivered, _) | (_, None) => Ok(()),
            (After::Dead, Some(e)) => Err(JobError::Permanent(format!(
                "gave up after the {}-second retry window: {e}",
                self.window.as_secs()
            ))),
            (After::Retry, Some(e)) => {
                let attempts = stored::attempts(store, d.delivery_id).await?.len() as i64;
                let wait = super::retry_delay(attempts, &mut rand::thread_rng());
                Err(JobError::Retry { message: e, after: Some(wait) })
            }
        }
    }

    /// One signed POST. Ok: the HTTP status and the start of the answer; Err: why no answer came.
    async fn post(&self, url: &str, key: &[u8], id: &str, body: &str) -> Result<(u16, String), String> {
        let u = super::url::parse(url)?;
        super::url::check_literal(&u, self.allow_private)?;
        let timestamp = now_ms() / 1000;
        let signature = super::sign(key, id, timestamp, body);
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let resp = http
            .post(u)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let bytes = read_some(resp, ANSWER_KEPT).await;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Reads at most `max` bytes of an answer (the rest is not waited for).
async fn read_some(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(max - out.len())]),
            _ => break,
        }
    }
    out
}

/// A transport error in words, with its cause (reqwest's own text hides the refused address).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if e.is_timeout() { "no answer in time".to_string() } else { e.to_string() };
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
