//! The `jobs` table (with `lane_claims`, and pruning of the `inbox` rows whose jobs are done): the SQL of the job
//! engine (`crate::jobs`), which decides what to write; these functions only read and write.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use utoipa::ToSchema;

use super::{get_bool, now_ms, rfc3339, Backend, Store, StoreError};

/// A leased job's row: what the engine and handlers know of a job besides its task (`crate::jobs::Task`).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    /// As stored (`Kind::as_str`; a kind this version does not know stays text and dies with a clear error).
    pub kind: String,
    /// As stored: the JSON of its task's payload (`Task::parse`).
    pub payload: String,
    /// Attempts including the current one.
    pub attempts: i64,
    pub max_attempts: i64,
}

/// What a job looks like through the admin API.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    /// `pending`, `running`, `done` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Dead,
}

/// A job to insert (see `crate::jobs::enqueue`).
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub payload: &'a str,
    pub dedup_key: Option<&'a str>,
    /// `None`: NULL, the engine's default applies when it is leased.
    pub max_attempts: Option<i64>,
    pub run_at: i64,
    pub lane: Option<i64>,
    pub order_key: Option<&'a str>,
    pub order_seq: Option<i64>,
}

/// Inserts a job on `conn`; `None` when its dedup key names an existing job.
pub async fn insert_on<'c, E>(conn: E, j: &NewJob<'_>) -> Result<Option<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO jobs (kind, payload, dedup_key, attempts, max_attempts, run_at, created_at, updated_at, lane, \
         order_key, order_seq) VALUES ($1, $2, $3, 0, $4, $5, $6, $6, $7, $8, $9) \
         ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(j.kind)
    .bind(j.payload)
    .bind(j.dedup_key)
    .bind(j.max_attempts)
    .bind(j.run_at)
    .bind(now)
    .bind(j.lane)
    .bind(j.order_key)
    .bind(j.order_seq)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("id")).transpose()?)
}

/// `max_attempts` may be NULL (jobs created by database triggers): the engine's default applies.
const JOB_COLS: &str = "id, kind, payload, attempts, COALESCE(max_attempts, $5) AS max_attempts";

fn job_from(r: &AnyRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
    })
}

/// How a process leases: who it is, until when, and the attempts of a job that has none stored.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub backend: Backend,
    pub owner: &'a str,
    pub until: i64,
    pub default_max_attempts: i64,
}

/// Which due jobs a lease takes: those of one lane, or those of no lane (the generic workers'), optionally of one
/// kind only.
#[derive(Debug, Clone, Copy)]
pub enum Leasing<'a> {
    Lane(i64),
    Generic,
    GenericOfKind(&'a str),
}

/// Leases up to `n` due jobs (`which`), in queue order (`run_at`, then id), counting an attempt of each.
/// Returned by id.
pub async fn lease_on<'c, E>(
    conn: E,
    l: Lease<'_>,
    which: Leasing<'_>,
    n: usize,
    now: i64,
) -> Result<Vec<Job>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let lock = match l.backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // Each condition names its partial index's own condition (SQLite uses a partial index only then).
    let filter = match which {
        Leasing::Generic => "lane IS NULL",
        Leasing::GenericOfKind(_) => "lane IS NULL AND kind = $6",
        Leasing::Lane(_) => "lane = $6 AND lane IS NOT NULL",
    };
    let q = format!(
        "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs WHERE {filter} AND done_at IS NULL AND NOT dead \
                      AND run_at <= $3 AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
                      ORDER BY run_at, id LIMIT $4 {lock}) \
         RETURNING {JOB_COLS}"
    );
    let mut query = sqlx::query(&q).bind(l.owner).bind(l.until).bind(now).bind(n as i64).bind(l.default_max_attempts);
    match which {
        Leasing::Lane(lane) => query = query.bind(lane),
        Leasing::GenericOfKind(kind) => query = query.bind(kind),
        Leasing::Generic => {}
    }
    let rows = query.fetch_all(conn).await?;
    let mut jobs: Vec<Job> = rows.iter().map(job_from).collect::<Result<_, _>>()?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Ends a job `owner` holds: done.
pub async fn finish_on<'c, E>(conn: E, owner: &str, id: i64, now: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query(
        "UPDATE jobs SET done_at = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends many jobs `owner` holds at once: done.
