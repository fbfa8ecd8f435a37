//! Pure decisions of calling activation: checking what an operator asked for, the body posted to
//! `/{phone-number-id}/settings`, what Meta's errors mean in plain words, and how Meta's settings compare with
//! what wabridge expects. No I/O here; `calling::service` loads, calls these and stores.
//!
//! Facts: `shared/reference/meta-calling-sip.md` §1.2–1.5.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::registry::FieldError;
use crate::store::registry::Phone;

/// Meta's default SIP port (TLS).
pub const DEFAULT_SIP_PORT: u16 = 5061;
/// SDES works with Asterisk out of the box (Meta's own default is DTLS).
pub const DEFAULT_SRTP: &str = "SDES";
/// What Meta uses when `srtp_key_exchange_protocol` was never set (GET then leaves it out).
pub const META_DEFAULT_SRTP: &str = "DTLS";

const SRTP_VALUES: &[&str] = &["SDES", "DTLS"];
const ICON_VALUES: &[&str] = &["DEFAULT", "DISABLE_ALL"];
const CALLBACK_VALUES: &[&str] = &["ENABLED", "DISABLED"];

/// What an operator asks for (admin API body, CLI flags). Absent fields keep the phone's stored values.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallingInput {
    /// `true` enables calling with SIP at Meta; `false` disables both.
    pub enabled: bool,
    /// Host name of the SIP server Meta connects to over TLS (this service's SIP edge), e.g. `sip.example.com`.
    /// Its certificate must cover this name. Required to enable, unless stored from before.
    pub sip_host: Option<String>,
    /// TLS port Meta connects to; default 5061.
    pub sip_port: Option<i64>,
    /// `SDES` (default, what Asterisk expects) or `DTLS`.
    pub srtp_key_exchange: Option<String>,
    /// `DEFAULT` or `DISABLE_ALL` (hide the call buttons). Absent leaves Meta's setting alone.
    pub call_icon_visibility: Option<String>,
    /// `ENABLED` or `DISABLED`: ask users for call permission after a call. Absent leaves Meta's setting alone.
    pub callback_permission: Option<String>,
    /// Challenge Meta's INVITEs with digest authentication (default: on once Meta's SIP password is known).
    pub digest: Option<bool>,
}

/// A checked request, merged with what the phone already had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub enabled: bool,
    pub sip_host: Option<String>,
    pub sip_port: u16,
    pub srtp_key_exchange: String,
    pub call_icon_visibility: Option<String>,
    pub callback_permission: Option<String>,
    pub digest: Option<bool>,
}

/// True for a DNS host name as Meta wants it: no scheme, no port, no path, at least two labels.
pub fn is_sip_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn one_of(field: &str, v: Option<&str>, allowed: &[&str], errors: &mut Vec<FieldError>) -> Option<String> {
    let v = v?;
    let upper = v.trim().to_ascii_uppercase();
    if allowed.contains(&upper.as_str()) {
        Some(upper)
    } else {
        errors.push(FieldError { field: field.into(), message: format!("must be one of {}", allowed.join(", ")) });
        None
    }
}

/// Checks `input` and merges it with the phone's stored settings. Every wrong field is named at once.
pub fn validate(input: &CallingInput, phone: &Phone) -> Result<Desired, Vec<FieldError>> {
    let mut errors = Vec::new();
    let enabled = input.enabled;
    let host = match input.sip_host.as_deref().map(str::trim) {
        Some(h) if is_sip_hostname(h) => Some(h.to_ascii_lowercase()),
        Some(h) => {
            let why = if h.contains("://") || h.contains('/') {
                "must be a bare host name such as sip.example.com (no scheme, no path)"
            } else if h.contains(':') {
                "must be a host name without a port; give the port in sip_port"
            } else {
                "must be a host name such as sip.example.com (Meta connects over TLS and checks the certificate \
                 against this name)"
            };
            errors.push(FieldError { field: "sip_host".into(), message: why.into() });
            None
        }
        None => phone.sip_host.clone(),
    };
    if enabled && host.is_none() && input.sip_host.is_none() {
        errors.push(FieldError {
            field: "sip_host".into(),
            message: "is required to enable calling (the host name Meta sends calls to)".into(),
        });
    }
    let port = match input.sip_port {
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => p,
            _ => {
                errors.push(FieldError { field: "sip_port".into(), message: "must be a port from 1 to 65535".into() });
                DEFAULT_SIP_PORT
            }
        },
        None => phone.sip_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).unwrap_or(DEFAULT_SIP_PORT),
    };
    let srtp = one_of("srtp_key_exchange", input.srtp_key_exchange.as_deref(), SRTP_VALUES, &mut errors)
        .or_else(|| phone.srtp_key_exchange.clone())
        .unwrap_or_else(|| DEFAULT_SRTP.into());
    let icon = one_of("call_icon_visibility", input.call_icon_visibility.as_deref(), ICON_VALUES, &mut errors)
        .or_else(|| phone.call_icon_visibility.clone());
    let callback = one_of("callback_permission", input.callback_permission.as_deref(), CALLBACK_VALUES, &mut errors)
        .or_else(|| phone.callback_permission.clone());
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Desired {
        enabled,
        sip_host: host,
        sip_port: port,
        srtp_key_exchange: srtp,
        call_icon_visibility: icon,
        callback_permission: callback,
        digest: input.digest.or(phone.sip_digest),
    })
}

