//! Emulator of Meta's Graph API phone-number settings (`POST`/`GET /{version}/{phone-number-id}/settings`), as
//! `shared/reference/meta-calling-sip.md` §1.2–1.5 describes them:
//!
//! - a bearer token is required; an unknown one gets the 190 error envelope with HTTP 401;
//! - each phone number has its own settings (created on first use), merged field by field on POST, answered
//!   with `{"success": true}`;
//! - `calling.sip.servers` belong to the app of the token that set them (GET shows `app_id`); an empty list
//!   deletes that app's server; disabling SIP keeps the servers;
//! - Meta's SIP password is generated per (number, app) when SIP is enabled with a server, and returned as
//!   `sip_user_password` only with `include_sip_credentials=true`; deleting the server forgets it;
//! - tests can make the next request for a number fail with any documented code ([`GraphSandbox::refuse_next`]),
//!   answered with Meta's error envelope and the HTTP status of the troubleshooting table.
//!
//! It listens on 127.0.0.1 with a port of its own; [`GraphSandbox::base_url`] is what `graph_base_url` takes.
//!
//! The same server emulates the messaging side (`shared/reference/meta-messaging.md` §5–§9, §14); each part lives
//! in a module of its own, with its test helpers as further `impl GraphSandbox` blocks:
//!
//! - [`graph_messages`](super::graph_messages): `POST /{version}/{phone-number-id}/messages` (validation in
//!   [`graph_validate`](super::graph_validate), limits in [`graph_limits`](super::graph_limits)), signed status
//!   webhooks, the customer service window, fault injection;
//! - [`graph_media`](super::graph_media): upload, lookup, download and deletion of media;
//! - [`graph_templates`](super::graph_templates): `/{version}/{waba-id}/message_templates` and template status
//!   webhooks;
//! - [`graph_health`](super::graph_health): `/{version}/debug_token` and the phone number node's fields
//!   (`health_status`, `quality_rating`, `messaging_limit_tier`, …).
//!
//! Routes: `/{version}/{id}/settings`, `/{version}/{id}/messages`, `/{version}/{id}/media`,
//! `/{version}/{id}/message_templates`, `/{version}/debug_token`, `/{version}/{id}` (a media id, a template id or
//! a registered phone number for GET) and the media
//! download path `/whatsapp_business/attachments/?mid=…` (static segments win over `{…}` ones, so they do not
//! clash). [`GraphSandbox::refuse_next`] concerns the settings endpoint only; sends have
//! [`GraphSandbox::fail_next_send`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::graph_media::{self, MediaStore};
use crate::graph_messages::{self, Messaging, Number, WebhookRecord};
use crate::graph_templates::{self, TemplateStore};
use crate::meta::MetaWebhookSender;
use crate::token::random_token;

/// One request as the sandbox received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, version included: `/v23.0/106540352242922/settings`.
    pub path: String,
    pub query: Option<String>,
    /// The bearer token presented.
    pub token: Option<String>,
    /// The JSON body (POST).
    pub body: Option<Value>,
}

/// A documented Graph error: code, HTTP status, title (the message is `(#code) title`) and details.
#[derive(Debug, Clone, Copy)]
pub struct DocumentedError {
    pub code: i64,
    pub http_status: u16,
    pub title: &'static str,
    pub details: &'static str,
}

