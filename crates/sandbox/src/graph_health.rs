//! Emulator of the account-health side of Meta's Graph API (`shared/reference/meta-messaging.md` §10 "Health",
//! §11 "Check expiry"):
//!
//! - `GET /{version}/debug_token?input_token=<token>&access_token=<app_id>|<app_secret>` (or a known access token
//!   as `access_token`) → `{"data":{"app_id","type","application","data_access_expires_at","expires_at",
//!   "is_valid","issued_at","scopes":[…],"user_id"}}`, `expires_at: 0` for a token that never expires. A token
//!   that is not valid (set so, or expired) adds `data.error`; one Meta does not know is answered
//!   `{"data":{"error":{…},"is_valid":false,"scopes":[]}}`. A wrong app token gets Meta's error envelope
//!   (code 190, HTTP 401); a missing one code 104, a missing `input_token` code 100.
//! - `GET /{version}/{phone-number-id}?fields=…` for a number registered with
//!   [`GraphSandbox::add_number`]: the requested fields of the phone number node (`health_status`,
//!   `quality_rating`, `messaging_limit_tier`, `display_phone_number`, …) and `id`; an unknown field is refused
//!   with code 100 as Meta does. `health_status.can_send_message` is `BLOCKED` if any entity is blocked, else
//!   `LIMITED` if any is limited, else `AVAILABLE`; limited entities carry `additional_info`, blocked ones
//!   `errors`.
//!
//! Tests set a token's expiry, validity and permissions with [`GraphSandbox::edit_token`], an app's secret with
//! [`GraphSandbox::set_app_secret`], and a number's health with [`GraphSandbox::limit_entity`],
//! [`GraphSandbox::block_entity`], [`GraphSandbox::set_quality`] and [`GraphSandbox::set_limit_tier`]. A token
//! that is not valid or has expired is refused by every other endpoint too (code 190).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::graph::{
    error_response, fbtrace_id, invalid, is_version, lock, ok_headers, record, GraphSandbox, Inner, Shared,
};

/// The business every sandbox number belongs to (the `BUSINESS` entity of `health_status`).
pub const BUSINESS_ID: &str = "506914307656634";

/// What `debug_token` says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// `SYSTEM_USER`, `USER`, …
    pub token_type: String,
    pub application: String,
    /// Unix seconds; 0: never.
    pub expires_at: i64,
    /// Unix seconds; 0: never.
    pub data_access_expires_at: i64,
    pub is_valid: bool,
    pub issued_at: i64,
    pub scopes: Vec<String>,
    pub user_id: String,
}

impl Default for TokenInfo {
    /// A system user's token that never expires, with both WhatsApp permissions.
    fn default() -> TokenInfo {
        TokenInfo {
            token_type: "SYSTEM_USER".into(),
            application: "wabridge sandbox app".into(),
            expires_at: 0,
            data_access_expires_at: 0,
            is_valid: true,
            issued_at: 1_700_000_000,
            scopes: vec![
                "whatsapp_business_messaging".into(),
                "whatsapp_business_management".into(),
                "business_management".into(),
            ],
            user_id: "122100000000000001".into(),
        }
    }
}

impl TokenInfo {
    /// Not valid, or past its expiry.
    fn refused(&self, now: i64) -> Option<(i64, String)> {
        if self.expires_at > 0 && self.expires_at <= now {
            return Some((
                463,
                format!("Error validating access token: Session has expired at unix time {}.", self.expires_at),
            ));
        }
        (!self.is_valid).then(|| {
            (
                460,
                "Error validating access token: The session has been invalidated because the user changed their \
                 password or Facebook has changed the session for security reasons."
                    .to_string(),
            )
        })
    }
}

/// One entity's state in a number's `health_status`.
#[derive(Debug, Clone)]
enum EntityState {
    Limited(Vec<String>),
    Blocked(Vec<Value>),
}

