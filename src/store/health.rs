//! Account health as the `health.check` job last learned it from Meta (`waba_health`, `phone_health`; migration
//! `0018_account_health.sql`). A check that got an answer replaces the figures; one that did not keeps them and
//! records its error, so the console can say "as of …" and why the last check failed. Tokens are never stored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// What `debug_token` said about a WABA's access token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenHealth {
    pub valid: bool,
    pub token_type: Option<String>,
    /// Unix seconds; 0: never.
    pub expires_at: i64,
    /// Unix seconds; 0: never.
    pub data_access_expires_at: i64,
    pub scopes: Vec<String>,
    /// The WhatsApp permissions the token lacks.
    pub missing_scopes: Vec<String>,
    /// What Meta said about a token that is not valid, in plain words.
    pub note: Option<String>,
}

/// A stored WABA health row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WabaHealthRow {
    pub waba_id: i64,
    /// Last check (ms).
    pub checked_at: i64,
    /// Last check that got an answer (ms); the figures are from then.
    pub ok_at: Option<i64>,
    /// The figures, once a check got an answer.
    pub token: Option<TokenHealth>,
    /// Why the last check got no answer, or what Meta said about the token.
    pub error: Option<String>,
}

/// An entity that limits or blocks a number (Meta's `health_status.entities[]`), trimmed to what is shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// `PHONE_NUMBER`, `WABA`, `BUSINESS`, `APP`.
    pub entity_type: String,
    pub id: String,
    /// `LIMITED` or `BLOCKED`.
    pub status: String,
    /// Meta's `additional_info` (limited) or its errors in words (blocked).
    pub info: Vec<String>,
}

/// What the phone number node said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneHealth {
    /// `AVAILABLE`, `LIMITED`, `BLOCKED` (or `UNKNOWN` when Meta gave none).
    pub can_send: String,
    pub reasons: Vec<Reason>,
    pub quality_rating: Option<String>,
    pub messaging_limit_tier: Option<String>,
}

/// A stored phone health row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneHealthRow {
    pub phone_id: i64,
    pub checked_at: i64,
    pub ok_at: Option<i64>,
    pub health: Option<PhoneHealth>,
    pub error: Option<String>,
}

fn join(v: &[String]) -> String {
    v.join(",")
}

fn split(s: Option<String>) -> Vec<String> {
    s.map(|s| s.split(',').filter(|p| !p.is_empty()).map(String::from).collect()).unwrap_or_default()
}

/// Records a token check that got an answer (`note`: what Meta said about a token that is not valid).
pub async fn record_token(store: &Store, waba_id: i64, at: i64, t: &TokenHealth) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO waba_health (waba_id, checked_at, ok_at, token_valid, token_type, expires_at, \
         data_access_expires_at, scopes, missing_scopes, error) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (waba_id) DO UPDATE SET checked_at = excluded.checked_at, ok_at = excluded.ok_at, \
         token_valid = excluded.token_valid, token_type = excluded.token_type, expires_at = excluded.expires_at, \
         data_access_expires_at = excluded.data_access_expires_at, scopes = excluded.scopes, \
         missing_scopes = excluded.missing_scopes, error = excluded.error",
    )
    .bind(waba_id)
    .bind(at)
    .bind(i64::from(t.valid))
    .bind(t.token_type.as_deref())
    .bind(t.expires_at)
    .bind(t.data_access_expires_at)
    .bind(join(&t.scopes))
    .bind(join(&t.missing_scopes))
    .bind(t.note.as_deref())
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Records a token check that got no answer: the earlier figures stay.
pub async fn record_token_error(store: &Store, waba_id: i64, at: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO waba_health (waba_id, checked_at, error) VALUES ($1, $2, $3) \
         ON CONFLICT (waba_id) DO UPDATE SET checked_at = excluded.checked_at, error = excluded.error",
    )
    .bind(waba_id)
    .bind(at)
    .bind(error)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Records a phone check that got an answer.
