//! Emulator of a Bitrix24 portal together with its OAuth server, speaking the wire formats of
//! `shared/reference/bitrix24.md` (§0–§3):
//!
//! - OAuth: `GET /oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token` (and
//!   `authorization_code`) answers the documented token object; every refresh gives a new pair and spends the old
//!   refresh token (`invalid_grant` afterwards; a second use of a spent token is counted, see
//!   [`BitrixSandbox::double_spent_refresh`]).
//! - REST: `POST|GET /rest/{method}` and `/rest/{method}.json`, JSON or bracketed-form body, `auth` in the body or
//!   the query; answers `{"result": …, "time": {…}}` or `{"error", "error_description"}` with the documented HTTP
//!   statuses (401 `expired_token` / `NO_AUTH_FOUND`, 503 `QUERY_LIMIT_EXCEEDED` from a leaky bucket per portal,
//!   429 `OPERATION_TIME_LIMIT`, 500 while "down"). `batch` runs sub-calls with `halt`, `$result[..]` references and
//!   the PHP quirk that empty maps are `[]`.
//! - Methods kept in memory: `app.info`, `imconnector.*` (register with the `{"result":{"result":true}}` quirk,
//!   activate/status/connector.data.set, send.messages creating one open-line chat per (connector, line, chat.id,
//!   user.id), status delivery/reading, update/delete), `event.bind/get/unbind`, `imopenlines.config.*`,
//!   `messageservice.*`.
//! - Events are posted to the app as the Bitrix queue server does: `application/x-www-form-urlencoded` with
//!   bracketed keys (`event`, `event_handler_id`, `data`, `ts`, `auth[…]`), no retries. See [`EventPoster`].
//!
//! One sandbox is one portal. It listens on 127.0.0.1 with a port of its own; it is both the portal
//! ([`BitrixSandbox::client_endpoint`]) and `oauth.bitrix.info` ([`BitrixSandbox::oauth_url`]).

mod events;
mod rest;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::routing::any;
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use events::EventPoster;

use crate::token::random_token;

/// How the sandbox portal is set up.
#[derive(Debug, Clone)]
pub struct BitrixOptions {
    /// The app's `client_id` (a local app's looks like `local.5f1a….12345678`).
    pub client_id: String,
    pub client_secret: String,
    /// The stable portal id (`auth[member_id]`).
    pub member_id: String,
    /// The portal's name as events show it in `auth[domain]` (`some-domain.bitrix24.com`). The REST endpoint is
    /// always the sandbox's own address ([`BitrixSandbox::client_endpoint`]).
    pub domain: String,
    /// The token that authenticates events (`auth[application_token]`).
    pub application_token: String,
    /// Lifetime of access tokens (Bitrix: 1 hour).
    pub access_token_lifetime: Duration,
    /// Leaky bucket per portal: drained per second (Bitrix: 2/s, enterprise 5/s).
    pub rate_drain_per_sec: f64,
    /// Leaky bucket per portal: requests beyond this level get `QUERY_LIMIT_EXCEEDED` (Bitrix: 50, enterprise 250).
    pub rate_limit: f64,
    /// Granted scopes, as the token answer and `auth[scope]` show them.
    pub scope: String,
    /// App status: `L` local, `F`/`D`/`T`/`P` market.
    pub status: String,
    /// The installing admin's user id (owner of the tokens).
    pub user_id: u64,
}

impl Default for BitrixOptions {
    fn default() -> BitrixOptions {
        BitrixOptions {
            client_id: format!("local.{}.{}", random_hex(7), random_digits(8)),
            client_secret: random_token(50),
            member_id: random_hex(16),
            domain: "sandbox.bitrix24.com".into(),
            application_token: random_hex(16),
            access_token_lifetime: Duration::from_secs(3600),
            rate_drain_per_sec: 2.0,
            rate_limit: 50.0,
            scope: "imconnector,imopenlines,im,messageservice,telephony,crm,placement,contact_center".into(),
            status: "L".into(),
            user_id: 1,
        }
    }
}

/// One REST call as the sandbox received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RestCall {
    /// Lowercase, without `.json`: `imconnector.send.messages`.
    pub method: String,
    /// Query and body parameters merged (body wins), `auth` removed.
    pub params: Value,
    pub at: SystemTime,
    /// The `auth` token presented.
    pub token: Option<String>,
    /// The HTTP status answered (for a sub-call of `batch`: 200 or the status its error would have had).
    pub http_status: u16,
    /// Set for the sub-calls of a `batch` (the batch itself is recorded too).
    pub via_batch: bool,
}

