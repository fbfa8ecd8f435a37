//! Account health: every hour (and on demand: the console's "Check now", `wabridge health check`) one
//! `health.check` job per WABA asks Meta about the WABA's access token (`GET /debug_token`, with the app's id and
//! secret) and about each of its phones (`GET /{phone-number-id}?fields=health_status,quality_rating,
//! messaging_limit_tier`), and stores what it learned (`store::health`). The console's Health page, `wabridge
//! health` and `/metrics` show it. A refusal or an unreachable Meta is recorded in plain words and the job ends:
//! the next hourly check asks again. The token itself is never logged, stored here or shown.

pub mod figures;

use serde::Serialize;

use crate::jobs::catalogue::HealthCheck;
use crate::jobs::{Enqueue, JobError, Kind, Task};
use crate::meta::graph;
use crate::store::health::{self as stored, Reason};
use crate::store::registry::GraphTokenError;
use crate::store::{now_ms, Store, StoreError};

pub use figures::{Level, Verdict};

/// The hourly check of every WABA (one job per WABA per hour across all processes).
pub async fn schedule_hourly(store: &Store) -> Result<(), StoreError> {
    let hour = now_ms() / 3_600_000;
    for w in store.list_wabas().await? {
        let key = Kind::HealthCheck.key(format_args!("{}:{hour}", w.id));
        let task = Task::HealthCheck(HealthCheck { waba_id: w.id });
        store.enqueue(&task, Enqueue { dedup_key: Some(&key), ..Enqueue::default() }).await?;
    }
    Ok(())
}

/// What "Check now" queued: the WABAs (Meta ids) and how many phones they have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    pub wabas: Vec<String>,
    pub phones: usize,
}

/// Queues a check of every WABA now (or of one, `only`: a WABA's wabridge id).
pub async fn request_checks(store: &Store, only: Option<i64>) -> Result<Queued, StoreError> {
    let wabas: Vec<_> = store.list_wabas().await?.into_iter().filter(|w| only.is_none_or(|o| o == w.id)).collect();
    let phones = store.list_phones().await?;
    let mut queued = Queued { wabas: Vec::new(), phones: 0 };
    for w in wabas {
        store.enqueue(&Task::HealthCheck(HealthCheck { waba_id: w.id }), Enqueue::default()).await?;
        queued.phones += phones.iter().filter(|p| p.waba_id == w.id && p.archived_at.is_none()).count();
        queued.wabas.push(w.waba_id);
    }
    Ok(queued)
}

/// The `health.check` job: only a database failure makes it try again.
pub async fn run(store: &Store, graph: &graph::Client, task: HealthCheck) -> Result<(), JobError> {
    check_waba(store, graph, task.waba_id).await?;
    Ok(())
}

/// Asks Meta about one WABA's token and its phones, and stores what it learned. False when the WABA is gone.
pub async fn check_waba(store: &Store, graph: &graph::Client, waba_id: i64) -> Result<bool, StoreError> {
    let Some(waba) = store.get_waba(waba_id).await? else { return Ok(false) };
    let phones: Vec<_> =
        store.list_phones().await?.into_iter().filter(|p| p.waba_id == waba_id && p.archived_at.is_none()).collect();
    let token = match store.graph_token(waba_id).await {
        Ok(t) => t,
        Err(GraphTokenError::Store(e)) => return Err(e),
        Err(e) => {
            let words = format!("Not checked: {e}. Set an access token on the WABA or on its app.");
            let now = now_ms();
            stored::record_token_error(store, waba_id, now, &words).await?;
            for p in &phones {
                stored::record_phone_error(store, p.id, now, &words).await?;
            }
            tracing::warn!(waba = waba_id, "health check: the WABA has no access token");
            return Ok(true);
        }
    };
    match store.get_app(waba.app_id).await? {
        None => stored::record_token_error(store, waba_id, now_ms(), "Not checked: the WABA's app is gone.").await?,
        Some(app) => match graph.debug_token(&token, &app.meta_app_id, &app.app_secret).await {
            Ok(d) => {
                let t = figures::token_health(&d);
                if !t.valid || !t.missing_scopes.is_empty() {
                    tracing::warn!(waba = waba_id, valid = t.valid, missing = ?t.missing_scopes, "health check: the access token needs attention");
                }
                stored::record_token(store, waba_id, now_ms(), &t).await?;
            }
            Err(e) => {
                let words = figures::error_words(&e, "the token check (debug_token)", Some(&app.meta_app_id));
                tracing::warn!(waba = waba_id, error = %words, "health check: debug_token failed");
                stored::record_token_error(store, waba_id, now_ms(), &words).await?;
            }
        },
    }
    for p in &phones {
        match graph.phone_health(&p.phone_number_id, &token).await {
            Ok(node) => stored::record_phone(store, p.id, now_ms(), &figures::phone_health(&node)).await?,
            Err(e) => {
                let words = figures::error_words(&e, "the phone's health", None);
                tracing::warn!(phone = p.id, error = %words, "health check: the phone's health could not be read");
                stored::record_phone_error(store, p.id, now_ms(), &words).await?;
            }
        }
    }
    tracing::info!(waba = waba_id, phones = phones.len(), "health checked");
    Ok(true)
}

