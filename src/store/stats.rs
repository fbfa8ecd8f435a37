//! Counts for the stats: messages received and sent, templates sent, failed sends, dead event deliveries —
//! over every number or a set of them (a tenant's). Rows of these tables are never pruned, so the counts only
//! grow (they back Prometheus counters).

use sqlx::Row;

use super::{Store, StoreError};

/// Totals over a set of phones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages_received: i64,
    /// Sends Meta took (read marks left out).
    pub messages_sent: i64,
    pub templates_sent: i64,
    /// Sends given up on.
    pub sends_failed: i64,
    /// Event deliveries given up on.
    pub event_deliveries_dead: i64,
}

/// The totals over `scope` (`None`: every phone).
pub async fn totals(store: &Store, scope: Option<&[i64]>) -> Result<Totals, StoreError> {
    let (in_scope, out_scope, ev_scope) = match scope {
        None => (String::new(), String::new(), String::new()),
        Some([]) => (" AND 1 = 0".into(), " AND 1 = 0".into(), " AND 1 = 0".into()),
        Some(ids) => {
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            (
                format!(" AND phone_id IN ({list})"),
                format!(" AND phone_id IN ({list})"),
                format!(" AND e.phone_id IN ({list})"),
            )
        }
    };
    let row = sqlx::query(&format!(
        "SELECT \
         (SELECT COUNT(*) FROM messages WHERE direction = 'in'{in_scope}) AS received, \
         (SELECT COUNT(*) FROM outbound WHERE origin <> 'read' AND state = 'accepted'{out_scope}) AS sent, \
         (SELECT COUNT(*) FROM outbound WHERE origin <> 'read' AND state = 'accepted' AND msg_type = 'template'{out_scope}) AS templates, \
         (SELECT COUNT(*) FROM outbound WHERE origin <> 'read' AND state = 'failed'{out_scope}) AS failed, \
         (SELECT COUNT(*) FROM event_deliveries d JOIN events e ON e.id = d.event_id WHERE d.state = 'dead'{ev_scope}) AS dead"
    ))
    .fetch_one(&store.pool)
    .await?;
    Ok(Totals {
        messages_received: row.try_get("received")?,
        messages_sent: row.try_get("sent")?,
        templates_sent: row.try_get("templates")?,
        sends_failed: row.try_get("failed")?,
        event_deliveries_dead: row.try_get("dead")?,
    })
}
