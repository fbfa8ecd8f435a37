//! The admin API under `/admin/api/v1`: registry CRUD, behind the admin bearer token.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use super::error::{ApiError, ErrorBody};
use super::json::{ApiJson, ApiPath};
use super::AppState;
use crate::registry::{
    self, AppCreate, AppInput, AppView, PhoneCreate, PhoneInput, PhoneView, PortalCreate, PortalInput, PortalView,
    VerifyTokenView, WabaCreate, WabaInput, WabaView,
};
use crate::store::registry::App;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{id}", get(get_app).patch(update_app).delete(delete_app))
        .route("/apps/{id}/verify-token", get(reveal_verify_token))
        .route("/wabas", get(list_wabas).post(create_waba))
        .route("/wabas/{id}", get(get_waba).patch(update_waba).delete(delete_waba))
        .route("/phones", get(list_phones).post(create_phone))
        .route("/phones/{id}", get(get_phone).patch(update_phone).delete(delete_phone))
        .route("/phones/{id}/archive", post(archive_phone))
        .route("/phones/{id}/restore", post(restore_phone))
        .route("/phones/{id}/calling", get(super::calling::calling_status).post(super::calling::set_calling))
        .route("/portals", get(list_portals).post(create_portal))
        .route("/portals/{id}", get(get_portal).patch(update_portal).delete(delete_portal))
        .route("/calls", get(super::calls::list_calls))
        .route("/jobs", get(super::jobs::list_jobs))
        .route("/webhook-errors", get(super::webhook_errors::list_webhook_errors))
        .route("/jobs/{id}/redrive", axum::routing::post(super::jobs::redrive_job))
        .route("/api-keys", get(super::api_keys::list_keys).post(super::api_keys::create_key))
        .route("/api-keys/{id}", axum::routing::delete(super::api_keys::revoke_key))
        .route("/sends", get(super::sends::list_sends))
        .route("/sends/{id}", get(super::sends::get_send))
        .route("/wabas/{id}/templates", get(super::templates::list_templates))
        .route("/wabas/{id}/templates/sync", axum::routing::post(super::templates::sync_templates))
        .route("/messages", get(super::history::admin_messages))
        .route("/contacts", get(super::history::admin_contacts))
        .route("/conversations", get(super::history::admin_conversations))
        .route("/event-subscriptions", get(super::events::list).post(super::events::create))
        .route(
            "/event-subscriptions/{id}",
            get(super::events::get).patch(super::events::update).delete(super::events::delete),
        )
        .route("/event-subscriptions/{id}/secret", get(super::events::reveal))
        .route("/event-deliveries", get(super::events::deliveries))
        .route("/event-deliveries/{id}", get(super::events::delivery))
        .route("/event-deliveries/{id}/redrive", axum::routing::post(super::events::redrive))
}

/// Middleware: requires `Authorization: Bearer <admin token>`.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = presented.filter(|t| !t.is_empty()) else {
        return Err(ApiError::unauthorized("missing 'Authorization: Bearer <admin token>' header"));
    };
    if !crate::admin_token::verify(&state.store, token).await? {
        return Err(ApiError::unauthorized(
            "the admin token is not valid (rotated? see 'wabridge admin-token rotate')",
        ));
    }
    Ok(next.run(req).await)
}

type Res<T> = Result<Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

