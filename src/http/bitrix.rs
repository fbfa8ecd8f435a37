//! Routes Bitrix24 calls: `/api/bitrix/install`, `/api/bitrix/events`, `/api/bitrix/placement`,
//! `/api/sms/{code}` and the signed media links `/media/{phone}/{media}`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::json::{ApiPath, ApiQuery};
use super::AppState;
use crate::bitrix::event::{is_install, Event, Request};
use crate::crm::events::{self, EventError, Handled};

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::BadRequest(m) => ApiError::bad_request(m),
            EventError::Unauthorized(m) => ApiError::unauthorized(m),
            EventError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EventError::NotFound(m) => ApiError::not_found(m),
            EventError::Unprocessable(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m),
            EventError::Store(s) => s.into(),
        }
    }
}

fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    crate::bitrix::form::parse(ct, body).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn typed(v: &Value) -> Result<Request, ApiError> {
    crate::bitrix::event::parse(v).map_err(|e| ApiError::field(&e.field, e.problem))
}

pub async fn install(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let v = parse(&headers, &body)?;
    if !is_install(&v) {
        return handle_event(&s, &v).await;
    }
    let Event::Install(install) = typed(&v)?.event else {
        return Err(ApiError::bad_request("not an install request"));
    };
    let (portal, new) = events::install(&s.store, &install).await?;
    // Phones already bound to this portal (a reinstall) get their lines bound again.
    for p in s.store.list_phones().await? {
        if p.portal_id == Some(portal.id) {
            crate::crm::after_phone_change(&s.store, Some(&p), &p).await?;
        }
    }
    s.engine.wake();
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    let mut answer = json!({"installed": true, "portal": portal.id, "member_id": portal.member_id});
    if let Some(warning) = s.config.bitrix_install_warning() {
        tracing::warn!(portal = portal.id, "Bitrix24 install accepted, but {warning}");
        answer["warnings"] = json!([warning]);
    }
    Ok((status, Json(answer)).into_response())
}

pub async fn event(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let v = parse(&headers, &body)?;
    if is_install(&v) {
        return install(State(s), headers, body).await;
    }
    handle_event(&s, &v).await
}

/// An event: the portal is authenticated first (constant time), then what it says is read.
async fn handle_event(s: &AppState, v: &Value) -> Result<Response, ApiError> {
    let portal = events::authenticate(&s.store, &crate::bitrix::event::auth_of(v)).await?;
    let request = typed(v)?;
    let handled = events::event(&s.store, &portal, &s.config.bitrix_connector_id, &request.event).await?;
    // Events queue `crm.reply` jobs (generic); their sends wake the lanes when the reply has run.
    s.engine.wake_workers();
    let (status, what) = match handled {
        Handled::Queued(n) => (StatusCode::OK, json!({"accepted": n})),
        Handled::Duplicate => (StatusCode::OK, json!({"accepted": 0, "duplicate": true})),
        Handled::Noted => (StatusCode::OK, json!({"noted": true})),
        Handled::Ignored => (StatusCode::OK, json!({"ignored": true})),
    };
    Ok((status, Json(what)).into_response())
}

/// The connector's settings page (`PLACEMENT_HANDLER`): lines are managed from wabridge, so it only says so.
pub async fn placement() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>wabridge</title></head><body>\
         <h3>WhatsApp via wabridge</h3><p>This line is connected and managed by wabridge: bind a WhatsApp number \
         to this portal in wabridge and its line <code>wabridge_&lt;number&gt;</code> is created and connected \
         automatically.</p></body></html>",
    )
}

pub async fn sms(
    State(s): State<AppState>,
    ApiPath(code): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = parse(&headers, &body)?;
    let (id, failure) = events::sms(&s.bridge, &code, &v).await?;
    s.engine.wake();
    Ok(match failure {
        None => (StatusCode::OK, Json(json!({"accepted": true, "send": id}))).into_response(),
        Some(reason) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_sendable", reason).into_response(),
    })
}

#[derive(serde::Deserialize)]
pub struct MediaQuery {
    exp: i64,
    sig: String,
    #[serde(default)]
    name: String,
}

pub async fn media(
    State(s): State<AppState>,
    ApiPath((phone_id, media_id)): ApiPath<(i64, String)>,
    ApiQuery(q): ApiQuery<MediaQuery>,
) -> Result<Response, ApiError> {
    let b = &s.bridge;
    let now_s = crate::store::now_ms() / 1000;
    if let Err(why) = crate::crm::media::verify(&b.media_key, phone_id, &media_id, q.exp, &q.name, &q.sig, now_s) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", why));
    }
    let phone = s.store.get_phone(phone_id).await?.ok_or_else(|| ApiError::not_found("no such media"))?;
    let disposition = format!("inline; filename=\"{}\"", q.name.replace(['"', '\\', '\r', '\n'], "_"));
    if let Some((mime, path)) = crate::crm::media::local(&s.store, phone_id, &media_id).await? {
        let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::not_found("the media file was pruned"))?;
        let mime = mime.unwrap_or_else(|| "application/octet-stream".into());
        return Ok(([(header::CONTENT_TYPE, mime), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response());
    }
    if !phone.file_proxy {
        return Err(ApiError::not_found("the media is not kept here (pruned, or never downloaded)"));
    }
    // file_proxy: stream from Meta on demand.
    let token = s
        .store
        .graph_token(phone.waba_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "upstream", e.to_string()))?;
    let from = crate::channel::Number { id: &phone.phone_number_id, token: &token };
    let media = crate::channel::Channel::fetch_media(&b.channel, from, &media_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "upstream", e.to_string()))?;
    let mime = media.mime_type.unwrap_or_else(|| "application/octet-stream".into());
    let body = Body::from_stream(media.body.bytes_stream());
    Ok(([(header::CONTENT_TYPE, mime), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}
