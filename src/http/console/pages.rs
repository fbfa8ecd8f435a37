//! The console's pages and the actions their forms post. Each action calls what the admin API calls; on success
//! it keeps what was done (or queued) for the next page and redirects there; on failure it shows the same page
//! again with the error at the form that failed.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

pub use super::conversations::{conversations, thread, thread_reply};
use super::{
    copyable, csrf_field, done, guard, layout, page, problem_box, session, to_login, when, Fields, Oops, Session, PAGE,
};
use crate::calling::CallingInput;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::jobs::JobState;
use crate::registry::{self, AppInput, AppView, CallingErrorView, PhoneInput, PortalInput, WabaInput};
use crate::store::calls::CallFilter;
use crate::store::console as sessions;
use crate::store::messages as stored;
use crate::store::registry::{Phone, Portal};

/// Paging and filters of a list page (unknown parameters are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Keyset paging: rows with a smaller id.
    before: Option<i64>,
    /// Page number (from 1) of lists paged by position.
    page: Option<i64>,
    state: Option<String>,
    waba: Option<i64>,
    /// Phones: `1` lists archived phones too.
    archived: Option<String>,
    /// Conversations: our number (E.164 or id).
    pub phone: Option<String>,
    /// Conversations: the customer.
    pub contact: Option<String>,
    /// History pages: the cursor of the next page.
    pub cursor: Option<String>,
}

impl ListQuery {
    fn page(&self) -> i64 {
        self.page.unwrap_or(1).max(1)
    }
}

/// An error to show at the form `form` of the page.
pub(super) struct Problem {
    form: String,
    err: ApiError,
    /// What was typed into the form, to show again (secrets are never shown again).
    typed: Option<Fields>,
}

impl Problem {
    pub(super) fn at(form: impl Into<String>, err: impl Into<ApiError>) -> Option<Problem> {
        Some(Problem { form: form.into(), err: err.into(), typed: None })
    }

    pub(super) fn typed(form: &str, err: impl Into<ApiError>, typed: Fields) -> Option<Problem> {
        Some(Problem { form: form.into(), err: err.into(), typed: Some(typed) })
    }
}

/// The value typed into field `name` of form `form` when that form failed, to fill it in again.
pub(super) fn kept(p: &Option<Problem>, form: &str, name: &str) -> String {
    p.as_ref()
        .filter(|p| p.form == form)
        .and_then(|p| p.typed.as_ref())
        .and_then(|f| f.string(name))
        .unwrap_or_default()
}

pub(super) fn problem_at(p: &Option<Problem>, form: &str) -> Markup {
    html! { @if let Some(p) = p.as_ref().filter(|p| p.form == form) { (problem_box(&p.err)) } }
}

/// The card whose form registers something: its heading (also the button's label), the error of its last try
/// (`form`), and its `fields`; `missing` says what to register first when it cannot be used yet.
fn create_card(
    p: &Option<Problem>,
    sess: &Session,
    (form, action): (&str, &str),
    heading: &str,
    missing: Option<&str>,
    fields: Markup,
) -> Markup {
    let id = format!("new-{}", form.trim_end_matches("-create"));
    html! {
        section.card aria-labelledby=(id) {
            h2 id=(id) { (heading) }
            (problem_at(p, form))
            @match missing {
                Some(m) => p { (m) },
                None => form method="post" action=(action) { (csrf_field(sess)) (fields) button type="submit" { (heading) } },
            }
        }
    }
}

/// How a text field is typed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Digits,
    Tel,
    Url,
    /// Never shown again.
    Secret,
}

/// A labelled field `(id, name)` of form `form`, filled again with what was typed when that form failed.
fn field(p: &Option<Problem>, form: &str, (id, name): (&str, &str), label: &str, kind: Kind, required: bool) -> Markup {
    let ty = match kind {
        Kind::Text | Kind::Digits => "text",
        Kind::Tel => "tel",
        Kind::Url => "url",
        Kind::Secret => "password",
    };
    let value = if kind == Kind::Secret { String::new() } else { kept(p, form, name) };
    html! {
        label for=(id) { (label) }
        input id=(id) name=(name) type=(ty) inputmode=[(kind == Kind::Digits).then_some("numeric")]
            autocomplete=[(kind == Kind::Secret).then_some("off")] required[required] value=(value);
    }
}

/// A page of a whole in-memory list (registry tables, which are small), with its pager.
/// `base` ends with `?` or `&`: the page parameter is added to it.
fn paged<T>(all: &[T], q: &ListQuery, base: &str) -> (Vec<usize>, Markup) {
    let page = q.page();
    let start = ((page - 1) * PAGE) as usize;
    let idx: Vec<usize> = (start..all.len().min(start + PAGE as usize)).collect();
    let more = all.len() > start + PAGE as usize;
    let pager = html! {
        nav.pager aria-label="Pages" {
            @if page > 1 { a href={ (base) "page=" (page - 1) } { "← Previous" } }
            span { "Page " (page) " · " (all.len()) " in all" }
            @if more { a href={ (base) "page=" (page + 1) } { "Next →" } }
        }
    };
    (idx, pager)
}