#[derive(Debug, Clone, Default)]
struct NumberHealth {
    /// By entity type (`PHONE_NUMBER`, `WABA`, `BUSINESS`, `APP`); absent: `AVAILABLE`.
    entities: HashMap<String, EntityState>,
    quality: Option<String>,
    tier: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct HealthStore {
    app_secrets: HashMap<String, String>,
    tokens: HashMap<String, TokenInfo>,
    numbers: HashMap<String, NumberHealth>,
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Why `token` must be refused by every endpoint (its code 190 subcode and message), if it must.
pub(super) fn refused_token(inner: &Inner, token: &str) -> Option<(i64, String)> {
    inner.health.tokens.get(token).and_then(|t| t.refused(now_s()))
}

/// Meta's envelope for an OAuth error without `error_data` (what Graph core answers for tokens).
fn oauth_error(http_status: u16, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut error = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": fbtrace_id()});
    if let Some(s) = subcode {
        error["error_subcode"] = json!(s);
    }
    error_response(http_status, json!({ "error": error }))
}

fn params(query: &Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()).into_owned().collect()
}

/// `GET /{version}/debug_token`.
pub(super) async fn debug_token(
    State(shared): State<Shared>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&shared);
    let bearer = super::graph::bearer(&headers);
    record(&mut inner, "get", format!("/{version}/debug_token"), &query, bearer.clone(), None);
    if !is_version(&version) {
        return invalid(format!("Unknown Graph API version {version}"));
    }
    let p = params(&query);
    let Some(app_token) = p.get("access_token").cloned().or(bearer) else {
        return oauth_error(400, 104, None, "An access token is required to request this resource.");
    };
    // The app token `app_id|app_secret`, or an access token the sandbox knows.
    let asker_ok = match app_token.split_once('|') {
        Some((id, secret)) => inner.health.app_secrets.get(id).is_some_and(|s| s == secret),
        None => inner.tokens.contains_key(&app_token) && refused_token(&inner, &app_token).is_none(),
    };
    if !asker_ok {
        return oauth_error(401, 190, None, "Invalid OAuth access token signature.");
    }
    let Some(input) = p.get("input_token").filter(|t| !t.is_empty()) else {
        return oauth_error(400, 100, None, "(#100) The parameter input_token is required");
    };
    let answer = match inner.tokens.get(input) {
        None => json!({"data": {"error": {"code": 190, "message": "Invalid OAuth access token."},
                                "is_valid": false, "scopes": []}}),
        Some(app_id) => {
            let info = inner.health.tokens.get(input).cloned().unwrap_or_default();
            let refused = info.refused(now_s());
            let mut data = json!({
                "app_id": app_id,
                "type": info.token_type,
                "application": info.application,
                "data_access_expires_at": info.data_access_expires_at,
                "expires_at": info.expires_at,
                "is_valid": refused.is_none(),
                "issued_at": info.issued_at,
                "scopes": info.scopes,
                "user_id": info.user_id,
            });
            if let Some((subcode, message)) = refused {
                data["error"] = json!({"code": 190, "subcode": subcode, "message": message});
            }
            json!({ "data": data })
        }
    };
    (ok_headers(&version), Json(answer)).into_response()
}

/// The fields a phone number node has.
const PHONE_FIELDS: &[&str] = &[
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "code_verification_status",
    "name_status",
    "status",
    "platform_type",
    "throughput",
    "messaging_limit_tier",
    "whatsapp_business_manager_messaging_limit",
    "account_mode",
    "is_official_business_account",
    "health_status",
];

/// `GET /{version}/{phone-number-id}` of a registered number (after the version and token checks); `app` is the
/// asking token's app.
pub(super) fn phone_node(inner: &Inner, version: &str, pnid: &str, query: &Option<String>, app: &str) -> Response {
    let Some(number) = inner.numbers.get(pnid) else { return invalid(format!("Unknown phone number {pnid}")) };
    let p = params(query);
    let fields: Vec<String> = match p.get("fields") {
        Some(f) => f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        None => ["id", "display_phone_number", "verified_name", "quality_rating"].map(String::from).to_vec(),
    };
    if let Some(bad) = fields.iter().find(|f| !PHONE_FIELDS.contains(&f.as_str())) {
        return oauth_error(
            400,
            100,
            None,
            &format!("(#100) Tried accessing nonexisting field ({bad}) on node type (WhatsAppBusinessPhoneNumber)"),
        );
    }
    let h = inner.health.numbers.get(pnid).cloned().unwrap_or_default();
    let tier = h.tier.clone().unwrap_or_else(|| "TIER_1K".into());
    let mut out = Map::new();
    for f in &fields {
        let v = match f.as_str() {
            "id" => json!(pnid),
            "display_phone_number" => json!(number.display),
            "verified_name" => json!("wabridge sandbox"),
            "quality_rating" => json!(h.quality.clone().unwrap_or_else(|| "GREEN".into())),
            "code_verification_status" => json!("VERIFIED"),
            "name_status" => json!("APPROVED"),
            "status" => json!("CONNECTED"),
            "platform_type" => json!("CLOUD_API"),
            "throughput" => json!({"level": "STANDARD"}),
            "messaging_limit_tier" | "whatsapp_business_manager_messaging_limit" => json!(tier),
            "account_mode" => json!("LIVE"),
            "is_official_business_account" => json!(false),
            _ => health_status(&h, pnid, &number.waba_id, app),
        };
        out.insert(f.clone(), v);
    }
    out.insert("id".into(), json!(pnid));
    (ok_headers(version), Json(Value::Object(out))).into_response()
}

fn health_status(h: &NumberHealth, pnid: &str, waba: &str, app: &str) -> Value {
    let mut worst = 0;
    let entities: Vec<Value> = [("PHONE_NUMBER", pnid), ("WABA", waba), ("BUSINESS", BUSINESS_ID), ("APP", app)]
        .into_iter()
        .map(|(kind, id)| {
            let mut e = json!({"entity_type": kind, "id": id, "can_send_message": "AVAILABLE"});
            match h.entities.get(kind) {
                None => {}
                Some(EntityState::Limited(info)) => {
                    worst = worst.max(1);
                    e["can_send_message"] = json!("LIMITED");
                    e["additional_info"] = json!(info);
                }
                Some(EntityState::Blocked(errors)) => {
                    worst = 2;
                    e["can_send_message"] = json!("BLOCKED");
                    e["errors"] = json!(errors);
                }
            }
            if kind == "PHONE_NUMBER" {
                e["can_receive_call_sip"] = json!("AVAILABLE");
            }
            e
        })
        .collect();
    let overall = ["AVAILABLE", "LIMITED", "BLOCKED"][worst];
    json!({"can_send_message": overall, "entities": entities})
}

