//! Messages and their statuses: inbound messages stored once by `wamid`, statuses once by `(wamid, status)`,
//! the message's current status moved only forward ([`StatusKind::advances`]), and what the CRM side keeps on
//! a message (its portal chat and message ids, delivery attempts).

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};
use crate::meta::webhook::StatusKind;

/// `messages.direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the customer.
    In,
    /// To the customer.
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        }
    }
}

/// An inbound message as it is stored.
#[derive(Debug, Clone)]
pub struct NewInbound<'a> {
    pub wamid: &'a str,
    pub phone_id: i64,
    pub contact_id: Option<i64>,
    pub msg_type: &'a str,
    pub body: Option<String>,
    pub context_wamid: Option<String>,
    pub raw: String,
    /// Meta's time (unix ms).
    pub sent_at: i64,
    /// Its place in arrival order (`inbound::arrival`), when it came with an inbox row.
    pub arrival: Option<i64>,
    /// The message a reaction, an edit or a revoke is about.
    pub target_wamid: Option<&'a str>,
}

/// Stores an inbound message once per `wamid`. Its id when it was new.
pub async fn insert_inbound_on(
    tx: &mut Transaction<'static, Any>,
    m: &NewInbound<'_>,
) -> Result<Option<i64>, StoreError> {
    let new = sqlx::query(
        "INSERT INTO messages (wamid, phone_id, contact_id, direction, msg_type, body, context_wamid, raw, \
         sent_at, created_at, updated_at, arrival, target_wamid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
         ON CONFLICT (wamid) DO NOTHING RETURNING id",
    )
    .bind(m.wamid)
    .bind(m.phone_id)
    .bind(m.contact_id)
    .bind(Direction::In.as_str())
    .bind(m.msg_type)
    .bind(&m.body)
    .bind(&m.context_wamid)
    .bind(&m.raw)
    .bind(m.sent_at)
    .bind(now_ms())
    .bind(m.arrival)
    .bind(m.target_wamid)
    .fetch_optional(&mut **tx)
    .await?;
    new.map(|r| Ok(r.try_get("id")?)).transpose()
}

/// One status of a message as it is stored.
#[derive(Debug, Clone)]
pub struct NewStatus<'a> {
    pub wamid: &'a str,
    pub status: &'a StatusKind,
    /// Meta's time (unix ms).
    pub occurred_at: i64,
    pub recipient: Option<String>,
    pub error_code: Option<i64>,
    pub error_text: Option<String>,
    /// The pricing object as JSON text.
    pub pricing: Option<String>,
}

/// Records a status once per `(wamid, status)` and, when it was new and is a known status, moves the message's
/// current status to it if it [advances](StatusKind::advances) (checked in the UPDATE itself, on the stored
/// rank, so concurrent statuses of one message cannot move it back). True when the status was new.
pub async fn record_status_on(tx: &mut Transaction<'static, Any>, s: &NewStatus<'_>) -> Result<bool, StoreError> {
    let new = sqlx::query(
        "INSERT INTO message_statuses (wamid, status, occurred_at, recipient, error_code, error_text, pricing, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (wamid, status) DO NOTHING",
    )
    .bind(s.wamid)
    .bind(s.status.as_str())
    .bind(s.occurred_at)
    .bind(&s.recipient)
    .bind(s.error_code)
    .bind(&s.error_text)
    .bind(&s.pricing)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if new == 1 && !matches!(s.status, StatusKind::Other(_)) {
        // `StatusKind::rank_advances(status_rank, $3)`, in SQL: below the new rank and not terminal.
        sqlx::query(
            "UPDATE messages SET status = $2, status_rank = $3, status_at = $4, error_code = $5, error_text = $6, \
             updated_at = $7 WHERE wamid = $1 AND status_rank < $3 AND status_rank < $8",
        )
        .bind(s.wamid)
        .bind(s.status.as_str())
        .bind(i64::from(s.status.rank()))
        .bind(s.occurred_at)
        .bind(s.error_code)
        .bind(&s.error_text)
        .bind(now_ms())
        .bind(i64::from(StatusKind::TERMINAL_RANK))
        .execute(&mut **tx)
        .await?;
    }
    Ok(new == 1)
}

