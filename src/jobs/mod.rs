//! The job engine: one durable queue (the `jobs` table) for every kind of background work.
//!
//! A job is leased by one process at a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
//! writers), run by the handler registered for its kind, then marked done, rescheduled with backoff, or
//! marked dead. A lease that expires (its process died) makes the job due again. Tests call [`Engine::drain`].

pub mod backoff;
pub mod catalogue;
pub mod handlers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Any;
use tokio::sync::{watch, Notify, Semaphore};

pub use self::catalogue::{Kind, Task};
use self::handlers::Handlers;
use crate::metrics::{KindLabels, Metrics};
use crate::store::{self, now_ms, Backend, Store, StoreError};

use crate::store::jobs::Leasing;
pub use crate::store::jobs::{prune, Job, JobState, JobView};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (peer down, rate limited, ...).
    #[error("{message}")]
    Retry { message: String, after: Option<Duration> },
    /// Will never succeed; the job is marked dead at once with this reason.
    #[error("{0}")]
    Permanent(String),
    /// Not now, and not a failure: run again after `after` without counting an attempt (a rate limit we pace
    /// ourselves to, an earlier message to the same customer still in flight, a paused WABA).
    #[error("{message}")]
    Defer { message: String, after: Duration },
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        JobError::Retry { message: message.into(), after: None }
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::retry(e.to_string())
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::retry(format!("database: {e}"))
    }
}

/// A task that ends with its handle, however the owner ends (a worker loop that is itself aborted included).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Engine {
    store: Store,
    owner: String,
    handlers: Option<Arc<Handlers>>,
    lease: Duration,
    default_max_attempts: i64,
    notify: Arc<Notify>,
    metrics: Arc<Metrics>,
    lanes: Vec<Arc<dyn Lane>>,
    /// Webhook batches of this process run one at a time on SQLite (it has one writer, and a later batch that
    /// commits first would hold back the CRM deliveries of the later webhooks until the earlier one is in), two at
    /// a time on PostgreSQL.
    inbox_batches: Arc<Semaphore>,
}

/// A lane: jobs of one kind that carry a `lane` key (a send's phone) and are leased and run by their own
/// dispatcher instead of the generic workers, because running them needs more than one job at a time (pacing a
/// phone's sends to its throughput). The engine's generic workers never lease a job that has a lane; its
/// [`Engine::drain`] drains the lanes too, and [`Engine::run_workers`] runs them.
pub trait Lane: Send + Sync {
    /// New jobs may be due (called by [`Engine::wake`]).
    fn wake(&self);
    /// Runs what is due now until nothing is (tests and tools).
    fn drain(&self) -> Pin<Box<dyn Future<Output = Result<Drained, StoreError>> + Send + '_>>;
    /// Runs until `stop` turns true, then returns its leased jobs to the queue and ends what it started.
    fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Outcome counts of one [`Engine::drain`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub done: usize,
    pub retried: usize,
    pub dead: usize,
    pub deferred: usize,
}

impl Drained {
    pub fn add(&mut self, o: Drained) {
        self.done += o.done;
        self.retried += o.retried;
        self.dead += o.dead;
        self.deferred += o.deferred;
    }

    pub fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Done => self.done += 1,
            Outcome::Retried => self.retried += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::Deferred => self.deferred += 1,
        }
    }
}

