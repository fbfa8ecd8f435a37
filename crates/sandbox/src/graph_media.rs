//! Media endpoints of the Graph sandbox (`shared/reference/meta-messaging.md` §6):
//!
//! - `POST /{version}/{phone-number-id}/media`, `multipart/form-data` with `messaging_product=whatsapp`, `file`
//!   and `type` (the MIME type; the file part's own `Content-Type` when `type` is absent) → `{"id":"…"}`.
//!   Missing fields: 131008; a MIME type outside Meta's table, an empty file or one over the type's size limit:
//!   131053. The body may be up to [`MAX_UPLOAD_BODY`] bytes.
//! - `GET /{version}/{media-id}[?phone_number_id=]` →
//!   `{"messaging_product","url","mime_type","sha256" (base64),"file_size" (string),"id"}`; with
//!   `phone_number_id`, only the number that owns the media sees it. The URL points to [`DOWNLOAD_PATH`] on this
//!   server (`?mid=…&ext=…&hash=…`, shaped like Meta's lookaside URLs) and is valid 5 minutes
//!   ([`GraphSandbox::set_media_url_ttl`]); each lookup gives a fresh one. A template id is answered with the
//!   template (Meta's `GET /{template-id}`).
//! - `GET <url>` needs a valid bearer token (401 with the 190 envelope otherwise) and a URL that is known,
//!   unexpired and of media still there (404 otherwise); it answers the bytes with their `Content-Type`.
//!   Successful downloads are counted ([`GraphSandbox::media_downloads`]).
//! - `DELETE /{version}/{media-id}[?phone_number_id=]` → `{"success":true}`.
//!
//! Unknown ids get Meta's `GraphMethodException` 100/33 (HTTP 400). Media never expires by age here.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::graph::{
    bearer, check_token, documented, envelope, error_response, gate, invalid, is_object_id, lock, no_such_object,
    ok_headers, record, refuse, GraphSandbox, Shared,
};
use crate::token::random_token;

/// The largest upload body accepted (documents go up to 100 MB, plus the multipart framing).
pub const MAX_UPLOAD_BODY: usize = 101 * 1024 * 1024;
/// Where media URLs point (as Meta's `https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=…`).
pub const DOWNLOAD_PATH: &str = "/whatsapp_business/attachments/";
/// How long a media URL stays valid.
pub const URL_TTL: Duration = Duration::from_secs(300);

const MB: usize = 1024 * 1024;

/// Meta's supported MIME types and their size limits (stickers: the animated limit).
pub const SUPPORTED: &[(&str, usize)] = &[
    ("audio/aac", 16 * MB),
    ("audio/amr", 16 * MB),
    ("audio/mpeg", 16 * MB),
    ("audio/mp4", 16 * MB),
    ("audio/ogg", 16 * MB),
    ("text/plain", 100 * MB),
    ("application/pdf", 100 * MB),
    ("application/msword", 100 * MB),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", 100 * MB),
    ("application/vnd.ms-excel", 100 * MB),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 100 * MB),
    ("application/vnd.ms-powerpoint", 100 * MB),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", 100 * MB),
    ("image/jpeg", 5 * MB),
    ("image/png", 5 * MB),
    ("image/webp", STICKER_ANIMATED),
    ("video/mp4", 16 * MB),
    ("video/3gpp", 16 * MB),
];

const STICKER_ANIMATED: usize = 500 * 1024;
const STICKER_STATIC: usize = 100 * 1024;

/// A WebP with the animation flag set (`RIFF….WEBPVP8X`, flags byte bit 1).
pub fn animated_webp(b: &[u8]) -> bool {
    b.len() > 20 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" && &b[12..16] == b"VP8X" && b[20] & 0x02 != 0
}

/// The size limit of a MIME type (parameters such as `; codecs=opus` ignored), `None` when Meta does not take it.
pub fn size_limit(mime: &str) -> Option<usize> {
    let base = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    SUPPORTED.iter().find(|(m, _)| *m == base).map(|(_, max)| *max)
}

#[derive(Debug, Clone)]
struct Media {
    bytes: Bytes,
    mime: String,
    pnid: String,
    sha256: String,
}

