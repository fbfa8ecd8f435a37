//! The tenant API's message model (`POST /api/v1/messages`): the request as it arrives ([`MessageInput`], one
//! shape for every WhatsApp message type), checked by one pure function ([`validate`], or [`parse`] from JSON)
//! into a typed [`Message`] or every field error at once, each naming the field the way a JSON path does
//! (`interactive.action.buttons[3]`) and the limit broken. [`graph`] turns a valid message into the body of the
//! Graph `/messages` request; templates are resolved against the synced definitions by [`graph::template`].
//!
//! Limits are Meta's (reference meta-messaging.md §5.3–5.5; docs/api.md lists them): text body 4,096 characters;
//! captions 1,024 (image, video, document; none on audio or stickers); document file names 240; media by uploaded
//! id (digits) or an http(s) link, never both; 1–5 contact cards each with `name.formatted_name`; interactive
//! header text 60, body 1,024, footer 60; reply buttons 1–3 with unique titles of at most 20 and unique ids of at
//! most 256 without surrounding spaces; lists with a button label of 20, 1–10 sections (titles of 24, required
//! with more than one section) and 10 rows in total (unique ids of 200, titles of 24, descriptions of 72); CTA URL
//! display text 20; voice-call button display text 20, `ttl_minutes` 1–43,200, payload 512; a call-permission
//! request has a body only; a location request a body and an optional footer; coupon codes 15.
//! Lengths count characters (Unicode scalar values), as Meta does.

pub mod graph;
pub mod media;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::registry::FieldError;

/// A message to send: who from and to, its type, and the object of that type (exactly one).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// Our WhatsApp number to send from (E.164), as registered in wabridge.
    pub from: String,
    /// The customer's number (E.164).
    pub to: String,
    /// The message type; the object of the same name carries its content.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The wamid of the message this one replies to (shown quoted).
    pub reply_to: Option<String>,
    /// The same key sends once (a retried request answers the first send). At most 200 characters.
    pub idempotency_key: Option<String>,
    pub text: Option<TextInput>,
    pub image: Option<MediaInput>,
    pub audio: Option<MediaInput>,
    pub video: Option<MediaInput>,
    pub document: Option<MediaInput>,
    pub sticker: Option<MediaInput>,
    pub location: Option<LocationInput>,
    /// 1 to 5 contact cards.
    pub contacts: Option<Vec<ContactCard>>,
    pub reaction: Option<ReactionInput>,
    pub interactive: Option<InteractiveInput>,
    pub template: Option<TemplateInput>,
}

/// Message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Image,
    Audio,
    Video,
    Document,
    Sticker,
    Location,
    Contacts,
    Reaction,
    Interactive,
    Template,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Text,
        Kind::Image,
        Kind::Audio,
        Kind::Video,
        Kind::Document,
        Kind::Sticker,
        Kind::Location,
        Kind::Contacts,
        Kind::Reaction,
        Kind::Interactive,
        Kind::Template,
    ];

    /// The type's name, which is also its Graph `type` and the name of its object.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Image => "image",
            Kind::Audio => "audio",
            Kind::Video => "video",
            Kind::Document => "document",
            Kind::Sticker => "sticker",
            Kind::Location => "location",
            Kind::Contacts => "contacts",
            Kind::Reaction => "reaction",
            Kind::Interactive => "interactive",
            Kind::Template => "template",
        }
    }

    /// Only templates may go outside the customer's 24-hour window.
    pub fn is_free_form(self) -> bool {
        self != Kind::Template
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextInput {
    /// 1 to 4,096 characters.
    pub body: String,
    /// Show a preview of the first http(s) link in the body.
    pub preview_url: Option<bool>,
}

/// Media by uploaded id (`POST /api/v1/media`) or by a public http(s) link: exactly one of the two.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaInput {
    /// The id `POST /api/v1/media` answered (digits).
    pub id: Option<String>,
    /// A public http or https link.
    pub link: Option<String>,
    /// Image, video and document only; at most 1,024 characters.
    pub caption: Option<String>,
    /// Document only; at most 240 characters (its extension picks the icon).
    pub filename: Option<String>,
    /// Audio only: a voice note (needs OGG/OPUS).
    pub voice: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    /// -90 to 90.
    pub latitude: f64,
    /// -180 to 180.
    pub longitude: f64,
    /// At most 1,000 characters.
    pub name: Option<String>,
    /// At most 1,000 characters.
    pub address: Option<String>,
}

