//! API keys for `/api/v1/*`: only a hash of each key is stored.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{now_ms, rfc3339, Store, StoreError};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: i64,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// The wabridge id of the only WABA this key may send from; null for all.
    pub waba: Option<i64>,
    /// The wabridge ids of the only phones this key may use; empty for every phone of its scope.
    pub phones: Vec<i64>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

/// A key that is not revoked, found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveKey {
    pub id: i64,
    pub waba: Option<i64>,
    /// Empty when the key is not limited to some phones.
    pub phones: Vec<i64>,
}

const COLS: &str = "id, name, key_prefix, waba_id, created_at, last_used_at, revoked_at";

fn view(r: &AnyRow) -> Result<ApiKeyView, StoreError> {
    Ok(ApiKeyView {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("key_prefix")?,
        waba: r.try_get("waba_id")?,
        phones: Vec::new(),
        created_at: rfc3339(r.try_get("created_at")?),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

pub async fn insert(
    store: &Store,
    name: &str,
    key_hash: &str,
    prefix: &str,
    waba: Option<i64>,
    phones: &[i64],
) -> Result<ApiKeyView, StoreError> {
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (name, key_hash, key_prefix, waba_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING {COLS}"
    ))
    .bind(name)
    .bind(key_hash)
    .bind(prefix)
    .bind(waba)
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?;
    let mut key = view(&row)?;
    for &phone in phones {
        sqlx::query("INSERT INTO api_key_phones (key_id, phone_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key.id)
            .bind(phone)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    key.phones = phones_of(store, key.id).await?;
    Ok(key)
}

pub async fn list(store: &Store) -> Result<Vec<ApiKeyView>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM api_keys ORDER BY id")).fetch_all(&store.pool).await?;
    let mut keys = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    let pairs = sqlx::query("SELECT key_id, phone_id FROM api_key_phones ORDER BY key_id, phone_id")
        .fetch_all(&store.pool)
        .await?;
    for r in &pairs {
        let (key, phone): (i64, i64) = (r.try_get("key_id")?, r.try_get("phone_id")?);
        if let Some(k) = keys.iter_mut().find(|k| k.id == key) {
            k.phones.push(phone);
        }
    }
    Ok(keys)
}

/// The phones key `id` is limited to (empty: not limited to some phones).
async fn phones_of(store: &Store, id: i64) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query("SELECT phone_id FROM api_key_phones WHERE key_id = $1 ORDER BY phone_id")
        .bind(id)
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("phone_id")?)).collect()
}

/// True when this call revoked the key (it existed and was not revoked yet).
pub async fn revoke(store: &Store, id: i64) -> Result<bool, StoreError> {
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now_ms())
        .execute(&store.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The key with this hash, if it exists and is not revoked.
pub async fn find_active(store: &Store, key_hash: &str) -> Result<Option<ActiveKey>, StoreError> {
    let row = sqlx::query("SELECT id, waba_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(key_hash)
        .fetch_optional(&store.pool)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let id = r.try_get("id")?;
    Ok(Some(ActiveKey { id, waba: r.try_get("waba_id")?, phones: phones_of(store, id).await? }))
}

/// Marks a key used now and counts the call (`GET /api/v1/stats`).
pub async fn touch(store: &Store, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET last_used_at = $2, calls = calls + 1 WHERE id = $1")
        .bind(id)
        .bind(now_ms())
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Counts a media upload made with a key (`GET /api/v1/stats`).
pub async fn count_media_upload(store: &Store, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET media_uploads = media_uploads + 1 WHERE id = $1")
        .bind(id)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// A key's calls and media uploads.
pub async fn usage(store: &Store, id: i64) -> Result<(i64, i64), StoreError> {
    let row =
        sqlx::query("SELECT calls, media_uploads FROM api_keys WHERE id = $1").bind(id).fetch_one(&store.pool).await?;
    Ok((row.try_get("calls")?, row.try_get("media_uploads")?))
}
