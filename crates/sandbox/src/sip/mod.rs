//! Meta's side of WhatsApp calls over SIP, and SIPp as the business's PBX: what the SIP edge tests and the demo
//! put around wabridge's SIP edge.
//!
//! - [`caller::MetaCaller`]: Meta's SIP gateway calling a business number over TLS (INVITE with SDP, the digest
//!   answer, ACK and BYE along the route set);
//! - [`sipp::Sipp`]: SIPp playing a UAS scenario as the business's Asterisk;
//! - [`text`] and [`digest`]: this crate's own SIP framing and digest codec (never the product's).

pub mod caller;
pub mod digest;
pub mod sipp;
pub mod text;