/// A contact card, as WhatsApp shows it (Meta's contact object).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactCard {
    pub name: ContactName,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<ContactPhone>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<ContactEmail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<ContactAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<ContactOrg>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<ContactUrl>,
    /// `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactName {
    /// Required: the name as shown.
    pub formatted_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPhone {
    pub phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// e.g. `CELL`, `MAIN`, `HOME`, `WORK`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactEmail {
    pub email: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactAddress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactOrg {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUrl {
    pub url: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A reaction to one of the customer's messages; an empty `emoji` removes ours.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactionInput {
    /// The wamid reacted to.
    pub message_id: String,
    /// One emoji, or `""` to remove the reaction.
    pub emoji: String,
}

/// An interactive message, in Meta's shape (`action` may be left out where it is fixed).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveInput {
    #[serde(rename = "type")]
    pub kind: InteractiveKind,
    pub header: Option<HeaderInput>,
    pub body: Option<TextObject>,
    pub footer: Option<TextObject>,
    pub action: Option<ActionInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InteractiveKind {
    /// Reply buttons (`action.buttons`).
    Button,
    /// A list (`action.button`, `action.sections`).
    List,
    /// A link button (`action.parameters.display_text`, `.url`).
    CtaUrl,
    /// Asks the customer to share their location.
    LocationRequestMessage,
    /// Asks the customer's permission to call them on WhatsApp.
    CallPermissionRequest,
    /// A "Call on WhatsApp" button (`action.parameters`: `display_text`, `ttl_minutes`, `payload`, all optional).
    VoiceCall,
}

impl InteractiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InteractiveKind::Button => "button",
            InteractiveKind::List => "list",
            InteractiveKind::CtaUrl => "cta_url",
            InteractiveKind::LocationRequestMessage => "location_request_message",
            InteractiveKind::CallPermissionRequest => "call_permission_request",
            InteractiveKind::VoiceCall => "voice_call",
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextObject {
    pub text: String,
}

/// An interactive header: text (60 characters), or for buttons and CTA URLs an image, video or document.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderInput {
    #[serde(rename = "type")]
    pub kind: HeaderKind,
    pub text: Option<String>,
    pub image: Option<MediaInput>,
    pub video: Option<MediaInput>,
    pub document: Option<MediaInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeaderKind {
    Text,
    Image,
    Video,
    Document,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// `cta_url`, `send_location`, `call_permission_request`, `voice_call`: the action's fixed name (may be left out).
    pub name: Option<String>,
    /// Reply buttons: 1 to 3.
    pub buttons: Option<Vec<ReplyButton>>,
    /// A list's button label (20 characters).
    pub button: Option<String>,
    /// A list's sections: 1 to 10, 10 rows in total.
    pub sections: Option<Vec<Section>>,
    /// CTA URL and voice-call parameters.
    pub parameters: Option<ActionParameters>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyButton {
    /// Always `reply` (may be left out).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reply: Reply,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Unique, at most 256 characters, no leading or trailing spaces; comes back when tapped.
    pub id: String,
    /// Unique, at most 20 characters.
    pub title: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// At most 24 characters; required when there is more than one section.
    pub title: Option<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Unique across the list, at most 200 characters.
    pub id: String,
    /// At most 24 characters.
    pub title: String,
    /// At most 72 characters.
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionParameters {
    /// The button's label: at most 20 characters (CTA URL: required; voice call: default "Call Now").
    pub display_text: Option<String>,
    /// CTA URL: the http(s) link opened.
    pub url: Option<String>,
    /// Voice call: how long the button works, 1 to 43,200 minutes (default 10,080).
    pub ttl_minutes: Option<i64>,
    /// Voice call: returned with the call (at most 512 characters).
    pub payload: Option<String>,
}

/// A template send: the template is picked in the recipient's language by the same fallback as notifications
/// (`pt_BR` → `pt` → `en` → the template's first approved language).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// Template name (at most 512 characters).
    pub name: String,
    /// The recipient's locale, e.g. `pt_BR` or `pt-BR`. Default `en`.
    pub locale: Option<String>,
    /// Placeholder values: positional (`["Anna", "42"]`, header values first) or named (`{"first_name": "Anna"}`).
    pub parameters: Option<Parameters>,
    /// The media of an image, video or document header.
    pub header: Option<TemplateHeader>,
    /// Values for the template's buttons.
    pub buttons: Option<Vec<TemplateButton>>,
}

/// A template header's media: exactly one of `id` and `link`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateHeader {
    pub id: Option<String>,
    pub link: Option<String>,
    /// For a document header (at most 240 characters).
    pub filename: Option<String>,
}

/// A value for one of the template's buttons.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum TemplateButton {
    /// The variable end of a dynamic URL button (also the code of a one-time-password button).
    Url { text: String },
    /// The payload returned when the quick-reply button at `index` (0-based, the template's button order) is
    /// tapped.
    QuickReply { index: usize, payload: String },
    /// The coupon code of the template's copy-code button (at most 15 characters).
    CopyCode { code: String },
}

/// A template's values, by position or by name.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged, expecting = "must be a list of values or an object of named values (strings, numbers or booleans)")]
pub enum Parameters {
    /// Values in the template's order: `["Anna", "42"]`.
    Positional(Vec<ParamValue>),
    /// Values by placeholder name: `{"first_name": "Anna"}`.
    Named(std::collections::BTreeMap<String, ParamValue>),
}

/// One template value: a string, a number or a boolean (sent as its text).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    #[schema(value_type = f64)]
    Number(serde_json::Number),
    Flag(bool),
}

