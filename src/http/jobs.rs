//! Admin API over the job engine: list jobs (dead ones above all) and redrive them.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::json::{ApiPath, ApiQuery};
use super::AppState;
use crate::jobs::{JobState, JobView};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// `pending`, `running`, `done` or `dead`; all when absent.
    pub state: Option<JobState>,
    /// Only jobs with a smaller id (the next page: the last id of the previous one).
    pub before: Option<i64>,
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<i64>,
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/admin/api/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = [JobView]), (status = 401, body = ErrorBody)))]
pub async fn list_jobs(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    Ok(Json(s.engine.list(q.state, q.before, limit).await?))
}

/// Put a dead job back in the queue with a fresh attempt budget.
#[utoipa::path(post, path = "/admin/api/v1/jobs/{id}/redrive", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, description = "queued again"), (status = 404, body = ErrorBody)))]
pub async fn redrive_job(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    redrive(&s, id).await?;
    Ok(Json(serde_json::json!({"id": id, "state": "pending"})))
}

/// Puts dead job `id` back in the queue (the admin API and the console); 404 when no dead job has this id.
pub async fn redrive(s: &AppState, id: i64) -> Result<(), ApiError> {
    if s.engine.redrive(id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no dead job with id {id}")))
    }
}
