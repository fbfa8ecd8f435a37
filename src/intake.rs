//! Durable intake with group commit: verified webhook bodies are queued to a writer task that commits many
//! requests' inbox rows and processing jobs in one transaction, then answers each request. A request gets
//! its 200 only after the commit that holds its body (SQLite `synchronous=FULL` in WAL mode, or PostgreSQL's
//! default durable commit).

use std::sync::Arc;

use axum::body::Bytes;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::jobs::Engine;
use crate::store::{now_ms, Backend, Store, StoreError};

pub const INBOX_PROCESS: &str = "inbox.process";

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
    pub fn start(store: Store, engine: Arc<Engine>, batch_max: usize, max_attempts: i64) -> Intake {
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
                    let result = commit(&store, &batch, max_attempts).await.map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, requests = batch.len(), "inbox commit failed");
                    } else {
                        engine.wake();
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

/// One transaction: N identical processing jobs, then N inbox rows each pointing at one of them.
/// The job rows are interchangeable, so which inbox row gets which job id does not matter.
async fn commit(store: &Store, batch: &[Pending], max_attempts: i64) -> Result<(), StoreError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let mut job_sql = String::from(
        "INSERT INTO jobs (kind, payload, attempts, max_attempts, run_at, created_at, updated_at) VALUES ",
    );
    for i in 0..batch.len() {
        if i > 0 {
            job_sql.push(',');
        }
        job_sql.push_str("('inbox.process', '{}', 0, $1, $2, $2, $2)");
    }
    job_sql.push_str(" RETURNING id");
    let ids: Vec<i64> = sqlx::query(&job_sql)
        .bind(max_attempts)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<_, _>>()?;
    let mut inbox_sql = String::from("INSERT INTO inbox (job_id, source, app_id, body, received_at) VALUES ");
    for i in 0..batch.len() {
        if i > 0 {
            inbox_sql.push(',');
        }
        let b = 2 + i * 3;
        inbox_sql.push_str(&format!("(${}, 'meta', ${}, ${}, $1)", b, b + 1, b + 2));
    }
    let mut q = sqlx::query(&inbox_sql).bind(now);
    for (p, id) in batch.iter().zip(&ids) {
        q = q.bind(*id).bind(p.app_id).bind(p.body.to_vec());
    }
    q.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
