//! Account-level webhooks (`account_update`, `phone_number_quality_update`, and fields not handled yet), kept
//! with their raw JSON, once each.

use sqlx::{Any, Transaction};

use super::{now_ms, StoreError};

/// Records one account event of WABA `waba` (Meta's id) in the transaction that processes its webhook; a second
/// copy (same WABA, field, time and JSON) is a no-op. `time` is the entry's (unix seconds).
pub async fn record_on(
    tx: &mut Transaction<'static, Any>,
    waba: &str,
    field: &str,
    event: Option<&str>,
    raw: &serde_json::Value,
    time: Option<i64>,
) -> Result<(), StoreError> {
    use sha2::{Digest, Sha256};
    let raw_text = raw.to_string();
    let key = hex::encode(Sha256::digest(format!("{waba}|{field}|{}|{raw_text}", time.unwrap_or(0)).as_bytes()));
    sqlx::query(
        "INSERT INTO account_events (dedup_key, waba_id, field, event, raw, occurred_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(key)
    .bind(waba)
    .bind(field)
    .bind(event)
    .bind(raw_text)
    .bind(time.map(|t| t * 1000).unwrap_or_else(now_ms))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
