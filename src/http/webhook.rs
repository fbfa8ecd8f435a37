//! Meta webhook intake: `GET /api/waba/` (verification handshake) and `POST /api/waba/` (events).
//! The app is chosen by `?app_id=<meta app id>`, else by host name. A POST is verified on its raw bytes,
//! committed (inbox row + processing job), and only then answered 200. Its bytes are held once, from the read to
//! the commit, and bounded by `webhook_body_budget_bytes` (503 with `Retry-After` when that is in use).

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::AppState;
use crate::meta::signature::{self, SignatureError};
use crate::metrics::{Metrics, ReasonLabels};
use crate::store::registry::App;

/// The registered apps a request may be for: the one named by `app_id`, or those on the request's host.
async fn candidates(
    state: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Vec<Arc<App>>, ApiError> {
    let apps = state.apps.all().await?;
    if let Some(id) = params.get("app_id") {
        let found: Vec<Arc<App>> = apps.iter().filter(|a| &a.meta_app_id == id).cloned().collect();
        if found.is_empty() {
            return Err(ApiError::not_found(format!("no app with app_id {id} is registered")));
        }
        return Ok(found);
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(',').next().unwrap_or(h).trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bare = host.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_else(|| host.clone());
    let found: Vec<Arc<App>> = apps.iter().filter(|a| a.domain == host || a.domain == bare).cloned().collect();
    if found.is_empty() {
        return Err(ApiError::not_found(
            "no app is registered for this host; add ?app_id=<Meta app id> to the callback URL".to_string(),
        ));
    }
    Ok(found)
}

/// Meta's verification handshake: echo `hub.challenge` when the verify token matches.
pub async fn handshake(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let apps = candidates(&state, &params, &headers).await?;
    let mode = params.get("hub.mode").map(String::as_str);
    let token = params.get("hub.verify_token").map(String::as_str).unwrap_or_default();
    let challenge = params.get("hub.challenge").cloned().unwrap_or_default();
    let matches = apps.iter().any(|a| bool::from(a.verify_token.as_bytes().ct_eq(token.as_bytes())));
    if mode != Some("subscribe") || !matches {
        tracing::warn!("webhook verification refused (wrong mode or verify token)");
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "hub.mode or hub.verify_token is wrong"));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], challenge).into_response())
}

/// A webhook POST: app and budget first, then the body, its signature, a durable commit, and 200.
pub async fn receive(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reject = |reason: &str| {
        state.metrics.webhook_rejected.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    };
    let apps = candidates(&state, &params, &headers).await.inspect_err(|_| reject("unknown_app"))?;
    let (body, _hold) = match read_body(&state, &headers, body).await {
        Ok(read) => read,
        Err(BodyError::Busy) => {
            reject("busy");
            // Before the signature can be checked (the body is not read): anyone may cause this, so at most one
            // line every 10 s; every refusal is counted in wabridge_webhook_rejected_total{reason="busy"}.
            static LAST_WARN_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
            let now = crate::store::now_ms();
            let last = LAST_WARN_MS.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= 10_000
                && LAST_WARN_MS
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                tracing::warn!(
                    "webhooks refused with 503: webhook_body_budget_bytes is in use (Meta will retry; counted in \
                     wabridge_webhook_rejected_total{{reason=\"busy\"}}, logged at most every 10 s)"
                );
            }
            let mut resp = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many webhook bytes in flight; retry shortly",
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(resp);
        }
        Err(BodyError::TooLarge) => {
            reject("body_rejected");
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is larger than the limit",
            ));
        }
        Err(BodyError::Read(e)) => {
            reject("body_rejected");
            return Err(ApiError::bad_request(format!("could not read the request body: {e}")));
        }
    };
    let header_value = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    let app = match choose_app(&apps, header_value, &body) {
        Ok(app) => app,
        Err(e) => {
            reject(e.reason());
            tracing::warn!(reason = e.reason(), "webhook refused: bad signature; nothing stored");
            return Err(ApiError::unauthorized(e.to_string()));
        }
    };
    if !app.verify_signatures {
        tracing::warn!(app = app.id, "accepting a webhook WITHOUT signature verification (verify_signatures=false)");
    }
    // The body (and its share of the budget) is held until the commit that stores it is done.
    state.intake.submit(app.id, body).await.map_err(ApiError::internal)?;
    state.metrics.webhook_accepted.inc();
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"received":true}"#).into_response())
}

