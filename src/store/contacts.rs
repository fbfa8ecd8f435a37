//! Contacts: the customers of a phone, keyed by WhatsApp id or, when the number is hidden, business-scoped user
//! id. The last inbound time drives the 24-hour window.

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};

/// A sender as an inbound message names it.
#[derive(Debug, Clone)]
pub struct Sender {
    pub phone_id: i64,
    /// The WhatsApp id when known, else the business-scoped user id.
    pub contact_key: String,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    /// Meta's time of the message (unix ms).
    pub inbound_at: i64,
}

/// Creates or refreshes a contact; returns its id. Known fields are kept when the message leaves them out,
/// and the last inbound time only moves forward.
pub async fn upsert_on(tx: &mut Transaction<'static, Any>, s: &Sender) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO contacts (phone_id, contact_key, wa_id, user_id, profile_name, last_inbound_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (phone_id, contact_key) DO UPDATE SET \
           wa_id = COALESCE(excluded.wa_id, contacts.wa_id), \
           user_id = COALESCE(excluded.user_id, contacts.user_id), \
           profile_name = COALESCE(excluded.profile_name, contacts.profile_name), \
           last_inbound_at = CASE WHEN contacts.last_inbound_at IS NULL OR excluded.last_inbound_at > contacts.last_inbound_at \
                                  THEN excluded.last_inbound_at ELSE contacts.last_inbound_at END, \
           updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(s.phone_id)
    .bind(&s.contact_key)
    .bind(&s.wa_id)
    .bind(&s.user_id)
    .bind(&s.profile_name)
    .bind(s.inbound_at)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

/// The key and WhatsApp id of contact `id`.
pub async fn key_of_on(
    tx: &mut Transaction<'static, Any>,
    id: i64,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let row =
        sqlx::query("SELECT contact_key, wa_id FROM contacts WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|r| Ok((r.try_get("contact_key")?, r.try_get("wa_id")?))).transpose()
}

/// A contact of a phone, as replies need it.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: i64,
    pub wa_id: Option<String>,
    pub last_inbound_at: Option<i64>,
}

/// The contact `contact_key` of a phone.
pub async fn find(store: &Store, phone_id: i64, contact_key: &str) -> Result<Option<Contact>, StoreError> {
    let row = sqlx::query("SELECT id, wa_id, last_inbound_at FROM contacts WHERE phone_id = $1 AND contact_key = $2")
        .bind(phone_id)
        .bind(contact_key)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| {
        Ok(Contact { id: r.try_get("id")?, wa_id: r.try_get("wa_id")?, last_inbound_at: r.try_get("last_inbound_at")? })
    })
    .transpose()
}

/// When the customer `recipient` (contact key or WhatsApp id) last wrote to a phone, if ever.
pub async fn last_inbound(store: &Store, phone_id: i64, recipient: &str) -> Result<Option<i64>, StoreError> {
    let row =
        sqlx::query("SELECT last_inbound_at FROM contacts WHERE phone_id = $1 AND (contact_key = $2 OR wa_id = $2)")
            .bind(phone_id)
            .bind(recipient)
            .fetch_optional(&store.pool)
            .await?;
    Ok(row.map(|r| r.try_get::<Option<i64>, _>("last_inbound_at")).transpose()?.flatten())
}