impl Engine {
    pub fn new(store: Store, lease: Duration, default_max_attempts: i64, metrics: Arc<Metrics>) -> Self {
        let owner = format!("{}-{}", std::process::id(), crate::seal::random_token(8));
        let inbox_batches = Arc::new(Semaphore::new(match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        }));
        Engine {
            inbox_batches,
            store,
            owner,
            handlers: None,
            lease,
            default_max_attempts,
            notify: Arc::new(Notify::new()),
            metrics,
            lanes: Vec::new(),
        }
    }

    /// Adds a lane (see [`Lane`]).
    pub fn add_lane(&mut self, lane: Arc<dyn Lane>) {
        self.lanes.push(lane);
    }

    /// What wakes the generic workers only (a lane that queued jobs for them).
    pub fn generic_waker(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// How a lane leases its jobs as this engine would.
    pub fn lane_leaser(&self) -> LaneLeaser {
        LaneLeaser {
            backend: self.store.backend,
            owner: self.owner.clone(),
            lease: self.lease,
            default_max_attempts: self.default_max_attempts,
        }
    }

    /// Sets what runs the jobs ([`Handlers`]: every kind's handler). An engine without (tests that only lease)
    /// fails every job it runs.
    pub fn set_handlers(&mut self, handlers: Arc<Handlers>) {
        self.handlers = Some(handlers);
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Wakes the generic workers only (new jobs that no lane runs, e.g. webhook bodies to process): the lanes'
    /// dispatchers, which look at every lane when woken, are left alone.
    pub fn wake_workers(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Wakes this process's workers and lanes (after committing new jobs).
    pub fn wake(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
        for lane in &self.lanes {
            lane.wake();
        }
    }

    /// Adds a job ([`enqueue`]) and wakes the workers.
    pub async fn enqueue(&self, task: &Task, opts: Enqueue<'_>) -> Result<Option<i64>, StoreError> {
        let id = self.store.enqueue(task, opts).await?;
        self.wake();
        Ok(id)
    }

    /// Leases up to `n` due jobs (of no lane) for this process.
    pub async fn lease(&self, n: usize) -> Result<Vec<Job>, StoreError> {
        let _turn = self.store.write_turn().await;
        self.lane_leaser().lease_which(&self.store.pool, Leasing::Generic, n, now_ms()).await
    }

    /// Groups leased jobs into units of work: the jobs of a kind that runs in batches ([`Kind::batch`]) together,
    /// topped up with more due jobs of that kind (up to its batch size); every other job alone. A unit is run by
    /// [`Engine::run_unit`].
    pub async fn units(&self, jobs: Vec<Job>) -> Vec<Vec<Job>> {
        let mut units: Vec<Vec<Job>> = Vec::new();
        let mut batches: Vec<(Kind, Vec<Job>)> = Vec::new();
        for job in jobs {
            match Kind::parse(&job.kind).filter(|k| k.batch() > 1) {
                Some(k) => match batches.iter_mut().find(|(kind, _)| *kind == k) {
                    Some((_, b)) => b.push(job),
                    None => batches.push((k, vec![job])),
                },
                None => units.push(vec![job]),
            }
        }
        for (kind, mut batch) in batches {
            let more = kind.batch().saturating_sub(batch.len());
            if more > 0 {
                let leaser = self.lane_leaser();
                let turn = self.store.write_turn().await;
                let leased =
                    leaser.lease_which(&self.store.pool, Leasing::GenericOfKind(kind.as_str()), more, now_ms()).await;
                drop(turn);
                match leased {
                    Ok(jobs) => batch.extend(jobs),
                    Err(e) => tracing::warn!(error = %e, %kind, "could not lease more jobs for a batch"),
                }
            }
            units.push(batch);
        }
        units
    }

    /// Runs a unit of [`Engine::units`]: one job as [`Engine::run`] does, or a batch through its kind's batch
    /// handler ([`Handlers::run_batch`]); jobs the handler leaves to run alone are run one by one.
    pub async fn run_unit(&self, mut unit: Vec<Job>) -> Drained {
        let mut d = Drained::default();
        // A lone job of a batch kind still goes the batch way: its effects and its end in one commit.
        let batchable = unit.first().and_then(|j| Kind::parse(&j.kind)).is_some_and(|k| k.batch() > 1);
        if unit.len() == 1 && !batchable {
            if let Some(job) = unit.pop() {
                d.count(self.run(job).await);
            }
            return d;
        }
        let mut tasks = Vec::with_capacity(unit.len());
        for job in unit {
            match (Task::parse(&job.kind, &job.payload), &self.handlers) {
                (Ok(task), Some(_)) => tasks.push((job, task)),
                _ => d.count(self.run(job).await), // fails the way a single job fails
            }
        }
        let Some(h) = self.handlers.clone() else { return d };
        let _slot = match tasks.first().map(|(_, t)| t.kind()) {
            Some(Kind::InboxProcess) => self.inbox_batches.clone().acquire_owned().await.ok(),
            _ => None,
        };
        let n = tasks.len() as i64;
        self.metrics.jobs_running.inc_by(n);
        let jobs: Vec<Job> = tasks.iter().map(|(j, _)| j.clone()).collect();
        let results = match tokio::spawn(h.run_batch(self.owner.clone(), tasks)).await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_panic() { "the batch handler panicked".to_string() } else { e.to_string() };
                jobs.into_iter().map(|j| (j, Batched::Result(Err(JobError::retry(why.clone()))))).collect()
            }
        };
        self.metrics.jobs_running.dec_by(n);
        let mut done = Vec::new();
        let mut alone = Vec::new();
        // Jobs put off for the same reason and time are released in one statement.
        let mut deferred: Vec<((String, Duration), Vec<Job>)> = Vec::new();
        for (job, r) in results {
            match r {
                Batched::Done => self.count_finished(&job, Outcome::Done, &mut d),
                Batched::Result(Ok(())) => done.push(job),
                Batched::Result(Err(JobError::Defer { message, after })) => {
                    match deferred.iter_mut().find(|(k, _)| k.0 == message && k.1 == after) {
                        Some((_, jobs)) => jobs.push(job),
                        None => deferred.push(((message, after), vec![job])),
                    }
                }
                Batched::Result(Err(e)) => {
                    let o = self.record(&job, Err(e)).await.unwrap_or(Outcome::Retried);
                    self.count_finished(&job, o, &mut d);
                }
                Batched::Alone => alone.push(job),
            }
        }
        if !done.is_empty() {
            let ids: Vec<i64> = done.iter().map(|j| j.id).collect();
            let turn = self.store.write_turn().await;
            let finished = store::jobs::finish_many_on(&self.store.pool, &self.owner, &ids, now_ms()).await;
            drop(turn);
            let o = match finished {
                Ok(()) => Outcome::Done,
                Err(e) => {
                    // The leases will expire and the jobs run again; effects are idempotent.
                    tracing::error!(jobs = ids.len(), error = %e, "could not record a batch's outcome");
                    Outcome::Retried
                }
            };
            for job in &done {
                self.count_finished(job, o, &mut d);
            }
        }
        for ((message, after), jobs) in deferred {
            let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
            let now = now_ms();
            let run_at = now + after.as_millis() as i64;
            let turn = self.store.write_turn().await;
            let put_off =
                store::jobs::defer_many_on(&self.store.pool, &self.owner, &ids, run_at, truncate(&message, 2000), now)
                    .await;
            drop(turn);
            // Unrecorded: the leases expire and the jobs run again.
            let o = match put_off {
                Ok(()) => Outcome::Deferred,
                Err(e) => {
                    tracing::warn!(jobs = ids.len(), error = %e, "could not put off a batch's jobs");
                    Outcome::Retried
                }
            };
            for job in &jobs {
                self.count_finished(job, o, &mut d);
            }
        }
        for job in alone {
            d.count(self.run(job).await);
        }
        d
    }

    fn count_finished(&self, job: &Job, outcome: Outcome, d: &mut Drained) {
        d.count(outcome);
        self.metrics
            .jobs_finished
            .get_or_create(&KindLabels { kind: job.kind.clone(), outcome: outcome.label().into() })
            .inc();
    }

    /// Runs one leased job and records its outcome. Returns the outcome for counting.
    pub async fn run(&self, job: Job) -> Outcome {
        self.metrics.jobs_running.inc();
        let result = match (Task::parse(&job.kind, &job.payload), &self.handlers) {
            (Err(e), _) => Err(JobError::Permanent(e.to_string())),
            (Ok(_), None) => Err(JobError::Permanent("this job engine runs no handlers".into())),
            // Run in its own task so a panicking handler fails only its job.
            (Ok(task), Some(h)) => match tokio::spawn(h.clone().run(job.clone(), task)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(JobError::retry("the handler panicked")),
                Err(e) => Err(JobError::retry(format!("the handler was cancelled: {e}"))),
            },
        };
        self.metrics.jobs_running.dec();
        let outcome = match self.record(&job, result).await {
            Ok(o) => o,
            Err(e) => {
                // The lease will expire and the job will run again; effects are idempotent.
                tracing::error!(job = job.id, kind = %job.kind, error = %e, "could not record job outcome");
                Outcome::Retried
            }
        };
        self.count_finished(&job, outcome, &mut Drained::default());
        outcome
    }

    async fn record(&self, job: &Job, result: Result<(), JobError>) -> Result<Outcome, StoreError> {
        let _turn = self.store.write_turn().await;
        let outcome = record_on(&self.store.pool, &self.owner, job, result, now_ms()).await?;
        // The next in a customer's order goes now rather than at the end of its defer.
        let ordered = Kind::parse(&job.kind).is_some_and(|k| k.ordered());
        if ordered && matches!(outcome, Outcome::Done | Outcome::Dead) {
            store::jobs::hasten_next_on(&self.store.pool, &[job.id], now_ms()).await?;
        }
        Ok(outcome)
    }

    /// Runs every due job until none is due (jobs rescheduled into the future are left). For tests and tools.
    pub async fn drain(&self) -> Result<Drained, StoreError> {
        let mut d = Drained::default();
        loop {
            let jobs = self.lease(64).await?;
            let mut lanes_worked = false;
            for lane in &self.lanes {
                let l = lane.drain().await?;
                lanes_worked |= l.done + l.retried + l.dead + l.deferred > 0;
                d.add(l);
            }
            if jobs.is_empty() && !lanes_worked {
                return Ok(d);
            }
            for unit in self.units(jobs).await {
                d.add(self.run_unit(unit).await);
            }
        }
    }

    /// Makes every pending job due now (tests use it to skip backoff waits).
    pub async fn make_all_due(&self) -> Result<u64, StoreError> {
        store::jobs::make_all_due(&self.store).await
    }

    /// The worker loop: leases due jobs up to `concurrency` at a time until `stop` turns true, then waits
    /// for the jobs it is running to finish. New jobs are leased no later than `poll` after they are due.
    pub async fn run_workers(self: Arc<Self>, concurrency: usize, poll: Duration, mut stop: watch::Receiver<bool>) {
        let lanes: Vec<_> = self.lanes.iter().map(|l| tokio::spawn(l.clone().run(stop.clone()))).collect();
        // The leases of running jobs are renewed every third of a lease, until every worker has finished.
        let renewer = AbortOnDrop({
            let me = self.clone();
            tokio::spawn(async move {
                let every = (me.lease / 3).max(Duration::from_millis(100));
                loop {
                    tokio::time::sleep(every).await;
                    let until = now_ms() + me.lease.as_millis() as i64;
                    if let Err(e) =
                        store::jobs::renew_running_on(&me.store.pool, me.store.backend, &me.owner, until).await
                    {
                        tracing::warn!(error = %e, "could not renew the leases of running jobs");
                    }
                }
            })
        });
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut last_maintenance = 0i64;
        loop {
            if *stop.borrow() {
                break;
            }
            let free = permits.available_permits();
            let mut leased = 0;
            if free > 0 {
                match self.lease(free).await {
                    Ok(jobs) => {
                        leased = jobs.len();
                        // A batch takes one worker, however many jobs it holds.
                        for unit in self.units(jobs).await {
                            let Ok(permit) = permits.clone().acquire_owned().await else { break };
                            let me = self.clone();
                            // An operator's reply queues sends: their lane looks now, not at its next poll.
                            let sends = unit.iter().any(|j| j.kind == Kind::CrmReply.as_str());
                            tokio::spawn(async move {
                                me.run_unit(unit).await;
                                drop(permit);
                                // A free worker, and perhaps new jobs (an inbox batch queues its CRM deliveries):
                                // lease again now rather than at the next poll.
                                match sends {
                                    true => me.wake(),
                                    false => me.notify.notify_one(),
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not lease jobs"),
                }
            }
            if now_ms() - last_maintenance > 60_000 {
                last_maintenance = now_ms();
                if let Err(e) = self.schedule_maintenance().await {
                    tracing::warn!(error = %e, "could not schedule maintenance");
                }
            }
            if leased == free && free > 0 {
                continue; // there may be more due right now
            }
            // Sleep until the next job is due (deferred sends are due within milliseconds), at most `poll`.
            let wait = match self.next_due().await {
                Ok(Some(t)) => Duration::from_millis((t - now_ms()).clamp(0, poll.as_millis() as i64) as u64),
                _ => poll,
            };
            if wait.is_zero() && free == 0 {
                // Everything is busy: wait for a worker to finish (it wakes the loop) or another wake-up.
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        // Stop leasing; let running jobs finish.
        let _ = permits.acquire_many(concurrency as u32).await;
        drop(renewer);
        for lane in lanes {
            let _ = lane.await;
        }
    }

    /// When the next unleased job is due (ms), if any.
    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        store::jobs::next_due(&self.store).await
    }

    /// Periodic work is jobs too: one `maintenance.prune` per hour across all processes (dedup key).
    async fn schedule_maintenance(&self) -> Result<(), StoreError> {
        let hour = now_ms() / 3_600_000;
        let key = Kind::MaintenancePrune.key(hour);
        let opts = Enqueue { dedup_key: Some(&key), ..Enqueue::default() };
        self.enqueue(&Task::MaintenancePrune(catalogue::Empty {}), opts).await?;
        Ok(())
    }

    pub async fn list(
        &self,
        state: Option<JobState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<JobView>, StoreError> {
        store::jobs::list(&self.store, state, before, limit, self.default_max_attempts).await
    }

    /// Puts a dead job back in the queue with a fresh attempt budget. False when no dead job has this id.
    pub async fn redrive(&self, id: i64) -> Result<bool, StoreError> {
        let redriven = store::jobs::redrive(&self.store, id).await?;
        self.wake();
        Ok(redriven)
    }
}

/// What a batch handler ([`Handlers::run_batch`]) made of one job of its batch.
#[derive(Debug)]
pub enum Batched {
    /// Done, and recorded as done in the transaction that made its effects (group commit).
    Done,
    /// Its result, for the engine to record.
    Result(Result<(), JobError>),
    /// Not handled in the batch: the engine runs it alone, as any job.
    Alone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retried,
    Dead,
    /// Put off without counting an attempt ([`JobError::Defer`]).
    Deferred,
}

impl Outcome {
    /// The `outcome` label of `wabridge_jobs_finished`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retried => "retried",
            Outcome::Dead => "dead",
            Outcome::Deferred => "deferred",
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Ends jobs `owner` holds as done on `conn` (a batch handler's transaction: its effects and their record commit
/// together).
pub async fn finish_many_on<'c, E>(conn: E, owner: &str, ids: &[i64]) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    store::jobs::finish_many_on(conn, owner, ids, now_ms()).await
}

/// Records the result of running a leased job on `conn`: done, put off without spending an attempt
/// ([`JobError::Defer`]), retried with backoff, or dead. Only the lease's owner can record.
pub async fn record_on<'c, E>(
    conn: E,
    owner: &str,
    job: &Job,
    result: Result<(), JobError>,
    now: i64,
) -> Result<Outcome, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    match result {
        Ok(()) => {
            store::jobs::finish_on(conn, owner, job.id, now).await?;
            Ok(Outcome::Done)
        }
        Err(JobError::Defer { message, after }) => {
            let run_at = now + after.as_millis() as i64;
            store::jobs::defer_on(conn, owner, job.id, run_at, truncate(&message, 2000), now).await?;
            Ok(Outcome::Deferred)
        }
        Err(err) => {
            let (dead, after) = match &err {
                JobError::Permanent(_) => (true, None),
                JobError::Retry { after, .. } => (job.attempts >= job.max_attempts, *after),
                JobError::Defer { .. } => (false, None),
            };
            let delay = backoff::delay(job.attempts, after, &mut rand::thread_rng());
            let message = err.to_string();
            if dead {
                tracing::warn!(job = job.id, kind = %job.kind, attempts = job.attempts, error = %message, "job is dead");
            } else {
                tracing::info!(job = job.id, kind = %job.kind, attempts = job.attempts, retry_in_ms = delay.as_millis() as u64, error = %message, "job will be retried");
            }
            let run_at = now + delay.as_millis() as i64;
            store::jobs::fail_on(conn, owner, job.id, dead, run_at, truncate(&message, 2000), now).await?;
            Ok(if dead { Outcome::Dead } else { Outcome::Retried })
        }
    }
}

/// A lane renews the leases of the jobs it holds this often (with its claims; see [`LaneLeaser::renew`]). A lane
/// job's lease lasts this much longer than `job_lease_seconds`, so a renewal is never late, however short the
/// lease: a job held in memory is never leased (and sent) a second time while its holder lives.
pub const LANE_RENEW_MS: i64 = 1000;

/// What a lane's dispatcher leases with: this process's lease owner and the engine's settings.
#[derive(Debug, Clone)]
pub struct LaneLeaser {
    pub backend: Backend,
    pub owner: String,
    pub lease: Duration,
    pub default_max_attempts: i64,
}

impl LaneLeaser {
    /// Leases up to `n` due jobs of `lane` (`None`: jobs of no lane, the generic workers'), in queue order
    /// (`run_at`, then id).
    pub async fn lease<'c, E>(&self, conn: E, lane: Option<i64>, n: usize, now: i64) -> Result<Vec<Job>, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        let which = match lane {
            Some(l) => Leasing::Lane(l),
            None => Leasing::Generic,
        };
        self.lease_which(conn, which, n, now).await
    }

    async fn lease_which<'c, E>(&self, conn: E, which: Leasing<'_>, n: usize, now: i64) -> Result<Vec<Job>, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        let lane = match which {
            Leasing::Lane(l) => Some(l),
            _ => None,
        };
        let lease = store::jobs::Lease {
            backend: self.backend,
            owner: &self.owner,
            until: self.lease_until(lane, now),
            default_max_attempts: self.default_max_attempts,
        };
        store::jobs::lease_on(conn, lease, which, n, now).await
    }
}

impl LaneLeaser {
    /// When a lease taken now ends: lane jobs get one renewal period more ([`LANE_RENEW_MS`]).
    fn lease_until(&self, lane: Option<i64>, now: i64) -> i64 {
        now + self.lease.as_millis() as i64 + if lane.is_some() { LANE_RENEW_MS } else { 0 }
    }

    /// Takes or renews this process's claim on `lane` until `until`. False when another process holds an
    /// unexpired claim: only the claim's holder leases the lane's jobs (a lane is paced by one process at a time).
    pub async fn claim<'c, E>(&self, conn: E, lane: i64, now: i64, until: i64) -> Result<bool, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        store::jobs::claim_lane_on(conn, &self.owner, lane, now, until).await
    }

    /// Renews this process's claims on `lanes` until `until`, and the leases of the jobs of those lanes it holds
    /// (leased and not yet ended) as if leased `now`.
    pub async fn renew(
        &self,
        conn: &mut sqlx::AnyConnection,
        lanes: &[i64],
        now: i64,
        until: i64,
    ) -> Result<(), StoreError> {
        store::jobs::renew_lanes_on(conn, self.backend, &self.owner, lanes, until, self.lease_until(Some(0), now)).await
    }

    /// Gives up every claim of this process (it stops) as of `until`: another process may take the lanes then.
    pub async fn release_claims<'c, E>(&self, conn: E, until: i64) -> Result<(), StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        store::jobs::release_claims_on(conn, &self.owner, until).await
    }
}

