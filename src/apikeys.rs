//! API keys for `/api/v1/*` (one or more per tenant), created through the admin API. Only a SHA-256 hash
//! is stored; the key is shown once. A key may be limited to one WABA.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

use crate::store::{now_ms, rfc3339, Store, StoreError};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: i64,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// The wabridge id of the only WABA this key may send from; null for all.
    pub waba: Option<i64>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The key itself, shown only in this answer. Send it as `Authorization: Bearer <key>`.
    pub key: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyInput {
    /// A name for the tenant or integration using the key (1-200 characters).
    pub name: String,
    /// Limit the key to this WABA (wabridge id).
    pub waba: Option<i64>,
}

/// The authenticated caller of `/api/v1`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    pub waba: Option<i64>,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn view(r: &sqlx::any::AnyRow) -> Result<ApiKeyView, StoreError> {
    Ok(ApiKeyView {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("key_prefix")?,
        waba: r.try_get("waba_id")?,
        created_at: rfc3339(r.try_get("created_at")?),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

pub async fn create(store: &Store, name: &str, waba: Option<i64>) -> Result<NewApiKey, StoreError> {
    let key = format!("wbk_{}", crate::seal::random_token(32));
    let prefix: String = key.chars().take(8).collect();
    let row = sqlx::query(
        "INSERT INTO api_keys (name, key_hash, key_prefix, waba_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, key_prefix, waba_id, created_at, last_used_at, revoked_at",
    )
    .bind(name)
    .bind(hash(&key))
    .bind(&prefix)
    .bind(waba)
    .bind(now_ms())
    .fetch_one(&store.pool)
    .await?;
    Ok(NewApiKey { view: view(&row)?, key })
}

pub async fn list(store: &Store) -> Result<Vec<ApiKeyView>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, key_prefix, waba_id, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id",
    )
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(view).collect()
}

pub async fn revoke(store: &Store, id: i64) -> Result<bool, StoreError> {
    let n = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(now_ms())
        .execute(&store.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The caller owning `key`, if the key exists and is not revoked.
pub async fn authenticate(store: &Store, key: &str) -> Result<Option<Caller>, StoreError> {
    let row = sqlx::query("SELECT id, waba_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(hash(key))
        .fetch_optional(&store.pool)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let caller = Caller { key_id: r.try_get("id")?, waba: r.try_get("waba_id")? };
    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(caller.key_id)
        .bind(now_ms())
        .execute(&store.pool)
        .await?;
    Ok(Some(caller))
}
