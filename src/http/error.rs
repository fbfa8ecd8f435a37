//! The one place where errors become HTTP answers. Every error answer is JSON:
//! `{"error": {"code": "...", "message": "...", "fields": [{"field": "...", "message": "..."}]}}`.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::registry::{FieldError, RegistryError};
use crate::store::StoreError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`, `conflict`, `unauthorized`.
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// Meta's error, when the answer is about a refused Graph API request (`graph_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphErrorDetail>,
}

/// A Graph API error as Meta sent it, with what it means.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GraphErrorDetail {
    /// Meta's error code, e.g. 138015.
    pub code: i64,
    /// Meta's message, e.g. `(#138015) …`.
    pub message: String,
    /// Meta's `type`, e.g. `OAuthException`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Meta's `error_data.details`.
    pub details: Option<String>,
    /// What the code means and what to do.
    pub explanation: Option<String>,
    pub fbtrace_id: Option<String>,
    /// The HTTP status Meta answered with.
    pub http_status: u16,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub graph: Option<Box<GraphErrorDetail>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), fields: Vec::new(), graph: None }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let f = FieldError { field: field.into(), message: message.into() };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("{}: {}", f.field, f.message),
            fields: vec![f],
            graph: None,
        }
    }
    /// 502: Meta refused a Graph API request; the answer carries Meta's code, message and the explanation.
    pub fn graph(message: impl Into<String>, detail: GraphErrorDetail) -> Self {
        ApiError { graph: Some(Box::new(detail)), ..Self::new(StatusCode::BAD_GATEWAY, "graph_error", message) }
    }
    /// The same error answered with another status and code (e.g. a path parameter: 400, not 422).
    pub fn with_status(self, status: StatusCode, code: &'static str) -> Self {
        ApiError { status, code, ..self }
    }
    pub fn internal(err: impl std::fmt::Display) -> Self {
        // The detail goes to the log; the caller gets a generic message.
        tracing::error!(error = %err, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                fields: self.fields,
                graph: self.graph.map(|g| *g),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Validation(fields) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "validation_failed",
                message: RegistryError::Validation(fields.clone()).to_string(),
                fields,
                graph: None,
            },
            RegistryError::NotFound { .. } => ApiError::not_found(e.to_string()),
            RegistryError::Conflict { field, message } => ApiError {
                status: StatusCode::CONFLICT,
                code: "conflict",
                fields: field
                    .map(|f| vec![FieldError { field: f.into(), message: message.clone() }])
                    .unwrap_or_default(),
                message,
                graph: None,
            },
            RegistryError::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

/// Middleware over the whole router: an error answer that is not JSON yet (axum's own 405 for a method a route
/// does not have, a rejection of an extractor that is not ours, a layer's refusal) becomes the JSON error shape
/// above, keeping its status, its text as the message, and the headers that matter (`Allow`, `Retry-After`,
/// `WWW-Authenticate`). Our extractors name the field; this makes sure nothing else escapes as text/plain.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    // HTML: the console's own error pages, written for a person.
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, default) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
            ("method_not_allowed", format!("method {method} is not allowed here; allowed: {allow}"))
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is larger than the limit".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported Content-Type".into()),
        StatusCode::UNAUTHORIZED => ("unauthorized", "unauthorized".into()),
        StatusCode::FORBIDDEN => ("forbidden", "forbidden".into()),
        StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", "too many requests; retry later".into()),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "service unavailable; retry later".into()),
        s if s.is_client_error() => ("bad_request", s.canonical_reason().unwrap_or("bad request").to_string()),
        s => ("internal", s.canonical_reason().unwrap_or("internal error").to_string()),
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED || text.is_empty() { default } else { text };
    let mut out = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::CONNECTION] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
