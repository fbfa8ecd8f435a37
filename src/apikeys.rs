//! API keys for `/api/v1/*` (one or more per tenant), created through the admin API. Only a SHA-256 hash
//! is stored; the key is shown once. A key may be limited to one WABA.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::store::apikeys as stored;
use crate::store::{Store, StoreError};

pub use crate::store::apikeys::ApiKeyView;

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

pub async fn create(store: &Store, name: &str, waba: Option<i64>) -> Result<NewApiKey, StoreError> {
    let key = format!("wbk_{}", crate::seal::random_token(32));
    let prefix: String = key.chars().take(8).collect();
    let view = stored::insert(store, name, &hash(&key), &prefix, waba).await?;
    Ok(NewApiKey { view, key })
}

pub async fn list(store: &Store) -> Result<Vec<ApiKeyView>, StoreError> {
    stored::list(store).await
}

pub async fn revoke(store: &Store, id: i64) -> Result<bool, StoreError> {
    stored::revoke(store, id).await
}

/// The caller owning `key`, if the key exists and is not revoked.
pub async fn authenticate(store: &Store, key: &str) -> Result<Option<Caller>, StoreError> {
    let Some(k) = stored::find_active(store, &hash(key)).await? else { return Ok(None) };
    stored::touch(store, k.id).await?;
    Ok(Some(Caller { key_id: k.id, waba: k.waba }))
}
