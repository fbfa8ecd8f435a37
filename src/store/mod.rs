//! The store: one sqlx pool over SQLite (default) or PostgreSQL, with the same schema in both dialects.
//!
//! Queries are written once with `$N` placeholders, which both SQLite and PostgreSQL accept. Booleans are
//! `INTEGER` in SQLite and `BOOLEAN` in PostgreSQL; [`get_bool`] reads either.

pub mod account_events;
pub mod activity;
pub mod apikeys;
pub mod call_permissions;
pub mod calls;
pub mod console;
pub mod contacts;
pub mod crm_chats;
pub mod events;
pub mod health;
pub mod history;
pub mod inbox;
pub mod jobs;
pub mod media;
pub mod messages;
pub mod outbound;
pub mod phones;
pub mod portals;
pub mod registry;
pub mod settings;
pub mod stats;
pub mod templates;
pub mod webhook_errors;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::config::Config;
use crate::seal::{SealError, Sealer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("{0}")]
    Setup(String),
}

#[derive(Clone, Debug)]
pub struct Store {
    /// Only `src/store/` runs SQL on it (and the job engine hands it to `store::jobs` as an executor); tests and
    /// benchmarks that inspect the database read it through [`Store::raw_pool`].
    pub(crate) pool: AnyPool,
    /// SQLite only: a native single-connection pool for the webhook intake's group commits (the `Any` driver
    /// converts and copies every argument once more, which shows at tens of thousands of rows per second).
    pub sqlite_writer: Option<sqlx::SqlitePool>,
    pub backend: Backend,
    pub sealer: Sealer,
    /// SQLite only: the process's writers that write most (the intake's group commits, webhook batches, the job
    /// engine's leases and outcomes, CRM delivery records) take turns here before they take SQLite's write lock,
    /// so they queue in order instead of polling the lock in SQLite's busy handler (which sleeps 1, 2, 5, 10 ms
    /// and more between tries). Taken before a connection is acquired, never while one is held.
    write_gate: Option<Arc<WriteGate>>,
    /// When this process last wrote each app's and phone's webhook time (`activity::touch`), so a busy number
    /// costs a statement about once a [`activity::RESOLUTION_MS`], not per webhook. One entry per registered app
    /// or phone.
    pub(crate) activity_written: Arc<std::sync::Mutex<std::collections::HashMap<(activity::Scope, i64), i64>>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Whether opening the database may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `serve` and `migrate`: a missing SQLite file (in `data_dir`) and a missing key file are created.
    Create,
    /// Registry commands: the database and the master key must exist already; a command run in the wrong
    /// directory is refused, saying where it looked, instead of working on a new, empty database.
    Existing,
}

impl Store {
    /// Opens the database (creating the SQLite file, in `data_dir`, when needed) and the master key.
    pub async fn connect(config: &Config) -> Result<Store, StoreError> {
        Store::connect_with(config, Open::Create).await
    }

    /// Opens the database; with [`Open::Existing`] nothing is created.
    pub async fn connect_with(config: &Config, mode: Open) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        if mode == Open::Existing && !config.is_postgres() {
            let path = sqlite_path(&config.database_url)?;
            if path.as_os_str() != ":memory:" && !path.exists() {
                return Err(StoreError::Setup(format!(
                    "no database at {} (database_url {:?}, working directory {}); run this where the service runs, \
                     or pass --config/--database-url; 'wabridge serve' or 'wabridge migrate' creates it",
                    shown_path(&path),
                    config.database_url,
                    shown_path(Path::new(".")),
                )));
            }
        }
        let (backend, url) = if config.is_postgres() {
            check_postgres(&config.database_url).await?;
            (Backend::Postgres, config.database_url.clone())
        } else {
            (Backend::Sqlite, prepare_sqlite_url(config)?)
        };
        if mode == Open::Existing && config.master_key.is_none() && !config.key_file().exists() {
            return Err(StoreError::Setup(format!(
                "no master key at {} and master_key is not set: the secrets in the database cannot be opened \
                 (pass --config/--data-dir, or set WABRIDGE_MASTER_KEY)",
                shown_path(&config.key_file()),
            )));
        }
        let sealer = match &config.master_key {
            Some(text) => Sealer::from_text(text)?,
            None => Sealer::from_key_file(&config.key_file())?,
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(config.database_max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL with synchronous=FULL: a commit is on disk before we acknowledge anything.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                        // 64 MiB page cache: the hot pages of the inbox and jobs stay in memory.
                        "PRAGMA cache_size = -65536",
                        // Checkpoints run in the background (see `checkpoint`); this is only a backstop, so a
                        // commit on the request path rarely has to copy the WAL into the database.
                        "PRAGMA wal_autocheckpoint = 16384",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        let sqlite_writer = match backend {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                    .map_err(|e| StoreError::Setup(format!("bad SQLite URL: {e}")))?
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .pragma("wal_autocheckpoint", "16384");
                Some(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?)
            }
            Backend::Postgres => None,
        };
        let write_gate = (backend == Backend::Sqlite).then(|| Arc::new(WriteGate::default()));
        let activity_written = Arc::default();
        Ok(Store { pool, sqlite_writer, backend, sealer, write_gate, activity_written })
    }

