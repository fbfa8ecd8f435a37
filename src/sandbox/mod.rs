//! Emulators of the peers we cannot reach from tests: Meta's Cloud API (and later Bitrix24).
//! They speak the documented wire formats (`shared/reference/`) exactly.

pub mod bitrix;
pub mod graph;
pub mod graph_limits;
pub mod graph_media;
pub mod graph_messages;
pub mod graph_templates;
pub mod graph_validate;
pub mod meta;
pub mod payloads;
