//! Admin API over the SIP edge's call records.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::json::ApiQuery;
use super::AppState;
use crate::store::calls::{CallFilter, CallView};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// Only calls of this phone (wabridge id).
    pub phone: Option<i64>,
    /// `inbound` (a WhatsApp user called) or `outbound`.
    pub direction: Option<String>,
    /// Only calls invited at or after this time (RFC 3339).
    pub since: Option<String>,
    /// `true`: answered calls only; `false`: unanswered only.
    pub answered: Option<bool>,
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<i64>,
    /// Skip this many first (the next page: the previous offset plus its limit).
    pub offset: Option<i64>,
}

/// List call records, newest first.
#[utoipa::path(get, path = "/admin/api/v1/calls", tag = "calls", params(CallQuery),
    responses((status = 200, body = [CallView]), (status = 422, body = ErrorBody)))]
pub async fn list_calls(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<CallQuery>,
) -> Result<Json<Vec<CallView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    if let Some(d) = &q.direction {
        if d != "inbound" && d != "outbound" {
            return Err(ApiError::field("direction", "must be inbound or outbound"));
        }
    }
    let since_ms = match &q.since {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::field("since", "must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z"))?
                .timestamp_millis(),
        ),
    };
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::field("offset", "must be 0 or more"));
    }
    let filter = CallFilter { phone: q.phone, direction: q.direction, since_ms, answered: q.answered, limit, offset };
    Ok(Json(s.store.list_calls(&filter).await?))
}
