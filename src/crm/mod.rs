//! The CRM side of the bridge (Bitrix24 first): binding a number to a contact-centre line, inbound messages
//! into the line, operator replies out to WhatsApp, delivery marks back, and the CRM's SMS provider.
//! Decisions live in `crate::translate`; these modules load, call the decision, and store or call the portal.

pub mod bind;
pub mod bitrix24;
pub mod changes;
pub mod deliver;
pub mod events;
pub mod lines;
pub mod media;
pub mod reply;
pub mod report;
pub mod sms;

use std::sync::Arc;

use serde_json::Value;

use crate::bitrix::client::{Client as Bitrix, ClientOptions};
use crate::config::Config;
use crate::jobs::catalogue::{CrmBind, Empty, SmsRegister};
use crate::jobs::{Enqueue, Kind, Task};
use crate::meta::graph;
use crate::store::phones::{self, ConnectorStatus};
use crate::store::registry::Phone;
use crate::store::{now_ms, Store, StoreError};

/// How long a portal may be idle before `crm.maintenance` refreshes its tokens, so its refresh token (180 days per
/// Bitrix24's docs; 28 days in older ones) never lapses.
const IDLE_MS: i64 = 7 * 86_400_000;

/// What every CRM job needs.
pub struct Bridge {
    pub store: Store,
    /// Bitrix24's REST client, for setting lines up, the SMS provider and the portals' tokens.
    pub bitrix: Bitrix,
    /// The CRM seam (`lines.rs`): the customers' chats on the lines. Bitrix24's open lines today.
    pub lines: bitrix24::Bitrix24Lines,
    pub graph: graph::Client,
    /// The WhatsApp channel of the bridge's numbers (Meta's Cloud API).
    pub channel: crate::channel::meta::MetaCloud,
    pub config: Arc<Config>,
    /// Where the portal and Meta reach us: `public_url`, else the listen address.
    pub public_base: String,
    /// Key of the signed media links.
    pub media_key: [u8; 32],
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Bridge {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        public_base: String,
        metrics: Arc<crate::metrics::Metrics>,
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
        let lines = bitrix24::Bitrix24Lines { client: bitrix.clone(), connector: config.bitrix_connector_id.clone() };
        Arc::new(Bridge {
            lines,
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

/// Queues this hour's `crm.maintenance` job (once across all processes).
pub async fn schedule_hourly(store: &Store) -> Result<(), StoreError> {
    let key = Kind::CrmMaintenance.key(now_ms() / 3_600_000);
    let opts = Enqueue { dedup_key: Some(&key), ..Enqueue::default() };
    store.enqueue(&Task::CrmMaintenance(Empty {}), opts).await?;
    Ok(())
}

/// `crm.maintenance`: refreshes the tokens of portals idle for a week.
pub async fn refresh_idle(b: &Bridge) -> Result<(), crate::jobs::JobError> {
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
        let opts = Enqueue { run_at: Some(now), ..Enqueue::default() };
        store.enqueue(&Task::CrmBind(CrmBind { phone_id: after.id }), opts).await?;
    } else if portal_changed {
        phones::reset_connector(store, after.id, None).await?;
    }
    // The SMS provider: registered while the flag is set and a portal is bound; removed otherwise.
    let was = before.is_some_and(|b| b.sms_service && b.portal_id.is_some());
    let is = after.sms_service && after.portal_id.is_some();
    if is || was {
        let remove_from = before.and_then(|b| if portal_changed || !is { b.portal_id } else { None });
        let task = Task::SmsRegister(SmsRegister { phone_id: after.id, remove_from, register: is });
        if is {
            phones::reset_sms(store, after.id).await?;
        }
        store.enqueue(&task, Enqueue { run_at: Some(now), ..Enqueue::default() }).await?;
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