impl ParamValue {
    /// The value as the template shows it.
    pub fn text(&self) -> String {
        match self {
            ParamValue::Text(s) => s.clone(),
            ParamValue::Number(n) => n.to_string(),
            ParamValue::Flag(b) => b.to_string(),
        }
    }
}

impl Parameters {
    /// The values as the template builder takes them.
    pub fn to_params(&self) -> crate::translate::template::Params {
        use crate::translate::template::Params;
        match self {
            Parameters::Positional(items) => Params::Positional(items.iter().map(ParamValue::text).collect()),
            Parameters::Named(map) => Params::Named(map.iter().map(|(k, v)| (k.clone(), v.text())).collect()),
        }
    }
}

/// A valid message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Our number, E.164.
    pub from: String,
    /// The customer, E.164.
    pub to: String,
    pub reply_to: Option<String>,
    pub idempotency_key: Option<String>,
    pub content: Content,
}

impl Message {
    pub fn kind(&self) -> Kind {
        match &self.content {
            Content::Text { .. } => Kind::Text,
            Content::Media { kind, .. } => *kind,
            Content::Location { .. } => Kind::Location,
            Content::Contacts(_) => Kind::Contacts,
            Content::Reaction { .. } => Kind::Reaction,
            Content::Interactive(_) => Kind::Interactive,
            Content::Template(_) => Kind::Template,
        }
    }
}