/// The pager of a list paged by id (newest first): back to the first page, and on to older rows.
fn keyset_pager(base: &str, sep: char, q: &ListQuery, last_id: Option<i64>, full: bool) -> Markup {
    html! {
        nav.pager aria-label="Pages" {
            @if q.before.is_some() { a href=(base) { "← Newest" } }
            @if let (Some(id), true) = (last_id, full) { a href={ (base) (sep) "before=" (id) } { "Older →" } }
        }
    }
}

pub(super) async fn flash(s: &AppState, sess: &Session) -> Result<Option<String>, Oops> {
    Ok(sessions::take_flash(&s.store, &sess.id_hash).await?)
}

pub(super) fn status_of(p: &Option<Problem>) -> StatusCode {
    p.as_ref().map_or(StatusCode::OK, |p| p.err.status)
}

// ------------------------------------------------------------------------------------------------ connector

/// The connector's state, green or red, in plain words.
pub(super) fn connector(p: &Phone) -> Markup {
    let err = p.connector_error.as_deref().unwrap_or("no detail given");
    match (p.portal_id, p.connector_status.as_deref()) {
        (None, _) => html! { span.muted { "not bound to a portal" } },
        (_, Some("ok")) => html! { span.ok { "connected" @if let Some(l) = &p.line_id { " (open line " (l) ")" } } },
        (_, Some("pending")) | (_, None) => {
            html! { span.warn { "binding queued: the workers are setting up the open line" } }
        }
        (_, Some("line_deleted")) => {
            html! { span.bad { "the open line was deleted in the portal: save the binding again to recreate it" } }
        }
        (_, Some("disabled")) => html! { span.bad { "the connector is switched off on the open line in the portal" } },
        (_, Some("error")) => html! { span.bad { "the portal refused: " (err) } },
        (_, Some(other)) => html! { span.bad { (other) ": " (err) } },
    }
}

// ------------------------------------------------------------------------------------------------ apps

pub async fn apps(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    apps_page(&s, &sess, &q, flash, None).await
}

async fn apps_page(
    s: &AppState,
    sess: &Session,
    q: &ListQuery,
    flash: Option<String>,
    problem: Option<Problem>,
) -> Result<Response, Oops> {
    let apps = s.store.list_apps().await?;
    let (idx, pager) = paged(&apps, q, "/admin/apps?");
    let content = html! {
        @for i in idx {
            @let a = &apps[i];
            @let v = AppView::revealing_verify_token(a);
            section.card aria-labelledby={ "app-" (a.id) } {
                h2 #{ "app-" (a.id) } { (if a.name.is_empty() { "App" } else { a.name.as_str() }) " " code { (a.meta_app_id) } }
                @if !a.verify_signatures {
                    p.bad role="alert" { "Signature verification is OFF: anyone can post webhooks for this app. Use only for local testing." }
                }
                dl {
                    dt { "Callback URL" } dd { (copyable(&format!("cb-{}", a.id), &v.webhook_urls.by_domain)) }
                    dt { "Callback URL naming the app (several apps on one host)" } dd { (copyable(&format!("cb2-{}", a.id), &v.webhook_urls.by_app_id)) }
                    dt { "Verify token" } dd { (copyable(&format!("vt-{}", a.id), &v.verify_token)) }
                    dt { "App secret" } dd { code { (v.app_secret) } }
                    dt { "Access token" } dd { code { (v.access_token.as_deref().unwrap_or("none")) } }
                }
                (problem_at(&problem, &format!("app-{}", a.id)))
                div.actions {
                    form method="post" action={ "/admin/apps/" (a.id) "/signatures" } {
                        (csrf_field(sess))
                        @if a.verify_signatures {
                            input type="hidden" name="verify" value="off";
                            button.danger type="submit" { "Switch signature checks off" }
                        } @else {
                            input type="hidden" name="verify" value="on";
                            button type="submit" { "Switch signature checks on" }
                        }
                    }
                    form method="post" action={ "/admin/apps/" (a.id) "/verify-token" } {
                        (csrf_field(sess))
                        button type="submit" { "New verify token" }
                    }
                }
            }
        }
        (pager)
        (create_card(&problem, sess, ("app-create", "/admin/apps"), "Register an app", None, html! {
                (field(&problem, "app-create", ("meta_app_id", "meta_app_id"), "Meta app id (digits)", Kind::Digits, true))
                (field(&problem, "app-create", ("app_name", "name"), "Name", Kind::Text, false))
                (field(&problem, "app-create", ("domain", "domain"), "Host name Meta posts to (e.g. wabridge.example.com)", Kind::Text, true))
                (field(&problem, "app-create", ("app_secret", "app_secret"), "App secret", Kind::Secret, true))
                (field(&problem, "app-create", ("access_token", "access_token"), "System user access token (optional)", Kind::Secret, false))
            }))
    };
    Ok(page(status_of(&problem), layout("Apps", Some(sess), flash.as_deref(), content)))
}

