//! Admin API for WhatsApp calling activation: `POST`/`GET /admin/api/v1/phones/{id}/calling`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody, GraphErrorDetail};
use super::json::{ApiJson, ApiPath};
use super::AppState;
use crate::calling::{service, CallingError, CallingInput, CallingStatus};
use crate::meta::graph;
use crate::registry::PhoneView;
use crate::store::registry::Phone;

impl From<CallingError> for ApiError {
    fn from(e: CallingError) -> Self {
        match e {
            CallingError::Registry(r) => r.into(),
            CallingError::NoToken { .. } => ApiError::new(StatusCode::CONFLICT, "no_access_token", e.to_string()),
            CallingError::Graph(ref g) => ApiError::graph(
                e.to_string(),
                GraphErrorDetail {
                    code: g.code,
                    message: g.message.clone(),
                    kind: g.kind.clone(),
                    details: g.details.clone(),
                    explanation: crate::meta::errors::explain_calling(g.code).map(String::from),
                    fbtrace_id: g.fbtrace_id.clone(),
                    http_status: g.http_status,
                },
            ),
            CallingError::Unreachable(m) => ApiError::new(StatusCode::BAD_GATEWAY, "graph_unreachable", m),
        }
    }
}

/// Enable (`"enabled": true`) or disable WhatsApp calling with SIP for a phone at Meta.
///
/// Enabling posts the settings to Meta (`/{phone-number-id}/settings`) and stores Meta's SIP password (sealed;
/// shown masked). When Meta refuses, the answer is 502 with Meta's code, message and what it means, and the
/// error stays on the phone (`calling.last_error`).
#[utoipa::path(post, path = "/admin/api/v1/phones/{id}/calling", tag = "calling", params(("id" = i64, Path)),
    request_body = CallingInput,
    responses((status = 200, body = PhoneView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn set_calling(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<CallingInput>,
) -> Result<Json<PhoneView>, ApiError> {
    Ok(Json(PhoneView::from(&apply(&s, id, &input).await?)))
}

/// Enables or disables calling of phone `id` at Meta (the admin API and the console).
pub async fn apply(s: &AppState, id: i64, input: &CallingInput) -> Result<Phone, ApiError> {
    let client = graph::Client::from_config(&s.config);
    Ok(service::apply(&s.store, &client, id, input).await?)
}

/// What wabridge expects of a phone's calling settings, what Meta reports now (read live, without
/// credentials), the differences, and the last activation error.
#[utoipa::path(get, path = "/admin/api/v1/phones/{id}/calling", tag = "calling", params(("id" = i64, Path)),
    responses((status = 200, body = CallingStatus), (status = 404, body = ErrorBody)))]
pub async fn calling_status(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CallingStatus>, ApiError> {
    let client = graph::Client::from_config(&s.config);
    Ok(Json(service::status(&s.store, &client, id).await?))
}
