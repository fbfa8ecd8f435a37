//! Meta's answer to a digest challenge (RFC 7616 with SIP's RFC 8760 algorithms): this crate's own
//! implementation, so the edge's verifier is checked against code it does not share.
//!
//! Meta authenticates with username = the business number's digits (no `+`) and password = the number's
//! `sip_user_password` (`shared/reference/meta-calling-sip.md` §2.4).

use md5::Md5;
use sha2::{Digest, Sha256};

/// The `name=value` / `name="value"` parameters of a `Digest ...` header value.
fn params(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Digest")?.trim();
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return Some(out);
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => val.extend(chars.next()),
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                val.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_ascii_lowercase(), val.trim().to_string()));
    }
}

/// Which hash a challenge asks for, when this side supports it: SHA-256 or MD5 (the default when absent).
pub fn algorithm(challenge: &str) -> Option<&'static str> {
    let p = params(challenge)?;
    match p.iter().find(|(k, _)| k == "algorithm").map(|(_, v)| v.to_ascii_uppercase()).as_deref() {
        None | Some("MD5") => Some("MD5"),
        Some("SHA-256") => Some("SHA-256"),
        _ => None,
    }
}

fn hex_hash(algorithm: &str, data: &str) -> String {
    if algorithm == "SHA-256" {
        hex::encode(Sha256::digest(data.as_bytes()))
    } else {
        hex::encode(Md5::digest(data.as_bytes()))
    }
}

/// The `Proxy-Authorization` value answering `challenge` (a `Proxy-Authenticate` value) for a request
/// `method uri`, with `qop=auth`, `nc=00000001` and `cnonce` when the challenge offers qop. `None` when the
/// challenge is not a digest challenge this side can answer (no realm or nonce, an unknown algorithm).
pub fn respond(
    challenge: &str,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
) -> Option<String> {
    let algorithm = algorithm(challenge)?;
    let p = params(challenge)?;
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (realm, nonce) = (get("realm")?, get("nonce")?);
    let ha1 = hex_hash(algorithm, &format!("{username}:{realm}:{password}"));
    let ha2 = hex_hash(algorithm, &format!("{method}:{uri}"));
    let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")));
    let nc = "00000001";
    let response = if qop_auth {
        hex_hash(algorithm, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    } else {
        hex_hash(algorithm, &format!("{ha1}:{nonce}:{ha2}"))
    };
    let mut out = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algorithm}"
    );
    if qop_auth {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = get("opaque") {
        out.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1's example (HTTP, but the computation is the same): SHA-256 and MD5.
    #[test]
    fn rfc_7616_examples() {
        let challenge = concat!(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, "#,
            r#"nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "#,
            r#"opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
        );
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let a = respond(challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce).unwrap();
        assert!(a.contains(r#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#), "{a}");
        assert!(a.contains("algorithm=SHA-256, qop=auth, nc=00000001"), "{a}");
        assert!(a.ends_with(r#"opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#), "{a}");
        let md5 = challenge.replace("algorithm=SHA-256", "algorithm=MD5");
        let a = respond(&md5, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce).unwrap();
        assert!(a.contains(r#"response="8ca523f5e9506fed4657c9700eebdbec""#), "{a}");
    }

    #[test]
    fn unanswerable_challenges() {
        assert_eq!(
            respond(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#, "INVITE", "sip:x", "u", "p", "c"),
            None
        );
        assert_eq!(respond(r#"Digest realm="r""#, "INVITE", "sip:x", "u", "p", "c"), None);
        assert_eq!(respond(r#"Basic realm="r""#, "INVITE", "sip:x", "u", "p", "c"), None);
        let plain = respond(r#"Digest realm="r", nonce="n""#, "INVITE", "sip:x", "u", "p", "c").unwrap();
        assert!(plain.ends_with("algorithm=MD5") && !plain.contains("qop"), "{plain}");
    }
}