/// The calling error table (troubleshooting page, Jun 24 2026) plus the token and permission errors.
pub const DOCUMENTED_ERRORS: &[DocumentedError] = &[
    DocumentedError { code: 100, http_status: 400, title: "Invalid parameter", details: "Invalid parameter" },
    DocumentedError {
        code: 613,
        http_status: 429,
        title: "Calls to this api have exceeded the rate limit",
        details: "Rate limit hit on the call permission status API",
    },
    DocumentedError {
        code: 131009,
        http_status: 400,
        title: "Parameter value is not valid",
        details: "Interactive type voice_call is not supported in the sender's country",
    },
    DocumentedError {
        code: 131030,
        http_status: 400,
        title: "Recipient phone number not in allowed list",
        details: "Add the recipient to the allowed list of the test number",
    },
    DocumentedError {
        code: 131044,
        http_status: 400,
        title: "Payment method error",
        details: "No valid payment method is attached to the account",
    },
    DocumentedError {
        code: 131055,
        http_status: 400,
        title: "Graph API calls are not allowed for SIP enabled numbers",
        details: "Graph API calling is not allowed on a SIP enabled business number",
    },
    DocumentedError {
        code: 138000,
        http_status: 401,
        title: "Calling not enabled",
        details: "Calling is not enabled on this business phone number",
    },
    DocumentedError {
        code: 138001,
        http_status: 400,
        title: "Receiver is not able to receive calls",
        details: "The receiver is not on WhatsApp, has not accepted the new terms or uses an unsupported client",
    },
    DocumentedError {
        code: 138002,
        http_status: 429,
        title: "Concurrent calls limit reached",
        details: "The limit of 1000 concurrent calls is reached",
    },
    DocumentedError {
        code: 138003,
        http_status: 400,
        title: "Duplicate call",
        details: "A call with this user is already ongoing",
    },
    DocumentedError {
        code: 138004,
        http_status: 500,
        title: "Connection error",
        details: "Error while connecting the call",
    },
    DocumentedError {
        code: 138005,
        http_status: 429,
        title: "Calls limit reached",
        details: "Call rate limit for the business number exceeded",
    },
    DocumentedError {
        code: 138006,
        http_status: 401,
        title: "Lack of call permission",
        details: "No approved call permission from the user",
    },
    DocumentedError {
        code: 138007,
        http_status: 500,
        title: "Connect timeout",
        details: "The SDP answer or connect was not applied in time",
    },
    DocumentedError {
        code: 138009,
        http_status: 400,
        title: "Call permission request limit hit",
        details: "Call permission request limit hit for this business and user",
    },
    DocumentedError {
        code: 138012,
        http_status: 400,
        title: "Business initiated calls limit hit",
        details: "Connected business initiated calls limit within 24 hours hit",
    },
    DocumentedError {
        code: 138013,
        http_status: 400,
        title: "Business initiated calling not available",
        details: "Business initiated calling is not available for this number",
    },
    DocumentedError {
        code: 138014,
        http_status: 400,
        title: "Calling temporarily disabled",
        details: "Calling has been temporarily disabled for low quality",
    },
    DocumentedError {
        code: 138015,
        http_status: 400,
        title: "Calling cannot be enabled",
        details: "The messaging limit of the phone number must be at least 2000 to enable calling",
    },
    DocumentedError {
        code: 138017,
        http_status: 400,
        title: "Permanent call permission exists",
        details: "A permanent call permission already exists for this user",
    },
    DocumentedError {
        code: 138018,
        http_status: 400,
        title: "Technical prerequisites not met",
        details: "Configure SIP, or subscribe at least one app to the WABA with the calls webhook field",
    },
    DocumentedError {
        code: 190,
        http_status: 401,
        title: "Access token has expired",
        details: "Error validating access token: Session has expired",
    },
    DocumentedError {
        code: 0,
        http_status: 401,
        title: "AuthException",
        details: "Unable to authenticate the app user",
    },
    DocumentedError {
        code: 10,
        http_status: 403,
        title: "Application does not have permission for this action",
        details: "Permission denied",
    },
    DocumentedError {
        code: 200,
        http_status: 403,
        title: "Permissions error",
        details: "The user has not granted the permission needed",
    },
    // Messaging (meta-messaging.md §8; HTTP statuses from the older official table).
    DocumentedError {
        code: 1,
        http_status: 400,
        title: "API Unknown",
        details: "Invalid request or possible server error",
    },
    DocumentedError {
        code: 2,
        http_status: 503,
        title: "API Service",
        details: "Temporary due to downtime or due to being overloaded",
    },
    DocumentedError { code: 3, http_status: 500, title: "API Method", details: "Capability or permissions issue" },
    DocumentedError {
        code: 4,
        http_status: 400,
        title: "API Too Many Calls",
        details: "The app has reached its API call rate limit",
    },
    DocumentedError {
        code: 33,
        http_status: 400,
        title: "Parameter value is not valid",
        details: "This business phone number has been deleted",
    },
    DocumentedError {
        code: 368,
        http_status: 403,
        title: "Temporarily blocked for policies violations",
        details: "The WhatsApp Business Account is restricted for violating a platform policy",
    },
    DocumentedError {
        code: 80007,
        http_status: 400,
        title: "Rate limit issues",
        details: "The WhatsApp Business Account has reached its rate limit",
    },
    DocumentedError {
        code: 130403,
        http_status: 400,
        title: "Business has blocked this user",
        details: "The business has blocked this user",
    },
    DocumentedError {
        code: 130429,
        http_status: 400,
        title: "Rate limit hit",
        details: "Cloud API message throughput has been reached.",
    },
    DocumentedError {
        code: 130472,
        http_status: 400,
        title: "User's number is part of an experiment",
        details: "Failed to send message because this user's phone number is part of an experiment",
    },
    DocumentedError {
        code: 130497,
        http_status: 403,
        title: "Business account is restricted from messaging users in this country",
        details: "The business is restricted from messaging users in this country",
    },
    DocumentedError {
        code: 131000,
        http_status: 500,
        title: "Something went wrong",
        details: "Message failed to send due to an unknown error.",
    },
    DocumentedError {
        code: 131005,
        http_status: 403,
        title: "Access denied",
        details: "Permission is either not granted or has been removed.",
    },
    DocumentedError {
        code: 131008,
        http_status: 400,
        title: "Required parameter is missing",
        details: "The request is missing a required parameter.",
    },
    DocumentedError {
        code: 131016,
        http_status: 503,
        title: "Service unavailable",
        details: "A service is temporarily unavailable.",
    },
    DocumentedError {
        code: 131021,
        http_status: 400,
        title: "Recipient cannot be sender",
        details: "Sender and recipient phone number is the same.",
    },
    DocumentedError {
        code: 131026,
        http_status: 400,
        title: "Message undeliverable",
        details: "Unable to deliver message.",
    },
    DocumentedError {
        code: 131031,
        http_status: 403,
        title: "Business Account locked",
        details: "The WhatsApp Business Account has been restricted or disabled.",
    },
    DocumentedError {
        code: 131037,
        http_status: 400,
        title: "WhatsApp provided number needs display name approval before message can be sent",
        details: "The 555 business phone number needs an approved display name.",
    },
    DocumentedError {
        code: 131042,
        http_status: 400,
        title: "Business eligibility payment issue",
        details: "There was an error related to your payment method.",
    },
    DocumentedError {
        code: 131045,
        http_status: 500,
        title: "Incorrect certificate",
        details: "Message failed to send due to a phone number registration error.",
    },
    DocumentedError {
        code: 131047,
        http_status: 400,
        title: "Re-engagement message",
        details: "Message failed to send because more than 24 hours have passed since the customer last replied to \
                  this number.",
    },
    DocumentedError {
        code: 131048,
        http_status: 400,
        title: "Spam rate limit hit",
        details: "Message failed to send because there are restrictions on how many messages can be sent from this \
                  phone number.",
    },
    DocumentedError {
        code: 131049,
        http_status: 400,
        title: "This message was not delivered to maintain healthy ecosystem engagement.",
        details: "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    },
    DocumentedError {
        code: 131050,
        http_status: 400,
        title: "User has stopped marketing messages",
        details: "The user has stopped marketing messages from this business.",
    },
    DocumentedError {
        code: 131051,
        http_status: 400,
        title: "Unsupported message type",
        details: "Unsupported message type.",
    },
    DocumentedError {
        code: 131052,
        http_status: 400,
        title: "Media download error",
        details: "Unable to download the media sent by the user.",
    },
    DocumentedError {
        code: 131053,
        http_status: 400,
        title: "Media upload error",
        details: "Unable to upload the media used in the message.",
    },
    DocumentedError {
        code: 131056,
        http_status: 400,
        title: "(Business Account, Consumer Account) pair rate limit hit",
        details: "Message failed to send because there were too many messages sent from this phone number to the \
                  same phone number in a short period of time.",
    },
    DocumentedError {
        code: 131057,
        http_status: 500,
        title: "Account in maintenance mode",
        details: "Business Account is in maintenance mode.",
    },
    DocumentedError {
        code: 132000,
        http_status: 400,
        title: "Number of parameters does not match the expected number of params",
        details: "The number of variable parameter values does not match the number of variables in the template.",
    },
    DocumentedError {
        code: 132001,
        http_status: 404,
        title: "Template name does not exist in the translation",
        details: "The template does not exist in the specified language or the template has not been approved.",
    },
    DocumentedError {
        code: 132005,
        http_status: 400,
        title: "Translated text too long",
        details: "Translated text is too long.",
    },
    DocumentedError {
        code: 132007,
        http_status: 400,
        title: "Template Format Character Policy Violated",
        details: "Template content violates a WhatsApp policy.",
    },
    DocumentedError {
        code: 132012,
        http_status: 400,
        title: "Parameter format does not match format in the created template",
        details: "Variable parameter values formatted incorrectly.",
    },
    DocumentedError {
        code: 132015,
        http_status: 400,
        title: "Template is Paused",
        details: "Template is paused due to low quality so it cannot be sent in a template message.",
    },
    DocumentedError {
        code: 132016,
        http_status: 400,
        title: "Template is Disabled",
        details: "Template has been paused too many times due to low quality and is now permanently disabled.",
    },
    DocumentedError {
        code: 133004,
        http_status: 503,
        title: "Server Temporarily Unavailable",
        details: "Server is temporarily unavailable.",
    },
    DocumentedError {
        code: 133010,
        http_status: 400,
        title: "Phone number Not Registered",
        details: "The phone number is not registered on the WhatsApp Business Platform.",
    },
];

/// The documented error for `code`, or a generic one for an undocumented code.
pub fn documented(code: i64) -> DocumentedError {
    DOCUMENTED_ERRORS.iter().find(|e| e.code == code).copied().unwrap_or(DocumentedError {
        code,
        http_status: 400,
        title: "Error",
        details: "Undocumented error",
    })
}

pub(super) fn fbtrace_id() -> String {
    format!("A{}", random_token(22))
}

/// Meta's error envelope for `e`, with `details` overriding the documented ones.
pub fn envelope(e: &DocumentedError, details: Option<&str>) -> Value {
    let mut error = json!({
        "message": format!("(#{}) {}", e.code, e.title),
        "type": "OAuthException",
        "code": e.code,
        "error_data": {"messaging_product": "whatsapp", "details": details.unwrap_or(e.details)},
        "fbtrace_id": fbtrace_id(),
    });
    if e.code == 190 {
        // Meta's examples of an expired token carry subcode 463.
        error["error_subcode"] = json!(463);
    }
    json!({ "error": error })
}

pub(super) fn error_response(http_status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
    let trace = body.pointer("/error/fbtrace_id").and_then(Value::as_str).unwrap_or_default().to_string();
    (status, [("x-fb-trace-id", trace), ("www-authenticate", "OAuth \"Facebook Platform\"".into())], Json(body))
        .into_response()
}

pub(super) fn refuse(code: i64, details: Option<&str>) -> Response {
    let e = documented(code);
    error_response(e.http_status, envelope(&e, details))
}

pub(super) fn invalid(details: String) -> Response {
    refuse(100, Some(&details))
}

#[derive(Debug)]
struct PhoneState {
    /// `calling`, as GET shows it, without `sip.servers` (kept in `servers`).
    calling: Map<String, Value>,
    /// `(app_id, server object)` in the order they were set.
    servers: Vec<(String, Map<String, Value>)>,
    /// Meta's SIP password per app.
    passwords: HashMap<String, String>,
}

impl Default for PhoneState {
    /// A number whose calling was never configured: off, SIP off, no servers.
    fn default() -> PhoneState {
        let mut calling = Map::new();
        calling.insert("status".into(), json!("DISABLED"));
        calling.insert("call_icon_visibility".into(), json!("DEFAULT"));
        calling.insert("callback_permission_status".into(), json!("DISABLED"));
        calling.insert("sip".into(), json!({"status": "DISABLED"}));
        PhoneState { calling, servers: Vec::new(), passwords: HashMap::new() }
    }
}

impl PhoneState {
    fn sip_enabled(&self) -> bool {
        self.calling.get("sip").and_then(|s| s.get("status")).and_then(Value::as_str) == Some("ENABLED")
    }

    /// The GET answer; passwords only for `credentials_for` (the asking app) when asked.
    fn answer(&self, credentials_for: Option<&str>) -> Value {
        let mut calling = self.calling.clone();
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|(app, s)| {
                let mut out = Map::new();
                out.insert("app_id".into(), json!(app));
                out.extend(s.clone());
                if credentials_for == Some(app.as_str()) {
                    if let Some(pw) = self.passwords.get(app) {
                        out.insert("sip_user_password".into(), json!(pw));
                    }
                }
                Value::Object(out)
            })
            .collect();
        let sip = calling.entry("sip").or_insert_with(|| json!({}));
        if let Some(sip) = sip.as_object_mut() {
            sip.insert("servers".into(), Value::Array(servers));
        }
        json!({ "calling": calling })
    }
}