pub async fn app_create(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let input = AppInput {
        meta_app_id: f.string("meta_app_id"),
        name: f.string("name"),
        domain: f.string("domain"),
        app_secret: f.string("app_secret"),
        access_token: f.string("access_token"),
        ..AppInput::default()
    };
    match crate::http::admin::app_create(&s, &input).await {
        Ok(app) => {
            done(
                &s,
                &sess,
                "/admin/apps",
                &format!(
                    "App {} registered: paste its callback URL and verify token into Meta's dashboard.",
                    app.meta_app_id
                ),
            )
            .await
        }
        Err(err) => apps_page(&s, &sess, &ListQuery::default(), None, Problem::typed("app-create", err, f)).await,
    }
}

pub async fn app_signatures(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let on = f.get("verify") == Some("on");
    let input = AppInput { verify_signatures: Some(on), ..AppInput::default() };
    match crate::http::admin::app_update(&s, id, &input).await {
        Ok(_) => {
            done(
                &s,
                &sess,
                "/admin/apps",
                if on { "Signature checks are on." } else { "Signature checks are OFF for this app." },
            )
            .await
        }
        Err(err) => apps_page(&s, &sess, &ListQuery::default(), None, Problem::at(format!("app-{id}"), err)).await,
    }
}

pub async fn app_rotate_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, _) = posted!(s, headers, body);
    let input = AppInput { rotate_verify_token: Some(true), ..AppInput::default() };
    crate::http::admin::app_update(&s, id, &input).await?;
    done(
        &s,
        &sess,
        "/admin/apps",
        "A new verify token was made: paste it into Meta's dashboard (the old one no longer verifies).",
    )
    .await
}

// ------------------------------------------------------------------------------------------------ WABAs

pub async fn wabas(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    wabas_page(&s, &sess, &q, flash, None).await
}

async fn wabas_page(
    s: &AppState,
    sess: &Session,
    q: &ListQuery,
    flash: Option<String>,
    problem: Option<Problem>,
) -> Result<Response, Oops> {
    let wabas = s.store.list_wabas().await?;
    let apps = s.store.list_apps().await?;
    let (idx, pager) = paged(&wabas, q, "/admin/wabas?");
    let content = html! {
        div.scroll { table {
            thead { tr { th scope="col" { "Id" } th scope="col" { "WABA id" } th scope="col" { "Name" } th scope="col" { "App" } th scope="col" { "Sends" } th scope="col" { "Templates" } } }
            tbody { @for i in idx { @let w = &wabas[i]; tr {
                td { (w.id) } td { code { (w.waba_id) } } td { (w.name) }
                td { (apps.iter().find(|a| a.id == w.app_id).map_or(w.app_id.to_string(), |a| a.meta_app_id.clone())) }
                td { @match &w.sends_paused_reason { Some(r) => span.bad { "paused: " (r) }, None => span.ok { "running" } } }
                td { a href={ "/admin/templates?waba=" (w.id) } { "Templates" } }
            } } }
        } }
        (pager)
        (create_card(&problem, sess, ("waba-create", "/admin/wabas"), "Register a WABA", apps.is_empty().then_some("Register an app first."), html! {
                    (field(&problem, "waba-create", ("waba_id", "waba_id"), "WhatsApp Business Account id (digits)", Kind::Digits, true))
                    label for="waba_app" { "App" }
                    select #waba_app name="app" { @for a in &apps { option value=(a.id) { (a.meta_app_id) " " (a.name) } } }
                    (field(&problem, "waba-create", ("waba_name", "name"), "Name", Kind::Text, false))
                    (field(&problem, "waba-create", ("waba_token", "access_token"), "Access token for this WABA (optional; the app's otherwise)", Kind::Secret, false))
            }))
    };
    Ok(page(status_of(&problem), layout("WABAs", Some(sess), flash.as_deref(), content)))
}

