//! Request bodies for creating (POST) and changing (PATCH) registry objects. Every field is optional here;
//! the service says which ones are required, so a missing field is a 422 naming it, not a parse error.

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
