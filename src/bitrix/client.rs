//! The Bitrix24 REST client (`reference/bitrix24.md` §1.3–§1.6): one [`Client`] for every portal, cheap to
//! clone. Per portal it keeps
//!
//! - a leaky-bucket [`Limiter`] (`rate_per_sec` sustained, `burst` at once, like Bitrix24's own counter); a
//!   call waits for a slot, or gives up at once with [`Error::Throttled`] when the slot is more than
//!   `max_queue_wait` away, so a crowded portal never ties up workers;
//! - a "down until" time: after a connection failure, a timeout or a gateway error the portal is failed fast
//!   with [`Error::Unavailable`] for `down_for`, so an unreachable portal delays only its own jobs;
//! - an async mutex so that one task of this process refreshes its tokens; across processes the store's
//!   refresh lock (`refresh_lock_until`) does the same, and the pair is replaced by compare-and-swap.
//!
//! Tokens are refreshed before a call when the access token expires within 60 s, and after a
//! `401 expired_token` (then the call is retried once). A refused refresh token (`invalid_grant`) means the app
//! must be reinstalled on the portal: [`Error::Reauthorize`], recorded in the portal's `last_error`.
//!
//! Tokens and the client secret are never logged nor put in an error text; method names and portal ids are
//! logged at debug.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::limiter::Limiter;
use super::oauth::{self, parse_error_envelope, transport_reason, OAuthError};
use crate::jobs::JobError;
use crate::store::portals::PortalAuth;
use crate::store::{now_ms, Store, StoreError};

/// Most commands Bitrix24 takes in one `batch` call.
pub const BATCH_MAX: usize = 50;
/// Refresh ahead when the access token expires within this.
const REFRESH_MARGIN_MS: i64 = 60_000;
/// Retry hint for `OPERATION_TIME_LIMIT` (a 10-minute sliding window of per-method execution time).
const OPERATION_LIMIT_RETRY: Duration = Duration::from_secs(60);
/// How often a caller looks whether another process finished a refresh.
const REFRESH_POLL: Duration = Duration::from_millis(100);

/// Settings of a [`Client`] (from the service configuration).
#[derive(Clone)]
pub struct ClientOptions {
    /// OAuth server, e.g. `https://oauth.bitrix.info`.
    pub oauth_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Sustained requests per second per portal.
    pub rate_per_sec: f64,
    /// Requests a quiet portal may get at once.
    pub burst: u32,
    /// Whole-request timeout (Bitrix24 cloud stops a request after 60 s).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest a call waits for a rate-limit slot; beyond it the call fails with [`Error::Throttled`].
    pub max_queue_wait: Duration,
    /// How long a portal that could not be reached is failed fast.
    pub down_for: Duration,
    /// Pause of a portal's limiter after `QUERY_LIMIT_EXCEEDED` (also the default retry hint).
    pub rate_limit_pause: Duration,
    /// How long a call waits for another process's refresh of the same portal.
    pub refresh_wait: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            oauth_url: "https://oauth.bitrix.info".into(),
            client_id: String::new(),
            client_secret: None,
            rate_per_sec: 2.0,
            burst: 50,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_queue_wait: Duration::from_secs(10),
            down_for: Duration::from_secs(5),
            rate_limit_pause: Duration::from_secs(2),
            refresh_wait: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("oauth_url", &self.oauth_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("rate_per_sec", &self.rate_per_sec)
            .field("burst", &self.burst)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_queue_wait", &self.max_queue_wait)
            .field("down_for", &self.down_for)
            .field("rate_limit_pause", &self.rate_limit_pause)
            .field("refresh_wait", &self.refresh_wait)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bitrix24 (or its OAuth server) answered with `{"error", "error_description"}`.
    #[error("Bitrix24 answered HTTP {http} {code}: {description}")]
    Api { http: u16, code: String, description: String },
    /// The portal said "too many requests" (`QUERY_LIMIT_EXCEEDED`, `OPERATION_TIME_LIMIT`, HTTP 429).
    #[error("Bitrix24 rate limit reached; retry in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    /// Our own pacing: the portal's next request slot is further away than `max_queue_wait`. Not sent.
    #[error("too many requests queued for the Bitrix24 portal; next slot in {} ms", retry_after.as_millis())]
    Throttled { retry_after: Duration },
    /// The portal (or the OAuth server) could not be reached or answered with a gateway error.
    #[error("Bitrix24 unavailable: {0}")]
    Unavailable(String),
    /// The tokens are gone for good: the app must be reinstalled on the portal.
    #[error("Bitrix24 authorization lost, reinstall the app on the portal: {0}")]
    Reauthorize(String),
    #[error("the Bitrix24 portal is inactive (the app was uninstalled)")]
    PortalInactive,
    #[error("no such Bitrix24 portal")]
    NotFound,
    /// A call we refuse to send (bad method name, params not an object, duplicate batch keys).
    #[error("invalid Bitrix24 request: {0}")]
    InvalidRequest(String),
    /// An answer that is neither a result nor Bitrix24's error envelope.
    #[error("unexpected answer from Bitrix24 (HTTP {http}): {message}")]
    Protocol { http: u16, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { http, code, .. } => {
                (*http >= 500 && code != "PORTAL_DELETED") || *http == 429 || is_expired_code(code)
            }
            Error::RateLimited { .. }
            | Error::Throttled { .. }
            | Error::Unavailable(_)
            | Error::Protocol { .. }
            | Error::Store(_) => true,
            Error::Reauthorize(_) | Error::PortalInactive | Error::NotFound | Error::InvalidRequest(_) => false,
        }
    }

    /// The Bitrix24 error code, when Bitrix24 gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::RateLimited { retry_after } => JobError::Retry { message, after: Some(retry_after) },
            Error::Throttled { retry_after } => JobError::Defer { message, after: retry_after },
            e if e.is_retryable() => JobError::Retry { message, after: None },
            _ => JobError::Permanent(message),
        }
    }
}

/// The error inside a successful (HTTP 200) answer: a top-level `error`, or `result.result == false` with an
/// `error` (the `imconnector.register` quirk). `(code, description)`.
pub fn result_error(answer: &Value) -> Option<(String, String)> {
    if let Some(e) = parse_error_envelope(answer) {
        return Some(e);
    }
    let inner = answer.get("result")?;
    if inner.get("result") == Some(&Value::Bool(false)) {
        let (code, description) =
            parse_error_envelope(inner).unwrap_or_else(|| ("ERROR".into(), "the method answered result=false".into()));
        return Some((code, description));
    }
    None
}

