//! Calling activation, the I/O part: load the phone and its access token, post the settings to Meta, read the
//! SIP password back, and store the outcome (or Meta's error) on the phone. The admin API and the CLI both call
//! these functions, so they behave the same.
//!
//! The access token is the WABA's override, else the app's default token (phones → wabas → meta_apps).

use serde::Serialize;
use utoipa::ToSchema;

use super::activation::{self, CallingInput, CallingSettings, Difference};
use crate::meta::graph::{self, GraphError};
use crate::registry::{self, CallingErrorView, RegistryError};
use crate::store::registry::{GraphTokenError, Phone};
use crate::store::{now_ms, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CallingError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Neither the phone's WABA nor its app has an access token.
    #[error("no access token for phone {phone}: set one on WABA {waba} or on app {app}")]
    NoToken { phone: i64, waba: i64, app: i64 },
    /// Meta refused the request.
    #[error("{}", graph_line(.0))]
    Graph(GraphError),
    /// Meta could not be reached, or answered something that is not the Graph API.
    #[error("{0}")]
    Unreachable(String),
}

impl From<StoreError> for CallingError {
    fn from(e: StoreError) -> Self {
        CallingError::Registry(RegistryError::Store(e))
    }
}

impl From<graph::Error> for CallingError {
    fn from(e: graph::Error) -> Self {
        match e {
            graph::Error::Graph(g) => CallingError::Graph(g),
            other => CallingError::Unreachable(other.to_string()),
        }
    }
}

/// One line: Meta's code and message, the details, and what it means.
fn graph_line(e: &GraphError) -> String {
    let mut line = format!("Meta refused the request with error {}: {}", e.code, e.message);
    if let Some(d) = &e.details {
        line.push_str(&format!(" ({d})"));
    }
    if let Some(x) = crate::meta::errors::explain_calling(e.code) {
        line.push_str(" — ");
        line.push_str(x);
    }
    line
}

/// What `status` reports: the settings wabridge expects, those Meta reports now, and where they differ.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallingStatus {
    /// wabridge id of the phone.
    pub phone: i64,
    pub phone_number_id: String,
    /// What wabridge expects Meta to have.
    pub expected: CallingSettings,
    /// What Meta reports now (`null` when Meta could not be asked; see `meta_error`).
    pub meta: Option<CallingSettings>,
    /// Why Meta's settings could not be read.
    pub meta_error: Option<CallingErrorView>,
    /// True when Meta's settings were read and match the expected ones.
    pub in_sync: bool,
    pub differences: Vec<Difference>,
    /// The last failed activation stored on the phone.
    pub last_error: Option<CallingErrorView>,
}

/// The access token for this phone's Graph calls: the WABA's override, else the app's default token.
pub async fn token_for(store: &Store, phone: &Phone) -> Result<String, CallingError> {
    let gone =
        |what: &'static str, id: i64| CallingError::Registry(RegistryError::NotFound { what, id: id.to_string() });
    store.graph_token(phone.waba_id).await.map_err(|e| match e {
        GraphTokenError::WabaGone(waba) => gone("WABA", waba),
        GraphTokenError::AppGone { app, .. } => gone("app", app),
        GraphTokenError::NoToken { waba, app } => CallingError::NoToken { phone: phone.id, waba, app },
        GraphTokenError::Store(e) => e.into(),
    })
}

fn clear_error(p: &mut Phone) {
    p.calling_last_error = None;
    p.calling_error_code = None;
    p.calling_error_details = None;
    p.calling_error_trace = None;
    p.calling_error_at = None;
}

fn record_error(p: &mut Phone, e: &CallingError) {
    clear_error(p);
    match e {
        CallingError::Graph(g) => {
            p.calling_error_code = Some(g.code);
            p.calling_last_error = Some(g.message.clone());
            p.calling_error_details = g.details.clone();
            p.calling_error_trace = g.fbtrace_id.clone();
        }
        other => p.calling_last_error = Some(other.to_string()),
    }
    p.calling_error_at = Some(now_ms());
}

fn error_view(e: &CallingError) -> CallingErrorView {
    match e {
        CallingError::Graph(g) => CallingErrorView {
            code: Some(g.code),
            message: g.message.clone(),
            details: g.details.clone(),
            explanation: crate::meta::errors::explain_calling(g.code).map(String::from),
            fbtrace_id: g.fbtrace_id.clone(),
            at: None,
        },
        other => CallingErrorView {
            code: None,
            message: other.to_string(),
            details: None,
            explanation: None,
            fbtrace_id: None,
            at: None,
        },
    }
}