/// Every status recorded for a message, in no particular order.
pub async fn statuses_of(store: &Store, wamid: &str) -> Result<Vec<StatusKind>, StoreError> {
    let rows =
        sqlx::query("SELECT status FROM message_statuses WHERE wamid = $1").bind(wamid).fetch_all(&store.pool).await?;
    rows.iter().map(|r| Ok(StatusKind::parse(&r.try_get::<String, _>("status")?))).collect()
}

/// An inbound message with its sender, as `crm.deliver` reads it.
#[derive(Debug, Clone)]
pub struct ForDelivery {
    pub wamid: String,
    pub phone_id: i64,
    pub contact_id: Option<i64>,
    pub arrival: Option<i64>,
    pub crm_attempt_at: Option<i64>,
    pub raw: Option<String>,
    pub context_wamid: Option<String>,
    pub crm_message_id: Option<String>,
    pub sent_at: i64,
    pub contact_key: Option<String>,
    pub wa_id: Option<String>,
    pub profile_name: Option<String>,
}

/// [`for_delivery`] of many messages in one query, by id (a message that is gone is missing from the map).
pub async fn for_delivery_many(
    store: &Store,
    message_ids: &[i64],
) -> Result<std::collections::HashMap<i64, ForDelivery>, StoreError> {
    let mut out = std::collections::HashMap::with_capacity(message_ids.len());
    for ids in message_ids.chunks(500) {
        let q = format!(
            "SELECT m.id, m.wamid, m.phone_id, m.contact_id, m.arrival, m.crm_attempt_at, m.raw, m.context_wamid, \
             m.crm_message_id, m.sent_at, \
             c.contact_key, c.wa_id, c.profile_name FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id \
             WHERE m.id IN ({})",
            super::marks(1, ids.len())
        );
        let mut query = sqlx::query(&q);
        for id in ids {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&store.pool).await? {
            out.insert(r.try_get("id")?, for_delivery_row(&r)?);
        }
    }
    Ok(out)
}

fn for_delivery_row(r: &AnyRow) -> Result<ForDelivery, StoreError> {
    Ok(ForDelivery {
        wamid: r.try_get("wamid")?,
        phone_id: r.try_get("phone_id")?,
        contact_id: r.try_get("contact_id")?,
        arrival: r.try_get("arrival")?,
        crm_attempt_at: r.try_get("crm_attempt_at")?,
        raw: r.try_get("raw")?,
        context_wamid: r.try_get("context_wamid")?,
        crm_message_id: r.try_get("crm_message_id")?,
        sent_at: r.try_get("sent_at")?,
        contact_key: r.try_get("contact_key")?,
        wa_id: r.try_get("wa_id")?,
        profile_name: r.try_get("profile_name")?,
    })
}

/// Of `wamids`, those a customer's revoke (deletion) names (by `target_wamid`, kept since migration 0014 and
/// filled in for older rows by 0017).
pub async fn revoked_among(store: &Store, wamids: &[&str]) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for chunk in wamids.chunks(500) {
        let q = format!(
            "SELECT target_wamid FROM messages WHERE target_wamid IN ({}) AND msg_type = 'revoke' AND direction = $1",
            super::marks(2, chunk.len())
        );
        let mut query = sqlx::query(&q).bind(Direction::In.as_str());
        for w in chunk {
            query = query.bind(*w);
        }
        for r in query.fetch_all(&store.pool).await? {
            out.insert(r.try_get("target_wamid")?);
        }
    }
    Ok(out)
}