/// An open line (`imopenlines.config.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLine {
    pub id: u64,
    pub name: String,
    pub active: bool,
    /// All fields as `imopenlines.config.get` shows them (`ID`, `LINE_NAME`, `ACTIVE`, …).
    pub fields: Value,
}

/// A connector registered with `imconnector.register`.
#[derive(Debug, Clone, PartialEq)]
pub struct Connector {
    /// Lowercased as Bitrix does.
    pub id: String,
    pub name: Value,
    pub icon: Value,
    pub placement_handler: String,
    /// Everything else that was passed (`CHAT_GROUP`, `NEED_SIGNATURE`, …), keys uppercased.
    pub options: Value,
}

/// The state of a connector on a line (`imconnector.status`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorStatus {
    pub connector: String,
    pub line: u64,
    pub active: bool,
    pub connected: bool,
    pub registered: bool,
    pub error: bool,
}

/// A subscription made with `event.bind`.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundEvent {
    /// `event_handler_id` in the posted events.
    pub id: u64,
    /// Uppercase (`ONIMCONNECTORMESSAGEADD`).
    pub event: String,
    pub handler: String,
    pub auth_type: u64,
    pub offline: bool,
}

/// An open-line chat: one per (connector, line, external chat id, external user id).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenChat {
    pub connector: String,
    pub line: u64,
    pub external_chat_id: String,
    pub external_user_id: String,
    /// The Bitrix chat id (`session.CHAT_ID`, `im.chat_id`).
    pub chat_id: u64,
    /// `session.ID`.
    pub session_id: u64,
    /// The Bitrix user made for the external user (`XML_ID = connector|user.id`).
    pub bitrix_user_id: u64,
}

/// What happened to a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `imconnector.send.messages`.
    Sent,
    /// `imconnector.update.messages`.
    Updated,
    /// `imconnector.delete.messages`.
    Deleted,
}

/// A client message received through `imconnector.send.messages` (or update/delete).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub kind: MessageKind,
    pub connector: String,
    pub line: u64,
    /// The open-line chat id.
    pub chat_id: u64,
    pub external_chat_id: String,
    pub external_user_id: String,
    /// The `user` object as sent (keys lowercased).
    pub user: Value,
    /// `message.id` (the external id, kept as `CONNECTOR_MID`).
    pub external_message_id: Option<String>,
    pub text: Option<String>,
    /// `message.files` as sent (`[{url, name}]`).
    pub files: Vec<Value>,
    /// The Bitrix message id given to it.
    pub im_message_id: u64,
    /// The whole `message` object as sent (keys lowercased).
    pub message: Value,
    /// When the portal took it (for an update or deletion: when that came). Benchmarks measure end-to-end
    /// latency against it; it is not part of any wire format.
    pub at: SystemTime,
}

/// One item of `imconnector.send.status.delivery` / `…reading`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusMark {
    pub connector: String,
    pub line: u64,
    pub im_chat_id: u64,
    pub im_message_id: u64,
    /// `message.id[]`: the external ids (WhatsApp message ids).
    pub external_ids: Vec<String>,
    pub external_chat_id: String,
    pub date: Option<String>,
}

/// An SMS provider registered with `messageservice.sender.add`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmsSender {
    pub code: String,
    pub sender_type: String,
    pub handler: String,
    pub name: Value,
    pub description: Value,
}

/// An SMS Bitrix handed to a provider ([`EventPoster::sms`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsMessage {
    /// 32 hex digits.
    pub message_id: String,
    pub code: String,
    pub to: String,
    pub body: String,
    /// The last status reported with `messageservice.message.status.update`.
    pub status: Option<String>,
}

/// An event the sandbox posted (by a poster or as the effect of a REST call).
#[derive(Debug, Clone, PartialEq)]
pub struct PostedEvent {
    pub url: String,
    /// `ONIMCONNECTORMESSAGEADD`, or `SMS` for provider calls, `RAW` for [`EventPoster::post_raw`].
    pub event: String,
    /// The payload as a JSON tree (what the form encodes).
    pub payload: Value,
    /// What the handler answered, or the transport error.
    pub outcome: Result<u16, String>,
}

