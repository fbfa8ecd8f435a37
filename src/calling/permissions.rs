//! Customers' answers to call permission requests (`interactive.call_permission_reply`, meta-calling-sip.md):
//! kept per phone and customer in `call_permissions` for business-initiated calls. Only a newer reply moves the
//! row, so webhooks arriving out of order leave the latest answer in place.

use sqlx::{Any, Row, Transaction};

use crate::meta::webhook::{Content, InboundMessage, Interactive};
use crate::store::{now_ms, StoreError};

/// Records `m` when it is a call permission reply of the customer `contact_id` (called inside the inbox
/// transaction, once per new message). Anything else is left alone.
pub async fn record_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    contact_id: Option<i64>,
    m: &InboundMessage,
) -> Result<(), StoreError> {
    let Content::Interactive(Interactive::CallPermissionReply(r)) = &m.content else { return Ok(()) };
    let Some(contact_id) = contact_id else { return Ok(()) };
    let Some(contact) = sqlx::query("SELECT contact_key, wa_id FROM contacts WHERE id = $1")
        .bind(contact_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(());
    };
    let key: String = contact.try_get("contact_key")?;
    let wa_id: Option<String> = contact.try_get("wa_id")?;
    let response = if r.accepted { "accept" } else { "reject" };
    let replied_at = if m.timestamp > 0 { m.timestamp * 1000 } else { now_ms() };
    sqlx::query(
        "INSERT INTO call_permissions (phone_id, contact_key, wa_id, response, permanent, expires_at, \
         response_source, wamid, replied_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (phone_id, contact_key) DO UPDATE SET wa_id = COALESCE(excluded.wa_id, call_permissions.wa_id), \
           response = excluded.response, permanent = excluded.permanent, expires_at = excluded.expires_at, \
           response_source = excluded.response_source, wamid = excluded.wamid, replied_at = excluded.replied_at, \
           updated_at = excluded.updated_at \
         WHERE call_permissions.replied_at <= excluded.replied_at",
    )
    .bind(phone_id)
    .bind(key)
    .bind(wa_id)
    .bind(response)
    .bind(i64::from(r.accepted && r.is_permanent == Some(true)))
    .bind(r.expiration_timestamp.filter(|_| r.accepted).map(|t| t * 1000))
    .bind(&r.response_source)
    .bind(&m.id)
    .bind(replied_at)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

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

impl CallPermission {
    /// True when the customer may be called at `now` (unix ms).
    pub fn allows_at(&self, now: i64) -> bool {
        self.response == "accept" && (self.permanent || self.expires_at.is_none_or(|e| e > now))
    }
}

/// The stored answer of the customer `contact_key` of a phone.
pub async fn get(
    pool: &sqlx::Pool<Any>,
    phone_id: i64,
    contact_key: &str,
) -> Result<Option<CallPermission>, StoreError> {
    let row = sqlx::query(
        "SELECT response, permanent, expires_at, response_source, wamid FROM call_permissions \
         WHERE phone_id = $1 AND contact_key = $2",
    )
    .bind(phone_id)
    .bind(contact_key)
    .fetch_optional(pool)
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