/// The body of `POST /{phone-number-id}/settings` that turns calling on with this SIP server, or off.
pub fn settings_body(d: &Desired) -> Value {
    if !d.enabled {
        return disable_body();
    }
    let mut calling = Map::new();
    calling.insert("status".into(), json!("ENABLED"));
    if let Some(v) = &d.call_icon_visibility {
        calling.insert("call_icon_visibility".into(), json!(v));
    }
    if let Some(v) = &d.callback_permission {
        calling.insert("callback_permission_status".into(), json!(v));
    }
    calling.insert("srtp_key_exchange_protocol".into(), json!(d.srtp_key_exchange));
    calling.insert(
        "sip".into(),
        json!({"status": "ENABLED", "servers": [{"hostname": d.sip_host.as_deref().unwrap_or_default(), "port": d.sip_port}]}),
    );
    json!({ "calling": calling })
}

/// Turns calling and SIP off. The SIP server stays registered at Meta (re-enabling restores it).
pub fn disable_body() -> Value {
    json!({"calling": {"status": "DISABLED", "sip": {"status": "DISABLED"}}})
}

/// True for codes that mean "the access token is the problem".
pub fn is_token_error(code: i64) -> bool {
    matches!(code, 0 | 102 | 190 | 10 | 200..=299)
}

/// One SIP server as Meta reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SipServer {
    pub hostname: Option<String>,
    /// `None` when Meta's answer leaves it out (5061 then).
    pub port: Option<i64>,
    /// The app that registered this server (taken by Meta from the access token).
    pub app_id: Option<String>,
}

/// The calling settings, either as wabridge expects them or as Meta reports them (field names as Meta's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallingSettings {
    pub status: Option<String>,
    pub call_icon_visibility: Option<String>,
    pub callback_permission_status: Option<String>,
    pub srtp_key_exchange_protocol: Option<String>,
    pub sip_status: Option<String>,
    pub sip_servers: Vec<SipServer>,
    /// Restrictions Meta placed on the account (`calling.restrictions.restrictions_list`), as Meta sent them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub restrictions: Vec<Value>,
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str).map(String::from)
}

impl CallingSettings {
    /// What wabridge expects Meta to have for this phone.
    pub fn expected(p: &Phone) -> CallingSettings {
        if !p.calling_enabled {
            return CallingSettings {
                status: Some("DISABLED".into()),
                sip_status: Some("DISABLED".into()),
                ..Default::default()
            };
        }
        CallingSettings {
            status: Some("ENABLED".into()),
            call_icon_visibility: p.call_icon_visibility.clone(),
            callback_permission_status: p.callback_permission.clone(),
            srtp_key_exchange_protocol: Some(p.srtp_key_exchange.clone().unwrap_or_else(|| DEFAULT_SRTP.into())),
            sip_status: Some("ENABLED".into()),
            sip_servers: vec![SipServer {
                hostname: p.sip_host.clone(),
                port: Some(p.sip_port.unwrap_or(DEFAULT_SIP_PORT.into())),
                app_id: None,
            }],
            restrictions: Vec::new(),
        }
    }

