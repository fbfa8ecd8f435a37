//! Media handed to the CRM: a link to wabridge, signed (HMAC-SHA256 with a key derived from the master key)
//! and expiring, so only the portal that got it can fetch it, and only for a while. Behind the link the
//! bytes come from a local copy (`<data_dir>/media`, pruned after `media_retention_days`) or, with the phone's
//! `file_proxy` flag, straight from Meta on each request.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::meta::graph;
use crate::store::media::{self as files, NewMediaFile};
use crate::store::{now_ms, Store, StoreError};

/// The string a link signs.
fn signed_text(phone_id: i64, media_id: &str, exp: i64, name: &str) -> String {
    format!("{phone_id}|{media_id}|{exp}|{name}")
}

pub fn sign(key: &[u8; 32], phone_id: i64, media_id: &str, exp: i64, name: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signed_text(phone_id, media_id, exp, name).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a link's signature in constant time, then its expiry (unix seconds).
pub fn verify(
    key: &[u8; 32],
    phone_id: i64,
    media_id: &str,
    exp: i64,
    name: &str,
    sig: &str,
    now_s: i64,
) -> Result<(), &'static str> {
    let Ok(sig) = hex::decode(sig) else { return Err("the link's signature is malformed") };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signed_text(phone_id, media_id, exp, name).as_bytes());
    mac.verify_slice(&sig).map_err(|_| "the link's signature does not match")?;
    if exp < now_s {
        return Err("the link has expired");
    }
    Ok(())
}

/// A signed link for a media item of a phone, valid `ttl_s` seconds.
pub fn link(base: &str, key: &[u8; 32], phone_id: i64, media_id: &str, name: &str, ttl_s: u64) -> String {
    let exp = now_ms() / 1000 + ttl_s as i64;
    let sig = sign(key, phone_id, media_id, exp, name);
    let name_q: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let id_q: String = url::form_urlencoded::byte_serialize(media_id.as_bytes()).collect();
    format!("{base}/media/{phone_id}/{id_q}?exp={exp}&name={name_q}&sig={sig}")
}

/// Where a local copy lives.
pub fn local_path(data_dir: &std::path::Path, phone_id: i64, media_id: &str) -> std::path::PathBuf {
    let safe: String = media_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    data_dir.join("media").join(phone_id.to_string()).join(safe)
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error("could not write the media file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Downloads a media item from Meta into the local media directory (once) and records it.
pub async fn keep_local(
    b: &super::Bridge,
    phone: &crate::store::registry::Phone,
    token: &str,
    media_id: &str,
    file_name: &str,
) -> Result<(), MediaError> {
    let (store, graph, data_dir) = (&b.store, &b.graph, b.config.data_dir.as_path());
    let (phone_id, phone_number_id) = (phone.id, phone.phone_number_id.as_str());
    if let Some(known) = files::get(store, phone_id, media_id).await? {
        if known.path.is_some_and(|p| std::path::Path::new(&p).exists()) {
            return Ok(());
        }
    }
    let info = graph.media_info(media_id, phone_number_id, token).await?;
    let resp = graph.download(&info.url, token).await?;
    let bytes = resp.bytes().await.map_err(|e| graph::Error::Unknown { url: "media".into(), reason: e.to_string() })?;
    let path = local_path(data_dir, phone_id, media_id);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension("part");
    tokio::fs::write(&tmp, &bytes).await?;
    tokio::fs::rename(&tmp, &path).await?;
    let file = NewMediaFile {
        media_id,
        phone_id,
        mime_type: info.mime_type,
        file_name,
        path: path.to_string_lossy().to_string(),
        size: bytes.len() as i64,
    };
    files::put(store, &file).await?;
    Ok(())
}

/// A local copy's MIME type and path, if kept.
pub async fn local(
    store: &Store,
    phone_id: i64,
    media_id: &str,
) -> Result<Option<(Option<String>, String)>, StoreError> {
    Ok(files::get(store, phone_id, media_id).await?.and_then(|f| f.path.map(|p| (f.mime_type, p))))
}

/// Removes local copies older than `days`.
pub async fn prune(store: &Store, days: u64) -> Result<u64, StoreError> {
    let cutoff = now_ms() - days as i64 * 86_400_000;
    for p in files::paths_before(store, cutoff).await?.into_iter().flatten() {
        let _ = tokio::fs::remove_file(p).await;
    }
    files::delete_before(store, cutoff).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_only_untampered_and_unexpired() {
        let key = [7u8; 32];
        let sig = sign(&key, 3, "m1", 1000, "a.pdf");
        assert!(verify(&key, 3, "m1", 1000, "a.pdf", &sig, 999).is_ok());
        assert_eq!(verify(&key, 3, "m1", 1000, "a.pdf", &sig, 1001), Err("the link has expired"));
        assert!(verify(&key, 3, "m2", 1000, "a.pdf", &sig, 999).is_err());
        assert!(verify(&key, 4, "m1", 1000, "a.pdf", &sig, 999).is_err());
        assert!(verify(&key, 3, "m1", 2000, "a.pdf", &sig, 999).is_err());
        assert!(verify(&key, 3, "m1", 1000, "b.pdf", &sig, 999).is_err());
        assert!(verify(&[8u8; 32], 3, "m1", 1000, "a.pdf", &sig, 999).is_err());
        assert!(verify(&key, 3, "m1", 1000, "a.pdf", "zz", 999).is_err());
    }

    #[test]
    fn local_paths_cannot_escape_the_media_directory() {
        let p = local_path(std::path::Path::new("/d"), 1, "../../etc/passwd");
        assert_eq!(p, std::path::PathBuf::from("/d/media/1/etcpasswd"));
    }
}
