//! Typed parsing of Meta WhatsApp Cloud API webhook POST bodies (pure code, no I/O).
//!
//! The parser is deliberately forgiving: the body is first read as a `serde_json::Value` and then converted piece by
//! piece, so a type or field we do not know never fails the batch.
//!
//! - Unknown extra fields are ignored (the raw JSON of every message and status is kept).
//! - A message whose type is unknown, or whose per-type object is malformed, becomes [`Content::Unsupported`].
//! - Messages without an `id`, and statuses without `id` or `status`, are moved to [`MessagesValue::skipped`].
//! - A change whose `value` cannot be read as a whole becomes [`ChangeValue::Other`] with the raw JSON.
//!
//! Only a body that is not JSON, or not an object with an `entry` array, is an error.
//! Signature checks (`X-Hub-Signature-256`) must run on the raw bytes before calling [`parse`].

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------------------------------

/// A whole webhook POST body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    /// `"whatsapp_business_account"` for WhatsApp; empty when absent.
    pub object: String,
    pub entry: Vec<Entry>,
}

/// One `entry[]` item. `id` is the WABA ID.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: String,
    /// Integer unix seconds; present on template webhooks, usually absent on `messages`.
    pub time: Option<i64>,
    pub changes: Vec<Change>,
}

/// One `entry[].changes[]` item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub value: ChangeValue,
}

/// The `value` of a change, typed by its `field`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ChangeValue {
    /// `field == "messages"`: inbound messages, statuses, or value-level errors.
    Messages(MessagesValue),
    /// `field == "message_template_status_update"`.
    TemplateStatus(TemplateStatusUpdate),
    /// `field == "account_update"`.
    AccountUpdate(AccountUpdate),
    /// `field == "phone_number_quality_update"`.
    PhoneQuality(PhoneQualityUpdate),
    /// Any other field, or one of the above whose value could not be read: raw JSON kept.
    Other(Value),
}

/// The `value` of a `messages` change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessagesValue {
    pub metadata: Metadata,
    pub contacts: Vec<Contact>,
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<Status>,
    /// Value-level (asynchronous) errors not tied to a message.
    pub errors: Vec<WaError>,
    /// `messages[]` items without an `id`, and `statuses[]` items without `id` or `status`, as received.
    pub skipped: Vec<Value>,
}

/// `value.metadata`. Route on `phone_number_id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metadata {
    /// Digits only, no `+`. Empty when absent.
    pub display_phone_number: String,
    pub phone_number_id: String,
}

/// `value.contacts[]`: the sender's profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub wa_id: Option<String>,
    /// Business-scoped user ID (BSUID), e.g. `MA.1587668549511396`.
    pub user_id: Option<String>,
    /// `profile.name`.
    pub profile_name: Option<String>,
    /// `profile.username` (or a top-level `username`).
    pub username: Option<String>,
}

/// One `value.messages[]` item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundMessage {
    /// The `wamid.…`.
    pub id: String,
    /// May be absent when the user hides their phone number (BSUID senders).
    pub from: Option<String>,
    pub from_user_id: Option<String>,
    /// Unix seconds. Meta sends a string; a number is accepted too. `0` when absent or unreadable.
    pub timestamp: i64,
    pub context: Option<Context>,
    pub referral: Option<Referral>,
    /// Message-level errors (typically on `unsupported` messages).
    pub errors: Vec<WaError>,
    pub content: Content,
    /// The whole message object as received.
    pub raw: Value,
}

/// The typed body of an inbound message, by its wire `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Content {
    Text {
        body: String,
    },
    Image(Media),
    Audio(Media),
    Video(Media),
    Document(Media),
    Sticker(Media),
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
        url: Option<String>,
    },
    Contacts(Vec<SharedContact>),
    Interactive(Interactive),
    /// Quick-reply button in a template.
    Button {
        payload: Option<String>,
        text: String,
    },
    /// `emoji` is `None` for an un-react (emoji missing or empty).
    Reaction {
        message_id: String,
        emoji: Option<String>,
    },
    Order {
        catalog_id: String,
        text: Option<String>,
        items: Vec<OrderItem>,
    },
    /// `kind` is the system `type` (e.g. `user_changed_number`); `new_wa_id` is `wa_id` (or legacy `new_wa_id`).
    System {
        body: Option<String>,
        kind: Option<String>,
        new_wa_id: Option<String>,
    },
    /// The customer edited one of their messages (`type: "edit"`; Meta documents it for Coexistence numbers, edits
    /// within 15 minutes): `original_message_id` is the wamid of the edited message; `message` is the new content
    /// (text, or media with its new caption) read from `edit.message` like any inbound message, `Unsupported`
    /// when it is missing or unreadable.
    Edit {
        original_message_id: String,
        message: Box<Content>,
    },
    /// The customer deleted ("revoked") one of their messages (`type: "revoke"`; Meta documents it for
    /// Coexistence numbers, within two days of sending).
    Revoke {
        original_message_id: String,
    },
    /// `unsupported`, `unknown`, a type we do not know, or a known type whose object is malformed.
    /// `type_name` is the wire type (`"unknown"` if `type` is missing). The raw JSON is in [`InboundMessage::raw`].
    Unsupported {
        type_name: String,
    },
}

/// Media object of `image`, `audio`, `video`, `document` and `sticker` messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Media {
    /// Media ID, for `GET /{media-id}`.
    pub id: String,
    pub mime_type: Option<String>,
    /// Base64 SHA-256 of the file.
    pub sha256: Option<String>,
    pub caption: Option<String>,
    /// Documents only.
    pub filename: Option<String>,
    /// Audio only: recorded with the WhatsApp voice recorder.
    pub voice: Option<bool>,
    /// Stickers only.
    pub animated: Option<bool>,
    /// Direct download URL (rolled out from November 2025); needs the bearer token.
    pub url: Option<String>,
}

/// One shared contact card of a `contacts` message. Everything beyond name and phones is in `raw`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharedContact {
    /// `name.formatted_name`.
    pub formatted_name: Option<String>,
    pub phones: Vec<SharedPhone>,
    pub raw: Value,
}

/// `contacts[].phones[]` of a shared contact card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharedPhone {
    pub phone: Option<String>,
    pub wa_id: Option<String>,
    /// JSON `type` (`CELL`, `HOME`, `WORK`, ...).
    pub kind: Option<String>,
}

/// The `interactive` object of an inbound message (a reply to a business interactive message).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Interactive {
    ButtonReply {
        id: String,
        title: String,
    },
    ListReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// WhatsApp Flows reply. `response_json` is a JSON document inside a string, kept verbatim.
    NfmReply {
        name: Option<String>,
        body: Option<String>,
        response_json: String,
    },
    /// The customer's answer to a call permission request (meta-calling-sip.md: `response` is `accept` or
    /// `reject`; an automatic `reject` revokes the permission after unanswered calls).
    CallPermissionReply(CallPermissionReply),
    /// Unknown interactive type, or a known one that is malformed: the raw `interactive` object.
    Other(Value),
}

/// `interactive.call_permission_reply`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallPermissionReply {
    /// True for `accept`, false for `reject`.
    pub accepted: bool,
    /// The wire `response` as received.
    pub response: String,
    /// `is_permanent`: no expiry.
    pub is_permanent: Option<bool>,
    /// `expiration_timestamp`, unix seconds.
    pub expiration_timestamp: Option<i64>,
    /// `user_action` or `automatic`.
    pub response_source: Option<String>,
}

/// `order.product_items[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderItem {
    pub product_retailer_id: String,
    pub quantity: i64,
    pub item_price: f64,
    pub currency: String,
}

/// `messages[].context`: reply/quote or forward information.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    /// Business display number of the quoted message.
    pub from: Option<String>,
    /// wamid of the quoted message.
    pub id: Option<String>,
    pub forwarded: bool,
    pub frequently_forwarded: bool,
}

/// `messages[].referral`: Click-to-WhatsApp ad data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Referral {
    pub source_url: Option<String>,
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub body: Option<String>,
    pub headline: Option<String>,
    pub media_type: Option<String>,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub ctwa_clid: Option<String>,
}

/// One `value.statuses[]` item: the lifecycle of an outbound message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// wamid of the outbound message.
    pub id: String,
    pub status: StatusKind,
    /// Unix seconds; `0` when absent or unreadable.
    pub timestamp: i64,
    pub recipient_id: Option<String>,
    pub recipient_user_id: Option<String>,
    pub errors: Vec<WaError>,
    pub pricing: Option<Pricing>,
    pub biz_opaque_callback_data: Option<String>,
    /// The whole status object as received.
    pub raw: Value,
}

