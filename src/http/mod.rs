//! The HTTP face: axum routers composed in one place.

pub mod admin;
pub mod api_keys;
pub mod bitrix;
pub mod calling;
pub mod calls;
pub mod console;
pub mod error;
pub mod events;
pub mod health;
pub mod history;
pub mod jobs;
pub mod json;
pub mod metrics;
pub mod notify;
pub mod sends;
pub mod server;
pub mod stats;
pub mod templates;
pub mod webhook;
pub mod webhook_errors;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::config::Config;
use crate::intake::Intake;
use crate::jobs::Engine;
use crate::metrics::Metrics;
use crate::store::Store;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub engine: Arc<Engine>,
    pub intake: Intake,
    pub apps: Arc<webhook::AppCache>,
    pub bridge: Arc<crate::crm::Bridge>,
    /// The web console's process-wide state (its login rate limit).
    pub console: Arc<console::Console>,
    /// Bytes of webhook bodies that may be held at once (`webhook_body_budget_bytes`).
    pub webhook_budget: Arc<webhook::BodyBudget>,
}

pub fn router(state: AppState) -> Router {
    let admin = admin::routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), admin::require_admin))
        .layer(DefaultBodyLimit::max(state.config.admin_body_limit));
    let waba =
        get(webhook::handshake).post(webhook::receive).layer(DefaultBodyLimit::max(state.config.webhook_body_limit));
    let bitrix_limit = DefaultBodyLimit::max(state.config.admin_body_limit);
    let tenant = Router::new()
        .route("/notifications", post(notify::notify))
        .route("/sends/{id}", get(notify::get_send))
        .route("/messages", get(history::tenant_messages))
        .route("/contacts", get(history::tenant_contacts))
        .route("/conversations", get(history::tenant_conversations))
        .route("/stats", get(stats::stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), notify::require_key))
        .layer(DefaultBodyLimit::max(state.config.admin_body_limit));
    Router::new()
        .route("/api/bitrix/install", post(bitrix::install).layer(bitrix_limit))
        .route("/api/bitrix/events", post(bitrix::event).layer(bitrix_limit))
        .route("/api/bitrix/placement", get(bitrix::placement).post(bitrix::placement))
        .route("/api/sms/{code}", post(bitrix::sms).layer(bitrix_limit))
        .route("/media/{phone}/{media}", get(bitrix::media))
        .route("/api/waba/", waba.clone())
        .route("/api/waba", waba)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::handler))
        .route("/admin/api/v1/openapi.json", get(admin::openapi_json))
        .nest("/admin/api/v1", admin)
        .merge(console::routes(&state))
        .nest("/api/v1", tenant)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), server::body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}
