//! Classification of Graph API send failures (reference meta-messaging.md §8 error table, §9 pair rate).
//!
//! Meta advises switching on the error `code`, not on the HTTP status, so the code decides whenever there is one:
//!
//! | class | codes |
//! |---|---|
//! | [`SendClass::Retry`] | 2, 4, 80007, 130429, 131016, 133004 (backoff); 131056 (pair rate: 4^X s); 131057 (≥ 60 s); 1 (once); 131000 (up to 3 attempts) |
//! | [`SendClass::TokenInvalid`] | 190, 0 (0 only when the HTTP status is not 5xx) |
//! | [`SendClass::Permanent`] | every other code, with [`explain`] as the reason |
//!
//! A code that is not in the table is retried when the HTTP status is 5xx, 408 or 429, else permanent.
//! Without a code, HTTP 5xx, 408 and 429 are retried, 401 is an invalid token and any other status is permanent.
//! `attempts` counts the attempts made so far, including the one that just failed (1 after the first failure).
//! `Retry::after` is the least delay before the next attempt: `Retry-After` when Meta sent one, raised to the
//! code's own minimum; `None` leaves the delay to the job engine's backoff.

use std::time::Duration;

/// What to do with a send that Meta refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendClass {
    /// Try again later, not before `after` when given.
    Retry { after: Option<Duration>, reason: String },
    /// Do not retry: the request or the recipient must change. `code` is Meta's error code, or the HTTP status when
    /// the answer carried none.
    Permanent { code: i64, reason: String },
    /// The access token is expired or invalid: pause sends for the account until a new token is set.
    TokenInvalid { code: i64, reason: String },
}

impl SendClass {
    /// True for [`SendClass::Retry`].
    pub fn is_retry(&self) -> bool {
        matches!(self, SendClass::Retry { .. })
    }

    /// The reason text of any class.
    pub fn reason(&self) -> &str {
        match self {
            SendClass::Retry { reason, .. }
            | SendClass::Permanent { reason, .. }
            | SendClass::TokenInvalid { reason, .. } => reason,
        }
    }
}

/// Error 131047: free-form message outside the 24-hour customer service window.
pub const REENGAGEMENT: i64 = 131047;
/// Error 131056: pair rate limit (same business number to the same user).
pub const PAIR_RATE_LIMIT: i64 = 131056;

/// Longest pair-rate backoff step: 4^5 s ≈ 17 minutes.
const PAIR_MAX_EXPONENT: u32 = 5;
/// Maintenance mode (131057) lasts up to a minute.
const MAINTENANCE_WAIT: Duration = Duration::from_secs(60);

