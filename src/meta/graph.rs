//! A typed client for the parts of Meta's Graph API that wabridge calls. The base URL and the version are
//! configurable (`graph_base_url`, `graph_version`), so tests and the demo point it at the sandbox.
//!
//! Every non-2xx answer carries Meta's error envelope (`shared/reference/meta-messaging.md` §0):
//! `{"error":{"message":"(#<code>) <title>","type":"OAuthException","code":…,"error_data":{"details":…},
//! "fbtrace_id":…}}`; it becomes a [`GraphError`]. A failed connection is a separate variant, so callers can
//! tell "Meta said no" from "Meta could not be reached". Access tokens are never logged.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;

/// How long to wait for the TCP/TLS connection to Graph.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole Graph request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Meta's answer to a refused request, from its error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphError {
    /// HTTP status of the answer (Meta advises switching on `code`, not on this).
    pub http_status: u16,
    /// Meta's error code, e.g. 138015 or 190.
    pub code: i64,
    /// Meta's message, usually `(#<code>) <title>`.
    pub message: String,
    /// The envelope's `type`, e.g. `OAuthException`.
    pub kind: Option<String>,
    /// `error_data.details`, when Meta gives them.
    pub details: Option<String>,
    /// `error_subcode` (deprecated by Meta, still seen, e.g. 463 for an expired token).
    pub subcode: Option<i64>,
    /// Meta's trace id; quote it when asking Meta's support.
    pub fbtrace_id: Option<String>,
    /// The answer's `Retry-After`, in seconds, when it had one.
    pub retry_after_secs: Option<u64>,
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meta answered HTTP {} with error {}: {}", self.http_status, self.code, self.message)?;
        if let Some(d) = &self.details {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphError {}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Meta answered with its error envelope.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The request never got an answer: DNS, connection refused, TLS, timeout.
    #[error("could not reach the Graph API at {url}: {reason}")]
    Connection { url: String, reason: String },
    /// The request was sent but no answer came (timeout, connection lost): Meta may or may not have acted.
    #[error("no answer from the Graph API at {url} after the request was sent: {reason}")]
    Unknown { url: String, reason: String },
    /// An answer that is neither a success nor Meta's error envelope (a proxy's error page, say).
    #[error("unexpected answer from the Graph API (HTTP {http_status}): {message}")]
    Protocol { http_status: u16, message: String },
}

#[derive(Deserialize)]
struct Envelope {
    error: EnvelopeError,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: i64,
    error_subcode: Option<i64>,
    error_data: Option<ErrorData>,
    fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

/// Parses Meta's error envelope from a non-2xx answer's body; `None` when the body is not one.
pub fn parse_error(http_status: u16, body: &[u8]) -> Option<GraphError> {
    let env: Envelope = serde_json::from_slice(body).ok()?;
    let e = env.error;
    Some(GraphError {
        http_status,
        code: e.code,
        message: e.message,
        kind: e.kind,
        details: e.error_data.and_then(|d| d.details),
        subcode: e.error_subcode,
        fbtrace_id: e.fbtrace_id,
        retry_after_secs: None,
    })
}

/// Meta's answer to an accepted `POST /{phone-number-id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub wamid: String,
    /// `contacts[0].wa_id`: the recipient's WhatsApp id as Meta resolved it.
    pub wa_id: Option<String>,
    /// `messages[0].message_status` (only for paced templates: `accepted`, `held_for_quality_assessment`, ...).
    pub message_status: Option<String>,
}

/// `GET /{media-id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MediaInfo {
    pub url: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    /// A string in Meta's answers; a number is accepted too.
    #[serde(default)]
    pub file_size: Option<Value>,
    pub id: Option<String>,
}

/// One shared connection pool for every [`Client`], whatever its base URL.
fn shared_http() -> reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("wabridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
    .clone()
}

/// Graph API client: `{base_url}/{version}/…`, bearer token per call.
#[derive(Debug, Clone)]
pub struct Client {
    pub(super) http: reqwest::Client,
    base_url: String,
    version: String,
}

impl Client {
    /// `base_url` such as `https://graph.facebook.com` (a trailing `/` is ignored), `version` such as `v23.0`.
    pub fn new(base_url: &str, version: &str) -> Client {
        Client { http: shared_http(), base_url: base_url.trim_end_matches('/').to_string(), version: version.into() }
    }

