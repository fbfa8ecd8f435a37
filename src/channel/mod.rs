//! The WhatsApp channel seam: what the rest of wabridge needs from a provider of WhatsApp numbers, behind one
//! interface. Meta's Cloud API ([`meta::MetaCloud`]) is the first implementation; Twilio's WhatsApp channel is the
//! next (docs/architecture.md, "Seams").
//!
//! | need | who asks | [`Channel`] method |
//! |---|---|---|
//! | turn a verified inbound request into our inbound model (messages, statuses, account events) | `inbound.rs` (`inbox.process`) | [`Channel::parse_inbound`] |
//! | send one message for a number, and say what came of it | `outbound/sender.rs` ([`crate::outbound::sender::Sender::attempt`]) | [`Channel::send`] |
//! | mark a customer's message read | the same | [`Channel::mark_read`] |
//! | fetch a customer's media with the number's credentials | `crm/media.rs`, `http/bitrix.rs` (file proxy) | [`Channel::fetch_media`] |
//! | decide what a refusal means (retry, pause the account, give up) | the sender, through [`Refusal::class`] | [`Channel::classify`] (pure) |
//!
//! What a channel gives back is ours, not the provider's: a [`Sent`] says whether the message was taken, whether
//! the request may have gone through without an answer (the sender then reconciles instead of resending), or
//! what the refusal means, so the sender's decisions (`sender::admit`, `record_on`) never look at a provider's
//! error envelope. The inbound model is the one in `meta::webhook` (`Payload`, `InboundMessage`, `Status`,
//! `Content`): a second channel maps its own requests into those types.
//!
//! The signature check stays in front of this seam (`http/webhook.rs`: verify the raw bytes, then store): a channel
//! only ever parses bytes that were verified and committed.

pub mod meta;

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

pub use crate::meta::errors::SendClass;
use crate::meta::webhook::Payload;

/// A number as its channel knows it: the provider's id for it and the credential that acts for it.
#[derive(Debug, Clone, Copy)]
pub struct Number<'a> {
    /// Meta: the `phone_number_id`.
    pub id: &'a str,
    /// Meta: the WABA's (or app's) access token. Never logged.
    pub token: &'a str,
}

/// What came of one request to the channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// The provider took the message: its id (Meta: the `wamid`).
    Accepted { id: String },
    /// The provider took a read mark (no id of its own, no status will follow).
    Marked,
    /// The request went out and no answer came: the provider may have acted.
    Unanswered { reason: String },
    /// The provider could not be reached, or answered with something that is not its API: it did not act.
    Unreachable { reason: String },
    /// The provider refused it.
    Refused(Refusal),
}

/// A refusal, with the channel's own reading of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The provider's error code, when it gave one.
    pub code: Option<i64>,
    /// What to do about it ([`Channel::classify`]).
    pub class: SendClass,
    /// The provider's whole answer in words, for logs (Meta: HTTP status, code, message and details).
    pub detail: String,
    /// The provider's explanation alone, when it gave one (Meta: `error_data.details`), for whoever asked.
    pub details: Option<String>,
}

/// A media item being fetched: its type as the provider says, and the body, not yet read.
pub struct Media {
    pub mime_type: Option<String>,
    pub body: reqwest::Response,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The verified request is not one of the provider's payloads.
    #[error("not a valid {channel} payload: {reason}")]
    Unreadable { channel: &'static str, reason: String },
    /// A fetch the provider refused or that did not complete.
    #[error(transparent)]
    Meta(Box<crate::meta::graph::Error>),
}

impl From<crate::meta::graph::Error> for ChannelError {
    fn from(e: crate::meta::graph::Error) -> Self {
        ChannelError::Meta(Box::new(e))
    }
}

/// Our inbound model from a verified body that the channel named `source` (`inbox.source`) posted: the one place
/// that maps a stored inbound row to its channel's parser.
pub fn parse_inbound(source: &str, body: &[u8]) -> Result<Payload, ChannelError> {
    match source {
        "meta" => meta::parse(body),
        other => Err(ChannelError::Unreadable { channel: "unknown channel", reason: format!("source {other:?}") }),
    }
}

/// What wabridge needs from a WhatsApp channel (see the module doc for who asks what).
pub trait Channel: Send + Sync {
    /// The channel's name, as `inbox.source` stores it (`meta`).
    fn name(&self) -> &'static str;

    /// Our inbound model from a verified inbound request body.
    fn parse_inbound(&self, body: &[u8]) -> Result<Payload, ChannelError>;

    /// Sends one message (its complete provider body) for `from`; `timeout` bounds the whole request.
    /// `attempts` counts this attempt, for [`Channel::classify`].
    fn send(
        &self,
        from: Number<'_>,
        body: &Value,
        timeout: Duration,
        attempts: i64,
    ) -> impl Future<Output = Sent> + Send;

    /// Marks a customer's message read for `from`. An unanswered mark is [`Sent::Unreachable`]: sending it again is
    /// harmless, so there is nothing to reconcile.
    fn mark_read(
        &self,
        from: Number<'_>,
        body: &Value,
        timeout: Duration,
        attempts: i64,
    ) -> impl Future<Output = Sent> + Send;

    /// Fetches a customer's media item with `from`'s credentials.
    fn fetch_media(&self, from: Number<'_>, media_id: &str)
        -> impl Future<Output = Result<Media, ChannelError>> + Send;

    /// What a refusal means (pure): the provider's status, code, `Retry-After` and the attempts made so far.
    fn classify(&self, http_status: u16, code: Option<i64>, retry_after: Option<Duration>, attempts: i64) -> SendClass;
}