/// Where a media file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Id(String),
    Link(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text {
        body: String,
        preview_url: bool,
    },
    Media {
        kind: Kind,
        source: Source,
        caption: Option<String>,
        filename: Option<String>,
        voice: bool,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// The cards as Meta takes them.
    Contacts(Value),
    Reaction {
        message_id: String,
        emoji: String,
    },
    Interactive(Interactive),
    /// Resolved against the synced templates when sent ([`graph::template`]).
    Template(Template),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interactive {
    pub kind: InteractiveKind,
    pub header: Option<Header>,
    pub body: Option<String>,
    pub footer: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    Text(String),
    Media { kind: HeaderKind, source: Source, filename: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Buttons(Vec<(String, String)>),
    List { button: String, sections: Vec<ListSection> },
    CtaUrl { display_text: String, url: String },
    SendLocation,
    CallPermissionRequest,
    VoiceCall { display_text: Option<String>, ttl_minutes: Option<i64>, payload: Option<String> },
}

/// A list row: id, title, description.
pub type ListRow = (String, String, Option<String>);
/// A list section: its title and rows.
pub type ListSection = (Option<String>, Vec<ListRow>);

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub locale: String,
    pub params: crate::translate::template::Params,
    pub header: Option<(Source, Option<String>)>,
    pub url_text: Option<String>,
    pub quick_replies: Vec<(usize, String)>,
    pub coupon_code: Option<String>,
}

/// Checks a request given as JSON: the shape (a wrong type or unknown field is one error naming it), then every
/// limit.
pub fn parse(json: &Value) -> Result<Message, Vec<FieldError>> {
    let input: MessageInput = serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let field = crate::http::json::serde_field(&path, &msg, "body");
        let message = if msg.starts_with("missing field `") { "is required".to_string() } else { msg };
        vec![FieldError { field, message }]
    })?;
    validate(input)
}

/// Every field error of a request at once, or the typed message.
pub fn validate(input: MessageInput) -> Result<Message, Vec<FieldError>> {
    let mut e = Errors::default();
    let from = e.phone("from", &input.from);
    let to = e.phone("to", &input.to);
    if let Some(r) = &input.reply_to {
        e.required_max("reply_to", r, 256);
    }
    if let Some(k) = &input.idempotency_key {
        e.required_max("idempotency_key", k, 200);
    }
    // Exactly the object of the type, and no other.
    let given: Vec<Kind> = Kind::ALL.into_iter().filter(|k| object_given(&input, *k)).collect();
    let kind = input.kind;
    for other in given.iter().filter(|k| **k != kind) {
        e.add(other.as_str(), format!("does not belong to a message of type {}; remove it", kind.as_str()));
    }
    let content = if !given.contains(&kind) {
        e.add(kind.as_str(), format!("is required for a message of type {}", kind.as_str()));
        None
    } else {
        content(&mut e, input)
    };
    match (e.0.is_empty(), from, to, content) {
        (true, Some(from), Some(to), Some((content, reply_to, idempotency_key))) => {
            Ok(Message { from, to, reply_to, idempotency_key, content })
        }
        _ => Err(e.0),
    }
}

fn object_given(i: &MessageInput, k: Kind) -> bool {
    match k {
        Kind::Text => i.text.is_some(),
        Kind::Image => i.image.is_some(),
        Kind::Audio => i.audio.is_some(),
        Kind::Video => i.video.is_some(),
        Kind::Document => i.document.is_some(),
        Kind::Sticker => i.sticker.is_some(),
        Kind::Location => i.location.is_some(),
        Kind::Contacts => i.contacts.is_some(),
        Kind::Reaction => i.reaction.is_some(),
        Kind::Interactive => i.interactive.is_some(),
        Kind::Template => i.template.is_some(),
    }
}

type Parts = (Content, Option<String>, Option<String>);