#[derive(Debug)]
pub(super) struct MediaStore {
    items: HashMap<String, Media>,
    /// URL hash → (media id, valid until).
    urls: HashMap<String, (String, Instant)>,
    downloads: HashMap<String, usize>,
    ttl: Duration,
}

impl Default for MediaStore {
    fn default() -> MediaStore {
        MediaStore { items: HashMap::new(), urls: HashMap::new(), downloads: HashMap::new(), ttl: URL_TTL }
    }
}

impl MediaStore {
    fn add(&mut self, bytes: Bytes, mime: &str, pnid: &str) -> String {
        let id = loop {
            let id = rand::thread_rng().gen_range(1_000_000_000_000_000u64..9_000_000_000_000_000u64).to_string();
            if !self.items.contains_key(&id) {
                break id;
            }
        };
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        self.items.insert(id.clone(), Media { bytes, mime: mime.to_string(), pnid: pnid.to_string(), sha256 });
        id
    }

    /// A fresh download URL for `id`, valid for the store's TTL.
    fn issue_url(&mut self, base_url: &str, id: &str) -> String {
        let now = Instant::now();
        self.urls.retain(|_, (_, until)| *until > now);
        let hash = random_token(32);
        self.urls.insert(hash.clone(), (id.to_string(), now + self.ttl));
        let expiry =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + self.ttl.as_secs();
        format!("{base_url}{DOWNLOAD_PATH}?mid={id}&ext={expiry}&hash={hash}")
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let j = hay[i..=hay.len() - needle.len()].iter().position(|b| *b == first)? + i;
        if hay[j..].starts_with(needle) {
            return Some(j);
        }
        i = j + 1;
    }
    None
}

/// Splits `a; b="x;y"; c` on the semicolons outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses a `multipart/form-data` body (RFC 7578): parts with their `name`, `filename`, `Content-Type`, data.
pub fn parse_multipart(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}").into_bytes();
    let mut between = b"\r\n".to_vec();
    between.extend_from_slice(&delim);
    let mut pos = find(body, &delim, 0).ok_or("multipart body without its boundary")? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        let line_end = find(body, b"\r\n", pos).ok_or("multipart body ends inside a boundary line")?;
        pos = line_end + 2;
        let (head, content_start) = if body[pos..].starts_with(b"\r\n") {
            (&body[pos..pos], pos + 2)
        } else {
            let end = find(body, b"\r\n\r\n", pos).ok_or("multipart part without the end of its headers")?;
            (&body[pos..end], end + 4)
        };
        let content_end = find(body, &between, content_start).ok_or("multipart body without its closing boundary")?;
        let head = std::str::from_utf8(head).map_err(|_| "multipart part headers are not UTF-8")?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body.slice(content_start..content_end),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in split_params(v).into_iter().skip(1) {
                    let Some((pk, pv)) = p.split_once('=') else { continue };
                    let pv = pv.trim().trim_matches('"').to_string();
                    match pk.trim().to_ascii_lowercase().as_str() {
                        "name" => part.name = pv,
                        "filename" => part.filename = Some(pv),
                        _ => {}
                    }
                }
            }
        }
        parts.push(part);
        pos = content_end + between.len();
    }
}

fn text_part<'a>(parts: &'a [Part], name: &str) -> Option<&'a str> {
    parts.iter().find(|p| p.name == name).and_then(|p| std::str::from_utf8(&p.data).ok()).map(str::trim)
}