/// When the next job of a lane that nobody holds is due (ms), if any.
pub async fn lane_next_due<'c, E>(conn: E, lane: i64) -> Result<Option<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    store::jobs::lane_next_due_on(conn, lane).await
}

/// [`lane_next_due`] of many lanes in one query (a lane with nothing due is missing from the map).
pub async fn lanes_next_due<'c, E>(conn: E, lanes: &[i64]) -> Result<std::collections::HashMap<i64, i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    store::jobs::lanes_next_due_on(conn, lanes).await
}

/// How a job is queued, besides its task: all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enqueue<'a> {
    /// A second job with the same key is not added ([`enqueue`] returns `None`).
    pub dedup_key: Option<&'a str>,
    /// When it is due (ms); now when `None`.
    pub run_at: Option<i64>,
    /// Its lane (see [`Lane`]): required for the kinds that are [`Kind::laned`], and only for them.
    pub lane: Option<i64>,
    /// Its place among jobs that take effect in order: only for the kinds that are [`Kind::ordered`].
    pub order: Option<Order<'a>>,
    /// Its attempts; the kind's default ([`Kind::max_attempts`]) when `None`.
    pub max_attempts: Option<i64>,
}

/// Where a job stands among the jobs that must take effect in order: its key (one chat, say) and, when queue
/// order is not the order that counts, its place within the key (`seq`; jobs of one key use it all or none). A
/// job with a key takes effect after every earlier job of its key (see [`earlier_in_order`]): its handler waits
/// while one is neither done nor dead.
#[derive(Debug, Clone, Copy)]
pub struct Order<'a> {
    pub key: &'a str,
    pub seq: Option<i64>,
}