/// Status of an outbound message. Statuses only move forward, see [`StatusKind::advances`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    /// First play of a voice message.
    Played,
    Failed,
    /// Any other status string (e.g. `deleted`, `warning`), kept as received.
    Other(String),
}

impl StatusKind {
    /// Reads a wire status (case-insensitive for the known ones).
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "played" => StatusKind::Played,
            "failed" => StatusKind::Failed,
            _ => StatusKind::Other(s.to_owned()),
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Played => "played",
            StatusKind::Failed => "failed",
            StatusKind::Other(s) => s,
        }
    }

    /// Other=0, Sent=1, Delivered=2, Read=3, Played=4, Failed=5.
    pub fn rank(&self) -> u8 {
        match self {
            StatusKind::Other(_) => 0,
            StatusKind::Sent => 1,
            StatusKind::Delivered => 2,
            StatusKind::Read => 3,
            StatusKind::Played => 4,
            StatusKind::Failed => 5,
        }
    }

    /// The rank of `failed`, after which nothing moves.
    pub const TERMINAL_RANK: u8 = 5;

    /// Nothing moves after `failed`.
    pub fn is_terminal(&self) -> bool {
        self.rank() == Self::TERMINAL_RANK
    }

    /// True when `next` should replace `current`. Statuses only move forward (by [`rank`](Self::rank)): `read`
    /// never goes back to `delivered`, a repeat is not an advance, nothing moves after `failed`, and `Other`
    /// never overrides a known status. Anything replaces no status at all.
    pub fn advances(current: Option<&StatusKind>, next: &StatusKind) -> bool {
        match current {
            None => true,
            Some(cur) => Self::rank_advances(cur.rank(), next.rank()),
        }
    }

    /// The one rule on ranks, for a current status that is stored as its rank (0 for none): the next status
    /// moves it when it ranks higher and the current one is not terminal. `store::messages` checks exactly
    /// this in SQL (`status_rank < $next AND status_rank < TERMINAL_RANK`); `outbound::on_status` still has a
    /// copy of the rank table (`status_rank`) to be replaced by `StatusKind::parse(s).rank()` and this.
    pub fn rank_advances(current: u8, next: u8) -> bool {
        current < Self::TERMINAL_RANK && next > current
    }
}

/// Same as [`StatusKind::advances`].
pub fn advances(current: Option<&StatusKind>, next: &StatusKind) -> bool {
    StatusKind::advances(current, next)
}

impl std::fmt::Display for StatusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StatusKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `statuses[].pricing`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pricing {
    pub billable: Option<bool>,
    /// `PMP` (or `CBP` on old webhooks).
    pub pricing_model: Option<String>,
    /// JSON `type`: `regular`, `free_customer_service`, `free_entry_point`.
    pub kind: Option<String>,
    pub category: Option<String>,
}

/// An error object as found in `statuses[].errors`, `messages[].errors` and `value.errors`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaError {
    /// `0` when absent or unreadable.
    pub code: i64,
    pub title: Option<String>,
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
    pub href: Option<String>,
}

/// `message_template_status_update` value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateStatusUpdate {
    /// `APPROVED`, `REJECTED`, `PAUSED`, ...
    pub event: String,
    /// `message_template_id` (a JSON integer on the wire; a string is accepted too).
    pub template_id: String,
    /// `message_template_name`.
    pub name: String,
    /// `message_template_language`, normalised to the API form (`en-US` -> `en_US`).
    pub language: String,
    pub reason: Option<String>,
    /// `message_template_category`.
    pub category: Option<String>,
    pub raw: Value,
}

/// `account_update` value (loosely modelled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountUpdate {
    pub event: Option<String>,
    pub raw: Value,
}

/// `phone_number_quality_update` value (loosely modelled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneQualityUpdate {
    pub display_phone_number: Option<String>,
    /// e.g. `FLAGGED`, `UNFLAGGED`, `UPGRADE`, `DOWNGRADE`, `THROUGHPUT_UPGRADE`.
    pub event: Option<String>,
    /// `current_limit`, else `max_daily_conversations_per_business` (v24+), else `max_daily_conversation_per_phone`.
    pub current_limit: Option<String>,
    pub raw: Value,
}

impl Content {
    /// The wire `type` of the message (`"text"`, `"image"`, ..., or the unknown type name).
    pub fn type_name(&self) -> &str {
        match self {
            Content::Text { .. } => "text",
            Content::Image(_) => "image",
            Content::Audio(_) => "audio",
            Content::Video(_) => "video",
            Content::Document(_) => "document",
            Content::Sticker(_) => "sticker",
            Content::Location { .. } => "location",
            Content::Contacts(_) => "contacts",
            Content::Interactive(_) => "interactive",
            Content::Button { .. } => "button",
            Content::Reaction { .. } => "reaction",
            Content::Order { .. } => "order",
            Content::System { .. } => "system",
            Content::Edit { .. } => "edit",
            Content::Revoke { .. } => "revoke",
            Content::Unsupported { type_name } => type_name,
        }
    }

    /// The media object of image, audio, video, document and sticker messages.
    pub fn media(&self) -> Option<&Media> {
        match self {
            Content::Image(m) | Content::Audio(m) | Content::Video(m) | Content::Document(m) | Content::Sticker(m) => {
                Some(m)
            }
            _ => None,
        }
    }