/// Decides how to handle a refused send.
pub fn classify(http_status: u16, code: Option<i64>, retry_after: Option<Duration>, attempts: i64) -> SendClass {
    let retry = |min: Option<Duration>, reason: String| SendClass::Retry { after: max_opt(retry_after, min), reason };
    let Some(code) = code else {
        return match http_status {
            500..=599 | 408 | 429 => retry(
                None,
                format!("Meta answered HTTP {http_status} without an error code; the request will be retried."),
            ),
            401 => SendClass::TokenInvalid {
                code: i64::from(http_status),
                reason: "Meta answered HTTP 401 Unauthorized: the access token is missing, expired or invalid.".into(),
            },
            _ => SendClass::Permanent {
                code: i64::from(http_status),
                reason: format!("Meta refused the request with HTTP {http_status} and no error code."),
            },
        };
    };
    let reason = explain(code).to_owned();
    match code {
        2 | 4 | 80007 | 130429 | 131016 | 133004 => retry(None, reason),
        PAIR_RATE_LIMIT => {
            let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(PAIR_MAX_EXPONENT);
            retry(Some(Duration::from_secs(4u64.pow(exponent))), reason)
        }
        131057 => retry(Some(MAINTENANCE_WAIT), reason),
        1 if attempts <= 1 => retry(None, reason),
        131000 if attempts <= 3 => retry(None, reason),
        0 if http_status >= 500 => retry(None, reason),
        190 | 0 => SendClass::TokenInvalid { code, reason },
        _ if !is_known(code) && matches!(http_status, 500..=599 | 408 | 429) => retry(None, reason),
        _ => SendClass::Permanent { code, reason },
    }
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A plain-English explanation of a Graph API / WhatsApp error code, for operators.
pub fn explain(code: i64) -> &'static str {
    match code {
        0 => "Meta could not authenticate the app: the access token has expired or been invalidated; set a new token.",
        1 => "Meta reported an unknown error: the request may be invalid or Meta had a server problem.",
        2 => "Meta's service is temporarily down or overloaded.",
        3 => "The app lacks the capability or permission for this call.",
        4 => "The app reached Meta's call-rate limit; calls resume after a pause.",
        10 => "Permission denied: the access token lacks a permission this call needs (such as whatsapp_business_messaging).",
        33 => "The business phone number has been deleted.",
        100 => "Meta rejected a parameter of the request as invalid, unsupported, misspelled or too long.",
        190 => "The access token has expired or is invalid; set a new token for this WhatsApp account.",
        200..=299 => "Permission denied: the access token is missing or lacks the permission this call needs.",
        368 => "The WhatsApp account is temporarily blocked for policy violations.",
        80007 => "The WhatsApp Business Account reached its API rate limit; calls resume later.",
        130403 => "The business has blocked this user, so messages to them are refused.",
        130429 => "The phone number reached its throughput limit (messages per second); the message will be sent shortly.",
        130472 => "The customer is part of a WhatsApp marketing experiment, so this marketing message was not delivered.",
        130497 => "The WhatsApp account is restricted from messaging users in this country.",
        131000 => "Something went wrong on Meta's side while sending.",
        131005 => "Access denied: the access token lacks permission to send for this phone number.",
        131008 => "A required parameter is missing from the message.",
        131009 => "A parameter value in the message is not valid (for example a reaction to an old or unknown message, or a bad phone number).",
        131016 => "WhatsApp's service is temporarily unavailable.",
        131021 => "The recipient is the sending number itself.",
        131026 => "The message could not be delivered: the number may not be on WhatsApp, use an old WhatsApp version, not have accepted the latest terms, or have blocked the business. Reach the customer another way.",
        131030 => "The recipient is not in the test number's allowed list (at most 5 recipients while the account is in test mode).",
        131031 => "The WhatsApp account is locked (a policy violation, or a wrong two-step verification PIN).",
        131037 => "The phone number has no approved display name yet.",
        131042 => "There is a problem with the account's eligibility or payment method.",
        131045 => "The phone number is not correctly registered (certificate error); register it again.",
        REENGAGEMENT => "More than 24 hours have passed since the customer last wrote, so only an approved template can be sent.",
        131048 => "The phone number is sending too much for its quality rating (spam rate limit); send less and try later.",
        131049 => "WhatsApp did not deliver this marketing message to keep engagement healthy (per-user marketing limit); do not resend it today.",
        131050 => "The customer has stopped marketing messages from this business.",
        131051 => "WhatsApp does not support this message type.",
        131052 => "The customer's media file could not be downloaded (for example it is larger than 100 MB).",
        131053 => "The media file could not be uploaded: its type is unsupported or does not match its content.",
        PAIR_RATE_LIMIT => "Too many messages were sent to this customer in a short time (about one message every 6 seconds is allowed); the message will be sent again shortly.",
        131057 => "The WhatsApp account is in maintenance mode (for example during a throughput upgrade) for about a minute.",
        131063 => "Marketing templates are disabled on the Cloud API for this WhatsApp account.",
        131064 => "The account's messaging is limited because of template category violations.",
        132000 => "The number of template parameters does not match the template's placeholders.",
        132001 => "The template does not exist in this language or is not approved.",
        132005 => "The template text is too long once its parameters are filled in.",
        132007 => "The template's content breaks WhatsApp's policy.",
        132012 => "A template parameter has the wrong format for its placeholder.",
        132015 => "The template is paused because of its low quality.",
        132016 => "The template has been permanently disabled because of its low quality.",
        132068 => "The flow is blocked.",
        132069 => "The flow is throttled (at most 10 messages per flow per hour).",
        133000 => "A previous deregistration of the phone number did not complete; deregister it again.",
        133004 => "WhatsApp's server is temporarily unavailable.",
        133005 => "The two-step verification PIN is wrong.",
        133006 => "The phone number must be verified again before it can be registered.",
        133008 | 133009 => "Too many two-step verification PIN guesses; wait before trying again.",
        133010 => "The phone number is not registered with the WhatsApp Cloud API.",
        133015 => "The phone number was deleted recently; wait 5 minutes before registering it.",
        133016 => "The phone number reached its register/deregister limit (10 per 72 hours).",
        135000 => "WhatsApp refused the message because of a generic user error.",
        _ => UNKNOWN,
    }
}

