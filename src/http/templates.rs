//! Admin API: a WABA's synced templates, and a sync on demand.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::json::ApiPath;
use super::AppState;
use crate::templates::TemplateView;

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
    queue_sync(&s, id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Queues a template sync of WABA `id` and wakes the workers (the admin API and the console).
pub async fn queue_sync(s: &AppState, id: i64) -> Result<(), ApiError> {
    crate::registry::get_waba(&s.store, id).await?;
    crate::templates::request_sync(&s.store, id).await?;
    s.engine.wake();
    Ok(())
}
