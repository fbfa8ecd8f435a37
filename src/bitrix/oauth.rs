//! The refresh grant against Bitrix24's OAuth server (`reference/bitrix24.md` §1.3):
//! `GET {oauth_url}/oauth/token/?grant_type=refresh_token&client_id=…&client_secret=…&refresh_token=…`.
//! The answer carries a new `access_token` and a new `refresh_token` (the old one stops working), `expires_in`
//! (seconds) or `expires` (unix seconds), and the portal's `client_endpoint`.
//!
//! The request URL carries secrets, so errors are built from the answer and reqwest's error kind only, never
//! from reqwest's `Display` (which includes the URL).

use std::time::Duration;

use serde_json::Value;

use crate::store::portals::RefreshedTokens;

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The OAuth server answered with `{"error", "error_description"}` (e.g. `invalid_grant`).
    #[error("the Bitrix24 OAuth server refused the refresh (HTTP {http}, {code}): {description}")]
    Refused { http: u16, code: String, description: String },
    /// No usable answer: connection, timeout, 5xx, or a body that is not a token answer.
    #[error("the Bitrix24 OAuth server is unavailable: {0}")]
    Unavailable(String),
}

impl OAuthError {
    /// True when the refresh token itself is dead (expired, revoked, already spent): only a reinstall helps.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, OAuthError::Refused { code, .. } if code == "invalid_grant")
    }
}

/// Describes a reqwest failure without its URL (which may carry secrets).
pub(crate) fn transport_reason(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".into()
    } else {
        e.without_url().to_string()
    }
}

/// Turns the OAuth server's token answer into a [`RefreshedTokens`]; `None` when it is not one.
pub fn parse_token_answer(answer: &Value, now_ms: i64) -> Option<RefreshedTokens> {
    let text = |k: &str| answer.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let int = |k: &str| {
        answer.get(k).and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok())))
    };
    let access_token = text("access_token")?;
    let refresh_token = text("refresh_token")?;
    let expires_at_ms = match (int("expires_in"), int("expires")) {
        (Some(secs), _) if secs > 0 => now_ms.saturating_add(secs.saturating_mul(1000)),
        (_, Some(unix)) if unix > 0 => unix.saturating_mul(1000),
        _ => now_ms + 3_600_000,
    };
    let scope = match answer.get("scope") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Array(items)) => {
            Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")).filter(|s| !s.is_empty())
        }
        _ => None,
    };
    Some(RefreshedTokens {
        access_token,
        refresh_token,
        expires_at_ms,
        client_endpoint: text("client_endpoint"),
        scope,
    })
}

/// Parses a Bitrix24 error envelope `{"error": "...", "error_description": "..."}`.
pub fn parse_error_envelope(body: &Value) -> Option<(String, String)> {
    let code = body.get("error")?.as_str()?.to_string();
    let description = body.get("error_description").and_then(Value::as_str).unwrap_or_default().to_string();
    Some((code, description))
}

/// Spends `refresh_token` for a new pair.
pub async fn refresh(
    http: &reqwest::Client,
    oauth_url: &str,
    client_id: &str,
    client_secret: Option<&str>,
    refresh_token: &str,
    timeout: Duration,
) -> Result<RefreshedTokens, OAuthError> {
    let url = format!("{}/oauth/token/", oauth_url.trim_end_matches('/'));
    let mut query = vec![("grant_type", "refresh_token"), ("client_id", client_id)];
    if let Some(secret) = client_secret {
        query.push(("client_secret", secret));
    }
    query.push(("refresh_token", refresh_token));
    let resp = http
        .get(&url)
        .query(&query)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| OAuthError::Unavailable(transport_reason(e)))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| OAuthError::Unavailable(transport_reason(e)))?;
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if let Some((code, description)) = body.as_ref().and_then(parse_error_envelope) {
        if status >= 500 {
            return Err(OAuthError::Unavailable(format!("HTTP {status}, {code}: {description}")));
        }
        return Err(OAuthError::Refused { http: status, code, description });
    }
    if !(200..300).contains(&status) {
        return Err(OAuthError::Unavailable(format!("HTTP {status} without an OAuth error")));
    }
    body.as_ref()
        .and_then(|b| parse_token_answer(b, crate::store::now_ms()))
        .ok_or_else(|| OAuthError::Unavailable(format!("HTTP {status}, but the answer carries no token pair")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_answers_are_parsed() {
        let a = json!({"access_token": "A", "refresh_token": "R", "expires_in": 3600, "expires": 1,
                       "client_endpoint": "https://x.bitrix24.com/rest/", "domain": "oauth.bitrix.info",
                       "scope": "imconnector,imopenlines"});
        let t = parse_token_answer(&a, 1_000).expect("tokens");
        assert_eq!((t.access_token.as_str(), t.refresh_token.as_str()), ("A", "R"));
        assert_eq!(t.expires_at_ms, 1_000 + 3_600_000);
        assert_eq!(t.client_endpoint.as_deref(), Some("https://x.bitrix24.com/rest/"));
        assert_eq!(t.scope.as_deref(), Some("imconnector,imopenlines"));

        let b = json!({"access_token": "A", "refresh_token": "R", "expires": "1700000000"});
        assert_eq!(parse_token_answer(&b, 5).expect("tokens").expires_at_ms, 1_700_000_000_000);
        assert!(parse_token_answer(&json!({"access_token": "A"}), 0).is_none());
        assert!(parse_token_answer(&json!({"access_token": "", "refresh_token": "R"}), 0).is_none());
    }

    #[test]
    fn error_envelopes_are_parsed_and_classified() {
        let e = parse_error_envelope(&json!({"error": "invalid_grant", "error_description": "Invalid grant"}));
        assert_eq!(e, Some(("invalid_grant".into(), "Invalid grant".into())));
        assert_eq!(parse_error_envelope(&json!({"error": "x"})), Some(("x".into(), String::new())));
        assert_eq!(parse_error_envelope(&json!({"result": 1})), None);
        let refused = OAuthError::Refused { http: 400, code: "invalid_grant".into(), description: String::new() };
        assert!(refused.needs_reauthorization());
        assert!(!OAuthError::Unavailable("x".into()).needs_reauthorization());
    }
}