pub async fn waba_create(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let result = match f.int("app") {
        Ok(app) => {
            let input = WabaInput {
                waba_id: f.string("waba_id"),
                app,
                name: f.string("name"),
                access_token: f.string("access_token"),
            };
            registry::create_waba(&s.store, &input).await.map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(w) => done(&s, &sess, "/admin/wabas", &format!("WABA {} registered.", w.waba_id)).await,
        Err(err) => wabas_page(&s, &sess, &ListQuery::default(), None, Problem::typed("waba-create", err, f)).await,
    }
}

// ------------------------------------------------------------------------------------------------ phones

pub async fn phones(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    phones_page(&s, &sess, &q, flash, None).await
}

fn portal_options(portals: &[Portal], selected: Option<i64>) -> Markup {
    html! {
        option value="" selected[selected.is_none()] { "(not bound)" }
        @for p in portals.iter().filter(|p| p.active || Some(p.id) == selected) {
            option value=(p.id) selected[Some(p.id) == selected] { (p.domain) }
        }
    }
}

async fn phones_page(
    s: &AppState,
    sess: &Session,
    q: &ListQuery,
    flash: Option<String>,
    problem: Option<Problem>,
) -> Result<Response, Oops> {
    let all = s.store.list_phones().await?;
    let show_archived = q.archived.as_deref() == Some("1");
    let archived_count = all.iter().filter(|p| p.archived_at.is_some()).count();
    let phones: Vec<Phone> = all.into_iter().filter(|p| show_archived || p.archived_at.is_none()).collect();
    let wabas = s.store.list_wabas().await?;
    let portals = s.store.list_portals().await?;
    let base = if show_archived { "/admin/phones?archived=1&" } else { "/admin/phones?" };
    let (idx, pager) = paged(&phones, q, base);
    let content = html! {
        nav.filters aria-label="Archived phones" { ul {
            li { a href="/admin/phones" aria-current=[(!show_archived).then_some("page")] { "Phones in use" } }
            li { a #show-archived href="/admin/phones?archived=1" aria-current=[show_archived.then_some("page")] {
                "Show archived (" (archived_count) ")" } }
        } }
        @for i in idx {
            @let p = &phones[i];
            @let id = p.id;
            section.card aria-labelledby={ "phone-" (id) } {
                h2 #{ "phone-" (id) } { (p.number)
                    @if let Some(at) = p.archived_at { " " span.archived.warn title={ "archived " (when(at)) } { "archived" } } }
                p { "Phone number id " code { (p.phone_number_id) } " · WABA "
                    (wabas.iter().find(|w| w.id == p.waba_id).map_or(p.waba_id.to_string(), |w| w.waba_id.clone()))
                    " · " a href={ "/admin/conversations?phone=" (id) } { "Conversations" } }
                (problem_at(&problem, &format!("archive-{id}")))
                @if let Some(at) = p.archived_at {
                    p { "Archived " (when(at)) ": unbound, no SMS service, its messages, sends and calls kept. \
                         Unarchive it to bind it to a portal again." }
                    form method="post" action={ "/admin/phones/" (id) "/restore" } {
                        (csrf_field(sess))
                        button type="submit" { "Unarchive " (p.number) }
                    }
                } @else {
                p { "Connector: " (connector(p)) }
                @if let Some(status) = &p.sms_status {
                    p { "SMS provider: " @if status == "registered" { span.ok { "registered as " (p.sms_code.as_deref().unwrap_or_default()) } }
                        @else if status == "error" { span.bad { "error: " (p.sms_error.as_deref().unwrap_or_default()) } }
                        @else { span.muted { (status) } } }
                }
                (problem_at(&problem, &format!("phone-{id}")))
                form method="post" action={ "/admin/phones/" (id) } {
                    (csrf_field(sess))
                    label for={ "portal-" (id) } { "Bound to portal" }
                    select #{ "portal-" (id) } name="portal" { (portal_options(&portals, p.portal_id)) }
                    div.check {
                        input #{ "sms-" (id) } type="checkbox" name="sms_service" checked[p.sms_service];
                        label for={ "sms-" (id) } { "Offer this number as the portal's SMS provider" }
                    }
                    div.check {
                        input #{ "fp-" (id) } type="checkbox" name="file_proxy" checked[p.file_proxy];
                        label for={ "fp-" (id) } { "File proxy: stream media from Meta on demand (no local copy)" }
                    }
                    button type="submit" { "Save phone " (p.number) }
                }
                details open[problem.as_ref().is_some_and(|x| x.form == format!("calling-{id}")) || p.calling_last_error.is_some()] {
                    summary { "Calling: "
                        @if p.calling_active() { span.ok { "enabled at Meta" } }
                        @else if p.calling_enabled { span.warn { "wanted, not enabled at Meta" } }
                        @else { span.muted { "off" } }
                        @if let Some(st) = &p.calling_status { " (Meta's status: " (st) ")" } }
                    @let refused_now = problem.as_ref().is_some_and(|x| x.form == format!("calling-{id}"));
                    @if let Some(e) = CallingErrorView::of_phone(p).filter(|_| !refused_now) {
                        div.problem role="alert" {
                            p { strong { "Meta refused the last change" } @if let Some(c) = e.code { " with error " strong { (c) } } ": " (e.message) }
                            @if let Some(x) = &e.explanation { p { "What it means: " (x) } }
                            @if let Some(d) = &e.details { p { "Details: " (d) } }
                        }
                    }
                    (problem_at(&problem, &format!("calling-{id}")))
                    form method="post" action={ "/admin/phones/" (id) "/calling" } {
                        (csrf_field(sess))
                        div.check {
                            input #{ "call-on-" (id) } type="checkbox" name="enabled" checked[p.calling_enabled];
                            label for={ "call-on-" (id) } { "Calling with SIP enabled at Meta" }
                        }
                        label for={ "sip-host-" (id) } { "SIP host Meta connects to (this service's SIP edge)" }
                        input #{ "sip-host-" (id) } name="sip_host" value=(p.sip_host.as_deref().unwrap_or_default());
                        label for={ "sip-port-" (id) } { "SIP TLS port" }
                        input #{ "sip-port-" (id) } name="sip_port" inputmode="numeric" value=(p.sip_port.unwrap_or(5061));
                        label for={ "srtp-" (id) } { "SRTP key exchange" }
                        select #{ "srtp-" (id) } name="srtp_key_exchange" {
                            @for k in ["SDES", "DTLS"] {
                                option value=(k) selected[p.srtp_key_exchange.as_deref().unwrap_or("SDES") == k] { (k) }
                            }
                        }
                        button type="submit" { "Apply calling settings at Meta" }
                    }
                }
                form.archive method="post" action={ "/admin/phones/" (id) "/archive" } {
                    (csrf_field(sess))
                    p.help { "Archiving unbinds the number from its portal and stops its SMS service; its history \
                              stays and it leaves this list (Show archived lists it)." }
                    button type="submit" { "Archive " (p.number) }
                }
                }
            }
        }
        @if phones.is_empty() && show_archived { p { "No archived phone." } }
        (pager)
        (create_card(&problem, sess, ("phone-create", "/admin/phones"), "Register a phone number", wabas.is_empty().then_some("Register a WABA first."), html! {
                    (field(&problem, "phone-create", ("number", "number"), "Number (international, e.g. +55 11 93000-1234)", Kind::Tel, true))
                    (field(&problem, "phone-create", ("phone_number_id", "phone_number_id"), "Meta's phone number id (digits)", Kind::Digits, true))
                    label for="phone_waba" { "WABA" }
                    select #phone_waba name="waba" { @for w in &wabas { option value=(w.id) { (w.waba_id) " " (w.name) } } }
                    label for="phone_portal" { "Portal (optional)" }
                    select #phone_portal name="portal" { (portal_options(&portals, None)) }
            }))
    };
    Ok(page(status_of(&problem), layout("Phones", Some(sess), flash.as_deref(), content)))
}