impl Store {
    /// Queues `task` on its own (outside any transaction of the caller); see [`enqueue`]. Workers pick it up at
    /// their next poll (an [`Engine`] at hand wakes them at once: [`Engine::enqueue`]).
    pub async fn enqueue(&self, task: &Task, opts: Enqueue<'_>) -> Result<Option<i64>, StoreError> {
        enqueue(&self.pool, task, opts).await
    }
}

/// Adds a job on an open connection or transaction, so it commits together with the effect that caused it.
/// Returns its id, or `None` when its dedup key named an existing job.
pub async fn enqueue<'c, E>(conn: E, task: &Task, opts: Enqueue<'_>) -> Result<Option<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let kind = task.kind();
    debug_assert_eq!(opts.lane.is_some(), kind.laned(), "{kind}: a lane exactly for the laned kinds");
    debug_assert!(opts.order.is_none() || kind.ordered(), "{kind}: an order key only for the ordered kinds");
    let payload = task.payload();
    let job = store::jobs::NewJob {
        kind: kind.as_str(),
        payload: &payload,
        dedup_key: opts.dedup_key,
        max_attempts: opts.max_attempts.or(kind.max_attempts()),
        run_at: opts.run_at.unwrap_or_else(now_ms),
        lane: opts.lane,
        order_key: opts.order.map(|o| o.key),
        order_seq: opts.order.and_then(|o| o.seq),
    };
    store::jobs::insert_on(conn, &job).await
}

/// True while a job before `job_id` in its order (same order key; a lower `order_seq`, or the same and queued
/// earlier) is neither done nor dead (a job without a key has none). Handlers of ordered kinds defer while it is.
pub async fn earlier_in_order(store: &Store, job_id: i64) -> Result<bool, StoreError> {
    store::jobs::earlier_in_order(store, job_id).await
}

/// [`earlier_in_order`] for many jobs at once: those of `job_ids` that must still wait.
pub async fn earlier_in_order_among(
    store: &Store,
    job_ids: &[i64],
) -> Result<std::collections::HashSet<i64>, StoreError> {
    store::jobs::earlier_in_order_among(store, job_ids).await
}
