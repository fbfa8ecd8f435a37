//! `GET /api/v1/stats`: a tenant's own numbers (the API key's scope).

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::apikeys::Caller;

/// Totals over the numbers of the API key's scope, since they were registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// The WABA the key is limited to; null for every WABA.
    pub waba: Option<i64>,
    /// The wabridge ids of the numbers counted; null for every number.
    pub phones: Option<Vec<i64>>,
    /// Customers' messages received (reactions, edits and deletions included).
    pub messages_received: i64,
    /// Messages WhatsApp took from these numbers, whoever asked (API, CRM, SMS).
    pub messages_sent: i64,
    /// Of those, templates.
    pub templates_sent: i64,
    /// Media uploaded with this API key.
    pub media_uploaded: i64,
    /// Sends given up on (refused by WhatsApp or failed for good).
    pub sends_failed: i64,
    /// Event deliveries to these numbers' subscribers given up on.
    pub event_deliveries_dead: i64,
    /// Calls made with this API key.
    pub api_calls: i64,
    /// Seconds the answering wabridge process has been up.
    pub uptime_seconds: u64,
}

#[utoipa::path(get, path = "/api/v1/stats", tag = "stats",
    responses((status = 200, body = Stats), (status = 401, body = ErrorBody)))]
pub async fn stats(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Json<Stats>, ApiError> {
    let phones = crate::history::scope_of(&s.store, &caller).await?;
    let t = crate::store::stats::totals(&s.store, phones.as_deref()).await?;
    let (api_calls, media_uploaded) = crate::store::apikeys::usage(&s.store, caller.key_id).await?;
    Ok(Json(Stats {
        waba: caller.waba,
        phones,
        messages_received: t.messages_received,
        messages_sent: t.messages_sent,
        templates_sent: t.templates_sent,
        media_uploaded,
        sends_failed: t.sends_failed,
        event_deliveries_dead: t.event_deliveries_dead,
        api_calls,
        uptime_seconds: s.metrics.started.elapsed().as_secs(),
    }))
}
