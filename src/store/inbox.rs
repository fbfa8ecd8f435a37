//! The inbox: raw verified webhook bodies, written by the intake's group commits and read once by their
//! `inbox.process` job.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::{now_ms, Store, StoreError};

/// One statement: a multi-row INSERT of a batch of Meta webhooks, all received now; `row` gives the app id and
/// the body of an item (taken from the caller's items as they are: no copy, no second list). The
/// `inbox_enqueue` trigger adds each row's processing job inside the same statement, so the batch commits
/// atomically in one round trip. On SQLite it goes through the native single-connection writer (the `Any`
/// driver would copy every body once more).
pub async fn insert_batch<T: Sync>(store: &Store, items: &[T], row: fn(&T) -> (i64, &[u8])) -> Result<(), StoreError> {
    let n = items.len();
    let mut sql = String::with_capacity(64 + n * 24);
    sql.push_str("INSERT INTO inbox (source, app_id, body, received_at) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        let b = 2 + i * 2;
        sql.push_str(&format!("('meta', ${}, ${}, $1)", b, b + 1));
    }
    if let Some(writer) = &store.sqlite_writer {
        let mut q = sqlx::query::<sqlx::Sqlite>(&sql).bind(now_ms());
        for item in items {
            let (app_id, body) = row(item);
            q = q.bind(app_id).bind(body);
        }
        let _turn = store.intake_turn().await;
        q.execute(writer).await?;
    } else {
        let mut q = sqlx::query(&sql).bind(now_ms());
        for item in items {
            let (app_id, body) = row(item);
            q = q.bind(app_id).bind(body);
        }
        q.execute(&store.pool).await?;
    }
    Ok(())
}

/// A stored body, read without a copy: the bytes are borrowed from the row.
pub struct InboxBody(AnyRow);

impl InboxBody {
    pub fn id(&self) -> Result<i64, StoreError> {
        Ok(self.0.try_get("id")?)
    }

    pub fn body(&self) -> Result<&[u8], StoreError> {
        Ok(self.0.try_get("body")?)
    }

    /// The channel that posted it (`meta`).
    pub fn source(&self) -> Result<String, StoreError> {
        Ok(self.0.try_get("source")?)
    }

    /// The app it was posted for (`meta_apps.id`).
    pub fn app_id(&self) -> Result<i64, StoreError> {
        Ok(self.0.try_get("app_id")?)
    }

    /// When it was received (ms).
    pub fn received_at(&self) -> Result<i64, StoreError> {
        Ok(self.0.try_get("received_at")?)
    }
}

/// The body of inbox row `id`, if it is still there.
pub async fn body_on(conn: &mut AnyConnection, id: i64) -> Result<Option<InboxBody>, StoreError> {
    let row = sqlx::query("SELECT id, source, app_id, received_at, body FROM inbox WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(InboxBody))
}

/// The stored bodies of inbox rows `ids` that are still there and smaller than `max_len` bytes:
/// `(id, source, body)`, by id.
/// An inbox row read for batch processing.
pub struct SmallBody {
    pub id: i64,
    pub source: String,
    pub body: Vec<u8>,
    pub app_id: i64,
    pub received_at: i64,
}

pub async fn small_bodies_on(
    conn: &mut AnyConnection,
    ids: &[i64],
    max_len: usize,
) -> Result<Vec<SmallBody>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let q = format!(
        "SELECT id, source, body, app_id, received_at FROM inbox WHERE LENGTH(body) < $1 AND id IN ({}) ORDER BY id",
        marks.join(", ")
    );
    let mut query = sqlx::query(&q).bind(max_len as i64);
    for id in ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(SmallBody {
                id: r.try_get("id")?,
                source: r.try_get("source")?,
                body: r.try_get("body")?,
                app_id: r.try_get("app_id")?,
                received_at: r.try_get("received_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Marks inbox rows `ids` processed.
pub async fn mark_many_processed_on<'c, E>(conn: E, ids: &[i64]) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    if ids.is_empty() {
        return Ok(());
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let q = format!("UPDATE inbox SET processed_at = $1 WHERE id IN ({})", marks.join(", "));
    let mut query = sqlx::query(&q).bind(now_ms());
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Marks inbox row `id` processed (done, or never processable).
pub async fn mark_processed_on<'c, E>(conn: E, id: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query("UPDATE inbox SET processed_at = $2 WHERE id = $1").bind(id).bind(now_ms()).execute(conn).await?;
    Ok(())
}

/// SQLite: gives the pages this connection caches back (after reading a large body).
pub async fn shrink_memory(conn: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query("PRAGMA shrink_memory").execute(conn).await?;
    Ok(())
}

/// True when a webhook of the same app as inbox row `inbox_id`, acknowledged before it and received after
/// `since` (ms), is not processed yet.
/// [`earlier_unprocessed`] for many rows in one query: those of `inbox_ids` that have one.
pub async fn earlier_unprocessed_among(
    store: &Store,
    inbox_ids: &[i64],
    since: i64,
) -> Result<std::collections::HashSet<i64>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for ids in inbox_ids.chunks(500) {
        let q = format!(
            "SELECT me.id FROM inbox me WHERE me.id IN ({}) AND EXISTS (SELECT 1 FROM inbox i \
             WHERE i.app_id = me.app_id AND i.id < me.id AND i.processed_at IS NULL AND i.received_at > $1)",
            super::marks(2, ids.len())
        );
        let mut query = sqlx::query(&q).bind(since);
        for id in ids {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&store.pool).await? {
            out.insert(r.try_get("id")?);
        }
    }
    Ok(out)
}

pub async fn earlier_unprocessed(store: &Store, inbox_id: i64, since: i64) -> Result<bool, StoreError> {
    let earlier = sqlx::query(
        "SELECT 1 AS one FROM inbox i JOIN inbox me ON me.id = $1 WHERE i.app_id = me.app_id AND i.id < me.id \
         AND i.processed_at IS NULL AND i.received_at > $2 LIMIT 1",
    )
    .bind(inbox_id)
    .bind(since)
    .fetch_optional(&store.pool)
    .await?;
    Ok(earlier.is_some())
}
