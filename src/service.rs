//! Starting and stopping the whole service: store, migrations, HTTP listener, workers.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::metrics::Metrics;
use crate::http::{router, AppState};
use crate::store::Store;

pub struct Service {
    /// The address the HTTP listener is bound to (useful with port 0).
    pub addr: SocketAddr,
    pub store: Store,
    pub state: AppState,
    /// The admin token when this start created it (first start); print it once.
    pub new_admin_token: Option<String>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Opens the database, applies migrations, ensures an admin token, binds the listener and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Service> {
        let store = Store::connect(&config).await?;
        store.migrate().await?;
        let new_admin_token = crate::admin_token::ensure(&store).await?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = AppState {
            store: store.clone(),
            config: Arc::new(config),
            metrics: Metrics::new(),
        };
        let (shutdown, mut rx) = watch::channel(false);
        let app = router(state.clone());
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%addr, database = %state.config.database_label(), "wabridge is serving");
        Ok(Service {
            addr,
            store,
            state,
            new_admin_token,
            shutdown,
            http,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: no new connections, in-flight requests finish, workers stop leasing.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.http.await??;
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
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