fn content(e: &mut Errors, i: MessageInput) -> Option<Parts> {
    let rest = (i.reply_to.clone(), i.idempotency_key.clone());
    let c = match i.kind {
        Kind::Text => {
            let t = i.text?;
            e.required_max("text.body", &t.body, 4096);
            Content::Text { body: t.body, preview_url: t.preview_url.unwrap_or(false) }
        }
        Kind::Image | Kind::Audio | Kind::Video | Kind::Document | Kind::Sticker => {
            let m = match i.kind {
                Kind::Image => i.image,
                Kind::Audio => i.audio,
                Kind::Video => i.video,
                Kind::Document => i.document,
                _ => i.sticker,
            }?;
            media(e, i.kind, i.kind.as_str(), m)?
        }
        Kind::Location => {
            let l = i.location?;
            if !(l.latitude.is_finite() && l.latitude.abs() <= 90.0) {
                e.add("location.latitude", "must be between -90 and 90");
            }
            if !(l.longitude.is_finite() && l.longitude.abs() <= 180.0) {
                e.add("location.longitude", "must be between -180 and 180");
            }
            e.optional_max("location.name", l.name.as_deref(), 1000);
            e.optional_max("location.address", l.address.as_deref(), 1000);
            Content::Location { latitude: l.latitude, longitude: l.longitude, name: l.name, address: l.address }
        }
        Kind::Contacts => {
            let cards = i.contacts?;
            if cards.is_empty() {
                e.add("contacts", "must hold at least 1 contact");
            }
            for (n, c) in cards.iter().enumerate() {
                if n >= 5 {
                    e.add(format!("contacts[{n}]"), "at most 5 contacts");
                    break;
                }
                e.required_max(&format!("contacts[{n}].name.formatted_name"), &c.name.formatted_name, 1000);
                if let Some(b) = &c.birthday {
                    if !is_date(b) {
                        e.add(format!("contacts[{n}].birthday"), "must be a date YYYY-MM-DD");
                    }
                }
            }
            Content::Contacts(serde_json::to_value(&cards).unwrap_or(Value::Null))
        }
        Kind::Reaction => {
            let r = i.reaction?;
            e.required_max("reaction.message_id", &r.message_id, 256);
            let emoji = r.emoji.trim();
            if !emoji.is_empty()
                && (emoji.chars().count() > 10 || emoji.chars().any(|c| c.is_ascii_alphanumeric() || c.is_whitespace()))
            {
                e.add("reaction.emoji", "must be one emoji, or \"\" to remove the reaction");
            }
            Content::Reaction { message_id: r.message_id, emoji: emoji.to_string() }
        }
        Kind::Interactive => Content::Interactive(interactive(e, i.interactive?)?),
        Kind::Template => Content::Template(template(e, i.template?)?),
    };
    Some((c, rest.0, rest.1))
}

fn media(e: &mut Errors, kind: Kind, path: &str, m: MediaInput) -> Option<Content> {
    let source = source(e, path, m.id, m.link);
    match (kind, &m.caption) {
        (Kind::Image | Kind::Video | Kind::Document, Some(c)) => e.max(&format!("{path}.caption"), c, 1024),
        (_, Some(_)) => e.add(format!("{path}.caption"), format!("{} messages take no caption", kind.as_str())),
        _ => {}
    }
    match (kind, &m.filename) {
        (Kind::Document, Some(f)) => e.required_max(&format!("{path}.filename"), f, 240),
        (_, Some(_)) => e.add(format!("{path}.filename"), "only documents take a file name"),
        _ => {}
    }
    if m.voice.is_some() && kind != Kind::Audio {
        e.add(format!("{path}.voice"), "only audio can be a voice note");
    }
    Some(Content::Media {
        kind,
        source: source?,
        caption: m.caption,
        filename: m.filename,
        voice: m.voice == Some(true),
    })
}

fn source(e: &mut Errors, path: &str, id: Option<String>, link: Option<String>) -> Option<Source> {
    match (id, link) {
        (Some(id), None) => {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_digit()) {
                e.add(format!("{path}.id"), "must be a media id from POST /api/v1/media (digits)");
                return None;
            }
            Some(Source::Id(id))
        }
        (None, Some(link)) => {
            if !is_http_url(&link) {
                e.add(format!("{path}.link"), "must be a public http or https URL");
                return None;
            }
            Some(Source::Link(link))
        }
        (Some(_), Some(_)) => {
            e.add(path, "give either id or link, not both");
            None
        }
        (None, None) => {
            e.add(path, "needs id (an uploaded media id) or link (a public http or https URL)");
            None
        }
    }
}