/// Makes due now the jobs waiting behind jobs `ids` in their order (same order key, deferred while an earlier one
/// was on its way), so the next of a customer's messages goes as soon as the one before it is done instead of at
/// the end of its defer.
pub async fn hasten_next_on<'c, E>(conn: E, ids: &[i64], now: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    if ids.is_empty() {
        return Ok(());
    }
    let q = format!(
        "UPDATE jobs SET run_at = $1 WHERE order_key IN (SELECT order_key FROM jobs WHERE id IN ({}) \
         AND order_key IS NOT NULL) AND done_at IS NULL AND NOT dead AND lease_owner IS NULL AND run_at > $1",
        super::marks(2, ids.len())
    );
    let mut query = sqlx::query(&q).bind(now);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

pub async fn finish_many_on<'c, E>(conn: E, owner: &str, ids: &[i64], now: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
    let q = format!(
        "UPDATE jobs SET done_at = $1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
         WHERE lease_owner = $2 AND id IN ({})",
        marks.join(", ")
    );
    let mut query = sqlx::query(&q).bind(now).bind(owner);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Releases a job `owner` holds until `run_at` without counting its attempt, with `message` as its last error.
pub async fn defer_on<'c, E>(
    conn: E,
    owner: &str,
    id: i64,
    run_at: i64,
    message: &str,
    now: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    defer_many_on(conn, owner, &[id], run_at, message, now).await
}

/// [`defer_on`] for many jobs in one statement (all due again at `run_at`, with the same reason).
pub async fn defer_many_on<'c, E>(
    conn: E,
    owner: &str,
    ids: &[i64],
    run_at: i64,
    message: &str,
    now: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    if ids.is_empty() {
        return Ok(());
    }
    let q = format!(
        "UPDATE jobs SET run_at = $2, attempts = attempts - 1, last_error = $3, lease_owner = NULL, \
         lease_expires_at = NULL, updated_at = $4 WHERE lease_owner = $1 AND id IN ({})",
        super::marks(5, ids.len())
    );
    let mut query = sqlx::query(&q).bind(owner).bind(run_at).bind(message).bind(now);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Releases a job `owner` holds after a failed attempt: due again at `run_at`, or dead.
#[allow(clippy::too_many_arguments)]
pub async fn fail_on<'c, E>(
    conn: E,
    owner: &str,
    id: i64,
    dead: bool,
    run_at: i64,
    message: &str,
    now: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query(
        "UPDATE jobs SET dead = $3, run_at = $4, last_error = $5, lease_owner = NULL, \
         lease_expires_at = NULL, updated_at = $6 WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(dead)
    .bind(run_at)
    .bind(message)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes or renews `owner`'s claim on `lane` until `until`. False when another owner holds an unexpired claim.
pub async fn claim_lane_on<'c, E>(conn: E, owner: &str, lane: i64, now: i64, until: i64) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let row = sqlx::query(
        "INSERT INTO lane_claims (lane, owner, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (lane) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE lane_claims.owner = excluded.owner OR lane_claims.expires_at < $4 RETURNING lane",
    )
    .bind(lane)
    .bind(owner)
    .bind(until)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Renews `owner`'s claims on `lanes` until `claim_until`, and the leases of the jobs of those lanes it holds
