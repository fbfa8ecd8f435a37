//! wabridge: WhatsApp Business into CRM contact centres, the CRM's SMS sends and the office PBX.
//! docs/architecture.md describes the architecture.

pub mod admin_token;
pub mod apikeys;
pub mod bitrix;
pub mod calling;
pub mod channel;
pub mod cli;
pub mod cli_events;
pub mod config;
pub mod crm;
pub mod edge;
pub mod events;
pub mod health;
pub mod history;
pub mod http;
pub mod inbound;
pub mod intake;
pub mod jobs;
pub mod message;
pub mod meta;
pub mod metrics;
pub mod outbound;
pub mod phone;
pub mod registry;
pub mod seal;
pub mod service;
pub mod sip;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod translate;

pub use config::Config;
pub use service::Service;
