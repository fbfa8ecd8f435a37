//! A JSON body extractor whose rejections are JSON errors that say what was wrong:
//! 413 over the body limit, 415 for a non-JSON content type, 400 for malformed JSON,
//! 422 naming the field for a wrong type or an unknown field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(ct) = ct {
            if !ct.starts_with("application/json") && !ct.contains("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("expected Content-Type: application/json, got {ct}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is larger than the limit")
    } else {
        ApiError::bad_request(format!("could not read the request body: {r}"))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                // serde names an unknown field in its message; otherwise the path names the field.
                let field = msg
                    .strip_prefix("unknown field `")
                    .and_then(|m| m.split('`').next())
                    .map(String::from)
                    .unwrap_or_else(|| if path == "." { "body".into() } else { path.clone() });
                let clean = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                ApiError::field(field, clean)
            }
            _ => ApiError::bad_request(format!("request body is not valid JSON: {inner}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: Option<i64>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<T>(br#"{"a":"x"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.fields[0].field, "a");
        let e = parse_json::<T>(br#"{"b":1}"#).unwrap_err();
        assert_eq!(e.fields[0].field, "b");
        let e = parse_json::<T>(br#"{"a":"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<T>(b"").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