/// A file attached to an operator message (`message.files[]` of `ONIMCONNECTORMESSAGEADD`).
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    pub name: String,
    /// Sent as `type` (`image`, `file`, …).
    pub kind: String,
    /// Sent as `link`: where the app downloads it.
    pub link: String,
    pub size: u64,
}

impl FileSpec {
    pub fn new(name: &str, kind: &str, link: &str, size: u64) -> FileSpec {
        FileSpec { name: name.into(), kind: kind.into(), link: link.into(), size }
    }
}

/// The outcome of [`EventPoster::operator_reply`].
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorReply {
    /// What the (first) handler answered.
    pub status: u16,
    /// Statuses of every bound handler, in binding order.
    pub statuses: Vec<u16>,
    pub connector: String,
    /// `im.chat_id`: the open-line chat.
    pub chat_id: u64,
    /// `im.message_id`: fresh for every reply.
    pub message_id: u64,
}

/// Where an SMS comes from: a CRM card (`module_id=crm`) or a workflow / automation robot (`module_id=bizproc`).
#[derive(Debug, Clone, PartialEq)]
pub enum SmsOrigin {
    Crm { owner_type_id: u64, owner_id: u64 },
    Bizproc { workflow_id: String, document_id: [String; 3], document_type: [String; 3] },
}

/// Why an event could not be posted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PostError {
    #[error("the app is not installed (events are not delivered)")]
    NotInstalled,
    #[error("no handler is bound for {0}")]
    NoHandler(String),
    #[error("no open-line chat for line {line} and external chat {chat}")]
    UnknownChat { line: u64, chat: String },
    #[error("the connector is not active on line {0}")]
    ConnectorNotActive(u64),
    #[error("no open line {0}")]
    UnknownLine(u64),
    #[error("no SMS sender with code {0}")]
    UnknownSender(String),
    #[error("nothing was posted yet")]
    NothingPosted,
    #[error("transport: {0}")]
    Transport(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Valid,
    Spent,
    Revoked,
}

#[derive(Debug)]
struct Bucket {
    level: f64,
    at: Instant,
    drain: f64,
    limit: f64,
}

impl Bucket {
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.level = (self.level - self.drain * elapsed).max(0.0);
        self.at = now;
        if self.level + 1.0 > self.limit {
            false
        } else {
            self.level += 1.0;
            true
        }
    }
}

/// An event to post once the state lock is released.
#[derive(Debug, Clone)]
struct Outgoing {
    url: String,
    event: String,
    payload: Value,
}

/// An operator message the sandbox emitted (so update/delete events and delivery marks can refer to it).
#[derive(Debug, Clone)]
struct OperatorMessage {
    line: u64,
    connector: String,
    chat_id: u64,
    message_id: u64,
    external_chat_id: String,
}

#[derive(Debug, Clone)]
struct LastPost {
    url: String,
    event: String,
    payload: Value,
    body: String,
    content_type: &'static str,
}

#[derive(Debug)]
struct Inner {
    opts: BitrixOptions,
    base: String,
    installed: bool,
    access: HashMap<String, Instant>,
    refresh: HashMap<String, RefreshState>,
    current_access: String,
    current_refresh: String,
    auth_codes: HashMap<String, Instant>,
    refresh_count: usize,
    double_spent: usize,
    invalid_grant_status: u16,
    bucket: Bucket,
    forced_query_limit: usize,
    /// The next this-many messages of `imconnector.send.messages` are refused one by one (code, message).
    refused_messages: (usize, String, String),
    /// The next this-many calls of a method take effect but their answer is cut off half-way (method, count).
    lost_answers: HashMap<String, usize>,
    forced_op_limit: HashMap<String, usize>,
    down: bool,
    calls: Vec<RestCall>,
    connectors: BTreeMap<String, Connector>,
    bindings: Vec<BoundEvent>,
    next_binding: u64,
    lines: BTreeMap<u64, OpenLine>,
    next_line: u64,
    statuses: BTreeMap<(String, u64), ConnectorStatus>,
    data: BTreeMap<(String, u64), Value>,
    users: HashMap<(String, String), u64>,
    chats: Vec<OpenChat>,
    next_chat: u64,
    next_session: u64,
    next_user: u64,
    next_message: u64,
    messages: Vec<ChatMessage>,
    operator_messages: Vec<OperatorMessage>,
    delivery: Vec<StatusMark>,
    reading: Vec<StatusMark>,
    senders: BTreeMap<String, SmsSender>,
    sms: Vec<SmsMessage>,
    sms_statuses: Vec<(String, String)>,
    posted: Vec<PostedEvent>,
    last_post: Option<LastPost>,
    pending: Vec<Outgoing>,
    /// Background posts not finished yet.
    in_flight: usize,
}

