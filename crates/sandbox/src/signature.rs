//! Meta's `X-Hub-Signature-256` (`shared/reference/meta-messaging.md` §2): `sha256=` and the lowercase hex
//! HMAC-SHA256 of the exact POST body, keyed with the App Secret. The sandbox's own signer, independent of the
//! product's verifier, so a bug in one does not hide behind the other.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "sha256=";

fn mac(app_secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (RFC 2104: long keys are hashed, short ones padded); this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac
}

/// The header value Meta sends with `body`: `sha256=<64 lowercase hex digits>`.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(mac(app_secret, body).finalize().into_bytes()))
}

/// True when `header` (an `X-Hub-Signature-256` value) is the signature of `body` under `app_secret`; the digest
/// is compared in constant time. For the sandbox's own receivers (tests of the emulators).
pub fn verifies(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.trim().strip_prefix(PREFIX)) else { return false };
    let Ok(claimed) = hex::decode(hex_digest) else { return false };
    mac(app_secret, body).verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rfc4231_case_6_key_longer_than_a_block() {
        let key = [0xaau8; 131];
        assert_eq!(
            sign(&key, b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn verifies_only_the_exact_body_and_secret() {
        let body = br#"{"a":"\u00e9"}"#;
        let header = sign(b"secret", body);
        assert!(verifies(b"secret", body, Some(&header)));
        assert!(!verifies(b"other", body, Some(&header)));
        assert!(!verifies(b"secret", "{\"a\":\"é\"}".as_bytes(), Some(&header)));
        assert!(!verifies(b"secret", body, None));
        assert!(!verifies(b"secret", body, Some(header.trim_start_matches("sha256="))));
        assert!(!verifies(b"secret", body, Some("sha256=zz")));
    }
}
