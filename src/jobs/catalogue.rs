//! The job catalogue: every kind of job, its payload and its settings, in one place.
//!
//! A job row stores its kind as text (`jobs.kind`, spelled once, in [`Kind::as_str`]) and its payload as JSON
//! (`jobs.payload`, the payload struct of its [`Task`] variant). Producers enqueue a [`Task`]
//! ([`super::enqueue`]); the engine parses a leased row back into one ([`Task::parse`]) before it calls the
//! kind's handler (registered in one exhaustive match, [`super::handlers::Handlers::run`]), so a payload that
//! does not parse is a permanent error naming the kind and the path of the bad field, and handlers get typed
//! payloads.
//!
//! One kind is written by SQL as well: the `inbox_enqueue` trigger (migrations `0002_jobs_inbox.sql`) gives every
//! inbox row its [`Kind::InboxProcess`] job with the payload `{"inbox_id":N}`, so that the webhook intake stays
//! one multi-row INSERT; a test inserts an inbox row and parses the job it made as a [`Task`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::crm::reply::Reply as CrmReply;

/// Spells the catalogue once: each kind's variant, payload type, stored text, default attempts, whether its
/// jobs carry a lane or an order key, and how many of its jobs run as one batch. Generates [`Kind`] and [`Task`].
macro_rules! catalogue {
    ($(
        $(#[$doc:meta])*
        $variant:ident($payload:ty) = $text:literal, attempts: $attempts:expr, lane: $lane:expr, ordered: $ordered:expr,
        batch: $batch:expr;
    )*) => {
        /// A kind of job, as stored in `jobs.kind` ([`Kind::as_str`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
        }

        impl Kind {
            /// Every kind.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The text stored in `jobs.kind` (and used as the `kind` label of the job metrics).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $text,)*
                }
            }

            /// How many attempts a job of this kind gets unless its producer says; `None`: the engine's
            /// `job_max_attempts` (stored as NULL and applied when the job is leased).
            pub const fn max_attempts(self) -> Option<i64> {
                match self {
                    $(Kind::$variant => $attempts,)*
                }
            }

            /// Its jobs carry a lane (a phone) and are run by that lane's dispatcher, never by the generic workers.
            pub const fn laned(self) -> bool {
                match self {
                    $(Kind::$variant => $lane,)*
                }
            }

            /// Its jobs carry an order key: each waits while an earlier job of its key is neither done nor dead
            /// ([`super::earlier_in_order`]).
            pub const fn ordered(self) -> bool {
                match self {
                    $(Kind::$variant => $ordered,)*
                }
            }

            /// How many of its jobs the generic workers lease and run as one batch (`super::Engine::units`,
            /// `super::handlers::Handlers::run_batch`); 1: one at a time.
            pub const fn batch(self) -> usize {
                match self {
                    $(Kind::$variant => $batch,)*
                }
            }
        }

        /// A job of some kind with its payload: what producers enqueue and handlers receive.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Task {
            $($(#[$doc])* $variant($payload),)*
        }

        impl Task {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Task::$variant(_) => Kind::$variant,)*
                }
            }

            /// The payload as stored in `jobs.payload`.
            pub fn payload(&self) -> String {
                // Plain structs of numbers and strings: serialising them cannot fail.
                match self {
                    $(Task::$variant(p) => serde_json::to_string(p).expect("a job payload serialises"),)*
                }
            }

            /// A job row (its kind and payload as stored) as a task.
            pub fn parse(kind: &str, payload: &str) -> Result<Task, BadTask> {
                let k = Kind::parse(kind).ok_or_else(|| BadTask::UnknownKind(kind.to_string()))?;
                Ok(match k {
                    $(Kind::$variant => Task::$variant(payload_of(k, payload)?),)*
                })
            }
        }
    };
}