    /// True for [`Content::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Content::Unsupported { .. })
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------------------------

/// Parses a webhook POST body. Fails only if the body is not JSON, or not an object with an `entry` array.
pub fn parse(body: &[u8]) -> Result<Payload, serde_json::Error> {
    let root: Value = serde_json::from_slice(body)?;
    parse_value(root)
}

/// Same as [`parse`], from an already decoded JSON value.
pub fn parse_value(root: Value) -> Result<Payload, serde_json::Error> {
    let Value::Object(mut obj) = root else {
        return Err(invalid("webhook body is not a JSON object"));
    };
    let Some(Value::Array(entries)) = obj.remove("entry") else {
        return Err(invalid("webhook body has no `entry` array"));
    };
    let object = str_of(obj.get("object")).unwrap_or_default();
    let entry = entries.into_iter().filter_map(parse_entry).collect();
    Ok(Payload { object, entry })
}

fn invalid(msg: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(msg)
}

fn parse_entry(v: Value) -> Option<Entry> {
    let Value::Object(mut obj) = v else { return None };
    let id = id_of(obj.get("id")).unwrap_or_default();
    let time = i64_of(obj.get("time"));
    let changes = match obj.remove("changes") {
        Some(Value::Array(items)) => items.into_iter().filter_map(parse_change).collect(),
        _ => Vec::new(),
    };
    Some(Entry { id, time, changes })
}

fn parse_change(v: Value) -> Option<Change> {
    let Value::Object(mut obj) = v else { return None };
    let field = str_of(obj.get("field")).unwrap_or_default();
    let value = obj.remove("value").unwrap_or(Value::Null);
    let value = match field.as_str() {
        "messages" => parse_messages_value(value).map_or_else(ChangeValue::Other, ChangeValue::Messages),
        "message_template_status_update" => {
            parse_template_status(value).map_or_else(ChangeValue::Other, ChangeValue::TemplateStatus)
        }
        "account_update" => parse_account_update(value).map_or_else(ChangeValue::Other, ChangeValue::AccountUpdate),
        "phone_number_quality_update" => {
            parse_phone_quality(value).map_or_else(ChangeValue::Other, ChangeValue::PhoneQuality)
        }
        _ => ChangeValue::Other(value),
    };
    Some(Change { field, value })
}

/// Reads a `messages` value; gives the value back untouched when it is malformed as a whole.
fn parse_messages_value(value: Value) -> Result<MessagesValue, Value> {
    let Value::Object(obj) = &value else { return Err(value) };
    let Some(metadata) = obj.get("metadata").and_then(parse_metadata) else { return Err(value) };
    let list_ok = |k: &str| matches!(obj.get(k), None | Some(Value::Null) | Some(Value::Array(_)));
    if !["contacts", "messages", "statuses", "errors"].into_iter().all(list_ok) {
        return Err(value);
    }
    let mut obj = match value {
        Value::Object(obj) => obj,
        other => return Err(other),
    };
    let mut take = |k: &str| match obj.remove(k) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let contacts = take("contacts").iter().filter_map(parse_contact).collect();
    let errors = parse_errors_list(&take("errors"));
    let mut skipped = Vec::new();
    let mut messages = Vec::new();
    for item in take("messages") {
        match parse_message(item) {
            Ok(m) => messages.push(m),
            Err(raw) => skipped.push(raw),
        }
    }
    let mut statuses = Vec::new();
    for item in take("statuses") {
        match parse_status(item) {
            Ok(s) => statuses.push(s),
            Err(raw) => skipped.push(raw),
        }
    }
    Ok(MessagesValue { metadata, contacts, messages, statuses, errors, skipped })
}

fn parse_metadata(v: &Value) -> Option<Metadata> {
    Some(Metadata {
        display_phone_number: id_of(v.get("display_phone_number")).unwrap_or_default(),
        phone_number_id: id_of(v.get("phone_number_id"))?,
    })
}

fn parse_contact(v: &Value) -> Option<Contact> {
    let obj = v.as_object()?;
    let profile = obj.get("profile");
    Some(Contact {
        wa_id: id_of(obj.get("wa_id")),
        user_id: id_of(obj.get("user_id")),
        profile_name: str_of(profile.and_then(|p| p.get("name"))),
        username: str_of(profile.and_then(|p| p.get("username"))).or_else(|| str_of(obj.get("username"))),
    })
}

/// Parses one `messages[]` item (as stored in `messages.raw`); `Err` gives the value back when it has no id.
pub fn parse_message(v: Value) -> Result<InboundMessage, Value> {
    let Value::Object(obj) = &v else { return Err(v) };
    let Some(id) = id_of(obj.get("id")) else { return Err(v) };
    let msg = InboundMessage {
        id,
        from: id_of(obj.get("from")),
        from_user_id: id_of(obj.get("from_user_id")),
        timestamp: i64_of(obj.get("timestamp")).unwrap_or(0),
        context: obj.get("context").and_then(parse_context),
        referral: obj.get("referral").and_then(parse_referral),
        errors: parse_errors(obj.get("errors")),
        content: parse_content(obj),
        raw: Value::Null,
    };
    Ok(InboundMessage { raw: v, ..msg })
}

fn parse_content(msg: &Map<String, Value>) -> Content {
    let type_name = msg.get("type").and_then(Value::as_str).unwrap_or("unknown");
    msg.get(type_name)
        .and_then(|body| parse_known_content(type_name, body))
        .unwrap_or_else(|| Content::Unsupported { type_name: type_name.to_owned() })
}

/// `None` for unknown types and malformed objects.
fn parse_known_content(type_name: &str, body: &Value) -> Option<Content> {
    let content = match type_name {
        "text" => Content::Text { body: str_of(body.get("body"))? },
        "image" => Content::Image(parse_media(body)?),
        "audio" => Content::Audio(parse_media(body)?),
        "video" => Content::Video(parse_media(body)?),
        "document" => Content::Document(parse_media(body)?),
        "sticker" => Content::Sticker(parse_media(body)?),
        "location" => Content::Location {
            latitude: f64_of(body.get("latitude"))?,
            longitude: f64_of(body.get("longitude"))?,
            name: str_of(body.get("name")),
            address: str_of(body.get("address")),
            url: str_of(body.get("url")),
        },
        "contacts" => Content::Contacts(body.as_array()?.iter().map(parse_shared_contact).collect()),
        "interactive" => Content::Interactive(parse_interactive(body)?),
        "button" => {
            body.as_object()?;
            Content::Button { payload: str_of(body.get("payload")), text: str_of(body.get("text"))? }
        }
        "reaction" => Content::Reaction {
            message_id: id_of(body.get("message_id"))?,
            emoji: str_of(body.get("emoji")).filter(|e| !e.is_empty()),
        },
        "order" => {
            let items = match body.get("product_items") {
                None | Some(Value::Null) => Vec::new(),
                Some(list) => list.as_array()?.iter().map(parse_order_item).collect::<Option<Vec<_>>>()?,
            };
            Content::Order { catalog_id: id_of(body.get("catalog_id"))?, text: str_of(body.get("text")), items }
        }
        "system" => {
            body.as_object()?;
            Content::System {
                body: str_of(body.get("body")),
                kind: str_of(body.get("type")),
                new_wa_id: id_of(body.get("wa_id")).or_else(|| id_of(body.get("new_wa_id"))),
            }
        }
        "edit" => Content::Edit {
            original_message_id: id_of(body.get("original_message_id"))?,
            message: Box::new(match body.get("message").and_then(Value::as_object) {
                Some(inner) => parse_edited_content(inner),
                None => Content::Unsupported { type_name: "unknown".to_owned() },
            }),
        },
        "revoke" => Content::Revoke { original_message_id: id_of(body.get("original_message_id"))? },
        _ => return None,
    };
    Some(content)
}

/// The new content of an edit. Meta's reference shows `edit.message` as a message object (`context`, then the
/// content); that it carries `type` like any inbound message is assumed, so without one the content is found by
/// its object (`text`, or a media object with its caption).
fn parse_edited_content(inner: &Map<String, Value>) -> Content {
    if inner.get("type").and_then(Value::as_str).is_some() {
        return parse_content(inner);
    }
    ["text", "image", "video", "document", "audio", "sticker"]
        .into_iter()
        .find_map(|t| inner.get(t).and_then(|body| parse_known_content(t, body)))
        .unwrap_or_else(|| Content::Unsupported { type_name: "unknown".to_owned() })
}

fn parse_media(v: &Value) -> Option<Media> {
    Some(Media {
        id: id_of(v.get("id"))?,
        mime_type: str_of(v.get("mime_type")),
        sha256: str_of(v.get("sha256")),
        caption: str_of(v.get("caption")),
        filename: str_of(v.get("filename")),
        voice: bool_of(v.get("voice")),
        animated: bool_of(v.get("animated")),
        url: str_of(v.get("url")),
    })
}

fn parse_shared_contact(v: &Value) -> SharedContact {
    let phones = v
        .get("phones")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|p| p.is_object())
                .map(|p| SharedPhone {
                    phone: id_of(p.get("phone")),
                    wa_id: id_of(p.get("wa_id")),
                    kind: str_of(p.get("type")),
                })
                .collect()
        })
        .unwrap_or_default();
    SharedContact {
        formatted_name: str_of(v.get("name").and_then(|n| n.get("formatted_name"))),
        phones,
        raw: v.clone(),
    }
}

fn parse_interactive(v: &Value) -> Option<Interactive> {
    v.as_object()?;
    let typed = match v.get("type").and_then(Value::as_str) {
        Some("button_reply") => v
            .get("button_reply")
            .and_then(|b| Some(Interactive::ButtonReply { id: id_of(b.get("id"))?, title: str_of(b.get("title"))? })),
        Some("list_reply") => v.get("list_reply").and_then(|l| {
            Some(Interactive::ListReply {
                id: id_of(l.get("id"))?,
                title: str_of(l.get("title"))?,
                description: str_of(l.get("description")),
            })
        }),
        Some("nfm_reply") => v.get("nfm_reply").and_then(|n| {
            Some(Interactive::NfmReply {
                name: str_of(n.get("name")),
                body: str_of(n.get("body")),
                response_json: str_of(n.get("response_json"))?,
            })
        }),
        Some("call_permission_reply") => v.get("call_permission_reply").and_then(|c| {
            let response = str_of(c.get("response"))?;
            let accepted = match response.to_ascii_lowercase().as_str() {
                "accept" | "accepted" => true,
                "reject" | "rejected" => false,
                _ => return None,
            };
            Some(Interactive::CallPermissionReply(CallPermissionReply {
                accepted,
                response,
                is_permanent: bool_of(c.get("is_permanent")),
                expiration_timestamp: i64_of(c.get("expiration_timestamp")),
                response_source: str_of(c.get("response_source")),
            }))
        }),
        _ => None,
    };
    Some(typed.unwrap_or_else(|| Interactive::Other(v.clone())))
}

fn parse_order_item(v: &Value) -> Option<OrderItem> {
    Some(OrderItem {
        product_retailer_id: id_of(v.get("product_retailer_id"))?,
        quantity: i64_of(v.get("quantity"))?,
        item_price: f64_of(v.get("item_price"))?,
        currency: str_of(v.get("currency"))?,
    })
}

