//! The admin API's bearer token: generated once, stored only as a SHA-256 hash, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::seal::random_token;
use crate::store::settings::ADMIN_TOKEN_HASH;
use crate::store::{Store, StoreError};

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    format!("wbr_{}", random_token(40))
}

/// Creates the admin token if none exists. Returns the token when this call created it (print it once).
pub async fn ensure(store: &Store) -> Result<Option<String>, StoreError> {
    if store.get_setting(ADMIN_TOKEN_HASH).await?.is_some() {
        return Ok(None);
    }
    let token = new_token();
    // Two processes starting at once: only the one whose insert wins prints its token.
    Ok(store.put_setting_if_absent(ADMIN_TOKEN_HASH, &hash(&token)).await?.then_some(token))
}

/// Replaces the admin token; the old one stops working at once, and so do the web console's sessions logged in
/// with it.
pub async fn rotate(store: &Store) -> Result<String, StoreError> {
    let token = new_token();
    store.put_setting(ADMIN_TOKEN_HASH, &hash(&token)).await?;
    crate::store::console::delete_all(store).await?;
    Ok(token)
}

/// True when `presented` is the current admin token.
pub async fn verify(store: &Store, presented: &str) -> Result<bool, StoreError> {
    let Some(stored) = store.get_setting(ADMIN_TOKEN_HASH).await? else {
        return Ok(false);
    };
    Ok(hash(presented).as_bytes().ct_eq(stored.as_bytes()).into())
}

pub fn announce(token: &str) -> String {
    format!(
        "\n  Admin API token (shown once, store it now):\n\n    {token}\n\n  \
         Use it as 'Authorization: Bearer <token>'. Lost it? Run 'wabridge admin-token rotate' for a new one.\n"
    )
}