catalogue! {
    /// A committed webhook body to process (`crate::inbound`). Written by the `inbox_enqueue` trigger.
    InboxProcess(InboxProcess) = "inbox.process", attempts: None, lane: false, ordered: false,
        batch: INBOX_BATCH;
    /// A send to WhatsApp (`crate::outbound`); its lane is the sending phone.
    WaSend(WaSend) = "wa.send", attempts: None, lane: true, ordered: false, batch: 1;
    /// Telling whoever asked for a send what became of it (`crate::crm::report`).
    OutboundReport(OutboundReport) = "outbound.report", attempts: Some(12), lane: false, ordered: false, batch: 1;
    /// Syncing one WABA's templates (`crate::templates`).
    TemplatesSync(TemplatesSync) = "templates.sync", attempts: Some(12), lane: false, ordered: false, batch: 1;
    /// Binding a phone to its portal's contact-centre line (`crate::crm::bind`).
    CrmBind(CrmBind) = "crm.bind", attempts: Some(12), lane: false, ordered: false, batch: 1;
    /// One inbound message into the portal (`crate::crm::deliver`); ordered within the customer's chat.
    CrmDeliver(CrmDeliver) = "crm.deliver", attempts: Some(24), lane: false, ordered: true,
        batch: CRM_DELIVER_BATCH;
    /// An operator's reply in a line (`crate::crm::reply`); ordered within the chat.
    CrmReply(CrmReply) = "crm.reply", attempts: Some(12), lane: false, ordered: true, batch: 1;
    /// Registering or removing a phone as the portal's SMS provider (`crate::crm::sms`).
    SmsRegister(SmsRegister) = "sms.register", attempts: Some(12), lane: false, ordered: false, batch: 1;
    /// One event to one tenant endpoint (`crate::events::deliver`); its retry window, not its attempts, ends it
    /// (the attempts are only a backstop).
    EventDeliver(EventDeliver) = "event.deliver", attempts: Some(100), lane: false, ordered: false, batch: 1;
    /// Hourly: refresh the tokens of portals idle for a week, so their refresh token never lapses.
    CrmMaintenance(Empty) = "crm.maintenance", attempts: Some(3), lane: false, ordered: false, batch: 1;
    /// Hourly: prune finished jobs, processed inbox rows and old media; schedule the other hourly work.
    MaintenancePrune(Empty) = "maintenance.prune", attempts: None, lane: false, ordered: false, batch: 1;
    /// Hourly and on demand: ask Meta about one WABA's access token and its phones' health (`crate::health`).
    HealthCheck(HealthCheck) = "health.check", attempts: Some(3), lane: false, ordered: false, batch: 1;
}

/// Webhook bodies processed in one transaction (`crate::inbound::process_batch`): one commit for all.
pub const INBOX_BATCH: usize = 128;

/// CRM deliveries leased at once (`crate::crm::deliver_batch`): grouped by portal line into requests of up to 50.
pub const CRM_DELIVER_BATCH: usize = 500;

