//! Benchmark: outbound sending at Meta's limits. Messages are queued first (an `outbound` row plus its `wa.send`
//! job each, committed in batches with the workers off); then the service restarts with its workers on and the
//! one sender drains the queue into the Graph sandbox, which answers 130429 past each number's throughput and
//! counts accepted sends per unix second. Side by side, in the same run: a bare client (reqwest, the same
//! concurrency, no pacing, no database) posting the same bodies straight to the sandbox, as the ceiling.
//!
//! cargo build --release -p wabridge-bench --bin bench_sender
//! target/release/bench_sender [--scenario all|one-fast|one-slow|fifty] [--concurrency 32] [--postgres URL]
//!
//! Scenarios: `one-fast` 1 phone at 1,000/s, 20,000 messages; `one-slow` 1 phone at 80/s, 2,400 messages (30 s);
//! `fifty` 50 phones at 80/s each, 80,000 messages (20 s per phone). The sandbox runs on its own 2-thread
//! runtime, wabridge (and the bare client) on another; both share the machine's cores.
//!
//! Reported per scenario: the drain time, the achieved rate (mean of the whole seconds between the first and
//! the last, both partial and left out), the most sends in one calendar second and in any sliding 1,000 ms (the
//! sandbox's arrival times), seconds above the limit, 130429 refusals, and CPU per message from /proc (threads of
//! wabridge's runtime and its SQLite connections, plus PostgreSQL's processes) beside the bare client's.
//! Diagnostics (not the product's figures): `--sql-profile` times every statement, `--trace-queue` prints the
//! jobs table once a second, `--diagnose-jobs-index` adds a `NOT dead` jobs index (SQLite; redundant since the
//! product's own `jobs_due` index took that form).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, ValueEnum};
use serde_json::json;
use sqlx::Row;
use wabridge::jobs::Kind;
use wabridge::metrics::KindLabels;
use wabridge::outbound::{enqueue_on, NewSend, Origin};
use wabridge::registry::{self, PhoneInput};
use wabridge::{Config, Service};
use wabridge_bench::cpu::{cpu_delta, cpu_snap, loadavg, Cpu};
use wabridge_bench::db::{database_url, drop_pg};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::graph_messages::Progression;

use wabridge_bench::setup::{APP_ID, WABA_ID};
const TOKEN: &str = "EAAGbenchsendertoken0123456789";
const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const GRAPH_VERSION: &str = "v23.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    OneFast,
    OneSlow,
    Fifty,
}

#[derive(Parser, Debug)]
#[command(about = "Outbound sending at Meta's limits: wabridge's sender against the Graph sandbox")]
struct Args {
    /// Which scenario(s) to run.
    #[arg(long, value_enum, default_value_t = Which::All)]
    scenario: Which,
    /// Messages of `one-fast` (1 phone at 1,000/s).
    #[arg(long, default_value_t = 20_000)]
    fast_messages: usize,
    /// Messages of `one-slow` (1 phone at 80/s).
    #[arg(long, default_value_t = 2_400)]
    slow_messages: usize,
    /// Messages of `fifty` (50 phones at 80/s each, queued round-robin).
    #[arg(long, default_value_t = 80_000)]
    fifty_messages: usize,
    /// Phones of `fifty`.
    #[arg(long, default_value_t = 50)]
    fifty_phones: usize,
    /// `worker_concurrency` of the service, and the bare client's number of concurrent requests.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// `database_max_connections` of the service (default: the service's default).
    #[arg(long)]
    db_connections: Option<u32>,
    /// Sends queued per transaction before the clock starts.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Run on PostgreSQL (a fresh database per scenario, dropped at the end) instead of SQLite in a temp dir,
    /// e.g. postgres://postgres@127.0.0.1:5432
    #[arg(long)]
    postgres: Option<String>,
    /// Skip the bare-client ceiling.
    #[arg(long)]
    no_baseline: bool,
    /// Give up draining after this many times the ideal drain time, plus 30 s.
    #[arg(long, default_value_t = 15.0)]
    deadline_factor: f64,
    /// Messages the bare client posts (at least the scenario's count), so its CPU figure is measurable.
    #[arg(long, default_value_t = 20_000)]
    baseline_messages: usize,
    /// Diagnostic: count and time every SQL statement the service runs while draining (sqlx's statement
    /// events; adds some overhead), and print the costliest.
    #[arg(long)]
    sql_profile: bool,
    /// Diagnostic: on SQLite, add an index matching the job engine's `done_at IS NULL AND NOT dead` predicate
    /// before draining, to measure what the lease scan costs. (It found the mismatch fixed in migration 0005;
    /// since then the product's own `jobs_due` index has this form and the flag changes nothing.)
    #[arg(long)]
    diagnose_jobs_index: bool,
    /// Diagnostic: once a second while draining, print the jobs table's state (queued and leased sends and
    /// reports, how overdue the oldest due job is).
    #[arg(long)]
    trace_queue: bool,
}

