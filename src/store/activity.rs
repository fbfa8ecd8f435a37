//! When webhooks last arrived, per app and per phone (`webhook_activity`), for the console's account health.
//!
//! Written after a webhook body is processed, outside its transaction, and at most about once a minute per app
//! or phone: the process remembers what it wrote and skips the database until [`RESOLUTION_MS`] has passed; then
//! the UPDATE only matches a row older than that, and the INSERT of a first row does nothing on a conflict, so
//! neither waits on another job's lock.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError};

/// How stale a stored time may get before a newer webhook moves it.
pub const RESOLUTION_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    App,
    Phone,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::App => "app",
            Scope::Phone => "phone",
        }
    }
}

/// Records that a webhook for `id` (of `scope`) was received at `at` (ms). Nothing is written when this process
/// wrote a time for it less than [`RESOLUTION_MS`] before `at`.
pub async fn touch(store: &Store, scope: Scope, id: i64, at: i64) -> Result<(), StoreError> {
    let recent =
        |written: &HashMap<(Scope, i64), i64>| written.get(&(scope, id)).is_some_and(|w| at - w < RESOLUTION_MS);
    if recent(&store.activity_written.lock().unwrap_or_else(|p| p.into_inner())) {
        return Ok(());
    }
    let moved =
        sqlx::query("UPDATE webhook_activity SET last_at = $3 WHERE scope = $1 AND ref_id = $2 AND last_at < $4")
            .bind(scope.as_str())
            .bind(id)
            .bind(at)
            .bind(at - RESOLUTION_MS)
            .execute(&store.pool)
            .await?
            .rows_affected();
    if moved == 0 {
        sqlx::query(
            "INSERT INTO webhook_activity (scope, ref_id, last_at) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, ref_id) DO NOTHING",
        )
        .bind(scope.as_str())
        .bind(id)
        .bind(at)
        .execute(&store.pool)
        .await?;
    }
    // The stored time is now at most RESOLUTION_MS older than `at`.
    store.activity_written.lock().unwrap_or_else(|p| p.into_inner()).insert((scope, id), at);
    Ok(())
}

/// The last webhook time (ms) of every app or phone that has one.
pub async fn all(store: &Store, scope: Scope) -> Result<HashMap<i64, i64>, StoreError> {
    let rows = sqlx::query("SELECT ref_id, last_at FROM webhook_activity WHERE scope = $1")
        .bind(scope.as_str())
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("ref_id")?, r.try_get("last_at")?))).collect()
}
