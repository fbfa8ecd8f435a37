//! API keys for `/api/v1/*` (one or more per tenant), created through the admin API. Only a SHA-256 hash
//! is stored; the key is shown once. A key may be limited to one WABA, to some phones, or to both.

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
    /// Limit the key to these phones (wabridge ids or E.164 numbers, at most 100); with `waba`, they must belong
    /// to it.
    #[serde(default)]
    pub phones: Vec<PhoneRef>,
}

/// A phone named by its wabridge id or its E.164 number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PhoneRef {
    Id(i64),
    Number(String),
}

impl PhoneRef {
    /// A command-line value: digits only are an id, anything else a number.
    pub fn parse(s: &str) -> PhoneRef {
        s.parse().map_or_else(|_| PhoneRef::Number(s.to_string()), PhoneRef::Id)
    }
}

/// The most phones one key may be limited to.
pub const MAX_PHONES: usize = 100;

/// The wabridge ids of `phones`, each checked to exist (and to belong to `waba` when given). `Err` carries the
/// field (`phones[i]`) and why.
pub async fn resolve_phones(
    store: &Store,
    waba: Option<i64>,
    phones: &[PhoneRef],
) -> Result<Result<Vec<i64>, (String, String)>, StoreError> {
    if phones.len() > MAX_PHONES {
        return Ok(Err(("phones".into(), format!("at most {MAX_PHONES} phones"))));
    }
    let mut ids = Vec::with_capacity(phones.len());
    for (i, r) in phones.iter().enumerate() {
        let field = format!("phones[{i}]");
        let found = match r {
            PhoneRef::Id(id) => store.get_phone(*id).await?,
            PhoneRef::Number(n) => match crate::phone::normalize_e164(n) {
                Ok(n) => store.find_phone_by(crate::store::registry::PhoneKey::Number, &n).await?,
                Err(e) => return Ok(Err((field, e.to_string()))),
            },
        };
        let Some(phone) = found else {
            return Ok(Err((field, "is not a phone registered in wabridge".into())));
        };
        if waba.is_some_and(|w| w != phone.waba_id) {
            return Ok(Err((field, format!("phone {} does not belong to WABA {}", phone.id, phone.waba_id))));
        }
        ids.push(phone.id);
    }
    Ok(Ok(ids))
}

/// The authenticated caller of `/api/v1`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    pub waba: Option<i64>,
    /// The phones the key is limited to; empty when it is not limited to some phones.
    pub phones: Vec<i64>,
}

impl Caller {
    /// True when the key may use phone `phone_id` of WABA `waba_id` (send from it, read its history, get its
    /// events).
    pub fn allows_phone(&self, waba_id: i64, phone_id: i64) -> bool {
        self.waba.is_none_or(|w| w == waba_id) && (self.phones.is_empty() || self.phones.contains(&phone_id))
    }
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub async fn create(store: &Store, name: &str, waba: Option<i64>, phones: &[i64]) -> Result<NewApiKey, StoreError> {
    let key = format!("wbk_{}", crate::seal::random_token(32));
    let prefix: String = key.chars().take(8).collect();
    let view = stored::insert(store, name, &hash(&key), &prefix, waba, phones).await?;
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
    Ok(Some(Caller { key_id: k.id, waba: k.waba, phones: k.phones }))
}
