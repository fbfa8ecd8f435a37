//! The tenant API under `/api/v1` (API keys from the admin API): template notifications in the recipient's
//! language, and reading a send back.
//!
//! `POST /api/v1/notifications` picks the template's language by a fallback chain (e.g. `pt_BR` → `pt` →
//! `en` → the template's first approved language), checks the parameters against the synced definition,
//! and commits the send before answering 202.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use serde_json::json;
use utoipa::ToSchema;

use super::error::ApiError;
use super::json::{ApiJson, ApiPath};
use super::AppState;
use crate::apikeys::Caller;
use crate::outbound::{self, NewSend, Origin};
use crate::translate::template::{self, Params, TemplateError};

/// Middleware: requires `Authorization: Bearer <API key>`.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("missing 'Authorization: Bearer <API key>' header"))?;
    let caller = crate::apikeys::authenticate(&state.store, presented)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API key is not valid or was revoked"))?;
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    state.metrics.api_calls.get_or_create(&crate::metrics::RouteLabels { route }).inc();
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationInput {
    /// Our WhatsApp number to send from (E.164), as registered in wabridge.
    pub from: String,
    /// The recipient's number (E.164).
    pub to: String,
    /// Template name.
    pub template: String,
    /// The recipient's locale, e.g. `pt_BR` or `pt-BR`. Default `en`.
    pub locale: Option<String>,
    /// The template's values: positional (`["Anna", "42"]`, header values first) or named
    /// (`{"first_name": "Anna"}`). Values are strings, numbers or booleans.
    pub parameters: Option<Parameters>,
    /// Link of the header's document, image or video, for templates with a media header.
    pub header_link: Option<String>,
    /// Suffix of the template's dynamic URL button.
    pub button_param: Option<String>,
    /// The same key sends once (a retried request returns the first send).
    pub idempotency_key: Option<String>,
}

pub use crate::message::{ParamValue, Parameters};

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationAccepted {
    /// The send's id, for `GET /api/v1/sends/{id}`.
    pub id: i64,
    /// The template language chosen.
    pub language: String,
    /// True when this idempotency key had already been used: nothing new was queued.
    pub duplicate: bool,
}

fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(field, message)
}

#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications", request_body = NotificationInput,
    responses((status = 202, body = NotificationAccepted), (status = 422, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn notify(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(input): ApiJson<NotificationInput>,
) -> Result<(StatusCode, Json<NotificationAccepted>), ApiError> {
    let from = crate::phone::normalize_e164(&input.from).map_err(|e| unprocessable("from", e.to_string()))?;
    let to = crate::phone::normalize_e164(&input.to).map_err(|e| unprocessable("to", e.to_string()))?;
    let phone = s
        .store
        .find_phone_by(crate::store::registry::PhoneKey::Number, &from)
        .await?
        .filter(|p| caller.allows_phone(p.waba_id, p.id))
        .ok_or_else(|| unprocessable("from", format!("{from} is not a number this API key may send from")))?;
    let defs = crate::templates::load(&s.store, phone.waba_id).await?;
    let locale = input.locale.clone().unwrap_or_else(|| "en".into());
    let (def, language) = template::choose(&defs, &input.template, &locale)
        .map_err(|e| unprocessable(if e.is_about_locale() { "locale" } else { "template" }, e.to_string()))?;
    let params = input.parameters.as_ref().map_or(Params::Positional(Vec::new()), Parameters::to_params);
    let t = template::build(def, &params, input.header_link.as_deref(), input.button_param.as_deref())
        .map_err(build_error)?;
    let send = NewSend {
        phone_id: phone.id,
        recipient: crate::phone::digits(&to),
        origin: Origin::Api,
        origin_ref: json!({"api_key": caller.key_id}),
        request: json!({"type": "template", "template": t}),
        idempotency_key: input.idempotency_key.as_ref().map(|k| format!("api:{}:{k}", caller.key_id)),
        api_key_id: Some(caller.key_id),
    };
    let e = commit_send(&s, &send).await?;
    Ok((StatusCode::ACCEPTED, Json(NotificationAccepted { id: e.id, language, duplicate: e.duplicate })))
}

/// Commits a tenant's send and its job, and wakes the sender.
pub async fn commit_send(s: &AppState, send: &NewSend) -> Result<outbound::Enqueued, ApiError> {
    let mut tx = s.store.begin_write().await.map_err(ApiError::internal)?;
    let e = outbound::enqueue_on(&mut tx, send, s.config.job_max_attempts).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    s.engine.wake();
    Ok(e)
}

/// A template that cannot be built from the request, as an error naming the request field to change, in the
/// API's words (the template errors themselves speak the chat command's language: `file_link:URL`).
fn build_error(e: TemplateError) -> ApiError {
    use TemplateError as E;
    match e {
        E::MissingMediaLink { name, language, kind, kind_word } => unprocessable(
            "header_link",
            format!(
                "template {name:?} ({language}) has {kind} header: give header_link, a public https link to the {kind_word}"
            ),
        ),
        E::UnexpectedMediaLink { name, language, kind } => unprocessable(
            "header_link",
            format!("template {name:?} ({language}) has {kind} header, so header_link cannot be used with it; remove header_link"),
        ),
        E::InvalidMediaLink { name, language, link } => unprocessable(
            "header_link",
            format!("{link:?} is not a public http or https address, so it cannot be the header file of template {name:?} ({language})"),
        ),
        E::MissingButtonParam { name, language, button } => unprocessable(
            "button_param",
            format!(
                "template {name:?} ({language}) has a link button (button {button}) whose address ends in a variable: \
                 give button_param, the text for the end of the link"
            ),
        ),
        E::UnexpectedButtonParam { name, language } => unprocessable(
            "button_param",
            format!("template {name:?} ({language}) has no link button with a variable part, so button_param cannot be used with it; remove button_param"),
        ),
        E::MissingCode { name, language } => unprocessable(
            "button_param",
            format!("template {name:?} ({language}) has a one-time-password button but no code was given: give the code as button_param or as the first value of parameters"),
        ),
        E::UnsupportedHeader { .. } | E::UnknownTemplate { .. } | E::LanguageMissing { .. } | E::NotApproved { .. } => {
            unprocessable("template", e.to_string())
        }
        e => unprocessable("parameters", e.to_string()),
    }
}

/// A send made with this API key.
#[utoipa::path(get, path = "/api/v1/sends/{id}", tag = "notifications", params(("id" = i64, Path)),
    responses((status = 200, body = outbound::Outbound), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_send(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<outbound::Outbound>, ApiError> {
    let out = outbound::get(&s.store, id)
        .await?
        .filter(|o| o.api_key_id == Some(caller.key_id))
        .ok_or_else(|| ApiError::not_found(format!("no send {id} made with this API key")))?;
    Ok(Json(out))
}
