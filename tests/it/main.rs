//! The integration tests: one test binary (`cargo test --test it`), one module per area, so the product and its
//! dependencies are linked once rather than once per file. Select an area with its module path, e.g.
//! `scripts/test --test it webhooks::` or `scripts/test --test it sip_edge::`.
//!
//! Every test stands alone: each starts its own service (or `wabridge` process, `CARGO_BIN_EXE_wabridge`) on
//! ports of its own against a database of its own, and none sets environment variables or other process-wide
//! state, so they run in any order and side by side in this one process.

#[macro_use]
mod common;

mod admin_api;
mod bitrix;
mod calling_activation;
mod cli;
mod console;
mod crash;
mod events;
mod health;
mod history;
mod jobs;
mod messages;
mod sandbox_payloads;
mod sending;
mod sighup;
mod sip_edge;
mod webhooks;