/// (leased and not yet ended) until `lease_until`. PostgreSQL: rows held by another transaction are skipped, as
/// in [`renew_running_on`] (the send dispatcher renews while its workers record outcomes; waiting there once
/// ended in a deadlock).
pub async fn renew_lanes_on(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    owner: &str,
    lanes: &[i64],
    claim_until: i64,
    lease_until: i64,
) -> Result<(), StoreError> {
    if lanes.is_empty() {
        return Ok(());
    }
    let marks: Vec<String> = (0..lanes.len()).map(|i| format!("${}", i + 3)).collect();
    let marks = marks.join(", ");
    let claims = format!("UPDATE lane_claims SET expires_at = $2 WHERE owner = $1 AND lane IN ({marks})");
    let which = format!("lease_owner = $1 AND done_at IS NULL AND lane IS NOT NULL AND lane IN ({marks})");
    let leases = match backend {
        Backend::Sqlite => format!("UPDATE jobs SET lease_expires_at = $2 WHERE {which}"),
        Backend::Postgres => format!(
            "UPDATE jobs SET lease_expires_at = $2 WHERE id IN \
             (SELECT id FROM jobs WHERE {which} ORDER BY id FOR UPDATE SKIP LOCKED)"
        ),
    };
    for (q, until) in [(claims, claim_until), (leases, lease_until)] {
        let mut query = sqlx::query(&q).bind(owner).bind(until);
        for lane in lanes {
            query = query.bind(*lane);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Extends until `until` the leases of the jobs `owner` holds outside lanes and has not ended: the jobs its
/// workers are running. A handler that takes longer than a lease (a slow portal, a large media download) keeps
/// its job, so no other worker or process runs it a second time meanwhile. Returns how many were extended.
///
/// PostgreSQL: rows another transaction holds (a worker recording its job's outcome) are skipped, not waited
/// for, so a renewal never takes part in a deadlock; a job skipped now is renewed at the next round (every
/// third of a lease), or has ended.
pub async fn renew_running_on<'c, E>(conn: E, backend: Backend, owner: &str, until: i64) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let which = "lease_owner = $1 AND done_at IS NULL AND NOT dead AND lane IS NULL AND lease_expires_at < $2";
    let q = match backend {
        Backend::Sqlite => format!("UPDATE jobs SET lease_expires_at = $2 WHERE {which}"),
        Backend::Postgres => format!(
            "UPDATE jobs SET lease_expires_at = $2 WHERE id IN \
             (SELECT id FROM jobs WHERE {which} ORDER BY id FOR UPDATE SKIP LOCKED)"
        ),
    };
    let done = sqlx::query(&q).bind(owner).bind(until).execute(conn).await?;
    Ok(done.rows_affected())
}

/// Gives up every claim of `owner` as of `until`.
pub async fn release_claims_on<'c, E>(conn: E, owner: &str, until: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query("UPDATE lane_claims SET expires_at = $2 WHERE owner = $1 AND expires_at > $2")
        .bind(owner)
        .bind(until)
        .execute(conn)
        .await?;
    Ok(())
}

/// When the next job of `lane` that nobody holds is due (ms), if any.
pub async fn lane_next_due_on<'c, E>(conn: E, lane: i64) -> Result<Option<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let row = sqlx::query(
        "SELECT MIN(run_at) AS t FROM jobs WHERE lane = $1 AND done_at IS NULL AND NOT dead AND lane IS NOT NULL \
         AND lease_owner IS NULL",
    )
    .bind(lane)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<Option<i64>, _>("t")?)
}

/// [`lane_next_due_on`] of many lanes in one query (by the `jobs_lane_due` index, one range per lane).
pub async fn lanes_next_due_on<'c, E>(conn: E, lanes: &[i64]) -> Result<std::collections::HashMap<i64, i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let mut out = std::collections::HashMap::new();
    if lanes.is_empty() {
        return Ok(out);
    }
    let q = format!(
        "SELECT lane, MIN(run_at) AS t FROM jobs WHERE lane IN ({}) AND done_at IS NULL AND NOT dead \
         AND lane IS NOT NULL AND lease_owner IS NULL GROUP BY lane",
        super::marks(1, lanes.len())
    );
    let mut query = sqlx::query(&q);
    for lane in lanes {
        query = query.bind(*lane);
    }
    for r in query.fetch_all(conn).await? {
        if let Some(t) = r.try_get::<Option<i64>, _>("t")? {
            out.insert(r.try_get("lane")?, t);
        }
    }
    Ok(out)
}

/// Makes the waiting jobs of the lanes of every phone of WABA `waba_id` due now (its sends were paused).
pub async fn make_waba_lanes_due(store: &Store, waba_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET run_at = $2 WHERE lane IN (SELECT id FROM phones WHERE waba_id = $1) AND lane IS NOT NULL \
         AND done_at IS NULL AND NOT dead AND lease_owner IS NULL",
    )
    .bind(waba_id)
    .bind(now_ms())
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// When the next job of no lane that nobody holds is due (ms), if any.
pub async fn next_due(store: &Store) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(run_at) AS t FROM jobs WHERE done_at IS NULL AND NOT dead AND lane IS NULL AND lease_owner IS NULL",
    )
    .fetch_one(&store.pool)
    .await?;
    Ok(row.try_get::<Option<i64>, _>("t")?)
}

/// True while a job before `job_id` in its order (same order key; a lower `order_seq`, or the same and queued
/// earlier) is neither done nor dead (a job without a key has none).
/// [`earlier_in_order`] for many jobs in one query: those of `job_ids` that have one.
pub async fn earlier_in_order_among(
    store: &Store,
    job_ids: &[i64],
) -> Result<std::collections::HashSet<i64>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for ids in job_ids.chunks(500) {
        let q = format!(
            "SELECT me.id FROM jobs me WHERE me.id IN ({}) AND me.order_key IS NOT NULL AND EXISTS (\
             SELECT 1 FROM jobs j WHERE j.order_key = me.order_key \
             AND (COALESCE(j.order_seq, 0) < COALESCE(me.order_seq, 0) \
                  OR (COALESCE(j.order_seq, 0) = COALESCE(me.order_seq, 0) AND j.id < me.id)) \
             AND j.done_at IS NULL AND NOT j.dead)",
            super::marks(1, ids.len())
        );
        let mut query = sqlx::query(&q);
        for id in ids {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&store.pool).await? {
            out.insert(r.try_get("id")?);
        }
    }
    Ok(out)
}