#[derive(OpenApi)]
#[openapi(
    info(title = "wabridge admin API", description = "Registry of Meta apps, WABAs, phones and CRM portals."),
    paths(list_apps, create_app, get_app, reveal_verify_token, update_app, delete_app,
          list_wabas, create_waba, get_waba, update_waba, delete_waba,
          list_phones, create_phone, get_phone, update_phone, delete_phone, archive_phone, restore_phone,
          crate::http::calling::set_calling, crate::http::calling::calling_status,
          crate::http::api_keys::create_key, crate::http::api_keys::list_keys,
          crate::http::api_keys::revoke_key, crate::http::sends::list_sends,
          crate::http::sends::get_send, crate::http::templates::list_templates,
          crate::http::templates::sync_templates,
          crate::http::notify::notify, crate::http::notify::get_send,
          crate::http::messages::send, crate::http::media::upload, crate::http::media::download,
          list_portals, create_portal, get_portal, update_portal, delete_portal,
          crate::http::jobs::list_jobs, crate::http::jobs::redrive_job, crate::http::calls::list_calls,
          crate::http::webhook_errors::list_webhook_errors,
          crate::http::history::admin_messages, crate::http::history::admin_contacts,
          crate::http::history::admin_conversations, crate::http::history::tenant_messages,
          crate::http::history::tenant_contacts, crate::http::history::tenant_conversations,
          crate::http::stats::stats,
          crate::http::events::create, crate::http::events::list, crate::http::events::get,
          crate::http::events::reveal, crate::http::events::update, crate::http::events::delete,
          crate::http::events::deliveries, crate::http::events::delivery, crate::http::events::redrive,
          crate::http::health::healthz, crate::http::health::readyz),
    components(schemas(ErrorBody, crate::jobs::JobState)),
    modifiers(&Security, &ErrorResponses),
    security(("admin_token" = []))
)]
pub struct ApiDoc;

/// Every operation answers its errors in one JSON shape (see `super::error`): said once per operation as its
/// `default` response, so a generated client knows the shape of a 400/405/413/415 it has no explicit entry for.
struct ErrorResponses;
impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = ResponseBuilder::new()
            .description("An error: `{\"error\": {\"code\", \"message\", \"fields\": [{\"field\", \"message\"}]}}`.")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                op.responses.responses.entry("default".into()).or_insert_with(|| error.clone().into());
            }
        }
    }
}

/// Who may call what, in one place: the admin API takes the admin token (the document's default), the tenant
/// API (`/api/v1/...`) an API key, the health probes nothing. Both credentials are sent the same way,
/// `Authorization: Bearer <token>` (see [`require_admin`] and [`super::notify::require_key`]).
struct Security;
impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wbr_…")
                    .description(Some("The admin token (`wabridge admin-token rotate` makes a new one)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wbk_…")
                    .description(Some(
                        "An API key from `POST /admin/api/v1/api-keys`, as `Authorization: Bearer wbk_…`.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let security = if path.starts_with("/api/v1/") {
                Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())])
            } else if path == "/healthz" || path == "/readyz" {
                Some(Vec::new())
            } else {
                continue;
            };
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                op.security = security.clone();
            }
        }
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

// ---- apps

/// List Meta apps.
#[utoipa::path(get, path = "/admin/api/v1/apps", tag = "apps",
    responses((status = 200, body = [AppView]), (status = 401, body = ErrorBody)))]
async fn list_apps(State(s): State<AppState>) -> Res<Vec<AppView>> {
    Ok(Json(s.store.list_apps().await?.iter().map(AppView::from).collect()))
}

/// Register a Meta app. The answer holds the verify token and the callback URLs for Meta's dashboard.
#[utoipa::path(post, path = "/admin/api/v1/apps", tag = "apps", request_body = AppCreate,
    responses((status = 201, body = AppView), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_app(State(s): State<AppState>, ApiJson(input): ApiJson<AppCreate>) -> Created<AppView> {
    let app = app_create(&s, &AppInput::from(input)).await?;
    Ok((StatusCode::CREATED, Json(AppView::revealing_verify_token(&app))))
}

// The actions with more to them than one registry call, shared by the admin API and the console (which calls
// these, not copies of them).

/// Registers an app, then refreshes the webhook intake's cache of apps.
pub async fn app_create(s: &AppState, input: &AppInput) -> Result<App, ApiError> {
    let app = registry::create_app(&s.store, input).await?;
    s.apps.invalidate().await;
    Ok(app)
}

/// Changes an app, then refreshes the webhook intake's cache of apps.
pub async fn app_update(s: &AppState, id: i64, input: &AppInput) -> Result<App, ApiError> {
    let app = registry::update_app(&s.store, id, input).await?;
    s.apps.invalidate().await;
    Ok(app)
}

/// Removes an app, then refreshes the webhook intake's cache of apps.
pub async fn app_delete(s: &AppState, id: i64) -> Result<(), ApiError> {
    registry::delete_app(&s.store, id).await?;
    s.apps.invalidate().await;
    Ok(())
}

/// Show one app.
#[utoipa::path(get, path = "/admin/api/v1/apps/{id}", tag = "apps", params(("id" = i64, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
async fn get_app(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<AppView> {
    Ok(Json(AppView::from(&registry::get_app(&s.store, id).await?)))
}

/// An app's verify token in full (masked everywhere else, except in the answers that create the app or rotate
/// the token), with the callback URLs: what to paste into Meta's dashboard.
#[utoipa::path(get, path = "/admin/api/v1/apps/{id}/verify-token", tag = "apps", params(("id" = i64, Path)),
    responses((status = 200, body = VerifyTokenView), (status = 404, body = ErrorBody)))]
