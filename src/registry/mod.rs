//! The registry service: validates input, enforces references, and shapes the views shown by the admin API
//! and the CLI (which both call these functions, so they behave the same).

mod inputs;
mod views;

pub use inputs::*;
pub use views::*;

use crate::phone::normalize_e164;
use crate::seal::random_token;
use crate::store::registry::{App, Phone, PhoneKey, Portal, RefTable, Waba};
use crate::store::{is_unique_violation, now_ms, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid input: {}", .0.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{message}")]
    Conflict { field: Option<&'static str>, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        RegistryError::Store(StoreError::Db(e))
    }
}

/// Collects field errors so one answer names every wrong field at once.
#[derive(Default)]
struct Check(Vec<FieldError>);

impl Check {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
    fn required<'a>(&mut self, field: &str, v: &'a Option<String>) -> Option<&'a str> {
        match v.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(s),
            _ => {
                self.fail(field, "is required");
                None
            }
        }
    }
    fn finish(self) -> Result<(), RegistryError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::Validation(self.0))
        }
    }
}

fn is_graph_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_hostname(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    port_ok
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn check_graph_id(c: &mut Check, field: &str, v: Option<&str>) {
    if let Some(v) = v {
        if !is_graph_id(v) {
            c.fail(field, "must be the numeric id shown in Meta's dashboard (digits only)");
        }
    }
}

fn check_domain(c: &mut Check, field: &str, v: Option<&str>) {
    if let Some(v) = v {
        if !is_hostname(v) {
            c.fail(field, "must be a host name such as wabridge.example.com (no scheme, no path)");
        }
    }
}

fn check_secret(c: &mut Check, field: &str, v: Option<&str>, min: usize) {
    if let Some(v) = v {
        if v.trim().len() < min || v.chars().any(char::is_whitespace) {
            c.fail(field, format!("must be at least {min} characters without spaces"));
        }
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

fn not_found(what: &'static str, id: impl ToString) -> RegistryError {
    RegistryError::NotFound { what, id: id.to_string() }
}

fn conflict(field: Option<&'static str>, message: impl Into<String>) -> RegistryError {
    RegistryError::Conflict { field, message: message.into() }
}

fn list_ids(ids: &[i64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------- apps

pub async fn create_app(store: &Store, input: &AppInput) -> Result<App, RegistryError> {
    let mut c = Check::default();
    let meta_app_id = c.required("meta_app_id", &input.meta_app_id);
    check_graph_id(&mut c, "meta_app_id", meta_app_id);
    let domain = c.required("domain", &input.domain);
    check_domain(&mut c, "domain", domain);
    let secret = c.required("app_secret", &input.app_secret);
    check_secret(&mut c, "app_secret", secret, 16);
    check_secret(&mut c, "access_token", non_empty(&input.access_token).as_deref(), 16);
    if input.rotate_verify_token.is_some() {
        c.fail("rotate_verify_token", "only applies to an existing app (PATCH)");
    }
    c.finish()?;
    let (meta_app_id, domain, secret) =
        (meta_app_id.unwrap_or_default(), domain.unwrap_or_default(), secret.unwrap_or_default());
    if store.find_app_by_meta_id(meta_app_id).await?.is_some() {
        return Err(conflict(Some("meta_app_id"), format!("an app with meta_app_id {meta_app_id} already exists")));
    }
    let now = now_ms();
    let mut app = App {
        id: 0,
        meta_app_id: meta_app_id.into(),
        name: non_empty(&input.name).unwrap_or_default(),
        domain: domain.to_ascii_lowercase(),
        app_secret: secret.into(),
        access_token: non_empty(&input.access_token),
        verify_token: random_token(40),
        keep_raw_events: input.keep_raw_events.unwrap_or(false),
        verify_signatures: input.verify_signatures.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    app.id = store.insert_app(&app).await.map_err(|e| match e {
        StoreError::Db(ref d) if is_unique_violation(d) => {
            conflict(Some("meta_app_id"), format!("an app with meta_app_id {meta_app_id} already exists"))
        }
        e => e.into(),
    })?;
    if !app.verify_signatures {
        tracing::warn!(app = app.id, "webhook signature verification is OFF for this app; use only for local testing");
    }
    Ok(app)
}

pub async fn get_app(store: &Store, id: i64) -> Result<App, RegistryError> {
    store.get_app(id).await?.ok_or_else(|| not_found("app", id))
}

pub async fn update_app(store: &Store, id: i64, input: &AppInput) -> Result<App, RegistryError> {
    let mut app = get_app(store, id).await?;
    let mut c = Check::default();
    if input.meta_app_id.as_ref().is_some_and(|m| m != &app.meta_app_id) {
        c.fail("meta_app_id", "cannot be changed; register a new app instead");
    }
    check_domain(&mut c, "domain", input.domain.as_deref());
    check_secret(&mut c, "app_secret", input.app_secret.as_deref(), 16);
    check_secret(&mut c, "access_token", non_empty(&input.access_token).as_deref(), 16);
    c.finish()?;
    if let Some(d) = &input.domain {
        app.domain = d.trim().to_ascii_lowercase();
    }
    if let Some(n) = &input.name {
        app.name = n.trim().into();
    }
    if let Some(s) = &input.app_secret {
        app.app_secret = s.trim().into();
    }
    if input.access_token.is_some() {
        app.access_token = non_empty(&input.access_token);
    }
    if let Some(k) = input.keep_raw_events {
        app.keep_raw_events = k;
    }
    if let Some(v) = input.verify_signatures {
        app.verify_signatures = v;
        if !v {
            tracing::warn!(app = app.id, "webhook signature verification switched OFF; use only for local testing");
        }
    }
    if input.rotate_verify_token == Some(true) {
        app.verify_token = random_token(40);
    }
    app.updated_at = now_ms();
    store.update_app(&app).await?;
    if input.access_token.is_some() {
        // A new token lifts a pause caused by Meta refusing the old one.
        for w in store.list_wabas().await?.iter().filter(|w| w.app_id == app.id) {
            crate::outbound::sender::resume_waba(store, w.id).await?;
        }
    }
    Ok(app)
}

pub async fn delete_app(store: &Store, id: i64) -> Result<(), RegistryError> {
    get_app(store, id).await?;
    let wabas = store.referencing(RefTable::WabasOfApp, id).await?;
    if !wabas.is_empty() {
        return Err(conflict(None, format!("app {id} is used by WABA(s) {}; remove them first", list_ids(&wabas))));
    }
    store.delete_app(id).await?;
    Ok(())
}

// ---------------------------------------------------------------- WABAs

pub async fn create_waba(store: &Store, input: &WabaInput) -> Result<Waba, RegistryError> {
    let mut c = Check::default();
    let waba_id = c.required("waba_id", &input.waba_id);
    check_graph_id(&mut c, "waba_id", waba_id);
    if input.app.is_none() {
        c.fail("app", "is required (the id of a registered app)");
    }
    check_secret(&mut c, "access_token", non_empty(&input.access_token).as_deref(), 16);
    c.finish()?;
    let waba_id = waba_id.unwrap_or_default();
    let app_id = input.app.unwrap_or_default();
    if store.get_app(app_id).await?.is_none() {
        return Err(RegistryError::Validation(vec![FieldError {
            field: "app".into(),
            message: format!("no app with id {app_id}"),
        }]));
    }
    if store.find_waba_by_meta_id(waba_id).await?.is_some() {
        return Err(conflict(Some("waba_id"), format!("a WABA with waba_id {waba_id} already exists")));
    }
    let now = now_ms();
    let mut w = Waba {
        id: 0,
        waba_id: waba_id.into(),
        app_id,
        name: non_empty(&input.name).unwrap_or_default(),
        access_token: non_empty(&input.access_token),
        sends_paused_reason: None,
        created_at: now,
        updated_at: now,
    };
    w.id = store.insert_waba(&w).await.map_err(|e| match e {
        StoreError::Db(ref d) if is_unique_violation(d) => {
            conflict(Some("waba_id"), format!("a WABA with waba_id {waba_id} already exists"))
        }
        e => e.into(),
    })?;
    Ok(w)
}

pub async fn get_waba(store: &Store, id: i64) -> Result<Waba, RegistryError> {
    store.get_waba(id).await?.ok_or_else(|| not_found("WABA", id))
}

pub async fn update_waba(store: &Store, id: i64, input: &WabaInput) -> Result<Waba, RegistryError> {
    let mut w = get_waba(store, id).await?;
    let mut c = Check::default();
    if input.waba_id.as_ref().is_some_and(|m| m != &w.waba_id) {
        c.fail("waba_id", "cannot be changed; register a new WABA instead");
    }
    check_secret(&mut c, "access_token", non_empty(&input.access_token).as_deref(), 16);
    if let Some(app) = input.app {
        if store.get_app(app).await?.is_none() {
            c.fail("app", format!("no app with id {app}"));
        }
    }
    c.finish()?;
    if let Some(app) = input.app {
        w.app_id = app;
    }
    if let Some(n) = &input.name {
        w.name = n.trim().into();
    }
    if input.access_token.is_some() {
        w.access_token = non_empty(&input.access_token);
    }
    w.updated_at = now_ms();
    store.update_waba(&w).await?;
    if input.access_token.is_some() {
        crate::outbound::sender::resume_waba(store, w.id).await?;
        w.sends_paused_reason = None;
    }
    Ok(w)
}

pub async fn delete_waba(store: &Store, id: i64) -> Result<(), RegistryError> {
    get_waba(store, id).await?;
    let phones = store.referencing(RefTable::PhonesOfWaba, id).await?;
    if !phones.is_empty() {
        return Err(conflict(None, format!("WABA {id} is used by phone(s) {}; remove them first", list_ids(&phones))));
    }
    store.delete_waba(id).await?;
    Ok(())
}

// ---------------------------------------------------------------- portals

pub async fn create_portal(store: &Store, input: &PortalInput) -> Result<Portal, RegistryError> {
    let mut c = Check::default();
    let kind = input.kind.as_deref().unwrap_or("bitrix24");
    if kind != "bitrix24" {
        c.fail("kind", "must be bitrix24 (the only CRM supported so far)");
    }
    let member_id = c.required("member_id", &input.member_id);
    let domain = c.required("domain", &input.domain);
    check_domain(&mut c, "domain", domain);
    let endpoint = c.required("client_endpoint", &input.client_endpoint);
    check_endpoint(&mut c, endpoint);
    c.finish()?;
    let member_id = member_id.unwrap_or_default();
    if store.find_portal_by_member_id(member_id).await?.is_some() {
        return Err(conflict(Some("member_id"), format!("a portal with member_id {member_id} already exists")));
    }
    let now = now_ms();
    let mut p = Portal {
        id: 0,
        kind: kind.into(),
        member_id: member_id.into(),
        domain: domain.unwrap_or_default().to_ascii_lowercase(),
        client_endpoint: endpoint.unwrap_or_default().into(),
        access_token: non_empty(&input.access_token),
        refresh_token: non_empty(&input.refresh_token),
        token_expires_at: None,
        application_token: non_empty(&input.application_token),
        active: true,
        uninstalled_at: None,
        created_at: now,
        updated_at: now,
    };
    p.id = store.insert_portal(&p).await.map_err(|e| match e {
        StoreError::Db(ref d) if is_unique_violation(d) => {
            conflict(Some("member_id"), format!("a portal with member_id {member_id} already exists"))
        }
        e => e.into(),
    })?;
    Ok(p)
}

fn check_endpoint(c: &mut Check, v: Option<&str>) {
    if let Some(v) = v {
        match url::Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => {}
            _ => c.fail("client_endpoint", "must be an http(s) URL such as https://example.bitrix24.com/rest/"),
        }
    }
}

pub async fn get_portal(store: &Store, id: i64) -> Result<Portal, RegistryError> {
    store.get_portal(id).await?.ok_or_else(|| not_found("portal", id))
}

pub async fn update_portal(store: &Store, id: i64, input: &PortalInput) -> Result<Portal, RegistryError> {
    let mut p = get_portal(store, id).await?;
    let mut c = Check::default();
    if input.member_id.as_ref().is_some_and(|m| m != &p.member_id) {
        c.fail("member_id", "cannot be changed");
    }
    if input.kind.as_ref().is_some_and(|k| k != &p.kind) {
        c.fail("kind", "cannot be changed");
    }
    check_domain(&mut c, "domain", input.domain.as_deref());
    check_endpoint(&mut c, input.client_endpoint.as_deref());
    c.finish()?;
    if let Some(d) = &input.domain {
        p.domain = d.trim().to_ascii_lowercase();
    }
    if let Some(e) = &input.client_endpoint {
        p.client_endpoint = e.trim().into();
    }
    for (given, slot) in [
        (&input.access_token, &mut p.access_token),
        (&input.refresh_token, &mut p.refresh_token),
        (&input.application_token, &mut p.application_token),
    ] {
        if given.is_some() {
            *slot = non_empty(given);
        }
    }
    p.updated_at = now_ms();
    store.update_portal(&p).await?;
    Ok(p)
}

/// Uninstall is a logical delete: the portal stays for history, inactive. Refused while phones are bound.
pub async fn deactivate_portal(store: &Store, id: i64) -> Result<Portal, RegistryError> {
    let mut p = get_portal(store, id).await?;
    let phones = store.referencing(RefTable::PhonesOfPortal, id).await?;
    if !phones.is_empty() {
        return Err(conflict(
            None,
            format!("portal {id} is bound to phone(s) {}; unbind them first", list_ids(&phones)),
        ));
    }
    if p.active {
        p.active = false;
        p.uninstalled_at = Some(now_ms());
        p.updated_at = now_ms();
        store.update_portal(&p).await?;
    }
    Ok(p)
}

// ---------------------------------------------------------------- phones

pub async fn create_phone(store: &Store, input: &PhoneInput) -> Result<Phone, RegistryError> {
    let mut c = Check::default();
    let number = c.required("number", &input.number).and_then(|n| match normalize_e164(n) {
        Ok(n) => Some(n),
        Err(e) => {
            c.fail("number", e.to_string());
            None
        }
    });
    let pnid = c.required("phone_number_id", &input.phone_number_id);
    check_graph_id(&mut c, "phone_number_id", pnid);
    if input.waba.is_none() {
        c.fail("waba", "is required (the id of a registered WABA)");
    }
    check_phone_refs(store, &mut c, input).await?;
    c.finish()?;
    let (number, pnid) = (number.unwrap_or_default(), pnid.unwrap_or_default());
    if store.find_phone_by(PhoneKey::Number, &number).await?.is_some() {
        return Err(conflict(Some("number"), format!("a phone with number {number} already exists")));
    }
    if store.find_phone_by(PhoneKey::PhoneNumberId, pnid).await?.is_some() {
        return Err(conflict(Some("phone_number_id"), format!("a phone with phone_number_id {pnid} already exists")));
    }
    let now = now_ms();
    let mut p = Phone {
        portal_id: input.portal.flatten(),
        sms_service: input.sms_service.unwrap_or(false),
        file_proxy: input.file_proxy.unwrap_or(false),
        asterisk_target: input.asterisk_target.clone().flatten(),
        throughput_mps: input.throughput_mps.unwrap_or(80),
        ..Phone::new(number.clone(), pnid.into(), input.waba.unwrap_or_default(), now)
    };
    p.id = store.insert_phone(&p).await.map_err(|e| match e {
        StoreError::Db(ref d) if is_unique_violation(d) => {
            conflict(Some("number"), "a phone with this number or phone_number_id already exists")
        }
        e => e.into(),
    })?;
    crate::crm::after_phone_change(store, None, &p).await?;
    get_phone(store, p.id).await
}

async fn check_phone_refs(store: &Store, c: &mut Check, input: &PhoneInput) -> Result<(), RegistryError> {
    if let Some(w) = input.waba {
        if store.get_waba(w).await?.is_none() {
            c.fail("waba", format!("no WABA with id {w}"));
        }
    }
    if let Some(Some(p)) = input.portal {
        match store.get_portal(p).await? {
            None => c.fail("portal", format!("no portal with id {p}")),
            Some(portal) if !portal.active => c.fail("portal", format!("portal {p} is uninstalled")),
            Some(_) => {}
        }
    }
    if let Some(Some(t)) = &input.asterisk_target {
        if let Err(e) = crate::registry::parse_sip_target(t) {
            c.fail("asterisk_target", e);
        }
    }
    if let Some(t) = input.throughput_mps {
        if !(1..=1000).contains(&t) {
            c.fail("throughput_mps", "must be between 1 and 1000 messages per second (Meta's default is 80)");
        }
    }
    Ok(())
}

/// An Asterisk target: `udp|tcp|tls:host:port` or `host[:port]` (UDP, port 5060).
pub fn parse_sip_target(t: &str) -> Result<(String, String, u16), String> {
    let msg = "must look like udp:pbx.example.com:5060, tcp:10.0.0.5:5060 or tls:pbx.example.com:5061";
    let (transport, rest) = match t.split_once(':') {
        Some((tr @ ("udp" | "tcp" | "tls"), rest)) => (tr, rest),
        _ => ("udp", t),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| msg.to_string())?),
        None => (rest, if transport == "tls" { 5061 } else { 5060 }),
    };
    if !is_hostname(host) || port == 0 {
        return Err(msg.into());
    }
    Ok((transport.into(), host.into(), port))
}

pub async fn get_phone(store: &Store, id: i64) -> Result<Phone, RegistryError> {
    store.get_phone(id).await?.ok_or_else(|| not_found("phone", id))
}

pub async fn update_phone(store: &Store, id: i64, input: &PhoneInput) -> Result<Phone, RegistryError> {
    let mut p = get_phone(store, id).await?;
    let before = p.clone();
    let mut c = Check::default();
    if let Some(n) = &input.number {
        if normalize_e164(n).ok().as_deref() != Some(p.number.as_str()) {
            c.fail("number", "cannot be changed; register the new number as a new phone");
        }
    }
    if input.phone_number_id.as_ref().is_some_and(|m| m != &p.phone_number_id) {
        c.fail("phone_number_id", "cannot be changed; register a new phone instead");
    }
    check_phone_refs(store, &mut c, input).await?;
    c.finish()?;
    if let Some(w) = input.waba {
        p.waba_id = w;
    }
    if let Some(portal) = input.portal {
        if portal != p.portal_id {
            p.line_id = None;
        }
        p.portal_id = portal;
    }
    if let Some(s) = input.sms_service {
        p.sms_service = s;
    }
    if let Some(f) = input.file_proxy {
        p.file_proxy = f;
    }
    if let Some(t) = &input.asterisk_target {
        p.asterisk_target = t.clone();
    }
    if let Some(t) = input.throughput_mps {
        p.throughput_mps = t;
    }
    p.updated_at = now_ms();
    store.update_phone(&p).await?;
    // Re-binding (PATCH with the same portal) runs the binding again: it is idempotent and recreates a line
    // deleted in the portal.
    let rebind = input.portal.is_some() || input.sms_service.is_some();
    if rebind || before.portal_id != p.portal_id || before.sms_service != p.sms_service {
        crate::crm::after_phone_change(store, Some(&before), &p).await?;
    }
    get_phone(store, p.id).await
}

pub async fn delete_phone(store: &Store, id: i64) -> Result<(), RegistryError> {
    get_phone(store, id).await?;
    store.delete_phone(id).await.map_err(|e| match e {
        StoreError::Db(ref d) if crate::store::is_foreign_key_violation(d) => conflict(
            None,
            format!(
                "phone {id} has conversations or sends on record and cannot be removed; archive it instead \
                 ('wabridge phone archive {id}' or POST /admin/api/v1/phones/{id}/archive): it is unbound and its \
                 history kept"
            ),
        ),
        e => e.into(),
    })?;
    Ok(())
}

/// Archives a phone: unbinds it from its portal and switches off its SMS service (the same path as an update,
/// so the portal's line and SMS provider are taken down), then marks it archived. Its messages, sends and calls
/// stay; it leaves the default phone list. Archiving an archived phone changes nothing.
pub async fn archive_phone(store: &Store, id: i64) -> Result<Phone, RegistryError> {
    let p = get_phone(store, id).await?;
    if p.archived_at.is_some() {
        return Ok(p);
    }
    let input = PhoneInput { portal: Some(None), sms_service: Some(false), ..PhoneInput::default() };
    update_phone(store, id, &input).await?;
    store.set_phone_archived(id, Some(now_ms())).await?;
    get_phone(store, id).await
}

/// Brings an archived phone back into the list; bind it to a portal again with an update.
pub async fn restore_phone(store: &Store, id: i64) -> Result<Phone, RegistryError> {
    get_phone(store, id).await?;
    store.set_phone_archived(id, None).await?;
    get_phone(store, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(is_hostname("wabridge.example.com"));
        assert!(is_hostname("localhost:8080"));
        assert!(!is_hostname("https://x.com"));
        assert!(!is_hostname("x.com/path"));
        assert!(!is_hostname("-bad.com"));
        assert!(!is_hostname(""));
    }

    #[test]
    fn sip_targets() {
        assert_eq!(parse_sip_target("pbx.local").unwrap(), ("udp".into(), "pbx.local".into(), 5060));
        assert_eq!(parse_sip_target("tls:pbx.local").unwrap(), ("tls".into(), "pbx.local".into(), 5061));
        assert_eq!(parse_sip_target("tcp:10.0.0.5:5070").unwrap(), ("tcp".into(), "10.0.0.5".into(), 5070));
        assert!(parse_sip_target("sip:pbx:x").is_err());
    }

    #[test]
    fn graph_ids() {
        assert!(is_graph_id("106540352242922"));
        assert!(!is_graph_id("12a"));
        assert!(!is_graph_id(""));
    }
}
