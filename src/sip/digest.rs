//! Digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760 SHA-256) for Meta's INVITEs.
//!
//! A nonce is `hex(timestamp) ‖ hex(HMAC(secret, realm, timestamp))`, so issuing one stores
//! nothing and any instance holding the secret can verify it. Replays are refused by tracking the
//! nonce-count (RFC 7616 §3.4.5): once credentials verify, the nonce's highest `nc` is remembered
//! until the nonce expires, and a request with an `nc` not above it gets [`DigestError::Stale`]
//! (a fresh challenge). Only verified credentials create entries, so an outsider without the
//! password cannot grow the table; it is also capped ([`DEFAULT_NONCE_TABLE_CAPACITY`]): when
//! full, the entry of the oldest nonce is dropped and every nonce issued up to then counts as
//! used. The table is per process: behind several instances, each refuses its own replays.
//!
//! rsip 0.4's typed auth headers reject `algorithm=SHA-256`, so values are parsed here.

use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::hmac_sha256;

/// Default lifetime of a nonce.
pub const DEFAULT_NONCE_MAX_AGE_SECS: u64 = 300;
/// Nonces stamped this far in the future are still accepted (clock steps between instances).
const CLOCK_SKEW_SECS: u64 = 30;
/// Most nonces whose nonce-count is remembered at once.
pub const DEFAULT_NONCE_TABLE_CAPACITY: usize = 16_384;

/// The highest nonce-count seen per nonce that verified, bounded; see the module docs.
#[derive(Debug)]
pub struct NonceUses {
    capacity: usize,
    /// nonce -> (issued, highest nc).
    seen: std::collections::HashMap<String, (u64, u32)>,
    /// (issued, nonce), oldest first: for expiry and eviction.
    order: std::collections::BTreeSet<(u64, String)>,
    /// Nonces issued at or before this time count as used (set when an entry is evicted).
    floor: Option<u64>,
}

impl NonceUses {
    /// An empty table holding at most `capacity` nonces (at least 1).
    pub fn new(capacity: usize) -> Self {
        NonceUses {
            capacity: capacity.max(1),
            seen: std::collections::HashMap::new(),
            order: std::collections::BTreeSet::new(),
            floor: None,
        }
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records a use of `nonce` (issued at `issued`) with nonce-count `nc`; false when it is a
    /// replay (`nc` not above the highest seen) or the nonce is older than an evicted entry.
    /// Entries of nonces issued before `expired_before` are forgotten first.
    pub fn record(&mut self, nonce: &str, issued: u64, nc: u32, expired_before: u64) -> bool {
        while let Some((ts, old)) = self.order.first().cloned() {
            if ts >= expired_before {
                break;
            }
            self.order.remove(&(ts, old.clone()));
            self.seen.remove(&old);
        }
        if self.floor.is_some_and(|floor| issued <= floor) {
            return false;
        }
        if let Some((_, last)) = self.seen.get_mut(nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        while self.seen.len() >= self.capacity {
            let Some((ts, old)) = self.order.pop_first() else { break };
            self.seen.remove(&old);
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
        if self.floor.is_some_and(|floor| issued <= floor) {
            return false;
        }
        self.seen.insert(nonce.to_string(), (issued, nc));
        self.order.insert((issued, nonce.to_string()));
        true
    }
}

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// Token used in headers.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` token (case-insensitive); `-sess` variants are not supported.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex digest of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No credentials (for our realm).
    #[error("no credentials")]
    Missing,
    /// The header value could not be parsed or lacks a required parameter.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// An algorithm other than MD5 or SHA-256.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// A qop other than `auth` (or none at all, when we demanded one).
    #[error("unsupported qop")]
    UnsupportedQop,
    /// Credentials for another realm.
    #[error("credentials are for another realm")]
    RealmMismatch,
    /// The nonce (or opaque) was not issued by us.
    #[error("nonce not issued by this server")]
    BadNonce,
    /// The response was right but the nonce has expired: challenge again with `stale=true`.
    #[error("nonce is stale")]
    Stale,
    /// The username is not the one expected for this number.
    #[error("wrong username")]
    WrongUser,
    /// The response does not match the password.
    #[error("wrong digest response")]
    WrongResponse,
}

/// Digest challenger/verifier for one realm. Clones share the table of used nonces.
#[derive(Clone)]
pub struct Challenger {
    secret: [u8; 32],
    realm: String,
    max_age_secs: u64,
    uses: std::sync::Arc<std::sync::Mutex<NonceUses>>,
}

impl std::fmt::Debug for Challenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenger")
            .field("realm", &self.realm)
            .field("max_age_secs", &self.max_age_secs)
            .finish_non_exhaustive()
    }
}

