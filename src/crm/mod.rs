//! The CRM side of the bridge (Bitrix24 first): binding a number to a contact-centre line, inbound messages
//! into the line, operator replies out to WhatsApp, delivery marks back, and the CRM's SMS provider.
//! Decisions live in `crate::bridge`; these modules load, call the decision, and store or call the portal.

pub mod bind;
pub mod changes;
pub mod deliver;
pub mod events;
pub mod media;
pub mod reply;
pub mod report;
pub mod sms;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::bitrix::client::{Client as Bitrix, ClientOptions};
use crate::config::Config;
use crate::jobs::{enqueue_on, Engine};
use crate::meta::graph;
use crate::store::phones::{self, ConnectorStatus};
use crate::store::registry::Phone;
use crate::store::{now_ms, Store, StoreError};

pub const BIND: &str = "crm.bind";
pub const DELIVER: &str = "crm.deliver";
pub const REPLY: &str = "crm.reply";
pub const SMS_REGISTER: &str = "sms.register";
/// Hourly: refresh the tokens of portals that have been idle for a week, so their refresh token (180 days per
/// Bitrix24's docs; 28 days in older ones) never lapses.
pub const MAINTENANCE: &str = "crm.maintenance";
const IDLE_MS: i64 = 7 * 86_400_000;

/// What every CRM job needs.
pub struct Bridge {
    pub store: Store,
    pub bitrix: Bitrix,
    pub graph: graph::Client,
    /// The WhatsApp channel of the bridge's numbers (Meta's Cloud API).
    pub channel: crate::channel::meta::MetaCloud,
    pub config: Arc<Config>,
    /// Where the portal and Meta reach us: `public_url`, else the listen address.
    pub public_base: String,
    /// Key of the signed media links.
    pub media_key: [u8; 32],
    pub metrics: Arc<crate::http::metrics::Metrics>,
}

impl Bridge {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        public_base: String,
        metrics: Arc<crate::http::metrics::Metrics>,
    ) -> Arc<Bridge> {
        let bitrix = Bitrix::new(
            store.clone(),
            ClientOptions {
                oauth_url: config.bitrix_oauth_url.clone(),
                client_id: config.bitrix_client_id.clone(),
                client_secret: config.bitrix_client_secret.clone(),
                rate_per_sec: config.bitrix_rate_per_sec,
                burst: config.bitrix_burst,
                ..ClientOptions::default()
            },
        );
        let media_key = store.sealer.derive("media-links");
        Arc::new(Bridge {
            graph: graph::Client::from_config(&config),
            channel: crate::channel::meta::MetaCloud::from_config(&config),
            store,
            bitrix,
            config,
            public_base: public_base.trim_end_matches('/').to_string(),
            media_key,
            metrics,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_base)
    }

    pub fn connector(&self) -> &str {
        &self.config.bitrix_connector_id
    }
}

/// Registers the CRM job kinds.
pub fn register(engine: &mut Engine, bridge: Arc<Bridge>) {
    let b = bridge.clone();
    engine.register(BIND, move |job| bind::run(b.clone(), job));
    let b = bridge.clone();
    engine.register(DELIVER, move |job| deliver::run(b.clone(), job));
    let b = bridge.clone();
    engine.register(REPLY, move |job| reply::run(b.clone(), job));
    let b = bridge.clone();
    engine.register(SMS_REGISTER, move |job| sms::register_job(b.clone(), job));
    let b = bridge.clone();
    engine.register(crate::outbound::REPORT, move |job| report::run(b.clone(), job));
    let b = bridge;
    engine.register(MAINTENANCE, move |_job| {
        let b = b.clone();
        async move { refresh_idle(&b).await }
    });
}

/// Queues this hour's [`MAINTENANCE`] job (once across all processes).
pub async fn schedule_hourly(store: &Store) -> Result<(), StoreError> {
    let key = format!("{MAINTENANCE}:{}", now_ms() / 3_600_000);
    enqueue_on(&store.pool, MAINTENANCE, &json!({}), Some(&key), 3, now_ms()).await?;
    Ok(())
}

async fn refresh_idle(b: &Bridge) -> Result<(), crate::jobs::JobError> {
    let cutoff = now_ms() - IDLE_MS;
    for p in b.store.list_portals().await? {
        if p.active && p.token_expires_at.is_some_and(|t| t < cutoff) {
            match b.bitrix.refresh_tokens(p.id).await {
                Ok(()) => tracing::info!(portal = p.id, "refreshed the tokens of an idle portal"),
                Err(e) => tracing::warn!(portal = p.id, error = %e, "could not refresh an idle portal's tokens"),
            }
        }
    }
    Ok(())
}

/// A non-empty text or a number from a Bitrix24 value (ids come as either), as text.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// After a phone was created or changed through the registry (admin API or CLI): queue what its CRM binding
/// and SMS-provider registration need. Binding is idempotent, so a re-bind simply runs it again.
pub async fn after_phone_change(store: &Store, before: Option<&Phone>, after: &Phone) -> Result<(), StoreError> {
    let now = now_ms();
    let portal_changed = before.map(|b| b.portal_id) != Some(after.portal_id);
    if after.portal_id.is_some() {
        phones::reset_connector(store, after.id, Some(ConnectorStatus::Pending)).await?;
        enqueue_on(&store.pool, BIND, &json!({"phone_id": after.id}), None, 12, now).await?;
    } else if portal_changed {
        phones::reset_connector(store, after.id, None).await?;
    }
    // The SMS provider: registered while the flag is set and a portal is bound; removed otherwise.
    let was = before.is_some_and(|b| b.sms_service && b.portal_id.is_some());
    let is = after.sms_service && after.portal_id.is_some();
    if is || was {
        let remove_from = before.and_then(|b| if portal_changed || !is { b.portal_id } else { None });
        let payload: Value = json!({"phone_id": after.id, "remove_from": remove_from, "register": is});
        if is {
            phones::reset_sms(store, after.id).await?;
        }
        enqueue_on(&store.pool, SMS_REGISTER, &payload, None, 12, now).await?;
    }
    Ok(())
}

/// The connector state shown on a phone.
pub async fn set_connector(
    store: &Store,
    phone_id: i64,
    status: ConnectorStatus,
    error: Option<&str>,
) -> Result<(), StoreError> {
    phones::set_connector(store, phone_id, status, error).await
}