#[derive(Default)]
pub(super) struct Inner {
    /// token → app id.
    pub(super) tokens: HashMap<String, String>,
    phones: HashMap<String, PhoneState>,
    refusals: HashMap<String, VecDeque<(i64, Option<String>)>>,
    requests: Vec<RecordedRequest>,
    /// `http://127.0.0.1:PORT` (media URLs and paging links point here).
    pub(super) base_url: String,
    /// Business numbers registered with [`GraphSandbox::add_number`]: display number and WABA.
    pub(super) numbers: HashMap<String, Number>,
    /// Where status and template webhooks go.
    pub(super) webhook: Option<MetaWebhookSender>,
    /// Every webhook sent, with its delivery.
    pub(super) webhooks: Vec<WebhookRecord>,
    pub(super) messaging: Messaging,
    pub(super) media: MediaStore,
    pub(super) templates: TemplateStore,
    pub(super) health: crate::graph_health::HealthStore,
}

pub(super) type Shared = Arc<Mutex<Inner>>;

pub(super) fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running Graph settings emulator. Stops when dropped.
pub struct GraphSandbox {
    addr: SocketAddr,
    pub(super) inner: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl GraphSandbox {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> std::io::Result<GraphSandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner: Shared = Arc::default();
        lock(&inner).base_url = format!("http://{addr}");
        let app = Router::new()
            .route("/{version}/{id}/settings", get(get_settings).post(post_settings))
            .route("/{version}/{id}/messages", post(graph_messages::post_messages))
            .route(
                "/{version}/{id}/media",
                post(graph_media::upload).layer(DefaultBodyLimit::max(graph_media::MAX_UPLOAD_BODY)),
            )
            .route(
                "/{version}/{id}/message_templates",
                get(graph_templates::list).post(graph_templates::create).delete(graph_templates::delete),
            )
            .route("/{version}/debug_token", get(crate::graph_health::debug_token))
            .route("/{version}/{id}", get(graph_media::get_object).delete(graph_media::delete_object))
            .route(graph_media::DOWNLOAD_PATH, get(graph_media::download))
            .fallback(|method: Method| async move {
                refuse(100, Some(&format!("Unsupported {method} request: unknown path components")))
            })
            .with_state(inner.clone());
        let (stop, task) = crate::spawn_server(listener, app);
        Ok(GraphSandbox { addr, inner, stop: Some(stop), task })
    }