    /// Applies pending migrations of this backend's dialect.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// SQLite: copies the WAL into the database without blocking writers (PASSIVE). The service calls this
    /// every second so that commits on the request path do not pay for it. PostgreSQL: nothing to do.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The pool itself, for tests and benchmarks that look into the database directly. The product goes through
    /// the functions of `src/store/`.
    #[doc(hidden)]
    pub fn raw_pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        if let Some(w) = &self.sqlite_writer {
            w.close().await;
        }
        self.pool.close().await;
    }

    /// A connection of the pool, for a few statements that need the same connection (e.g. a read and then a
    /// SQLite pragma on the connection that read).
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// concurrent writers wait for each other (busy timeout) instead of failing when a read lock cannot be
    /// upgraded; PostgreSQL's default is right as it is.
    /// A turn at writing (SQLite; `None` on PostgreSQL, which has row locks): hold it over one write statement or
    /// one write transaction, taken before the connection. See `write_gate`.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let g = self.write_gate.as_ref()?;
        // The intake goes first: its commits are what Meta's webhooks wait for (their 200).
        loop {
            let notified = g.intake_done.notified();
            if g.intake_waiting.load(std::sync::atomic::Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        Some(g.lock.clone().lock_owned().await)
    }

    /// [`Store::write_turn`] for the intake's group commits: ahead of every other writer that has not started.
    pub(crate) async fn intake_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let g = self.write_gate.as_ref()?;
        let _waiting = IntakeWaiting::new(g); // counted until the turn comes, or the wait is dropped
        Some(g.lock.clone().lock_owned().await)
    }

    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn seal(&self, field: &'static str, plain: &str) -> String {
        self.sealer.seal(field, plain)
    }

    pub fn open(&self, field: &'static str, sealed: &str) -> Result<String, StoreError> {
        Ok(self.sealer.open(field, sealed)?)
    }

    pub fn open_opt(&self, field: &'static str, sealed: Option<String>) -> Result<Option<String>, StoreError> {
        sealed.map(|s| self.open(field, &s)).transpose()
    }
}

/// See `Store::write_gate`: one turn at a time, the intake's before the others'.
#[derive(Debug, Default)]
struct WriteGate {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Intake commits waiting for a turn: other writers let them go first.
    intake_waiting: std::sync::atomic::AtomicUsize,
    intake_done: tokio::sync::Notify,
}

/// An intake commit waiting for its turn; dropping it (turn taken, or the wait cancelled) lets the others go.
struct IntakeWaiting<'a>(&'a WriteGate);

impl<'a> IntakeWaiting<'a> {
    fn new(g: &'a WriteGate) -> Self {
        g.intake_waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        IntakeWaiting(g)
    }
}

impl Drop for IntakeWaiting<'_> {
    fn drop(&mut self) {
        if self.0.intake_waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.0.intake_done.notify_waiters();
        }
    }
}

/// The file a `sqlite:` URL names.
fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Setup(format!("bad SQLite URL {url:?}: {e}")))?;
    Ok(opts.get_filename().to_path_buf())
}

/// A path as the user should see it: absolute, so a command run in another directory says where it looked.
fn shown_path(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// Lets sqlx create the SQLite file. Its directory is created only when it is `data_dir` (the directory wabridge
/// owns, `./data` by default); a URL into any other missing directory is a typo until shown otherwise.
fn prepare_sqlite_url(config: &Config) -> Result<String, StoreError> {
    let url = &config.database_url;
    let path = sqlite_path(url)?;
    if path.as_os_str() != ":memory:" {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                let same = |a: &Path, b: &Path| match (std::path::absolute(a), std::path::absolute(b)) {
                    (Ok(a), Ok(b)) => a.components().eq(b.components()),
                    _ => false,
                };
                if !same(dir, &config.data_dir) {
                    return Err(StoreError::Setup(format!(
                        "the directory of database_url {url:?} does not exist: {}; create it, or correct database_url",
                        shown_path(dir)
                    )));
                }
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", shown_path(dir))))?;
            }
        }
        if !path.exists() {
            tracing::info!(path = %shown_path(&path), "creating a new SQLite database");
        }
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// How long a first connection to PostgreSQL may take before the start is abandoned.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to PostgreSQL before the pool is built, so that a server that is down, a wrong password or a
/// missing database fails at once with the host and the cause (a pool would retry until its timeout and then
/// say only "pool timed out").
async fn check_postgres(url: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let (host, port, database) = match url::Url::parse(url) {
        Ok(u) => (
            u.host_str().unwrap_or("localhost").to_string(),
            u.port().unwrap_or(5432),
            u.path().trim_start_matches('/').to_string(),
        ),
        Err(e) => return Err(StoreError::Setup(format!("database_url is not a valid URL: {e}"))),
    };
    let cause = match tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, sqlx::PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(sqlx::Error::Io(e))) => e.to_string(),
        Ok(Err(sqlx::Error::Database(e))) => e.message().to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", POSTGRES_CONNECT_TIMEOUT.as_secs()),
    };
    Err(StoreError::Setup(format!("cannot connect to PostgreSQL at {host}:{port} (database {database:?}): {cause}")))
}

/// Reads a boolean column from either dialect.
pub fn get_bool(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(col)? != 0),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Unix milliseconds as RFC 3339 (UTC), for API answers.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// True when the error is a unique-constraint violation (either dialect).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

/// `$from, $from+1, ...` for an `IN (...)` list of `n` values bound after `from - 1` others.
pub(crate) fn marks(from: usize, n: usize) -> String {
    (0..n).map(|i| format!("${}", from + i)).collect::<Vec<_>>().join(", ")
}
