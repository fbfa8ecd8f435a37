//! The web console's login sessions (`console_sessions`): a session is stored under the SHA-256 of its cookie
//! value, with the CSRF token its forms carry and when it expires.

use sqlx::Row;

use super::{Store, StoreError};

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf_token: String,
    pub expires_at: i64,
}

/// Stores a new session.
pub async fn insert(store: &Store, id_hash: &str, csrf: &str, now: i64, expires_at: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, csrf_token, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(id_hash)
    .bind(csrf)
    .bind(now)
    .bind(expires_at)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// The session stored under `id_hash` if it has not expired at `now`.
pub async fn get(store: &Store, id_hash: &str, now: i64) -> Result<Option<Session>, StoreError> {
    let row = sqlx::query("SELECT csrf_token, expires_at FROM console_sessions WHERE id_hash = $1 AND expires_at > $2")
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| Ok(Session { csrf_token: r.try_get("csrf_token")?, expires_at: r.try_get("expires_at")? })).transpose()
}

/// Moves a session's expiry (sliding expiry on use).
pub async fn touch(store: &Store, id_hash: &str, now: i64, expires_at: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE console_sessions SET last_seen_at = $2, expires_at = $3 WHERE id_hash = $1")
        .bind(id_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Ends a session (logout).
pub async fn delete(store: &Store, id_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1").bind(id_hash).execute(&store.pool).await?;
    Ok(())
}

/// Removes sessions expired before `now`; returns how many.
pub async fn prune(store: &Store, now: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&store.pool)
        .await?
        .rows_affected())
}

/// Ends every session (the admin token was rotated).
pub async fn delete_all(store: &Store) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM console_sessions").execute(&store.pool).await?.rows_affected())
}

/// Keeps the outcome of an action for the next page of the session.
pub async fn set_flash(store: &Store, id_hash: &str, text: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE console_sessions SET flash = $2 WHERE id_hash = $1")
        .bind(id_hash)
        .bind(text)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// The outcome kept for this page, if any; it is shown once.
pub async fn take_flash(store: &Store, id_hash: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT flash FROM console_sessions WHERE id_hash = $1 AND flash IS NOT NULL")
        .bind(id_hash)
        .fetch_optional(&store.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    sqlx::query("UPDATE console_sessions SET flash = NULL WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&store.pool)
        .await?;
    Ok(row.try_get("flash")?)
}