    /// Meta's answer to `GET /{phone-number-id}/settings` (credentials, if any, are not kept).
    pub fn from_graph(answer: &Value) -> CallingSettings {
        let calling = answer.get("calling").cloned().unwrap_or(Value::Null);
        let servers = calling
            .pointer("/sip/servers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| SipServer {
                        hostname: str_at(s, &["hostname"]),
                        port: s.get("port").and_then(|p| p.as_i64().or_else(|| p.as_str()?.parse().ok())),
                        app_id: s
                            .get("app_id")
                            .and_then(|a| a.as_str().map(String::from).or_else(|| a.as_i64().map(|n| n.to_string()))),
                    })
                    .collect()
            })
            .unwrap_or_default();
        CallingSettings {
            status: str_at(&calling, &["status"]),
            call_icon_visibility: str_at(&calling, &["call_icon_visibility"]),
            callback_permission_status: str_at(&calling, &["callback_permission_status"]),
            srtp_key_exchange_protocol: str_at(&calling, &["srtp_key_exchange_protocol"]),
            sip_status: str_at(&calling, &["sip", "status"]),
            sip_servers: servers,
            restrictions: calling
                .pointer("/restrictions/restrictions_list")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// One setting where Meta differs from what wabridge expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Difference {
    /// Meta's field, e.g. `calling.sip.servers[0].hostname`.
    pub field: String,
    pub expected: Option<String>,
    pub meta: Option<String>,
}

fn diff(out: &mut Vec<Difference>, field: &str, expected: Option<String>, meta: Option<String>) {
    let same = match (&expected, &meta) {
        (Some(e), Some(m)) => e.eq_ignore_ascii_case(m),
        (None, None) => true,
        _ => false,
    };
    if !same {
        out.push(Difference { field: field.into(), expected, meta });
    }
}

/// Lists where Meta's settings differ from the expected ones. Meta's documented defaults fill what its answer
/// leaves out (calling and SIP `DISABLED`, SRTP `DTLS`, port 5061); settings wabridge leaves alone (`None` in
/// `expected`) are not compared.
pub fn differences(expected: &CallingSettings, meta: &CallingSettings) -> Vec<Difference> {
    let mut out = Vec::new();
    let or_disabled = |v: &Option<String>| Some(v.clone().unwrap_or_else(|| "DISABLED".into()));
    diff(&mut out, "calling.status", expected.status.clone(), or_disabled(&meta.status));
    diff(&mut out, "calling.sip.status", expected.sip_status.clone(), or_disabled(&meta.sip_status));
    if expected.status.as_deref() != Some("ENABLED") {
        return out;
    }
    for (field, e, m) in [
        ("calling.call_icon_visibility", &expected.call_icon_visibility, &meta.call_icon_visibility),
        ("calling.callback_permission_status", &expected.callback_permission_status, &meta.callback_permission_status),
    ] {
        if e.is_some() {
            diff(&mut out, field, e.clone(), m.clone());
        }
    }
    if expected.srtp_key_exchange_protocol.is_some() {
        let meta_srtp = meta.srtp_key_exchange_protocol.clone().unwrap_or_else(|| META_DEFAULT_SRTP.into());
        diff(
            &mut out,
            "calling.srtp_key_exchange_protocol",
            expected.srtp_key_exchange_protocol.clone(),
            Some(meta_srtp),
        );
    }
    if let Some(want) = expected.sip_servers.first() {
        if meta.sip_servers.len() > 1 {
            out.push(Difference {
                field: "calling.sip.servers".into(),
                expected: Some("1 server".into()),
                meta: Some(format!(
                    "{} servers (one per number is allowed; several apps setting servers breaks calls)",
                    meta.sip_servers.len()
                )),
            });
        }
        let have = meta
            .sip_servers
            .iter()
            .find(|s| {
                s.hostname.as_deref().zip(want.hostname.as_deref()).is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            })
            .or(meta.sip_servers.first());
        diff(&mut out, "calling.sip.servers[0].hostname", want.hostname.clone(), have.and_then(|s| s.hostname.clone()));
        diff(
            &mut out,
            "calling.sip.servers[0].port",
            want.port.map(|p| p.to_string()),
            have.map(|s| s.port.unwrap_or(DEFAULT_SIP_PORT.into()).to_string()),
        );
    }
    out
}