/// What a Graph error code means when it answers a calling or phone-settings request (`calling/`): the
/// calling-specific codes, and the token and permission codes said the way they matter there; `None` for codes
/// with nothing calling-specific to say ([`explain`] has the general text of every code).
pub fn explain_calling(code: i64) -> Option<&'static str> {
    Some(match code {
        138000 => {
            "Calling is not enabled on this phone number at Meta. Enable it first (wabridge calling enable, or \
             POST /admin/api/v1/phones/{id}/calling with enabled=true)."
        }
        138014 => {
            "Meta has temporarily disabled calling on this number because of low call quality (many declined, \
             unanswered or short calls). It cannot be switched back on until Meta lifts the pause; watch the \
             number's quality in WhatsApp Manager and try again later."
        }
        138015 => {
            "Calling can only be enabled on a number whose messaging limit is at least 2,000 unique users a day. \
             Raise the number's messaging limit (it grows with the volume and quality of business-initiated \
             conversations) and try again; Meta's public test numbers are exempt."
        }
        138018 => {
            "Meta's technical prerequisites for calling are not met: the number needs a SIP server configured, or \
             an app subscribed to the WABA with the 'calls' webhook field. Check the SIP host and port, that the app \
             is in Live mode and subscribed to the WABA, and that it already works for messaging on this number."
        }
        131055 => {
            "The number is in SIP mode, so Meta refuses Graph API calling requests for it: its calls go through the \
             SIP server only. This is expected when SIP is enabled; disable SIP to use the Graph calling endpoints."
        }
        100 => {
            "Meta says a parameter is invalid; the details name it (for example the SIP host name or port, or the \
             call hours). Correct it and try again."
        }
        190 => {
            "The access token is invalid or has expired (Meta's code 190). Put a valid token on the WABA (or the \
             app's default token) and try again; a system-user token can be made non-expiring."
        }
        0 | 102 => {
            "Meta could not authenticate the access token (expired, revoked or the session was invalidated). Put a \
             new token on the WABA or the app and try again."
        }
        10 => {
            "Permission denied: the access token lacks a permission this needs (whatsapp_business_management for \
             phone settings), or the app is not allowed on this WABA."
        }
        200..=299 => {
            "Permission error: the token's (system) user has no access to this WABA or phone number, lacks the \
             whatsapp_business_management permission, or no token was sent. Assign the WABA to the system user or \
             use another token."
        }
        _ => return None,
    })
}

const UNKNOWN: &str =
    "WhatsApp refused the message with an error code that wabridge does not know; see Meta's error-code reference.";

