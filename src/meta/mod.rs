//! Meta's WhatsApp Cloud API: webhook payloads and signatures, and the Graph API client.

pub mod errors;
pub mod graph;
pub mod health;
pub mod signature;
pub mod webhook;
