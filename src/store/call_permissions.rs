//! Customers' answers to call permission requests, per phone and customer. Only a newer reply moves the row.

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};

/// A customer's current permission, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPermission {
    pub response: String,
    pub permanent: bool,
    /// Unix ms.
    pub expires_at: Option<i64>,
    pub response_source: Option<String>,
    pub wamid: String,
}

/// A reply to store for the customer `contact_key` of a phone.
#[derive(Debug, Clone)]
pub struct NewReply<'a> {
    pub phone_id: i64,
    pub contact_key: &'a str,
    pub wa_id: Option<&'a str>,
    pub permission: CallPermission,
    /// When the customer replied (unix ms).
    pub replied_at: i64,
}

/// Stores a reply unless a newer one is stored already.
pub async fn record_on(tx: &mut Transaction<'static, Any>, r: &NewReply<'_>) -> Result<(), StoreError> {
    let p = &r.permission;
    sqlx::query(
        "INSERT INTO call_permissions (phone_id, contact_key, wa_id, response, permanent, expires_at, \
         response_source, wamid, replied_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (phone_id, contact_key) DO UPDATE SET wa_id = COALESCE(excluded.wa_id, call_permissions.wa_id), \
           response = excluded.response, permanent = excluded.permanent, expires_at = excluded.expires_at, \
           response_source = excluded.response_source, wamid = excluded.wamid, replied_at = excluded.replied_at, \
           updated_at = excluded.updated_at \
         WHERE call_permissions.replied_at <= excluded.replied_at",
    )
    .bind(r.phone_id)
    .bind(r.contact_key)
    .bind(r.wa_id)
    .bind(&p.response)
    .bind(i64::from(p.permanent))
    .bind(p.expires_at)
    .bind(&p.response_source)
    .bind(&p.wamid)
    .bind(r.replied_at)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The stored answer of the customer `contact_key` of a phone.
pub async fn get(store: &Store, phone_id: i64, contact_key: &str) -> Result<Option<CallPermission>, StoreError> {
    let row = sqlx::query(
        "SELECT response, permanent, expires_at, response_source, wamid FROM call_permissions \
         WHERE phone_id = $1 AND contact_key = $2",
    )
    .bind(phone_id)
    .bind(contact_key)
    .fetch_optional(&store.pool)
    .await?;
    row.map(|r| {
        Ok(CallPermission {
            response: r.try_get("response")?,
            permanent: r.try_get::<i64, _>("permanent")? != 0,
            expires_at: r.try_get("expires_at")?,
            response_source: r.try_get("response_source")?,
            wamid: r.try_get("wamid")?,
        })
    })
    .transpose()
}