impl Challenger {
    /// A challenger for `realm` (our SIP hostname), nonces valid for
    /// [`DEFAULT_NONCE_MAX_AGE_SECS`]. Every instance sharing `secret` accepts each other's nonces.
    pub fn new(secret: [u8; 32], realm: String) -> Self {
        Challenger {
            secret,
            realm,
            max_age_secs: DEFAULT_NONCE_MAX_AGE_SECS,
            uses: std::sync::Arc::new(std::sync::Mutex::new(NonceUses::new(DEFAULT_NONCE_TABLE_CAPACITY))),
        }
    }

    /// Changes how many nonces' counts are remembered at once (a fresh, empty table).
    pub fn with_nonce_capacity(mut self, capacity: usize) -> Self {
        self.uses = std::sync::Arc::new(std::sync::Mutex::new(NonceUses::new(capacity)));
        self
    }

    /// Nonces whose count is remembered now.
    pub fn nonces_remembered(&self) -> usize {
        self.uses.lock().map(|u| u.len()).unwrap_or(0)
    }

    /// Changes the nonce lifetime.
    pub fn with_max_age(mut self, secs: u64) -> Self {
        self.max_age_secs = secs;
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A fresh nonce for `now_unix`.
    pub fn nonce(&self, now_unix: u64) -> String {
        let mac = hmac_sha256(&self.secret, &[b"nonce", self.realm.as_bytes(), &now_unix.to_be_bytes()]);
        format!("{now_unix:016x}{}", hex::encode(mac.get(..16).unwrap_or_default()))
    }

    /// The constant `opaque` value.
    pub fn opaque(&self) -> String {
        let mac = hmac_sha256(&self.secret, &[b"opaque", self.realm.as_bytes()]);
        hex::encode(mac.get(..12).unwrap_or_default())
    }

    /// Two `Proxy-Authenticate` headers: SHA-256 first, then MD5 (RFC 8760 §2.4 order of
    /// preference), both `qop="auth"`, same nonce and opaque.
    pub fn challenge(&self, now_unix: u64) -> Vec<rsip::Header> {
        self.challenge_with(now_unix, false)
    }

    /// As [`Challenger::challenge`], with `stale=true` (credentials were right, the nonce expired).
    pub fn challenge_stale(&self, now_unix: u64) -> Vec<rsip::Header> {
        self.challenge_with(now_unix, true)
    }

    fn challenge_with(&self, now_unix: u64, stale: bool) -> Vec<rsip::Header> {
        use rsip::headers::UntypedHeader;
        let nonce = self.nonce(now_unix);
        let opaque = self.opaque();
        [Algorithm::Sha256, Algorithm::Md5]
            .into_iter()
            .map(|alg| {
                let mut value = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{opaque}\", algorithm={}, qop=\"auth\"",
                    quote_escape(&self.realm),
                    alg.name()
                );
                if stale {
                    value.push_str(", stale=true");
                }
                rsip::Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(value))
            })
            .collect()
    }

    /// The realm named in a credentials header value, if it parses.
    pub fn realm_of(header_value: &str) -> Option<String> {
        let (_, params) = parse_auth_value(header_value).ok()?;
        params.into_iter().find(|(n, _)| n == "realm").map(|(_, v)| v)
    }

    /// Verifies a `Proxy-Authorization` value for `method` against `expected_username` /
    /// `password`: scheme Digest, algorithm MD5 or SHA-256 (absent = MD5), our realm, our nonce and
    /// opaque, a `uri`, `qop=auth` with `nc` and `cnonce`, and the response (compared in constant
    /// time). A right response on an expired nonce, or with a nonce-count already used (a replay),
    /// gives [`DigestError::Stale`].
    pub fn verify(
        &self,
        method: &str,
        header_value: &str,
        expected_username: &str,
        password: &str,
        now_unix: u64,
    ) -> Result<(), DigestError> {
        if header_value.trim().is_empty() {
            return Err(DigestError::Missing);
        }
        let (scheme, params) = parse_auth_value(header_value)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::Malformed("scheme is not Digest"));
        }
        let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(token) => Algorithm::from_token(token).ok_or(DigestError::UnsupportedAlgorithm)?,
        };
        let realm = get("realm").ok_or(DigestError::Malformed("realm missing"))?;
        if realm != self.realm {
            return Err(DigestError::RealmMismatch);
        }
        let username = get("username").ok_or(DigestError::Malformed("username missing"))?;
        let nonce = get("nonce").ok_or(DigestError::Malformed("nonce missing"))?;
        let uri = get("uri").filter(|u| !u.is_empty()).ok_or(DigestError::Malformed("uri missing"))?;
        let response = get("response").ok_or(DigestError::Malformed("response missing"))?;
        let qop = get("qop").ok_or(DigestError::UnsupportedQop)?;
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(DigestError::UnsupportedQop);
        }
        let nc = get("nc").ok_or(DigestError::Malformed("nc missing"))?;
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestError::Malformed("nc is not 8 hex digits"));
        }
        let cnonce = get("cnonce").filter(|c| !c.is_empty()).ok_or(DigestError::Malformed("cnonce missing"))?;
        let issued = self.nonce_timestamp(nonce).ok_or(DigestError::BadNonce)?;
        if let Some(opaque) = get("opaque") {
            if !bool::from(opaque.as_bytes().ct_eq(self.opaque().as_bytes())) {
                return Err(DigestError::BadNonce);
            }
        }
        if username != expected_username {
            return Err(DigestError::WrongUser);
        }
        let expected = compute_response(
            algorithm,
            username,
            &self.realm,
            password,
            method,
            uri,
            nonce,
            Some((nc, cnonce, "auth")),
        );
        let given = response.to_ascii_lowercase();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(DigestError::WrongResponse);
        }
        let fresh =
            issued <= now_unix.saturating_add(CLOCK_SKEW_SECS) && now_unix.saturating_sub(issued) <= self.max_age_secs;
        if !fresh {
            return Err(DigestError::Stale);
        }
        let nc = u32::from_str_radix(nc, 16).map_err(|_| DigestError::Malformed("nc is not 8 hex digits"))?;
        let expired_before = now_unix.saturating_sub(self.max_age_secs);
        let first_use = match self.uses.lock() {
            Ok(mut uses) => uses.record(nonce, issued, nc, expired_before),
            Err(_) => false,
        };
        if !first_use {
            return Err(DigestError::Stale);
        }
        Ok(())
    }

    /// The timestamp in a nonce we issued; `None` when the nonce is not ours.
    fn nonce_timestamp(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 48 || !nonce.is_ascii() {
            return None;
        }
        let (ts_hex, _) = nonce.split_at(16);
        let ts = u64::from_str_radix(ts_hex, 16).ok()?;
        let expected = self.nonce(ts);
        bool::from(nonce.as_bytes().ct_eq(expected.as_bytes())).then_some(ts)
    }
}