    pub fn from_config(config: &Config) -> Client {
        Client::new(&config.graph_base_url, &config.graph_version)
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base_url, self.version, path.trim_start_matches('/'))
    }

    /// `POST /{phone-number-id}/settings` with `body` (e.g. `{"calling": {...}}`); Meta answers
    /// `{"success": true}`.
    pub async fn post_phone_settings(&self, phone_number_id: &str, token: &str, body: &Value) -> Result<(), Error> {
        let url = self.url(&format!("{phone_number_id}/settings"));
        let req = self.http.post(&url).bearer_auth(token).json(body);
        let answer = self.send(&url, req).await?;
        match answer.get("success") {
            Some(Value::Bool(true)) => Ok(()),
            _ => Err(Error::Protocol {
                http_status: 200,
                message: format!("expected {{\"success\": true}}, got {answer}"),
            }),
        }
    }

    /// `GET /{phone-number-id}/settings`, with `include_sip_credentials=true` when asked (the answer then carries
    /// `calling.sip.servers[].sip_user_password`).
    pub async fn get_phone_settings(
        &self,
        phone_number_id: &str,
        token: &str,
        include_sip_credentials: bool,
    ) -> Result<Value, Error> {
        let url = self.url(&format!("{phone_number_id}/settings"));
        let mut req = self.http.get(&url).bearer_auth(token);
        if include_sip_credentials {
            req = req.query(&[("include_sip_credentials", "true")]);
        }
        self.send(&url, req).await
    }

    /// `POST /{phone-number-id}/messages` with a complete body (`messaging_product`, `to`, `type`, ...).
    /// `timeout` bounds the whole request; a timeout after the request went out is [`Error::Unknown`].
    pub async fn send_message(
        &self,
        phone_number_id: &str,
        token: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Accepted, Error> {
        let url = self.url(&format!("{phone_number_id}/messages"));
        let req = self.http.post(&url).bearer_auth(token).json(body).timeout(timeout);
        let answer = self.send(&url, req).await?;
        let wamid = answer["messages"][0]["id"].as_str().map(String::from).ok_or_else(|| Error::Protocol {
            http_status: 200,
            message: "the answer names no messages[0].id".into(),
        })?;
        Ok(Accepted {
            wamid,
            wa_id: answer["contacts"][0]["wa_id"].as_str().map(String::from),
            message_status: answer["messages"][0]["message_status"].as_str().map(String::from),
        })
    }

    /// `POST /{phone-number-id}/messages` with a read mark (`{"messaging_product": "whatsapp", "status": "read",
    /// "message_id": …}`): Meta answers `{"success": true}` (no wamid: a read mark is not a message). Errors as for
    /// [`Client::send_message`].
    pub async fn mark_read(
        &self,
        phone_number_id: &str,
        token: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(), Error> {
        let url = self.url(&format!("{phone_number_id}/messages"));
        let req = self.http.post(&url).bearer_auth(token).json(body).timeout(timeout);
        let answer = self.send(&url, req).await?;
        match answer.get("success") {
            Some(Value::Bool(true)) => Ok(()),
            _ => Err(Error::Protocol {
                http_status: 200,
                message: format!("expected {{\"success\": true}}, got {answer}"),
            }),
        }
    }

    /// `GET /{media-id}?phone_number_id=…`: where to download the media (the URL lives 5 minutes).
    pub async fn media_info(&self, media_id: &str, phone_number_id: &str, token: &str) -> Result<MediaInfo, Error> {
        let url = self.url(media_id);
        let req = self.http.get(&url).bearer_auth(token).query(&[("phone_number_id", phone_number_id)]);
        let answer = self.send(&url, req).await?;
        serde_json::from_value(answer)
            .map_err(|e| Error::Protocol { http_status: 200, message: format!("unexpected media answer: {e}") })
    }

    /// `POST /{phone-number-id}/media` (`multipart/form-data`: `messaging_product=whatsapp`, `type` and `file`
    /// with its MIME type): Meta answers `{"id": "…"}`, the media id to send with (valid 30 days).
    pub async fn upload_media(
        &self,
        phone_number_id: &str,
        token: &str,
        bytes: Vec<u8>,
        mime: &str,
        filename: &str,
    ) -> Result<String, Error> {
        let url = self.url(&format!("{phone_number_id}/media"));
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(filename.to_string())
            .mime_str(mime)
            .map_err(|e| Error::Protocol { http_status: 0, message: format!("bad MIME type {mime:?}: {e}") })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime.to_string())
            .part("file", part);
        let req = self.http.post(&url).bearer_auth(token).multipart(form).timeout(Duration::from_secs(300));
        let answer = self.send(&url, req).await?;
        answer["id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| Error::Protocol { http_status: 200, message: "the upload answer names no id".into() })
    }

    /// Downloads a media URL from [`Client::media_info`] (needs the bearer token). The response is returned
    /// unread so callers can stream it.
    pub async fn download(&self, media_url: &str, token: &str) -> Result<reqwest::Response, Error> {
        let resp = self
            .http
            .get(media_url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| connection(media_url, &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        Err(match parse_error(status, &bytes) {
            Some(e) => Error::Graph(e),
            None => Error::Protocol { http_status: status, message: "media download refused".into() },
        })
    }

    /// Every template of a WABA: `GET /{waba-id}/message_templates`, following the `after` cursors.
    pub async fn list_templates(&self, waba_id: &str, token: &str) -> Result<Vec<Value>, Error> {
        let url = self.url(&format!("{waba_id}/message_templates"));
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _page in 0..1000 {
            let mut req = self.http.get(&url).bearer_auth(token).query(&[("limit", "100")]);
            if let Some(a) = &after {
                req = req.query(&[("after", a.as_str())]);
            }
            let answer = self.send(&url, req).await?;
            let data = answer["data"].as_array().cloned().unwrap_or_default();
            let empty = data.is_empty();
            out.extend(data);
            // Meta gives `paging.next` only when there is a next page; the cursor alone is not enough.
            let next = answer["paging"]["cursors"]["after"].as_str().map(String::from);
            if empty || answer["paging"].get("next").is_none() || next.is_none() || next == after {
                break;
            }
            after = next;
        }
        Ok(out)
    }

    /// Sends, and turns the answer into JSON (2xx) or an [`Error`].
    pub(super) async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Value, Error> {
        let resp = req.send().await.map_err(|e| sent_error(url, &e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp.bytes().await.map_err(|e| sent_error(url, &e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Error::Protocol { http_status: status, message: format!("the body is not JSON: {e}") });
        }
        if let Some(mut e) = parse_error(status, &bytes) {
            e.retry_after_secs = retry_after;
            tracing::debug!(http_status = status, code = e.code, fbtrace_id = ?e.fbtrace_id, "Graph API refused a request");
            return Err(Error::Graph(e));
        }
        let text = String::from_utf8_lossy(&bytes);
        let excerpt: String = text.chars().take(200).collect();
        Err(Error::Protocol { http_status: status, message: format!("not Meta's error envelope: {excerpt}") })
    }
}

/// A failure of a request that may have been sent: before the connection was made it is a
/// [`Error::Connection`] (nothing reached Meta), afterwards an [`Error::Unknown`].
fn sent_error(url: &str, e: &reqwest::Error) -> Error {
    if e.is_connect() || e.is_builder() {
        return connection(url, e);
    }
    let reason = if e.is_timeout() { "timed out".to_string() } else { root_cause(e) };
    Error::Unknown { url: url.split('?').next().unwrap_or(url).to_string(), reason }
}

fn connection(url: &str, e: &reqwest::Error) -> Error {
    // reqwest's Display may include the URL; ours never carries the token (it is a header).
    let reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        format!("connection failed ({})", root_cause(e))
    } else {
        root_cause(e)
    };
    Error::Connection { url: url.split('?').next().unwrap_or(url).to_string(), reason }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// True when `v` looks like a Graph version (`v23.0`).
pub fn is_version(v: &str) -> bool {
    v.strip_prefix('v').and_then(|r| r.split_once('.')).is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_error_envelope() {
        let body = br#"{"error":{"message":"(#138015) Calling cannot be enabled","type":"OAuthException","code":138015,
            "error_data":{"messaging_product":"whatsapp","details":"Messaging limit too low"},"fbtrace_id":"AbC123"}}"#;
        let e = parse_error(400, body).unwrap();
        assert_eq!(e.http_status, 400);
        assert_eq!(e.code, 138015);
        assert_eq!(e.message, "(#138015) Calling cannot be enabled");
        assert_eq!(e.kind.as_deref(), Some("OAuthException"));
        assert_eq!(e.details.as_deref(), Some("Messaging limit too low"));
        assert_eq!(e.fbtrace_id.as_deref(), Some("AbC123"));
        assert_eq!(e.subcode, None);
        let token = br#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,
            "error_subcode":463,"fbtrace_id":"x"}}"#;
        let e = parse_error(401, token).unwrap();
        assert_eq!((e.code, e.subcode, e.details.as_deref()), (190, Some(463), None));
        assert!(e.to_string().contains("error 190"), "{e}");
        assert!(parse_error(502, b"<html>Bad gateway</html>").is_none());
        assert!(parse_error(500, br#"{"error":"x"}"#).is_none());
    }

    #[test]
    fn urls_and_versions() {
        let c = Client::new("http://127.0.0.1:9/", "v23.0");
        assert_eq!(c.url("/106540352242922/settings"), "http://127.0.0.1:9/v23.0/106540352242922/settings");
        assert!(is_version("v23.0") && is_version("v9.12"));
        assert!(!is_version("23.0") && !is_version("v23") && !is_version("v23.x") && !is_version("v.1"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_its_own_error() {
        // Port 9 (discard) on localhost is closed in test environments; bind-and-drop to be sure.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), "v23.0");
        let err = c.get_phone_settings("1", "secret-token", false).await.unwrap_err();
        assert!(matches!(err, Error::Connection { .. }), "{err:?}");
        assert!(!err.to_string().contains("secret-token"));
    }
}