#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    phones: usize,
    mps: u32,
    messages: usize,
}

fn pnid(i: usize) -> String {
    format!("1065403522{:05}", i + 1)
}

fn number(i: usize) -> String {
    format!("5511930{:06}", i + 1)
}

/// A different customer for every message, so pair pacing never applies.
fn recipient(i: usize) -> String {
    format!("55219{:08}", i + 1)
}

// ---------------------------------------------------------------------------------------------------------------
// Per-second figures from the sandbox.

#[derive(Clone, Debug)]
struct PhoneStats {
    accepted: u64,
    /// Mean of the whole seconds between the first and the last (both partial, left out).
    achieved: f64,
    max_second: u32,
    /// Lowest count among the middle seconds (0 when a middle second had none).
    min_middle: u32,
    /// Seconds with more accepted sends than the limit.
    seconds_over: usize,
    middle_seconds: usize,
    /// Most accepted sends in any sliding 1,000 ms window (arrival times at the sandbox).
    max_sliding: usize,
}

/// `per_second` as the sandbox gives it (only seconds with at least one send), gaps filled with zeros.
fn phone_stats(per_second: &[(u64, u32)], limit: u32) -> PhoneStats {
    let accepted: u64 = per_second.iter().map(|(_, n)| u64::from(*n)).sum();
    let (Some(first), Some(last)) = (per_second.first().map(|x| x.0), per_second.last().map(|x| x.0)) else {
        return PhoneStats {
            accepted,
            achieved: 0.0,
            max_second: 0,
            min_middle: 0,
            seconds_over: 0,
            middle_seconds: 0,
            max_sliding: 0,
        };
    };
    let map: BTreeMap<u64, u32> = per_second.iter().copied().collect();
    let all: Vec<u32> = (first..=last).map(|s| map.get(&s).copied().unwrap_or(0)).collect();
    let middle: &[u32] = if all.len() >= 3 { &all[1..all.len() - 1] } else { &all[..] };
    let achieved = middle.iter().map(|n| f64::from(*n)).sum::<f64>() / middle.len().max(1) as f64;
    PhoneStats {
        accepted,
        achieved,
        max_second: all.iter().copied().max().unwrap_or(0),
        min_middle: middle.iter().copied().min().unwrap_or(0),
        seconds_over: all.iter().filter(|n| **n > limit).count(),
        middle_seconds: if all.len() >= 3 { middle.len() } else { 0 },
        max_sliding: 0,
    }
}

