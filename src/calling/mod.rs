//! WhatsApp calling: per-phone activation at Meta (Graph `/{phone-number-id}/settings`, SIP mode), with the
//! pure decisions in [`activation`] and the thin I/O around them in [`service`]. The SIP edge itself lives in
//! `src/sip/`. Operator's guide: `docs/calling.md`.

pub mod activation;
pub mod permissions;
pub mod service;

pub use activation::{CallingInput, CallingSettings, Difference};
pub use service::{CallingError, CallingStatus};