/// `POST /{version}/{phone-number-id}/media`.
pub(super) async fn upload(
    State(shared): State<Shared>,
    Path((version, pnid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = lock(&shared);
    if let Err(r) = gate(&mut inner, "post", &version, format!("/{version}/{pnid}/media"), &query, &headers, None) {
        return *r;
    }
    if !is_object_id(&pnid) {
        return no_such_object("POST", &pnid);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(boundary) = boundary(content_type) else {
        return invalid("The request must be multipart/form-data".into());
    };
    let parts = match parse_multipart(&body, &boundary) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    match text_part(&parts, "messaging_product") {
        None => return refuse(131008, Some("The parameter messaging_product is required.")),
        Some("whatsapp") => {}
        Some(other) => return invalid(format!("Param messaging_product must be one of {{whatsapp}}, got {other}.")),
    }
    let Some(file) = parts.iter().find(|p| p.name == "file") else {
        return refuse(131008, Some("The parameter file is required."));
    };
    let mime = text_part(&parts, "type").map(String::from).or_else(|| file.content_type.clone());
    let Some(mime) = mime.filter(|m| !m.is_empty()) else {
        return refuse(131008, Some("The parameter type is required."));
    };
    let Some(max) = size_limit(&mime) else {
        return refuse(131053, Some(&format!("Param file must be a file of a supported type; received '{mime}'.")));
    };
    if file.data.is_empty() {
        return refuse(131053, Some("The uploaded file is empty."));
    }
    // Stickers: 500 KB animated, 100 KB static (the animation flag of WebP's VP8X chunk).
    let is_webp = mime.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("image/webp"));
    let max = if is_webp && !animated_webp(&file.data) { STICKER_STATIC } else { max };
    if file.data.len() > max {
        let details = format!("File size {} exceeds the {max} bytes allowed for {mime}.", file.data.len());
        return refuse(131053, Some(&details));
    }
    let id = inner.media.add(file.data.clone(), &mime, &pnid);
    (ok_headers(&version), Json(json!({"id": id}))).into_response()
}

fn phone_param(query: &Option<String>) -> Option<String> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "phone_number_id")
        .map(|(_, v)| v.into_owned())
}

/// `GET /{version}/{id}`: a registered phone number (its fields, `graph_health`), a media id (its URL) or a
/// template id.
pub(super) async fn get_object(
    State(shared): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&shared);
    let app = match gate(&mut inner, "get", &version, format!("/{version}/{id}"), &query, &headers, None) {
        Ok((_, app)) => app,
        Err(r) => return *r,
    };
    if inner.numbers.contains_key(&id) {
        return crate::graph_health::phone_node(&inner, &version, &id, &query, &app);
    }
    let owner = phone_param(&query);
    if let Some(m) = inner.media.items.get(&id).cloned() {
        if owner.is_some_and(|o| o != m.pnid) {
            return no_such_object("GET", &id);
        }
        let base = inner.base_url.clone();
        let url = inner.media.issue_url(&base, &id);
        let answer = json!({"messaging_product": "whatsapp", "url": url, "mime_type": m.mime, "sha256": m.sha256,
                            "file_size": m.bytes.len().to_string(), "id": id});
        return (ok_headers(&version), Json(answer)).into_response();
    }
    if let Some(t) = inner.templates.find_by_id(&id) {
        return (ok_headers(&version), Json(t.clone())).into_response();
    }
    no_such_object("GET", &id)
}

/// `DELETE /{version}/{media-id}`.
pub(super) async fn delete_object(
    State(shared): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&shared);
    if let Err(r) = gate(&mut inner, "delete", &version, format!("/{version}/{id}"), &query, &headers, None) {
        return *r;
    }
    let owner = phone_param(&query);
    match inner.media.items.get(&id) {
        Some(m) if owner.as_ref().is_none_or(|o| *o == m.pnid) => {
            inner.media.items.remove(&id);
            (ok_headers(&version), Json(json!({"success": true}))).into_response()
        }
        _ => no_such_object("DELETE", &id),
    }
}

fn not_found() -> Response {
    let e = documented(100);
    error_response(404, envelope(&e, Some("The media URL is unknown or expired; look the media id up again")))
}

/// `GET /whatsapp_business/attachments/?mid=…&hash=…`: the bytes, for a valid bearer token.
pub(super) async fn download(State(shared): State<Shared>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let mut inner = lock(&shared);
    let token = bearer(&headers);
    record(&mut inner, "get", DOWNLOAD_PATH.to_string(), &query, token.clone(), None);
    if token.is_none() || check_token(&inner, token.as_deref()).is_err() {
        let e = documented(190);
        return error_response(401, envelope(&e, Some("A valid access token is required to download media")));
    }
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or_default();
    let (mid, hash) = (get("mid"), get("hash"));
    let valid = inner.media.urls.get(hash).is_some_and(|(id, until)| id == mid && *until > Instant::now());
    let Some(media) = inner.media.items.get(mid).filter(|_| valid).cloned() else {
        return not_found();
    };
    *inner.media.downloads.entry(mid.to_string()).or_default() += 1;
    let mut response = Response::new(Body::from(media.bytes.clone()));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    if let Ok(v) = media.mime.parse() {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, media.bytes.len().into());
    response
}

