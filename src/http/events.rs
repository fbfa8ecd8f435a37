//! Admin API over tenant event webhooks: subscriptions (create, list, show, change, delete, reveal the signing
//! secret), deliveries with every attempt, and redrive of dead deliveries. The work is in
//! [`crate::events::subscriptions`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::json::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::events::subscriptions::{
    self as subs, DeliveryDetail, DeliveryView, SubscriptionError, SubscriptionInput, SubscriptionPatch,
    SubscriptionView, SubscriptionWithSecret,
};

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Field { field, message } => ApiError::field(field, message),
            SubscriptionError::NotFound(m) => ApiError::not_found(m),
            SubscriptionError::Store(s) => s.into(),
        }
    }
}

/// Subscribe a URL to events (the signing secret is in the answer).
#[utoipa::path(post, path = "/admin/api/v1/event-subscriptions", tag = "events", request_body = SubscriptionInput,
    responses((status = 201, body = SubscriptionWithSecret), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> Result<(StatusCode, Json<SubscriptionWithSecret>), ApiError> {
    let created = subs::create(&s.store, &input, s.config.events_allow_private_urls).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/admin/api/v1/event-subscriptions", tag = "events",
    responses((status = 200, body = [SubscriptionView])))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<SubscriptionView>>, ApiError> {
    Ok(Json(subs::list(&s.store).await?))
}

#[utoipa::path(get, path = "/admin/api/v1/event-subscriptions/{id}", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(subs::get(&s.store, id).await?))
}

/// The subscription with its signing secret in full.
#[utoipa::path(get, path = "/admin/api/v1/event-subscriptions/{id}/secret", tag = "events",
    params(("id" = i64, Path)),
    responses((status = 200, body = SubscriptionWithSecret), (status = 404, body = ErrorBody)))]
pub async fn reveal(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SubscriptionWithSecret>, ApiError> {
    Ok(Json(subs::reveal(&s.store, id).await?))
}

/// Change a subscription: URL, event types, description, enable it again (or disable it), rotate its secret.
#[utoipa::path(patch, path = "/admin/api/v1/event-subscriptions/{id}", tag = "events", params(("id" = i64, Path)),
    request_body = SubscriptionPatch,
    responses((status = 200, body = SubscriptionWithSecret), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(p): ApiJson<SubscriptionPatch>,
) -> Result<Json<SubscriptionWithSecret>, ApiError> {
    Ok(Json(subs::update(&s.store, id, &p, s.config.events_allow_private_urls).await?))
}

/// Delete a subscription with its deliveries.
#[utoipa::path(delete, path = "/admin/api/v1/event-subscriptions/{id}", tag = "events", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    subs::delete(&s.store, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Only this subscription's.
    pub subscription: Option<i64>,
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// Deliveries with ids below this one (the last id of the previous page).
    pub before: Option<i64>,
    /// At most this many (1-500, default 100).
    pub limit: Option<i64>,
}

/// Deliveries, newest first.
#[utoipa::path(get, path = "/admin/api/v1/event-deliveries", tag = "events", params(DeliveryQuery),
    responses((status = 200, body = [DeliveryView]), (status = 422, body = ErrorBody)))]
pub async fn deliveries(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    Ok(Json(subs::deliveries(&s.store, q.subscription, q.state.as_deref(), q.before, limit).await?))
}

/// One delivery: the event's body and every attempt (status, latency, answer).
#[utoipa::path(get, path = "/admin/api/v1/event-deliveries/{id}", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = ErrorBody)))]
pub async fn delivery(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<DeliveryDetail>, ApiError> {
    Ok(Json(subs::delivery(&s.store, id).await?))
}

/// Send a dead delivery again, with a fresh retry window and the same event id.
#[utoipa::path(post, path = "/admin/api/v1/event-deliveries/{id}/redrive", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = ErrorBody)))]
pub async fn redrive(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<DeliveryDetail>, ApiError> {
    subs::redrive(&s.store, id).await?;
    s.engine.wake();
    Ok(Json(subs::delivery(&s.store, id).await?))
}