impl GraphSandbox {
    /// The app's secret, so `debug_token` accepts the app token `app_id|app_secret`.
    pub fn set_app_secret(&self, app_id: &str, app_secret: &str) {
        lock(&self.inner).health.app_secrets.insert(app_id.into(), app_secret.into());
    }

    /// Changes what `debug_token` says about `token` (a token allowed with
    /// [`allow_token`](GraphSandbox::allow_token)); starts from [`TokenInfo::default`].
    pub fn edit_token(&self, token: &str, f: impl FnOnce(&mut TokenInfo)) {
        let mut inner = lock(&self.inner);
        f(inner.health.tokens.entry(token.into()).or_default());
    }

    /// What `debug_token` says about `token` (its defaults for a token never edited).
    pub fn token_info(&self, token: &str) -> TokenInfo {
        lock(&self.inner).health.tokens.get(token).cloned().unwrap_or_default()
    }

    /// Limits an entity of the number's health (`PHONE_NUMBER`, `WABA`, `BUSINESS` or `APP`), with Meta's
    /// `additional_info`.
    pub fn limit_entity(&self, phone_number_id: &str, entity_type: &str, additional_info: &[&str]) {
        let state = EntityState::Limited(additional_info.iter().map(|s| s.to_string()).collect());
        lock(&self.inner)
            .health
            .numbers
            .entry(phone_number_id.into())
            .or_default()
            .entities
            .insert(entity_type.into(), state);
    }

    /// Blocks an entity of the number's health, with one error (`error_code`, `error_description`,
    /// `possible_solution`).
    pub fn block_entity(&self, phone_number_id: &str, entity_type: &str, code: i64, description: &str, solution: &str) {
        let error = json!({"error_code": code, "error_description": description, "possible_solution": solution});
        lock(&self.inner)
            .health
            .numbers
            .entry(phone_number_id.into())
            .or_default()
            .entities
            .insert(entity_type.into(), EntityState::Blocked(vec![error]));
    }

    /// Makes every entity of the number's health available again.
    pub fn clear_health(&self, phone_number_id: &str) {
        if let Some(h) = lock(&self.inner).health.numbers.get_mut(phone_number_id) {
            h.entities.clear();
        }
    }

    /// The number's `quality_rating` (`GREEN` until set).
    pub fn set_quality(&self, phone_number_id: &str, rating: &str) {
        lock(&self.inner).health.numbers.entry(phone_number_id.into()).or_default().quality = Some(rating.into());
    }

    /// The number's `messaging_limit_tier` and `whatsapp_business_manager_messaging_limit` (`TIER_1K` until set).
    pub fn set_limit_tier(&self, phone_number_id: &str, tier: &str) {
        lock(&self.inner).health.numbers.entry(phone_number_id.into()).or_default().tier = Some(tier.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_status_is_the_gravest_entity() {
        let mut h = NumberHealth::default();
        let s = health_status(&h, "1", "2", "3");
        assert_eq!(s["can_send_message"], "AVAILABLE");
        assert_eq!(s["entities"].as_array().map(Vec::len), Some(4));
        assert_eq!(s["entities"][3], json!({"entity_type": "APP", "id": "3", "can_send_message": "AVAILABLE"}));
        h.entities.insert("WABA".into(), EntityState::Limited(vec!["limit".into()]));
        let s = health_status(&h, "1", "2", "3");
        assert_eq!(s["can_send_message"], "LIMITED");
        assert_eq!(s["entities"][1]["additional_info"], json!(["limit"]));
        h.entities.insert("BUSINESS".into(), EntityState::Blocked(vec![json!({"error_code": 141010})]));
        let s = health_status(&h, "1", "2", "3");
        assert_eq!(s["can_send_message"], "BLOCKED");
        assert_eq!(s["entities"][2]["errors"][0]["error_code"], 141010);
    }

    #[test]
    fn a_token_is_refused_when_invalid_or_expired() {
        let now = 1_800_000_000;
        assert_eq!(TokenInfo::default().refused(now), None);
        let expired = TokenInfo { expires_at: now - 1, ..TokenInfo::default() };
        assert_eq!(expired.refused(now).map(|r| r.0), Some(463));
        let soon = TokenInfo { expires_at: now + 3 * 86_400, ..TokenInfo::default() };
        assert_eq!(soon.refused(now), None);
        let invalid = TokenInfo { is_valid: false, ..TokenInfo::default() };
        assert_eq!(invalid.refused(now).map(|r| r.0), Some(460));
    }
}
