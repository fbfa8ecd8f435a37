//! Meta webhook intake: `GET /api/waba/` (verification handshake) and `POST /api/waba/` (events).
//! The app is chosen by `?app_id=<meta app id>`, else by host name. A POST is verified on its raw bytes,
//! committed (inbox row + processing job), and only then answered 200.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::json::body_rejection;
use super::metrics::ReasonLabels;
use super::AppState;
use crate::meta::signature::{self, SignatureError};
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

/// A webhook POST: signature first, then a durable commit, then 200.
pub async fn receive(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let reject = |reason: &str| {
        state.metrics.webhook_rejected.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    };
    let body = body.map_err(|r| {
        reject("body_rejected");
        body_rejection(r)
    })?;
    let apps = candidates(&state, &params, &headers).await.inspect_err(|_| reject("unknown_app"))?;
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
    state.intake.submit(app.id, body).await.map_err(ApiError::internal)?;
    state.metrics.webhook_accepted.inc();
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"received":true}"#).into_response())
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