pub async fn record_phone(store: &Store, phone_id: i64, at: i64, h: &PhoneHealth) -> Result<(), StoreError> {
    let reasons = serde_json::to_string(&h.reasons).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO phone_health (phone_id, checked_at, ok_at, can_send, reasons, quality_rating, \
         messaging_limit_tier, error) VALUES ($1, $2, $2, $3, $4, $5, $6, NULL) \
         ON CONFLICT (phone_id) DO UPDATE SET checked_at = excluded.checked_at, ok_at = excluded.ok_at, \
         can_send = excluded.can_send, reasons = excluded.reasons, quality_rating = excluded.quality_rating, \
         messaging_limit_tier = excluded.messaging_limit_tier, error = NULL",
    )
    .bind(phone_id)
    .bind(at)
    .bind(&h.can_send)
    .bind(reasons)
    .bind(h.quality_rating.as_deref())
    .bind(h.messaging_limit_tier.as_deref())
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Records a phone check that got no answer: the earlier figures stay.
pub async fn record_phone_error(store: &Store, phone_id: i64, at: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO phone_health (phone_id, checked_at, error) VALUES ($1, $2, $3) \
         ON CONFLICT (phone_id) DO UPDATE SET checked_at = excluded.checked_at, error = excluded.error",
    )
    .bind(phone_id)
    .bind(at)
    .bind(error)
    .execute(&store.pool)
    .await?;
    Ok(())
}

fn waba_row(r: &AnyRow) -> Result<WabaHealthRow, sqlx::Error> {
    let ok_at: Option<i64> = r.try_get("ok_at")?;
    let valid: Option<i64> = r.try_get("token_valid")?;
    let token = match (ok_at, valid) {
        (Some(_), Some(v)) => Some(TokenHealth {
            valid: v != 0,
            token_type: r.try_get("token_type")?,
            expires_at: r.try_get::<Option<i64>, _>("expires_at")?.unwrap_or(0),
            data_access_expires_at: r.try_get::<Option<i64>, _>("data_access_expires_at")?.unwrap_or(0),
            scopes: split(r.try_get("scopes")?),
            missing_scopes: split(r.try_get("missing_scopes")?),
            note: None,
        }),
        _ => None,
    };
    Ok(WabaHealthRow {
        waba_id: r.try_get("waba_id")?,
        checked_at: r.try_get("checked_at")?,
        ok_at,
        token,
        error: r.try_get("error")?,
    })
}

fn phone_row(r: &AnyRow) -> Result<PhoneHealthRow, sqlx::Error> {
    let ok_at: Option<i64> = r.try_get("ok_at")?;
    let can_send: Option<String> = r.try_get("can_send")?;
    let health = match (ok_at, can_send) {
        (Some(_), Some(can_send)) => {
            let reasons: Option<String> = r.try_get("reasons")?;
            Some(PhoneHealth {
                can_send,
                reasons: reasons.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default(),
                quality_rating: r.try_get("quality_rating")?,
                messaging_limit_tier: r.try_get("messaging_limit_tier")?,
            })
        }
        _ => None,
    };
    Ok(PhoneHealthRow {
        phone_id: r.try_get("phone_id")?,
        checked_at: r.try_get("checked_at")?,
        ok_at,
        health,
        error: r.try_get("error")?,
    })
}

/// Every WABA's row, by WABA id (registry tables are small).
pub async fn wabas(store: &Store) -> Result<HashMap<i64, WabaHealthRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT waba_id, checked_at, ok_at, token_valid, token_type, expires_at, data_access_expires_at, scopes, \
         missing_scopes, error FROM waba_health",
    )
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(|r| waba_row(r).map(|w| (w.waba_id, w)).map_err(StoreError::from)).collect()
}

/// Every phone's row, by phone id.
pub async fn phones(store: &Store) -> Result<HashMap<i64, PhoneHealthRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT phone_id, checked_at, ok_at, can_send, reasons, quality_rating, messaging_limit_tier, error \
         FROM phone_health",
    )
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(|r| phone_row(r).map(|p| (p.phone_id, p)).map_err(StoreError::from)).collect()
}

/// Jobs that gave up, across all processes.
pub async fn dead_jobs(store: &Store) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE dead").fetch_one(&store.pool).await?;
    Ok(row.try_get("n")?)
}