impl Inner {
    fn new(opts: BitrixOptions, base: String) -> Inner {
        let bucket = Bucket { level: 0.0, at: Instant::now(), drain: opts.rate_drain_per_sec, limit: opts.rate_limit };
        let mut inner = Inner {
            opts,
            base,
            installed: true,
            access: HashMap::new(),
            refresh: HashMap::new(),
            current_access: String::new(),
            current_refresh: String::new(),
            auth_codes: HashMap::new(),
            refresh_count: 0,
            double_spent: 0,
            invalid_grant_status: 400,
            bucket,
            forced_query_limit: 0,
            refused_messages: (0, String::new(), String::new()),
            lost_answers: HashMap::new(),
            forced_op_limit: HashMap::new(),
            down: false,
            calls: Vec::new(),
            connectors: BTreeMap::new(),
            bindings: Vec::new(),
            next_binding: 1,
            lines: BTreeMap::new(),
            next_line: 1,
            statuses: BTreeMap::new(),
            data: BTreeMap::new(),
            users: HashMap::new(),
            chats: Vec::new(),
            next_chat: 1801,
            next_session: 501,
            next_user: 101,
            next_message: 86401,
            messages: Vec::new(),
            operator_messages: Vec::new(),
            delivery: Vec::new(),
            reading: Vec::new(),
            senders: BTreeMap::new(),
            sms: Vec::new(),
            sms_statuses: Vec::new(),
            posted: Vec::new(),
            last_post: None,
            pending: Vec::new(),
            in_flight: 0,
        };
        inner.issue_pair();
        inner
    }

    fn client_endpoint(&self) -> String {
        format!("{}/rest/", self.base)
    }

    /// A new access/refresh pair; every other unspent refresh token is revoked.
    fn issue_pair(&mut self) {
        for state in self.refresh.values_mut() {
            if *state == RefreshState::Valid {
                *state = RefreshState::Revoked;
            }
        }
        let access = random_hex(35);
        let refresh = random_hex(35);
        self.access.insert(access.clone(), Instant::now() + self.opts.access_token_lifetime);
        self.refresh.insert(refresh.clone(), RefreshState::Valid);
        self.current_access = access;
        self.current_refresh = refresh;
    }

    fn expires_unix(&self) -> u64 {
        unix_now() + self.opts.access_token_lifetime.as_secs()
    }

    pub(super) fn next_message_id(&mut self) -> u64 {
        let id = self.next_message;
        self.next_message += 1;
        id
    }

    /// Queues `event` with `data` for every handler bound to it (effects of REST calls and portal actions).
    fn fire(&mut self, event: &str, data: Value) {
        if !self.installed {
            return;
        }
        let handlers: Vec<(u64, String)> = self
            .bindings
            .iter()
            .filter(|b| b.event == event && !b.offline)
            .map(|b| (b.id, b.handler.clone()))
            .collect();
        for (id, url) in handlers {
            let payload = self.event_payload(event, id, data.clone(), self.auth_user(None, self.opts.user_id));
            self.pending.push(Outgoing { url, event: event.into(), payload });
        }
    }

    fn event_payload(&self, event: &str, handler_id: u64, data: Value, auth: Value) -> Value {
        serde_json::json!({
            "event": event,
            "event_handler_id": handler_id,
            "data": data,
            "ts": unix_now(),
            "auth": auth,
        })
    }

    /// `auth` of an event caused by a user: tokens of that user plus the portal fields.
    fn auth_user(&self, application_token: Option<&str>, user_id: u64) -> Value {
        serde_json::json!({
            "access_token": self.current_access,
            "expires": self.expires_unix(),
            "expires_in": self.opts.access_token_lifetime.as_secs(),
            "scope": self.opts.scope,
            "domain": self.opts.domain,
            "server_endpoint": format!("{}/rest/", self.base),
            "status": self.opts.status,
            "client_endpoint": self.client_endpoint(),
            "member_id": self.opts.member_id,
            "user_id": user_id,
            "application_token": application_token.unwrap_or(&self.opts.application_token),
        })
    }