/// Test helpers of the media side.
impl GraphSandbox {
    /// Stores media as if `phone_number_id` had uploaded it (or a user had sent it); gives its id.
    pub fn add_media(&self, bytes: &[u8], mime: &str, phone_number_id: &str) -> String {
        lock(&self.inner).media.add(Bytes::copy_from_slice(bytes), mime, phone_number_id)
    }

    /// The bytes and MIME type of a media id (uploaded or added), while it is not deleted.
    pub fn media(&self, id: &str) -> Option<(Vec<u8>, String)> {
        lock(&self.inner).media.items.get(id).map(|m| (m.bytes.to_vec(), m.mime.clone()))
    }

    /// How many times the media was downloaded successfully.
    pub fn media_downloads(&self, id: &str) -> usize {
        lock(&self.inner).media.downloads.get(id).copied().unwrap_or(0)
    }

    /// How long media URLs issued from now on stay valid (default 5 minutes).
    pub fn set_media_url_ttl(&self, ttl: Duration) {
        lock(&self.inner).media.ttl = ttl;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TOKEN: &str = "EAAG-test-token";
    const PNID: &str = "106540352242922";

    /// A form field: name, (filename, content type) for files, data.
    type Field<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);
    type OwnedField = (&'static str, Option<(&'static str, &'static str)>, Vec<u8>);

    fn form(boundary: &str, fields: &[Field<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, data) in fields {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some((filename, ct)) => out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: {ct}\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => {
                    out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes())
                }
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    #[test]
    fn multipart_parses_fields_and_files() {
        assert_eq!(boundary("multipart/form-data; boundary=\"abc\""), Some("abc".into()));
        assert_eq!(boundary("multipart/form-data;boundary=x-y"), Some("x-y".into()));
        assert_eq!(boundary("application/json"), None);
        let data: &[u8] = b"\x89PNG\r\n--not-the-boundary\r\n\x00\xff";
        let body = Bytes::from(form(
            "XyZ",
            &[("messaging_product", None, b"whatsapp"), ("file", Some(("a;b.png", "image/png")), data)],
        ));
        let parts = parse_multipart(&body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), &parts[0].data[..]), ("messaging_product", &b"whatsapp"[..]));
        assert_eq!(parts[1].filename.as_deref(), Some("a;b.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(&parts[1].data[..], data);
        assert!(parse_multipart(
            &Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx"),
            "XyZ"
        )
        .is_err());
    }

    #[test]
    fn size_limits_follow_metas_table() {
        assert_eq!(size_limit("image/jpeg"), Some(5 * MB));
        assert_eq!(size_limit("audio/ogg; codecs=opus"), Some(16 * MB));
        assert_eq!(size_limit("image/webp"), Some(500 * 1024));
        assert_eq!(size_limit("image/gif"), None);
    }

    #[tokio::test]
    async fn upload_lookup_download_delete() {
        let g = GraphSandbox::start().await.unwrap();
        g.allow_token(TOKEN, "1");
        let http = reqwest::Client::new();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let body = form(
            "b0undary",
            &[
                ("messaging_product", None, b"whatsapp"),
                ("type", None, b"image/jpeg"),
                ("file", Some(("photo.jpg", "image/jpeg")), &bytes),
            ],
        );
        let r = http
            .post(format!("{}/v23.0/{PNID}/media", g.base_url()))
            .bearer_auth(TOKEN)
            .header("content-type", "multipart/form-data; boundary=b0undary")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        assert_eq!(g.media(&id), Some((bytes.clone(), "image/jpeg".into())));

        let lookup = |q: &str| {
            let url = format!("{}/v23.0/{id}{q}", g.base_url());
            let http = http.clone();
            async move { http.get(url).bearer_auth(TOKEN).send().await.unwrap() }
        };
        let info: Value = lookup(&format!("?phone_number_id={PNID}")).await.json().await.unwrap();
        assert_eq!(info["messaging_product"], "whatsapp");
        assert_eq!(info["mime_type"], "image/jpeg");
        assert_eq!(info["file_size"], "3000");
        assert_eq!(info["id"], id.as_str());
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        assert_eq!(info["sha256"], sha.as_str());
        assert_eq!(lookup("?phone_number_id=1").await.status(), 400);
        let url = info["url"].as_str().unwrap().to_string();
        assert!(url.starts_with(&format!("{}{DOWNLOAD_PATH}?mid={id}", g.base_url())), "{url}");

        // Without or with a wrong token: 401; with it: the bytes.
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
        assert_eq!(http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
        assert_eq!(g.media_downloads(&id), 0);
        let r = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
        assert_eq!(g.media_downloads(&id), 1);
        let tampered = url.replace("hash=", "hash=x");
        assert_eq!(http.get(&tampered).bearer_auth(TOKEN).send().await.unwrap().status(), 404);

        // An expired URL: 404.
        g.set_media_url_ttl(Duration::from_millis(50));
        let info: Value = lookup("").await.json().await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let r = http.get(info["url"].as_str().unwrap()).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 404);

        // Delete: success, then the old URL and the id are gone.
        let r = http.delete(format!("{}/v23.0/{id}", g.base_url())).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
        assert_eq!(http.get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 404);
        assert_eq!(lookup("").await.status(), 400);
        assert_eq!(g.media(&id), None);
        assert_eq!(g.media_downloads(&id), 1);

        // A helper-added media downloads the same way.
        let other = g.add_media(b"%PDF-1.4", "application/pdf", PNID);
        let info: Value = http
            .get(format!("{}/v23.0/{other}", g.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["mime_type"], "application/pdf");
    }

    #[tokio::test]
    async fn uploads_are_validated() {
        let g = GraphSandbox::start().await.unwrap();
        g.allow_token(TOKEN, "1");
        let http = reqwest::Client::new();
        let send = |fields: Vec<OwnedField>| {
            let refs: Vec<Field<'_>> = fields.iter().map(|(n, f, d)| (*n, *f, d.as_slice())).collect();
            let body = form("bb", &refs);
            let req = http
                .post(format!("{}/v23.0/{PNID}/media", g.base_url()))
                .bearer_auth(TOKEN)
                .header("content-type", "multipart/form-data; boundary=bb")
                .body(body);
            async move {
                let r = req.send().await.unwrap();
                let s = r.status().as_u16();
                (s, r.json::<Value>().await.unwrap()["error"]["code"].as_i64())
            }
        };
        let mp = ("messaging_product", None, b"whatsapp".to_vec());
        assert_eq!(send(vec![("file", Some(("a.png", "image/png")), vec![1])]).await, (400, Some(131008)));
        assert_eq!(send(vec![mp.clone()]).await, (400, Some(131008)));
        assert_eq!(send(vec![mp.clone(), ("file", Some(("a.gif", "image/gif")), vec![1])]).await, (400, Some(131053)));
        assert_eq!(
            send(vec![mp.clone(), ("file", Some(("a.webp", "image/webp")), vec![0; 600 * 1024])]).await,
            (400, Some(131053))
        );
        // Stickers: a static WebP over 100 KB is refused, an animated one up to 500 KB is taken.
        let webp = |animated: bool, len: usize| {
            let mut b = vec![0u8; len];
            b[0..4].copy_from_slice(b"RIFF");
            b[8..16].copy_from_slice(b"WEBPVP8X");
            b[20] = if animated { 0x02 } else { 0 };
            b
        };
        let sticker = |b: Vec<u8>| vec![mp.clone(), ("file", Some(("s.webp", "image/webp")), b)];
        assert_eq!(send(sticker(webp(false, 100 * 1024 + 1))).await, (400, Some(131053)));
        assert_eq!(send(sticker(webp(false, 100 * 1024))).await.0, 200);
        assert_eq!(send(sticker(webp(true, 400 * 1024))).await.0, 200);
        // The file part's Content-Type stands in for a missing `type`.
        assert_eq!(send(vec![mp.clone(), ("file", Some(("a.png", "image/png")), vec![1, 2])]).await.0, 200);
        let r = http
            .post(format!("{}/v23.0/{PNID}/media", g.base_url()))
            .bearer_auth(TOKEN)
            .json(&json!({"messaging_product": "whatsapp"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
}
