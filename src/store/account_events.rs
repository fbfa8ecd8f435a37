//! Account-level webhooks (`account_update`, `phone_number_quality_update`, and fields not handled yet), kept
//! with their raw JSON, once each.

use sqlx::{Any, Transaction};

use super::{now_ms, Store, StoreError};

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

/// The latest stored event of one WABA and field.
#[derive(Debug, Clone)]
pub struct LatestEvent {
    /// Meta's WABA id.
    pub waba_id: String,
    pub field: String,
    pub event: Option<String>,
    pub raw: serde_json::Value,
    pub occurred_at: i64,
}

/// What the console's health page shows: the latest `account_update` of every WABA, and the latest
/// `phone_number_quality_update`s (newest first, at most `quality_limit`; they name their number in
/// `display_phone_number`, so the page takes the first one of each number).
pub async fn latest_health(store: &Store, quality_limit: i64) -> Result<Vec<LatestEvent>, StoreError> {
    use sqlx::Row;
    let mut rows = sqlx::query(
        "SELECT waba_id, field, event, raw, occurred_at FROM account_events WHERE id IN \
         (SELECT MAX(id) FROM account_events WHERE field = 'account_update' GROUP BY waba_id) ORDER BY waba_id",
    )
    .fetch_all(&store.pool)
    .await?;
    rows.extend(
        sqlx::query(
            "SELECT waba_id, field, event, raw, occurred_at FROM account_events \
             WHERE field = 'phone_number_quality_update' ORDER BY id DESC LIMIT $1",
        )
        .bind(quality_limit)
        .fetch_all(&store.pool)
        .await?,
    );
    rows.iter()
        .map(|r| {
            let raw: String = r.try_get("raw")?;
            Ok(LatestEvent {
                waba_id: r.try_get("waba_id")?,
                field: r.try_get("field")?,
                event: r.try_get("event")?,
                raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null),
                occurred_at: r.try_get("occurred_at")?,
            })
        })
        .collect()
}