pub async fn for_delivery(store: &Store, message_id: i64) -> Result<Option<ForDelivery>, StoreError> {
    let row = sqlx::query(
        "SELECT m.wamid, m.phone_id, m.contact_id, m.arrival, m.crm_attempt_at, m.raw, m.context_wamid, \
         m.crm_message_id, m.sent_at, \
         c.contact_key, c.wa_id, c.profile_name FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id \
         WHERE m.id = $1",
    )
    .bind(message_id)
    .fetch_optional(&store.pool)
    .await?;
    row.as_ref().map(for_delivery_row).transpose()
}

/// Sets (before a delivery call) or clears (the portal did not take it) the time of the last delivery attempt.
pub async fn set_crm_attempt(store: &Store, message_id: i64, at: Option<i64>) -> Result<(), StoreError> {
    sqlx::query("UPDATE messages SET crm_attempt_at = $2 WHERE id = $1")
        .bind(message_id)
        .bind(at)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Sets or clears the CRM delivery attempt of many messages at once (one statement).
pub async fn set_crm_attempt_many(store: &Store, message_ids: &[i64], at: Option<i64>) -> Result<(), StoreError> {
    if message_ids.is_empty() {
        return Ok(());
    }
    let marks: Vec<String> = (0..message_ids.len()).map(|i| format!("${}", i + 2)).collect();
    let q = format!("UPDATE messages SET crm_attempt_at = $1 WHERE id IN ({})", marks.join(", "));
    let mut query = sqlx::query(&q).bind(at);
    for id in message_ids {
        query = query.bind(*id);
    }
    query.execute(&store.pool).await?;
    Ok(())
}

/// Counts a delivery sent again although an earlier attempt may have reached the portal.
pub async fn count_crm_resent_uncertain(store: &Store, message_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE messages SET crm_resent_uncertain = crm_resent_uncertain + 1 WHERE id = $1")
        .bind(message_id)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Records the portal's chat and message of a message: it is in the portal.
pub async fn set_crm_ids(
    store: &Store,
    message_id: i64,
    chat_id: Option<&str>,
    crm_message_id: &str,
) -> Result<(), StoreError> {
    set_crm_ids_on(&store.pool, message_id, chat_id, crm_message_id).await
}

/// [`set_crm_ids`] on a connection or in a transaction.
pub async fn set_crm_ids_on<'c, E>(
    conn: E,
    message_id: i64,
    chat_id: Option<&str>,
    crm_message_id: &str,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query("UPDATE messages SET crm_chat_id = $2, crm_message_id = $3, updated_at = $4 WHERE id = $1")
        .bind(message_id)
        .bind(chat_id)
        .bind(crm_message_id)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// [`set_crm_ids_on`] for many messages in one statement: `(message id, portal chat, portal message)`.
pub async fn set_crm_ids_many_on<'c, E>(conn: E, ids: &[(i64, Option<&str>, &str)]) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    if ids.is_empty() {
        return Ok(());
    }
    let values: Vec<String> =
        (0..ids.len()).map(|i| format!("(${}, ${}, ${})", 2 + i * 3, 3 + i * 3, 4 + i * 3)).collect();
    let q = format!(
        "UPDATE messages SET crm_chat_id = v.column2, crm_message_id = v.column3, updated_at = $1 \
         FROM (VALUES {}) AS v WHERE messages.id = v.column1",
        values.join(", ")
    );
    let mut query = sqlx::query(&q).bind(now_ms());
    for (id, chat, message) in ids {
        query = query.bind(*id).bind(*chat).bind(*message);
    }
    query.execute(conn).await?;
    Ok(())
}

/// A stored message's text (or, without one, its type), for quoting it.
#[derive(Debug, Clone)]
pub struct Quoted {
    pub body: Option<String>,
    pub msg_type: String,
}

pub async fn quoted(store: &Store, wamid: &str) -> Result<Option<Quoted>, StoreError> {
    let row = sqlx::query("SELECT body, msg_type FROM messages WHERE wamid = $1")
        .bind(wamid)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| Ok(Quoted { body: r.try_get("body")?, msg_type: r.try_get("msg_type").unwrap_or_default() }))
        .transpose()
}