fn interactive(e: &mut Errors, i: InteractiveInput) -> Option<Interactive> {
    use InteractiveKind as K;
    let kind = i.kind;
    let header = match i.header {
        None => None,
        Some(_) if matches!(kind, K::CallPermissionRequest | K::VoiceCall | K::LocationRequestMessage) => {
            e.add("interactive.header", format!("{} messages take no header", kind.as_str()));
            None
        }
        Some(h) => header(e, kind, h),
    };
    let body = match i.body {
        Some(b) => {
            e.required_max("interactive.body.text", &b.text, 1024);
            Some(b.text)
        }
        None => {
            e.add("interactive.body", format!("is required for {} messages", kind.as_str()));
            None
        }
    };
    let footer = match i.footer {
        Some(_) if kind == K::CallPermissionRequest => {
            e.add("interactive.footer", "call_permission_request messages take a body only");
            None
        }
        Some(f) => {
            e.required_max("interactive.footer.text", &f.text, 60);
            Some(f.text)
        }
        None => None,
    };
    let fixed = |e: &mut Errors, a: &ActionInput, name: &str| {
        if a.name.as_deref().is_some_and(|n| n != name) {
            e.add("interactive.action.name", format!("must be {name} for {} messages", kind.as_str()));
        }
    };
    let a = i.action.unwrap_or_default();
    let no = |e: &mut Errors, present: bool, field: &str| {
        if present {
            e.add(format!("interactive.action.{field}"), format!("does not belong to {} messages", kind.as_str()));
        }
    };
    let action = match kind {
        K::Button => {
            no(e, a.name.is_some(), "name");
            no(e, a.sections.is_some(), "sections");
            no(e, a.button.is_some(), "button");
            no(e, a.parameters.is_some(), "parameters");
            let Some(buttons) = a.buttons else {
                e.add("interactive.action.buttons", "is required: 1 to 3 reply buttons");
                return None;
            };
            if buttons.is_empty() {
                e.add("interactive.action.buttons", "must hold at least 1 button");
            }
            let mut ids = HashSet::new();
            let mut titles = HashSet::new();
            let mut out = Vec::new();
            for (n, b) in buttons.into_iter().enumerate() {
                let p = format!("interactive.action.buttons[{n}]");
                if n >= 3 {
                    e.add(p, "at most 3 buttons");
                    break;
                }
                if b.kind.as_deref().is_some_and(|k| k != "reply") {
                    e.add(format!("{p}.type"), "must be reply");
                }
                e.required_max(&format!("{p}.reply.id"), &b.reply.id, 256);
                if b.reply.id.trim() != b.reply.id {
                    e.add(format!("{p}.reply.id"), "must not start or end with spaces");
                }
                e.required_max(&format!("{p}.reply.title"), &b.reply.title, 20);
                if !ids.insert(b.reply.id.clone()) {
                    e.add(format!("{p}.reply.id"), "must be unique among the buttons");
                }
                if !titles.insert(b.reply.title.clone()) {
                    e.add(format!("{p}.reply.title"), "must be unique among the buttons");
                }
                out.push((b.reply.id, b.reply.title));
            }
            Action::Buttons(out)
        }
        K::List => {
            no(e, a.buttons.is_some(), "buttons");
            no(e, a.parameters.is_some(), "parameters");
            let button = a.button.unwrap_or_default();
            e.required_max("interactive.action.button", &button, 20);
            let Some(sections) = a.sections else {
                e.add("interactive.action.sections", "is required: 1 to 10 sections");
                return None;
            };
            if sections.is_empty() {
                e.add("interactive.action.sections", "must hold at least 1 section");
            }
            let many = sections.len() > 1;
            let mut rows_seen = 0usize;
            let mut ids = HashSet::new();
            let mut out = Vec::new();
            'sections: for (s, section) in sections.into_iter().enumerate() {
                let p = format!("interactive.action.sections[{s}]");
                if s >= 10 {
                    e.add(p, "at most 10 sections");
                    break;
                }
                match &section.title {
                    Some(t) => e.required_max(&format!("{p}.title"), t, 24),
                    None if many => e.add(format!("{p}.title"), "is required when the list has more than one section"),
                    None => {}
                }
                if section.rows.is_empty() {
                    e.add(format!("{p}.rows"), "must hold at least 1 row");
                }
                let mut rows = Vec::new();
                for (r, row) in section.rows.into_iter().enumerate() {
                    let rp = format!("{p}.rows[{r}]");
                    rows_seen += 1;
                    if rows_seen > 10 {
                        e.add(rp, "at most 10 rows in total across all sections");
                        break 'sections;
                    }
                    e.required_max(&format!("{rp}.id"), &row.id, 200);
                    if !ids.insert(row.id.clone()) {
                        e.add(format!("{rp}.id"), "must be unique across the list");
                    }
                    e.required_max(&format!("{rp}.title"), &row.title, 24);
                    e.optional_max(&format!("{rp}.description"), row.description.as_deref(), 72);
                    rows.push((row.id, row.title, row.description));
                }
                out.push((section.title, rows));
            }
            Action::List { button, sections: out }
        }
        K::CtaUrl => {
            fixed(e, &a, "cta_url");
            no(e, a.buttons.is_some(), "buttons");
            no(e, a.sections.is_some(), "sections");
            let p = a.parameters.unwrap_or_default();
            let display_text = p.display_text.unwrap_or_default();
            e.required_max("interactive.action.parameters.display_text", &display_text, 20);
            let url = p.url.unwrap_or_default();
            if !is_http_url(&url) {
                e.add("interactive.action.parameters.url", "must be a public http or https URL");
            }
            if p.ttl_minutes.is_some() || p.payload.is_some() {
                e.add("interactive.action.parameters", "cta_url takes display_text and url only");
            }
            Action::CtaUrl { display_text, url }
        }
        K::LocationRequestMessage => {
            fixed(e, &a, "send_location");
            no(e, a.buttons.is_some() || a.sections.is_some() || a.parameters.is_some(), "parameters");
            Action::SendLocation
        }
        K::CallPermissionRequest => {
            fixed(e, &a, "call_permission_request");
            no(e, a.buttons.is_some() || a.sections.is_some() || a.parameters.is_some(), "parameters");
            Action::CallPermissionRequest
        }
        K::VoiceCall => {
            fixed(e, &a, "voice_call");
            no(e, a.buttons.is_some(), "buttons");
            no(e, a.sections.is_some(), "sections");
            let p = a.parameters.unwrap_or_default();
            if let Some(d) = &p.display_text {
                e.required_max("interactive.action.parameters.display_text", d, 20);
            }
            if p.ttl_minutes.is_some_and(|t| !(1..=43_200).contains(&t)) {
                e.add("interactive.action.parameters.ttl_minutes", "must be 1 to 43200 minutes (30 days)");
            }
            e.optional_max("interactive.action.parameters.payload", p.payload.as_deref(), 512);
            if p.url.is_some() {
                e.add("interactive.action.parameters.url", "does not belong to voice_call messages");
            }
            Action::VoiceCall { display_text: p.display_text, ttl_minutes: p.ttl_minutes, payload: p.payload }
        }
    };
    Some(Interactive { kind, header, body, footer, action })
}