/// Client side: answers a `Proxy-Authenticate` / `WWW-Authenticate` challenge value with a
/// `Proxy-Authorization` / `Authorization` value (qop=auth with nc=00000001 when offered).
pub fn respond(
    challenge_value: &str,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Result<String, DigestError> {
    let (scheme, params) = parse_auth_value(challenge_value)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::Malformed("scheme is not Digest"));
    }
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(token) => Algorithm::from_token(token).ok_or(DigestError::UnsupportedAlgorithm)?,
    };
    let realm = get("realm").ok_or(DigestError::Malformed("realm missing"))?;
    let nonce = get("nonce").ok_or(DigestError::Malformed("nonce missing"))?;
    let qop_auth = match get("qop") {
        None => false,
        Some(list) if list.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => true,
        Some(_) => return Err(DigestError::UnsupportedQop),
    };
    let nc = "00000001";
    let qop = qop_auth.then_some((nc, cnonce, "auth"));
    let response = compute_response(algorithm, username, realm, password, method, uri, nonce, qop);
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        quote_escape(username),
        quote_escape(realm),
        quote_escape(nonce),
        quote_escape(uri),
        algorithm.name()
    );
    if qop_auth {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{}\"", quote_escape(cnonce)));
    }
    if let Some(opaque) = get("opaque") {
        out.push_str(&format!(", opaque=\"{}\"", quote_escape(opaque)));
    }
    Ok(out)
}

