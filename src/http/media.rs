//! Media through the tenant API, so tenants never see Meta's tokens:
//!
//! - `POST /api/v1/media` (`multipart/form-data`: `from`, our number; `file`, with its `Content-Type`; optionally
//!   `type`, the MIME type when the file part has none): the type and size are checked against Meta's table first
//!   (`message::media`; a file over its limit is refused while it is being read), then the file is uploaded to
//!   Meta's `/{phone-number-id}/media` with the number's token; 201 with Meta's media id, for sending by `id`.
//! - `GET /api/v1/media/{id}?from=<our number>`: Meta's `GET /{media-id}` and the download, with the number's
//!   token, streamed back with Meta's `Content-Type`.
//!
//! Both check the key's scope on `from` (403 outside it).

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::json::{ApiPath, ApiQuery};
use super::messages::number_in_scope;
use super::AppState;
use crate::apikeys::Caller;
use crate::message::media as table;

/// The largest upload body: the largest file Meta takes (100 MB) and room for the form's other fields.
pub const BODY_LIMIT: usize = table::LARGEST + 64 * 1024;

/// The upload form (documentation of the multipart fields).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct MediaUpload {
    /// Our WhatsApp number (E.164) whose token uploads the file; the media can be sent from this number.
    from: String,
    /// The file, with its MIME type as the part's `Content-Type` (Meta's table: image/jpeg, image/png,
    /// image/webp (sticker), video/mp4, video/3gpp, audio/aac, audio/amr, audio/mpeg, audio/mp4, audio/ogg (OPUS),
    /// text/plain, application/pdf, Word, Excel, PowerPoint).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The MIME type, when the file part carries none.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MediaUploaded {
    /// Meta's media id: send it as `image.id`, `document.id`, ... (valid 30 days).
    pub id: String,
    /// The message type this file can be sent as.
    #[serde(rename = "type")]
    pub kind: crate::message::Kind,
    pub mime_type: String,
    pub file_size: usize,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MediaQuery {
    /// Our WhatsApp number (E.164) whose token reads the media.
    pub from: String,
}

struct FilePart {
    bytes: Vec<u8>,
    mime: Option<String>,
    name: String,
}

/// Upload a file to Meta for sending by id.
#[utoipa::path(post, path = "/api/v1/media", tag = "messages",
    request_body(content = MediaUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = MediaUploaded), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, description = "a missing field, a type Meta does not take, or a file over its type's limit", body = ErrorBody),
              (status = 502, description = "Meta refused the upload", body = ErrorBody)))]
