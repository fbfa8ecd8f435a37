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
    if let Err(e) = refresh_health(&state).await {
        tracing::warn!(error = %e, "metrics: could not read the account health");
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

/// The account-health gauges: one series per registered WABA, app and phone (by Meta's ids), rebuilt at each
/// scrape so a removed one disappears.
async fn refresh_health(state: &AppState) -> Result<(), crate::store::StoreError> {
    use crate::health::figures::{quality_label, CAN_SEND, QUALITY};
    use crate::store::{activity, health};
    let m = &state.metrics;
    let s = &state.store;
    let wabas = s.list_wabas().await?;
    let apps = s.list_apps().await?;
    let phones: Vec<_> = s.list_phones().await?.into_iter().filter(|p| p.archived_at.is_none()).collect();
    let waba_rows = health::wabas(s).await?;
    let phone_rows = health::phones(s).await?;
    let app_seen = activity::all(s, activity::Scope::App).await?;
    let phone_seen = activity::all(s, activity::Scope::Phone).await?;
    m.jobs_dead.set(health::dead_jobs(s).await?);

    m.token_expires_at_seconds.clear();
    m.token_valid.clear();
    m.health_checked_at_seconds.clear();
    for w in &wabas {
        let Some(row) = waba_rows.get(&w.id) else { continue };
        let label = WabaLabels { waba: w.waba_id.clone() };
        m.health_checked_at_seconds.get_or_create(&label).set(row.checked_at / 1000);
        if let Some(t) = &row.token {
            m.token_expires_at_seconds.get_or_create(&label).set(t.expires_at);
            m.token_valid.get_or_create(&label).set(i64::from(t.valid));
        }
    }
    m.app_last_webhook_timestamp_seconds.clear();
    for a in &apps {
        if let Some(at) = app_seen.get(&a.id) {
            let label = AppLabels { app: a.meta_app_id.clone() };
            m.app_last_webhook_timestamp_seconds.get_or_create(&label).set(at / 1000);
        }
    }
    m.phone_can_send.clear();
    m.phone_quality.clear();
    m.phone_last_webhook_timestamp_seconds.clear();
    for p in &phones {
        let phone = p.phone_number_id.clone();
        if let Some(at) = phone_seen.get(&p.id) {
            m.phone_last_webhook_timestamp_seconds.get_or_create(&PhoneLabels { phone: phone.clone() }).set(at / 1000);
        }
        let Some(h) = phone_rows.get(&p.id).and_then(|r| r.health.as_ref()) else { continue };
        for st in CAN_SEND {
            let label = PhoneStatusLabels { phone: phone.clone(), status: st.into() };
            m.phone_can_send.get_or_create(&label).set(i64::from(h.can_send == st));
        }
        let rating = quality_label(h.quality_rating.as_deref());
        for q in QUALITY {
            let label = PhoneRatingLabels { phone: phone.clone(), rating: q.into() };
            m.phone_quality.get_or_create(&label).set(i64::from(rating == q));
        }
    }
    Ok(())
}
