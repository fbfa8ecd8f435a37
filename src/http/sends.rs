//! Admin API: sends to WhatsApp and their outcomes.

use axum::extract::State;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::json::ApiPath;
use super::AppState;
use crate::outbound::{self, Outbound};

/// Recent sends to WhatsApp, newest first.
#[utoipa::path(get, path = "/admin/api/v1/sends", tag = "sends", responses((status = 200, body = [Outbound])))]
pub async fn list_sends(State(s): State<AppState>) -> Result<Json<Vec<Outbound>>, ApiError> {
    Ok(Json(outbound::list(&s.store, None, 200).await?))
}

#[utoipa::path(get, path = "/admin/api/v1/sends/{id}", tag = "sends", params(("id" = i64, Path)),
    responses((status = 200, body = Outbound), (status = 404, body = ErrorBody)))]
pub async fn get_send(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Outbound>, ApiError> {
    outbound::get(&s.store, id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no send with id {id}")))
}