/// Most sends in any window of 1,000 ms: `[t, t + 1000)` for each send time `t`.
fn max_sliding(times: &mut [SystemTime]) -> usize {
    times.sort_unstable();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while secs_between(times[lo], times[hi]) >= 1.0 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// Sum over phones per second.
fn aggregate(per_phone: &[Vec<(u64, u32)>]) -> Vec<(u64, u32)> {
    let mut m: BTreeMap<u64, u32> = BTreeMap::new();
    for p in per_phone {
        for (s, n) in p {
            *m.entry(*s).or_default() += n;
        }
    }
    m.into_iter().collect()
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or_else(|e| -e.duration().as_secs_f64())
}

// ---------------------------------------------------------------------------------------------------------------

struct Runtimes {
    sandbox: tokio::runtime::Runtime,
    service: tokio::runtime::Runtime,
}

fn start_sandbox(rt: &Runtimes, sc: &Scenario, mps: u32) -> anyhow::Result<GraphSandbox> {
    let g = rt.sandbox.block_on(GraphSandbox::start())?;
    g.allow_token(TOKEN, APP_ID);
    g.set_pair_rate(Duration::from_millis(1), 1_000_000);
    for i in 0..sc.phones {
        g.add_number(&pnid(i), &number(i), WABA_ID);
        g.set_throughput(&pnid(i), mps);
        g.set_status_progression(&pnid(i), Progression::Silent);
    }
    Ok(g)
}

fn message_requests(g: &GraphSandbox) -> usize {
    g.requests().iter().filter(|r| r.method.eq_ignore_ascii_case("post") && r.path.ends_with("/messages")).count()
}

#[derive(Debug)]
struct Baseline {
    messages: usize,
    ok: usize,
    errors: usize,
    seconds: f64,
    max_second: u32,
    cpu: Cpu,
}

impl Baseline {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
    /// CPU of the client's runtime per message, ms.
    fn client_ms(&self) -> f64 {
        self.cpu.group("wabridge") * 1000.0 / self.ok.max(1) as f64
    }
}

/// The ceiling: `concurrency` loops posting Graph bodies straight to the sandbox, throughput unlimited.
fn baseline(rt: &Runtimes, sc: &Scenario, concurrency: usize, n: usize) -> anyhow::Result<Baseline> {
    let g = start_sandbox(rt, sc, 1_000_000)?;
    let base = g.base_url();
    let phones = sc.phones;
    let before = cpu_snap();
    let t0 = Instant::now();
    let (ok, errors) = rt.service.block_on(async move {
        let http = reqwest::Client::new();
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (http, next, base) = (http.clone(), next.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut errors) = (0usize, 0usize);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let body = json!({
                        "messaging_product": "whatsapp",
                        "recipient_type": "individual",
                        "to": format!("+{}", recipient(i)),
                        "type": "text",
                        "text": {"body": "bench"},
                        "biz_opaque_callback_data": format!("wb:{}", i + 1),
                    });
                    let url = format!("{base}/{GRAPH_VERSION}/{}/messages", pnid(i % phones));
                    match http.post(&url).bearer_auth(TOKEN).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok += 1;
                        }
                        Ok(r) => {
                            let _ = r.bytes().await;
                            errors += 1;
                        }
                        Err(_) => errors += 1,
                    }
                }
                (ok, errors)
            }));
        }
        let (mut ok, mut errors) = (0, 0);
        for t in tasks {
            let (o, e) = t.await.unwrap_or((0, 1));
            ok += o;
            errors += e;
        }
        (ok, errors)
    });
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_delta(&before, &cpu_snap(), seconds);
    let per_phone: Vec<Vec<(u64, u32)>> = (0..sc.phones).map(|i| g.accepted_per_second(&pnid(i))).collect();
    let max_second = aggregate(&per_phone).iter().map(|x| x.1).max().unwrap_or(0);
    rt.sandbox.block_on(g.stop());
    Ok(Baseline { messages: n, ok, errors, seconds, max_second, cpu })
}

