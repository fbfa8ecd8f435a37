//! Pure decision core of wabridge's SIP edge proxy.
//!
//! The edge sits between Meta (TLS, port 5061) and a business's Asterisk (UDP, TCP or TLS). It is a
//! record-routing proxy for signalling only: SDP bodies pass untouched, and it is never an open relay.
//!
//! Everything here is plain functions over plain data: no I/O, no sockets, no clocks (the caller
//! passes `now_unix`), no randomness except in [`digest::random_cnonce`].
//!
//! Entry points:
//! - [`message::parse`] turns bytes into an [`rsip::SipMessage`] (with limits), and
//!   [`message::message_bytes`] turns one back into bytes. Use these rather than rsip's own
//!   `TryFrom<&[u8]>` / `Display`: see the module docs of [`message`] for the rsip 0.4 quirks they avoid.
//! - [`proxy::decide_request`] / [`proxy::decide_response`] decide what to do with a message.
//! - [`digest::Challenger`] challenges and verifies Meta's digest credentials statelessly.
//! - [`acl::Acl`] holds Meta's source prefixes.
//! - [`transaction`] keys messages to transactions and runs the RFC 3261 client and server state
//!   machines and timers on a clock the caller passes in.

pub mod acl;
pub mod digest;
pub mod message;
pub mod proxy;
pub mod transaction;
pub mod uri;

#[cfg(test)]
pub(crate) mod testdata;

pub use message::{bad_request_for, call_id_key, parse, ParseError};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 over length-prefixed parts, keyed with a 32-byte secret.
///
/// Each part is prefixed with its length so that ("ab","c") and ("a","bc") differ.
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC pads keys shorter than the block size with zeros, so a 64-byte zero-padded key gives the
    // same MAC as the 32-byte key; using the fixed-size constructor avoids a fallible call.
    let mut block_key = [0u8; 64];
    for (dst, src) in block_key.iter_mut().zip(key.iter()) {
        *dst = *src;
    }
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block_key.into());
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_slice_keyed_hmac() {
        let key = [7u8; 32];
        let ours = hmac_sha256(&key, &[b"abc"]);
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        reference.update(&3u64.to_be_bytes());
        reference.update(b"abc");
        assert_eq!(ours.to_vec(), reference.finalize().into_bytes().to_vec());
        assert_ne!(hmac_sha256(&key, &[b"ab", b"c"]), hmac_sha256(&key, &[b"a", b"bc"]));
    }
}