enum BodyError {
    /// No room in the budget within `webhook_budget_wait_ms`.
    Busy,
    TooLarge,
    Read(axum::Error),
}

/// Reads the body into one buffer of its declared size, taking its bytes from the budget first: all of a
/// declared `Content-Length` before reading, or, for a chunked body, step by step as it grows.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<(Bytes, BudgetHold), BodyError> {
    let limit = state.config.webhook_body_limit;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let budget = &state.webhook_budget;
    let deadline = tokio::time::Instant::now() + budget.wait;
    let mut hold = budget.take(declared.unwrap_or(0), deadline).await.ok_or(BodyError::Busy)?;
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else { continue };
        let need = buf.len() + data.len();
        if need > limit {
            return Err(BodyError::TooLarge);
        }
        if need > hold.bytes {
            // Chunked (or longer than declared, which hyper refuses anyway): grow in steps of at least 64 KiB.
            let more = (need - hold.bytes).max(64 * 1024).min(limit - hold.bytes);
            let extra = budget.take(more, deadline).await.ok_or(BodyError::Busy)?;
            hold.merge(extra);
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), hold))
}

/// The bytes of webhook bodies that may be held in memory at once, from their head until their commit.
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    wait: Duration,
    metrics: Arc<Metrics>,
}

impl BodyBudget {
    pub fn new(total: usize, wait: Duration, metrics: Arc<Metrics>) -> Self {
        BodyBudget { bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))), wait, metrics }
    }

    /// `n` bytes of the budget, waiting until `deadline` at most.
    async fn take(&self, n: usize, deadline: tokio::time::Instant) -> Option<BudgetHold> {
        let n32 = u32::try_from(n).ok()?;
        let permit = tokio::time::timeout_at(deadline, self.bytes.clone().acquire_many_owned(n32)).await.ok()?.ok()?;
        self.metrics.webhook_body_bytes_in_flight.inc_by(n as i64);
        Some(BudgetHold { permit: Some(permit), bytes: n, metrics: self.metrics.clone() })
    }
}

/// Bytes taken from the [`BodyBudget`]; given back when dropped.
struct BudgetHold {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    metrics: Arc<Metrics>,
}

impl BudgetHold {
    fn merge(&mut self, mut other: BudgetHold) {
        match (&mut self.permit, other.permit.take()) {
            (Some(p), Some(o)) => p.merge(o),
            (p @ None, o) => *p = o,
            (Some(_), None) => {}
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.metrics.webhook_body_bytes_in_flight.dec_by(self.bytes as i64);
    }
}

/// The app whose secret signed the body. Apps with verification switched off accept anything, but only
/// when no app on the host verifies it properly.
fn choose_app<'a>(apps: &'a [Arc<App>], header_value: Option<&str>, body: &[u8]) -> Result<&'a App, SignatureError> {
    let claimed = signature::parse_header(header_value);
    if let Ok(claimed) = &claimed {
        if let Some(app) = apps
            .iter()
            .find(|a| a.verify_signatures && signature::verify(a.app_secret.as_bytes(), body, claimed).is_ok())
        {
            return Ok(app);
        }
    }
    if let Some(app) = apps.iter().find(|a| !a.verify_signatures) {
        return Ok(app);
    }
    match claimed {
        Err(e) => Err(e),
        Ok(_) => Err(SignatureError::Mismatch),
    }
}

/// A snapshot of every registered app, shared by all requests until it expires.
type AppSnapshot = Arc<Vec<Arc<App>>>;

/// Apps change rarely and are read on every webhook: keep them in memory for a few seconds.
pub struct AppCache {
    store: crate::store::Store,
    ttl_ms: i64,
    inner: tokio::sync::RwLock<Option<(i64, AppSnapshot)>>,
}

impl AppCache {
    pub fn new(store: crate::store::Store, ttl_ms: i64) -> Self {
        AppCache { store, ttl_ms, inner: tokio::sync::RwLock::new(None) }
    }

    pub async fn all(&self) -> Result<AppSnapshot, crate::store::StoreError> {
        let now = crate::store::now_ms();
        if let Some((at, apps)) = self.inner.read().await.as_ref() {
            if now - at < self.ttl_ms {
                return Ok(apps.clone());
            }
        }
        let apps = Arc::new(self.store.list_apps().await?.into_iter().map(Arc::new).collect::<Vec<_>>());
        *self.inner.write().await = Some((now, apps.clone()));
        Ok(apps)
    }

    pub async fn invalidate(&self) {
        *self.inner.write().await = None;
    }
}
