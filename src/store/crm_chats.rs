//! Which open-line chat (and session) of the portal carries a customer of a phone.

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};

/// The portal's chat of a customer, as last known.
#[derive(Debug, Clone)]
pub struct CrmChat {
    pub chat_id: Option<String>,
    pub session_id: Option<String>,
}

/// Records where a customer's message went; a chat or session the portal did not name keeps its known value.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    contact_key: &str,
    portal_id: i64,
    line: &str,
    chat_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO crm_chats (phone_id, contact_key, portal_id, line_id, chat_id, session_id, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (phone_id, contact_key) DO UPDATE SET \
         portal_id = excluded.portal_id, line_id = excluded.line_id, \
         chat_id = COALESCE(excluded.chat_id, crm_chats.chat_id), \
         session_id = COALESCE(excluded.session_id, crm_chats.session_id), updated_at = excluded.updated_at",
    )
    .bind(phone_id)
    .bind(contact_key)
    .bind(portal_id)
    .bind(line)
    .bind(chat_id)
    .bind(session_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One customer's chat on a portal line, as [`upsert_many_on`] records it.
#[derive(Debug, Clone, Copy)]
pub struct ChatOnLine<'a> {
    pub phone_id: i64,
    pub contact_key: &'a str,
    pub portal_id: i64,
    pub line: &'a str,
    pub chat_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

/// [`upsert_on`] for the chats of many customers in one statement, each customer once (a later item for the same
/// customer wins).
pub async fn upsert_many_on(tx: &mut Transaction<'static, Any>, chats: &[ChatOnLine<'_>]) -> Result<(), StoreError> {
    let mut once: Vec<&ChatOnLine<'_>> = Vec::with_capacity(chats.len());
    for c in chats.iter().rev() {
        if !once.iter().any(|o| o.phone_id == c.phone_id && o.contact_key == c.contact_key) {
            once.push(c);
        }
    }
    for part in once.chunks(200) {
        let values: Vec<String> = (0..part.len())
            .map(|i| {
                let b = 2 + i * 6;
                format!("(${}, ${}, ${}, ${}, ${}, ${}, $1)", b, b + 1, b + 2, b + 3, b + 4, b + 5)
            })
            .collect();
        let q = format!(
            "INSERT INTO crm_chats (phone_id, contact_key, portal_id, line_id, chat_id, session_id, updated_at) \
             VALUES {} ON CONFLICT (phone_id, contact_key) DO UPDATE SET \
             portal_id = excluded.portal_id, line_id = excluded.line_id, \
             chat_id = COALESCE(excluded.chat_id, crm_chats.chat_id), \
             session_id = COALESCE(excluded.session_id, crm_chats.session_id), updated_at = excluded.updated_at",
            values.join(", ")
        );
        let mut query = sqlx::query(&q).bind(now_ms());
        for c in part {
            query = query
                .bind(c.phone_id)
                .bind(c.contact_key)
                .bind(c.portal_id)
                .bind(c.line)
                .bind(c.chat_id)
                .bind(c.session_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The chat of customer `contact_key` of a phone, if one is known.
pub async fn get(store: &Store, phone_id: i64, contact_key: &str) -> Result<Option<CrmChat>, StoreError> {
    let row = sqlx::query("SELECT chat_id, session_id FROM crm_chats WHERE phone_id = $1 AND contact_key = $2")
        .bind(phone_id)
        .bind(contact_key)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| Ok(CrmChat { chat_id: r.try_get("chat_id")?, session_id: r.try_get("session_id")? })).transpose()
}
