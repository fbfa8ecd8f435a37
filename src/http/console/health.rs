//! The console's Health page (`/admin`): per WABA what Meta says about its access token (expiry, validity,
//! permissions; red by `health::figures::token_verdict`), per phone whether it can send and why not, its quality
//! rating and messaging limit tier (the hourly `health.check` job, `crate::health`), the last webhook per app and
//! phone, the latest quality and account webhooks, dead jobs and errors Meta reported in webhooks. Its one form,
//! "Check now", queues a check of every WABA.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use super::pages::connector;
use super::{ago, csrf_field, done, guard, layout, page, session, to_login, when, Oops, PAGE};
use crate::health::{self, figures, PhoneReport, WabaReport};
use crate::http::AppState;
use crate::jobs::JobState;
use crate::store::activity::{self, Scope};
use crate::store::{account_events, console as sessions, now_ms, webhook_errors};

pub async fn page_view(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, Oops> {
    let Some(sess) = session(&s, &headers).await? else { return Ok(to_login()) };
    let flash = sessions::take_flash(&s.store, &sess.id_hash).await?;
    let now = now_ms();
    let apps = s.store.list_apps().await?;
    let wabas = s.store.list_wabas().await?;
    let mut phones = s.store.list_phones().await?;
    phones.retain(|p| p.archived_at.is_none()); // archived numbers are not watched
    let report = health::report(&s.store, now).await?;
    let app_seen = activity::all(&s.store, Scope::App).await?;
    let phone_seen = activity::all(&s.store, Scope::Phone).await?;
    let events = account_events::latest_health(&s.store, 1000).await?;
    let dead = s.engine.list(Some(JobState::Dead), None, PAGE + 1).await?;
    let errors = webhook_errors::list(&s.store, None, 10).await?;
    let last = |seen: &HashMap<i64, i64>, id: i64| -> Markup {
        match seen.get(&id) {
            Some(t) => html! { span.ok title=(when(*t)) { (ago(*t, now)) } },
            None => html! { span.bad { "none received yet" } },
        }
    };
    let checked = |at: Option<i64>| -> Markup {
        match at {
            Some(t) => html! { span title=(when(t)) { (ago(t, now)) } },
            None => html! { span.muted { "not yet" } },
        }
    };
    let content = html! {
        section aria-labelledby="h-tokens" {
            h2 #h-tokens { "Access tokens: what Meta says (per WABA)" }
            form.inline method="post" action="/admin/health/check" {
                (csrf_field(&sess))
                button type="submit" aria-describedby="check-help" { "Check now" }
            }
            p.help #check-help { "wabridge asks Meta every hour (debug_token for each WABA's token, health_status, \
                quality rating and messaging limit tier for each phone). \"Check now\" asks at once; the token \
                itself is never shown." }
            @if report.wabas.is_empty() { p { "No WABA yet: " a href="/admin/wabas" { "register one" } "." } }
            div.scroll { table #tokens {
                thead { tr { th scope="col" { "WABA" } th scope="col" { "Token expiry" } th scope="col" { "Permissions" } th scope="col" { "Checked" } th scope="col" { "What to do" } } }
                tbody { @for w in &report.wabas { (token_row(w, &checked)) } }
            } }
        }
        section aria-labelledby="h-apps" {
            h2 #h-apps { "Apps: the last webhook from Meta" }
            @if apps.is_empty() { p { "No app yet: " a href="/admin/apps" { "register one" } "." } }
            div.scroll { table {
                thead { tr { th scope="col" { "App" } th scope="col" { "Last webhook" } th scope="col" { "Signatures" } } }
                tbody { @for a in &apps { tr {
                    td { (a.name) " " code { (a.meta_app_id) } }
                    td { (last(&app_seen, a.id)) }
                    td { @if a.verify_signatures { span.ok { "checked" } } @else { span.bad { "OFF" } } }
                } } }
            } }
        }
        section aria-labelledby="h-phones" {
            h2 #h-phones { "Phones: can they send, quality, the last webhook, connector" }
            p.help { "A number verified at Meta that never receives a webhook is usually not subscribed: check the \
                      app's webhook fields (messages) and the WABA's subscription in Meta's dashboard." }
            div.scroll { table #phones-health {
                thead { tr {
                    th scope="col" { "Number" } th scope="col" { "Can send (Meta)" } th scope="col" { "Quality rating · limit tier" }
                    th scope="col" { "Checked" } th scope="col" { "Last webhook" } th scope="col" { "Connector" }
                    th scope="col" { "Latest quality webhook" }
                } }
                tbody { @for p in phones.iter().filter(|p| p.archived_at.is_none()) {
                    @let waba = wabas.iter().find(|w| w.id == p.waba_id);
                    @let digits: String = p.number.chars().filter(char::is_ascii_digit).collect();
                    @let quality = waba.and_then(|w| events.iter().find(|e| e.waba_id == w.waba_id
                        && e.field == "phone_number_quality_update"
                        && e.raw.get("display_phone_number").and_then(|d| d.as_str())
                            .is_none_or(|d| d.chars().filter(char::is_ascii_digit).collect::<String>() == digits)));
                    @let r = report.phones.iter().find(|r| r.id == p.id);
                    tr #{ "health-phone-" (p.id) } {
                        th scope="row" { (p.number) }
                        td { (can_send_cell(r)) }
                        td { (quality_cell(r)) }
                        td { (checked(r.and_then(|r| r.checked_at))) }
                        td { (last(&phone_seen, p.id)) }
                        td { (connector(p)) }
                        td { @match quality {
                            Some(e) => {
                                (e.event.as_deref().unwrap_or("update")) " · limit "
                                (e.raw.get("current_limit").or_else(|| e.raw.get("max_daily_conversations_per_business"))
                                    .and_then(|v| v.as_str()).unwrap_or("not given"))
                                " (" (when(e.occurred_at)) ")"
                            }
                            None => span.muted { "none received" },
                        } }
                    }
                } }
            } }
        }
        section aria-labelledby="h-account" {
            h2 #h-account { "Account updates (latest per WABA)" }
            @let updates: Vec<_> = events.iter().filter(|e| e.field == "account_update").collect();
            @if updates.is_empty() { p { "No account_update webhook received." } }
            ul { @for e in updates { li { "WABA " code { (e.waba_id) } ": " (e.event.as_deref().unwrap_or("update")) " (" (when(e.occurred_at)) ")" } } }
            @for w in wabas.iter().filter(|w| w.sends_paused_reason.is_some()) {
                p.bad { "Sends of WABA " code { (w.waba_id) } " are paused: " (w.sends_paused_reason.as_deref().unwrap_or_default()) }
            }
        }
        section aria-labelledby="h-dead" {
            h2 #h-dead { "Dead jobs" }
            @if dead.is_empty() { p.ok { "None." } }
            @else { p.bad { (if dead.len() as i64 > PAGE { format!("More than {PAGE}") } else { dead.len().to_string() }) " dead job(s): "
                a href="/admin/jobs?state=dead" { "see them and redrive" } "." } }
        }
        section aria-labelledby="h-errors" {
            h2 #h-errors { "Errors Meta reported in webhooks (latest 10)" }
            @if errors.is_empty() { p.ok { "None." } }
            ul { @for e in &errors { li { (e.occurred_at) " · phone " (e.phone) " · " strong { (e.code) } " " (e.title.as_deref().unwrap_or_default()) " " (e.message.as_deref().unwrap_or_default()) } } }
        }
    };
    Ok(page(StatusCode::OK, layout("Health", Some(&sess), flash.as_deref(), content)))
}