    /// `auth` of an event without a user (`ONAPPUNINSTALL`): no tokens.
    fn auth_portal(&self, application_token: Option<&str>) -> Value {
        serde_json::json!({
            "domain": self.opts.domain,
            "server_endpoint": format!("{}/rest/", self.base),
            "client_endpoint": self.client_endpoint(),
            "member_id": self.opts.member_id,
            "application_token": application_token.unwrap_or(&self.opts.application_token),
        })
    }

    fn handlers(&self, event: &str) -> Vec<(u64, String)> {
        self.bindings.iter().filter(|b| b.event == event && !b.offline).map(|b| (b.id, b.handler.clone())).collect()
    }

    /// The status record of the connector active on `line` (any connector).
    fn status_on_line(&self, line: u64) -> Option<&ConnectorStatus> {
        self.statuses.values().find(|s| s.line == line)
    }

    /// Deletes a line: status records and connector data go with it; `ONIMCONNECTORLINEDELETE` is queued.
    fn delete_line(&mut self, line: u64) -> bool {
        if self.lines.remove(&line).is_none() {
            return false;
        }
        self.statuses.retain(|(_, l), _| *l != line);
        self.data.retain(|(_, l), _| *l != line);
        self.fire("ONIMCONNECTORLINEDELETE", Value::from(line));
        true
    }
}