/// An inbound message of a phone and what the portal has of it.
#[derive(Debug, Clone)]
pub struct InboundInCrm {
    pub contact_id: Option<i64>,
    pub crm_chat_id: Option<String>,
    pub crm_message_id: Option<String>,
    pub raw: Option<String>,
}

pub async fn inbound_in_crm(store: &Store, phone_id: i64, wamid: &str) -> Result<Option<InboundInCrm>, StoreError> {
    let row = sqlx::query(
        "SELECT crm_chat_id, crm_message_id, raw, contact_id FROM messages \
         WHERE wamid = $1 AND phone_id = $2 AND direction = $3",
    )
    .bind(wamid)
    .bind(phone_id)
    .bind(Direction::In.as_str())
    .fetch_optional(&store.pool)
    .await?;
    row.map(|r| {
        Ok(InboundInCrm {
            contact_id: r.try_get("contact_id")?,
            crm_chat_id: r.try_get("crm_chat_id")?,
            crm_message_id: r.try_get("crm_message_id")?,
            raw: r.try_get("raw")?,
        })
    })
    .transpose()
}

/// Replaces the stored text of message `wamid` of a phone (after an edit).
pub async fn set_body(store: &Store, phone_id: i64, wamid: &str, body: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE messages SET body = $3, updated_at = $4 WHERE wamid = $1 AND phone_id = $2")
        .bind(wamid)
        .bind(phone_id)
        .bind(body)
        .bind(now_ms())
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// The raw JSON of every revoke a customer of a phone sent.
pub async fn revokes_of(
    store: &Store,
    phone_id: i64,
    contact_id: Option<i64>,
) -> Result<Vec<Option<String>>, StoreError> {
    let rows = sqlx::query(
        "SELECT raw FROM messages WHERE phone_id = $1 AND contact_id = $2 AND msg_type = 'revoke' AND direction = $3",
    )
    .bind(phone_id)
    .bind(contact_id)
    .bind(Direction::In.as_str())
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(|r: &AnyRow| Ok(r.try_get("raw")?)).collect()
}

/// The `wamid` of a customer's latest inbound message on a number (Meta's time, then arrival order).
pub async fn latest_inbound_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    contact_id: i64,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT wamid FROM messages WHERE phone_id = $1 AND contact_id = $2 AND direction = $3 \
         ORDER BY sent_at DESC, id DESC LIMIT 1",
    )
    .bind(phone_id)
    .bind(contact_id)
    .bind(Direction::In.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| r.try_get::<String, _>("wamid")).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::Direction;

    #[test]
    fn directions_round_trip() {
        for d in [Direction::In, Direction::Out] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Direction::parse("sideways"), None);
    }
}

/// A stored message as the console lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: i64,
    pub phone_id: i64,
    pub direction: String,
    pub msg_type: String,
    pub body: Option<String>,
    /// The customer's WhatsApp id (or business-scoped user id).
    pub contact: Option<String>,
    pub status: Option<String>,
    pub crm_chat_id: Option<String>,
    pub created_at: i64,
}

/// Messages newest first, with ids below `before` when given.
pub async fn recent(store: &Store, before: Option<i64>, limit: i64) -> Result<Vec<Listed>, StoreError> {
    let rows = sqlx::query(
        "SELECT m.id, m.phone_id, m.direction, m.msg_type, m.body, COALESCE(c.wa_id, c.user_id) AS contact, \
         m.status, m.crm_chat_id, m.created_at FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id \
         WHERE m.id < $1 ORDER BY m.id DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Listed {
                id: r.try_get("id")?,
                phone_id: r.try_get("phone_id")?,
                direction: r.try_get("direction")?,
                msg_type: r.try_get("msg_type")?,
                body: r.try_get("body")?,
                contact: r.try_get("contact")?,
                status: r.try_get("status")?,
                crm_chat_id: r.try_get("crm_chat_id")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}
