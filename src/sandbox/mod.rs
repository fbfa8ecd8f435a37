//! Emulators of the peers we cannot reach from tests: Meta's Cloud API (and later Bitrix24).
//! They speak the documented wire formats (`shared/reference/`) exactly.

pub mod bitrix;
pub mod graph;
pub mod meta;
pub mod payloads;