impl Kind {
    /// The kind stored as `s` (`None` for a kind this version does not know).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// A dedup or order key of this kind: `<kind>:<rest>`.
    pub fn key(self, rest: impl std::fmt::Display) -> String {
        format!("{}:{rest}", self.as_str())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job row is not a [`Task`]: a permanent error of the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTask {
    #[error("unknown job kind {0:?}")]
    UnknownKind(String),
    #[error("bad {kind} payload at {path}: {error}")]
    Payload { kind: Kind, path: String, error: String },
}

fn payload_of<T: DeserializeOwned>(kind: Kind, payload: &str) -> Result<T, BadTask> {
    let bad = |path: String, error: String| BadTask::Payload { kind, path, error };
    let mut de = serde_json::Deserializer::from_str(payload);
    let value: T =
        serde_path_to_error::deserialize(&mut de).map_err(|e| bad(e.path().to_string(), e.inner().to_string()))?;
    de.end().map_err(|e| bad(".".into(), e.to_string()))?;
    Ok(value)
}

/// The payload of a kind that needs none (`{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxProcess {
    pub inbox_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaSend {
    pub outbound_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReport {
    pub outbound_id: i64,
    /// `accepted`, `failed`, or the status Meta reported (`sent`, `delivered`, `read`, ...; `undelivered` for
    /// Meta's `failed` after it took the message).
    pub event: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplatesSync {
    pub waba_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub waba_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmBind {
    pub phone_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmDeliver {
    pub message_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDeliver {
    pub delivery_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsRegister {
    pub phone_id: i64,
    /// The portal the phone's SMS provider is removed from first (unbound, moved, or the flag cleared).
    #[serde(default)]
    pub remove_from: Option<i64>,
    /// Register it (with the phone's current portal) afterwards.
    #[serde(default)]
    pub register: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_spelled_once_and_parses_back() {
        let mut texts: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), Kind::ALL.len());
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Kind::parse("no.such"), None);
        assert_eq!(Kind::CrmDeliver.key("3:4"), "crm.deliver:3:4");
        // Only sends have a lane; only CRM deliveries and replies are ordered.
        assert_eq!(Kind::ALL.iter().filter(|k| k.laned()).collect::<Vec<_>>(), [&Kind::WaSend]);
        assert_eq!(Kind::ALL.iter().filter(|k| k.ordered()).collect::<Vec<_>>(), [&Kind::CrmDeliver, &Kind::CrmReply]);
    }

    #[test]
    fn tasks_round_trip_through_their_stored_form() {
        let tasks = [
            Task::InboxProcess(InboxProcess { inbox_id: 7 }),
            Task::WaSend(WaSend { outbound_id: 8 }),
            Task::OutboundReport(OutboundReport { outbound_id: 8, event: "failed".into(), reason: Some("x".into()) }),
            Task::TemplatesSync(TemplatesSync { waba_id: 1 }),
            Task::CrmBind(CrmBind { phone_id: 2 }),
            Task::CrmDeliver(CrmDeliver { message_id: 3 }),
            Task::SmsRegister(SmsRegister { phone_id: 2, remove_from: Some(5), register: false }),
            Task::EventDeliver(EventDeliver { delivery_id: 4 }),
            Task::CrmMaintenance(Empty {}),
            Task::MaintenancePrune(Empty {}),
            Task::HealthCheck(HealthCheck { waba_id: 5 }),
        ];
        for t in tasks {
            assert_eq!(Task::parse(t.kind().as_str(), &t.payload()), Ok(t.clone()), "{t:?}");
        }
        assert_eq!(Task::MaintenancePrune(Empty {}).payload(), "{}");
        // What the trigger writes, and what earlier versions wrote with `json!`.
        assert_eq!(
            Task::parse("inbox.process", r#"{"inbox_id":42}"#),
            Ok(Task::InboxProcess(InboxProcess { inbox_id: 42 }))
        );
        assert_eq!(
            Task::parse("sms.register", r#"{"phone_id":2,"register":true,"remove_from":null}"#),
            Ok(Task::SmsRegister(SmsRegister { phone_id: 2, remove_from: None, register: true }))
        );
        assert_eq!(
            Task::parse("outbound.report", r#"{"event":"read","outbound_id":3,"reason":null}"#),
            Ok(Task::OutboundReport(OutboundReport { outbound_id: 3, event: "read".into(), reason: None }))
        );
    }

    #[test]
    fn a_bad_row_names_its_kind_and_the_bad_field() {
        assert_eq!(Task::parse("no.such", "{}"), Err(BadTask::UnknownKind("no.such".into())));
        let e = Task::parse("crm.deliver", r#"{"message_id":"x"}"#).unwrap_err();
        assert!(matches!(&e, BadTask::Payload { kind: Kind::CrmDeliver, path, .. } if path == "message_id"), "{e:?}");
        assert!(e.to_string().starts_with("bad crm.deliver payload at message_id: invalid type"), "{e}");
        let e = Task::parse("inbox.process", "{}").unwrap_err();
        assert!(e.to_string().contains("missing field `inbox_id`"), "{e}");
        let e = Task::parse("crm.reply", r#"{"portal_id":1,"line":"2","im_chat_id":"3","im_message_id":"4","chat_id":"5","user_id":"6","text":"t","files":[{"name":1}]}"#).unwrap_err();
        assert!(e.to_string().starts_with("bad crm.reply payload at files[0].name"), "{e}");
        assert!(Task::parse("wa.send", r#"{"outbound_id":1} x"#).is_err(), "trailing characters");
    }
}
