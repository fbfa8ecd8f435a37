//! `/metrics` and the per-request counters: the HTTP face of the registry in `crate::metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics::*;

/// The method label: the standard methods by name, anything else `other` (a client may send any token as a
/// method; each would otherwise make new series).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts each request by its route template (never the raw path, which may hold ids; requests that
/// matched no route are `unmatched`) and a bounded method label.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method()).to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.http_latency.get_or_create(&RouteLabels { route: route.clone() }).observe(start.elapsed().as_secs_f64());
    m.http_requests.get_or_create(&HttpLabels { route, method, status: resp.status().as_u16() }).inc();
    resp
}

pub async fn handler(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = refresh_from_store(&state).await {
        tracing::warn!(error = %e, "metrics: could not read send counts");
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}

/// Gauges that describe shared state (all processes), read at scrape time.
async fn refresh_from_store(state: &AppState) -> Result<(), crate::store::StoreError> {
    use crate::store::outbound;
    let m = &state.metrics;
    for st in ["queued", "unknown"] {
        m.sends_pending.get_or_create(&StateLabels { state: st.into() }).set(0);
    }
    for (st, n) in outbound::pending_by_state(&state.store).await? {
        m.sends_pending.get_or_create(&StateLabels { state: st }).set(n);
    }
    m.wabas_sends_paused.set(outbound::wabas_paused(&state.store).await?);
    let day_ago = crate::store::now_ms() - 86_400_000;
    let errors = crate::store::webhook_errors::count_since(&state.store, day_ago).await?;
    m.meta_webhook_errors_last_day.set(errors);
    let t = crate::store::stats::totals(&state.store, None).await?;
    Metrics::raise_to(&m.messages_received, t.messages_received);
    Metrics::raise_to(&m.messages_sent, t.messages_sent);
    Metrics::raise_to(&m.templates_sent, t.templates_sent);
    Metrics::raise_to(&m.errors.get_or_create(&KindOnlyLabels { kind: "send_failed".into() }), t.sends_failed);
    let dead = m.errors.get_or_create(&KindOnlyLabels { kind: "event_delivery_dead".into() });
    Metrics::raise_to(&dead, t.event_deliveries_dead);
    m.uptime_seconds.set(m.started.elapsed().as_secs() as i64);
    Ok(())
}