#[derive(Debug)]
struct Run {
    enqueue_seconds: f64,
    accepted: u64,
    failed: i64,
    /// Service start (workers on) → last accepted send.
    drain_seconds: f64,
    /// First accepted send → last.
    span_seconds: f64,
    timed_out: bool,
    per_phone: Vec<PhoneStats>,
    total: PhoneStats,
    /// Accepted sends per second, all phones together, from the first second with one to the last.
    series: Vec<u32>,
    requests: usize,
    attempts: i64,
    error_codes: Vec<(Option<i64>, i64)>,
    jobs: BTreeMap<String, u64>,
    cpu: Cpu,
}

impl Run {
    fn refused(&self) -> usize {
        self.requests.saturating_sub(self.accepted as usize)
    }
    /// CPU of wabridge's runtime and its SQLite threads (and PostgreSQL's processes) per message, ms.
    fn wabridge_ms(&self) -> f64 {
        (self.cpu.group("wabridge") + self.cpu.group("sqlite") + self.cpu.postgres) * 1000.0
            / self.accepted.max(1) as f64
    }
}

fn wabridge(
    rt: &Runtimes,
    a: &Args,
    sc: &Scenario,
    sql: Option<&wabridge_bench::sql_profile::SqlTally>,
) -> anyhow::Result<Run> {
    let g = start_sandbox(rt, sc, sc.mps)?;
    let dir = tempfile::tempdir()?;
    let database_url = rt.service.block_on(database_url(&a.postgres, dir.path(), "bench_sender", sc.name))?;
    let config = |workers: bool| {
        let mut c = Config {
            database_url: database_url.clone(),
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            master_key: Some(MASTER_KEY.into()),
            workers_enabled: workers,
            worker_concurrency: a.concurrency,
            send_concurrency: a.concurrency,
            log: "warn".into(),
            graph_base_url: g.base_url(),
            graph_version: GRAPH_VERSION.into(),
            send_pair_interval_ms: 1,
            send_pair_burst: 1_000_000,
            ..Config::default()
        };
        if let Some(n) = a.db_connections {
            c.database_max_connections = n;
        }
        c
    };

    // 1. Register, and queue every message with the workers off.
    let t_enqueue = Instant::now();
    rt.service.block_on(async {
        let cfg = config(false);
        let max_attempts = cfg.job_max_attempts;
        let svc = Service::start(cfg).await?;
        let waba_id = wabridge_bench::setup::app_and_waba(&svc.store, SECRET, TOKEN).await?;
        if a.diagnose_jobs_index && a.postgres.is_none() {
            sqlx::query(
                "CREATE INDEX IF NOT EXISTS bench_jobs_due ON jobs (run_at) WHERE done_at IS NULL AND NOT dead",
            )
            .execute(svc.store.raw_pool())
            .await?;
        }
        let mut phone_ids = Vec::new();
        for i in 0..sc.phones {
            let p = registry::create_phone(
                &svc.store,
                &PhoneInput {
                    number: Some(format!("+{}", number(i))),
                    phone_number_id: Some(pnid(i)),
                    waba: Some(waba_id),
                    throughput_mps: Some(i64::from(sc.mps)),
                    ..Default::default()
                },
            )
            .await?;
            phone_ids.push(p.id);
        }
        let request = json!({"type": "text", "text": {"body": "bench"}});
        let mut i = 0;
        while i < sc.messages {
            let mut tx = svc.store.begin_write().await?;
            for j in i..(i + a.batch.max(1)).min(sc.messages) {
                let send = NewSend {
                    phone_id: phone_ids[j % sc.phones],
                    recipient: recipient(j),
                    origin: Origin::Api,
                    origin_ref: json!({}),
                    request: request.clone(),
                    idempotency_key: None,
                    api_key_id: None,
                };
                enqueue_on(&mut tx, &send, max_attempts).await?;
            }
            tx.commit().await?;
            i += a.batch.max(1);
        }
        svc.stop().await?;
        anyhow::Ok(())
    })?;
    let enqueue_seconds = t_enqueue.elapsed().as_secs_f64();

    // 2. The clock starts: the service with its workers on drains the queue.
    let ideal = sc.messages as f64 / (sc.phones as f64 * f64::from(sc.mps));
    let deadline = Duration::from_secs_f64(ideal * a.deadline_factor + 30.0);
    if let Some(t) = sql {
        t.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    let before = cpu_snap();
    let wall0 = SystemTime::now();
    let t0 = Instant::now();
    let svc = rt.service.block_on(Service::start(config(true)))?;
    let mut timed_out = false;
    let mut failed = 0i64;
    let mut last_check = Instant::now();
    let mut last_trace = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let accepted: u64 =
            (0..sc.phones).map(|i| g.accepted_per_second(&pnid(i)).iter().map(|x| u64::from(x.1)).sum::<u64>()).sum();
        if a.trace_queue && last_trace.elapsed() >= Duration::from_secs(1) {
            last_trace = Instant::now();
            let line = rt.service.block_on(async {
                let rows = sqlx::query(
                    "SELECT kind, SUM(CASE WHEN lease_owner IS NULL THEN 1 ELSE 0 END) AS waiting, \
                     SUM(CASE WHEN lease_owner IS NULL THEN 0 ELSE 1 END) AS leased, \
                     SUM(CASE WHEN lease_owner IS NULL AND run_at > $1 THEN 1 ELSE 0 END) AS later, \
                     MIN(CASE WHEN lease_owner IS NULL THEN run_at END) AS oldest \
                     FROM jobs WHERE done_at IS NULL AND dead = $2 GROUP BY kind ORDER BY kind",
                )
                .bind(wabridge::store::now_ms())
                .bind(false)
                .fetch_all(svc.store.raw_pool())
                .await?;
                let now = wabridge::store::now_ms();
                let parts = rows
                    .iter()
                    .map(|r| {
                        let oldest: Option<i64> = r.try_get("oldest")?;
                        Ok(format!(
                            "{}: waiting {} (not yet due {}), leased {}, oldest due {} ms ago",
                            r.try_get::<String, _>("kind")?,
                            r.try_get::<i64, _>("waiting")?,
                            r.try_get::<i64, _>("later")?,
                            r.try_get::<i64, _>("leased")?,
                            oldest.map_or(0, |o| now - o)
                        ))
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                anyhow::Ok(parts.join("; "))
            })?;
            println!("    t={:>5.1}s accepted {:>6}  {line}", t0.elapsed().as_secs_f64(), accepted);
        }
        if last_check.elapsed() > Duration::from_secs(2) {
            last_check = Instant::now();
            failed = rt.service.block_on(async {
                let r = sqlx::query("SELECT COUNT(*) FROM outbound WHERE state = 'failed'")
                    .fetch_one(svc.store.raw_pool())
                    .await?;
                anyhow::Ok(r.try_get::<i64, _>(0)?)
            })?;
        }
        if accepted as usize + failed as usize >= sc.messages {
            break;
        }
        if t0.elapsed() > deadline {
            timed_out = true;
            break;
        }
    }
    let cpu = cpu_delta(&before, &cpu_snap(), t0.elapsed().as_secs_f64());
    if let Some(t) = sql {
        wabridge_bench::sql_profile::print(t, sc.messages);
    }

    // 3. What happened.
    let (attempts, failed_rows, error_codes) = rt.service.block_on(async {
        let r = sqlx::query("SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) AS a FROM outbound")
            .fetch_one(svc.store.raw_pool())
            .await?;
        let attempts: i64 = r.try_get("a")?;
        let r =
            sqlx::query("SELECT COUNT(*) FROM outbound WHERE state = 'failed'").fetch_one(svc.store.raw_pool()).await?;
        let failed: i64 = r.try_get(0)?;
        let rows = sqlx::query(
            "SELECT error_code, COUNT(*) AS n FROM outbound WHERE error_text IS NOT NULL GROUP BY error_code",
        )
        .fetch_all(svc.store.raw_pool())
        .await?;
        let codes = rows
            .iter()
            .map(|r| Ok((r.try_get::<Option<i64>, _>("error_code")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        anyhow::Ok((attempts, failed, codes))
    })?;
    failed = failed.max(failed_rows);
    // Stop the workers before reading the sandbox, so no send lands between two of its figures.
    let metrics = svc.state.metrics.clone();
    rt.service.block_on(svc.stop())?;
    let mut jobs = BTreeMap::new();
    for kind in [Kind::WaSend, Kind::OutboundReport] {
        for outcome in ["done", "deferred", "retried", "dead"] {
            let labels = KindLabels { kind: kind.as_str().into(), outcome: outcome.into() };
            let n = metrics.jobs_finished.get_or_create(&labels).get();
            if n > 0 {
                jobs.insert(format!("{kind} {outcome}"), n);
            }
        }
    }
    let sent = g.all_sent();
    let first = sent.iter().map(|m| m.at).min().unwrap_or(wall0);
    let last = sent.iter().map(|m| m.at).max().unwrap_or(wall0);
    let per_phone_raw: Vec<Vec<(u64, u32)>> = (0..sc.phones).map(|i| g.accepted_per_second(&pnid(i))).collect();
    let mut times: HashMap<&str, Vec<SystemTime>> = HashMap::new();
    for m in &sent {
        times.entry(m.phone_number_id.as_str()).or_default().push(m.at);
    }
    let per_phone: Vec<PhoneStats> = per_phone_raw
        .iter()
        .enumerate()
        .map(|(i, p)| PhoneStats {
            max_sliding: times.get_mut(pnid(i).as_str()).map_or(0, |t| max_sliding(t)),
            ..phone_stats(p, sc.mps)
        })
        .collect();
    let agg = aggregate(&per_phone_raw);
    let total = phone_stats(&agg, sc.mps * sc.phones as u32);
    let series: Vec<u32> = match (agg.first(), agg.last()) {
        (Some(f), Some(l)) => {
            let m: BTreeMap<u64, u32> = agg.iter().copied().collect();
            (f.0..=l.0).map(|s| m.get(&s).copied().unwrap_or(0)).collect()
        }
        _ => Vec::new(),
    };
    let requests = message_requests(&g);
    rt.sandbox.block_on(g.stop());
    if let Some(pg) = &a.postgres {
        rt.service.block_on(drop_pg(pg, "bench_sender", sc.name));
    }
    Ok(Run {
        enqueue_seconds,
        accepted: total.accepted,
        failed,
        drain_seconds: secs_between(wall0, last),
        span_seconds: secs_between(first, last),
        timed_out,
        per_phone,
        total,
        series,
        requests,
        attempts,
        error_codes,
        jobs,
        cpu,
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let sql = a.sql_profile.then(wabridge_bench::sql_profile::install);
    let rt = Runtimes {
        sandbox: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandbox")
            .enable_all()
            .build()?,
        service: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wabridge")
            .enable_all()
            .build()?,
    };
    let mut scenarios = Vec::new();
    if matches!(a.scenario, Which::All | Which::OneFast) {
        scenarios.push(Scenario { name: "one-fast", phones: 1, mps: 1000, messages: a.fast_messages });
    }
    if matches!(a.scenario, Which::All | Which::OneSlow) {
        scenarios.push(Scenario { name: "one-slow", phones: 1, mps: 80, messages: a.slow_messages });
    }
    if matches!(a.scenario, Which::All | Which::Fifty) {
        scenarios.push(Scenario { name: "fifty", phones: a.fifty_phones, mps: 80, messages: a.fifty_messages });
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "bench_sender: {} on {}, worker_concurrency {}, database_max_connections {}, batch {}, {} CPUs, load {}",
        scenarios.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        if a.postgres.is_some() { "PostgreSQL" } else { "SQLite" },
        a.concurrency,
        a.db_connections.unwrap_or(Config::default().database_max_connections),
        a.batch,
        cores,
        loadavg()
    );

    if a.diagnose_jobs_index {
        println!("DIAGNOSTIC RUN: an extra index `jobs (run_at) WHERE done_at IS NULL AND NOT dead` is added (SQLite)");
    }
    if a.sql_profile {
        println!("DIAGNOSTIC RUN: every SQL statement is timed through sqlx's statement events (some overhead)");
    }
    let mut results = Vec::new();
    for sc in &scenarios {
        println!();
        println!("== {}: {} phone(s) at {}/s, {} messages", sc.name, sc.phones, sc.mps, sc.messages);
        let base = if a.no_baseline {
            None
        } else {
            let b = baseline(&rt, sc, a.concurrency, a.baseline_messages.max(sc.messages))?;
            println!(
                "  bare client:  {} of {} ok ({} errors) in {:.2} s = {:.0} msg/s, max {} in one second, \
                 client CPU {:.3} ms/msg; load {}",
                b.ok,
                b.messages,
                b.errors,
                b.seconds,
                b.rate(),
                b.max_second,
                b.client_ms(),
                loadavg()
            );
            println!("    {}", b.cpu.describe());
            Some(b)
        };
        let r = wabridge(&rt, &a, sc, sql.as_ref())?;
        println!(
            "  wabridge:     queued in {:.2} s ({:.0} sends/s); {} accepted, {} failed{} in {:.2} s after start \
             (sending {:.2} s); load {}",
            r.enqueue_seconds,
            sc.messages as f64 / r.enqueue_seconds,
            r.accepted,
            r.failed,
            if r.timed_out { " (TIMED OUT)" } else { "" },
            r.drain_seconds,
            r.span_seconds,
            loadavg()
        );
        println!(
            "    all phones: {:.1}/s over {} middle seconds, max {} in a second, min {} (middle)",
            r.total.achieved, r.total.middle_seconds, r.total.max_second, r.total.min_middle
        );
        for (i, p) in r.per_phone.iter().enumerate().take(if sc.phones > 3 { 0 } else { 3 }) {
            println!(
                "    phone {}: {} accepted, {:.1}/s = {} of {} (middle {} s), max {} in a second, min {} (middle), \
                 {} seconds over the limit, max {} in any sliding 1 s",
                pnid(i),
                p.accepted,
                p.achieved,
                pct(p.achieved / f64::from(sc.mps)),
                sc.mps,
                p.middle_seconds,
                p.max_second,
                p.min_middle,
                p.seconds_over,
                p.max_sliding
            );
        }
        if sc.phones > 3 {
            let mut rates: Vec<f64> = r.per_phone.iter().map(|p| p.achieved).collect();
            let med = median(&mut rates);
            println!(
                "    per phone: min {:.1}/s ({}), median {:.1}/s ({}), max {:.1}/s ({}); max in any second {}; \
                 seconds over the limit {}; max in any sliding 1 s {}",
                rates[0],
                pct(rates[0] / f64::from(sc.mps)),
                med,
                pct(med / f64::from(sc.mps)),
                rates[rates.len() - 1],
                pct(rates[rates.len() - 1] / f64::from(sc.mps)),
                r.per_phone.iter().map(|p| p.max_second).max().unwrap_or(0),
                r.per_phone.iter().map(|p| p.seconds_over).sum::<usize>(),
                r.per_phone.iter().map(|p| p.max_sliding).max().unwrap_or(0)
            );
        }
        println!(
            "    Graph /messages requests {}, refused {} (sandbox); outbound attempts {}; error codes seen {:?}",
            r.requests,
            r.refused(),
            r.attempts,
            r.error_codes
        );
        println!("    jobs: {:?}", r.jobs);
        println!(
            "    accepted per second (all phones): {}",
            r.series.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ")
        );
        println!("    wabridge CPU (runtime + sqlite + postgres) {:.3} ms/msg", r.wabridge_ms());
        println!("    {}", r.cpu.describe());
        results.push((sc.clone(), base, r));
    }

    // The report.
    println!();
    println!("| scenario | limit | messages | drained in | achieved (middle s) | of limit | max in a second (calendar / sliding) | min (middle) | seconds over | refused (130429) | wabridge CPU/msg | bare client rate | bare client CPU/msg |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (sc, base, r) in &results {
        let limit = if sc.phones == 1 { format!("{}/s", sc.mps) } else { format!("{} × {}/s", sc.phones, sc.mps) };
        let (achieved, of_limit, max_s, min_s) = if sc.phones == 1 {
            let p = &r.per_phone[0];
            (
                format!("{:.1}/s", p.achieved),
                pct(p.achieved / f64::from(sc.mps)),
                format!("{} / {}", p.max_second, p.max_sliding),
                p.min_middle,
            )
        } else {
            let mut rates: Vec<f64> = r.per_phone.iter().map(|p| p.achieved).collect();
            let med = median(&mut rates);
            (
                format!(
                    "{:.0}/s total; per phone {:.1} / {:.1} / {:.1}",
                    r.total.achieved,
                    rates[0],
                    med,
                    rates[rates.len() - 1]
                ),
                format!(
                    "{} / {} / {}",
                    pct(rates[0] / f64::from(sc.mps)),
                    pct(med / f64::from(sc.mps)),
                    pct(rates[rates.len() - 1] / f64::from(sc.mps))
                ),
                format!(
                    "{} / {}",
                    r.per_phone.iter().map(|p| p.max_second).max().unwrap_or(0),
                    r.per_phone.iter().map(|p| p.max_sliding).max().unwrap_or(0)
                ),
                r.per_phone.iter().map(|p| p.min_middle).min().unwrap_or(0),
            )
        };
        println!(
            "| {} | {} | {} | {:.2} s{} | {} | {} | {} | {} | {} | {} | {:.3} ms | {} | {} |",
            sc.name,
            limit,
            sc.messages,
            r.drain_seconds,
            if r.timed_out { " (timed out)" } else { "" },
            achieved,
            of_limit,
            max_s,
            min_s,
            r.per_phone.iter().map(|p| p.seconds_over).sum::<usize>(),
            r.refused(),
            r.wabridge_ms(),
            base.as_ref().map(|b| format!("{:.0}/s", b.rate())).unwrap_or_else(|| "-".into()),
            base.as_ref().map(|b| format!("{:.3} ms", b.client_ms())).unwrap_or_else(|| "-".into()),
        );
    }
    println!();
    for (sc, _, r) in &results {
        let over = r.per_phone.iter().map(|p| p.seconds_over).sum::<usize>();
        let all = r.accepted as usize == sc.messages && !r.timed_out;
        let verdict = if sc.phones == 1 {
            let ratio = r.per_phone[0].achieved / f64::from(sc.mps);
            let ok = all && ratio >= 0.95 && over == 0;
            format!(
                "{}: achieved {} of {}/s (target ≥ 95%), {} seconds above the limit (target 0), all accepted: {} → {}",
                sc.name,
                pct(ratio),
                sc.mps,
                over,
                all,
                if ok { "PASS" } else { "FAIL" }
            )
        } else {
            let min = r.per_phone.iter().map(|p| p.achieved).fold(f64::INFINITY, f64::min) / f64::from(sc.mps);
            let ok = all && min >= 0.90 && over == 0;
            format!(
                "{}: slowest phone {} of {}/s (target ≥ 90%), {} phone-seconds above the limit (target 0), all \
                 accepted: {} → {}",
                sc.name,
                pct(min),
                sc.mps,
                over,
                all,
                if ok { "PASS" } else { "FAIL" }
            )
        };
        println!("{verdict}");
    }
    Ok(())
}
