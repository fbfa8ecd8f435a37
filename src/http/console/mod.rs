//! The web console under `/admin` (and `/`, which redirects there): server-rendered pages (maud) over the same
//! functions the admin API calls (`crate::registry`, the shared actions of `super::admin`, `super::jobs`,
//! `super::templates`, `super::calling`, and the store's lists). Its stylesheet and script are embedded in the
//! binary; it works without the script (which only adds copy buttons).
//!
//! Templating is maud rather than askama: its templates are Rust expressions checked when the binary is built,
//! escape what they insert unless told otherwise, and need no template files kept in step with their structs.
//! There is no htmx: every action is a plain form post answered by a redirect (or by the same page with the
//! error at the form), which needs no script at all.
//!
//! Security: the login takes the admin token (compared in constant time by `crate::admin_token::verify`) and
//! gives a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when `public_url` is https or the request
//! came over https through a proxy); sessions are stored server-side (`store::console`, by the SHA-256 of the
//! cookie) and expire after [`SESSION_TTL_MS`] without use; every form carries the session's CSRF token, and a
//! form without the right one is refused (403) before anything is done; logins are rate limited per client
//! address ([`logins`]). (The login form itself has no session yet: what it carries, the admin token, is the
//! credential.)

/// Resolves a session for a page, or sends the browser to the login page.
macro_rules! logged_in {
    ($s:expr, $headers:expr) => {
        match session(&$s, &$headers).await? {
            Some(sess) => sess,
            None => return Ok(to_login()),
        }
    };
}

/// Checks a form post (session and CSRF), or answers for it.
macro_rules! posted {
    ($s:expr, $headers:expr, $body:expr) => {
        match guard(&$s, &$headers, &$body).await {
            Ok(ok) => ok,
            Err(resp) => return Ok(resp),
        }
    };
}

mod conversations;
mod health;
pub mod logins;
mod pages;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::registry::{FieldError, RegistryError};
use crate::seal::random_token;
use crate::sip::acl::Acl;
use crate::store::{console as sessions, now_ms, StoreError};

