//! Customers' answers to call permission requests (`interactive.call_permission_reply`, meta-calling-sip.md):
//! kept per phone and customer in `call_permissions` for business-initiated calls. Only a newer reply moves the
//! row, so webhooks arriving out of order leave the latest answer in place.

use sqlx::{Any, Transaction};

use crate::meta::webhook::{Content, InboundMessage, Interactive};
use crate::store::{call_permissions, contacts, now_ms, Store, StoreError};

pub use crate::store::call_permissions::CallPermission;

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
    let Some((key, wa_id)) = contacts::key_of_on(tx, contact_id).await? else { return Ok(()) };
    let reply = call_permissions::NewReply {
        phone_id,
        contact_key: &key,
        wa_id: wa_id.as_deref(),
        permission: CallPermission {
            response: if r.accepted { "accept" } else { "reject" }.to_string(),
            permanent: r.accepted && r.is_permanent == Some(true),
            expires_at: r.expiration_timestamp.filter(|_| r.accepted).map(|t| t * 1000),
            response_source: r.response_source.clone(),
            wamid: m.id.clone(),
        },
        replied_at: if m.timestamp > 0 { m.timestamp * 1000 } else { now_ms() },
    };
    call_permissions::record_on(tx, &reply).await
}

impl CallPermission {
    /// True when the customer may be called at `now` (unix ms).
    pub fn allows_at(&self, now: i64) -> bool {
        self.response == "accept" && (self.permanent || self.expires_at.is_none_or(|e| e > now))
    }
}

/// The stored answer of the customer `contact_key` of a phone.
pub async fn get(store: &Store, phone_id: i64, contact_key: &str) -> Result<Option<CallPermission>, StoreError> {
    call_permissions::get(store, phone_id, contact_key).await
}