fn parse_context(v: &Value) -> Option<Context> {
    v.as_object()?;
    Some(Context {
        from: id_of(v.get("from")),
        id: id_of(v.get("id")),
        forwarded: bool_of(v.get("forwarded")).unwrap_or(false),
        frequently_forwarded: bool_of(v.get("frequently_forwarded")).unwrap_or(false),
    })
}

fn parse_referral(v: &Value) -> Option<Referral> {
    v.as_object()?;
    let s = |k: &str| id_of(v.get(k));
    Some(Referral {
        source_url: s("source_url"),
        source_id: s("source_id"),
        source_type: s("source_type"),
        body: s("body"),
        headline: s("headline"),
        media_type: s("media_type"),
        image_url: s("image_url"),
        video_url: s("video_url"),
        thumbnail_url: s("thumbnail_url"),
        ctwa_clid: s("ctwa_clid"),
    })
}

fn parse_errors(v: Option<&Value>) -> Vec<WaError> {
    v.and_then(Value::as_array).map(|list| parse_errors_list(list)).unwrap_or_default()
}

fn parse_errors_list(list: &[Value]) -> Vec<WaError> {
    list.iter()
        .filter(|e| e.is_object())
        .map(|e| WaError {
            code: i64_of(e.get("code")).unwrap_or(0),
            title: str_of(e.get("title")),
            message: str_of(e.get("message")),
            details: str_of(e.get("error_data").and_then(|d| d.get("details"))),
            href: str_of(e.get("href")),
        })
        .collect()
}

fn parse_status(v: Value) -> Result<Status, Value> {
    let Value::Object(obj) = &v else { return Err(v) };
    let Some(id) = id_of(obj.get("id")) else { return Err(v) };
    let Some(status) = str_of(obj.get("status")).filter(|s| !s.is_empty()) else { return Err(v) };
    let pricing = obj.get("pricing").filter(|p| p.is_object()).map(|p| Pricing {
        billable: bool_of(p.get("billable")),
        pricing_model: str_of(p.get("pricing_model")),
        kind: str_of(p.get("type")),
        category: str_of(p.get("category")),
    });
    let st = Status {
        id,
        status: StatusKind::parse(&status),
        timestamp: i64_of(obj.get("timestamp")).unwrap_or(0),
        recipient_id: id_of(obj.get("recipient_id")),
        recipient_user_id: id_of(obj.get("recipient_user_id")),
        errors: parse_errors(obj.get("errors")),
        pricing,
        biz_opaque_callback_data: str_of(obj.get("biz_opaque_callback_data")),
        raw: Value::Null,
    };
    Ok(Status { raw: v, ..st })
}

fn parse_template_status(value: Value) -> Result<TemplateStatusUpdate, Value> {
    let parsed = (|| {
        let v = value.as_object()?;
        Some(TemplateStatusUpdate {
            event: str_of(v.get("event"))?,
            template_id: id_of(v.get("message_template_id"))?,
            name: str_of(v.get("message_template_name"))?,
            language: normalize_language(&str_of(v.get("message_template_language"))?),
            reason: str_of(v.get("reason")),
            category: str_of(v.get("message_template_category")),
            raw: Value::Null,
        })
    })();
    match parsed {
        Some(t) => Ok(TemplateStatusUpdate { raw: value, ..t }),
        None => Err(value),
    }
}

/// Template language codes: the webhook may say `en-US` where the API says `en_US`.
pub fn normalize_language(code: &str) -> String {
    code.trim().replace('-', "_")
}

fn parse_account_update(value: Value) -> Result<AccountUpdate, Value> {
    if !value.is_object() {
        return Err(value);
    }
    Ok(AccountUpdate { event: str_of(value.get("event")), raw: value })
}

fn parse_phone_quality(value: Value) -> Result<PhoneQualityUpdate, Value> {
    if !value.is_object() {
        return Err(value);
    }
    let current_limit = ["current_limit", "max_daily_conversations_per_business", "max_daily_conversation_per_phone"]
        .into_iter()
        .find_map(|k| id_of(value.get(k)));
    Ok(PhoneQualityUpdate {
        display_phone_number: id_of(value.get("display_phone_number")),
        event: str_of(value.get("event")),
        current_limit,
        raw: value,
    })
}

// ---------------------------------------------------------------------------------------------------------------------
// Lenient scalar readers
// ---------------------------------------------------------------------------------------------------------------------

/// A JSON string.
fn str_of(v: Option<&Value>) -> Option<String> {
    v?.as_str().map(str::to_owned)
}