/// One WABA's row of the token table.
fn token_row(w: &WabaReport, checked: &dyn Fn(Option<i64>) -> Markup) -> Markup {
    let v = &w.verdict;
    let expiry_title = w.expires_at.filter(|e| *e > 0).map(|e| when(e * 1000));
    html! {
        tr #{ "health-waba-" (w.id) } {
            th scope="row" { code { (w.waba_id) } @if !w.name.is_empty() { " " (w.name) } }
            td { span class=(v.level.class()) title=[expiry_title] { (v.summary) }
                 @if let Some(t) = &w.token_type { br; span.help { (t) " token" } } }
            td { @match (w.token_valid, w.missing_scopes.is_empty()) {
                (None, _) => span.muted { "not known" },
                (Some(_), true) => span.ok { "both WhatsApp permissions" },
                (Some(_), false) => span.bad { "lacks " (w.missing_scopes.join(", ")) },
            } }
            td { (checked(w.checked_at))
                 @if let (Some(e), Some(ok)) = (&w.error, w.ok_at) { @if w.token_valid == Some(true) {
                     br; span.bad { "the last check failed: " (e) } " (figures as of " (when(ok)) ")"
                 } } }
            td { @if let Some(t) = &v.todo { (t) } @else { span.muted { "nothing" } } }
        }
    }
}

/// Whether Meta lets the number send, and every entity that limits or blocks it, in Meta's words.
fn can_send_cell(r: Option<&PhoneReport>) -> Markup {
    let Some(r) = r.filter(|r| r.checked_at.is_some()) else { return html! { span.muted { "not checked yet" } } };
    html! {
        @match &r.can_send {
            Some(c) => {
                span class=(figures::can_send_level(c).class()) { (c) }
                @if !r.reasons.is_empty() { ul.reasons { @for x in &r.reasons { li {
                    (x.entity_type) " " code { (x.id) } ": " (x.status)
                    @if !x.info.is_empty() { " — " (x.info.join(" ")) }
                } } } }
            }
            None => span.muted { "not known" },
        }
        @if let Some(e) = &r.error { p.bad { @if r.can_send.is_some() { "The last check failed: " } (e) } }
    }
}

fn quality_cell(r: Option<&PhoneReport>) -> Markup {
    let Some(r) = r.filter(|r| r.can_send.is_some()) else { return html! { span.muted { "not known" } } };
    let rating = r.quality_rating.as_deref();
    html! {
        span class=(figures::quality_level(rating).class()) { (rating.unwrap_or("not given")) }
        " · " (r.messaging_limit_tier.as_deref().unwrap_or("tier not given"))
    }
}

/// "Check now": queues a `health.check` of every WABA and says what was queued.
pub async fn check_now(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Oops> {
    let (sess, _) = match guard(&s, &headers, &body).await {
        Ok(ok) => ok,
        Err(resp) => return Ok(resp),
    };
    let q = health::request_checks(&s.store, None).await?;
    s.engine.wake();
    let message = match q.wabas.len() {
        0 => "Nothing to check: register a WABA first.".to_string(),
        n => format!(
            "Health check queued for {} ({}) and {} phone(s): the workers ask Meta now; reload in a moment to see \
             the figures.",
            if n == 1 { "1 WABA".to_string() } else { format!("{n} WABAs") },
            q.wabas.join(", "),
            q.phones
        ),
    };
    done(&s, &sess, "/admin", &message).await
}