/// True when `code` is in the error table (has its own [`explain`] text).
pub fn is_known(code: i64) -> bool {
    explain(code) != UNKNOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(c: &SendClass) -> Option<Duration> {
        match c {
            SendClass::Retry { after, .. } => *after,
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn retryable_codes() {
        for code in [2, 4, 80007, 130429, 131016, 133004, 131057, 131056, 1, 131000] {
            let c = classify(400, Some(code), None, 1);
            assert!(c.is_retry(), "{code}");
            assert_eq!(c.reason(), explain(code));
        }
        assert_eq!(after(&classify(400, Some(130429), None, 3)), None);
        assert_eq!(after(&classify(400, Some(130429), Some(Duration::from_secs(7)), 3)), Some(Duration::from_secs(7)));
    }

    #[test]
    fn pair_rate_backoff_is_4_to_the_x() {
        let secs: Vec<u64> =
            (1..=8).map(|n| after(&classify(400, Some(131056), None, n)).map_or(0, |d| d.as_secs())).collect();
        assert_eq!(secs, [1, 4, 16, 64, 256, 1024, 1024, 1024]);
        assert_eq!(after(&classify(400, Some(131056), None, 0)), Some(Duration::from_secs(1)));
        assert_eq!(
            after(&classify(400, Some(131056), Some(Duration::from_secs(30)), 2)),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn maintenance_waits_a_minute() {
        assert_eq!(after(&classify(500, Some(131057), None, 1)), Some(Duration::from_secs(60)));
        assert_eq!(after(&classify(500, Some(131057), Some(Duration::from_secs(5)), 1)), Some(Duration::from_secs(60)));
        assert_eq!(
            after(&classify(500, Some(131057), Some(Duration::from_secs(90)), 1)),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn limited_retries() {
        assert!(classify(400, Some(1), None, 1).is_retry());
        assert_eq!(classify(400, Some(1), None, 2), SendClass::Permanent { code: 1, reason: explain(1).into() });
        assert!(classify(500, Some(131000), None, 3).is_retry());
        assert!(!classify(500, Some(131000), None, 4).is_retry());
    }

    #[test]
    fn token_invalid() {
        assert_eq!(
            classify(401, Some(190), None, 1),
            SendClass::TokenInvalid { code: 190, reason: explain(190).into() }
        );
        assert_eq!(classify(401, Some(0), None, 1), SendClass::TokenInvalid { code: 0, reason: explain(0).into() });
        assert!(classify(503, Some(0), None, 1).is_retry());
        assert!(matches!(classify(401, None, None, 1), SendClass::TokenInvalid { code: 401, .. }));
    }

    #[test]
    fn permanent_codes_switch_on_code_not_status() {
        for code in [
            3, 10, 33, 100, 200, 250, 368, 130403, 130472, 131008, 131009, 131026, 131047, 131048, 131049, 131050,
            131051, 131053, 132000, 132001, 132012, 132015, 135000,
        ] {
            assert_eq!(
                classify(500, Some(code), None, 1),
                SendClass::Permanent { code, reason: explain(code).into() },
                "{code}"
            );
        }
    }

    #[test]
    fn unknown_code_falls_back_to_the_status() {
        assert!(!is_known(999_999) && is_known(131047) && is_known(250));
        assert!(classify(500, Some(999_999), None, 1).is_retry());
        assert!(classify(429, Some(999_999), None, 1).is_retry());
        assert_eq!(
            classify(400, Some(999_999), None, 1),
            SendClass::Permanent { code: 999_999, reason: UNKNOWN.into() }
        );
    }

    #[test]
    fn without_code_the_status_decides() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(classify(status, None, None, 1).is_retry(), "{status}");
        }
        assert_eq!(after(&classify(503, None, Some(Duration::from_secs(3)), 1)), Some(Duration::from_secs(3)));
        assert_eq!(
            classify(404, None, None, 1),
            SendClass::Permanent {
                code: 404,
                reason: "Meta refused the request with HTTP 404 and no error code.".into()
            }
        );
    }

    #[test]
    fn explanations() {
        assert!(explain(131047).contains("24 hours") && explain(131047).contains("template"));
        assert!(explain(131026).contains("not be on WhatsApp"));
        assert!(explain(132000).contains("number of template parameters"));
        assert!(explain(132001).contains("not approved"));
        assert_eq!(explain(201), explain(299));
        assert!(explain(42).contains("does not know"));
        for code in [0, 1, 2, 3, 4, 10, 100, 190, 368, 80007, 130429, 131000, 131047, 131056, 133016] {
            let text = explain(code);
            assert!(text.ends_with('.') && text.chars().next().is_some_and(char::is_uppercase), "{code}: {text}");
        }
    }
}
