//! Secrets sealed at rest with AES-256-GCM, and masked for display.
//!
//! A sealed value is `v1:` + base64(nonce(12) || ciphertext+tag). The field's name is bound in as
//! associated data, so a sealed app secret cannot be copied into another column and still open.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("master key: {0}")]
    Key(String),
    #[error("a sealed {0} could not be opened (wrong master key or damaged value)")]
    Open(&'static str),
}

/// Cheap to clone (the key schedule is shared), since the store travels with every request's state.
#[derive(Clone)]
pub struct Sealer {
    cipher: std::sync::Arc<Aes256Gcm>,
    /// Root for secrets derived from the master key (never used for sealing itself).
    derive_root: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn from_key(key: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let derive_root: [u8; 32] =
            Sha256::new().chain_update(b"wabridge derive v1").chain_update(key).finalize().into();
        Sealer { cipher: std::sync::Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))), derive_root }
    }

    /// Parses a key given as base64 (44 chars) or 64 hex digits.
    pub fn from_text(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| SealError::Key(e.to_string()))?
        } else {
            B64.decode(text).map_err(|_| SealError::Key("must be 32 bytes as base64 or 64 hex digits".into()))?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::Key("must be exactly 32 bytes (base64 or 64 hex digits)".into()))?;
        Ok(Sealer::from_key(&key))
    }

    /// Reads the key file, or creates it with a fresh random key and mode 0600.
    pub fn from_key_file(path: &Path) -> Result<Self, SealError> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SealError::Key(format!("cannot read {}: {e}", path.display())))?;
            return Sealer::from_text(&text);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SealError::Key(format!("cannot create {}: {e}", dir.display())))?;
        }
        let key = Aes256Gcm::generate_key(OsRng);
        let text = B64.encode(key);
        write_private(path, text.as_bytes())
            .map_err(|e| SealError::Key(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "generated a new master key file; back it up with the database");
        Sealer::from_text(&text)
    }

    /// A 32-byte secret for `label`, derived from the master key: every instance with the same key derives
    /// the same value (SIP branch and digest nonce secrets), and it reveals nothing about the key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = match <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.derive_root) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn seal(&self, field: &'static str, plain: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain.as_bytes(), aad: field.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(out))
    }

    pub fn open(&self, field: &'static str, sealed: &str) -> Result<String, SealError> {
        let raw = sealed
            .strip_prefix("v1:")
            .and_then(|b| B64.decode(b).ok())
            .filter(|r| r.len() > 12)
            .ok_or(SealError::Open(field))?;
        let (nonce, ct) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: field.as_bytes() })
            .map_err(|_| SealError::Open(field))?;
        String::from_utf8(plain).map_err(|_| SealError::Open(field))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Shows the first and last four characters of a long secret (`abcd…wxyz`); short ones are hidden entirely.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 16 {
        return "…****".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A random token of `len` characters from [A-Za-z0-9].
pub fn random_token(len: usize) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::rngs::OsRng.sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_field_binding() {
        let s = Sealer::from_key(&[7u8; 32]);
        let sealed = s.seal("app_secret", "très secret");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("secret"));
        assert_eq!(s.open("app_secret", &sealed).unwrap(), "très secret");
        assert!(s.open("access_token", &sealed).is_err(), "AAD binds the field");
        assert!(Sealer::from_key(&[8u8; 32]).open("app_secret", &sealed).is_err());
        assert_ne!(sealed, s.seal("app_secret", "très secret"), "fresh nonce each time");
    }

    #[test]
    fn derived_secrets_are_stable_and_distinct() {
        let a = Sealer::from_key(&[7u8; 32]);
        assert_eq!(a.derive("sip.branch"), Sealer::from_key(&[7u8; 32]).derive("sip.branch"));
        assert_ne!(a.derive("sip.branch"), a.derive("sip.digest"));
        assert_ne!(a.derive("sip.branch"), Sealer::from_key(&[8u8; 32]).derive("sip.branch"));
    }

    #[test]
    fn key_text_forms() {
        assert!(Sealer::from_text(&"ab".repeat(32)).is_ok());
        assert!(Sealer::from_text(&B64.encode([1u8; 32])).is_ok());
        assert!(Sealer::from_text("short").is_err());
        assert!(Sealer::from_text(&B64.encode([1u8; 31])).is_err());
    }

    #[test]
    fn key_file_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/master.key");
        let a = Sealer::from_key_file(&path).unwrap();
        let b = Sealer::from_key_file(&path).unwrap();
        assert_eq!(b.open("x", &a.seal("x", "v")).unwrap(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn masking() {
        assert_eq!(mask("abcdefghijklmnopqrstuvwxyz"), "abcd…wxyz");
        assert_eq!(mask("short"), "…****");
        assert_eq!(random_token(40).len(), 40);
    }
}
