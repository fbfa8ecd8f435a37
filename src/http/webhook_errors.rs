//! Admin API: the errors Meta reported in webhooks (`value.errors`), per phone.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::json::ApiQuery;
use super::AppState;
use crate::store::webhook_errors::{self, WebhookErrorView};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WebhookErrorQuery {
    /// Only this phone's (its id); all phones when absent.
    pub phone: Option<i64>,
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<i64>,
}

/// Errors Meta reported in messages webhooks that are not tied to a message (e.g. 131000 "Unsupported webhook
/// payload"), newest first.
#[utoipa::path(get, path = "/admin/api/v1/webhook-errors", tag = "webhooks", params(WebhookErrorQuery),
    responses((status = 200, body = [WebhookErrorView]), (status = 401, body = ErrorBody)))]
pub async fn list_webhook_errors(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<WebhookErrorQuery>,
) -> Result<Json<Vec<WebhookErrorView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    Ok(Json(webhook_errors::list(&s.store, q.phone, limit).await?))
}