pub async fn phone_create(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let result = async {
        let input = PhoneInput {
            number: f.string("number"),
            phone_number_id: f.string("phone_number_id"),
            waba: f.int("waba")?,
            portal: f.int("portal")?.map(Some),
            ..PhoneInput::default()
        };
        Ok::<_, ApiError>(registry::create_phone(&s.store, &input).await?)
    }
    .await;
    match result {
        Ok(p) => {
            s.engine.wake();
            let bound = if p.portal_id.is_some() { "; the binding to its portal is queued" } else { "" };
            done(&s, &sess, "/admin/phones", &format!("Phone {} registered{bound}.", p.number)).await
        }
        Err(err) => phones_page(&s, &sess, &ListQuery::default(), None, Problem::typed("phone-create", err, f)).await,
    }
}

pub async fn phone_update(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let result = async {
        let before = registry::get_phone(&s.store, id).await?;
        let portal = f.int("portal")?;
        let (sms, fp) = (f.ticked("sms_service"), f.ticked("file_proxy"));
        let input = PhoneInput {
            portal: (portal != before.portal_id).then_some(portal),
            sms_service: (sms != before.sms_service).then_some(sms),
            file_proxy: (fp != before.file_proxy).then_some(fp),
            ..PhoneInput::default()
        };
        let after = registry::update_phone(&s.store, id, &input).await?;
        Ok::<_, ApiError>((before, after))
    }
    .await;
    match result {
        Ok((before, after)) => {
            s.engine.wake();
            let mut what = Vec::new();
            if before.portal_id != after.portal_id {
                what.push(match after.portal_id {
                    Some(_) => "bound to its portal (the open line is being set up: its state shows below)",
                    None => "unbound from its portal",
                });
            }
            if before.sms_service != after.sms_service {
                what.push(if after.sms_service {
                    "offered as SMS provider (registration queued)"
                } else {
                    "no longer an SMS provider"
                });
            }
            if before.file_proxy != after.file_proxy {
                what.push(if after.file_proxy { "file proxy on" } else { "file proxy off" });
            }
            let msg = if what.is_empty() {
                format!("Phone {}: nothing changed.", after.number)
            } else {
                format!("Phone {}: {}.", after.number, what.join("; "))
            };
            done(&s, &sess, "/admin/phones", &msg).await
        }
        Err(err) => phones_page(&s, &sess, &ListQuery::default(), None, Problem::at(format!("phone-{id}"), err)).await,
    }
}

