//! The CRM seam: what the bridge needs from a CRM's chat lines, behind one interface. Bitrix24's open lines
//! ([`super::bitrix24::Bitrix24Lines`]) are the first implementation; the built-in inbox and tenant webhooks are
//! the next (docs/architecture.md, "Seams").
//!
//! | need | who asks | [`CrmLines`] method |
//! |---|---|---|
//! | post a customer's message into the customer's chat on the line | `crm/deliver.rs` (`crm.deliver`) | [`CrmLines::post`] |
//! | post many customers' messages on one line at once | `crm/deliver_batch.rs` (`crm.deliver` in batches) | [`CrmLines::post_many`] |
//! | tell whether an earlier, unanswered post reached the chat | the same, before posting again | [`CrmLines::find`] |
//! | change a message the chat already shows (the customer edited or deleted it) | `crm/changes.rs` | [`CrmLines::edit`], [`CrmLines::delete`] |
//! | mark an operator's message delivered or read | `crm/report.rs` (`outbound.report`) | [`CrmLines::mark`] |
//! | show a notice in a chat ("not delivered to WhatsApp: …", "the 24-hour window is closed") | `crm/report.rs`, `crm/reply.rs` | [`CrmLines::notice`] |
//!
//! What stays outside the seam, on purpose: the decisions (arrival order, the attempt recorded before a post,
//! when to ask [`CrmLines::find`], what is stored once a post is taken) are the bridge's, in `crm/deliver.rs`;
//! setting a line up (`crm/bind.rs`), the SMS provider (`crm/sms.rs`) and the portal's tokens are Bitrix24's own
//! set-up, not traffic, and talk to its client directly.
//!
//! What an implementation gives back is ours: a [`Posted`] says whether the chat took the message, and a
//! [`LineError`] whether a failed call may still have taken effect (the bridge then asks [`CrmLines::find`]
//! before posting again, since a CRM need not deduplicate by our message id).

use std::future::Future;

use crate::jobs::JobError;

/// The line a call is about: the CRM account (a Bitrix24 portal) and its line id.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub portal_id: i64,
    pub line: &'a str,
}

/// A file of a message, as a link the CRM fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub url: String,
    pub name: String,
}

/// One customer message for the customer's chat.
#[derive(Debug, Clone)]
pub struct ClientMessage<'a> {
    /// The customer's key: one chat per customer per line.
    pub key: &'a str,
    pub wa_id: Option<&'a str>,
    /// The WhatsApp profile name, as the customer set it.
    pub profile: Option<&'a str>,
    /// Our id of the message (the wamid): the CRM keeps it, so [`CrmLines::find`] can look for it.
    pub wamid: &'a str,
    /// Unix seconds.
    pub date: i64,
    /// The rendered text (BBCode); may be empty when there are files.
    pub text: &'a str,
    pub files: Vec<File>,
}

/// What the chat did with a posted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// It took it: the CRM's id of the message, and the chat and session it is in.
    Taken { message: String, chat_id: Option<String>, session_id: Option<String> },
    /// It answered and did not take it, saying why.
    NotTaken(String),
    /// The line (or the connector on it) is gone: it must be set up again.
    LineGone(String),
}

/// What the CRM says about a message an earlier attempt may have posted.
#[derive(Debug, PartialEq, Eq)]
pub enum Recheck {
    /// It has it: its message id, and the chat and session it is in.
    Found { message: String, chat_id: Option<String>, session_id: Option<String> },
    /// It does not have it in the customer's chat.
    NotThere,
    /// We cannot ask: no chat of this customer is known yet (the first message), or the CRM did not answer.
    CannotTell(String),
}

/// The customer's chat as the CRM named it when an earlier message reached it.
#[derive(Debug, Clone, Copy)]
pub struct KnownChat<'a> {
    pub chat_id: &'a str,
    pub session_id: Option<&'a str>,
}

/// An operator's message in the CRM, as the CRM named it when it handed it to us.
#[derive(Debug, Clone, Copy)]
pub struct OperatorMessage<'a> {
    pub im_chat_id: &'a serde_json::Value,
    pub im_message_id: &'a serde_json::Value,
    pub chat_id: &'a serde_json::Value,
    /// Our id of the send (the wamid once WhatsApp took it).
    pub our_id: &'a str,
}

/// A mark on an operator's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Delivered,
    Read,
}

/// A call to the CRM that failed.
#[derive(Debug, thiserror::Error)]
#[error("{job}")]
pub struct LineError {
    /// The request went out and no readable answer came back: the CRM may have acted on it.
    pub may_have_reached: bool,
    /// What the job does about it (retry with the CRM's pacing, or give up).
    pub job: JobError,
}

impl From<LineError> for JobError {
    fn from(e: LineError) -> Self {
        e.job
    }
}

/// What the bridge needs from a CRM's chat lines (see the module doc for who asks what).
pub trait CrmLines: Send + Sync {
    /// Posts one customer message into the customer's chat on the line.
    fn post(&self, at: At<'_>, m: ClientMessage<'_>) -> impl Future<Output = Result<Posted, LineError>> + Send;

    /// Posts several customer messages (each into its customer's chat on the line) in one call, in the order
    /// given: one [`Posted`] per message, in that order. At most [`CrmLines::post_many_max`]; a call that fails
    /// fails them all.
    fn post_many(
        &self,
        at: At<'_>,
        ms: Vec<ClientMessage<'_>>,
    ) -> impl Future<Output = Result<Vec<Posted>, LineError>> + Send;

    /// How many messages one [`CrmLines::post_many`] takes at most.
    fn post_many_max(&self) -> usize;

    /// [`CrmLines::post_many`] for several lines of one CRM account in one request where the CRM allows it
    /// (at most [`CrmLines::post_lines_max`] lines): one result per line, in the order given.
    fn post_lines(
        &self,
        portal_id: i64,
        posts: Vec<(&str, Vec<ClientMessage<'_>>)>,
    ) -> impl Future<Output = Result<Vec<Result<Vec<Posted>, LineError>>, LineError>> + Send;

    /// How many lines one [`CrmLines::post_lines`] takes at most.
    fn post_lines_max(&self) -> usize;

    /// How long a request to CRM account `portal_id` would wait now for the account's rate limit (zero when it
    /// could go at once). Deliveries to an account that must wait are put off for that long, so the messages that
    /// arrive meanwhile go together in the one request the limit allows then.
    fn wait_before_post(&self, _portal_id: i64) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Looks for `wamid` in the customer's known chat.
    fn find(&self, at: At<'_>, chat: KnownChat<'_>, wamid: &str) -> impl Future<Output = Recheck> + Send;

    /// Gives the chat's message `original` (our id) a new text and files. `Ok(false)`: the chat does not have it.
    fn edit(
        &self,
        at: At<'_>,
        key: &str,
        original: &str,
        text: &str,
        files: Vec<File>,
    ) -> impl Future<Output = Result<bool, LineError>> + Send;

    /// Deletes the chat's message `original` (our id). `Ok(false)`: the chat does not have it.
    fn delete(&self, at: At<'_>, key: &str, original: &str) -> impl Future<Output = Result<bool, LineError>> + Send;

    /// Marks an operator's message delivered or read.
    fn mark(
        &self,
        at: At<'_>,
        m: OperatorMessage<'_>,
        mark: Mark,
    ) -> impl Future<Output = Result<(), LineError>> + Send;

    /// Shows a notice (not a customer message) in the chat the CRM calls `im_chat_id`.
    fn notice(
        &self,
        portal_id: i64,
        im_chat_id: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), LineError>> + Send;
}