    /// `http://127.0.0.1:PORT` (without the version): the value for `graph_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accepts `token` as an access token of the Meta app `app_id`.
    pub fn allow_token(&self, token: &str, app_id: &str) {
        lock(&self.inner).tokens.insert(token.into(), app_id.into());
    }

    /// Forgets a token (it gets the 190 answer from now on, like a revoked one).
    pub fn revoke_token(&self, token: &str) {
        lock(&self.inner).tokens.remove(token);
    }

    /// The next request for this number (POST or GET, after the token check) fails with `code`, answered with
    /// Meta's error envelope and the documented HTTP status. Several calls queue several refusals.
    pub fn refuse_next(&self, phone_number_id: &str, code: i64) {
        self.refuse_next_with(phone_number_id, code, None);
    }

    /// Like [`refuse_next`](Self::refuse_next), with specific `error_data.details`.
    pub fn refuse_next_with(&self, phone_number_id: &str, code: i64, details: Option<&str>) {
        lock(&self.inner)
            .refusals
            .entry(phone_number_id.into())
            .or_default()
            .push_back((code, details.map(String::from)));
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner).requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.inner).requests.clear();
    }

    /// The number's settings as GET shows them (no credentials), `None` before the number was used.
    pub fn settings(&self, phone_number_id: &str) -> Option<Value> {
        lock(&self.inner).phones.get(phone_number_id).map(|p| p.answer(None))
    }

    /// Meta's SIP password for (number, app), if one was generated.
    pub fn sip_password(&self, phone_number_id: &str, app_id: &str) -> Option<String> {
        lock(&self.inner).phones.get(phone_number_id).and_then(|p| p.passwords.get(app_id).cloned())
    }

    /// Changes the number's `calling` object directly, as a change in WhatsApp Manager would (servers are in
    /// `calling.sip.servers` of the closure's value; `app_id` there names their owner, default `"0"`).
    pub fn edit(&self, phone_number_id: &str, f: impl FnOnce(&mut Value)) {
        let mut inner = lock(&self.inner);
        let phone = inner.phones.entry(phone_number_id.into()).or_default();
        let mut current = phone.answer(None);
        f(&mut current);
        let mut calling = current.get("calling").and_then(Value::as_object).cloned().unwrap_or_default();
        let servers = calling
            .get_mut("sip")
            .and_then(Value::as_object_mut)
            .and_then(|s| s.remove("servers"))
            .and_then(|s| s.as_array().cloned())
            .unwrap_or_default();
        phone.servers = servers
            .into_iter()
            .filter_map(|s| {
                let mut s = s.as_object()?.clone();
                let app = s.remove("app_id").and_then(|a| a.as_str().map(String::from)).unwrap_or_else(|| "0".into());
                s.remove("sip_user_password");
                Some((app, s))
            })
            .collect();
        phone.calling = calling;
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for GraphSandbox {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")).map(|t| t.trim().to_string())
}

/// Records a request as received.
pub(super) fn record(
    inner: &mut Inner,
    method: &str,
    path: String,
    query: &Option<String>,
    token: Option<String>,
    body: Option<Value>,
) {
    inner.requests.push(RecordedRequest { method: method.into(), path, query: query.clone(), token, body });
}

/// The answer to a missing (200) or unknown (190, HTTP 401) token; the asking app's id otherwise.
pub(super) fn check_token(inner: &Inner, token: Option<&str>) -> Result<String, Box<Response>> {
    let Some(token) = token else {
        return Err(Box::new(refuse(200, Some("An access token is required to request this resource"))));
    };
    let Some(app) = inner.tokens.get(token).cloned() else {
        let e = DocumentedError {
            code: 190,
            http_status: 401,
            title: "Invalid OAuth access token",
            details: "Invalid OAuth access token - Cannot parse access token",
        };
        let mut body = envelope(&e, None);
        if let Some(err) = body.get_mut("error").and_then(Value::as_object_mut) {
            err.remove("error_subcode");
        }
        return Err(Box::new(error_response(401, body)));
    };
    if let Some((subcode, message)) = crate::graph_health::refused_token(inner, token) {
        let body = json!({"error": {"message": message, "type": "OAuthException", "code": 190,
                                    "error_subcode": subcode, "fbtrace_id": fbtrace_id()}});
        return Err(Box::new(error_response(401, body)));
    }
    Ok(app)
}

/// What every Graph request goes through first: it is recorded (`path` as received), then the version and the
/// token are checked. Gives `(token, app id)`, or the answer to send.
pub(super) fn gate(
    inner: &mut Inner,
    method: &str,
    version: &str,
    path: String,
    query: &Option<String>,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<(String, String), Box<Response>> {
    let token = bearer(headers);
    record(inner, method, path, query, token.clone(), body);
    if !is_version(version) {
        return Err(Box::new(invalid(format!("Unknown Graph API version {version}"))));
    }
    let app = check_token(inner, token.as_deref())?;
    Ok((token.unwrap_or_default(), app))
}

/// True for a Graph API version as the path carries it: `^v[0-9]+\.[0-9]+$` (`v23.0`), the pattern of Meta's
/// OpenAPI description (`shared/reference/meta-messaging.md` §0).
pub(super) fn is_version(v: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    v.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

/// True for a Graph object id (decimal digits).
pub(super) fn is_object_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

/// Meta's answer for an object that does not exist (or is not visible): `GraphMethodException` 100/33, HTTP 400.
pub(super) fn no_such_object(method: &str, id: &str) -> Response {
    let message = format!(
        "Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, \
         or does not support this operation",
        method.to_ascii_lowercase()
    );
    let body = json!({"error": {"message": message, "type": "GraphMethodException", "code": 100,
                                "error_subcode": 33, "fbtrace_id": fbtrace_id()}});
    error_response(400, body)
}

/// The checks every settings request goes through, in Meta's order: version, token, object id, queued refusals.
/// Gives the asking app's id, or the answer to send.
fn admit(
    inner: &mut Inner,
    method: &str,
    version: &str,
    pnid: &str,
    query: &Option<String>,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<String, Box<Response>> {
    let (_, app) = gate(inner, method, version, format!("/{version}/{pnid}/settings"), query, headers, body)?;
    if !is_object_id(pnid) {
        return Err(Box::new(no_such_object(method, pnid)));
    }
    if let Some((code, details)) = inner.refusals.get_mut(pnid).and_then(VecDeque::pop_front) {
        return Err(Box::new(refuse(code, details.as_deref())));
    }
    Ok(app)
}

pub(super) fn ok_headers(version: &str) -> [(&'static str, String); 2] {
    [("x-fb-trace-id", fbtrace_id()), ("facebook-api-version", version.to_string())]
}

async fn get_settings(
    State(inner): State<Shared>,
    Path((version, pnid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&inner);
    let app = match admit(&mut inner, "get", &version, &pnid, &query, &headers, None) {
        Ok(app) => app,
        Err(r) => return *r,
    };
    let credentials = url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "include_sip_credentials" && v == "true");
    let phone = inner.phones.entry(pnid).or_default();
    let answer = phone.answer(credentials.then_some(app.as_str()));
    (ok_headers(&version), Json(answer)).into_response()
}

async fn post_settings(
    State(inner): State<Shared>,
    Path((version, pnid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let mut inner = lock(&inner);
    let app = match admit(&mut inner, "post", &version, &pnid, &query, &headers, parsed.as_ref().ok().cloned()) {
        Ok(app) => app,
        Err(r) => return *r,
    };
    let Ok(body) = parsed else {
        return invalid("The request body is not valid JSON".into());
    };
    let phone = inner.phones.entry(pnid).or_default();
    match apply_post(phone, &app, &body) {
        Ok(()) => (ok_headers(&version), Json(json!({"success": true}))).into_response(),
        Err(details) => invalid(details),
    }
}

fn enum_field(obj: &Map<String, Value>, key: &str, path: &str, allowed: &[&str]) -> Result<Option<String>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(v) => Err(format!("Param {path} must be one of {{{}}}, got {v}", allowed.join(", "))),
    }
}

/// Checks the whole body first, then applies it (a refused body changes nothing).
fn apply_post(phone: &mut PhoneState, app: &str, body: &Value) -> Result<(), String> {
    let calling = body
        .get("calling")
        .and_then(Value::as_object)
        .ok_or_else(|| "Param calling is required and must be an object".to_string())?;
    const KNOWN: &[&str] = &[
        "status",
        "call_icon_visibility",
        "call_icons",
        "call_hours",
        "callback_permission_status",
        "sip",
        "srtp_key_exchange_protocol",
        "audio",
        "voicemail",
    ];
    if let Some(k) = calling.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("Param calling[{k}] is not a valid parameter"));
    }
    let mut next = phone.calling.clone();
    let mut servers = phone.servers.clone();
    for (key, allowed) in [
        ("status", &["ENABLED", "DISABLED"][..]),
        ("call_icon_visibility", &["DEFAULT", "DISABLE_ALL", "HIDE_IN_CHAT"][..]),
        ("callback_permission_status", &["ENABLED", "DISABLED"][..]),
        ("srtp_key_exchange_protocol", &["DTLS", "SDES"][..]),
    ] {
        if let Some(v) = enum_field(calling, key, &format!("calling[{key}]"), allowed)? {
            next.insert(key.into(), json!(v));
        }
    }
    for key in ["call_icons", "call_hours", "audio", "voicemail"] {
        if let Some(v) = calling.get(key) {
            next.insert(key.into(), v.clone());
        }
    }
    if let Some(sip) = calling.get("sip") {
        let sip = sip.as_object().ok_or("Param calling[sip] must be an object")?;
        if let Some(k) = sip.keys().find(|k| !["status", "servers", "webhook_delivery"].contains(&k.as_str())) {
            return Err(format!("Param calling[sip][{k}] is not a valid parameter"));
        }
        let mut next_sip = next.get("sip").and_then(Value::as_object).cloned().unwrap_or_default();
        if let Some(s) = enum_field(sip, "status", "calling[sip][status]", &["ENABLED", "DISABLED"])? {
            next_sip.insert("status".into(), json!(s));
        }
        if let Some(w) =
            enum_field(sip, "webhook_delivery", "calling[sip][webhook_delivery]", &["ENABLED", "DISABLED"])?
        {
            next_sip.insert("webhook_delivery".into(), json!(w));
        }
        if let Some(list) = sip.get("servers") {
            let list = list.as_array().ok_or("Param calling[sip][servers] must be an array")?;
            if list.len() > 1 {
                return Err("Only one SIP server per phone number is supported".into());
            }
            let mut mine = Vec::new();
            for (i, s) in list.iter().enumerate() {
                mine.push((app.to_string(), check_server(s, i)?));
            }
            servers.retain(|(owner, _)| owner != app);
            servers.extend(mine);
        }
        next.insert("sip".into(), Value::Object(next_sip));
    }
    let sip_enabled = next.get("sip").and_then(|s| s.get("status")).and_then(Value::as_str) == Some("ENABLED");
    if sip_enabled && servers.is_empty() {
        return Err("At least one SIP server is required while SIP is enabled; set SIP to DISABLED first to clear \
                    the servers"
            .into());
    }
    phone.calling = next;
    phone.servers = servers;
    // One password per (number, app): made when SIP is on with this app's server, forgotten with the server.
    let has_server = phone.servers.iter().any(|(owner, _)| owner == app);
    if !has_server {
        phone.passwords.remove(app);
    } else if phone.sip_enabled() {
        phone.passwords.entry(app.to_string()).or_insert_with(|| random_token(32));
    }
    Ok(())
}

fn check_server(s: &Value, i: usize) -> Result<Map<String, Value>, String> {
    let s = s.as_object().ok_or_else(|| format!("Param calling[sip][servers][{i}] must be an object"))?;
    let mut out = Map::new();
    for k in s.keys() {
        if !["hostname", "port", "request_uri_user_params"].contains(&k.as_str()) {
            return Err(format!("Param calling[sip][servers][{i}][{k}] is not a valid parameter"));
        }
    }
    match s.get("hostname").and_then(Value::as_str) {
        Some(h) if !h.trim().is_empty() && !h.contains("://") && !h.contains(':') => {
            out.insert("hostname".into(), json!(h));
        }
        _ => return Err(format!("Param calling[sip][servers][{i}][hostname] must be a host name")),
    }
    if let Some(p) = s.get("port") {
        match p.as_u64() {
            Some(n) if (1..=65535).contains(&n) => {
                out.insert("port".into(), json!(n));
            }
            _ => return Err(format!("Param calling[sip][servers][{i}][port] must be a port number")),
        }
    }
    if let Some(params) = s.get("request_uri_user_params") {
        let m = params
            .as_object()
            .ok_or_else(|| format!("Param calling[sip][servers][{i}][request_uri_user_params] must be an object"))?;
        if m.iter().any(|(k, v)| k.len() > 128 || v.as_str().is_none_or(|v| v.len() > 128)) {
            return Err("request_uri_user_params keys and values are strings of at most 128 characters".into());
        }
        out.insert("request_uri_user_params".into(), params.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_documented_pattern() {
        for ok in ["v23.0", "v1.0", "v100.25"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["", "v", "23.0", "v23", "v23.", "v.0", "v23.0.1", "V23.0", "v2a.0", "v23.0 ", "v+1.0"] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn post_merges_and_makes_a_password_per_app() {
        let mut p = PhoneState::default();
        let body = json!({"calling": {"status": "ENABLED", "srtp_key_exchange_protocol": "SDES",
            "sip": {"status": "ENABLED", "servers": [{"hostname": "sip.example.com", "port": 5061}]}}});
        apply_post(&mut p, "1", &body).unwrap();
        let pw = p.passwords.get("1").cloned().unwrap();
        assert_eq!(
            p.answer(None)["calling"]["sip"]["servers"][0],
            json!({"app_id": "1", "hostname": "sip.example.com", "port": 5061})
        );
        assert_eq!(p.answer(Some("1"))["calling"]["sip"]["servers"][0]["sip_user_password"], json!(pw));
        assert!(p.answer(Some("2"))["calling"]["sip"]["servers"][0].get("sip_user_password").is_none());
        // Disabling keeps the server and the password; re-enabling gives the same password.
        apply_post(&mut p, "1", &json!({"calling": {"status": "DISABLED", "sip": {"status": "DISABLED"}}})).unwrap();
        assert_eq!(p.answer(None)["calling"]["sip"]["servers"][0]["hostname"], "sip.example.com");
        apply_post(&mut p, "1", &json!({"calling": {"status": "ENABLED", "sip": {"status": "ENABLED"}}})).unwrap();
        assert_eq!(p.passwords.get("1"), Some(&pw));
        // SIP on without servers is refused; clearing after disabling rotates the password.
        let e = apply_post(&mut p, "1", &json!({"calling": {"sip": {"servers": []}}})).unwrap_err();
        assert!(e.contains("At least one SIP server"), "{e}");
        apply_post(&mut p, "1", &json!({"calling": {"sip": {"status": "DISABLED", "servers": []}}})).unwrap();
        assert!(p.passwords.is_empty());
        apply_post(&mut p, "1", &body).unwrap();
        assert_ne!(p.passwords.get("1"), Some(&pw));
    }

    #[test]
    fn post_refuses_bad_bodies_without_changing_anything() {
        let mut p = PhoneState::default();
        for (body, needle) in [
            (json!({}), "calling"),
            (json!({"calling": {"status": "ON"}}), "calling[status]"),
            (json!({"calling": {"srtp_key_exchange_protocol": "ZRTP"}}), "srtp"),
            (json!({"calling": {"bogus": 1}}), "bogus"),
            (json!({"calling": {"sip": {"servers": [{"port": 5061}]}}}), "hostname"),
            (json!({"calling": {"sip": {"servers": [{"hostname": "a.example.com", "port": 0}]}}}), "port"),
            (
                json!({"calling": {"sip": {"servers": [{"hostname": "a.example.com"}, {"hostname": "b.example.com"}]}}}),
                "one SIP server",
            ),
        ] {
            let e = apply_post(&mut p, "1", &body).unwrap_err();
            assert!(e.contains(needle), "{body}: {e}");
        }
        assert_eq!(p.answer(None), PhoneState::default().answer(None));
    }

    #[test]
    fn envelopes_follow_the_table() {
        for (code, status) in
            [(138000, 401), (138014, 400), (138015, 400), (138018, 400), (131055, 400), (100, 400), (190, 401)]
        {
            let e = documented(code);
            assert_eq!(e.http_status, status, "{code}");
            let env = envelope(&e, None);
            assert_eq!(env["error"]["code"], code);
            assert!(env["error"]["message"].as_str().unwrap().starts_with(&format!("(#{code}) ")));
            assert_eq!(env["error"]["type"], "OAuthException");
            assert!(env["error"]["error_data"]["details"].is_string());
            assert!(env["error"]["fbtrace_id"].as_str().unwrap().len() > 10);
        }
    }
}