/// A WABA's token health as the CLI prints it (`--json`) and the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WabaReport {
    pub id: i64,
    pub waba_id: String,
    pub name: String,
    /// Last check (ms), `None` before the first.
    pub checked_at: Option<i64>,
    /// The figures are from this check (ms).
    pub ok_at: Option<i64>,
    pub token_valid: Option<bool>,
    pub token_type: Option<String>,
    /// Unix seconds; 0: never.
    pub expires_at: Option<i64>,
    /// Unix seconds; 0: never.
    pub data_access_expires_at: Option<i64>,
    pub missing_scopes: Vec<String>,
    pub error: Option<String>,
    /// The "red when" rule's answer: level, words, what to do.
    pub verdict: Verdict,
}

/// A phone's health as the CLI prints it and the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneReport {
    pub id: i64,
    pub number: String,
    pub phone_number_id: String,
    /// The WABA's wabridge id.
    pub waba: i64,
    pub checked_at: Option<i64>,
    pub ok_at: Option<i64>,
    /// `AVAILABLE`, `LIMITED`, `BLOCKED` or `UNKNOWN`; `None` before the first answer.
    pub can_send: Option<String>,
    /// The entities that limit or block the number, with Meta's words.
    pub reasons: Vec<Reason>,
    pub quality_rating: Option<String>,
    pub messaging_limit_tier: Option<String>,
    pub error: Option<String>,
}

/// Everything known about the account's health.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub wabas: Vec<WabaReport>,
    pub phones: Vec<PhoneReport>,
}

/// The stored figures of every WABA and every phone in use, judged at `now_ms`.
pub async fn report(store: &Store, now_ms: i64) -> Result<Report, StoreError> {
    let rows = stored::wabas(store).await?;
    let phone_rows = stored::phones(store).await?;
    let wabas = store
        .list_wabas()
        .await?
        .into_iter()
        .map(|w| {
            let row = rows.get(&w.id);
            let t = row.and_then(|r| r.token.as_ref());
            WabaReport {
                id: w.id,
                waba_id: w.waba_id,
                name: w.name,
                checked_at: row.map(|r| r.checked_at),
                ok_at: row.and_then(|r| r.ok_at),
                token_valid: t.map(|t| t.valid),
                token_type: t.and_then(|t| t.token_type.clone()),
                expires_at: t.map(|t| t.expires_at),
                data_access_expires_at: t.map(|t| t.data_access_expires_at),
                missing_scopes: t.map(|t| t.missing_scopes.clone()).unwrap_or_default(),
                error: row.and_then(|r| r.error.clone()),
                verdict: figures::token_verdict(row, now_ms / 1000),
            }
        })
        .collect();
    let phones = store
        .list_phones()
        .await?
        .into_iter()
        .filter(|p| p.archived_at.is_none())
        .map(|p| {
            let row = phone_rows.get(&p.id);
            let h = row.and_then(|r| r.health.as_ref());
            PhoneReport {
                id: p.id,
                number: p.number,
                phone_number_id: p.phone_number_id,
                waba: p.waba_id,
                checked_at: row.map(|r| r.checked_at),
                ok_at: row.and_then(|r| r.ok_at),
                can_send: h.map(|h| h.can_send.clone()),
                reasons: h.map(|h| h.reasons.clone()).unwrap_or_default(),
                quality_rating: h.and_then(|h| h.quality_rating.clone()),
                messaging_limit_tier: h.and_then(|h| h.messaging_limit_tier.clone()),
                error: row.and_then(|r| r.error.clone()),
            }
        })
        .collect();
    Ok(Report { wabas, phones })
}