struct Shared {
    inner: Mutex<Inner>,
    client: reqwest::Client,
}

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running Bitrix24 portal + OAuth server. Stops when dropped.
pub struct BitrixSandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl BitrixSandbox {
    /// Starts on 127.0.0.1 with a free port. A first token pair is issued at once
    /// ([`current_access_token`](Self::current_access_token)); the app counts as installed.
    pub async fn start(opts: BitrixOptions) -> std::io::Result<BitrixSandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .user_agent("Bitrix24 Webhook Engine")
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared { inner: Mutex::new(Inner::new(opts, format!("http://{addr}"))), client });
        let app = Router::new()
            .route("/oauth/token", any(rest::oauth_token))
            .route("/oauth/token/", any(rest::oauth_token))
            .route("/rest/{method}", any(rest::rest))
            .fallback(rest::not_found)
            .with_state(shared.clone());
        let (stop, task) = crate::spawn_server(listener, app);
        Ok(BitrixSandbox { addr, shared, stop: Some(stop), task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base}/rest/`: what `auth[client_endpoint]` carries.
    pub fn client_endpoint(&self) -> String {
        format!("{}/rest/", self.base_url())
    }

    /// The OAuth server (stands for `https://oauth.bitrix.info`): the token endpoint is `{oauth_url}/oauth/token/`.
    pub fn oauth_url(&self) -> String {
        self.base_url()
    }

    /// The options the portal runs with.
    pub fn options(&self) -> BitrixOptions {
        lock(&self.shared).opts.clone()
    }

    pub fn member_id(&self) -> String {
        lock(&self.shared).opts.member_id.clone()
    }

    pub fn application_token(&self) -> String {
        lock(&self.shared).opts.application_token.clone()
    }

    // ---- OAuth ----

    /// The newest access token.
    pub fn current_access_token(&self) -> String {
        lock(&self.shared).current_access.clone()
    }

    /// The newest refresh token (the only one that can be spent).
    pub fn current_refresh_token(&self) -> String {
        lock(&self.shared).current_refresh.clone()
    }

    /// Every access token issued so far expires now: REST answers 401 `expired_token` until a refresh.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for expiry in lock(&self.shared).access.values_mut() {
            *expiry = now;
        }
    }

    /// The current refresh token stops working (as after its lifetime or a revocation): `invalid_grant`.
    pub fn revoke_refresh_tokens(&self) {
        for state in lock(&self.shared).refresh.values_mut() {
            if *state == RefreshState::Valid {
                *state = RefreshState::Revoked;
            }
        }
    }

    /// Issues a new pair as a fresh authorization would (the previous refresh token is revoked).
    pub fn issue_token_pair(&self) -> (String, String) {
        let mut inner = lock(&self.shared);
        inner.issue_pair();
        (inner.current_access.clone(), inner.current_refresh.clone())
    }

    /// A one-time `code` for `grant_type=authorization_code` (valid 30 s).
    pub fn issue_authorization_code(&self) -> String {
        let code = random_hex(35);
        lock(&self.shared).auth_codes.insert(code.clone(), Instant::now() + Duration::from_secs(30));
        code
    }

    /// How many refreshes succeeded.
    pub fn refresh_count(&self) -> usize {
        lock(&self.shared).refresh_count
    }

    /// How many times a refresh token that had already been spent was presented again.
    pub fn double_spent_refresh(&self) -> usize {
        lock(&self.shared).double_spent
    }

    /// HTTP status of `invalid_grant` answers (default 400; the OAuth server has been seen answering 401).
    pub fn set_invalid_grant_status(&self, status: u16) {
        lock(&self.shared).invalid_grant_status = status;
    }

    // ---- faults ----

    /// The next `n` REST calls (after the token check) get 503 `QUERY_LIMIT_EXCEEDED`.
    pub fn force_query_limit(&self, n: usize) {
        lock(&self.shared).forced_query_limit = n;
    }

    /// The next `n` calls of `method` (also inside `batch`) get 429 `OPERATION_TIME_LIMIT`.
    pub fn force_operation_time_limit(&self, method: &str, n: usize) {
        lock(&self.shared).forced_op_limit.insert(method.to_ascii_lowercase(), n);
    }

    /// The next `n` messages sent with `imconnector.send.messages` are not taken: the call answers 200 with that
    /// message's `SUCCESS: false` and `ERRORS: [{code, message}]` in `DATA.RESULT` (and `SUCCESS: false` overall).
    pub fn refuse_next_messages(&self, n: usize, code: &str, message: &str) {
        lock(&self.shared).refused_messages = (n, code.into(), message.into());
    }

    /// The next `n` calls of `method` take effect, but the connection is cut half-way through their answer (a
    /// process killed right after the call, a proxy timing out): the caller cannot tell whether it went through.
    pub fn lose_next_answers(&self, method: &str, n: usize) {
        lock(&self.shared).lost_answers.insert(method.to_string(), n);
    }

    /// While down, every REST call answers 500 `INTERNAL_SERVER_ERROR` (OAuth keeps working).
    pub fn set_down(&self, down: bool) {
        lock(&self.shared).down = down;
    }

    /// Changes the leaky bucket (drain per second, limit) and empties it.
    pub fn set_rate_limit(&self, drain_per_sec: f64, limit: f64) {
        let mut inner = lock(&self.shared);
        inner.bucket = Bucket { level: 0.0, at: Instant::now(), drain: drain_per_sec, limit };
    }

    /// Whether installation is finished (`app.info` → `INSTALLED`). Events are not delivered while it is not.
    pub fn set_installed(&self, installed: bool) {
        lock(&self.shared).installed = installed;
    }

    // ---- recorded state ----

    /// Every REST call so far, oldest first (sub-calls of `batch` included, flagged `via_batch`).
    pub fn calls(&self) -> Vec<RestCall> {
        lock(&self.shared).calls.clone()
    }

    /// The calls of one method (lowercase name).
    pub fn calls_of(&self, method: &str) -> Vec<RestCall> {
        lock(&self.shared).calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    pub fn clear_calls(&self) {
        lock(&self.shared).calls.clear();
    }

    pub fn lines(&self) -> Vec<OpenLine> {
        lock(&self.shared).lines.values().cloned().collect()
    }

    /// Creates an open line directly (as an admin in the Contact Center would); gives its id.
    pub fn create_line(&self, name: &str) -> u64 {
        rest::add_line(&mut lock(&self.shared), &serde_json::json!({"LINE_NAME": name}))
    }

    pub fn connectors(&self) -> Vec<Connector> {
        lock(&self.shared).connectors.values().cloned().collect()
    }

    /// The status of the connector enabled on `line` (`None` when none is).
    pub fn connector_status(&self, line: u64) -> Option<ConnectorStatus> {
        lock(&self.shared).status_on_line(line).cloned()
    }

    /// `DATA` of `imconnector.connector.data.set` for `line` (any connector).
    pub fn connector_data(&self, line: u64) -> Option<Value> {
        lock(&self.shared).data.iter().find(|((_, l), _)| *l == line).map(|(_, v)| v.clone())
    }

    pub fn open_chats(&self) -> Vec<OpenChat> {
        lock(&self.shared).chats.clone()
    }

    /// Client messages received through `imconnector.send.messages` / update / delete, oldest first.
    pub fn chat_messages(&self) -> Vec<ChatMessage> {
        lock(&self.shared).messages.clone()
    }

    /// How many client messages [`chat_messages`](Self::chat_messages) holds (cheap enough to poll).
    pub fn chat_message_count(&self) -> usize {
        lock(&self.shared).messages.len()
    }

    pub fn delivery_marks(&self) -> Vec<StatusMark> {
        lock(&self.shared).delivery.clone()
    }

    pub fn reading_marks(&self) -> Vec<StatusMark> {
        lock(&self.shared).reading.clone()
    }

    pub fn sms_senders(&self) -> Vec<SmsSender> {
        lock(&self.shared).senders.values().cloned().collect()
    }

    /// SMS handed to providers, with their last reported status.
    pub fn sms_messages(&self) -> Vec<SmsMessage> {
        lock(&self.shared).sms.clone()
    }

    /// Every accepted `messageservice.message.status.update`: (message_id, status), oldest first.
    pub fn sms_statuses(&self) -> Vec<(String, String)> {
        lock(&self.shared).sms_statuses.clone()
    }

    pub fn bound_events(&self) -> Vec<BoundEvent> {
        lock(&self.shared).bindings.clone()
    }

    /// Events posted so far (by posters and as effects of REST calls), oldest first.
    pub fn posted_events(&self) -> Vec<PostedEvent> {
        lock(&self.shared).posted.clone()
    }

    // ---- events (see `EventPoster` for forging) ----

    /// A poster with the portal's own application token and the admin as user.
    pub fn events(&self) -> EventPoster<'_> {
        EventPoster::new(self)
    }

    /// A poster whose events carry `token` as `auth[application_token]` (forgeries).
    pub fn with_application_token(&self, token: &str) -> EventPoster<'_> {
        EventPoster::new(self).application_token(token)
    }

    /// `ONAPPINSTALL` with the full `auth` (a fresh token pair incl. `refresh_token`) to `install_url`.
    pub async fn install(&self, install_url: &str) -> Result<u16, PostError> {
        self.events().install(install_url).await
    }

    /// `ONAPPUNINSTALL` (auth without tokens) to `handler_url`; the app counts as uninstalled and its event
    /// bindings are removed.
    pub async fn uninstall(&self, handler_url: &str) -> Result<u16, PostError> {
        self.events().uninstall(handler_url).await
    }

    /// An operator writes `text` (and `files`) in the open-line chat of `external_chat_id` on `line`:
    /// `ONIMCONNECTORMESSAGEADD` to every handler bound for it.
    pub async fn operator_reply(
        &self,
        line: u64,
        external_chat_id: &str,
        text: &str,
        files: Vec<FileSpec>,
    ) -> Result<OperatorReply, PostError> {
        self.events().operator_reply(line, external_chat_id, text, files).await
    }

    /// Deletes the open line and posts `ONIMCONNECTORLINEDELETE` (data = the line id) to bound handlers.
    pub async fn delete_line(&self, line: u64) -> Result<Vec<u16>, PostError> {
        self.events().delete_line(line).await
    }

    /// An automation robot sends an SMS through the provider `code`: gives the handler's status and the
    /// `message_id` to report statuses for.
    pub async fn robot_sms(
        &self,
        code: &str,
        message_to: &str,
        message_body: &str,
    ) -> Result<(u16, String), PostError> {
        self.events().robot_sms(code, message_to, message_body).await
    }

    /// Posts `payload` form-encoded to `url` as is.
    pub async fn post_event_raw(&self, url: &str, payload: &Value) -> Result<u16, PostError> {
        self.events().post_raw(url, payload).await
    }

    /// Posts the last event of a poster again, byte for byte (duplicate delivery).
    pub async fn repost_last(&self) -> Result<u16, PostError> {
        let last = lock(&self.shared).last_post.clone().ok_or(PostError::NothingPosted)?;
        events::send(&self.shared, &last.url, &last.event, last.payload, last.body, last.content_type).await
    }

    /// Waits until no REST-triggered event is in flight (they are posted in the background, like Bitrix's queue).
    pub async fn settle(&self) {
        for _ in 0..200 {
            if lock(&self.shared).in_flight == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for BitrixSandbox {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn random_digits(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
}