/// The SIP password in Meta's answer to `GET …/settings?include_sip_credentials=true`: the
/// `sip_user_password` (or `password`) of the server named `hostname`, else of the first server that has one.
pub fn sip_password(answer: &Value, hostname: Option<&str>) -> Option<String> {
    let servers = answer.pointer("/calling/sip/servers")?.as_array()?;
    let password = |s: &Value| {
        ["sip_user_password", "password"]
            .iter()
            .find_map(|k| s.get(*k).and_then(Value::as_str))
            .filter(|p| !p.is_empty())
            .map(String::from)
    };
    let named = hostname.and_then(|h| {
        servers
            .iter()
            .filter(|s| s.get("hostname").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(h)))
            .find_map(password)
    });
    named.or_else(|| servers.iter().find_map(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> Phone {
        Phone { id: 1, ..Phone::new("+5511930001234".into(), "106540352242922".into(), 1, 0) }
    }

    fn input(v: Value) -> CallingInput {
        serde_json::from_value(v).unwrap()
    }

    fn fields(e: Vec<FieldError>) -> Vec<String> {
        e.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn defaults_port_5061_and_sdes() {
        let d = validate(&input(json!({"enabled": true, "sip_host": "SIP.Example.com"})), &phone()).unwrap();
        assert_eq!(d.sip_host.as_deref(), Some("sip.example.com"));
        assert_eq!(d.sip_port, 5061);
        assert_eq!(d.srtp_key_exchange, "SDES");
        assert_eq!((d.call_icon_visibility, d.callback_permission, d.digest), (None, None, None));
    }

    #[test]
    fn the_body_posted_to_meta() {
        let d = validate(
            &input(
                json!({"enabled": true, "sip_host": "sip.example.com", "sip_port": 5062, "srtp_key_exchange": "dtls",
                          "call_icon_visibility": "DISABLE_ALL", "callback_permission": "ENABLED"}),
            ),
            &phone(),
        )
        .unwrap();
        assert_eq!(
            settings_body(&d),
            json!({"calling": {"status": "ENABLED", "call_icon_visibility": "DISABLE_ALL",
                "callback_permission_status": "ENABLED", "srtp_key_exchange_protocol": "DTLS",
                "sip": {"status": "ENABLED", "servers": [{"hostname": "sip.example.com", "port": 5062}]}}})
        );
        let minimal = validate(&input(json!({"enabled": true, "sip_host": "sip.example.com"})), &phone()).unwrap();
        assert_eq!(
            settings_body(&minimal),
            json!({"calling": {"status": "ENABLED", "srtp_key_exchange_protocol": "SDES",
                "sip": {"status": "ENABLED", "servers": [{"hostname": "sip.example.com", "port": 5061}]}}})
        );
        let off = validate(&input(json!({"enabled": false})), &phone()).unwrap();
        assert_eq!(settings_body(&off), json!({"calling": {"status": "DISABLED", "sip": {"status": "DISABLED"}}}));
    }

    #[test]
    fn stored_settings_are_kept_when_not_given() {
        let mut p = phone();
        p.sip_host = Some("old.example.com".into());
        p.sip_port = Some(5070);
        p.srtp_key_exchange = Some("DTLS".into());
        p.call_icon_visibility = Some("DISABLE_ALL".into());
        p.sip_digest = Some(false);
        let d = validate(&input(json!({"enabled": true})), &p).unwrap();
        assert_eq!(d.sip_host.as_deref(), Some("old.example.com"));
        assert_eq!((d.sip_port, d.srtp_key_exchange.as_str()), (5070, "DTLS"));
        assert_eq!(d.call_icon_visibility.as_deref(), Some("DISABLE_ALL"));
        assert_eq!(d.digest, Some(false));
    }

    #[test]
    fn validation_names_every_wrong_field() {
        assert!(serde_json::from_value::<CallingInput>(json!({})).is_err(), "enabled is required");
        let e = validate(&input(json!({"enabled": true})), &phone()).unwrap_err();
        assert_eq!(fields(e), ["sip_host"]);
        let e = validate(
            &input(json!({"enabled": true, "sip_host": "sip.example.com:5061", "sip_port": 70000,
                          "srtp_key_exchange": "ZRTP", "call_icon_visibility": "HIDDEN", "callback_permission": "YES"})),
            &phone(),
        )
        .unwrap_err();
        assert_eq!(
            fields(e.clone()),
            ["sip_host", "sip_port", "srtp_key_exchange", "call_icon_visibility", "callback_permission"]
        );
        assert!(e[0].message.contains("sip_port"), "{:?}", e[0]);
        for bad in ["https://sip.example.com", "sip", "sip..example.com", "-sip.example.com", "sip.example.com/x", ""] {
            let e = validate(&input(json!({"enabled": true, "sip_host": bad})), &phone()).unwrap_err();
            assert_eq!(fields(e), ["sip_host"], "{bad}");
        }
        let e = validate(&input(json!({"enabled": true, "sip_host": "a.example.com", "sip_port": 0})), &phone());
        assert_eq!(fields(e.unwrap_err()), ["sip_port"]);
        assert!(serde_json::from_value::<CallingInput>(json!({"enabled": true, "bogus": 1})).is_err());
    }

    #[test]
    fn explanations() {
        for code in [138000, 138014, 138015, 138018, 131055, 100, 190, 0, 10, 102, 200, 294] {
            assert!(crate::meta::errors::explain_calling(code).is_some_and(|t| t.len() > 40), "{code}");
        }
        assert!(crate::meta::errors::explain_calling(138015).unwrap().contains("2,000"));
        assert!(crate::meta::errors::explain_calling(190).unwrap().contains("token"));
        assert!(crate::meta::errors::explain_calling(131047).is_none());
        assert!(is_token_error(190) && is_token_error(200) && !is_token_error(138015));
    }

    #[test]
    fn compares_expected_with_meta() {
        let mut p = phone();
        p.calling_enabled = true;
        p.sip_host = Some("sip.example.com".into());
        p.sip_port = Some(5061);
        p.srtp_key_exchange = Some("SDES".into());
        let expected = CallingSettings::expected(&p);
        let meta = CallingSettings::from_graph(&json!({"calling": {"status": "ENABLED",
            "call_icon_visibility": "DEFAULT", "callback_permission_status": "ENABLED",
            "srtp_key_exchange_protocol": "SDES",
            "sip": {"status": "ENABLED", "servers": [{"app_id": "1234567890", "hostname": "sip.example.com"}]}}}));
        assert_eq!(meta.sip_servers[0].app_id.as_deref(), Some("1234567890"));
        assert!(differences(&expected, &meta).is_empty(), "port absent = 5061; icon/callback not managed");

        // Never set SRTP: Meta uses DTLS and leaves the field out.
        let meta = CallingSettings::from_graph(&json!({"calling": {"status": "ENABLED",
            "sip": {"status": "DISABLED", "servers": [{"hostname": "other.example.com", "port": 5070}]}}}));
        let d = differences(&expected, &meta);
        let got: Vec<(&str, Option<&str>, Option<&str>)> =
            d.iter().map(|d| (d.field.as_str(), d.expected.as_deref(), d.meta.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("calling.sip.status", Some("ENABLED"), Some("DISABLED")),
                ("calling.srtp_key_exchange_protocol", Some("SDES"), Some("DTLS")),
                ("calling.sip.servers[0].hostname", Some("sip.example.com"), Some("other.example.com")),
                ("calling.sip.servers[0].port", Some("5061"), Some("5070")),
            ]
        );

        // Nothing at Meta at all.
        let d = differences(&expected, &CallingSettings::from_graph(&json!({})));
        assert_eq!(
            d[0],
            Difference {
                field: "calling.status".into(),
                expected: Some("ENABLED".into()),
                meta: Some("DISABLED".into())
            }
        );
        assert!(d.iter().any(|d| d.field == "calling.sip.servers[0].hostname" && d.meta.is_none()));

        // Disabled: only the two statuses matter; servers left at Meta are fine.
        let off = CallingSettings::expected(&phone());
        let meta = CallingSettings::from_graph(&json!({"calling": {"status": "DISABLED",
            "sip": {"status": "DISABLED", "servers": [{"hostname": "sip.example.com"}]}}}));
        assert!(differences(&off, &meta).is_empty());
        let two = CallingSettings::from_graph(
            &json!({"calling": {"status": "ENABLED", "srtp_key_exchange_protocol": "SDES",
            "sip": {"status": "ENABLED", "servers": [{"hostname": "x.example.com"}, {"hostname": "sip.example.com", "port": 5061}]}}}),
        );
        let d = differences(&expected, &two);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].field, "calling.sip.servers");
    }

    #[test]
    fn restrictions_are_reported() {
        let meta = CallingSettings::from_graph(&json!({"calling": {"status": "ENABLED",
            "restrictions": {"restrictions_list": [{"type": "RESTRICTED_USER_INITIATED_CALLING", "reason": "x", "expiration": 1}]}}}));
        assert_eq!(meta.restrictions.len(), 1);
    }

    #[test]
    fn finds_the_sip_password() {
        let answer = json!({"calling": {"sip": {"status": "ENABLED", "servers": [
            {"app_id": "9", "hostname": "other.example.com", "sip_user_password": "other-pass"},
            {"app_id": "1", "hostname": "sip.example.com", "sip_user_password": "the-pass"}]}}});
        assert_eq!(sip_password(&answer, Some("SIP.example.com")).as_deref(), Some("the-pass"));
        assert_eq!(sip_password(&answer, Some("nowhere.example.com")).as_deref(), Some("other-pass"));
        let alt = json!({"calling": {"sip": {"servers": [{"hostname": "sip.example.com", "password": "alt"}]}}});
        assert_eq!(sip_password(&alt, Some("sip.example.com")).as_deref(), Some("alt"));
        let none = json!({"calling": {"sip": {"servers": [{"hostname": "sip.example.com"}]}}});
        assert_eq!(sip_password(&none, None), None);
        assert_eq!(sip_password(&json!({"calling": {}}), None), None);
    }
}