pub async fn phone_calling(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let result = async {
        let input = CallingInput {
            enabled: f.ticked("enabled"),
            sip_host: f.string("sip_host"),
            sip_port: f.int("sip_port")?,
            srtp_key_exchange: f.string("srtp_key_exchange"),
            call_icon_visibility: None,
            callback_permission: None,
            digest: None,
        };
        crate::http::calling::apply(&s, id, &input).await
    }
    .await;
    match result {
        Ok(p) => {
            let msg = if p.calling_enabled {
                "Meta accepted: calling is enabled."
            } else {
                "Meta accepted: calling is disabled."
            };
            done(&s, &sess, "/admin/phones", &format!("Phone {}: {msg}", p.number)).await
        }
        Err(err) => {
            phones_page(&s, &sess, &ListQuery::default(), None, Problem::at(format!("calling-{id}"), err)).await
        }
    }
}

/// Archives a phone (`registry::archive_phone`, as the admin API and CLI do) and says what that did.
pub async fn phone_archive(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, _) = posted!(s, headers, body);
    let before = match registry::get_phone(&s.store, id).await {
        Ok(p) => p,
        Err(err) => {
            return phones_page(&s, &sess, &ListQuery::default(), None, Problem::at(format!("archive-{id}"), err)).await
        }
    };
    match registry::archive_phone(&s.store, id).await {
        Ok(p) => {
            s.engine.wake();
            let msg = if before.archived_at.is_some() {
                format!("Phone {} was already archived: nothing changed.", p.number)
            } else {
                format!(
                    "Phone {} archived: unbound from its portal, no SMS service, its history kept. It is hidden from \
                     this list: \"Show archived\" lists it.",
                    p.number
                )
            };
            done(&s, &sess, "/admin/phones", &msg).await
        }
        Err(err) => {
            phones_page(&s, &sess, &ListQuery::default(), None, Problem::at(format!("archive-{id}"), err)).await
        }
    }
}

/// Brings an archived phone back into the list (still unbound).
pub async fn phone_restore(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, _) = posted!(s, headers, body);
    match registry::restore_phone(&s.store, id).await {
        Ok(p) => {
            let msg = format!(
                "Phone {} is in use again (unarchived). It is not bound to a portal: choose one below to bind it.",
                p.number
            );
            done(&s, &sess, "/admin/phones", &msg).await
        }
        Err(err) => {
            let q = ListQuery { archived: Some("1".into()), ..ListQuery::default() };
            phones_page(&s, &sess, &q, None, Problem::at(format!("archive-{id}"), err)).await
        }
    }
}

// ------------------------------------------------------------------------------------------------ portals

pub async fn portals(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    portals_page(&s, &sess, &q, flash, None).await
}

async fn portals_page(
    s: &AppState,
    sess: &Session,
    q: &ListQuery,
    flash: Option<String>,
    problem: Option<Problem>,
) -> Result<Response, Oops> {
    let portals = s.store.list_portals().await?;
    let (idx, pager) = paged(&portals, q, "/admin/portals?");
    let content = html! {
        div.scroll { table {
            thead { tr { th scope="col" { "Id" } th scope="col" { "Domain" } th scope="col" { "member_id" } th scope="col" { "State" } th scope="col" { "Token expires" } } }
            tbody { @for i in idx { @let p = &portals[i]; tr {
                td { (p.id) } td { (p.domain) } td { code { (p.member_id) } }
                td { @if p.active { span.ok { "installed" } } @else { span.muted { "uninstalled" } } }
                td { (p.token_expires_at.map(when).unwrap_or_else(|| "-".into())) }
            } } }
        } }
        (pager)
        (create_card(&problem, sess, ("portal-create", "/admin/portals"), "Register a portal by hand", None, html! {
                p.help { "Normally a portal registers itself when the wabridge app is installed in Bitrix24." }
                (field(&problem, "portal-create", ("member_id", "member_id"), "member_id", Kind::Text, true))
                (field(&problem, "portal-create", ("portal_domain", "domain"), "Domain (e.g. example.bitrix24.com)", Kind::Text, true))
                (field(&problem, "portal-create", ("client_endpoint", "client_endpoint"), "REST endpoint (e.g. https://example.bitrix24.com/rest/)", Kind::Url, true))
                (field(&problem, "portal-create", ("application_token", "application_token"), "application_token (optional)", Kind::Secret, false))
            }))
    };
    Ok(page(status_of(&problem), layout("Portals", Some(sess), flash.as_deref(), content)))
}

pub async fn portal_create(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let input = PortalInput {
        member_id: f.string("member_id"),
        domain: f.string("domain"),
        client_endpoint: f.string("client_endpoint"),
        application_token: f.string("application_token"),
        ..PortalInput::default()
    };
    match registry::create_portal(&s.store, &input).await {
        Ok(p) => done(&s, &sess, "/admin/portals", &format!("Portal {} registered.", p.domain)).await,
        Err(err) => portals_page(&s, &sess, &ListQuery::default(), None, Problem::typed("portal-create", err, f)).await,
    }
}