/// The merged answer of [`Client::batch`]: per command key, its result or its error
/// (`{"error", "error_description"}`), and the list methods' `total` / `next`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchAnswer {
    pub result: Map<String, Value>,
    pub errors: Map<String, Value>,
    pub total: Map<String, Value>,
    pub next: Map<String, Value>,
}

/// One batch command as Bitrix24 wants it: `method?a=1&b[c]=2` (params form-encoded with bracket keys).
pub fn encode_command(method: &str, params: &Value) -> String {
    let query = super::form::encode(params);
    if query.is_empty() {
        method.to_string()
    } else {
        format!("{method}?{query}")
    }
}

fn is_expired_code(code: &str) -> bool {
    code == "expired_token" || code == "invalid_token"
}

fn check_method(method: &str) -> Result<(), Error> {
    let ok = !method.is_empty()
        && method.len() <= 128
        && !method.starts_with('.')
        && method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!("{method:?} is not a REST method name")))
    }
}

fn endpoint_url(client_endpoint: &str, method: &str) -> String {
    format!("{}/{method}", client_endpoint.trim_end_matches('/'))
}

/// The portal's new REST base when a call to `url` (for `method`) was redirected to `location`.
fn redirected_endpoint(url: &str, location: &str, method: &str) -> Option<String> {
    let from = url::Url::parse(url).ok()?;
    let mut to = from.join(location).ok()?;
    if !matches!(to.scheme(), "https" | "http") || (from.scheme() == "https" && to.scheme() != "https") {
        return None;
    }
    to.set_query(None);
    to.set_fragment(None);
    let path = to.path().to_string();
    let base = path.strip_suffix(method).or_else(|| path.strip_suffix(&format!("{method}.json")))?;
    if !base.ends_with('/') {
        return None;
    }
    to.set_path(base);
    Some(to.to_string())
}

/// What a REST answer means for the portal's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    /// Too many requests: pause the portal's limiter.
    BackOff,
    /// The portal is down: fail it fast for a while.
    Down,
}

/// The first 200 characters of a body that is not what we expected, without `secret`.
fn excerpt(body: &[u8], secret: &str) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    if secret.is_empty() {
        text
    } else {
        text.replace(secret, "***")
    }
}