/// An identifier: a non-empty string, or an integer written as a decimal string.
fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An integer, or a string holding one (Meta's timestamps).
fn i64_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A finite number, or a string holding one.
fn f64_of(v: Option<&Value>) -> Option<f64> {
    let f = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// A boolean, or the strings `"true"` / `"false"`.
fn bool_of(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WABA: &str = "102290129340398";
    const PNID: &str = "106540352242922";

    /// Wraps a `value` object into a full envelope with one change.
    fn envelope(field: &str, value: Value) -> Vec<u8> {
        let body = json!({"object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"value": value, "field": field}]}]});
        serde_json::to_vec(&body).unwrap()
    }

    fn messages_body(messages: Value) -> Vec<u8> {
        envelope(
            "messages",
            json!({"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                "messages": messages}),
        )
    }

    fn only_value(p: &Payload) -> &ChangeValue {
        assert_eq!(p.entry.len(), 1);
        assert_eq!(p.entry[0].changes.len(), 1);
        &p.entry[0].changes[0].value
    }

    fn messages_value(p: &Payload) -> &MessagesValue {
        match only_value(p) {
            ChangeValue::Messages(m) => m,
            other => panic!("expected Messages, got {other:?}"),
        }
    }

    /// Parses one message object wrapped in a standard envelope.
    fn one(msg: Value) -> InboundMessage {
        let p = parse(&messages_body(json!([msg]))).unwrap();
        let mv = messages_value(&p);
        assert!(mv.skipped.is_empty(), "skipped: {:?}", mv.skipped);
        assert_eq!(mv.messages.len(), 1);
        mv.messages[0].clone()
    }

    fn msg(type_name: &str, obj: Value) -> Value {
        json!({"from": "16505551234", "id": "wamid.ABC", "timestamp": "1750025136", "type": type_name, type_name: obj})
    }

    fn one_status(status: Value) -> Status {
        let body = envelope(
            "messages",
            json!({"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "5511930001234", "phone_number_id": PNID},
                "statuses": [status]}),
        );
        let p = parse(&body).unwrap();
        let mv = messages_value(&p);
        assert!(mv.skipped.is_empty());
        assert_eq!(mv.statuses.len(), 1);
        mv.statuses[0].clone()
    }

    #[test]
    fn reference_inbound_text_example() {
        // §3.6, verbatim (with the \u escapes as on the wire).
        let body = r#"{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5511930001234", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Jo\u00e3o Silva"}, "wa_id": "5511987654321"}],
        "messages": [{
          "from": "5511987654321",
          "id": "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDk4RjE2QjJFNzQ1QzA5RjZEAA==",
          "timestamp": "1767800000",
          "type": "text",
          "text": {"body": "Ol\u00e1, quero agendar uma consulta"}
        }]
      },
      "field": "messages"
    }]
  }]
}"#;
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.object, "whatsapp_business_account");
        assert_eq!(p.entry[0].id, WABA);
        assert_eq!(p.entry[0].time, None);
        assert_eq!(p.entry[0].changes[0].field, "messages");
        let mv = messages_value(&p);
        assert_eq!(
            mv.metadata,
            Metadata { display_phone_number: "5511930001234".into(), phone_number_id: PNID.into() }
        );
        assert_eq!(
            mv.contacts,
            vec![Contact {
                wa_id: Some("5511987654321".into()),
                user_id: None,
                profile_name: Some("João Silva".into()),
                username: None
            }]
        );
        let m = &mv.messages[0];
        assert_eq!(m.id, "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDk4RjE2QjJFNzQ1QzA5RjZEAA==");
        assert_eq!(m.from.as_deref(), Some("5511987654321"));
        assert_eq!(m.timestamp, 1_767_800_000);
        assert_eq!(m.content, Content::Text { body: "Olá, quero agendar uma consulta".into() });
        assert_eq!(m.content.type_name(), "text");
        assert_eq!(m.content.media(), None);
        assert_eq!(m.raw["text"]["body"], "Olá, quero agendar uma consulta");
        assert!(m.context.is_none() && m.referral.is_none() && m.errors.is_empty());
        assert!(mv.statuses.is_empty() && mv.errors.is_empty() && mv.skipped.is_empty());
    }

    #[test]
    fn numeric_timestamp_accepted() {
        let mut v = msg("text", json!({"body": "hi"}));
        v["timestamp"] = json!(1_750_025_136);
        assert_eq!(one(v).timestamp, 1_750_025_136);
    }

    #[test]
    fn image_reference_example() {
        let m = one(msg(
            "image",
            json!({"caption":"Taj Mahal","mime_type":"image/jpeg",
                "sha256":"SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=","id":"1003383421387256",
                "url":"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256"}),
        ));
        let media = Media {
            id: "1003383421387256".into(),
            mime_type: Some("image/jpeg".into()),
            sha256: Some("SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=".into()),
            caption: Some("Taj Mahal".into()),
            filename: None,
            voice: None,
            animated: None,
            url: Some("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256".into()),
        };
        assert_eq!(m.content, Content::Image(media.clone()));
        assert_eq!(m.content.type_name(), "image");
        assert_eq!(m.content.media(), Some(&media));
    }

    #[test]
    fn audio_voice() {
        let m = one(msg("audio", json!({"mime_type":"audio/ogg; codecs=opus","sha256":"x","id":"42","voice":true})));
        let Content::Audio(a) = &m.content else { panic!("{:?}", m.content) };
        assert_eq!(a.id, "42");
        assert_eq!(a.voice, Some(true));
        assert_eq!(a.mime_type.as_deref(), Some("audio/ogg; codecs=opus"));
        assert_eq!(m.content.type_name(), "audio");
    }

    #[test]
    fn video_document_sticker() {
        let m = one(msg("video", json!({"mime_type":"video/mp4","id":"7","caption":"clip"})));
        assert!(matches!(&m.content, Content::Video(v) if v.id == "7" && v.caption.as_deref() == Some("clip")));
        assert_eq!(m.content.type_name(), "video");

        let m =
            one(msg("document", json!({"filename":"nota.pdf","mime_type":"application/pdf","sha256":"s","id":"8"})));
        let Content::Document(d) = &m.content else { panic!("{:?}", m.content) };
        assert_eq!(d.filename.as_deref(), Some("nota.pdf"));
        assert_eq!(d.caption, None);
        assert_eq!(m.content.type_name(), "document");

        let m = one(msg("sticker", json!({"mime_type":"image/webp","sha256":"s","id":"9","animated":false})));
        let Content::Sticker(s) = &m.content else { panic!("{:?}", m.content) };
        assert_eq!(s.animated, Some(false));
        assert_eq!(m.content.type_name(), "sticker");
        assert!(m.content.media().is_some());
    }

    #[test]
    fn location() {
        let m = one(msg(
            "location",
            json!({"latitude": 37.44221496582, "longitude": -122.16135406494, "name": "Philz Coffee",
                "address": "101 Forest Ave, Palo Alto, CA 94301"}),
        ));
        assert_eq!(
            m.content,
            Content::Location {
                latitude: 37.44221496582,
                longitude: -122.16135406494,
                name: Some("Philz Coffee".into()),
                address: Some("101 Forest Ave, Palo Alto, CA 94301".into()),
                url: None
            }
        );
        assert_eq!(m.content.type_name(), "location");
    }

    #[test]
    fn shared_contacts() {
        let m = one(msg(
            "contacts",
            json!([{"name": {"formatted_name": "Maria Souza", "first_name": "Maria"},
                    "phones": [{"phone": "+55 11 98765-4321", "wa_id": "5511987654321", "type": "CELL"}],
                    "emails": [{"email": "m@example.com", "type": "WORK"}]},
                   {"name": {"first_name": "NoFormatted"}}]),
        ));
        let Content::Contacts(cards) = &m.content else { panic!("{:?}", m.content) };
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].formatted_name.as_deref(), Some("Maria Souza"));
        assert_eq!(
            cards[0].phones,
            vec![SharedPhone {
                phone: Some("+55 11 98765-4321".into()),
                wa_id: Some("5511987654321".into()),
                kind: Some("CELL".into())
            }]
        );
        assert_eq!(cards[0].raw["emails"][0]["email"], "m@example.com");
        assert_eq!(cards[1].formatted_name, None);
        assert!(cards[1].phones.is_empty());
        assert_eq!(m.content.type_name(), "contacts");
    }

    #[test]
    fn interactive_button_reply_reference_example() {
        let raw = r#"{"context":{"from":"15550783881","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"},
            "from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1750025136",
            "type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"cancel-button","title":"Cancel"}}}"#;
        let m = one(serde_json::from_str(raw).unwrap());
        assert_eq!(
            m.content,
            Content::Interactive(Interactive::ButtonReply { id: "cancel-button".into(), title: "Cancel".into() })
        );
        assert_eq!(
            m.context,
            Some(Context {
                from: Some("15550783881".into()),
                id: Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA".into()),
                forwarded: false,
                frequently_forwarded: false
            })
        );
        assert_eq!(m.content.type_name(), "interactive");
    }

    #[test]
    fn interactive_list_and_nfm_and_other() {
        let m = one(msg(
            "interactive",
            json!({"type":"list_reply","list_reply":{"id":"row-1","title":"Segunda","description":"9h-12h"}}),
        ));
        assert_eq!(
            m.content,
            Content::Interactive(Interactive::ListReply {
                id: "row-1".into(),
                title: "Segunda".into(),
                description: Some("9h-12h".into())
            })
        );
        let m = one(msg(
            "interactive",
            json!({"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\"flow_token\":\"t\"}"}}),
        ));
        assert_eq!(
            m.content,
            Content::Interactive(Interactive::NfmReply {
                name: Some("flow".into()),
                body: Some("Sent".into()),
                response_json: "{\"flow_token\":\"t\"}".into()
            })
        );
        let m = one(msg("interactive", json!({"type":"call_permission_reply","call_permission_reply":{"x":1}})));
        assert!(
            matches!(&m.content, Content::Interactive(Interactive::Other(v)) if v["type"] == "call_permission_reply")
        );
        // Malformed known subtype: Other, not a failure.
        let m = one(msg("interactive", json!({"type":"button_reply","button_reply":{"title":"no id"}})));
        assert!(matches!(&m.content, Content::Interactive(Interactive::Other(_))));
    }

    #[test]
    fn edit_in_metas_documented_shape() {
        // Meta's "Edit messages webhook reference" (messages webhook, `type: "edit"`): the new content is a whole
        // message object under `edit.message`.
        let raw = r#"{"from":"16505551234","id":"wamid.EDIT","timestamp":"1750025200","type":"edit",
            "edit":{"original_message_id":"wamid.ORIG",
                "message":{"context":{"from":"16505551234","id":"wamid.ORIG"},"type":"text","text":{"body":"new words"}}}}"#;
        let m = one(serde_json::from_str(raw).unwrap());
        assert_eq!(
            m.content,
            Content::Edit {
                original_message_id: "wamid.ORIG".into(),
                message: Box::new(Content::Text { body: "new words".into() })
            }
        );
        assert_eq!(m.content.type_name(), "edit");
        assert!(!m.content.is_unsupported());
        // A media message whose caption was edited.
        let m = one(msg(
            "edit",
            json!({"original_message_id":"wamid.IMG","message":{"type":"image",
                "image":{"id":"77","mime_type":"image/jpeg","caption":"better caption"}}}),
        ));
        let Content::Edit { message, .. } = &m.content else { panic!("{:?}", m.content) };
        assert!(matches!(message.as_ref(), Content::Image(i) if i.caption.as_deref() == Some("better caption")));
        // Without `type` in the new content: found by its object.
        let m = one(msg("edit", json!({"original_message_id":"wamid.ORIG","message":{"text":{"body":"typeless"}}})));
        assert_eq!(
            m.content,
            Content::Edit {
                original_message_id: "wamid.ORIG".into(),
                message: Box::new(Content::Text { body: "typeless".into() })
            }
        );
        // Without the new content: still an edit of that message, its content unreadable.
        let m = one(msg("edit", json!({"original_message_id":"wamid.ORIG"})));
        assert_eq!(
            m.content,
            Content::Edit {
                original_message_id: "wamid.ORIG".into(),
                message: Box::new(Content::Unsupported { type_name: "unknown".into() })
            }
        );
        // Without the original id it is not an edit we can use.
        let m = one(msg("edit", json!({"message":{"type":"text","text":{"body":"x"}}})));
        assert_eq!(m.content, Content::Unsupported { type_name: "edit".into() });
    }

    #[test]
    fn revoke_in_metas_documented_shape() {
        // Meta's "Revoke messages webhook reference" (messages webhook, `type: "revoke"`).
        let raw = r#"{"from":"16505551234","id":"wamid.REV","timestamp":"1750025300","type":"revoke",
            "revoke":{"original_message_id":"wamid.ORIG"}}"#;
        let m = one(serde_json::from_str(raw).unwrap());
        assert_eq!(m.content, Content::Revoke { original_message_id: "wamid.ORIG".into() });
        assert_eq!(m.content.type_name(), "revoke");
        let m = one(msg("revoke", json!({})));
        assert_eq!(m.content, Content::Unsupported { type_name: "revoke".into() });
    }

    #[test]
    fn call_permission_reply() {
        // calling-outbound.md §4.1 / meta-calling-sip.md: `interactive.type = "call_permission_reply"`.
        let raw = r#"{"context":{"from":"15550783881","id":"wamid.REQ"},"from":"16505551234","id":"wamid.CPR",
            "timestamp":"1753100000","type":"interactive","interactive":{"type":"call_permission_reply",
            "call_permission_reply":{"response":"accept","expiration_timestamp":1753186982,"response_source":"user_action"}}}"#;
        let m = one(serde_json::from_str(raw).unwrap());
        assert_eq!(
            m.content,
            Content::Interactive(Interactive::CallPermissionReply(CallPermissionReply {
                accepted: true,
                response: "accept".into(),
                is_permanent: None,
                expiration_timestamp: Some(1_753_186_982),
                response_source: Some("user_action".into()),
            }))
        );
        let m = one(msg(
            "interactive",
            json!({"type":"call_permission_reply","call_permission_reply":
                {"response":"reject","is_permanent":false,"response_source":"automatic"}}),
        ));
        assert_eq!(
            m.content,
            Content::Interactive(Interactive::CallPermissionReply(CallPermissionReply {
                accepted: false,
                response: "reject".into(),
                is_permanent: Some(false),
                expiration_timestamp: None,
                response_source: Some("automatic".into()),
            }))
        );
        let m = one(msg(
            "interactive",
            json!({"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":true}}),
        ));
        assert!(matches!(&m.content,
            Content::Interactive(Interactive::CallPermissionReply(r)) if r.accepted && r.is_permanent == Some(true)));
        // An answer that is neither: kept raw.
        let m = one(msg(
            "interactive",
            json!({"type":"call_permission_reply","call_permission_reply":{"response":"maybe"}}),
        ));
        assert!(matches!(&m.content, Content::Interactive(Interactive::Other(_))));
    }

    #[test]
    fn template_button() {
        let mut v = msg("button", json!({"payload":"STOP","text":"Stop promotions"}));
        v["context"] = json!({"from":"15550783881","id":"wamid.biz"});
        let m = one(v);
        assert_eq!(m.content, Content::Button { payload: Some("STOP".into()), text: "Stop promotions".into() });
        assert_eq!(m.context.and_then(|c| c.id).as_deref(), Some("wamid.biz"));
    }

    #[test]
    fn reaction_and_unreact() {
        let m = one(msg("reaction", json!({"message_id":"wamid.out","emoji":"\u{1F44D}"})));
        assert_eq!(m.content, Content::Reaction { message_id: "wamid.out".into(), emoji: Some("👍".into()) });
        let m = one(msg("reaction", json!({"message_id":"wamid.out","emoji":""})));
        assert_eq!(m.content, Content::Reaction { message_id: "wamid.out".into(), emoji: None });
        let m = one(msg("reaction", json!({"message_id":"wamid.out"})));
        assert_eq!(m.content, Content::Reaction { message_id: "wamid.out".into(), emoji: None });
        assert_eq!(m.content.type_name(), "reaction");
    }

    #[test]
    fn order() {
        let m = one(msg(
            "order",
            json!({"catalog_id":"1234567890","text":"","product_items":[
                {"product_retailer_id":"SKU-1","quantity":2,"item_price":10.5,"currency":"BRL"},
                {"product_retailer_id":"SKU-2","quantity":"1","item_price":"3","currency":"BRL"}]}),
        ));
        assert_eq!(
            m.content,
            Content::Order {
                catalog_id: "1234567890".into(),
                text: Some(String::new()),
                items: vec![
                    OrderItem {
                        product_retailer_id: "SKU-1".into(),
                        quantity: 2,
                        item_price: 10.5,
                        currency: "BRL".into()
                    },
                    OrderItem {
                        product_retailer_id: "SKU-2".into(),
                        quantity: 1,
                        item_price: 3.0,
                        currency: "BRL".into()
                    },
                ]
            }
        );
        // A malformed item makes the whole order Unsupported (raw kept), rather than silently dropping it.
        let m = one(msg("order", json!({"catalog_id":"1","product_items":[{"quantity":1}]})));
        assert_eq!(m.content, Content::Unsupported { type_name: "order".into() });
        assert_eq!(m.raw["order"]["catalog_id"], "1");
    }

    #[test]
    fn system_without_contacts() {
        let body = envelope(
            "messages",
            json!({"messaging_product":"whatsapp",
                "metadata":{"display_phone_number":"15550783881","phone_number_id":PNID},
                "messages":[{"from":"16505551234","id":"wamid.sys","timestamp":"1750025136","type":"system",
                    "system":{"body":"User Sheena Nelson changed from 16505551234 to 12195555358",
                        "wa_id":"12195555358","type":"user_changed_number"}}]}),
        );
        let p = parse(&body).unwrap();
        let mv = messages_value(&p);
        assert!(mv.contacts.is_empty());
        assert_eq!(
            mv.messages[0].content,
            Content::System {
                body: Some("User Sheena Nelson changed from 16505551234 to 12195555358".into()),
                kind: Some("user_changed_number".into()),
                new_wa_id: Some("12195555358".into())
            }
        );
        assert_eq!(mv.messages[0].content.type_name(), "system");
    }

    #[test]
    fn unsupported_with_errors() {
        let m = one(json!({"from":"16505551234","id":"wamid.U","timestamp":"1750025136","type":"unsupported",
            "errors":[{"code":131051,"title":"Message type unknown","message":"Message type unknown",
                "error_data":{"details":"Message type is currently not supported."}}]}));
        assert_eq!(m.content, Content::Unsupported { type_name: "unsupported".into() });
        assert!(m.content.is_unsupported());
        assert_eq!(
            m.errors,
            vec![WaError {
                code: 131051,
                title: Some("Message type unknown".into()),
                message: Some("Message type unknown".into()),
                details: Some("Message type is currently not supported.".into()),
                href: None
            }]
        );
        let m = one(json!({"from":"1","id":"wamid.K","timestamp":"1","type":"unknown"}));
        assert_eq!(m.content.type_name(), "unknown");
    }

    #[test]
    fn invented_type_is_unsupported_with_raw() {
        let m = one(msg("poll_vote", json!({"poll_id":"p1","options":[1,2]})));
        assert_eq!(m.content, Content::Unsupported { type_name: "poll_vote".into() });
        assert_eq!(m.content.type_name(), "poll_vote");
        assert_eq!(m.raw["poll_vote"]["poll_id"], "p1");
        // Missing type.
        let m = one(json!({"from":"1","id":"wamid.N","timestamp":"1"}));
        assert_eq!(m.content.type_name(), "unknown");
    }

    #[test]
    fn context_forwarded_and_referral() {
        let mut v = msg("text", json!({"body":"fwd"}));
        v["context"] = json!({"frequently_forwarded": true});
        let m = one(v);
        assert_eq!(m.context, Some(Context { from: None, id: None, forwarded: false, frequently_forwarded: true }));

        let mut v = msg("text", json!({"body":"Vi o anúncio"}));
        v["context"] = json!({"forwarded": true});
        v["referral"] = json!({"source_url":"https://fb.me/abc","source_id":"120210","source_type":"ad",
            "body":"Promo","headline":"Agende já","media_type":"image","image_url":"https://x/i.jpg",
            "thumbnail_url":"https://x/t.jpg","ctwa_clid":"ARAkLk","welcome_message":{"text":"Oi"}});
        let m = one(v);
        assert!(m.context.as_ref().is_some_and(|c| c.forwarded && !c.frequently_forwarded));
        assert_eq!(
            m.referral,
            Some(Referral {
                source_url: Some("https://fb.me/abc".into()),
                source_id: Some("120210".into()),
                source_type: Some("ad".into()),
                body: Some("Promo".into()),
                headline: Some("Agende já".into()),
                media_type: Some("image".into()),
                image_url: Some("https://x/i.jpg".into()),
                video_url: None,
                thumbnail_url: Some("https://x/t.jpg".into()),
                ctwa_clid: Some("ARAkLk".into()),
            })
        );
    }

    #[test]
    fn bsuid_sender_without_phone() {
        let body = envelope(
            "messages",
            json!({"messaging_product":"whatsapp",
                "metadata":{"display_phone_number":"15550783881","phone_number_id":PNID},
                "contacts":[{"profile":{"name":"Ana","username":"ana.b"},"user_id":"MA.1587668549511396"}],
                "messages":[{"from_user_id":"MA.1587668549511396","id":"wamid.B","timestamp":"1767800000",
                    "type":"text","text":{"body":"oi"}}]}),
        );
        let p = parse(&body).unwrap();
        let mv = messages_value(&p);
        assert_eq!(
            mv.contacts,
            vec![Contact {
                wa_id: None,
                user_id: Some("MA.1587668549511396".into()),
                profile_name: Some("Ana".into()),
                username: Some("ana.b".into())
            }]
        );
        assert_eq!(mv.messages[0].from, None);
        assert_eq!(mv.messages[0].from_user_id.as_deref(), Some("MA.1587668549511396"));
    }

    #[test]
    fn reference_delivered_status_example() {
        // §3.7, verbatim.
        let body = r#"{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5511930001234", "phone_number_id": "106540352242922"},
        "statuses": [{
          "id": "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjU0RjI5QzA4RDYxNDZBQjFGNwA=",
          "status": "delivered",
          "timestamp": "1767800012",
          "recipient_id": "5511987654321",
          "pricing": {"billable": false, "pricing_model": "PMP", "type": "free_customer_service", "category": "service"}
        }]
      },
      "field": "messages"
    }]
  }]
}"#;
        let p = parse(body.as_bytes()).unwrap();
        let mv = messages_value(&p);
        assert!(mv.messages.is_empty() && mv.contacts.is_empty());
        let s = &mv.statuses[0];
        assert_eq!(s.id, "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjU0RjI5QzA4RDYxNDZBQjFGNwA=");
        assert_eq!(s.status, StatusKind::Delivered);
        assert_eq!(s.timestamp, 1_767_800_012);
        assert_eq!(s.recipient_id.as_deref(), Some("5511987654321"));
        assert_eq!(
            s.pricing,
            Some(Pricing {
                billable: Some(false),
                pricing_model: Some("PMP".into()),
                kind: Some("free_customer_service".into()),
                category: Some("service".into())
            })
        );
        assert!(s.errors.is_empty());
        assert_eq!(s.raw["status"], "delivered");
    }

    #[test]
    fn reference_failed_status_example() {
        let raw = r#"{"id": "wamid.F", "status": "failed", "timestamp": "1767890000", "recipient_id": "5511987654321",
  "errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
    "error_data": {"details": "More than 24 hours have passed since the recipient last replied to the sender number."},
    "href": "/documentation/business-messaging/whatsapp/support/error-codes"}]}"#;
        let s = one_status(serde_json::from_str(raw).unwrap());
        assert_eq!(s.status, StatusKind::Failed);
        assert!(s.status.is_terminal());
        assert_eq!(
            s.errors,
            vec![WaError {
                code: 131047,
                title: Some("Re-engagement message".into()),
                message: Some("Re-engagement message".into()),
                details: Some(
                    "More than 24 hours have passed since the recipient last replied to the sender number.".into()
                ),
                href: Some("/documentation/business-messaging/whatsapp/support/error-codes".into())
            }]
        );
    }

    #[test]
    fn all_status_kinds() {
        for (wire, kind) in [
            ("sent", StatusKind::Sent),
            ("delivered", StatusKind::Delivered),
            ("read", StatusKind::Read),
            ("played", StatusKind::Played),
            ("failed", StatusKind::Failed),
            ("deleted", StatusKind::Other("deleted".into())),
            ("warning", StatusKind::Other("warning".into())),
        ] {
            let s = one_status(json!({"id":"wamid.S","status":wire,"timestamp":"1767800012","recipient_id":"551",
                "recipient_user_id":"MA.1","biz_opaque_callback_data":"ticket-7",
                "conversation":{"id":"c","origin":{"type":"service"}}}));
            assert_eq!(s.status, kind);
            assert_eq!(s.status.as_str(), wire);
            assert_eq!(StatusKind::parse(wire), kind);
            assert_eq!(s.recipient_user_id.as_deref(), Some("MA.1"));
            assert_eq!(s.biz_opaque_callback_data.as_deref(), Some("ticket-7"));
            assert_eq!(s.pricing, None);
        }
        assert_eq!(StatusKind::parse("READ"), StatusKind::Read);
        assert_eq!(serde_json::to_value(StatusKind::Read).unwrap(), json!("read"));
    }

    #[test]
    fn statuses_without_id_or_status_are_skipped() {
        let body = envelope(
            "messages",
            json!({"metadata":{"display_phone_number":"1","phone_number_id":PNID},
                "statuses":[{"status":"sent","timestamp":"1"},{"id":"wamid.X","timestamp":"1"},
                    {"id":"wamid.OK","status":"sent","timestamp":"1"}, 7]}),
        );
        let p = parse(&body).unwrap();
        let mv = messages_value(&p);
        assert_eq!(mv.statuses.len(), 1);
        assert_eq!(mv.statuses[0].id, "wamid.OK");
        assert_eq!(mv.skipped.len(), 3);
    }

    #[test]
    fn status_rank_and_advances_truth_table() {
        use StatusKind::*;
        let other = || Other("deleted".into());
        let all = [Sent, Delivered, Read, Played, Failed, other()];
        assert_eq!(all.iter().map(StatusKind::rank).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 0]);
        // None -> anything.
        for next in &all {
            assert!(advances(None, next), "None -> {next}");
        }
        // Rows: current; columns: next in `all` order (sent, delivered, read, played, failed, other).
        let table: [(StatusKind, [bool; 6]); 6] = [
            (Sent, [false, true, true, true, true, false]),
            (Delivered, [false, false, true, true, true, false]),
            (Read, [false, false, false, true, true, false]),
            (Played, [false, false, false, false, true, false]),
            (Failed, [false, false, false, false, false, false]),
            (other(), [true, true, true, true, true, false]),
        ];
        for (current, row) in &table {
            for (next, expected) in all.iter().zip(row) {
                assert_eq!(advances(Some(current), next), *expected, "{current} -> {next}");
                assert_eq!(StatusKind::advances(Some(current), next), *expected);
            }
        }
        assert!(Failed.is_terminal() && !Played.is_terminal() && !other().is_terminal());
        // The rank form (what the stored-rank SQL guard checks) agrees for every stored status, and "no status"
        // (rank 0) lets every known status in.
        for current in [Sent, Delivered, Read, Played, Failed] {
            for next in &all {
                assert_eq!(StatusKind::rank_advances(current.rank(), next.rank()), advances(Some(&current), next));
            }
        }
        for next in [Sent, Delivered, Read, Played, Failed] {
            assert!(StatusKind::rank_advances(0, next.rank()));
        }
        assert!(!StatusKind::rank_advances(0, other().rank()), "an unknown status is never stored as current");
        assert_eq!(Failed.rank(), StatusKind::TERMINAL_RANK);
    }

    #[test]
    fn value_level_errors() {
        let body = envelope(
            "messages",
            json!({"messaging_product":"whatsapp",
                "metadata":{"display_phone_number":"15550783881","phone_number_id":PNID},
                "errors":[{"code":130429,"title":"Rate limit hit","message":"Rate limit hit",
                    "error_data":{"details":"Message failed to send because there were too many messages sent from this phone number in a short period of time"},
                    "href":"/documentation/business-messaging/whatsapp/support/error-codes"}]}),
        );
        let p = parse(&body).unwrap();
        let mv = messages_value(&p);
        assert!(mv.messages.is_empty() && mv.statuses.is_empty());
        assert_eq!(mv.errors.len(), 1);
        assert_eq!(mv.errors[0].code, 130429);
        assert_eq!(mv.errors[0].title.as_deref(), Some("Rate limit hit"));
        assert!(mv.errors[0].details.as_deref().is_some_and(|d| d.starts_with("Message failed to send")));
    }

    #[test]
    fn reference_template_status_update() {
        let body = r#"{"entry":[{"id":"<WABA_ID>","time":1751247548,"changes":[{"value":{"event":"APPROVED","message_template_id":1689556908129832,
 "message_template_name":"order_confirmation","message_template_language":"en-US","reason":"NONE","message_template_category":"UTILITY"},
 "field":"message_template_status_update"}]}],"object":"whatsapp_business_account"}"#;
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.entry[0].time, Some(1_751_247_548));
        let ChangeValue::TemplateStatus(t) = only_value(&p) else { panic!("{p:?}") };
        assert_eq!(t.event, "APPROVED");
        assert_eq!(t.template_id, "1689556908129832");
        assert_eq!(t.name, "order_confirmation");
        assert_eq!(t.language, "en_US");
        assert_eq!(t.reason.as_deref(), Some("NONE"));
        assert_eq!(t.category.as_deref(), Some("UTILITY"));
        assert_eq!(t.raw["message_template_language"], "en-US");

        // String id accepted; missing name -> Other with raw kept.
        let ok = parse(&envelope(
            "message_template_status_update",
            json!({"event":"REJECTED","message_template_id":"77","message_template_name":"n",
                "message_template_language":"pt_BR","reason":"INVALID_FORMAT"}),
        ))
        .unwrap();
        assert!(
            matches!(only_value(&ok), ChangeValue::TemplateStatus(t) if t.template_id == "77" && t.language == "pt_BR")
        );
        let bad = parse(&envelope("message_template_status_update", json!({"event":"APPROVED"}))).unwrap();
        assert_eq!(only_value(&bad), &ChangeValue::Other(json!({"event":"APPROVED"})));
    }

    #[test]
    fn account_update() {
        let value = json!({"phone_number":"15550783881","event":"VERIFIED_ACCOUNT"});
        let p = parse(&envelope("account_update", value.clone())).unwrap();
        assert_eq!(
            only_value(&p),
            &ChangeValue::AccountUpdate(AccountUpdate { event: Some("VERIFIED_ACCOUNT".into()), raw: value })
        );
        let p = parse(&envelope("account_update", json!("weird"))).unwrap();
        assert_eq!(only_value(&p), &ChangeValue::Other(json!("weird")));
    }

    #[test]
    fn phone_number_quality_update() {
        let value = json!({"display_phone_number":"15550783881","event":"FLAGGED","current_limit":"TIER_10K"});
        let p = parse(&envelope("phone_number_quality_update", value.clone())).unwrap();
        assert_eq!(
            only_value(&p),
            &ChangeValue::PhoneQuality(PhoneQualityUpdate {
                display_phone_number: Some("15550783881".into()),
                event: Some("FLAGGED".into()),
                current_limit: Some("TIER_10K".into()),
                raw: value
            })
        );
        let p = parse(&envelope(
            "phone_number_quality_update",
            json!({"display_phone_number":"15550783881","event":"THROUGHPUT_UPGRADE",
                "max_daily_conversations_per_business":"TIER_UNLIMITED"}),
        ))
        .unwrap();
        let ChangeValue::PhoneQuality(q) = only_value(&p) else { panic!("{p:?}") };
        assert_eq!(q.event.as_deref(), Some("THROUGHPUT_UPGRADE"));
        assert_eq!(q.current_limit.as_deref(), Some("TIER_UNLIMITED"));
    }

    #[test]
    fn unknown_field_is_other() {
        let value = json!({"group_id":"g1","type":"group_create"});
        let p = parse(&envelope("group_lifecycle_update", value.clone())).unwrap();
        assert_eq!(p.entry[0].changes[0].field, "group_lifecycle_update");
        assert_eq!(only_value(&p), &ChangeValue::Other(value));
    }

    #[test]
    fn malformed_messages_value_is_other() {
        for value in [
            json!({"messages":[]}),                                            // no metadata
            json!({"metadata":{"display_phone_number":"1"},"messages":[]}),    // no phone_number_id
            json!({"metadata":{"phone_number_id":"1"},"messages":{"id":"x"}}), // messages not an array
            json!(null),
        ] {
            let p = parse(&envelope("messages", value.clone())).unwrap();
            assert_eq!(only_value(&p), &ChangeValue::Other(value));
        }
    }

    #[test]
    fn one_bad_message_among_good_ones() {
        let body = messages_body(json!([
            {"from":"1","id":"wamid.1","timestamp":"1","type":"text","text":{"body":"a"}},
            {"from":"1","id":"wamid.2","timestamp":"2","type":"image","image":{"mime_type":"image/jpeg"}},
            {"from":"1","timestamp":"3","type":"text","text":{"body":"no id"}},
            {"from":"1","id":"wamid.4","timestamp":"oops","type":"text","text":{"body":"bad ts"}},
            {"from":"1","id":"wamid.5","timestamp":"5","type":"location","location":{"latitude":"x"}},
            "not an object",
            {"from":"1","id":"wamid.6","timestamp":"6","type":"text","text":{"body":"b"},"brand_new_field":{"x":1}}
        ]));
        let p = parse(&body).unwrap();
        let mv = messages_value(&p);
        let ids: Vec<_> = mv.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["wamid.1", "wamid.2", "wamid.4", "wamid.5", "wamid.6"]);
        assert_eq!(mv.messages[0].content, Content::Text { body: "a".into() });
        assert_eq!(mv.messages[1].content, Content::Unsupported { type_name: "image".into() });
        assert_eq!(mv.messages[1].raw["image"]["mime_type"], "image/jpeg");
        assert_eq!(mv.messages[2].timestamp, 0);
        assert_eq!(mv.messages[3].content, Content::Unsupported { type_name: "location".into() });
        assert_eq!(mv.messages[4].content, Content::Text { body: "b".into() });
        assert_eq!(
            mv.skipped,
            vec![json!({"from":"1","timestamp":"3","type":"text","text":{"body":"no id"}}), json!("not an object")]
        );
    }

    #[test]
    fn batch_of_1000_changes() {
        let changes: Vec<Value> = (0..1000)
            .map(|i| {
                json!({"field":"messages","value":{"messaging_product":"whatsapp",
                    "metadata":{"display_phone_number":"15550783881","phone_number_id":PNID},
                    "contacts":[{"profile":{"name":"U"},"wa_id":"1"}],
                    "messages":[{"from":"1","id":format!("wamid.{i}"),"timestamp":"1","type":"text","text":{"body":i.to_string()}}]}})
            })
            .collect();
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":WABA,"changes":changes}]});
        let p = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(p.entry[0].changes.len(), 1000);
        for (i, c) in p.entry[0].changes.iter().enumerate() {
            let ChangeValue::Messages(mv) = &c.value else { panic!("change {i}") };
            assert_eq!(mv.messages[0].id, format!("wamid.{i}"));
            assert_eq!(mv.messages[0].content, Content::Text { body: i.to_string() });
        }
    }

    #[test]
    fn envelope_errors_and_leniency() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"{"object":"whatsapp_business_account"}"#).is_err());
        assert!(parse(br#"{"entry":{}}"#).is_err());
        let p = parse(br#"{"entry":[]}"#).unwrap();
        assert_eq!(p, Payload { object: String::new(), entry: vec![] });
        // Non-object entries/changes are ignored; an entry without changes is kept.
        let p =
            parse(br#"{"object":"page","entry":[1,{"id":5,"time":"9"},{"id":"a","changes":[null,{"field":"x"}]}]}"#)
                .unwrap();
        assert_eq!(p.entry.len(), 2);
        assert_eq!(p.entry[0], Entry { id: "5".into(), time: Some(9), changes: vec![] });
        assert_eq!(p.entry[1].changes, vec![Change { field: "x".into(), value: ChangeValue::Other(Value::Null) }]);
    }

    #[test]
    fn language_normalisation() {
        assert_eq!(normalize_language("en-US"), "en_US");
        assert_eq!(normalize_language("pt_BR"), "pt_BR");
        assert_eq!(normalize_language("en"), "en");
    }
}