// ------------------------------------------------------------------------------------------------ templates

pub async fn templates(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    let wabas = s.store.list_wabas().await?;
    let chosen = q.waba.or(wabas.first().map(|w| w.id));
    let list = match chosen {
        Some(w) => crate::templates::list_views(&s.store, w).await?,
        None => Vec::new(),
    };
    let base = chosen.map_or("/admin/templates?".to_string(), |w| format!("/admin/templates?waba={w}&"));
    let (idx, pager) = paged(&list, &q, &base);
    let content = html! {
        @if wabas.is_empty() { p { "No WABA yet: " a href="/admin/wabas" { "register one" } "." } } @else {
            form.inline method="get" action="/admin/templates" {
                label for="tpl-waba" { "WABA" }
                select #tpl-waba name="waba" { @for w in &wabas { option value=(w.id) selected[Some(w.id) == chosen] { (w.waba_id) " " (w.name) } } }
                button type="submit" { "Show" }
            }
            @if let Some(w) = chosen {
                form method="post" action="/admin/templates/sync" {
                    (csrf_field(&sess))
                    input type="hidden" name="waba" value=(w);
                    button type="submit" { "Sync templates from Meta now" }
                }
            }
            @if list.is_empty() { p { "No template synced yet." } }
            div.scroll { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Language" } th scope="col" { "Status" } th scope="col" { "Category" } th scope="col" { "Problem" } } }
                tbody { @for i in idx { @let t = &list[i]; tr {
                    td { (t.name) } td { (t.language) }
                    td { @if t.status == "APPROVED" { span.ok { (t.status) } } @else { span.warn { (t.status) } } }
                    td { (t.category.as_deref().unwrap_or("-")) }
                    td { @if let Some(p) = &t.variant_problem { span.bad { (p) } } }
                } } }
            } }
            (pager)
        }
    };
    Ok(page(StatusCode::OK, layout("Templates", Some(&sess), flash.as_deref(), content)))
}

pub async fn templates_sync(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (sess, f) = posted!(s, headers, body);
    let waba = f.int("waba")?.ok_or_else(|| ApiError::field("waba", "is required"))?;
    crate::http::templates::queue_sync(&s, waba).await?;
    done(
        &s,
        &sess,
        &format!("/admin/templates?waba={waba}"),
        "Template sync queued: the workers fetch the templates from Meta; reload to see them.",
    )
    .await
}

// ------------------------------------------------------------------------------------------------ lists

pub async fn messages(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    let rows = stored::recent(&s.store, q.before, PAGE).await?;
    let phones = s.store.list_phones().await?;
    let number = |id: i64| phones.iter().find(|p| p.id == id).map_or(id.to_string(), |p| p.number.clone());
    let content = html! {
        @if rows.is_empty() { p { "No message yet." } }
        div.scroll { table {
            thead { tr { th scope="col" { "Time" } th scope="col" { "Number" } th scope="col" { "Direction" } th scope="col" { "Customer" } th scope="col" { "Type" } th scope="col" { "Text" } th scope="col" { "Status" } th scope="col" { "CRM chat" } } }
            tbody { @for m in &rows { tr.message {
                td { (when(m.created_at)) } td { (number(m.phone_id)) }
                td { (if m.direction == "in" { "from customer" } else { "to customer" }) }
                td { (m.contact.as_deref().unwrap_or("-")) } td { (m.msg_type) }
                td.text { (m.body.as_deref().map(|b| b.chars().take(300).collect::<String>()).unwrap_or_default()) }
                td { (m.status.as_deref().unwrap_or("-")) }
                td { (m.crm_chat_id.as_deref().unwrap_or("-")) }
            } } }
        } }
        (keyset_pager("/admin/messages", '?', &q, rows.last().map(|m| m.id), rows.len() as i64 == PAGE))
    };
    Ok(page(StatusCode::OK, layout("Messages", Some(&sess), flash.as_deref(), content)))
}

pub async fn sends(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    let rows = crate::outbound::list(&s.store, q.before, PAGE).await?;
    let content = html! {
        @if rows.is_empty() { p { "No send yet." } }
        div.scroll { table {
            thead { tr { th scope="col" { "Id" } th scope="col" { "Created" } th scope="col" { "Phone" } th scope="col" { "Recipient" } th scope="col" { "Origin" } th scope="col" { "State" } th scope="col" { "Meta status" } th scope="col" { "Error" } } }
            tbody { @for o in &rows { tr {
                td { (o.id) } td { (o.created_at) } td { (o.phone_id) } td { (o.recipient) } td { (o.origin) }
                td { (o.state) } td { (o.status.as_deref().unwrap_or("-")) }
                td { @if let Some(e) = &o.error_text { span.bad { @if let Some(c) = o.error_code { (c) " " } (e) } } }
            } } }
        } }
        (keyset_pager("/admin/sends", '?', &q, rows.last().map(|o| o.id), rows.len() as i64 == PAGE))
    };
    Ok(page(StatusCode::OK, layout("Sends", Some(&sess), flash.as_deref(), content)))
}

