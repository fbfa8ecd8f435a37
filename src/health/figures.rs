//! The pure part of account health: Meta's answers made into the figures wabridge keeps, and the rules that say
//! what is wrong and what to do, in plain words (shared by the console, the CLI and the metrics).

use serde::Serialize;

use crate::meta::graph;
use crate::meta::health::{HealthStatus, PhoneNode, TokenDebug};
use crate::store::health::{PhoneHealth, Reason, TokenHealth, WabaHealthRow};

/// The permissions a WABA's token needs: sending (and media, `messages` webhooks) and management (templates,
/// phone numbers, the other webhooks).
pub const WHATSAPP_SCOPES: [&str; 2] = ["whatsapp_business_messaging", "whatsapp_business_management"];

/// A token that expires within this many days is shown red.
pub const WARN_DAYS: i64 = 7;

/// The values of `can_send_message`, in Meta's order of gravity.
pub const CAN_SEND: [&str; 3] = ["AVAILABLE", "LIMITED", "BLOCKED"];

/// The values of `quality_rating` (anything else is counted as `UNKNOWN`).
pub const QUALITY: [&str; 5] = ["GREEN", "YELLOW", "RED", "NA", "UNKNOWN"];

/// At most this many limiting entities, texts per entity and characters per text are kept from an answer.
const MAX_REASONS: usize = 16;
const MAX_INFO: usize = 8;
const MAX_TEXT: usize = 500;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// The figures of a `debug_token` answer.
pub fn token_health(d: &TokenDebug) -> TokenHealth {
    let missing = WHATSAPP_SCOPES.iter().filter(|s| !d.scopes.iter().any(|g| g == *s)).map(|s| s.to_string()).collect();
    let note = (!d.is_valid).then(|| match d.error.as_ref().and_then(|e| e.message.as_deref()) {
        Some(m) => format!("Meta says the token is not valid: {}", bounded(m)),
        None => "Meta says the token is not valid.".to_string(),
    });
    TokenHealth {
        valid: d.is_valid,
        token_type: d.token_type.as_deref().map(bounded),
        expires_at: d.expires_at.unwrap_or(0).max(0),
        data_access_expires_at: d.data_access_expires_at.unwrap_or(0).max(0),
        scopes: d.scopes.iter().take(64).map(|s| bounded(s)).collect(),
        missing_scopes: missing,
        note,
    }
}

/// `can_send_message` as one of [`CAN_SEND`]: Meta's overall value, or, when it gives none, the gravest of its
/// entities' (BLOCKED if any is blocked, else LIMITED if any is limited); `UNKNOWN` without either.
pub fn overall(h: &HealthStatus) -> String {
    let known = |v: Option<&str>| v.filter(|v| CAN_SEND.contains(v)).map(String::from);
    if let Some(v) = known(h.can_send_message.as_deref()) {
        return v;
    }
    let worst =
        h.entities.iter().filter_map(|e| CAN_SEND.iter().position(|c| Some(*c) == e.can_send_message.as_deref())).max();
    worst.map_or_else(|| "UNKNOWN".to_string(), |i| CAN_SEND[i].to_string())
}

/// The figures of a phone number node: the overall status and every entity that limits or blocks the number,
/// with Meta's `additional_info` (limited) or its errors in words (blocked).
pub fn phone_health(n: &PhoneNode) -> PhoneHealth {
    let (can_send, reasons) = match &n.health_status {
        None => ("UNKNOWN".to_string(), Vec::new()),
        Some(h) => {
            let reasons = h
                .entities
                .iter()
                .filter(|e| matches!(e.can_send_message.as_deref(), Some("LIMITED") | Some("BLOCKED")))
                .take(MAX_REASONS)
                .map(|e| {
                    let mut info: Vec<String> = e.additional_info.iter().take(MAX_INFO).map(|i| bounded(i)).collect();
                    for err in e.errors.iter().take(MAX_INFO) {
                        let mut text = String::new();
                        if let Some(c) = err.error_code {
                            text.push_str(&format!("error {c}: "));
                        }
                        text.push_str(err.error_description.as_deref().unwrap_or("no description given"));
                        if let Some(s) = &err.possible_solution {
                            text.push_str(&format!(". What to do: {s}"));
                        }
                        info.push(bounded(&text));
                    }
                    Reason {
                        entity_type: bounded(e.entity_type.as_deref().unwrap_or("ENTITY")),
                        id: bounded(e.id.as_deref().unwrap_or("")),
                        status: e.can_send_message.clone().unwrap_or_default(),
                        info,
                    }
                })
                .collect();
            (overall(h), reasons)
        }
    };
    PhoneHealth {
        can_send,
        reasons,
        quality_rating: n.quality_rating.as_deref().map(bounded),
        messaging_limit_tier: n.messaging_limit_tier.as_deref().map(bounded),
    }
}