fn header(e: &mut Errors, kind: InteractiveKind, h: HeaderInput) -> Option<Header> {
    let given = [
        (HeaderKind::Text, h.text.is_some()),
        (HeaderKind::Image, h.image.is_some()),
        (HeaderKind::Video, h.video.is_some()),
        (HeaderKind::Document, h.document.is_some()),
    ];
    for (k, present) in given {
        if present && k != h.kind {
            let name = serde_json::to_value(k).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            e.add(format!("interactive.header.{name}"), "does not match the header's type; remove it");
        }
    }
    match h.kind {
        HeaderKind::Text => {
            let t = h.text.unwrap_or_default();
            e.required_max("interactive.header.text", &t, 60);
            Some(Header::Text(t))
        }
        media_kind => {
            let (name, m) = match media_kind {
                HeaderKind::Image => ("image", h.image),
                HeaderKind::Video => ("video", h.video),
                _ => ("document", h.document),
            };
            let p = format!("interactive.header.{name}");
            if kind == InteractiveKind::List {
                e.add("interactive.header.type", "a list's header can only be text");
                return None;
            }
            let Some(m) = m else {
                e.add(p, format!("is required for a header of type {name}"));
                return None;
            };
            if m.caption.is_some() {
                e.add(format!("{p}.caption"), "a header's media takes no caption");
            }
            if m.voice.is_some() {
                e.add(format!("{p}.voice"), "does not belong to a header");
            }
            if let Some(f) = &m.filename {
                if media_kind == HeaderKind::Document {
                    e.required_max(&format!("{p}.filename"), f, 240);
                } else {
                    e.add(format!("{p}.filename"), "only documents take a file name");
                }
            }
            let source = source(e, &p, m.id, m.link)?;
            Some(Header::Media { kind: media_kind, source, filename: m.filename })
        }
    }
}

