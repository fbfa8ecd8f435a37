//! Admin API for the bridge: API keys, sends, and a WABA's synced templates.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::json::{ApiJson, ApiPath};
use super::AppState;
use crate::apikeys::{self, ApiKeyInput, ApiKeyView, NewApiKey};
use crate::outbound::{self, Outbound};
use crate::templates::TemplateView;

/// Create an API key for `/api/v1` (the key is shown once).
#[utoipa::path(post, path = "/admin/api/v1/api-keys", tag = "api-keys", request_body = ApiKeyInput,
    responses((status = 201, body = NewApiKey), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    ApiJson(input): ApiJson<ApiKeyInput>,
) -> Result<(StatusCode, Json<NewApiKey>), ApiError> {
    let name = input.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::field("name", "is required (1-200 characters)"));
    }
    if let Some(w) = input.waba {
        if s.store.get_waba(w).await?.is_none() {
            return Err(ApiError::field("waba", format!("no WABA with id {w}")));
        }
    }
    Ok((StatusCode::CREATED, Json(apikeys::create(&s.store, name, input.waba).await?)))
}

#[utoipa::path(get, path = "/admin/api/v1/api-keys", tag = "api-keys", responses((status = 200, body = [ApiKeyView])))]
pub async fn list_keys(State(s): State<AppState>) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    Ok(Json(apikeys::list(&s.store).await?))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/admin/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    if apikeys::revoke(&s.store, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no active API key with id {id}")))
    }
}

/// Recent sends to WhatsApp, newest first.
#[utoipa::path(get, path = "/admin/api/v1/sends", tag = "sends", responses((status = 200, body = [Outbound])))]
pub async fn list_sends(State(s): State<AppState>) -> Result<Json<Vec<Outbound>>, ApiError> {
    Ok(Json(outbound::list(&s.store, 200).await?))
}

#[utoipa::path(get, path = "/admin/api/v1/sends/{id}", tag = "sends", params(("id" = i64, Path)),
    responses((status = 200, body = Outbound), (status = 404, body = ErrorBody)))]
pub async fn get_send(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Outbound>, ApiError> {
    outbound::get(&s.store, id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no send with id {id}")))
}

/// A WABA's synced templates, with language variants whose parameters disagree flagged.
#[utoipa::path(get, path = "/admin/api/v1/wabas/{id}/templates", tag = "wabas", params(("id" = i64, Path)),
    responses((status = 200, body = [TemplateView]), (status = 404, body = ErrorBody)))]
pub async fn list_templates(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<TemplateView>>, ApiError> {
    crate::registry::get_waba(&s.store, id).await?;
    Ok(Json(crate::templates::list_views(&s.store, id).await?))
}

/// Queue a template sync of the WABA now.
#[utoipa::path(post, path = "/admin/api/v1/wabas/{id}/templates/sync", tag = "wabas", params(("id" = i64, Path)),
    responses((status = 202), (status = 404, body = ErrorBody)))]
pub async fn sync_templates(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    crate::registry::get_waba(&s.store, id).await?;
    crate::templates::request_sync(&s.store, id).await?;
    s.engine.wake();
    Ok(StatusCode::ACCEPTED)
}
