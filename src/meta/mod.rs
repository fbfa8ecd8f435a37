//! Meta's WhatsApp Cloud API: webhook payloads and signatures.

pub mod signature;
pub mod webhook;
