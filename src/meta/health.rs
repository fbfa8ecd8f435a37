//! Meta's answers about an account's health, and the Graph calls that ask for them
//! (`shared/reference/meta-messaging.md` §10 "Health" and §11 "Check expiry"):
//!
//! - `GET /{version}/debug_token?input_token=<token>&access_token=<app_id>|<app_secret>` →
//!   `{"data":{"app_id","type","application","data_access_expires_at","expires_at","is_valid","issued_at",
//!   "scopes":[…],"user_id"}}`; `expires_at: 0` means the token never expires. A token Meta no longer knows is
//!   answered with `is_valid: false` and an `error` object inside `data`.
//! - `GET /{version}/{phone-number-id}?fields=health_status,quality_rating,messaging_limit_tier` →
//!   `{"health_status":{"can_send_message":"AVAILABLE|LIMITED|BLOCKED","entities":[{"entity_type","id",
//!   "can_send_message","additional_info"?,"errors"?}]},"quality_rating","messaging_limit_tier","id"}`.
//!
//! Parsing is tolerant of what Meta adds or leaves out (ids as numbers or strings, `additional_info` as a string
//! or a list); the figures wabridge keeps are made from these types by `crate::health::figures`.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::graph::{Client, Error};

/// The fields asked of a phone number node.
pub const PHONE_FIELDS: &str = "health_status,quality_rating,messaging_limit_tier";

/// `data` of a `debug_token` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenDebug {
    #[serde(default, deserialize_with = "opt_id")]
    pub app_id: Option<String>,
    /// `SYSTEM_USER`, `USER`, `APP`, ...
    #[serde(rename = "type", default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    /// Unix seconds; 0: never.
    #[serde(default)]
    pub data_access_expires_at: Option<i64>,
    /// Unix seconds; 0: never.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub is_valid: bool,
    #[serde(default)]
    pub issued_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub user_id: Option<String>,
    /// Why the token is not valid, when Meta says.
    #[serde(default)]
    pub error: Option<TokenDebugError>,
}

/// `data.error` of a `debug_token` answer about a token that is not valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenDebugError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub subcode: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct DebugEnvelope {
    data: TokenDebug,
}

/// A phone number node with the fields of [`PHONE_FIELDS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PhoneNode {
    #[serde(default)]
    pub health_status: Option<HealthStatus>,
    #[serde(default)]
    pub quality_rating: Option<String>,
    #[serde(default)]
    pub messaging_limit_tier: Option<String>,
}

/// `health_status` of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HealthStatus {
    #[serde(default)]
    pub can_send_message: Option<String>,
    #[serde(default)]
    pub entities: Vec<HealthEntity>,
}

/// One entity of `health_status.entities`: the number, its WABA, the business, the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HealthEntity {
    #[serde(default)]
    pub entity_type: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub can_send_message: Option<String>,
    /// What limits a `LIMITED` entity (a string or a list of strings in Meta's answers).
    #[serde(default, deserialize_with = "strings")]
    pub additional_info: Vec<String>,
    /// Why a `BLOCKED` entity is blocked.
    #[serde(default)]
    pub errors: Vec<EntityError>,
}

/// One of a blocked entity's `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EntityError {
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub possible_solution: Option<String>,
}

/// An id given as a string or a number.
fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A string, a list of strings, or nothing.
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// Parses a `debug_token` answer.
pub fn parse_debug_token(answer: Value) -> Result<TokenDebug, String> {
    serde_json::from_value::<DebugEnvelope>(answer).map(|e| e.data).map_err(|e| e.to_string())
}

/// Parses a phone number node.
pub fn parse_phone_node(answer: Value) -> Result<PhoneNode, String> {
    serde_json::from_value(answer).map_err(|e| e.to_string())
}

impl Client {
    /// `GET /debug_token` about `input_token`, asked with the app token `app_id|app_secret`. Neither token is
    /// logged: they travel in the query, and errors name the URL without it.
    pub async fn debug_token(&self, input_token: &str, app_id: &str, app_secret: &str) -> Result<TokenDebug, Error> {
        let url = self.url("debug_token");
        let app_token = format!("{app_id}|{app_secret}");
        let req = self.http.get(&url).query(&[("input_token", input_token), ("access_token", app_token.as_str())]);
        let answer = self.send(&url, req).await?;
        parse_debug_token(answer)
            .map_err(|e| Error::Protocol { http_status: 200, message: format!("unexpected debug_token answer: {e}") })
    }