/// A rating as one of [`QUALITY`].
pub fn quality_label(rating: Option<&str>) -> &'static str {
    QUALITY.iter().find(|q| Some(**q) == rating).copied().unwrap_or("UNKNOWN")
}

/// How a figure looks: green, amber, red, or grey (not known).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Bad,
    Unknown,
}

impl Level {
    /// The console's CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Bad => "bad",
            Level::Unknown => "muted",
        }
    }
}

/// A figure in words, how it looks, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub level: Level,
    pub summary: String,
    pub todo: Option<String>,
}

/// A duration in words: `12 days`, `5 hours`, `40 minutes`.
pub fn span_words(secs: i64) -> String {
    let s = secs.abs();
    let (n, unit) = match s {
        0..=3599 => ((s / 60).max(1), "minute"),
        3600..=172_799 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// An expiry (Unix seconds, 0: never) in words: `never`, `expires in 12 days`, `expired 3 hours ago`.
pub fn expiry_words(expires_at: i64, now_s: i64) -> String {
    if expires_at <= 0 {
        "never".to_string()
    } else if expires_at > now_s {
        format!("expires in {}", span_words(expires_at - now_s))
    } else {
        format!("expired {} ago", span_words(now_s - expires_at))
    }
}

/// True when an expiry (Unix seconds, 0: never) is less than [`WARN_DAYS`] away or past.
pub fn expires_soon(expires_at: i64, now_s: i64) -> bool {
    expires_at > 0 && expires_at - now_s < WARN_DAYS * 86_400
}

const NEW_TOKEN: &str = "Make a new token (a system user's token in Meta Business Settings → System users, with \
                         whatsapp_business_messaging and whatsapp_business_management; a token that never expires \
                         is best) and set it on the WABA (console WABAs page, or `wabridge waba update ID \
                         --access-token -`) or on its app.";

/// The "red when" rule of a WABA's token: red when it is not valid, expires (or its data access does) within
/// [`WARN_DAYS`] days, lacks a WhatsApp permission, or could not be checked at all; grey before the first check.
pub fn token_verdict(row: Option<&WabaHealthRow>, now_s: i64) -> Verdict {
    let Some(row) = row else {
        return Verdict {
            level: Level::Unknown,
            summary: "not checked yet".into(),
            todo: Some("Press \"Check now\" (or run `wabridge health check`); wabridge checks every hour.".into()),
        };
    };
    let Some(t) = &row.token else {
        return Verdict {
            level: Level::Bad,
            summary: format!("could not check: {}", row.error.as_deref().unwrap_or("no answer")),
            todo: Some("Fix what the error says; the next check runs within the hour.".into()),
        };
    };
    if !t.valid {
        return Verdict {
            level: Level::Bad,
            summary: row.error.clone().unwrap_or_else(|| "Meta says the token is not valid.".into()),
            todo: Some(format!("Sends, template syncs and media fail with this token. {NEW_TOKEN}")),
        };
    }
    let mut summary = expiry_words(t.expires_at, now_s);
    if t.data_access_expires_at > 0 && expires_soon(t.data_access_expires_at, now_s) {
        summary.push_str(&format!("; data access {}", expiry_words(t.data_access_expires_at, now_s)));
    }
    if !t.missing_scopes.is_empty() {
        return Verdict {
            level: Level::Bad,
            summary: format!("{summary}; lacks {}", t.missing_scopes.join(" and ")),
            todo: Some(format!(
                "Without whatsapp_business_messaging sends and media fail; without whatsapp_business_management \
                 template syncs fail. {NEW_TOKEN}"
            )),
        };
    }
    if expires_soon(t.expires_at, now_s) || expires_soon(t.data_access_expires_at, now_s) {
        return Verdict {
            level: Level::Bad,
            summary,
            todo: Some(format!("Replace it before it expires, or everything stops for this WABA. {NEW_TOKEN}")),
        };
    }
    Verdict { level: Level::Ok, summary, todo: None }
}

/// How a phone's `can_send_message` looks.
pub fn can_send_level(can_send: &str) -> Level {
    match can_send {
        "AVAILABLE" => Level::Ok,
        "LIMITED" => Level::Warn,
        "BLOCKED" => Level::Bad,
        _ => Level::Unknown,
    }
}

/// How a quality rating looks.
pub fn quality_level(rating: Option<&str>) -> Level {
    match rating {
        Some("GREEN") => Level::Ok,
        Some("YELLOW") => Level::Warn,
        Some("RED") => Level::Bad,
        _ => Level::Unknown,
    }
}

/// A refused or failed check in plain words. `what` names what was asked (`the token check`, `the phone's
/// health`); `app` is the Meta app id whose id and secret `debug_token` was asked with, for that call only.
pub fn error_words(e: &graph::Error, what: &str, app: Option<&str>) -> String {
    match e {
        graph::Error::Graph(g) if matches!(g.code, 190 | 102) && app.is_some() => format!(
            "Meta refused the app id and app secret that {what} is asked with (error {}: {}): check the app secret \
             registered for app {}.",
            g.code,
            bounded(&g.message),
            app.unwrap_or_default()
        ),
        graph::Error::Graph(g) if matches!(g.code, 190 | 0) => format!(
            "Meta refused the WABA's access token for {what} (error {}: {}). {NEW_TOKEN}",
            g.code,
            bounded(&g.message)
        ),
        graph::Error::Graph(g) => format!(
            "Meta refused {what} with error {}: {}. {}",
            g.code,
            bounded(&g.message),
            crate::meta::errors::explain(g.code)
        ),
        graph::Error::Connection { reason, .. } | graph::Error::Unknown { reason, .. } => {
            format!("Could not reach Meta's Graph API for {what}: {}.", bounded(reason))
        }
        graph::Error::Protocol { http_status, message } => {
            format!("Meta's answer to {what} was not understood (HTTP {http_status}): {}.", bounded(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::health::{parse_debug_token, parse_phone_node};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn row(t: TokenHealth) -> WabaHealthRow {
        WabaHealthRow { waba_id: 1, checked_at: NOW * 1000, ok_at: Some(NOW * 1000), token: Some(t), error: None }
    }

    fn good(expires_at: i64) -> TokenHealth {
        TokenHealth {
            valid: true,
            expires_at,
            scopes: WHATSAPP_SCOPES.iter().map(|s| s.to_string()).collect(),
            ..TokenHealth::default()
        }
    }

    #[test]
    fn a_debug_token_answer_becomes_figures() {
        let d = parse_debug_token(json!({"data": {"app_id": "1", "type": "SYSTEM_USER", "expires_at": NOW + 12 * DAY,
            "data_access_expires_at": 0, "is_valid": true, "scopes": ["whatsapp_business_management", "business_management"]}}))
        .unwrap();
        let t = token_health(&d);
        assert!(t.valid);
        assert_eq!((t.expires_at, t.data_access_expires_at), (NOW + 12 * DAY, 0));
        assert_eq!(t.missing_scopes, ["whatsapp_business_messaging"]);
        assert_eq!(t.token_type.as_deref(), Some("SYSTEM_USER"));
        assert_eq!(t.note, None);
        let d = parse_debug_token(json!({"data": {"error": {"code": 190, "message": "Invalid OAuth access token."},
            "is_valid": false, "scopes": []}}))
        .unwrap();
        let t = token_health(&d);
        assert!(!t.valid);
        assert_eq!(t.expires_at, 0);
        assert_eq!(t.missing_scopes.len(), 2);
        assert_eq!(t.note.as_deref(), Some("Meta says the token is not valid: Invalid OAuth access token."));
    }

    #[test]
    fn a_health_status_answer_becomes_figures() {
        let n = parse_phone_node(json!({"health_status": {"can_send_message": "LIMITED", "entities": [
            {"entity_type": "PHONE_NUMBER", "id": "9", "can_send_message": "AVAILABLE"},
            {"entity_type": "WABA", "id": "7", "can_send_message": "LIMITED",
             "additional_info": ["Your business is limited to 250 conversations a day."]}]},
            "quality_rating": "YELLOW", "messaging_limit_tier": "TIER_250"}))
        .unwrap();
        let h = phone_health(&n);
        assert_eq!(h.can_send, "LIMITED");
        assert_eq!(
            h.reasons,
            [Reason {
                entity_type: "WABA".into(),
                id: "7".into(),
                status: "LIMITED".into(),
                info: vec!["Your business is limited to 250 conversations a day.".into()]
            }]
        );
        assert_eq!(
            (h.quality_rating.as_deref(), h.messaging_limit_tier.as_deref()),
            (Some("YELLOW"), Some("TIER_250"))
        );
        // Blocked entities carry errors, given in words with the solution.
        let n = parse_phone_node(json!({"health_status": {"entities": [
            {"entity_type": "BUSINESS", "id": "5", "can_send_message": "BLOCKED",
             "errors": [{"error_code": 141006, "error_description": "No valid payment method",
                         "possible_solution": "Add a payment method"}]},
            {"entity_type": "APP", "id": "6", "can_send_message": "LIMITED"}]}}))
        .unwrap();
        let h = phone_health(&n);
        assert_eq!(h.can_send, "BLOCKED", "no overall value: the gravest entity's");
        assert_eq!(h.reasons[0].info, ["error 141006: No valid payment method. What to do: Add a payment method"]);
        assert_eq!(h.reasons.len(), 2);
        assert_eq!(phone_health(&PhoneNode::default()).can_send, "UNKNOWN");
        // Meta's texts are bounded.
        let long = "x".repeat(5000);
        let n = parse_phone_node(json!({"health_status": {"can_send_message": "LIMITED", "entities":
            (0..40).map(|i| json!({"entity_type": "WABA", "id": i.to_string(), "can_send_message": "LIMITED",
                                   "additional_info": vec![long.clone(); 20]})).collect::<Vec<_>>()}}))
        .unwrap();
        let h = phone_health(&n);
        assert_eq!(h.reasons.len(), MAX_REASONS);
        assert_eq!(h.reasons[0].info.len(), MAX_INFO);
        assert_eq!(h.reasons[0].info[0].len(), MAX_TEXT);
        assert_eq!(overall(&HealthStatus { can_send_message: Some("WEIRD".into()), entities: vec![] }), "UNKNOWN");
    }

    #[test]
    fn expiry_in_words() {
        assert_eq!(expiry_words(0, NOW), "never");
        assert_eq!(expiry_words(NOW + 12 * DAY + 5, NOW), "expires in 12 days");
        assert_eq!(expiry_words(NOW + 3 * DAY, NOW), "expires in 3 days");
        assert_eq!(expiry_words(NOW + 5 * 3600, NOW), "expires in 5 hours");
        assert_eq!(expiry_words(NOW + 30, NOW), "expires in 1 minute");
        assert_eq!(expiry_words(NOW - 2 * DAY, NOW), "expired 2 days ago");
        assert_eq!(span_words(DAY * 2 - 1), "47 hours");
    }

    #[test]
    fn red_when_invalid_expiring_within_a_week_lacking_a_permission_or_unchecked() {
        let v = token_verdict(Some(&row(good(0))), NOW);
        assert_eq!((v.level, v.summary.as_str(), v.todo), (Level::Ok, "never", None));
        let v = token_verdict(Some(&row(good(NOW + 12 * DAY))), NOW);
        assert_eq!((v.level, v.summary.as_str()), (Level::Ok, "expires in 12 days"));
        let v = token_verdict(Some(&row(good(NOW + 7 * DAY + 60))), NOW);
        assert_eq!(v.level, Level::Ok, "a week and a minute: not yet");
        let v = token_verdict(Some(&row(good(NOW + 3 * DAY))), NOW);
        assert_eq!((v.level, v.summary.as_str()), (Level::Bad, "expires in 3 days"));
        assert!(v.todo.unwrap().contains("Replace it before it expires"));
        let v = token_verdict(Some(&row(good(NOW - 2 * DAY))), NOW);
        assert_eq!((v.level, v.summary.as_str()), (Level::Bad, "expired 2 days ago"));
        let mut data = good(0);
        data.data_access_expires_at = NOW + 2 * DAY;
        let v = token_verdict(Some(&row(data)), NOW);
        assert_eq!((v.level, v.summary.as_str()), (Level::Bad, "never; data access expires in 2 days"));
        let mut lacking = good(0);
        lacking.missing_scopes = vec!["whatsapp_business_messaging".into()];
        let v = token_verdict(Some(&row(lacking)), NOW);
        assert_eq!((v.level, v.summary.as_str()), (Level::Bad, "never; lacks whatsapp_business_messaging"));
        let mut invalid = row(TokenHealth { valid: false, ..good(0) });
        invalid.error = Some("Meta says the token is not valid: Session has expired.".into());
        let v = token_verdict(Some(&invalid), NOW);
        assert_eq!(
            (v.level, v.summary.as_str()),
            (Level::Bad, "Meta says the token is not valid: Session has expired.")
        );
        assert!(v.todo.unwrap().contains("Make a new token"));
        let failed = WabaHealthRow { waba_id: 1, checked_at: 1, ok_at: None, token: None, error: Some("boom".into()) };
        let v = token_verdict(Some(&failed), NOW);
        assert_eq!((v.level, v.summary.as_str()), (Level::Bad, "could not check: boom"));
        assert_eq!(token_verdict(None, NOW).level, Level::Unknown);
    }

    #[test]
    fn levels_of_phone_figures() {
        assert_eq!(can_send_level("AVAILABLE"), Level::Ok);
        assert_eq!(can_send_level("LIMITED"), Level::Warn);
        assert_eq!(can_send_level("BLOCKED"), Level::Bad);
        assert_eq!(can_send_level("UNKNOWN"), Level::Unknown);
        assert_eq!(quality_level(Some("RED")), Level::Bad);
        assert_eq!(quality_label(Some("YELLOW")), "YELLOW");
        assert_eq!(quality_label(Some("PURPLE")), "UNKNOWN");
        assert_eq!(quality_label(None), "UNKNOWN");
    }

    #[test]
    fn errors_in_plain_words() {
        let g = |code: i64| {
            graph::Error::Graph(graph::GraphError {
                http_status: 400,
                code,
                message: "Invalid OAuth access token signature.".into(),
                kind: None,
                details: None,
                subcode: None,
                fbtrace_id: None,
                retry_after_secs: None,
            })
        };
        let w = error_words(&g(190), "the token check", Some("1234"));
        assert!(w.contains("check the app secret registered for app 1234"), "{w}");
        let w = error_words(&g(190), "the phone's health", None);
        assert!(w.contains("refused the WABA's access token") && w.contains("Make a new token"), "{w}");
        let w = error_words(&g(4), "the phone's health", None);
        assert!(w.contains("error 4") && w.contains("rate limit"), "{w}");
        let down = graph::Error::Connection { url: "u".into(), reason: "connection refused".into() };
        assert_eq!(
            error_words(&down, "the token check", None),
            "Could not reach Meta's Graph API for the token check: connection refused."
        );
    }
}