async fn reveal_verify_token(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<VerifyTokenView> {
    Ok(Json(VerifyTokenView::from(&registry::get_app(&s.store, id).await?)))
}

/// Change an app (only the fields given). With `rotate_verify_token`, the answer shows the new token in full.
#[utoipa::path(patch, path = "/admin/api/v1/apps/{id}", tag = "apps", params(("id" = i64, Path)), request_body = AppInput,
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_app(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<AppInput>,
) -> Res<AppView> {
    let app = app_update(&s, id, &input).await?;
    Ok(Json(if input.rotate_verify_token == Some(true) {
        AppView::revealing_verify_token(&app)
    } else {
        AppView::from(&app)
    }))
}

/// Remove an app; refused while WABAs use it.
#[utoipa::path(delete, path = "/admin/api/v1/apps/{id}", tag = "apps", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_app(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    app_delete(&s, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- WABAs

/// List WABAs.
#[utoipa::path(get, path = "/admin/api/v1/wabas", tag = "wabas", responses((status = 200, body = [WabaView])))]
async fn list_wabas(State(s): State<AppState>) -> Res<Vec<WabaView>> {
    Ok(Json(s.store.list_wabas().await?.iter().map(WabaView::from).collect()))
}

/// Register a WABA under an app.
#[utoipa::path(post, path = "/admin/api/v1/wabas", tag = "wabas", request_body = WabaCreate,
    responses((status = 201, body = WabaView), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_waba(State(s): State<AppState>, ApiJson(input): ApiJson<WabaCreate>) -> Created<WabaView> {
    let input = WabaInput::from(input);
    let w = registry::create_waba(&s.store, &input).await?;
    Ok((StatusCode::CREATED, Json(WabaView::from(&w))))
}

/// Show one WABA.
#[utoipa::path(get, path = "/admin/api/v1/wabas/{id}", tag = "wabas", params(("id" = i64, Path)),
    responses((status = 200, body = WabaView), (status = 404, body = ErrorBody)))]