    /// `GET /{phone-number-id}?fields=health_status,quality_rating,messaging_limit_tier`.
    pub async fn phone_health(&self, phone_number_id: &str, token: &str) -> Result<PhoneNode, Error> {
        let url = self.url(phone_number_id);
        let req = self.http.get(&url).bearer_auth(token).query(&[("fields", PHONE_FIELDS)]);
        let answer = self.send(&url, req).await?;
        parse_phone_node(answer)
            .map_err(|e| Error::Protocol { http_status: 200, message: format!("unexpected phone number answer: {e}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_debug_token_answer() {
        let answer = json!({"data": {"app_id": "1234567890", "type": "SYSTEM_USER", "application": "Shop",
            "data_access_expires_at": 0, "expires_at": 1_800_000_000, "is_valid": true, "issued_at": 1_700_000_000,
            "scopes": ["whatsapp_business_messaging", "whatsapp_business_management"],
            "granular_scopes": [{"scope": "whatsapp_business_messaging", "target_ids": ["102290129340398"]}],
            "user_id": 10_000_000_001_i64}});
        let d = parse_debug_token(answer).unwrap();
        assert_eq!(d.app_id.as_deref(), Some("1234567890"));
        assert_eq!(d.token_type.as_deref(), Some("SYSTEM_USER"));
        assert_eq!(
            (d.expires_at, d.data_access_expires_at, d.issued_at),
            (Some(1_800_000_000), Some(0), Some(1_700_000_000))
        );
        assert!(d.is_valid);
        assert_eq!(d.scopes.len(), 2);
        assert_eq!(d.user_id.as_deref(), Some("10000000001"), "a numeric id is kept as text");
        assert_eq!(d.error, None);
    }

    #[test]
    fn parses_the_answer_about_a_token_meta_no_longer_knows() {
        let answer = json!({"data": {"error": {"code": 190, "message": "Invalid OAuth access token."},
                                     "is_valid": false, "scopes": []}});
        let d = parse_debug_token(answer).unwrap();
        assert!(!d.is_valid);
        assert_eq!(d.expires_at, None);
        assert_eq!(d.error.as_ref().and_then(|e| e.code), Some(190));
        assert_eq!(d.error.and_then(|e| e.message).as_deref(), Some("Invalid OAuth access token."));
        assert!(parse_debug_token(json!({"id": "x"})).is_err(), "no data: not a debug_token answer");
    }

    #[test]
    fn parses_a_phone_health_answer() {
        let answer = json!({"health_status": {"can_send_message": "LIMITED", "entities": [
                {"entity_type": "PHONE_NUMBER", "id": "106540352242922", "can_send_message": "AVAILABLE",
                 "can_receive_call_sip": "AVAILABLE"},
                {"entity_type": "WABA", "id": 102290129340398_i64, "can_send_message": "LIMITED",
                 "additional_info": ["Your WhatsApp Business Account has reached its messaging limit."]},
                {"entity_type": "BUSINESS", "id": "5", "can_send_message": "LIMITED",
                 "additional_info": "Verify your business to raise the limit."},
                {"entity_type": "APP", "id": "1234567890", "can_send_message": "BLOCKED",
                 "errors": [{"error_code": 141010, "error_description": "Business not verified",
                             "possible_solution": "Verify the business in Business Manager"}]}]},
            "quality_rating": "YELLOW", "messaging_limit_tier": "TIER_1K", "id": "106540352242922"});
        let n = parse_phone_node(answer).unwrap();
        let h = n.health_status.unwrap();
        assert_eq!(h.can_send_message.as_deref(), Some("LIMITED"));
        assert_eq!(h.entities.len(), 4);
        assert_eq!(h.entities[1].id.as_deref(), Some("102290129340398"));
        assert_eq!(h.entities[1].additional_info.len(), 1);
        assert_eq!(h.entities[2].additional_info, ["Verify your business to raise the limit."]);
        assert_eq!(h.entities[3].errors[0].error_code, Some(141010));
        assert_eq!((n.quality_rating.as_deref(), n.messaging_limit_tier.as_deref()), (Some("YELLOW"), Some("TIER_1K")));
        assert_eq!(parse_phone_node(json!({"id": "1"})).unwrap(), PhoneNode::default(), "fields left out");
    }

    #[tokio::test]
    async fn the_tokens_never_show_in_errors() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), "v23.0");
        let err = c.debug_token("EAAG-input-secret", "1", "app-secret-xyz").await.unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("EAAG-input-secret") && !text.contains("app-secret-xyz"), "{text}");
    }
}
