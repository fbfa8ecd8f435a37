//! Starting and stopping the whole service: store, migrations, job engine, intake, HTTP listener, workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::webhook::AppCache;
use crate::http::{router, AppState};
use crate::intake::Intake;
use crate::jobs::handlers::Handlers;
use crate::jobs::Engine;
use crate::metrics::Metrics;
use crate::store::Store;

pub struct Service {
    /// The address the HTTP listener is bound to (useful with port 0).
    pub addr: SocketAddr,
    pub store: Store,
    pub state: AppState,
    /// The admin token when this start created it (first start); print it once.
    pub new_admin_token: Option<String>,
    /// The SIP edge, when `sip_enabled`.
    pub edge: Option<crate::edge::server::Edge>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    workers: Option<JoinHandle<()>>,
}

/// The job engine with every kind's handler ([`Handlers`]) and the send lane.
pub fn build_engine(store: &Store, config: &Config, metrics: Arc<Metrics>, bridge: Arc<crate::crm::Bridge>) -> Engine {
    let mut engine = Engine::new(
        store.clone(),
        Duration::from_secs(config.job_lease_seconds),
        config.job_max_attempts,
        metrics.clone(),
    );
    engine.set_handlers(Arc::new(Handlers::new(store.clone(), config, bridge)));
    // Sends have their own lane: the dispatcher leases, paces and group-commits them (`outbound::dispatch`).
    let dispatcher = crate::outbound::dispatch::Dispatcher::new(
        store.clone(),
        Arc::new(crate::outbound::sender::Sender::new(config)),
        engine.lane_leaser(),
        engine.generic_waker(),
        metrics,
        config.send_concurrency,
    );
    engine.add_lane(Arc::new(dispatcher));
    engine
}

impl Service {
    /// Opens the database, applies migrations, ensures an admin token, binds the listener and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Service> {
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let store = Store::connect(&config).await?;
        store.migrate().await?;
        let new_admin_token = crate::admin_token::ensure(&store).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        let metrics = Metrics::new();
        let config = Arc::new(config);
        let public_base = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let bridge = crate::crm::Bridge::new(store.clone(), config.clone(), public_base, metrics.clone());
        if !config.bitrix_client_id.is_empty() && config.public_url.is_none() {
            tracing::warn!(
                "bitrix_client_id is set but public_url is not: portals will be given http://{addr}/... as handler \
                 and media URLs; set public_url to the address the portals reach"
            );
        }
        let engine = Arc::new(build_engine(&store, &config, metrics.clone(), bridge.clone()));
        let intake = Intake::start(store.clone(), engine.clone(), config.intake_batch_max);
        let (config_budget, config_wait) = (config.webhook_body_budget_bytes, config.webhook_budget_wait_ms);
        let metrics_budget = metrics.clone();
        let console = Arc::new(crate::http::console::Console::new(&config.trusted_proxies));
        let state = AppState {
            store: store.clone(),
            config,
            metrics,
            engine: engine.clone(),
            intake,
            apps: Arc::new(AppCache::new(store.clone(), 5_000)),
            bridge,
            console,
            webhook_budget: Arc::new(crate::http::webhook::BodyBudget::new(
                config_budget,
                Duration::from_millis(config_wait),
                metrics_budget,
            )),
        };
        let (shutdown, rx) = watch::channel(false);
        let workers = state.config.workers_enabled.then(|| {
            let (engine, rx, n) = (engine.clone(), rx.clone(), state.config.worker_concurrency);
            tokio::spawn(engine.run_workers(n, Duration::from_millis(500), rx))
        });
        if store.backend == crate::store::Backend::Sqlite {
            let (store, mut rx) = (store.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = rx.wait_for(|stop| *stop) => return,
                    }
                    if let Err(e) = store.checkpoint().await {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            });
        }
        let edge = if state.config.sip_enabled {
            Some(crate::edge::server::Edge::start(&state.config, store.clone(), state.metrics.clone()).await?)
        } else {
            None
        };
        let app = router(state.clone());
        let limits = crate::http::server::Limits::from_config(&state.config);
        let http = tokio::spawn(crate::http::server::serve(listener, app, limits, state.metrics.clone(), rx));
        tracing::info!(%addr, database = %state.config.database_label(), "wabridge is serving");
        Ok(Service { addr, store, state, new_admin_token, edge, shutdown, http, workers })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Graceful stop: no new connections, in-flight requests finish, workers stop leasing and finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(edge) = self.edge {
            edge.stop().await;
        }
        self.http.await??;
        if let Some(w) = self.workers {
            w.await?;
        }
        self.store.close().await;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
