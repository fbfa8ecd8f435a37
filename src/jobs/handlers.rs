//! Every job kind's handler, registered in one place: [`Handlers::run`] matches on the [`Task`] exhaustively, so a
//! kind added to the catalogue without a handler does not compile.

use std::sync::Arc;
use std::time::Duration;

use super::catalogue::Task;
use super::{Batched, Job, JobError};
use crate::config::Config;
use crate::crm::Bridge;
use crate::meta::graph;
use crate::store::Store;

/// What the handlers need: the store, the Graph client, the CRM bridge and the retention settings.
pub struct Handlers {
    store: Store,
    graph: graph::Client,
    bridge: Arc<Bridge>,
    retention: Duration,
    debug_retention: Duration,
    media_retention_days: u64,
    events: crate::events::deliver::Deliverer,
}

impl Handlers {
    pub fn new(store: Store, config: &Config, bridge: Arc<Bridge>) -> Handlers {
        Handlers {
            store,
            graph: graph::Client::from_config(config),
            bridge,
            retention: Duration::from_secs(config.retention_days * 86_400),
            debug_retention: Duration::from_secs(config.debug_retention_days * 86_400),
            media_retention_days: config.media_retention_days,
            events: crate::events::deliver::Deliverer::from_config(config),
        }
    }

    /// Runs a leased job (`job`: its row) whose payload parsed as `task`.
    pub async fn run(self: Arc<Self>, job: Job, task: Task) -> Result<(), JobError> {
        let b = || self.bridge.clone();
        match task {
            Task::InboxProcess(p) => crate::inbound::process_job(self.store.clone(), job, p).await,
            // Sends are leased and run by their lane's dispatcher (`outbound::dispatch`); the generic workers never
            // lease a job with a lane, so this is only a send queued without one.
            Task::WaSend(_) => Err(JobError::Permanent("wa.send jobs run in their phone's send lane only".into())),
            Task::OutboundReport(p) => crate::crm::report::run(b(), job, p).await,
            Task::TemplatesSync(p) => crate::templates::run(self.store.clone(), self.graph.clone(), job, p).await,
            Task::CrmBind(p) => crate::crm::bind::run(b(), job, p).await,
            Task::CrmDeliver(p) => crate::crm::deliver::run(b(), job, p).await,
            Task::CrmReply(p) => crate::crm::reply::run(b(), job, p).await,
            Task::SmsRegister(p) => crate::crm::sms::register_job(b(), job, p).await,
            Task::EventDeliver(p) => self.events.run(&self.store, job, p).await,
            Task::CrmMaintenance(_) => crate::crm::refresh_idle(&self.bridge).await,
            Task::MaintenancePrune(_) => self.prune().await,
            Task::HealthCheck(p) => crate::health::run(&self.store, &self.graph, p).await,
        }
    }

    /// Runs leased jobs of one kind as a batch (`owner`: the lease holder, for handlers that record their jobs
    /// done in their own transaction). Kinds without a batch handler leave every job to run alone.
    pub async fn run_batch(self: Arc<Self>, owner: String, jobs: Vec<(Job, Task)>) -> Vec<(Job, Batched)> {
        let mut inbox = Vec::new();
        let mut deliver = Vec::new();
        let mut alone = Vec::new();
        for (job, task) in jobs {
            match task {
                Task::InboxProcess(p) => inbox.push((job, p)),
                Task::CrmDeliver(p) => deliver.push((job, p)),
                _ => alone.push((job, Batched::Alone)),
            }
        }
        if !inbox.is_empty() {
            alone.extend(crate::inbound::process_batch(&self.store, &owner, inbox).await);
        }
        if !deliver.is_empty() {
            alone.extend(crate::crm::deliver_batch::run_batch(self.bridge.clone(), &owner, deliver).await);
        }
        alone
    }

    async fn prune(&self) -> Result<(), JobError> {
        let s = &self.store;
        let (inbox, jobs) = super::prune(s, self.retention, self.debug_retention).await?;
        let media = crate::crm::media::prune(s, self.media_retention_days).await?;
        let before = crate::store::now_ms() - self.retention.as_millis() as i64;
        let events = crate::store::events::prune(s, before).await?;
        tracing::info!(
            inbox_rows = inbox,
            jobs,
            media,
            events,
            "pruned old inbox rows, finished jobs, media and delivered events"
        );
        crate::templates::schedule_hourly(s).await?;
        crate::crm::schedule_hourly(s).await?;
        crate::health::schedule_hourly(s).await?;
        Ok(())
    }
}
