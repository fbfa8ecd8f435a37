//! Request bodies for changing (PATCH; the CLI's create and update too) and creating (POST) registry objects.
//! Every field of an `*Input` is optional; the `*Create` bodies of the admin API require what a new object
//! needs, so the OpenAPI document (derived from these types) says so and serde refuses a body without it.

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    /// Meta's app id (digits). Required on create; cannot change.
    pub meta_app_id: Option<String>,
    pub name: Option<String>,
    /// Host name Meta posts webhooks to, e.g. `wabridge.example.com`. Required on create.
    pub domain: Option<String>,
    /// The app secret from Meta's dashboard (signs webhooks). Required on create. Sealed at rest.
    pub app_secret: Option<String>,
    /// Default (system user) access token for the Graph API. Sealed at rest.
    pub access_token: Option<String>,
    /// Keep raw webhook bodies longer, for debugging.
    pub keep_raw_events: Option<bool>,
    /// Check `X-Hub-Signature-256` (default true). Switch off only for local testing.
    pub verify_signatures: Option<bool>,
    /// PATCH only: generate a new verify token.
    pub rotate_verify_token: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WabaInput {
    /// Meta's WhatsApp Business Account id (digits). Required on create; cannot change.
    pub waba_id: Option<String>,
    /// The wabridge id of the app this WABA belongs to. Required on create.
    pub app: Option<i64>,
    pub name: Option<String>,
    /// Access token for this WABA, overriding the app's. Sealed at rest. Empty string clears it.
    pub access_token: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneInput {
    /// International number (E.164), e.g. `+5511930001234`. Required on create; cannot change.
    pub number: Option<String>,
    /// Meta's phone number id (digits). Required on create; cannot change.
    pub phone_number_id: Option<String>,
    /// The wabridge id of the WABA. Required on create.
    pub waba: Option<i64>,
    /// The wabridge id of the CRM portal to bind; `null` unbinds.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub portal: Option<Option<i64>>,
    /// Offer this number as the CRM's SMS provider.
    pub sms_service: Option<bool>,
    /// Stream media from Meta on demand instead of keeping a local copy.
    pub file_proxy: Option<bool>,
    /// Where the SIP edge sends this number's calls: `udp|tcp|tls:host:port`; `null` uses the default.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub asterisk_target: Option<Option<String>>,
    /// Meta's throughput for this number, messages per second (1–1000; default 80). Sends are paced to it.
    pub throughput_mps: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalInput {
    /// `bitrix24` (default).
    pub kind: Option<String>,
    /// The portal's `member_id`. Required on create; cannot change.
    pub member_id: Option<String>,
    /// The portal's host name, e.g. `example.bitrix24.com`. Required on create.
    pub domain: Option<String>,
    /// REST endpoint, e.g. `https://example.bitrix24.com/rest/`. Required on create.
    pub client_endpoint: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// The `application_token` every event from this portal must carry.
    pub application_token: Option<String>,
}

// Create (POST) bodies: the fields a new object needs are required here, so serde refuses a body without them
// (a 422 naming the field) and the OpenAPI document lists them as required. They become the inputs above, which
// the registry checks further (formats, references) and which the CLI builds too.

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreate {
    /// Meta's app id (digits). Cannot change later.
    pub meta_app_id: String,
    pub name: Option<String>,
    /// Host name Meta posts webhooks to, e.g. `wabridge.example.com`.
    pub domain: String,
    /// The app secret from Meta's dashboard (signs webhooks). Sealed at rest.
    pub app_secret: String,
    /// Default (system user) access token for the Graph API. Sealed at rest.
    pub access_token: Option<String>,
    /// Keep raw webhook bodies longer, for debugging.
    pub keep_raw_events: Option<bool>,
    /// Check `X-Hub-Signature-256` (default true). Switch off only for local testing.
    pub verify_signatures: Option<bool>,
}

impl From<AppCreate> for AppInput {
    fn from(c: AppCreate) -> Self {
        AppInput {
            meta_app_id: Some(c.meta_app_id),
            name: c.name,
            domain: Some(c.domain),
            app_secret: Some(c.app_secret),
            access_token: c.access_token,
            keep_raw_events: c.keep_raw_events,
            verify_signatures: c.verify_signatures,
            rotate_verify_token: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WabaCreate {
    /// Meta's WhatsApp Business Account id (digits). Cannot change later.
    pub waba_id: String,
    /// The wabridge id of the app this WABA belongs to.
    pub app: i64,
    pub name: Option<String>,
    /// Access token for this WABA, overriding the app's. Sealed at rest.
    pub access_token: Option<String>,
}

impl From<WabaCreate> for WabaInput {
    fn from(c: WabaCreate) -> Self {
        WabaInput { waba_id: Some(c.waba_id), app: Some(c.app), name: c.name, access_token: c.access_token }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneCreate {
    /// International number (E.164), e.g. `+5511930001234`. Cannot change later.
    pub number: String,
    /// Meta's phone number id (digits). Cannot change later.
    pub phone_number_id: String,
    /// The wabridge id of the WABA.
    pub waba: i64,
    /// The wabridge id of the CRM portal to bind.
    pub portal: Option<i64>,
    /// Offer this number as the CRM's SMS provider.
    pub sms_service: Option<bool>,
    /// Stream media from Meta on demand instead of keeping a local copy.
    pub file_proxy: Option<bool>,
    /// Where the SIP edge sends this number's calls: `udp|tcp|tls:host:port`; absent or `null` uses the default.
    pub asterisk_target: Option<String>,
    /// Meta's throughput for this number, messages per second (1–1000; default 80). Sends are paced to it.
    pub throughput_mps: Option<i64>,
}

impl From<PhoneCreate> for PhoneInput {
    fn from(c: PhoneCreate) -> Self {
        PhoneInput {
            number: Some(c.number),
            phone_number_id: Some(c.phone_number_id),
            waba: Some(c.waba),
            portal: c.portal.map(Some),
            sms_service: c.sms_service,
            file_proxy: c.file_proxy,
            asterisk_target: c.asterisk_target.map(Some),
            throughput_mps: c.throughput_mps,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalCreate {
    /// `bitrix24` (default).
    pub kind: Option<String>,
    /// The portal's `member_id`. Cannot change later.
    pub member_id: String,
    /// The portal's host name, e.g. `example.bitrix24.com`.
    pub domain: String,
    /// REST endpoint, e.g. `https://example.bitrix24.com/rest/`.
    pub client_endpoint: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// The `application_token` every event from this portal must carry.
    pub application_token: Option<String>,
}

impl From<PortalCreate> for PortalInput {
    fn from(c: PortalCreate) -> Self {
        PortalInput {
            kind: c.kind,
            member_id: Some(c.member_id),
            domain: Some(c.domain),
            client_endpoint: Some(c.client_endpoint),
            access_token: c.access_token,
            refresh_token: c.refresh_token,
            application_token: c.application_token,
        }
    }
}