/// Turns a REST answer into the answer or an [`Error`] (pure; `token` is only used to keep it out of texts).
fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    pause: Duration,
    token: &str,
) -> (Result<Value, Error>, Effect) {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let envelope = json.as_ref().and_then(parse_error_envelope);
    if (200..300).contains(&status) {
        return match (json, envelope) {
            (Some(v), _) if v.get("result").is_some() => (Ok(v), Effect::None),
            (Some(_), Some((code, description))) => (Err(Error::Api { http: status, code, description }), Effect::None),
            (Some(v), None) => (Ok(v), Effect::None),
            (None, _) => {
                let message = format!("the body is not JSON: {}", excerpt(body, token));
                (Err(Error::Protocol { http: status, message }), Effect::None)
            }
        };
    }
    match envelope {
        Some((code, _)) if code == "QUERY_LIMIT_EXCEEDED" || code == "OVERLOAD_LIMIT" => {
            (Err(Error::RateLimited { retry_after: retry_after.unwrap_or(pause) }), Effect::BackOff)
        }
        // Per application and method (a sliding 10-minute budget): other methods of the portal still work.
        Some((code, _)) if code == "OPERATION_TIME_LIMIT" => {
            (Err(Error::RateLimited { retry_after: retry_after.unwrap_or(OPERATION_LIMIT_RETRY) }), Effect::None)
        }
        None if status == 429 => {
            (Err(Error::RateLimited { retry_after: retry_after.unwrap_or(pause) }), Effect::BackOff)
        }
        Some((code, description)) if matches!(status, 502..=504) => {
            (Err(Error::Unavailable(format!("HTTP {status} {code}: {description}"))), Effect::Down)
        }
        Some((code, description)) => (Err(Error::Api { http: status, code, description }), Effect::None),
        None if status >= 500 => {
            let message = format!("HTTP {status} without a Bitrix24 error: {}", excerpt(body, token));
            (Err(Error::Unavailable(message)), Effect::Down)
        }
        None => {
            let description = excerpt(body, token);
            (Err(Error::Api { http: status, code: format!("HTTP_{status}"), description }), Effect::None)
        }
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn needs_refresh(auth: &PortalAuth, now: i64) -> bool {
    auth.access_token.is_none() || auth.expires_at_ms.is_some_and(|at| at - now < REFRESH_MARGIN_MS)
}

/// True when `current` carries a usable access token other than the one of `stale`: someone refreshed.
fn replaced(stale: &PortalAuth, current: &PortalAuth) -> bool {
    current.access_token.is_some() && current.access_token != stale.access_token && !needs_refresh(current, now_ms())
}

#[derive(Debug, Default)]
struct Health {
    down_until: Option<Instant>,
    down_reason: String,
    /// Digest of a refresh token the OAuth server refused: not offered again.
    dead_refresh: Option<[u8; 32]>,
}

#[derive(Debug)]
struct PortalState {
    limiter: Limiter,
    refresh: tokio::sync::Mutex<()>,
    health: Mutex<Health>,
}

impl PortalState {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_down(&self, portal_id: i64) -> Result<(), Error> {
        let h = self.health();
        match h.down_until {
            Some(until) if until > Instant::now() => Err(Error::Unavailable(format!(
                "portal {portal_id} did not answer ({}); held back for {} ms more",
                h.down_reason,
                (until - Instant::now()).as_millis()
            ))),
            _ => Ok(()),
        }
    }

    fn mark_down(&self, portal_id: i64, down_for: Duration, reason: &str) {
        tracing::warn!(portal_id, reason, "Bitrix24 portal unreachable; failing its calls fast for {down_for:?}");
        let mut h = self.health();
        h.down_until = Some(Instant::now() + down_for);
        h.down_reason = reason.to_string();
    }
}

struct Inner {
    http: reqwest::Client,
    store: Store,
    opts: ClientOptions,
    portals: Mutex<HashMap<i64, Arc<PortalState>>>,
}

/// The Bitrix24 REST client (see the module documentation).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("opts", &self.inner.opts).finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(store: Store, opts: ClientOptions) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(concat!("wabridge/", env!("CARGO_PKG_VERSION")))
            // A moved portal answers with a redirect; a POST must be re-sent, not turned into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot build the Bitrix24 HTTP client; using defaults");
                reqwest::Client::new()
            });
        Client { inner: Arc::new(Inner { http, store, opts, portals: Mutex::new(HashMap::new()) }) }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    fn portal(&self, portal_id: i64) -> Arc<PortalState> {
        let mut map = self.inner.portals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(portal_id)
            .or_insert_with(|| {
                let o = &self.inner.opts;
                Arc::new(PortalState {
                    limiter: Limiter::new(o.rate_per_sec, o.burst, Instant::now()),
                    refresh: tokio::sync::Mutex::new(()),
                    health: Mutex::new(Health::default()),
                })
            })
            .clone()
    }

    /// How long a request to the portal would wait now for its limiter (nothing is reserved).
    pub fn wait_before(&self, portal_id: i64) -> Duration {
        self.portal(portal_id).limiter.wait(Instant::now())
    }

    async fn load(&self, portal_id: i64) -> Result<PortalAuth, Error> {
        match self.inner.store.portal_auth(portal_id).await? {
            None => Err(Error::NotFound),
            Some(a) if !a.active => Err(Error::PortalInactive),
            Some(a) => Ok(a),
        }
    }

    /// Calls `method` on the portal with `params` (a JSON object, or null) and returns Bitrix24's whole
    /// answer (`result`, `time`, and `total`/`next` of list methods). Use [`result_error`] for methods that
    /// report failures inside an HTTP 200.
    pub async fn call(&self, portal_id: i64, method: &str, params: &Value) -> Result<Value, Error> {
        check_method(method)?;
        let empty = Map::new();
        let body = match params {
            Value::Object(m) => Params::Json(m),
            Value::Null => Params::Json(&empty),
            _ => return Err(Error::InvalidRequest(format!("the params of {method} are not a JSON object"))),
        };
        self.send_call(portal_id, method, &body).await
    }

    async fn send_call(&self, portal_id: i64, method: &str, body: &Params<'_>) -> Result<Value, Error> {
        let state = self.portal(portal_id);
        state.check_down(portal_id)?;
        let mut auth = self.load(portal_id).await?;
        if needs_refresh(&auth, now_ms()) {
            tracing::debug!(portal_id, method, "Bitrix24 access token expires soon; refreshing first");
            auth = self.refresh(&state, &auth).await?;
        }
        tracing::debug!(portal_id, method, "Bitrix24 call");
        match self.post(&state, &auth, method, body).await {
            Err(Error::Api { http: 401, code, .. }) if is_expired_code(&code) => {
                tracing::debug!(portal_id, method, "Bitrix24 access token expired; refreshing and retrying");
                let auth = self.refresh(&state, &auth).await?;
                self.post(&state, &auth, method, body).await
            }
            other => other,
        }
    }

    /// Runs `cmds` (`(key, method, params)`) through `batch`, at most [`BATCH_MAX`] per request, and merges the
    /// answers. With `halt`, Bitrix24 stops a request at its first failing command, and no further request is
    /// made. `$result[key]` references work only within one request of 50.
    pub async fn batch(
        &self,
        portal_id: i64,
        cmds: &[(String, String, Value)],
        halt: bool,
    ) -> Result<BatchAnswer, Error> {
        let mut seen = HashSet::new();
        for (key, method, params) in cmds {
            check_method(method)?;
            if method.eq_ignore_ascii_case("batch") {
                return Err(Error::InvalidRequest("a batch cannot contain a batch".into()));
            }
            if !(params.is_object() || params.is_null()) {
                return Err(Error::InvalidRequest(format!("the params of {key} ({method}) are not a JSON object")));
            }
            if key.is_empty() || !seen.insert(key.as_str()) {
                return Err(Error::InvalidRequest(format!("batch key {key:?} is empty or used twice")));
            }
        }
        let mut out = BatchAnswer::default();
        for chunk in cmds.chunks(BATCH_MAX) {
            // In the caller's order: Bitrix24 runs the commands in the order of the `cmd` object.
            let cmd: Vec<(&str, String)> =
                chunk.iter().map(|(key, method, params)| (key.as_str(), encode_command(method, params))).collect();
            let answer = self.send_call(portal_id, "batch", &Params::Batch { halt, cmd: &cmd }).await?;
            let result = answer.get("result");
            let part = |name: &str| result.and_then(|r| r.get(name));
            merge_keyed(&mut out.result, part("result"));
            merge_keyed(&mut out.errors, part("result_error"));
            merge_keyed(&mut out.total, part("result_total"));
            merge_keyed(&mut out.next, part("result_next"));
            if halt && !out.errors.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// Refreshes the portal's tokens now (for idle portals, well inside the refresh token's lifetime), unless
    /// another worker is doing it, in which case its pair is used.
    pub async fn refresh_tokens(&self, portal_id: i64) -> Result<(), Error> {
        let state = self.portal(portal_id);
        let auth = self.load(portal_id).await?;
        self.refresh(&state, &auth).await.map(|_| ())
    }

    /// Replaces `stale` (the pair a caller saw) with a fresh one, once per portal: this process's tasks queue
    /// on the portal's mutex; other processes are kept out by the store's refresh lock, and whoever waits
    /// re-reads the pair the refresher stored.
    async fn refresh(&self, state: &PortalState, stale: &PortalAuth) -> Result<PortalAuth, Error> {
        let id = stale.id;
        let store = &self.inner.store;
        let _one_task = state.refresh.lock().await;
        let current = self.load(id).await?;
        if replaced(stale, &current) {
            return Ok(current);
        }
        let deadline = Instant::now() + self.inner.opts.refresh_wait;
        let hold = millis(self.inner.opts.request_timeout + Duration::from_secs(5));
        loop {
            if store.try_lock_refresh(id, now_ms().saturating_add(hold)).await? {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "portal {id}: another worker has been refreshing its tokens for over {} s",
                    self.inner.opts.refresh_wait.as_secs()
                )));
            }
            tokio::time::sleep(REFRESH_POLL).await;
            let current = self.load(id).await?;
            if replaced(stale, &current) {
                tracing::debug!(portal_id = id, "using the Bitrix24 tokens another worker refreshed");
                return Ok(current);
            }
        }
        // We hold the lock. A pair stored between our read and the lock counts as well. A successful store
        // clears the lock itself (and after a lost compare-and-swap the lock may be someone else's by now).
        let current = match self.load(id).await {
            Ok(current) => current,
            Err(e) => {
                self.release_refresh_lock(id).await;
                return Err(e);
            }
        };
        if replaced(stale, &current) {
            self.release_refresh_lock(id).await;
            return Ok(current);
        }
        let fresh = self.spend_refresh_token(state, &current).await;
        if fresh.is_err() {
            self.release_refresh_lock(id).await;
        }
        fresh
    }

    async fn release_refresh_lock(&self, portal_id: i64) {
        if let Err(e) = self.inner.store.release_refresh_lock(portal_id).await {
            tracing::warn!(portal_id, error = %e, "cannot release the Bitrix24 refresh lock");
        }
    }

    /// Asks the OAuth server for a new pair and stores it (with the refresh lock held).
    async fn spend_refresh_token(&self, state: &PortalState, current: &PortalAuth) -> Result<PortalAuth, Error> {
        let id = current.id;
        let store = &self.inner.store;
        let opts = &self.inner.opts;
        let Some(refresh_token) = current.refresh_token.as_deref() else {
            let msg = "no refresh token is stored for the portal";
            store.record_portal_error(id, Some(msg)).await?;
            return Err(Error::Reauthorize(format!("portal {id}: {msg}")));
        };
        let digest = sha256(refresh_token);
        if state.health().dead_refresh == Some(digest) {
            return Err(Error::Reauthorize(format!("portal {id}: its refresh token was already refused")));
        }
        tracing::debug!(portal_id = id, "refreshing Bitrix24 tokens");
        let refreshed = oauth::refresh(
            &self.inner.http,
            &opts.oauth_url,
            &opts.client_id,
            opts.client_secret.as_deref(),
            refresh_token,
            opts.request_timeout,
        )
        .await;
        match refreshed {
            Ok(new) => {
                if store.store_refreshed(id, refresh_token, &new).await? {
                    tracing::info!(portal_id = id, "Bitrix24 tokens refreshed");
                } else {
                    tracing::warn!(portal_id = id, "another worker replaced the Bitrix24 tokens during our refresh");
                }
                self.load(id).await
            }
            Err(e) if e.needs_reauthorization() => {
                state.health().dead_refresh = Some(digest);
                let msg = format!("{e}; the app must be reinstalled on the portal");
                tracing::warn!(portal_id = id, "Bitrix24 refused the refresh token; the portal must reinstall the app");
                store.record_portal_error(id, Some(&msg)).await?;
                Err(Error::Reauthorize(format!("portal {id}: {e}")))
            }
            Err(OAuthError::Refused { http, code, description }) => {
                let msg = format!("token refresh refused: {code}: {description}");
                tracing::warn!(portal_id = id, code = code.as_str(), "Bitrix24 OAuth server refused a refresh");
                store.record_portal_error(id, Some(&msg)).await?;
                Err(Error::Api { http, code, description: format!("token refresh: {description}") })
            }
            Err(OAuthError::Unavailable(reason)) => {
                Err(Error::Unavailable(format!("portal {id}: token refresh failed, the OAuth server: {reason}")))
            }
        }
    }

    /// One POST of `method` with the portal's access token (after a rate-limit slot).
    async fn post(
        &self,
        state: &PortalState,
        auth: &PortalAuth,
        method: &str,
        body: &Params<'_>,
    ) -> Result<Value, Error> {
        let id = auth.id;
        let opts = &self.inner.opts;
        let Some(token) = auth.access_token.as_deref() else {
            return Err(Error::Reauthorize(format!("portal {id}: no access token is stored")));
        };
        if let Err(retry_after) = state.limiter.acquire(opts.max_queue_wait).await {
            return Err(Error::Throttled { retry_after });
        }
        // It may have gone down while we waited for the slot.
        state.check_down(id)?;
        let payload = body.to_json(token).map_err(|e| Error::InvalidRequest(format!("{method}: {e}")))?;
        let mut url = endpoint_url(&auth.client_endpoint, method);
        let mut redirected = false;
        loop {
            let sent = self
                .inner
                .http
                .post(&url)
                .header(reqwest::header::ACCEPT, "application/json")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload.clone())
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    let reason = transport_reason(e);
                    state.mark_down(id, opts.down_for, &reason);
                    return Err(Error::Unavailable(format!("portal {id}: {method}: {reason}")));
                }
            };
            let status = resp.status().as_u16();
            let header = |name: reqwest::header::HeaderName| {
                resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
            };
            let location = header(reqwest::header::LOCATION);
            let retry_after = header(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let moved = location.as_deref().and_then(|l| redirected_endpoint(&url, l, method));
                match moved {
                    Some(endpoint) if !redirected => {
                        tracing::info!(portal_id = id, "Bitrix24 portal moved; following to its new address");
                        self.inner.store.set_client_endpoint(id, &endpoint).await?;
                        url = endpoint_url(&endpoint, method);
                        redirected = true;
                        continue;
                    }
                    _ => {
                        let message = "redirected to an address that is not the portal's REST endpoint".to_string();
                        return Err(Error::Protocol { http: status, message });
                    }
                }
            }
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    let reason = transport_reason(e);
                    state.mark_down(id, opts.down_for, &reason);
                    return Err(Error::Unavailable(format!("portal {id}: {method}: {reason}")));
                }
            };
            let (result, effect) = classify(status, retry_after, &bytes, opts.rate_limit_pause, token);
            match effect {
                Effect::None => {}
                Effect::BackOff => {
                    tracing::debug!(portal_id = id, method, "Bitrix24 rate limit; pausing the portal's requests");
                    state.limiter.back_off(Instant::now(), opts.rate_limit_pause);
                }
                Effect::Down => state.mark_down(id, opts.down_for, &format!("HTTP {status}")),
            }
            if let Err(e) = &result {
                tracing::debug!(portal_id = id, method, error = %e, "Bitrix24 call failed");
            }
            return result.map_err(|e| match e {
                Error::Unavailable(m) => Error::Unavailable(format!("portal {id}: {method}: {m}")),
                other => other,
            });
        }
    }
}