pub async fn upload(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Result<(StatusCode, Json<MediaUploaded>), ApiError> {
    let mut form = multipart(req).await?;
    let mut from: Option<String> = None;
    let mut declared: Option<String> = None;
    let mut file: Option<FilePart> = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "from" => from = Some(small_text(field, "from").await?),
            "type" => declared = Some(small_text(field, "type").await?),
            "messaging_product" => {
                small_text(field, "messaging_product").await?;
            }
            "file" => {
                if file.is_some() {
                    return Err(ApiError::field("file", "give one file per upload"));
                }
                let part_type = field.content_type().map(str::to_string);
                let mime = declared.clone().or(part_type).filter(|m| {
                    let e = table::essence(m);
                    e != "application/octet-stream" && !e.is_empty()
                });
                let file_name = field.file_name().unwrap_or("file").chars().take(240).collect::<String>();
                // The limit of the declared type while reading; the largest any type allows when it comes later.
                let (kind, max) = match &mime {
                    Some(m) => table::limit(m).map_err(|e| ApiError::field("file", e))?,
                    None => (crate::message::Kind::Document, table::LARGEST),
                };
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > max {
                        let m = mime.as_deref().map(table::essence).unwrap_or_else(|| "a file".into());
                        return Err(ApiError::field(
                            "file",
                            table::too_large(&m, kind, max, bytes.len() + chunk.len()),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(FilePart { bytes, mime, name: file_name });
            }
            other => return Err(ApiError::field(other, "unknown field; the form takes from, file and type")),
        }
    }
    let from = from.ok_or_else(|| ApiError::field("from", "is required: the number (E.164) to upload for"))?;
    let from = crate::phone::normalize_e164(&from).map_err(|e| ApiError::field("from", e.to_string()))?;
    let file = file.ok_or_else(|| ApiError::field("file", "is required: the file, with its Content-Type"))?;
    let mime = file.mime.or(declared).ok_or_else(|| {
        ApiError::field("type", "the file's MIME type is needed: set the file part's Content-Type or the type field")
    })?;
    let mime = table::essence(&mime);
    let kind = table::check(&mime, &file.bytes).map_err(|e| ApiError::field("file", e))?;
    let phone = number_in_scope(&s, &caller, "from", &from).await?;
    let token = s.store.graph_token(phone.waba_id).await.map_err(token_error)?;
    let size = file.bytes.len();
    let client = &s.bridge.graph;
    let id = client
        .upload_media(&phone.phone_number_id, &token, file.bytes, &mime, &file.name)
        .await
        .map_err(|e| ApiError::from_graph("Meta refused the upload", e))?;
    tracing::info!(phone = phone.id, kind = kind.as_str(), bytes = size, "media uploaded for a tenant");
    s.metrics.media_uploaded.inc();
    if let Err(e) = crate::store::apikeys::count_media_upload(&s.store, caller.key_id).await {
        tracing::warn!(error = %e, "could not count a media upload for its API key");
    }
    Ok((StatusCode::CREATED, Json(MediaUploaded { id, kind, mime_type: mime, file_size: size })))
}

/// Download media (uploaded, or a customer's) through wabridge.
#[utoipa::path(get, path = "/api/v1/media/{id}", tag = "messages",
    params(("id" = String, Path, description = "Meta's media id"), MediaQuery),
    responses((status = 200, description = "the file, with its Content-Type", content_type = "application/octet-stream"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 502, description = "Meta refused or did not answer", body = ErrorBody)))]
pub async fn download(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<MediaQuery>,
) -> Result<Response, ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            ApiError::field("id", "must be a media id (digits)").with_status(StatusCode::BAD_REQUEST, "bad_request")
        );
    }
    let from = crate::phone::normalize_e164(&q.from).map_err(|e| ApiError::field("from", e.to_string()))?;
    let phone = number_in_scope(&s, &caller, "from", &from).await?;
    let token = s.store.graph_token(phone.waba_id).await.map_err(token_error)?;
    let client = &s.bridge.graph;
    let info = client
        .media_info(&id, &phone.phone_number_id, &token)
        .await
        .map_err(|e| ApiError::from_graph("Meta could not find the media", e))?;
    let resp = client.download(&info.url, &token).await.map_err(|e| ApiError::from_graph("the download failed", e))?;
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(info.mime_type)
        .unwrap_or_else(|| "application/octet-stream".into());
    let length = resp.content_length();
    let mut out = Body::from_stream(resp.bytes_stream()).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&content_type) {
        out.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Some(n) = length {
        out.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(n));
    }
    Ok(out)
}

/// The form, or 415 unless the body is `multipart/form-data`.
async fn multipart(req: Request) -> Result<Multipart, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if ct.as_deref().is_none_or(|ct| table::essence(ct) != "multipart/form-data") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            match ct {
                Some(ct) => format!("expected Content-Type: multipart/form-data, got {ct}"),
                None => "expected Content-Type: multipart/form-data; the request has no Content-Type".into(),
            },
        ));
    }
    Multipart::from_request(req, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))
}

async fn small_text(field: axum::extract::multipart::Field<'_>, name: &str) -> Result<String, ApiError> {
    let bytes = field.bytes().await.map_err(multipart_error)?;
    if bytes.len() > 256 {
        return Err(ApiError::field(name, "at most 256 bytes"));
    }
    String::from_utf8(bytes.to_vec())
        .map(|s| s.trim().to_string())
        .map_err(|_| ApiError::field(name, "must be UTF-8 text"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the upload is larger than {} bytes (Meta takes files of at most 100 MB)", BODY_LIMIT),
        );
    }
    ApiError::bad_request(format!("the multipart/form-data body could not be read: {}", e.body_text()))
}

fn token_error(e: crate::store::registry::GraphTokenError) -> ApiError {
    match e {
        crate::store::registry::GraphTokenError::Store(s) => s.into(),
        other => ApiError::new(StatusCode::CONFLICT, "no_access_token", other.to_string()),
    }
}
