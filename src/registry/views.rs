//! What the admin API and the CLI show of registry objects: secrets masked, times in RFC 3339.

use serde::Serialize;
use utoipa::ToSchema;

use crate::seal::mask;
use crate::store::registry::{App, Phone, Portal, Waba};
use crate::store::rfc3339;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookUrls {
    /// Callback URL when the app is chosen by host name.
    pub by_domain: String,
    /// Callback URL that names the app explicitly (use this when several apps share the host).
    pub by_app_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub id: i64,
    pub meta_app_id: String,
    pub name: String,
    pub domain: String,
    /// Masked (`abcd…wxyz`).
    pub app_secret: String,
    /// Masked.
    pub access_token: Option<String>,
    /// Paste this into Meta's dashboard next to the callback URL. In full only in the answer that creates the
    /// app or rotates the token, and from `GET /admin/api/v1/apps/{id}/verify-token`; masked (`abcd…wxyz`)
    /// everywhere else.
    pub verify_token: String,
    pub webhook_urls: WebhookUrls,
    pub keep_raw_events: bool,
    pub verify_signatures: bool,
    /// Present when something about this app needs attention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&App> for AppView {
    fn from(a: &App) -> Self {
        let mut warnings = Vec::new();
        if !a.verify_signatures {
            warnings.push(
                "webhook signature verification is OFF: anyone can post events for this app. Use only for local testing."
                    .into(),
            );
        }
        AppView {
            id: a.id,
            meta_app_id: a.meta_app_id.clone(),
            name: a.name.clone(),
            domain: a.domain.clone(),
            app_secret: mask(&a.app_secret),
            access_token: a.access_token.as_deref().map(mask),
            verify_token: mask(&a.verify_token),
            webhook_urls: WebhookUrls {
                by_domain: format!("https://{}/api/waba/", a.domain),
                by_app_id: format!("https://{}/api/waba/?app_id={}", a.domain, a.meta_app_id),
            },
            keep_raw_events: a.keep_raw_events,
            verify_signatures: a.verify_signatures,
            warnings,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

impl AppView {
    /// The view with the verify token in full: for the answer that creates the app or rotates the token.
    pub fn revealing_verify_token(a: &App) -> Self {
        AppView { verify_token: a.verify_token.clone(), ..AppView::from(a) }
    }
}

/// An app's verify token in full, to paste into Meta's dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyTokenView {
    pub verify_token: String,
    pub webhook_urls: WebhookUrls,
}

impl From<&App> for VerifyTokenView {
    fn from(a: &App) -> Self {
        let view = AppView::revealing_verify_token(a);
        VerifyTokenView { verify_token: view.verify_token, webhook_urls: view.webhook_urls }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WabaView {
    pub id: i64,
    pub waba_id: String,
    pub app: i64,
    pub name: String,
    /// Masked; `null` when the app's token is used.
    pub access_token: Option<String>,
    /// Set when Meta refused the access token: sends of this WABA wait until a new token is set.
    pub sends_paused: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Waba> for WabaView {
    fn from(w: &Waba) -> Self {
        WabaView {
            id: w.id,
            waba_id: w.waba_id.clone(),
            app: w.app_id,
            name: w.name.clone(),
            access_token: w.access_token.as_deref().map(mask),
            sends_paused: w.sends_paused_reason.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallingView {
    /// What wabridge wants: calling with SIP on at Meta.
    pub enabled: bool,
    /// Meta's calling status as last known (`ENABLED`, `DISABLED`); changes only when Meta accepts a request.
    pub status: Option<String>,
    /// Meta's `sip.status` as last known.
    pub sip_status: Option<String>,
    pub sip_host: Option<String>,
    pub sip_port: Option<i64>,
    /// `SDES` or `DTLS`.
    pub srtp_key_exchange: Option<String>,
    /// `DEFAULT` or `DISABLE_ALL`; `null` leaves Meta's setting alone.
    pub call_icon_visibility: Option<String>,
    /// `ENABLED` or `DISABLED`; `null` leaves Meta's setting alone.
    pub callback_permission: Option<String>,
    /// Digest authentication of Meta's INVITEs as configured; `null` = on whenever the SIP password is known.
    pub digest: Option<bool>,
    /// Whether the SIP edge challenges Meta's INVITEs with digest now.
    pub digest_active: bool,
    /// The last failed activation: Meta's code and message and what it means. `null` after a success.
    pub last_error: Option<CallingErrorView>,
    /// Masked.
    pub sip_password: Option<String>,
}

/// A Graph error (or why Meta could not be asked), with a plain-language explanation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallingErrorView {
    /// Meta's error code (`null` when Meta was not reached or gave no code).
    pub code: Option<i64>,
    /// Meta's message, e.g. `(#138015) …`, or what went wrong on the way.
    pub message: String,
    /// Meta's `error_data.details`.
    pub details: Option<String>,
    /// What the code means and what to do.
    pub explanation: Option<String>,
    /// Meta's trace id, for Meta's support.
    pub fbtrace_id: Option<String>,
    pub at: Option<String>,
}

impl CallingErrorView {
    /// The phone's stored last error, if any.
    pub fn of_phone(p: &Phone) -> Option<CallingErrorView> {
        let message = p.calling_last_error.clone()?;
        Some(CallingErrorView {
            code: p.calling_error_code,
            message,
            details: p.calling_error_details.clone(),
            explanation: p.calling_error_code.and_then(crate::meta::errors::explain_calling).map(String::from),
            fbtrace_id: p.calling_error_trace.clone(),
            at: p.calling_error_at.map(rfc3339),
        })
    }
}

impl From<&Phone> for CallingView {
    fn from(p: &Phone) -> Self {
        CallingView {
            enabled: p.calling_enabled,
            status: p.calling_status.clone(),
            sip_status: p.sip_status.clone(),
            sip_host: p.sip_host.clone(),
            sip_port: p.sip_port,
            srtp_key_exchange: p.srtp_key_exchange.clone(),
            call_icon_visibility: p.call_icon_visibility.clone(),
            callback_permission: p.callback_permission.clone(),
            digest: p.sip_digest,
            digest_active: p.digest_challenge(),
            last_error: CallingErrorView::of_phone(p),
            sip_password: p.sip_password.as_deref().map(mask),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneView {
    pub id: i64,
    /// E.164.
    pub number: String,
    pub phone_number_id: String,
    pub waba: i64,
    pub portal: Option<i64>,
    pub channel: String,
    pub sms_service: bool,
    pub file_proxy: bool,
    pub line_id: Option<String>,
    pub asterisk_target: Option<String>,
    /// Sends to WhatsApp are paced to this many messages per second.
    pub throughput_mps: i64,
    /// The CRM contact-centre line of this number.
    pub connector: ConnectorView,
    /// The CRM SMS-provider registration of this number.
    pub sms: SmsView,
    pub calling: CallingView,
    pub created_at: String,
    pub updated_at: String,
    /// When the phone was archived (unbound, no SMS service, history kept); absent for a phone in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

impl From<&Phone> for PhoneView {
    fn from(p: &Phone) -> Self {
        PhoneView {
            id: p.id,
            number: p.number.clone(),
            phone_number_id: p.phone_number_id.clone(),
            waba: p.waba_id,
            portal: p.portal_id,
            channel: p.channel.clone(),
            sms_service: p.sms_service,
            file_proxy: p.file_proxy,
            line_id: p.line_id.clone(),
            asterisk_target: p.asterisk_target.clone(),
            throughput_mps: p.throughput_mps,
            connector: ConnectorView {
                status: p.connector_status.clone(),
                error: p.connector_error.clone(),
                line_id: p.line_id.clone(),
            },
            sms: SmsView { status: p.sms_status.clone(), code: p.sms_code.clone(), error: p.sms_error.clone() },
            calling: CallingView::from(p),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            archived_at: p.archived_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorView {
    /// `pending` (binding queued), `ok`, `error`, `line_deleted` (deleted in the portal; re-bind to recreate),
    /// `disabled` (connector switched off on the line), or null when the phone is not bound.
    pub status: Option<String>,
    /// The portal's error message when `status` is `error`.
    pub error: Option<String>,
    /// The open line's id in the portal.
    pub line_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SmsView {
    /// `pending`, `registered`, `removed` or `error`; null when never offered.
    pub status: Option<String>,
    /// The sender code in the portal (`wabridge_<digits>`).
    pub code: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalView {
    pub id: i64,
    pub kind: String,
    pub member_id: String,
    pub domain: String,
    pub client_endpoint: String,
    /// Masked.
    pub access_token: Option<String>,
    /// Masked.
    pub refresh_token: Option<String>,
    pub token_expires_at: Option<String>,
    /// Masked.
    pub application_token: Option<String>,
    pub active: bool,
    pub uninstalled_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Portal> for PortalView {
    fn from(p: &Portal) -> Self {
        PortalView {
            id: p.id,
            kind: p.kind.clone(),
            member_id: p.member_id.clone(),
            domain: p.domain.clone(),
            client_endpoint: p.client_endpoint.clone(),
            access_token: p.access_token.as_deref().map(mask),
            refresh_token: p.refresh_token.as_deref().map(mask),
            token_expires_at: p.token_expires_at.map(rfc3339),
            application_token: p.application_token.as_deref().map(mask),
            active: p.active,
            uninstalled_at: p.uninstalled_at.map(rfc3339),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}
