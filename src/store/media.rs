//! Media files kept locally for the CRM (`media_files`).

use sqlx::Row;

use super::{now_ms, Store, StoreError};

/// A local copy, as recorded.
#[derive(Debug, Clone)]
pub struct MediaFile {
    pub mime_type: Option<String>,
    /// `None` when the download never finished.
    pub path: Option<String>,
}

/// A copy just written.
#[derive(Debug, Clone)]
pub struct NewMediaFile<'a> {
    pub media_id: &'a str,
    pub phone_id: i64,
    pub mime_type: Option<String>,
    pub file_name: &'a str,
    pub path: String,
    pub size: i64,
}

pub async fn get(store: &Store, phone_id: i64, media_id: &str) -> Result<Option<MediaFile>, StoreError> {
    let row = sqlx::query("SELECT mime_type, path FROM media_files WHERE phone_id = $1 AND media_id = $2")
        .bind(phone_id)
        .bind(media_id)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| Ok(MediaFile { mime_type: r.try_get("mime_type").ok().flatten(), path: r.try_get("path")? }))
        .transpose()
}

/// Records a copy (a later download of the same media replaces the record's path, size and type).
pub async fn put(store: &Store, f: &NewMediaFile<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO media_files (media_id, phone_id, mime_type, file_name, path, size, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (phone_id, media_id) DO UPDATE SET path = excluded.path, \
         size = excluded.size, mime_type = excluded.mime_type",
    )
    .bind(f.media_id)
    .bind(f.phone_id)
    .bind(&f.mime_type)
    .bind(f.file_name)
    .bind(&f.path)
    .bind(f.size)
    .bind(now_ms())
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// The paths of the copies recorded before `cutoff` (unix ms).
pub async fn paths_before(store: &Store, cutoff: i64) -> Result<Vec<Option<String>>, StoreError> {
    let rows = sqlx::query("SELECT phone_id, media_id, path FROM media_files WHERE created_at < $1")
        .bind(cutoff)
        .fetch_all(&store.pool)
        .await?;
    Ok(rows.iter().map(|r| r.try_get::<Option<String>, _>("path").ok().flatten()).collect())
}

/// Forgets the copies recorded before `cutoff`; returns how many.
pub async fn delete_before(store: &Store, cutoff: i64) -> Result<u64, StoreError> {
    let n = sqlx::query("DELETE FROM media_files WHERE created_at < $1").bind(cutoff).execute(&store.pool).await?;
    Ok(n.rows_affected())
}