/// Stores a failure on the phone and hands it back.
async fn fail(store: &Store, phone: &mut Phone, e: CallingError) -> CallingError {
    record_error(phone, &e);
    phone.updated_at = now_ms();
    if let Err(se) = store.update_phone_calling(phone).await {
        return se.into();
    }
    // INFO, not WARN: the caller gets the error (API answer, CLI line) and it stays on the phone.
    match &e {
        CallingError::Graph(g) => {
            tracing::info!(phone = phone.id, code = g.code, fbtrace_id = ?g.fbtrace_id, "Meta refused the calling settings")
        }
        other => tracing::info!(phone = phone.id, error = %other, "calling settings not applied"),
    }
    e
}

/// Enables (`enabled: true`) or disables calling with SIP for a phone at Meta, as `input` says.
///
/// Enabling posts `/{phone-number-id}/settings` and then reads `settings?include_sip_credentials=true` to keep
/// Meta's SIP password (sealed). Disabling posts calling and SIP `DISABLED`. What was asked is stored even
/// when Meta refuses, together with Meta's error; `calling_status` changes only when Meta accepted.
pub async fn apply(
    store: &Store,
    graph: &graph::Client,
    phone_id: i64,
    input: &CallingInput,
) -> Result<Phone, CallingError> {
    let mut phone = registry::get_phone(store, phone_id).await?;
    if phone.channel != "meta" {
        return Err(RegistryError::Conflict {
            field: None,
            message: format!("phone {phone_id} uses the {} channel; calling is for Meta numbers", phone.channel),
        }
        .into());
    }
    let desired = activation::validate(input, &phone).map_err(RegistryError::Validation)?;
    phone.calling_enabled = desired.enabled;
    phone.sip_host = desired.sip_host.clone();
    phone.sip_port = Some(desired.sip_port.into());
    phone.srtp_key_exchange = Some(desired.srtp_key_exchange.clone());
    phone.call_icon_visibility = desired.call_icon_visibility.clone();
    phone.callback_permission = desired.callback_permission.clone();
    phone.sip_digest = desired.digest;

    let token = match token_for(store, &phone).await {
        Ok(t) => t,
        Err(e @ CallingError::NoToken { .. }) => return Err(fail(store, &mut phone, e).await),
        Err(e) => return Err(e),
    };
    let body = activation::settings_body(&desired);
    if let Err(e) = graph.post_phone_settings(&phone.phone_number_id, &token, &body).await {
        return Err(fail(store, &mut phone, e.into()).await);
    }
    let status = if desired.enabled { "ENABLED" } else { "DISABLED" };
    phone.calling_status = Some(status.into());
    phone.sip_status = Some(status.into());
    clear_error(&mut phone);

    if desired.enabled {
        let answer = match graph.get_phone_settings(&phone.phone_number_id, &token, true).await {
            Ok(a) => a,
            Err(e) => return Err(fail(store, &mut phone, e.into()).await),
        };
        match activation::sip_password(&answer, desired.sip_host.as_deref()) {
            Some(pw) => phone.sip_password = Some(pw),
            None => {
                phone.calling_last_error = Some(
                    "Meta enabled calling but its settings answer carried no SIP password; Meta's INVITEs cannot \
                     be checked with digest until it does (enable again to retry)"
                        .into(),
                );
                phone.calling_error_at = Some(now_ms());
            }
        }
    } else {
        // Not needed while calling is off; enabling again reads it back from Meta.
        phone.sip_password = None;
    }
    phone.updated_at = now_ms();
    store.update_phone_calling(&phone).await?;
    tracing::info!(phone = phone.id, enabled = desired.enabled, "calling settings applied at Meta");
    Ok(phone)
}

/// Compares what wabridge expects with what Meta reports now (`GET …/settings`, without credentials).
pub async fn status(store: &Store, graph: &graph::Client, phone_id: i64) -> Result<CallingStatus, CallingError> {
    let phone = registry::get_phone(store, phone_id).await?;
    let expected = CallingSettings::expected(&phone);
    let read = match token_for(store, &phone).await {
        Ok(token) => graph.get_phone_settings(&phone.phone_number_id, &token, false).await.map_err(CallingError::from),
        Err(e @ CallingError::NoToken { .. }) => Err(e),
        Err(e) => return Err(e),
    };
    let (meta, meta_error) = match read {
        Ok(answer) => (Some(CallingSettings::from_graph(&answer)), None),
        Err(e) => (None, Some(error_view(&e))),
    };
    let differences = meta.as_ref().map(|m| activation::differences(&expected, m)).unwrap_or_default();
    Ok(CallingStatus {
        phone: phone.id,
        phone_number_id: phone.phone_number_id.clone(),
        in_sync: meta.is_some() && differences.is_empty(),
        expected,
        meta,
        meta_error,
        differences,
        last_error: CallingErrorView::of_phone(&phone),
    })
}
