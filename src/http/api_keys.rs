//! Admin API: API keys for `/api/v1` (create, list, revoke).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::json::{ApiJson, ApiPath};
use super::AppState;
use crate::apikeys::{self, ApiKeyInput, ApiKeyView, NewApiKey};

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
    let phones = apikeys::resolve_phones(&s.store, input.waba, &input.phones)
        .await?
        .map_err(|(field, why)| ApiError::field(field, why))?;
    Ok((StatusCode::CREATED, Json(apikeys::create(&s.store, name, input.waba, &phones).await?)))
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
