//! `X-Hub-Signature-256: sha256=<hex>`: HMAC-SHA256 of the exact raw body with the app secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Decodes the header value into the 32-byte digest it claims.
pub fn parse_header(header: Option<&str>) -> Result<[u8; 32], SignatureError> {
    let value = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = value.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).map_err(|_| SignatureError::Malformed)?;
    Ok(out)
}

/// Constant-time check of `claimed` against HMAC-SHA256(secret, body).
pub fn verify(secret: &[u8], body: &[u8], claimed: &[u8; 32]) -> Result<(), SignatureError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(claimed).map_err(|_| SignatureError::Mismatch)
}

/// The header value Meta would send for `body` (the sandbox, `crates/sandbox`, has a signer of its own).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_failures() {
        let body = br#"{"a":"\u00e9"}"#;
        let header = sign(b"secret", body);
        let claimed = parse_header(Some(&header)).unwrap();
        assert_eq!(verify(b"secret", body, &claimed), Ok(()));
        assert_eq!(verify(b"other", body, &claimed), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"secret", "{\"a\":\"é\"}".as_bytes(), &claimed), Err(SignatureError::Mismatch));
        assert_eq!(parse_header(None), Err(SignatureError::Missing));
        assert_eq!(parse_header(Some("sha1=abc")), Err(SignatureError::Malformed));
        assert_eq!(parse_header(Some("sha256=zz")), Err(SignatureError::Malformed));
        assert_eq!(parse_header(Some(&format!("sha256={}", "a".repeat(63)))), Err(SignatureError::Malformed));
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        let h = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(h, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