async fn get_waba(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<WabaView> {
    Ok(Json(WabaView::from(&registry::get_waba(&s.store, id).await?)))
}

/// Change a WABA.
#[utoipa::path(patch, path = "/admin/api/v1/wabas/{id}", tag = "wabas", params(("id" = i64, Path)), request_body = WabaInput,
    responses((status = 200, body = WabaView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_waba(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<WabaInput>,
) -> Res<WabaView> {
    Ok(Json(WabaView::from(&registry::update_waba(&s.store, id, &input).await?)))
}

/// Remove a WABA; refused while phones use it.
#[utoipa::path(delete, path = "/admin/api/v1/wabas/{id}", tag = "wabas", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_waba(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    registry::delete_waba(&s.store, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- phones

/// List phones.
#[utoipa::path(get, path = "/admin/api/v1/phones", tag = "phones", responses((status = 200, body = [PhoneView])))]
async fn list_phones(State(s): State<AppState>) -> Res<Vec<PhoneView>> {
    Ok(Json(s.store.list_phones().await?.iter().map(PhoneView::from).collect()))
}

/// Register a phone number under a WABA, optionally bound to a portal.
#[utoipa::path(post, path = "/admin/api/v1/phones", tag = "phones", request_body = PhoneCreate,
    responses((status = 201, body = PhoneView), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_phone(State(s): State<AppState>, ApiJson(input): ApiJson<PhoneCreate>) -> Created<PhoneView> {
    let input = PhoneInput::from(input);
    let p = registry::create_phone(&s.store, &input).await?;
    Ok((StatusCode::CREATED, Json(PhoneView::from(&p))))
}

/// Show one phone.
#[utoipa::path(get, path = "/admin/api/v1/phones/{id}", tag = "phones", params(("id" = i64, Path)),
    responses((status = 200, body = PhoneView), (status = 404, body = ErrorBody)))]
async fn get_phone(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<PhoneView> {
    Ok(Json(PhoneView::from(&registry::get_phone(&s.store, id).await?)))
}

/// Change a phone: bind or unbind a portal (`"portal": null`), flags, Asterisk target.
#[utoipa::path(patch, path = "/admin/api/v1/phones/{id}", tag = "phones", params(("id" = i64, Path)), request_body = PhoneInput,
    responses((status = 200, body = PhoneView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_phone(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PhoneInput>,
) -> Res<PhoneView> {
    Ok(Json(PhoneView::from(&registry::update_phone(&s.store, id, &input).await?)))
}

/// Remove a phone.
#[utoipa::path(delete, path = "/admin/api/v1/phones/{id}", tag = "phones", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_phone(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    registry::delete_phone(&s.store, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Archive a phone (one with history cannot be removed): unbind it from its portal, switch off its SMS service
/// and keep its messages, sends and calls. Archiving an archived phone changes nothing.
#[utoipa::path(post, path = "/admin/api/v1/phones/{id}/archive", tag = "phones", params(("id" = i64, Path)),
    responses((status = 200, body = PhoneView), (status = 404, body = ErrorBody)))]
async fn archive_phone(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<PhoneView> {
    Ok(Json(PhoneView::from(&registry::archive_phone(&s.store, id).await?)))
}

/// Bring an archived phone back (still unbound: bind it to a portal with a PATCH).
#[utoipa::path(post, path = "/admin/api/v1/phones/{id}/restore", tag = "phones", params(("id" = i64, Path)),
    responses((status = 200, body = PhoneView), (status = 404, body = ErrorBody)))]
async fn restore_phone(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<PhoneView> {
    Ok(Json(PhoneView::from(&registry::restore_phone(&s.store, id).await?)))
}

// ---- portals

/// List CRM portals (uninstalled ones too, marked inactive).
#[utoipa::path(get, path = "/admin/api/v1/portals", tag = "portals", responses((status = 200, body = [PortalView])))]
async fn list_portals(State(s): State<AppState>) -> Res<Vec<PortalView>> {
    Ok(Json(s.store.list_portals().await?.iter().map(PortalView::from).collect()))
}

/// Register a portal by hand (normally the portal's app install does this).
#[utoipa::path(post, path = "/admin/api/v1/portals", tag = "portals", request_body = PortalCreate,
    responses((status = 201, body = PortalView), (status = 422, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_portal(State(s): State<AppState>, ApiJson(input): ApiJson<PortalCreate>) -> Created<PortalView> {
    let input = PortalInput::from(input);
    let p = registry::create_portal(&s.store, &input).await?;
    Ok((StatusCode::CREATED, Json(PortalView::from(&p))))
}

/// Show one portal.
#[utoipa::path(get, path = "/admin/api/v1/portals/{id}", tag = "portals", params(("id" = i64, Path)),
    responses((status = 200, body = PortalView), (status = 404, body = ErrorBody)))]
async fn get_portal(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<PortalView> {
    Ok(Json(PortalView::from(&registry::get_portal(&s.store, id).await?)))
}

/// Change a portal's endpoint or tokens.
#[utoipa::path(patch, path = "/admin/api/v1/portals/{id}", tag = "portals", params(("id" = i64, Path)), request_body = PortalInput,
    responses((status = 200, body = PortalView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_portal(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PortalInput>,
) -> Res<PortalView> {
    Ok(Json(PortalView::from(&registry::update_portal(&s.store, id, &input).await?)))
}

/// Uninstall a portal (logical delete: kept, marked inactive). Refused while phones are bound to it.
#[utoipa::path(delete, path = "/admin/api/v1/portals/{id}", tag = "portals", params(("id" = i64, Path)),
    responses((status = 200, body = PortalView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_portal(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Res<PortalView> {
    Ok(Json(PortalView::from(&registry::deactivate_portal(&s.store, id).await?)))
}