/// A session ends after this long without a request.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Login attempts allowed per minute and client address, after a burst of as many ([`logins`]).
pub const LOGINS_PER_MINUTE: u32 = 10;
const COOKIE: &str = "wabridge_console";
/// Rows per page of every list.
pub const PAGE: i64 = 50;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's process-wide state.
pub struct Console {
    logins: logins::LoginLimiter,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` names the client.
    proxies: Acl,
}

impl Console {
    /// `trusted_proxies` as configured (checked when the configuration was loaded; an entry that does not parse
    /// is left out).
    pub fn new(trusted_proxies: &[String]) -> Console {
        let nets =
            trusted_proxies.iter().filter_map(|p| Acl::parse(&[p.as_str()]).ok()).flat_map(|a| a.nets().to_vec());
        Console {
            logins: logins::LoginLimiter::new(LOGINS_PER_MINUTE, logins::MAX_CLIENTS),
            proxies: Acl::new(nets.collect()),
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new(&[])
    }
}

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .route("/admin", get(health::page_view))
        .route("/admin/health/check", post(health::check_now))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/static/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/admin/static/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/admin/apps", get(pages::apps).post(pages::app_create))
        .route("/admin/apps/{id}/signatures", post(pages::app_signatures))
        .route("/admin/apps/{id}/verify-token", post(pages::app_rotate_token))
        .route("/admin/wabas", get(pages::wabas).post(pages::waba_create))
        .route("/admin/phones", get(pages::phones).post(pages::phone_create))
        .route("/admin/phones/{id}", post(pages::phone_update))
        .route("/admin/phones/{id}/calling", post(pages::phone_calling))
        .route("/admin/phones/{id}/archive", post(pages::phone_archive))
        .route("/admin/phones/{id}/restore", post(pages::phone_restore))
        .route("/admin/conversations", get(pages::conversations))
        .route("/admin/conversations/{phone}/{contact}", get(pages::thread).post(pages::thread_reply))
        .route("/admin/portals", get(pages::portals).post(pages::portal_create))
        .route("/admin/templates", get(pages::templates))
        .route("/admin/templates/sync", post(pages::templates_sync))
        .route("/admin/messages", get(pages::messages))
        .route("/admin/sends", get(pages::sends))
        .route("/admin/calls", get(pages::calls))
        .route("/admin/jobs", get(pages::jobs))
        .route("/admin/jobs/{id}/redrive", post(pages::job_redrive))
        .layer(DefaultBodyLimit::max(state.config.admin_body_limit))
        .layer(axum::middleware::map_response(protect))
}

/// Every console answer: not kept in caches (pages show verify tokens), never framed by another site
/// (clickjacking), and only this site's own stylesheet, script and form targets.
async fn protect(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

// ------------------------------------------------------------------------------------------------ sessions

/// A logged-in session.
pub struct Session {
    id_hash: String,
    pub csrf: String,
}

fn hash(v: &str) -> String {
    hex::encode(Sha256::digest(v.as_bytes()))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request's session, if it has a live one (its expiry moves on when a good part of it is used up).
async fn session(s: &AppState, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
    let Some(cookie) = cookie_value(headers, COOKIE).filter(|c| !c.is_empty() && c.len() <= 128) else {
        return Ok(None);
    };
    let id_hash = hash(cookie);
    let now = now_ms();
    let Some(found) = sessions::get(&s.store, &id_hash, now).await? else { return Ok(None) };
    if found.expires_at - now < SESSION_TTL_MS - 5 * 60 * 1000 {
        sessions::touch(&s.store, &id_hash, now, now + SESSION_TTL_MS).await?;
    }
    Ok(Some(Session { id_hash, csrf: found.csrf_token }))
}

/// True when the console is reached over https (so the cookie may be `Secure`).
fn over_https(s: &AppState, headers: &HeaderMap) -> bool {
    s.config.public_url.as_deref().is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("wabridge_console=; Max-Age=0"))
}

fn to_login() -> Response {
    Redirect::to("/admin/login").into_response()
}

/// A submitted form (`application/x-www-form-urlencoded`).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The trimmed value of `name`; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(String::from)
    }

    /// A checkbox: ticked when present.
    pub fn ticked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::field(name, "must be a whole number")))
            .transpose()
    }
}

/// Checks a form post: a live session (else to the login page) and its CSRF token (else 403, nothing done).
async fn guard(s: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(Session, Fields), Response> {
    let session = match session(s, headers).await {
        Ok(Some(sess)) => sess,
        Ok(None) => return Err(to_login()),
        Err(e) => return Err(Oops(e.into()).into_response()),
    };
    let fields = Fields::parse(body);
    let sent = fields.get("csrf").unwrap_or_default();
    if !bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())) {
        tracing::warn!("console: a form without this session's CSRF token was refused");
        let body = layout(
            "Refused",
            None,
            None,
            html! {
                div.problem role="alert" {
                    h2 { "This form was refused" }
                    p { "It did not carry this session's security (CSRF) token, so it may not have come from this \
                         console. Nothing was changed. Go back, reload the page and send the form again." }
                }
            },
        );
        return Err((StatusCode::FORBIDDEN, body).into_response());
    }
    Ok((session, fields))
}

/// After an action: keeps its outcome for the next page and sends the browser there (303).
async fn done(s: &AppState, session: &Session, to: &str, message: &str) -> Result<Response, Oops> {
    sessions::set_flash(&s.store, &session.id_hash, message).await?;
    Ok(Redirect::to(to).into_response())
}

// ------------------------------------------------------------------------------------------------ login

async fn login_page(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, Oops> {
    if session(&s, &headers).await?.is_some() {
        return Ok(Redirect::to("/admin").into_response());
    }
    Ok(login_form(None).into_response())
}

fn login_form(problem: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        None,
        html! {
            form.card method="post" action="/admin/login" {
                h2 { "Log in" }
                @if let Some(p) = problem { p.problem role="alert" id="login-problem" { (p) } }
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus
                    aria-describedby="token-help";
                p.help #token-help { "The token 'wabridge' printed at its first start (lost it? run "
                    code { "wabridge admin-token rotate" } ")." }
                button type="submit" { "Log in" }
            }
        },
    )
}

async fn login(
    State(s): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Oops> {
    // The listener always gives the peer; without one (a router driven directly) every client is one.
    let peer = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| a.ip());
    let forwarded: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let client = logins::client_addr(peer, &forwarded, &s.console.proxies);
    if !s.console.logins.check(client) {
        let page = login_form(Some("Too many login attempts: wait a minute and try again."));
        return Ok((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], page).into_response());
    }
    let fields = Fields::parse(&body);
    let token = fields.get("token").unwrap_or_default();
    if token.is_empty() || !crate::admin_token::verify(&s.store, token).await? {
        tracing::warn!("console: a login with a wrong admin token was refused");
        let page = login_form(Some("That is not the admin token."));
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    }
    let cookie = random_token(40);
    let now = now_ms();
    sessions::prune(&s.store, now).await?;
    sessions::insert(&s.store, &hash(&cookie), &random_token(40), now, now + SESSION_TTL_MS).await?;
    tracing::info!("console: logged in");
    let mut resp = Redirect::to("/admin").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(&cookie, SESSION_TTL_MS / 1000, over_https(&s, &headers)));
    Ok(resp)
}

async fn logout(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (session, _) = match guard(&s, &headers, &body).await {
        Ok(ok) => ok,
        Err(resp) => return Ok(resp),
    };
    sessions::delete(&s.store, &session.id_hash).await?;
    let mut resp = Redirect::to("/admin/login").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie("", 0, over_https(&s, &headers)));
    Ok(resp)
}

// ------------------------------------------------------------------------------------------------ rendering

/// An error on a page that could not be shown at all (the database down...): an HTML page saying so.
pub struct Oops(pub ApiError);

impl From<ApiError> for Oops {
    fn from(e: ApiError) -> Self {
        Oops(e)
    }
}

impl From<StoreError> for Oops {
    fn from(e: StoreError) -> Self {
        Oops(e.into())
    }
}

impl From<RegistryError> for Oops {
    fn from(e: RegistryError) -> Self {
        Oops(e.into())
    }
}

impl IntoResponse for Oops {
    fn into_response(self) -> Response {
        let page = layout("Error", None, None, html! { (problem_box(&self.0)) });
        (self.0.status, page).into_response()
    }
}

/// An error shown where it happened: the message, each wrong field, and Meta's code and explanation.
pub fn problem_box(e: &ApiError) -> Markup {
    html! {
        div.problem role="alert" {
            p { strong { "Not done: " } (e.message) }
            @if !e.fields.is_empty() {
                ul { @for FieldError { field, message } in &e.fields { li { code { (field) } ": " (message) } } }
            }
            @if let Some(g) = &e.graph {
                p { "Meta answered with error " strong { (g.code) } ": " (g.message) }
                @if let Some(x) = &g.explanation { p { "What it means: " (x) } }
                @if let Some(d) = &g.details { p { "Details: " (d) } }
                @if let Some(t) = &g.fbtrace_id { p.help { "Meta's trace id (for Meta's support): " code { (t) } } }
            }
        }
    }
}

const NAV: &[(&str, &str)] = &[
    ("/admin", "Health"),
    ("/admin/apps", "Apps"),
    ("/admin/wabas", "WABAs"),
    ("/admin/phones", "Phones"),
    ("/admin/portals", "Portals"),
    ("/admin/templates", "Templates"),
    ("/admin/conversations", "Conversations"),
    ("/admin/messages", "Messages"),
    ("/admin/sends", "Sends"),
    ("/admin/calls", "Calls"),
    ("/admin/jobs", "Jobs"),
];

/// The page around `content`: navigation (when logged in), the outcome of the last action, the content.
pub fn layout(title: &str, session: Option<&Session>, flash: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wabridge" }
                link rel="stylesheet" href="/admin/static/console.css";
                script src="/admin/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "wabridge" }
                    @if let Some(sess) = session {
                        nav aria-label="Console" {
                            ul { @for (href, name) in NAV {
                                li { a href=(href) aria-current=[(*name == title).then_some("page")] { (name) } }
                            } }
                        }
                        form.logout method="post" action="/admin/logout" {
                            input type="hidden" name="csrf" value=(sess.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    div #flash aria-live="polite" { @if let Some(f) = flash { p.notice { (f) } } }
                    (content)
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A value with a copy button (the script copies the text of the element with `id`).
pub fn copyable(id: &str, value: &str) -> Markup {
    html! {
        span.copyable {
            code #(id) { (value) }
            button.copy type="button" data-copy=(id) aria-label={ "Copy " (value) } { "Copy" }
        }
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// How long ago, in words.
pub fn ago(ms: i64, now: i64) -> String {
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// An HTML page with a status.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; wabridge_console=xyz; b=2"));
        assert_eq!(cookie_value(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn session_cookie_attributes() {
        let c = set_cookie("v", 60, true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"), "{c}");
        assert!(!set_cookie("v", 60, false).to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn form_fields() {
        let f = Fields::parse(b"a=+x+&b=&n=12&bad=z");
        assert_eq!(f.get("a"), Some("x"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.int("n").unwrap(), Some(12));
        assert_eq!(f.int("bad").unwrap_err().fields[0].field, "bad");
    }
}
