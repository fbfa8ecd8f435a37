//! Durable intake with group commit: verified webhook bodies are queued to a writer task that commits many
//! requests' inbox rows (and, by trigger, their processing jobs) in one statement, then answers each request. A request gets
//! its 200 only after the commit that holds its body (SQLite `synchronous=FULL` in WAL mode, or PostgreSQL's
//! default durable commit).

use std::sync::Arc;

use axum::body::Bytes;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::jobs::Engine;
use crate::store::{inbox, Backend, Store, StoreError};

struct Pending {
    app_id: i64,
    body: Bytes,
    done: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Pending>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the intake is shutting down")]
    Closed,
    #[error("could not commit: {0}")]
    Commit(String),
}

impl Intake {
    /// Starts the writer tasks: one for SQLite (it has a single writer anyway), several for PostgreSQL.
    pub fn start(store: Store, engine: Arc<Engine>, batch_max: usize) -> Intake {
        let (tx, rx) = mpsc::channel::<Pending>(batch_max * 8);
        let rx = Arc::new(Mutex::new(rx));
        let writers = match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        for _ in 0..writers {
            let (rx, store, engine) = (rx.clone(), store.clone(), engine.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::with_capacity(batch_max);
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(p) => batch.push(p),
                            None => return,
                        }
                        while batch.len() < batch_max {
                            match rx.try_recv() {
                                Ok(p) => batch.push(p),
                                Err(_) => break,
                            }
                        }
                    }
                    let result = commit(&store, &batch).await.map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, requests = batch.len(), "inbox commit failed");
                    } else {
                        engine.wake_workers(); // `inbox.process` jobs: no lane
                    }
                    for p in batch {
                        let _ = p.done.send(result.clone());
                    }
                }
            });
        }
        Intake { tx }
    }

    /// Queues a verified body and waits until it is committed.
    pub async fn submit(&self, app_id: i64, body: Bytes) -> Result<(), IntakeError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Pending { app_id, body, done }).await.map_err(|_| IntakeError::Closed)?;
        wait.await.map_err(|_| IntakeError::Closed)?.map_err(IntakeError::Commit)
    }
}

/// One statement: a multi-row INSERT of the batch's inbox rows. The `inbox_enqueue` trigger adds each row's
/// processing job inside the same statement, so the batch commits atomically in one round trip.
async fn commit(store: &Store, batch: &[Pending]) -> Result<(), StoreError> {
    inbox::insert_batch(store, batch, |p| (p.app_id, &p.body[..])).await
}