/// A random client nonce (32 hex digits) for [`respond`].
pub fn random_cnonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// RFC 2617 / 7616 `response`: `H(H(A1):nonce[:nc:cnonce:qop]:H(A2))`, A1 = user:realm:password,
/// A2 = method:uri.
#[allow(clippy::too_many_arguments)]
pub fn compute_response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
) -> String {
    let ha1 = algorithm.hex(format!("{username}:{realm}:{password}").as_bytes());
    let ha2 = algorithm.hex(format!("{method}:{uri}").as_bytes());
    let data = match qop {
        Some((nc, cnonce, qop)) => format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    algorithm.hex(data.as_bytes())
}

fn quote_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Parses `Scheme name=value, name="quoted value", ...` into the scheme and lower-case names
/// with unquoted values. Duplicate parameters are malformed.
pub fn parse_auth_value(value: &str) -> Result<(String, Vec<(String, String)>), DigestError> {
    let value = value.trim();
    let (scheme, mut rest) = value.split_once([' ', '\t']).ok_or(DigestError::Malformed("no parameters"))?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(DigestError::Malformed("bad scheme"));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        if params.len() >= 32 {
            return Err(DigestError::Malformed("too many parameters"));
        }
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_end);
        if name.is_empty() {
            return Err(DigestError::Malformed("bad parameter name"));
        }
        let after = after.trim_start_matches([' ', '\t']);
        let after = after.strip_prefix('=').ok_or(DigestError::Malformed("parameter without value"))?;
        let after = after.trim_start_matches([' ', '\t']);
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, escaped)) => out.push(escaped),
                        None => break,
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => out.push(c),
                }
            }
            let end = end.ok_or(DigestError::Malformed("unterminated quoted string"))?;
            (out, quoted.get(end..).unwrap_or_default())
        } else {
            let end = after.find([',', ' ', '\t']).unwrap_or(after.len());
            let (token, remaining) = after.split_at(end);
            (token.to_string(), remaining)
        };
        let name = name.to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err(DigestError::Malformed("duplicate parameter"));
        }
        params.push((name, val));
        let remaining = remaining.trim_start_matches([' ', '\t']);
        if !(remaining.is_empty() || remaining.starts_with(',')) {
            return Err(DigestError::Malformed("junk after parameter"));
        }
        rest = remaining;
    }
    Ok((scheme.to_string(), params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::headers::UntypedHeader;

    const NOW: u64 = 1_760_000_000;
    const URI: &str = "sip:+15551234567@sip.example.com";

    fn challenger() -> Challenger {
        Challenger::new([42u8; 32], "sip.example.com".to_string())
    }

    fn challenge_values(c: &Challenger, now: u64) -> Vec<String> {
        c.challenge(now)
            .into_iter()
            .map(|h| match h {
                rsip::Header::ProxyAuthenticate(v) => v.value().to_string(),
                other => panic!("unexpected header {other:?}"),
            })
            .collect()
    }

    #[test]
    fn challenge_has_sha256_then_md5() {
        let values = challenge_values(&challenger(), NOW);
        assert_eq!(values.len(), 2);
        assert!(values[0].contains("algorithm=SHA-256"), "{}", values[0]);
        assert!(values[1].contains("algorithm=MD5"));
        for v in &values {
            assert!(v.starts_with("Digest realm=\"sip.example.com\", nonce=\""));
            assert!(v.contains("qop=\"auth\"") && v.contains("opaque=\""));
            assert!(!v.contains("stale"));
        }
        let stale = challenger().challenge_stale(NOW);
        assert!(stale.iter().all(|h| h.to_string().contains("stale=true")));
        assert!(stale[0].to_string().starts_with("Proxy-Authenticate: Digest"));
    }

    #[test]
    fn sha256_and_md5_round_trip() {
        for value in challenge_values(&challenger(), NOW) {
            let c = challenger();
            let auth = respond(&value, "INVITE", URI, "15551234567", "s3cret", "abcdef0123").unwrap();
            assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW + 10), Ok(()), "{auth}");
            assert_eq!(Challenger::realm_of(&auth).as_deref(), Some("sip.example.com"));
        }
    }

    #[test]
    fn wrong_password_user_and_method() {
        let c = challenger();
        let value = &challenge_values(&c, NOW)[0];
        let auth = respond(value, "INVITE", URI, "15551234567", "wrong", "c1").unwrap();
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW), Err(DigestError::WrongResponse));
        let auth = respond(value, "INVITE", URI, "15550000000", "s3cret", "c1").unwrap();
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW), Err(DigestError::WrongUser));
        let auth = respond(value, "BYE", URI, "15551234567", "s3cret", "c1").unwrap();
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW), Err(DigestError::WrongResponse));
    }

    #[test]
    fn stale_and_forged_nonces() {
        let c = challenger();
        let value = &challenge_values(&c, NOW)[1];
        let auth = respond(value, "INVITE", URI, "15551234567", "s3cret", "c1").unwrap();
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW + 300), Ok(()));
        let c = challenger();
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW + 301), Err(DigestError::Stale));
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW - 31), Err(DigestError::Stale));
        // A stale nonce with a wrong password is a wrong password, not a stale nonce.
        let bad = respond(value, "INVITE", URI, "15551234567", "nope", "c1").unwrap();
        assert_eq!(c.verify("INVITE", &bad, "15551234567", "s3cret", NOW + 999), Err(DigestError::WrongResponse));
        // Another secret's nonce is not ours.
        let other = Challenger::new([1u8; 32], "sip.example.com".into());
        assert_eq!(other.verify("INVITE", &auth, "15551234567", "s3cret", NOW), Err(DigestError::BadNonce));
        let forged = auth.replace(&c.nonce(NOW), &format!("{:016x}{}", NOW + 1, "0".repeat(32)));
        assert_eq!(c.verify("INVITE", &forged, "15551234567", "s3cret", NOW), Err(DigestError::BadNonce));
        let shorter = Challenger::new([42u8; 32], "sip.example.com".into()).with_max_age(5);
        assert_eq!(shorter.verify("INVITE", &auth, "15551234567", "s3cret", NOW + 6), Err(DigestError::Stale));
    }

    /// Regression (issue 11): captured credentials could be replayed for the nonce's lifetime.
    #[test]
    fn replayed_credentials_are_refused() {
        let c = challenger();
        let value = &challenge_values(&c, NOW)[0];
        let auth = respond(value, "INVITE", URI, "15551234567", "s3cret", "c1").unwrap();
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW + 1), Ok(()));
        assert_eq!(c.verify("INVITE", &auth, "15551234567", "s3cret", NOW + 2), Err(DigestError::Stale));
        // A clone (another connection's view) shares the table.
        assert_eq!(c.clone().verify("INVITE", &auth, "15551234567", "s3cret", NOW + 2), Err(DigestError::Stale));
        // The same nonce with a higher nonce-count (a client reusing its nonce) is accepted once.
        let nonce = c.nonce(NOW);
        let next = |nc: &str| {
            let response = compute_response(
                Algorithm::Sha256,
                "15551234567",
                "sip.example.com",
                "s3cret",
                "INVITE",
                URI,
                &nonce,
                Some((nc, "c2", "auth")),
            );
            format!(
                "Digest username=\"15551234567\", realm=\"sip.example.com\", nonce=\"{nonce}\", uri=\"{URI}\", \
                 response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"c2\""
            )
        };
        assert_eq!(c.verify("INVITE", &next("00000002"), "15551234567", "s3cret", NOW + 3), Ok(()));
        assert_eq!(c.verify("INVITE", &next("00000002"), "15551234567", "s3cret", NOW + 3), Err(DigestError::Stale));
        assert_eq!(c.verify("INVITE", &next("00000001"), "15551234567", "s3cret", NOW + 3), Err(DigestError::Stale));
        // Wrong passwords never create entries: an outsider cannot grow the table.
        let before = c.nonces_remembered();
        for i in 0..50 {
            let bad = respond(&challenge_values(&c, NOW + i)[0], "INVITE", URI, "15551234567", "x", "c").unwrap();
            assert_eq!(c.verify("INVITE", &bad, "15551234567", "s3cret", NOW + i), Err(DigestError::WrongResponse));
        }
        assert_eq!(c.nonces_remembered(), before);
    }

    #[test]
    fn the_nonce_table_is_bounded() {
        let c = challenger().with_nonce_capacity(3);
        let use_at = |t: u64| {
            let auth = respond(&challenge_values(&c, t)[0], "INVITE", URI, "15551234567", "s3cret", "c").unwrap();
            c.verify("INVITE", &auth, "15551234567", "s3cret", t + 1)
        };
        for t in 0..10 {
            assert_eq!(use_at(NOW + t), Ok(()));
            assert!(c.nonces_remembered() <= 3);
        }
        // An evicted nonce is not forgotten: everything issued up to it counts as used.
        let old = respond(&challenge_values(&c, NOW)[0], "INVITE", URI, "15551234567", "s3cret", "other").unwrap();
        assert_eq!(c.verify("INVITE", &old, "15551234567", "s3cret", NOW + 11), Err(DigestError::Stale));
        // Expired entries are dropped as time passes.
        assert_eq!(use_at(NOW + 1000), Ok(()));
        assert_eq!(c.nonces_remembered(), 1);
        let mut table = NonceUses::new(2);
        assert!(table.record("a", 10, 1, 0) && table.record("b", 11, 1, 0) && table.record("c", 12, 1, 0));
        assert_eq!(table.len(), 2);
        assert!(!table.record("a", 10, 2, 0), "evicted: at or below the floor");
        assert!(!table.record("z", 9, 1, 0));
        assert!(table.record("d", 13, 1, 0));
    }

    #[test]
    fn malformed_and_unsupported() {
        let c = challenger();
        let nonce = c.nonce(NOW);
        let base = format!("Digest username=\"15551234567\", realm=\"sip.example.com\", nonce=\"{nonce}\", uri=\"{URI}\", response=\"00\"");
        let check = |v: &str| c.verify("INVITE", v, "15551234567", "s3cret", NOW);
        assert_eq!(check(""), Err(DigestError::Missing));
        assert_eq!(check(&base), Err(DigestError::UnsupportedQop));
        assert_eq!(
            check(&format!("{base}, qop=auth-int, nc=00000001, cnonce=\"x\"")),
            Err(DigestError::UnsupportedQop)
        );
        assert_eq!(check(&format!("{base}, qop=auth, cnonce=\"x\"")), Err(DigestError::Malformed("nc missing")));
        assert_eq!(
            check(&format!("{base}, qop=auth, nc=1, cnonce=\"x\"")),
            Err(DigestError::Malformed("nc is not 8 hex digits"))
        );
        assert_eq!(check(&format!("{base}, algorithm=SHA-512-256")), Err(DigestError::UnsupportedAlgorithm));
        assert_eq!(check(&base.replace("sip.example.com\"", "wa.meta.vc\"")), Err(DigestError::RealmMismatch));
        assert_eq!(check(&base.replace("Digest", "Basic")), Err(DigestError::Malformed("scheme is not Digest")));
        assert_eq!(check("Digest realm=\"unterminated"), Err(DigestError::Malformed("unterminated quoted string")));
        assert_eq!(check("Digest realm=a, realm=b"), Err(DigestError::Malformed("duplicate parameter")));
        assert_eq!(check("Digest"), Err(DigestError::Malformed("no parameters")));
        let no_uri = format!("Digest username=\"15551234567\", realm=\"sip.example.com\", nonce=\"{nonce}\", response=\"00\", qop=auth, nc=00000001, cnonce=\"x\"");
        assert_eq!(check(&no_uri), Err(DigestError::Malformed("uri missing")));
        let good = respond(&challenge_values(&c, NOW)[0], "INVITE", URI, "15551234567", "s3cret", "x").unwrap();
        assert_eq!(check(&good.replace(&c.opaque(), "deadbeef")), Err(DigestError::BadNonce));
        assert_eq!(check(&good.replace("response=\"", "response=\"0")), Err(DigestError::WrongResponse));
    }

    #[test]
    fn rfc_known_answers() {
        // RFC 2617 §3.5.
        let md5 = respond(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
        )
        .unwrap();
        assert!(md5.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{md5}");
        // RFC 7616 §3.9.1.
        let challenge = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = respond(challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce).unwrap();
        assert!(sha.contains("response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""), "{sha}");
        let md5_7616 =
            respond(&challenge.replace("SHA-256", "MD5"), "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce)
                .unwrap();
        assert!(md5_7616.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""), "{md5_7616}");
    }

    #[test]
    fn respond_without_qop_and_escaping() {
        let out = respond("Digest realm=\"a\\\"b\", nonce=\"n\"", "INVITE", "sip:x", "u", "p", "c").unwrap();
        assert!(out.contains("realm=\"a\\\"b\"") && !out.contains("qop"), "{out}");
        assert_eq!(random_cnonce().len(), 32);
        assert!(format!("{:?}", challenger()).contains("sip.example.com"));
        assert!(!format!("{:?}", challenger()).contains("42"));
    }
}