pub async fn calls(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    let page_no = q.page();
    let filter = CallFilter {
        phone: None,
        direction: None,
        since_ms: None,
        answered: None,
        limit: PAGE + 1,
        offset: (page_no - 1) * PAGE,
    };
    let mut rows = s.store.list_calls(&filter).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let content = html! {
        @if rows.is_empty() { p { "No call yet." } }
        div.scroll { table {
            thead { tr { th scope="col" { "Invited" } th scope="col" { "Phone" } th scope="col" { "Direction" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Answered" } th scope="col" { "Seconds" } th scope="col" { "Final status" } } }
            tbody { @for c in &rows { tr {
                td { (c.invited_at) } td { (c.phone.map(|p| p.to_string()).unwrap_or_default()) } td { (c.direction) }
                td { (c.caller.as_deref().unwrap_or("-")) } td { (c.callee.as_deref().unwrap_or("-")) }
                td { (c.answered_at.as_deref().unwrap_or("no")) }
                td { (c.duration_seconds.map(|d| d.to_string()).unwrap_or_default()) }
                td { (c.final_status.map(|d| d.to_string()).unwrap_or_default()) }
            } } }
        } }
        nav.pager aria-label="Pages" {
            @if page_no > 1 { a href={ "/admin/calls?page=" (page_no - 1) } { "← Newer" } }
            span { "Page " (page_no) }
            @if more { a href={ "/admin/calls?page=" (page_no + 1) } { "Older →" } }
        }
    };
    Ok(page(StatusCode::OK, layout("Calls", Some(&sess), flash.as_deref(), content)))
}

pub async fn jobs(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Result<Response, Oops> {
    let sess = logged_in!(s, headers);
    let flash = flash(&s, &sess).await?;
    jobs_page(&s, &sess, &q, flash, None).await
}

async fn jobs_page(
    s: &AppState,
    sess: &Session,
    q: &ListQuery,
    flash: Option<String>,
    problem: Option<Problem>,
) -> Result<Response, Oops> {
    let state = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some("pending") => Some(JobState::Pending),
        Some("running") => Some(JobState::Running),
        Some("done") => Some(JobState::Done),
        Some("dead") => Some(JobState::Dead),
        Some(_) => return Err(ApiError::field("state", "must be all, pending, running, done or dead").into()),
    };
    let rows = s.engine.list(state, q.before, PAGE).await?;
    let current = q.state.as_deref().unwrap_or("all");
    let base = format!("/admin/jobs?state={current}");
    let content = html! {
        nav.filters aria-label="Job states" { ul { @for st in ["all", "pending", "running", "dead", "done"] {
            li { a href={ "/admin/jobs?state=" (st) } aria-current=[(st == current).then_some("page")] { (st) } }
        } } }
        (problem_at(&problem, "redrive"))
        @if rows.is_empty() { p { "No job in this state." } }
        div.scroll { table {
            thead { tr { th scope="col" { "Id" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Next run" } th scope="col" { "Last error" } th scope="col" { span.visually-hidden { "Action" } } } }
            tbody { @for j in &rows { tr #{ "job-" (j.id) } {
                td { (j.id) } td { code { (j.kind) } }
                td { @if j.state == "dead" { span.bad { "dead" } } @else if j.state == "done" { span.ok { "done" } } @else { (j.state) } }
                td { (j.attempts) " / " (j.max_attempts) } td { (j.run_at) }
                td.text { (j.last_error.as_deref().unwrap_or_default()) }
                td { @if j.state == "dead" {
                    form method="post" action={ "/admin/jobs/" (j.id) "/redrive" } {
                        (csrf_field(sess))
                        button type="submit" aria-label={ "Redrive job " (j.id) } { "Redrive" }
                    }
                } }
            } } }
        } }
        (keyset_pager(&base, '&', q, rows.last().map(|j| j.id), rows.len() as i64 == PAGE))
    };
    Ok(page(status_of(&problem), layout("Jobs", Some(sess), flash.as_deref(), content)))
}

pub async fn job_redrive(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: Bytes,
) -> Result<Response, Oops> {
    let (sess, _) = posted!(s, headers, body);
    match crate::http::jobs::redrive(&s, id).await {
        Ok(()) => {
            done(
                &s,
                &sess,
                "/admin/jobs?state=all",
                &format!("Job {id} is queued again with a fresh attempt budget; its state shows below."),
            )
            .await
        }
        Err(err) => {
            let q = ListQuery { state: Some("dead".into()), ..ListQuery::default() };
            jobs_page(&s, &sess, &q, None, Problem::at("redrive", err)).await
        }
    }
}