fn template(e: &mut Errors, t: TemplateInput) -> Option<Template> {
    use crate::translate::template::Params;
    e.required_max("template.name", &t.name, 512);
    let locale = t.locale.unwrap_or_else(|| "en".into());
    e.required_max("template.locale", &locale, 20);
    let params = t.parameters.as_ref().map_or(Params::Positional(Vec::new()), Parameters::to_params);
    let header = match t.header {
        None => None,
        Some(h) => {
            if let Some(f) = &h.filename {
                e.required_max("template.header.filename", f, 240);
            }
            source(e, "template.header", h.id, h.link).map(|s| (s, h.filename))
        }
    };
    let mut url_text = None;
    let mut quick_replies = Vec::new();
    let mut coupon_code = None;
    for (n, b) in t.buttons.unwrap_or_default().into_iter().enumerate() {
        let p = format!("template.buttons[{n}]");
        if n >= 10 {
            e.add(p, "at most 10 buttons");
            break;
        }
        match b {
            TemplateButton::Url { text } => {
                e.required_max(&format!("{p}.text"), &text, 2000);
                if url_text.replace(text).is_some() {
                    e.add(p, "only one url value (it fills every dynamic URL button)");
                }
            }
            TemplateButton::QuickReply { index, payload } => {
                e.required_max(&format!("{p}.payload"), &payload, 1000);
                if quick_replies.iter().any(|(i, _)| *i == index) {
                    e.add(format!("{p}.index"), "gives a payload for the same button twice");
                }
                quick_replies.push((index, payload));
            }
            TemplateButton::CopyCode { code } => {
                e.required_max(&format!("{p}.code"), &code, 15);
                if coupon_code.replace(code).is_some() {
                    e.add(p, "a template has at most one copy-code button");
                }
            }
        }
    }
    Some(Template { name: t.name, locale, params, header, url_text, quick_replies, coupon_code })
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// A public http or https URL with a host.
pub fn is_http_url(s: &str) -> bool {
    s.len() <= 2000
        && url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// Field errors, collected.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn max(&mut self, field: &str, s: &str, max: usize) {
        let n = s.chars().count();
        if n > max {
            self.add(field, format!("at most {} characters ({} given)", thousands(max), thousands(n)));
        }
    }

    fn required_max(&mut self, field: &str, s: &str, max: usize) {
        if s.trim().is_empty() {
            self.add(field, "must not be empty");
        } else {
            self.max(field, s, max);
        }
    }

    fn optional_max(&mut self, field: &str, s: Option<&str>, max: usize) {
        if let Some(s) = s {
            self.max(field, s, max);
        }
    }

    fn phone(&mut self, field: &str, s: &str) -> Option<String> {
        match crate::phone::normalize_e164(s) {
            Ok(p) => Some(p),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }
}

/// 4096 → "4,096".
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
