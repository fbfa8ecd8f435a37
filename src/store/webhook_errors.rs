//! Value-level errors of Meta's messages webhooks (`value.errors`): not tied to a message, so without a record
//! they would vanish. Kept per phone, once each (a resent webhook adds nothing), listed by the admin API and
//! counted in /metrics.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::{rfc3339, Store, StoreError};
use crate::meta::webhook::WaError;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookErrorView {
    pub id: i64,
    pub phone: i64,
    /// Meta's error code (e.g. 131000 "Unsupported webhook payload"; 0 when Meta gave none).
    pub code: i64,
    pub title: Option<String>,
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
    /// When Meta sent it (the webhook entry's time, else when it was processed).
    pub occurred_at: String,
}

/// Records one error in the transaction that processes its webhook. A second copy is a no-op: the same error of
/// the same phone at the same `time` (the webhook entry's, when Meta gave one), or, without a time, on the same
/// UTC day (Meta resends a webhook until it is acknowledged; messages webhooks carry no entry time). True when
/// it was new.
pub async fn record_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    error: &WaError,
    time: Option<i64>,
) -> Result<bool, StoreError> {
    use sha2::{Digest, Sha256};
    let now = super::now_ms();
    let (occurred_at, when) = match time {
        Some(t) => (t, format!("at {t}")),
        None => (now, format!("day {}", now / 86_400_000)),
    };
    let key = format!(
        "{phone_id}|{}|{}|{}|{}|{when}",
        error.code,
        error.title.as_deref().unwrap_or_default(),
        error.message.as_deref().unwrap_or_default(),
        error.details.as_deref().unwrap_or_default(),
    );
    let new = sqlx::query(
        "INSERT INTO webhook_errors (dedup_key, phone_id, code, title, message, details, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(hex::encode(Sha256::digest(key.as_bytes())))
    .bind(phone_id)
    .bind(error.code)
    .bind(&error.title)
    .bind(&error.message)
    .bind(&error.details)
    .bind(occurred_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(new == 1)
}

fn view(r: &AnyRow) -> Result<WebhookErrorView, StoreError> {
    Ok(WebhookErrorView {
        id: r.try_get("id")?,
        phone: r.try_get("phone_id")?,
        code: r.try_get("code")?,
        title: r.try_get("title")?,
        message: r.try_get("message")?,
        details: r.try_get("details")?,
        occurred_at: rfc3339(r.try_get("occurred_at")?),
    })
}

/// The newest errors first, of one phone or of all.
pub async fn list(store: &Store, phone: Option<i64>, limit: i64) -> Result<Vec<WebhookErrorView>, StoreError> {
    const COLS: &str = "id, phone_id, code, title, message, details, occurred_at";
    let rows = match phone {
        Some(p) => {
            sqlx::query(&format!("SELECT {COLS} FROM webhook_errors WHERE phone_id = $1 ORDER BY id DESC LIMIT $2"))
                .bind(p)
                .bind(limit)
                .fetch_all(&store.pool)
                .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLS} FROM webhook_errors ORDER BY id DESC LIMIT $1"))
                .bind(limit)
                .fetch_all(&store.pool)
                .await?
        }
    };
    rows.iter().map(view).collect()
}

/// How many were recorded since `since` (ms), for /metrics.
pub async fn count_since(store: &Store, since: i64) -> Result<i64, StoreError> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM webhook_errors WHERE occurred_at >= $1")
        .bind(since)
        .fetch_one(&store.pool)
        .await?;
    Ok(r.try_get("n")?)
}