/// The params of one REST call; [`Params::to_json`] adds `auth`.
enum Params<'a> {
    Json(&'a Map<String, Value>),
    /// `cmd` keeps its order (a `serde_json::Map` would sort the keys).
    Batch {
        halt: bool,
        cmd: &'a [(&'a str, String)],
    },
}

impl Params<'_> {
    fn to_json(&self, token: &str) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Params::Json(map) => {
                let mut payload = (*map).clone();
                payload.insert("auth".into(), Value::String(token.to_string()));
                serde_json::to_vec(&payload)
            }
            Params::Batch { halt, cmd } => {
                serde_json::to_vec(&BatchBody { halt: i32::from(*halt), cmd: Ordered(cmd), auth: token })
            }
        }
    }
}

#[derive(serde::Serialize)]
struct BatchBody<'a> {
    halt: i32,
    cmd: Ordered<'a>,
    auth: &'a str,
}

/// A JSON object whose keys keep the slice's order.
struct Ordered<'a>(&'a [(&'a str, String)]);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Merges a batch part (`{key: value}`, or a list when the keys were `0..n`, or `[]` when empty) into `into`.
fn merge_keyed(into: &mut Map<String, Value>, part: Option<&Value>) {
    match part {
        Some(Value::Object(m)) => into.extend(m.iter().map(|(k, v)| (k.clone(), v.clone()))),
        Some(Value::Array(items)) => into.extend(items.iter().enumerate().map(|(i, v)| (i.to_string(), v.clone()))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Path, Query, State};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::json;

    use super::*;
    use crate::store::portals::tests::TestStore;

    // ---- pure parts ----

    #[test]
    fn batch_commands_are_encoded_as_query_strings_with_bracket_keys() {
        let params = json!({"CONNECTOR": "wa", "LINE": 7, "MESSAGES": [{"message": {"text": "Olá & bye"}}]});
        let cmd = encode_command("imconnector.send.messages", &params);
        let (method, query) = cmd.split_once('?').expect("query");
        assert_eq!(method, "imconnector.send.messages");
        assert!(query.contains("MESSAGES%5B0%5D%5Bmessage%5D%5Btext%5D=Ol%C3%A1+%26+bye"), "{query}");
        let back = crate::bitrix::form::parse(None, query.as_bytes()).expect("parse");
        assert_eq!(back["MESSAGES"][0]["message"]["text"], "Olá & bye");
        assert_eq!(back["LINE"], "7");
        assert_eq!(encode_command("app.info", &Value::Null), "app.info");
        assert_eq!(encode_command("app.info", &json!({})), "app.info");
    }

    #[test]
    fn answers_are_classified() {
        let pause = Duration::from_secs(2);
        let c = |status, body: &str| classify(status, None, body.as_bytes(), pause, "SECRET");

        let (ok, e) = c(200, r#"{"result": {"ID": 1}, "time": {"start": 1}}"#);
        assert_eq!(ok.expect("ok")["result"]["ID"], 1);
        assert_eq!(e, Effect::None);

        let (r, e) =
            c(401, r#"{"error": "expired_token", "error_description": "The access token provided has expired."}"#);
        assert!(matches!(r, Err(Error::Api { http: 401, ref code, .. }) if code == "expired_token"));
        assert_eq!(e, Effect::None);

        let (r, e) = c(503, r#"{"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}"#);
        assert!(matches!(r, Err(Error::RateLimited { retry_after }) if retry_after == pause));
        assert_eq!(e, Effect::BackOff);
        let (r, _) = classify(503, Some(Duration::from_secs(7)), br#"{"error":"QUERY_LIMIT_EXCEEDED"}"#, pause, "");
        assert!(matches!(r, Err(Error::RateLimited { retry_after }) if retry_after == Duration::from_secs(7)));

        let (r, e) = c(429, r#"{"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"}"#);
        assert!(matches!(r, Err(Error::RateLimited { retry_after }) if retry_after == OPERATION_LIMIT_RETRY));
        assert_eq!(e, Effect::None, "a per-method budget does not pause the portal");

        let (r, e) = c(502, "<html>Bad Gateway SECRET</html>");
        let Err(Error::Unavailable(text)) = r else { panic!("{r:?}") };
        assert!(!text.contains("SECRET") && text.contains("***"), "{text}");
        assert_eq!(e, Effect::Down);

        let (r, e) = c(500, r#"{"error": "INTERNAL_SERVER_ERROR", "error_description": "x"}"#);
        let err = r.expect_err("error");
        assert!(err.is_retryable());
        assert_eq!(e, Effect::None);

        let (r, _) = c(500, r#"{"error": "PORTAL_DELETED", "error_description": "Portal was deleted"}"#);
        assert!(!r.expect_err("error").is_retryable());

        let (r, _) = c(404, "not json");
        assert!(matches!(r, Err(Error::Api { http: 404, ref code, .. }) if code == "HTTP_404"));

        let (r, _) = c(200, "<html>");
        assert!(matches!(r, Err(Error::Protocol { http: 200, .. })));

        let (r, _) = c(200, r#"{"error": "ERROR_CORE", "error_description": "x"}"#);
        assert!(matches!(r, Err(Error::Api { http: 200, .. })));
    }

    #[test]
    fn result_errors_inside_http_200_are_found() {
        assert_eq!(result_error(&json!({"result": {"result": true}})), None);
        assert_eq!(result_error(&json!({"result": [1, 2]})), None);
        assert_eq!(
            result_error(&json!({"result": {"result": false, "error": "NO_PLACEMENT_HANDLER"}})),
            Some(("NO_PLACEMENT_HANDLER".into(), String::new()))
        );
        assert_eq!(result_error(&json!({"result": {"result": false}})).map(|e| e.0), Some("ERROR".into()));
        assert_eq!(result_error(&json!({"error": "X", "error_description": "why"})), Some(("X".into(), "why".into())));
    }

    #[test]
    fn errors_map_to_job_errors() {
        let j = |e: Error| JobError::from(e);
        let after = Duration::from_secs(3);
        assert!(
            matches!(j(Error::RateLimited { retry_after: after }), JobError::Retry { after: Some(a), .. } if a == after)
        );
        assert!(matches!(j(Error::Throttled { retry_after: after }), JobError::Defer { after: a, .. } if a == after));
        assert!(matches!(j(Error::Unavailable("down".into())), JobError::Retry { after: None, .. }));
        let api = |http: u16, code: &str| Error::Api { http, code: code.into(), description: "d".into() };
        assert!(matches!(j(api(503, "OVERLOAD")), JobError::Retry { .. }));
        assert!(matches!(j(api(400, "ERROR_ARGUMENT")), JobError::Permanent(_)));
        assert!(matches!(j(api(403, "WRONG_AUTH_TYPE")), JobError::Permanent(_)));
        assert!(matches!(j(Error::Reauthorize("x".into())), JobError::Permanent(_)));
        assert!(matches!(j(Error::PortalInactive), JobError::Permanent(_)));
        assert!(matches!(j(Error::NotFound), JobError::Permanent(_)));
        let text = j(api(400, "ERROR_ARGUMENT")).to_string();
        assert_eq!(text, "Bitrix24 answered HTTP 400 ERROR_ARGUMENT: d");
    }

    #[test]
    fn method_names_and_redirects_are_checked() {
        assert!(check_method("imconnector.send.messages").is_ok());
        for bad in ["", "../x", "a/b", "a?b", ".x", "a b"] {
            assert!(check_method(bad).is_err(), "{bad}");
        }
        assert_eq!(endpoint_url("https://x.bitrix24.com/rest/", "app.info"), "https://x.bitrix24.com/rest/app.info");
        assert_eq!(endpoint_url("https://x.bitrix24.com/rest", "app.info"), "https://x.bitrix24.com/rest/app.info");
        let from = "https://old.bitrix24.com/rest/app.info";
        assert_eq!(
            redirected_endpoint(from, "https://new.bitrix24.com/rest/app.info", "app.info").as_deref(),
            Some("https://new.bitrix24.com/rest/")
        );
        assert_eq!(
            redirected_endpoint(from, "https://new.bitrix24.com/rest/app.info.json?x=1", "app.info").as_deref(),
            Some("https://new.bitrix24.com/rest/")
        );
        assert_eq!(redirected_endpoint(from, "http://new.bitrix24.com/rest/app.info", "app.info"), None);
        assert_eq!(redirected_endpoint(from, "https://new.bitrix24.com/login", "app.info"), None);
    }

    #[test]
    fn options_debug_masks_the_secret() {
        let o = ClientOptions { client_secret: Some("TOPSECRET".into()), ..ClientOptions::default() };
        assert!(!format!("{o:?}").contains("TOPSECRET"));
    }

    // ---- a fake portal and OAuth server ----

    #[derive(Default)]
    struct Fake {
        endpoint: String,
        valid_access: HashSet<String>,
        expired_access: HashSet<String>,
        valid_refresh: HashSet<String>,
        oauth_hits: usize,
        issued: usize,
        methods: Vec<String>,
        batch_sizes: Vec<usize>,
        oauth_delay: Duration,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Fake> {
        s.lock().unwrap()
    }

    async fn oauth_token(
        State(s): State<Shared>,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, Json<Value>) {
        let delay = {
            let mut f = lock(&s);
            f.oauth_hits += 1;
            f.oauth_delay
        };
        tokio::time::sleep(delay).await;
        let param = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
        if param("grant_type") != "refresh_token" || param("client_id") != "app" || param("client_secret") != "shh" {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client", "error_description": "x"})));
        }
        let mut f = lock(&s);
        if !f.valid_refresh.remove(param("refresh_token")) {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant", "error_description": "Invalid refresh token"})),
            );
        }
        f.issued += 1;
        let (access, refresh) = (format!("acc-{}", f.issued), format!("ref-{}", f.issued));
        f.valid_access.insert(access.clone());
        f.valid_refresh.insert(refresh.clone());
        let endpoint = f.endpoint.clone();
        (
            StatusCode::OK,
            Json(json!({"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                        "expires": now_ms() / 1000 + 3600, "client_endpoint": endpoint,
                        "domain": "oauth.bitrix.info", "member_id": "m", "scope": "imconnector,imopenlines"})),
        )
    }

    /// The `cmd` object of a batch, in the order it was sent.
    struct OrderedCmd(Vec<(String, String)>);

    impl<'de> serde::Deserialize<'de> for OrderedCmd {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = OrderedCmd;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map of commands")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<OrderedCmd, A::Error> {
                    let mut v = Vec::new();
                    while let Some(entry) = m.next_entry::<String, String>()? {
                        v.push(entry);
                    }
                    Ok(OrderedCmd(v))
                }
            }
            d.deserialize_map(V)
        }
    }

    #[derive(serde::Deserialize)]
    struct BatchRequest {
        halt: i32,
        cmd: OrderedCmd,
    }

    async fn rest(
        State(s): State<Shared>,
        Path(method): Path<String>,
        headers: axum::http::HeaderMap,
        raw: axum::body::Bytes,
    ) -> (StatusCode, Json<Value>) {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if header("content-type") != "application/json"
            || header("accept") != "application/json"
            || !header("user-agent").starts_with("wabridge/")
        {
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(json!({"error": "BAD_HEADERS"})));
        }
        let body: Value = serde_json::from_slice(&raw).unwrap();
        let mut f = lock(&s);
        let token = body["auth"].as_str().unwrap_or_default().to_string();
        if f.expired_access.contains(&token) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "expired_token", "error_description": "The access token provided has expired."})),
            );
        }
        if !f.valid_access.contains(&token) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "NO_AUTH_FOUND", "error_description": "Wrong auth"})),
            );
        }
        f.methods.push(method.clone());
        let time = json!({"start": 1.0, "finish": 1.1, "duration": 0.1});
        match method.as_str() {
            "echo" => {
                let mut params = body.clone();
                if let Some(m) = params.as_object_mut() {
                    m.remove("auth");
                }
                (StatusCode::OK, Json(json!({"result": params, "time": time})))
            }
            "limit.me" => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})),
            ),
            "batch" => {
                let req: BatchRequest = serde_json::from_slice(&raw).unwrap();
                let (cmd, halt) = (req.cmd.0, req.halt == 1);
                f.batch_sizes.push(cmd.len());
                let (mut result, mut errors) = (Map::new(), Map::new());
                for (key, c) in cmd {
                    let (m, q) = c.split_once('?').unwrap_or((c.as_str(), ""));
                    if m == "fail" {
                        errors.insert(key, json!({"error": "ERROR_CORE", "error_description": "failed"}));
                        if halt {
                            break;
                        }
                    } else {
                        let params = crate::bitrix::form::parse(None, q.as_bytes()).unwrap();
                        result.insert(key, json!({"method": m, "params": params}));
                    }
                }
                let as_value = |m: Map<String, Value>| if m.is_empty() { json!([]) } else { Value::Object(m) };
                (
                    StatusCode::OK,
                    Json(json!({"result": {"result": as_value(result), "result_error": as_value(errors),
                                            "result_total": [], "result_next": [], "result_time": []},
                                "time": time})),
                )
            }
            _ => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})),
            ),
        }
    }

    /// Starts the fake portal + OAuth server on 127.0.0.1:0; its base URL.
    async fn start_fake(s: Shared) -> String {
        let app = Router::new()
            .route("/oauth/token/", get(oauth_token))
            .route("/rest/{*method}", post(rest))
            .with_state(s.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        lock(&s).endpoint = format!("{base}/rest/");
        base
    }

    fn options(base: &str) -> ClientOptions {
        ClientOptions {
            oauth_url: base.into(),
            client_id: "app".into(),
            client_secret: Some("shh".into()),
            rate_per_sec: 1000.0,
            burst: 1000,
            request_timeout: Duration::from_millis(400),
            connect_timeout: Duration::from_millis(400),
            max_queue_wait: Duration::from_secs(5),
            down_for: Duration::from_secs(2),
            rate_limit_pause: Duration::from_millis(300),
            refresh_wait: Duration::from_secs(5),
        }
    }

    struct Setup {
        t: TestStore,
        fake: Shared,
        base: String,
    }

    async fn setup(t: TestStore) -> Setup {
        let fake = Shared::default();
        let base = start_fake(fake.clone()).await;
        Setup { t, fake, base }
    }

    impl Setup {
        /// A portal with access token `access` (valid, or expired when `expired`) and a valid `refresh`.
        async fn portal(&self, member: &str, access: &str, expired: bool, refresh: &str, expires_in_ms: i64) -> i64 {
            {
                let mut f = lock(&self.fake);
                if expired {
                    f.expired_access.insert(access.into());
                } else {
                    f.valid_access.insert(access.into());
                }
                f.valid_refresh.insert(refresh.into());
            }
            let endpoint = format!("{}/rest/", self.base);
            self.t.portal(member, &endpoint, access, refresh, now_ms() + expires_in_ms).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_returns_the_whole_answer() {
        let s = setup(TestStore::sqlite().await).await;
        let id = s.portal("m1", "acc-0", false, "ref-0", 3_600_000).await;
        let client = Client::new(s.t.store.clone(), options(&s.base));
        let answer = client.call(id, "echo", &json!({"FIELDS": {"NAME": "x"}})).await.expect("call");
        assert_eq!(answer["result"], json!({"FIELDS": {"NAME": "x"}}));
        assert!(answer["time"].is_object());
        let e = client.call(id, "no.such", &Value::Null).await.expect_err("404");
        assert_eq!(e.code(), Some("ERROR_METHOD_NOT_FOUND"));
        assert!(matches!(client.call(id + 99, "echo", &Value::Null).await, Err(Error::NotFound)));
        assert!(matches!(client.call(id, "echo", &json!([1])).await, Err(Error::InvalidRequest(_))));
        assert_eq!(lock(&s.fake).oauth_hits, 0);
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_token_is_refreshed_and_the_call_retried() {
        let s = setup(TestStore::sqlite().await).await;
        // The store thinks the token is good for an hour; the portal says it expired.
        let id = s.portal("m1", "acc-old", true, "ref-0", 3_600_000).await;
        let client = Client::new(s.t.store.clone(), options(&s.base));
        let answer = client.call(id, "echo", &json!({"a": 1})).await.expect("call");
        assert_eq!(answer["result"]["a"], 1);
        let auth = s.t.store.portal_auth(id).await.unwrap().expect("portal");
        assert_eq!(auth.access_token.as_deref(), Some("acc-1"));
        assert_eq!(auth.refresh_token.as_deref(), Some("ref-1"));
        assert!(auth.expires_at_ms.expect("expiry") > now_ms() + 3_000_000);
        assert_eq!(lock(&s.fake).oauth_hits, 1);
        assert_eq!(lock(&s.fake).methods, vec!["echo".to_string()]);
        // Next calls use the new pair without refreshing.
        client.call(id, "echo", &json!({})).await.expect("call");
        assert_eq!(lock(&s.fake).oauth_hits, 1);
        s.t.drop_db().await;
    }

    async fn expiring_token_is_refreshed_once(t: TestStore) {
        let s = setup(t).await;
        lock(&s.fake).oauth_delay = Duration::from_millis(300);
        let id = s.portal("m1", "acc-old", false, "ref-0", 10_000).await;
        // Two clients on one database stand for two processes; each runs three calls at once.
        let clients =
            [Client::new(s.t.store.clone(), options(&s.base)), Client::new(s.t.store.clone(), options(&s.base))];
        let mut tasks = Vec::new();
        for i in 0..6 {
            let c = clients[i % 2].clone();
            tasks.push(tokio::spawn(async move { c.call(id, "echo", &json!({"i": i})).await }));
        }
        for task in tasks {
            task.await.unwrap().expect("call");
        }
        {
            let f = lock(&s.fake);
            assert_eq!(f.oauth_hits, 1, "the refresh token was spent exactly once");
            assert_eq!(f.methods.len(), 6);
        }
        let auth = s.t.store.portal_auth(id).await.unwrap().expect("portal");
        assert_eq!(auth.refresh_token.as_deref(), Some("ref-1"));
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn expiring_token_is_refreshed_once_sqlite() {
        expiring_token_is_refreshed_once(TestStore::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn expiring_token_is_refreshed_once_postgres() {
        if let Some(t) = TestStore::postgres().await {
            expiring_token_is_refreshed_once(t).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_refresh_token_means_reinstall() {
        let s = setup(TestStore::sqlite().await).await;
        let id = s.portal("m1", "acc-old", true, "ref-0", 3_600_000).await;
        lock(&s.fake).valid_refresh.clear();
        let client = Client::new(s.t.store.clone(), options(&s.base));
        let e = client.call(id, "echo", &json!({})).await.expect_err("reauthorize");
        assert!(matches!(e, Error::Reauthorize(_)), "{e:?}");
        assert!(!e.is_retryable());
        assert!(!e.to_string().contains("ref-0") && !e.to_string().contains("acc-old"), "{e}");
        let last = s.t.store.portal_last_error(id).await.unwrap().expect("last_error");
        assert!(last.contains("invalid_grant"), "{last}");
        // The dead token is not offered again; the lock was released.
        assert!(matches!(client.call(id, "echo", &json!({})).await, Err(Error::Reauthorize(_))));
        assert_eq!(lock(&s.fake).oauth_hits, 1);
        assert!(s.t.store.try_lock_refresh(id, now_ms() + 1000).await.unwrap());
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn query_limit_exceeded_is_rate_limited_and_pauses_the_portal() {
        let s = setup(TestStore::sqlite().await).await;
        let id = s.portal("m1", "acc-0", false, "ref-0", 3_600_000).await;
        let client = Client::new(s.t.store.clone(), options(&s.base));
        let e = client.call(id, "limit.me", &json!({})).await.expect_err("limited");
        assert!(matches!(e, Error::RateLimited { retry_after } if retry_after == Duration::from_millis(300)), "{e:?}");
        assert!(matches!(JobError::from(e), JobError::Retry { after: Some(_), .. }));
        let t0 = std::time::Instant::now();
        client.call(id, "echo", &json!({})).await.expect("call after the pause");
        assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_own_pacing_defers_instead_of_waiting_long() {
        let s = setup(TestStore::sqlite().await).await;
        let id = s.portal("m1", "acc-0", false, "ref-0", 3_600_000).await;
        let opts = ClientOptions { rate_per_sec: 1.0, burst: 1, max_queue_wait: Duration::ZERO, ..options(&s.base) };
        let client = Client::new(s.t.store.clone(), opts);
        client.call(id, "echo", &json!({})).await.expect("first");
        let e = client.call(id, "echo", &json!({})).await.expect_err("throttled");
        assert!(matches!(e, Error::Throttled { .. }), "{e:?}");
        assert_eq!(lock(&s.fake).methods.len(), 1);
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_down_portal_fails_fast_and_others_are_unaffected() {
        let s = setup(TestStore::sqlite().await).await;
        let good = s.portal("good", "acc-0", false, "ref-0", 3_600_000).await;
        // A portal that accepts connections and never answers.
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let hang = Router::new().route(
            "/rest/{*method}",
            post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hang_endpoint = format!("http://{}/rest/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, hang).await });
        let down = s.t.portal("down", &hang_endpoint, "acc-x", "ref-x", now_ms() + 3_600_000).await;

        let client = Client::new(s.t.store.clone(), options(&s.base));
        let t0 = std::time::Instant::now();
        let e = client.call(down, "echo", &json!({})).await.expect_err("timeout");
        assert!(matches!(e, Error::Unavailable(ref m) if m.contains("timed out")), "{e:?}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        // Now it fails at once, without another request, while the other portal works.
        let t1 = std::time::Instant::now();
        let e = client.call(down, "echo", &json!({})).await.expect_err("fast");
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        assert!(t1.elapsed() < Duration::from_millis(100), "{:?}", t1.elapsed());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        client.call(good, "echo", &json!({})).await.expect("other portal");
        assert!(JobError::from(e).to_string().contains("did not answer"));

        // A closed port: connection refused is "down" as well.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let gone = s.t.portal("gone", &format!("http://{closed}/rest/"), "a", "r", now_ms() + 3_600_000).await;
        let e = client.call(gone, "echo", &json!({})).await.expect_err("refused");
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_split_by_fifty_and_merged() {
        let s = setup(TestStore::sqlite().await).await;
        let id = s.portal("m1", "acc-0", false, "ref-0", 3_600_000).await;
        let client = Client::new(s.t.store.clone(), options(&s.base));
        let cmds: Vec<(String, String, Value)> = (0..120)
            .map(|i| {
                let method = if i == 77 { "fail" } else { "crm.lead.add" };
                (format!("k{i}"), method.to_string(), json!({"fields": {"TITLE": format!("lead {i} & co")}}))
            })
            .collect();
        let answer = client.batch(id, &cmds, false).await.expect("batch");
        assert_eq!(lock(&s.fake).batch_sizes, vec![50, 50, 20]);
        assert_eq!(answer.result.len(), 119);
        assert_eq!(answer.errors.len(), 1);
        assert_eq!(answer.errors["k77"]["error"], "ERROR_CORE");
        assert_eq!(answer.result["k3"]["method"], "crm.lead.add");
        assert_eq!(answer.result["k3"]["params"]["fields"]["TITLE"], "lead 3 & co");

        // With halt, the first failing request stops the rest.
        lock(&s.fake).batch_sizes.clear();
        let mut halting = cmds.clone();
        halting[10].1 = "fail".into();
        let answer = client.batch(id, &halting, true).await.expect("batch");
        assert_eq!(lock(&s.fake).batch_sizes, vec![50]);
        assert_eq!(answer.result.len(), 10);
        assert_eq!(answer.errors.len(), 1);

        let dup =
            vec![("a".to_string(), "x.y".to_string(), json!({})), ("a".to_string(), "x.y".to_string(), json!({}))];
        assert!(matches!(client.batch(id, &dup, false).await, Err(Error::InvalidRequest(_))));
        let nested = vec![("a".to_string(), "batch".to_string(), json!({}))];
        assert!(matches!(client.batch(id, &nested, false).await, Err(Error::InvalidRequest(_))));
        s.t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inactive_portals_are_refused() {
        let s = setup(TestStore::sqlite().await).await;
        let id = s.portal("m1", "acc-0", false, "ref-0", 3_600_000).await;
        s.t.store.uninstall_portal(id).await.unwrap();
        let client = Client::new(s.t.store.clone(), options(&s.base));
        assert!(matches!(client.call(id, "echo", &json!({})).await, Err(Error::PortalInactive)));
        s.t.drop_db().await;
    }
}
