//! Extractors whose rejections are JSON errors that name what was wrong, so every handler gets the same
//! answers without mapping rejections itself:
//!
//! - [`ApiJson`]: 415 unless `Content-Type: application/json`, 413 over the body limit, 400 for malformed
//!   JSON, 422 naming the field (`a.b`, `items[2]`) for a missing field, a wrong type or an unknown field;
//! - [`ApiPath`]: 400 naming the path parameter (`id`, `phone`) that does not parse;
//! - [`ApiQuery`]: 422 naming the query parameter (`limit`, `exp`) that is missing or does not parse.
//!
//! Whatever else axum refuses (405, a body over the limit read by another extractor) is turned into the same
//! JSON shape by [`super::error::json_errors`].

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let is_json = ct.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
        });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                match ct {
                    Some(ct) => format!("expected Content-Type: application/json, got {ct}"),
                    None => "expected Content-Type: application/json; the request has no Content-Type".into(),
                },
            ));
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

/// The field a serde error is about: serde_path_to_error's path (`.` at the top; it ends at an unknown field's
/// name), extended by the name serde gives in "missing field `x`" (there the path stops at the object that
/// lacks it). `whole` names the input itself when the error is about all of it (`body`, `query`).
pub fn serde_field(path: &str, message: &str, whole: &str) -> String {
    let at_top = path.is_empty() || path == ".";
    let named =
        message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()).filter(|name| !name.is_empty());
    match (named, at_top) {
        (Some(name), true) => name.to_string(),
        (Some(name), false) => format!("{path}.{name}"),
        (None, true) => whole.to_string(),
        (None, false) => path.to_string(),
    }
}

/// serde's message without serde_json's position suffix, in the API's words where serde's are obscure.
fn serde_message(message: &str) -> String {
    let msg = message.split(" at line ").next().unwrap_or(message);
    match msg {
        "invalid digit found in string" | "cannot parse integer from empty string" => "must be an integer".into(),
        "number too large to fit in target type" | "number too small to fit in target type" => {
            "must be an integer in range".into()
        }
        "provided string was not `true` or `false`" => "must be true or false".into(),
        m if m.starts_with("missing field `") => "is required".into(),
        m => m.to_string(),
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
                ApiError::field(serde_field(&path, &msg, "body"), serde_message(&msg))
            }
            _ => ApiError::bad_request(format!("request body is not valid JSON: {inner}")),
        }
    })
}

/// Path parameters; a value that does not parse is a 400 naming the parameter as the route declares it.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => {
                let names: Vec<String> = match RawPathParams::from_request_parts(parts, state).await {
                    Ok(raw) => raw.iter().map(|(k, _)| k.to_owned()).collect(),
                    Err(_) => Vec::new(),
                };
                Err(path_rejection(rejection, &names))
            }
        }
    }
}

fn expected(ty: &str) -> &'static str {
    match ty {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" => "an integer",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        _ => "a valid value",
    }
}

fn path_rejection(r: PathRejection, names: &[String]) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = r else {
        // MissingPathParams: a route/extractor mismatch, a bug of ours.
        return ApiError::internal(r.body_text());
    };
    let invalid = |field: &str, value: &str, ty: &str| {
        ApiError::field(field, format!("must be {}, got {value:?}", expected(ty)))
            .with_status(StatusCode::BAD_REQUEST, "bad_request")
    };
    let only = names.first().map(String::as_str).unwrap_or("path");
    match e.into_kind() {
        ErrorKind::ParseErrorAtKey { key, value, expected_type } => invalid(&key, &value, expected_type),
        ErrorKind::ParseErrorAtIndex { index, value, expected_type } => {
            invalid(names.get(index).map(String::as_str).unwrap_or("path"), &value, expected_type)
        }
        ErrorKind::ParseError { value, expected_type } => invalid(only, &value, expected_type),
        ErrorKind::InvalidUtf8InPathParam { key } => {
            ApiError::field(key, "is not valid UTF-8").with_status(StatusCode::BAD_REQUEST, "bad_request")
        }
        ErrorKind::DeserializeError { key, value, message } => {
            ApiError::field(key, format!("{message} (got {value:?})"))
                .with_status(StatusCode::BAD_REQUEST, "bad_request")
        }
        other => ApiError::internal(other),
    }
}

/// Query-string parameters; a missing or unparsable one is a 422 naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        ApiError::field(serde_field(&path, &msg, "query"), serde_message(&msg))
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

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        from: String,
        inner: Option<Inner>,
        list: Option<Vec<Inner>>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: i64,
        kind: Option<Kind>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        One,
    }

    fn field_of<X: DeserializeOwned + std::fmt::Debug>(body: &str) -> (StatusCode, String, String) {
        let e = parse_json::<X>(body.as_bytes()).unwrap_err();
        let f = e.fields.first().map(|f| (f.field.clone(), f.message.clone())).unwrap_or_default();
        (e.status, f.0, f.1)
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

    #[test]
    fn missing_unknown_and_nested_fields_are_named_by_path() {
        let (s, f, m) = field_of::<Outer>("{}");
        assert_eq!((s, f.as_str(), m.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "from", "is required"));
        assert_eq!(field_of::<Outer>(r#"{"from":"a","inner":{}}"#).1, "inner.x");
        assert_eq!(field_of::<Outer>(r#"{"from":"a","inner":{"x":1,"y":2}}"#).1, "inner.y");
        assert_eq!(field_of::<Outer>(r#"{"from":"a","inner":{"x":"1"}}"#).1, "inner.x");
        let (_, f, m) = field_of::<Outer>(r#"{"from":"a","inner":{"x":1,"kind":"two"}}"#);
        assert_eq!(f, "inner.kind");
        assert!(m.contains("unknown variant `two`"), "{m}");
        assert_eq!(field_of::<Outer>(r#"{"from":"a","list":[{"x":1},{}]}"#).1, "list[1].x");
        assert_eq!(field_of::<Outer>(r#""text""#).1, "body");
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Q {
        exp: i64,
        limit: Option<i64>,
        on: Option<bool>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = parse_query::<Q>("limit=5").unwrap_err();
        assert_eq!((e.fields[0].field.as_str(), e.fields[0].message.as_str()), ("exp", "is required"));
        let e = parse_query::<Q>("exp=1&limit=abc").unwrap_err();
        assert_eq!((e.fields[0].field.as_str(), e.fields[0].message.as_str()), ("limit", "must be an integer"));
        let e = parse_query::<Q>("exp=x").unwrap_err();
        assert_eq!(e.fields[0].field, "exp");
        let e = parse_query::<Q>("exp=1&on=maybe").unwrap_err();
        assert_eq!(e.fields[0].field, "on");
        assert!(parse_query::<Q>("exp=1").is_ok());
    }
}
