//! The few reads and writes of the `outbound` table made outside `src/outbound/` (whose own SQL lives with the
//! outbound module): gauges for /metrics, the text of a sent message for quoting, and the SMS provider's
//! refused sends. To be merged into the outbound table's store module.

use serde_json::Value;
use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};

/// How many sends are in each of `queued` and `unknown` (states without sends are left out).
pub async fn pending_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    let rows =
        sqlx::query("SELECT state, COUNT(*) AS n FROM outbound WHERE state IN ('queued', 'unknown') GROUP BY state")
            .fetch_all(&store.pool)
            .await?;
    rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
}

/// How many WABAs have their sends paused.
pub async fn wabas_paused(store: &Store) -> Result<i64, StoreError> {
    let r =
        sqlx::query("SELECT COUNT(*) AS n FROM wabas WHERE sends_paused_at IS NOT NULL").fetch_one(&store.pool).await?;
    Ok(r.try_get("n")?)
}

/// The Graph request of the send that became message `wamid`, when it is readable JSON.
pub async fn request_by_wamid(store: &Store, wamid: &str) -> Result<Option<Value>, StoreError> {
    let r =
        sqlx::query("SELECT request FROM outbound WHERE wamid = $1").bind(wamid).fetch_optional(&store.pool).await?;
    Ok(r.and_then(|r| r.try_get::<String, _>("request").ok()).and_then(|t| serde_json::from_str::<Value>(&t).ok()))
}

/// The send with this idempotency key.
pub async fn id_by_idempotency_key_on(
    tx: &mut Transaction<'static, Any>,
    key: &str,
) -> Result<Option<i64>, StoreError> {
    let r =
        sqlx::query("SELECT id FROM outbound WHERE idempotency_key = $1").bind(key).fetch_optional(&mut **tx).await?;
    Ok(r.map(|r| r.try_get::<i64, _>("id")).transpose()?)
}

/// A send of the SMS provider refused before Meta (`failed` at once, with why); returns its id.
pub async fn insert_refused_sms_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    recipient: &str,
    origin_ref: &Value,
    request: &Value,
    reason: &str,
    idempotency_key: &str,
) -> Result<i64, StoreError> {
    let r = sqlx::query(
        "INSERT INTO outbound (phone_id, recipient, origin, origin_ref, request, state, error_text, \
         idempotency_key, created_at, updated_at) VALUES ($1, $2, 'sms', $3, $4, 'failed', $5, $6, $7, $7) \
         RETURNING id",
    )
    .bind(phone_id)
    .bind(recipient)
    .bind(origin_ref.to_string())
    .bind(request.to_string())
    .bind(reason)
    .bind(idempotency_key)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok(r.try_get("id")?)
}