pub async fn earlier_in_order(store: &Store, job_id: i64) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM jobs j JOIN jobs me ON me.id = $1 \
         WHERE me.order_key IS NOT NULL AND j.order_key = me.order_key \
         AND (COALESCE(j.order_seq, 0) < COALESCE(me.order_seq, 0) \
              OR (COALESCE(j.order_seq, 0) = COALESCE(me.order_seq, 0) AND j.id < me.id)) \
         AND j.done_at IS NULL AND NOT j.dead LIMIT 1",
    )
    .bind(job_id)
    .fetch_optional(&store.pool)
    .await?;
    Ok(row.is_some())
}

/// Makes every pending job due now (tests use it to skip backoff waits).
pub async fn make_all_due(store: &Store) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE jobs SET run_at = $1 WHERE done_at IS NULL AND NOT dead AND lease_owner IS NULL")
        .bind(now_ms())
        .execute(&store.pool)
        .await?;
    Ok(done.rows_affected())
}

/// Jobs in `state` (all when `None`), newest first; `default_max_attempts` for those that store none.
pub async fn list(
    store: &Store,
    state: Option<JobState>,
    before: Option<i64>,
    limit: i64,
    default_max_attempts: i64,
) -> Result<Vec<JobView>, StoreError> {
    let filter = match state {
        None => "1 = 1",
        Some(JobState::Dead) => "dead",
        Some(JobState::Done) => "done_at IS NOT NULL",
        Some(JobState::Running) => "done_at IS NULL AND NOT dead AND lease_expires_at >= $2",
        Some(JobState::Pending) => {
            "done_at IS NULL AND NOT dead AND (lease_expires_at IS NULL OR lease_expires_at < $2)"
        }
    };
    let q = format!(
        "SELECT id, kind, attempts, COALESCE(max_attempts, $3) AS max_attempts, run_at, last_error, dead, done_at, lease_expires_at, \
         created_at, updated_at FROM jobs WHERE {filter} AND id < $4 ORDER BY id DESC LIMIT $1"
    );
    let rows = sqlx::query(&q)
        .bind(limit)
        .bind(now_ms())
        .bind(default_max_attempts)
        .bind(before.unwrap_or(i64::MAX))
        .fetch_all(&store.pool)
        .await?;
    let now = now_ms();
    rows.iter()
        .map(|r| {
            let dead = get_bool(r, "dead")?;
            let done: Option<i64> = r.try_get("done_at")?;
            let lease: Option<i64> = r.try_get("lease_expires_at")?;
            let state = if dead {
                "dead"
            } else if done.is_some() {
                "done"
            } else if lease.is_some_and(|l| l >= now) {
                "running"
            } else {
                "pending"
            };
            Ok(JobView {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                state: state.into(),
                attempts: r.try_get("attempts")?,
                max_attempts: r.try_get("max_attempts")?,
                run_at: rfc3339(r.try_get("run_at")?),
                last_error: r.try_get("last_error")?,
                created_at: rfc3339(r.try_get("created_at")?),
                updated_at: rfc3339(r.try_get("updated_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Puts a dead job back in the queue with a fresh attempt budget. False when no dead job has this id.
pub async fn redrive(store: &Store, id: i64) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE jobs SET dead = $2, attempts = 0, run_at = $3, updated_at = $3 WHERE id = $1 AND dead")
            .bind(id)
            .bind(false)
            .bind(now_ms())
            .execute(&store.pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes finished jobs and processed inbox rows older than `retention` (apps that keep raw events keep
/// their inbox rows for `debug_retention`). Dead jobs are kept until someone redrives or removes them.
pub async fn prune(store: &Store, retention: Duration, debug_retention: Duration) -> Result<(u64, u64), StoreError> {
    let now = now_ms();
    let cutoff = now - retention.as_millis() as i64;
    let debug_cutoff = now - debug_retention.as_millis() as i64;
    let inbox = sqlx::query(
        "DELETE FROM inbox WHERE processed_at IS NOT NULL AND ( \
           (processed_at < $1 AND app_id NOT IN (SELECT id FROM meta_apps WHERE keep_raw_events)) \
           OR processed_at < $2)",
    )
    .bind(cutoff)
    .bind(debug_cutoff.min(cutoff))
    .execute(&store.pool)
    .await?
    .rows_affected();
    let jobs = sqlx::query("DELETE FROM jobs WHERE done_at IS NOT NULL AND done_at < $1")
        .bind(cutoff)
        .execute(&store.pool)
        .await?
        .rows_affected();
    Ok((inbox, jobs))
}
