//! Benchmark: the inbound pipeline end to end, as a user sees it. The real service runs with the Graph sandbox
//! and Bitrix24 sandboxes (one per portal) bound: phones bound to portals, lines connected. Signed, unique text
//! webhooks are posted at fixed offered rates (and flat out) by a light HTTP/1.1 client, and every message is
//! followed from its webhook's 200 to the moment the emulated portal takes it in `imconnector.send.messages`
//! (the sandbox records a receive time per message). The other direction is measured the same way: an operator's
//! `ONIMCONNECTORMESSAGEADD` (its 200) to the Graph sandbox receiving the `/messages` request.
//!
//! cargo build --release -p wabridge-bench --bin bench_pipeline
//! target/release/bench_pipeline [--db sqlite|postgres|both] [--scenario inbox,portals,numbers] [--quick]
//!
//! Scenarios:
//! - `inbox`: one phone, no CRM bound. The intake alone (workers off) takes a burst of `--burst` webhooks; then
//!   the service restarts with its workers on and processes them (inbox processing without a CRM); then a second
//!   burst is posted with the workers on and the drain time after the last 200 is measured.
//! - `portals`: `--portals` portals × 1 number each. Offered rates `--rates` (0 = flat out, `--flat-messages`
//!   webhooks), each for `--seconds`, then operator replies at `--reverse-rates`.
//! - `numbers`: 1 portal × `--numbers` numbers, `--numbers-messages` webhooks flat out: what one portal's rate
//!   limit lets through (REST calls per second, messages per call), over `--numbers-seconds` at most.
//!
//! Three runtimes share the machine: the service's (threads `wabridge*`), the sandboxes' (`sandbox*`) and the
//! load generator's (`loadgen*`). CPU per message is the service's runtime, its SQLite threads and PostgreSQL's
//! processes, from /proc.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use sqlx::Row;
use wabridge::registry::{self, PhoneInput};
use wabridge::{Config, Service};
use wabridge_bench::cpu::{cpu_delta, cpu_snap, loadavg, Cpu};
use wabridge_bench::db::{database_url, drop_pg};
use wabridge_bench::http1;
use wabridge_sandbox::bitrix::{BitrixOptions, BitrixSandbox, MessageKind};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::graph_messages::Progression;
use wabridge_sandbox::payloads as p;

const BENCH: &str = "bench_pipeline";
use wabridge_bench::setup::{APP_ID, WABA_ID};
const TOKEN: &str = "EAAGbenchpipelinetoken0123456789";
const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const GRAPH_VERSION: &str = "v23.0";
const CLIENT_ID: &str = "local.5f1a0b2c3d4e5f.12345678";
const CLIENT_SECRET: &str = "benchpipelineclientsecret0123456789abcdefghijklmnop";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DbChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Inbox,
    Portals,
    Numbers,
}

#[derive(Parser, Debug)]
#[command(about = "The inbound pipeline end to end: webhook 200 → portal received, operator event → Graph request")]
struct Args {
    /// Which database(s).
    #[arg(long, value_enum, default_value_t = DbChoice::Both)]
    db: DbChoice,
    /// PostgreSQL base URL (a fresh database per scenario, dropped at the end).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Scenarios, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Which::Inbox, Which::Portals, Which::Numbers])]
    scenario: Vec<Which>,
    /// Smaller runs (about a minute per database): rates for 2 s, 5,000-webhook bursts, fewer messages.
    #[arg(long)]
    quick: bool,
    /// Offered webhook rates per second for `portals`, comma-separated; 0 = flat out.
    #[arg(long, value_delimiter = ',', default_values_t = [100u32, 1000, 5000, 0])]
    rates: Vec<u32>,
    /// Seconds of posting per offered rate.
    #[arg(long)]
    seconds: Option<f64>,
    /// Webhooks of a flat-out run of `portals`.
    #[arg(long)]
    flat_messages: Option<usize>,
    /// Webhooks of each burst of `inbox`.
    #[arg(long)]
    burst: Option<usize>,
    /// Portals of `portals` (one number each).
    #[arg(long, default_value_t = 100)]
    portals: usize,
    /// Operator reply rates per second for `portals`, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100u32, 1000])]
    reverse_rates: Vec<u32>,
    /// Numbers of `numbers` (all on one portal).
    #[arg(long, default_value_t = 50)]
    numbers: usize,
    /// Webhooks of `numbers`, posted flat out.
    #[arg(long)]
    numbers_messages: Option<usize>,
    /// How long `numbers` waits for its messages to reach the portal at most.
    #[arg(long)]
    numbers_seconds: Option<f64>,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long a run waits, after its last post, for every message to arrive.
    #[arg(long, default_value_t = 90.0)]
    deadline: f64,
    /// `worker_concurrency` of the service (default: the service's default).
    #[arg(long)]
    worker_concurrency: Option<usize>,
    /// Diagnostic: time every SQL statement (sqlx's own timing) and print, at the end, the statements that took the
    /// most, with how many of each ran per message posted. Slows the run; not for the figures.
    #[arg(long)]
    sql_profile: bool,
}

impl Args {
    fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(if self.quick { 2.0 } else { 5.0 })
    }
    fn flat_messages(&self) -> usize {
        self.flat_messages.unwrap_or(if self.quick { 5_000 } else { 20_000 })
    }
    fn burst(&self) -> usize {
        self.burst.unwrap_or(if self.quick { 5_000 } else { 20_000 })
    }
    fn numbers_messages(&self) -> usize {
        self.numbers_messages.unwrap_or(if self.quick { 1_000 } else { 3_000 })
    }
    fn numbers_seconds(&self) -> f64 {
        self.numbers_seconds.unwrap_or(if self.quick { 20.0 } else { 40.0 })
    }
}

struct Runtimes {
    sandbox: tokio::runtime::Runtime,
    service: tokio::runtime::Runtime,
    load: tokio::runtime::Runtime,
}

fn runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(name).enable_all().build()
}

fn pnid(i: usize) -> String {
    format!("1065403522{:05}", i + 1)
}

fn display(i: usize) -> String {
    format!("5511930{:06}", i + 1)
}

/// Customers are never reused across the whole program run: each message is a new chat.
static NEXT_CUSTOMER: AtomicUsize = AtomicUsize::new(0);

fn customer(n: usize) -> String {
    format!("5521{:09}", n + 1)
}

// ---------------------------------------------------------------------------------------------------------------
// The rig: sandboxes, a database and the service on a fixed port (restarts keep the address the portals know).

#[derive(Debug, Clone)]
struct PhoneSetup {
    portal: Option<usize>,
    line: u64,
}

struct Rig {
    graph: GraphSandbox,
    portals: Vec<Arc<BitrixSandbox>>,
    phones: Vec<PhoneSetup>,
    _dir: tempfile::TempDir,
    dir_path: std::path::PathBuf,
    database_url: String,
    pg: Option<String>,
    run: String,
    port: u16,
    svc: Option<Service>,
    worker_concurrency: Option<usize>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Rig {
    fn config(&self, workers: bool, fast_crm: bool) -> Config {
        let mut c = Config {
            database_url: self.database_url.clone(),
            data_dir: self.dir_path.clone(),
            listen: format!("127.0.0.1:{}", self.port),
            master_key: Some(MASTER_KEY.into()),
            workers_enabled: workers,
            log: "warn".into(),
            graph_base_url: self.graph.base_url(),
            graph_version: GRAPH_VERSION.into(),
            send_pair_interval_ms: 1,
            send_pair_burst: 1_000_000,
            bitrix_oauth_url: self.portals.first().map(|b| b.oauth_url()).unwrap_or_default(),
            bitrix_client_id: CLIENT_ID.into(),
            bitrix_client_secret: Some(CLIENT_SECRET.into()),
            ..Config::default()
        };
        if fast_crm {
            c.bitrix_rate_per_sec = 1_000_000.0;
            c.bitrix_burst = 1_000_000;
        }
        if let Some(n) = self.worker_concurrency {
            c.worker_concurrency = n;
        }
        c
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn start(&mut self, rt: &Runtimes, workers: bool, fast_crm: bool) -> anyhow::Result<()> {
        let config = self.config(workers, fast_crm);
        self.svc = Some(rt.service.block_on(Service::start(config))?);
        Ok(())
    }

    fn stop(&mut self, rt: &Runtimes) -> anyhow::Result<()> {
        if let Some(svc) = self.svc.take() {
            rt.service.block_on(svc.stop())?;
        }
        Ok(())
    }

    fn svc(&self) -> &Service {
        self.svc.as_ref().expect("the service runs")
    }

    fn count(&self, rt: &Runtimes, sql: &str) -> anyhow::Result<i64> {
        let pool = self.svc().store.raw_pool().clone();
        let sql = sql.to_string();
        rt.service.block_on(async move {
            let row = sqlx::query(&sql).fetch_one(&pool).await?;
            anyhow::Ok(row.try_get::<i64, _>(0)?)
        })
    }

    fn received(&self) -> usize {
        self.portals.iter().map(|b| b.chat_message_count()).sum()
    }

    fn finish(mut self, rt: &Runtimes) -> anyhow::Result<()> {
        self.stop(rt)?;
        let Rig { graph, portals, pg, run, .. } = self;
        rt.sandbox.block_on(graph.stop());
        for b in portals {
            if let Ok(b) = Arc::try_unwrap(b) {
                rt.sandbox.block_on(b.stop());
            }
        }
        if let Some(pg) = pg {
            rt.service.block_on(drop_pg(&pg, BENCH, &run));
        }
        Ok(())
    }
}

/// Starts the sandboxes and the service, registers the app, WABA and `phones` numbers, installs `portals`
/// portals and binds phone `i` to portal `bind(i)`; then restarts the service as the run wants it (workers on,
/// Bitrix24's rate limits as configured). Setup runs with the portals' limits lifted, so it takes seconds.
fn setup(
    rt: &Runtimes,
    a: &Args,
    pg: Option<String>,
    run: &str,
    phones: usize,
    portals: usize,
    bind: impl Fn(usize) -> Option<usize>,
) -> anyhow::Result<Rig> {
    let graph = rt.sandbox.block_on(GraphSandbox::start())?;
    graph.allow_token(TOKEN, APP_ID);
    graph.set_pair_rate(Duration::from_millis(1), 1_000_000);
    for i in 0..phones {
        graph.add_number(&pnid(i), &display(i), WABA_ID);
        graph.set_throughput(&pnid(i), 1000);
        graph.set_status_progression(&pnid(i), Progression::Silent);
    }
    let mut sandboxes = Vec::new();
    for k in 0..portals {
        let opts = BitrixOptions {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            member_id: format!("{:032x}", k + 1),
            domain: format!("bench{k}.bitrix24.com"),
            ..BitrixOptions::default()
        };
        let b = rt.sandbox.block_on(BitrixSandbox::start(opts))?;
        b.set_rate_limit(1e9, 1e9);
        sandboxes.push(Arc::new(b));
    }
    let dir = tempfile::tempdir()?;
    let database_url = rt.service.block_on(database_url(&pg, dir.path(), BENCH, run))?;
    let mut rig = Rig {
        graph,
        portals: sandboxes,
        phones: (0..phones).map(|i| PhoneSetup { portal: bind(i), line: 0 }).collect(),
        dir_path: dir.path().to_path_buf(),
        _dir: dir,
        database_url,
        pg,
        run: run.to_string(),
        port: free_port()?,
        svc: None,
        worker_concurrency: a.worker_concurrency,
    };
    rig.start(rt, portals > 0, true)?;
    let token = rig.svc().new_admin_token.clone().ok_or_else(|| anyhow::anyhow!("no admin token on first start"))?;
    let store = rig.svc().store.clone();
    let phone_ids: Vec<i64> = rt.service.block_on(async {
        let waba_id = wabridge_bench::setup::app_and_waba(&store, SECRET, TOKEN).await?;
        let mut ids = Vec::new();
        for i in 0..phones {
            let p = registry::create_phone(
                &store,
                &PhoneInput {
                    number: Some(format!("+{}", display(i))),
                    phone_number_id: Some(pnid(i)),
                    waba: Some(waba_id),
                    throughput_mps: Some(1000),
                    ..Default::default()
                },
            )
            .await?;
            ids.push(p.id);
        }
        anyhow::Ok(ids)
    })?;
    if portals > 0 {
        let install = rig.url("/api/bitrix/install");
        for b in &rig.portals {
            let status = rt.sandbox.block_on(b.install(&install)).map_err(|e| anyhow::anyhow!("install: {e:?}"))?;
            anyhow::ensure!(status == 201, "install answered {status}");
        }
        let api = rig.url("/admin/api/v1");
        let admin = |method: reqwest::Method, path: String, body: Option<Value>| {
            let url = format!("{api}{path}");
            let token = token.clone();
            rt.load.block_on(async move {
                let mut req = reqwest::Client::new().request(method, url).bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let resp = req.send().await?;
                let status = resp.status();
                let v: Value = resp.json().await?;
                anyhow::ensure!(status.is_success(), "admin API {status}: {v}");
                anyhow::Ok(v)
            })
        };
        let list = admin(reqwest::Method::GET, "/portals".into(), None)?;
        let by_member: HashMap<String, i64> = list
            .as_array()
            .map(|a| a.iter().filter_map(|p| Some((p["member_id"].as_str()?.to_string(), p["id"].as_i64()?))).collect())
            .unwrap_or_default();
        for (i, ph) in rig.phones.iter().enumerate() {
            let Some(k) = ph.portal else { continue };
            let member = rig.portals[k].member_id();
            let portal = *by_member.get(&member).ok_or_else(|| anyhow::anyhow!("portal {member} not installed"))?;
            admin(reqwest::Method::PATCH, format!("/phones/{}", phone_ids[i]), Some(json!({"portal": portal})))?;
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        for (i, id) in phone_ids.iter().enumerate() {
            if rig.phones[i].portal.is_none() {
                continue;
            }
            loop {
                let v = admin(reqwest::Method::GET, format!("/phones/{id}"), None)?;
                if v["connector"]["status"] == "ok" {
                    rig.phones[i].line =
                        v["connector"]["line_id"].as_str().and_then(|l| l.parse().ok()).unwrap_or_default();
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "phone {i} not bound: {}", v["connector"]);
                std::thread::sleep(Duration::from_millis(50)); // polling the admin API with a deadline
            }
        }
    }
    rig.stop(rt)?;
    // The portals' real limits from here on, buckets empty (the service's limiter starts empty as well).
    let defaults = Config::default();
    for b in &rig.portals {
        b.set_rate_limit(defaults.bitrix_rate_per_sec, f64::from(defaults.bitrix_burst));
        b.clear_calls();
    }
    Ok(rig)
}

// ---------------------------------------------------------------------------------------------------------------
// Load: signed webhooks, pre-built, posted on keep-alive connections at an offered rate or flat out.

struct Batch {
    requests: Vec<Vec<u8>>,
    wamids: Vec<String>,
    customers: Vec<String>,
    phones: Vec<usize>,
}

fn webhooks(tag: &str, n: usize, phones: usize, port: u16) -> Batch {
    let host = format!("127.0.0.1:{port}");
    let target = format!("/api/waba/?app_id={APP_ID}");
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut b = Batch { requests: Vec::new(), wamids: Vec::new(), customers: Vec::new(), phones: Vec::new() };
    for i in 0..n {
        let phone = i % phones;
        let who = customer(NEXT_CUSTOMER.fetch_add(1, Ordering::Relaxed));
        let wamid = format!("wamid.{tag}.{i}");
        let value = p::messages_value(
            &display(phone),
            &pnid(phone),
            vec![p::contact(&who, "Maria Souza")],
            vec![p::text_message(&who, &wamid, now, &format!("Olá, pedido {i}"))],
        );
        let body = p::to_wire(&p::envelope(WABA_ID, "messages", value));
        let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
        b.requests.push(http1::signed_post(&target, &host, &sig, &body));
        b.wamids.push(wamid);
        b.customers.push(who);
        b.phones.push(phone);
    }
    b
}

struct Posted {
    /// When each webhook's 200 was read (`None`: refused or failed).
    acked: Vec<Option<SystemTime>>,
    started: SystemTime,
    errors: usize,
    /// First post → last 200.
    seconds: f64,
}

impl Posted {
    fn ok(&self) -> usize {
        self.acked.iter().flatten().count()
    }
    fn last_ack(&self) -> SystemTime {
        self.acked.iter().flatten().max().copied().unwrap_or(self.started)
    }
    fn rate(&self) -> f64 {
        self.ok() as f64 / self.seconds.max(1e-9)
    }
}

/// Posts every request, `rate` per second from the start (flat out when `None`) on up to `connections`
/// keep-alive connections; records when each 200 was read.
fn post(rt: &Runtimes, port: u16, requests: Vec<Vec<u8>>, rate: Option<f64>, connections: usize) -> Posted {
    let n = requests.len();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(vec![None; n]));
    let started = SystemTime::now();
    let t0 = Instant::now();
    let errors = rt.load.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections.min(n.max(1)) {
            let (requests, next, acked) = (requests.clone(), next.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut errors = 0usize;
                let mut buf = vec![0u8; 16 * 1024];
                let mut stream = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if let Some(r) = rate {
                        tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / r)).into()).await;
                    }
                    if stream.is_none() {
                        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                stream = Some(s);
                            }
                            Err(_) => {
                                errors += 1;
                                continue;
                            }
                        }
                    }
                    let Some(s) = stream.as_mut() else { continue };
                    match http1::exchange(s, &requests[i], &mut buf).await {
                        Some(200) => {
                            acked.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(SystemTime::now());
                        }
                        Some(_) => errors += 1,
                        None => {
                            errors += 1;
                            stream = None;
                        }
                    }
                }
                errors
            }));
        }
        let mut errors = 0;
        for t in tasks {
            errors += t.await.unwrap_or(1);
        }
        errors
    });
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));
    let mut posted = Posted { acked, started, errors, seconds: 0.0 };
    posted.seconds = secs_between(started, posted.last_ack());
    posted
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or_else(|e| -e.duration().as_secs_f64())
}

/// Polls `done` (every 20 ms) until it holds or `deadline` passes; true when it held.
fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20)); // polling with a deadline
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Figures.

#[derive(Debug, Default, Clone)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1))).copied().unwrap_or(0.0);
    Latency { p50: at(0.50), p99: at(0.99), max: ms.last().copied().unwrap_or(0.0) }
}

#[derive(Debug, Clone)]
struct Figure {
    db: &'static str,
    scenario: String,
    offered: String,
    messages: usize,
    intake: f64,
    /// Messages per second: first post → last arrival (or processed).
    end_to_end: f64,
    /// Last 200 → last arrival.
    drain: f64,
    arrived: usize,
    latency: Option<Latency>,
    cpu_ms: f64,
    note: String,
}

fn print_row(r: &Figure) {
    let lat =
        r.latency.as_ref().map(|l| format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max)).unwrap_or_else(|| "-".into());
    println!(
        "| {} | {} | {} | {} | {:.0}/s | {:.0}/s | {:.2} s | {} | {} | {:.3} ms | {} |",
        r.db, r.scenario, r.offered, r.messages, r.intake, r.end_to_end, r.drain, r.arrived, lat, r.cpu_ms, r.note
    );
}

fn wabridge_cpu(cpu: &Cpu) -> f64 {
    cpu.group("wabridge") + cpu.group("sqlite") + cpu.postgres
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios.

fn scenario_inbox(rt: &Runtimes, a: &Args, db: &'static str, pg: Option<String>) -> anyhow::Result<Vec<Figure>> {
    let mut rows = Vec::new();
    let mut rig = setup(rt, a, pg, "inbox", 1, 0, |_| None)?;
    let n = a.burst();
    let pending = "SELECT COUNT(*) FROM jobs WHERE kind = 'inbox.process' AND done_at IS NULL AND NOT dead";

    // 1. The intake alone: workers off.
    rig.start(rt, false, false)?;
    let batch = webhooks("intake", n, 1, rig.port);
    let before = cpu_snap();
    let posted = post(rt, rig.port, batch.requests, None, a.connections);
    let cpu = cpu_delta(&before, &cpu_snap(), posted.seconds);
    println!(
        "  intake only (workers off): {} of {n} acknowledged in {:.2} s = {:.0}/s, {} errors; CPU {:.3} ms/webhook",
        posted.ok(),
        posted.seconds,
        posted.rate(),
        posted.errors,
        wabridge_cpu(&cpu) * 1000.0 / posted.ok().max(1) as f64
    );
    println!("    {}", cpu.describe());
    rows.push(Figure {
        db,
        scenario: "inbox: intake only (workers off)".into(),
        offered: "flat out".into(),
        messages: n,
        intake: posted.rate(),
        end_to_end: 0.0,
        drain: 0.0,
        arrived: 0,
        latency: None,
        cpu_ms: wabridge_cpu(&cpu) * 1000.0 / posted.ok().max(1) as f64,
        note: format!("{} errors", posted.errors),
    });
    rig.stop(rt)?;

    // 2. Processing alone: the queue the intake left, workers on.
    let before = cpu_snap();
    let t0 = Instant::now();
    rig.start(rt, true, false)?;
    let done =
        wait_until(Duration::from_secs_f64(a.deadline), || rig.count(rt, pending).map(|c| c == 0).unwrap_or(false));
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_delta(&before, &cpu_snap(), secs);
    let processed = rig.count(rt, "SELECT COUNT(*) FROM messages")? as usize;
    println!(
        "  processing only: {processed} messages stored in {secs:.2} s = {:.0}/s{}; CPU {:.3} ms/message",
        processed as f64 / secs,
        if done { "" } else { " (TIMED OUT)" },
        wabridge_cpu(&cpu) * 1000.0 / processed.max(1) as f64
    );
    println!("    {}", cpu.describe());
    rows.push(Figure {
        db,
        scenario: "inbox: processing only (no CRM)".into(),
        offered: format!("queue of {n}"),
        messages: n,
        intake: 0.0,
        end_to_end: processed as f64 / secs,
        drain: secs,
        arrived: processed,
        latency: None,
        cpu_ms: wabridge_cpu(&cpu) * 1000.0 / processed.max(1) as f64,
        note: if done { String::new() } else { "timed out".into() },
    });

    // 3. A burst with the workers on: drain time after the last 200.
    let batch = webhooks("burst", n, 1, rig.port);
    let before = cpu_snap();
    let posted = post(rt, rig.port, batch.requests, None, a.connections);
    let done =
        wait_until(Duration::from_secs_f64(a.deadline), || rig.count(rt, pending).map(|c| c == 0).unwrap_or(false));
    let end = SystemTime::now();
    let wall = secs_between(posted.started, end);
    let cpu = cpu_delta(&before, &cpu_snap(), wall);
    let drain = secs_between(posted.last_ack(), end);
    println!(
        "  burst, workers on: {} acknowledged in {:.2} s ({:.0}/s); all processed {:.2} s after the last 200 \
         ({:.0} messages/s end to end){}; CPU {:.3} ms/message",
        posted.ok(),
        posted.seconds,
        posted.rate(),
        drain,
        posted.ok() as f64 / wall,
        if done { "" } else { " (TIMED OUT)" },
        wabridge_cpu(&cpu) * 1000.0 / posted.ok().max(1) as f64
    );
    println!("    {}", cpu.describe());
    rows.push(Figure {
        db,
        scenario: "inbox: burst, workers on (no CRM)".into(),
        offered: "flat out".into(),
        messages: n,
        intake: posted.rate(),
        end_to_end: posted.ok() as f64 / wall,
        drain,
        arrived: posted.ok(),
        latency: None,
        cpu_ms: wabridge_cpu(&cpu) * 1000.0 / posted.ok().max(1) as f64,
        note: if done { format!("{} errors", posted.errors) } else { "timed out".into() },
    });
    rig.finish(rt)?;
    Ok(rows)
}

/// Posts `batch` at `rate` and follows every message to the portals; one row.
#[allow(clippy::too_many_arguments)]
fn forward_run(
    rt: &Runtimes,
    a: &Args,
    rig: &Rig,
    db: &'static str,
    scenario: &str,
    batch: Batch,
    rate: Option<f64>,
    wait: f64,
) -> (Figure, bool) {
    let n = batch.requests.len();
    let base = rig.received();
    let before = cpu_snap();
    let posted = post(rt, rig.port, batch.requests, rate, a.connections);
    let all = wait_until(Duration::from_secs_f64(wait), || rig.received() >= base + posted.ok());
    let end = SystemTime::now();
    let mut arrived: HashMap<String, SystemTime> = HashMap::new();
    for b in &rig.portals {
        for m in b.chat_messages() {
            if m.kind == MessageKind::Sent {
                if let Some(id) = m.external_message_id {
                    arrived.insert(id, m.at);
                }
            }
        }
    }
    let mut ms = Vec::new();
    let mut last = posted.started;
    for (i, w) in batch.wamids.iter().enumerate() {
        if let (Some(ack), Some(at)) = (posted.acked[i], arrived.get(w)) {
            ms.push(secs_between(ack, *at).max(0.0) * 1000.0);
            last = last.max(*at);
        }
    }
    let got = ms.len();
    let wall = secs_between(posted.started, if all { last } else { end });
    let cpu = cpu_delta(&before, &cpu_snap(), wall);
    let lat = latency(ms);
    let offered = rate.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "flat out".into());
    println!(
        "  {scenario}, offered {offered}: {} of {n} acknowledged in {:.2} s ({:.0}/s), {got} in the portals{}; \
         {:.0} messages/s end to end, last one {:.2} s after the last 200; latency p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms; CPU {:.3} ms/message; load {}",
        posted.ok(),
        posted.seconds,
        posted.rate(),
        if all { "" } else { " (TIMED OUT)" },
        got as f64 / wall.max(1e-9),
        secs_between(posted.last_ack(), last),
        lat.p50,
        lat.p99,
        lat.max,
        wabridge_cpu(&cpu) * 1000.0 / got.max(1) as f64,
        loadavg()
    );
    println!("    {}", cpu.describe());
    let row = Figure {
        db,
        scenario: scenario.into(),
        offered,
        messages: n,
        intake: posted.rate(),
        end_to_end: got as f64 / wall.max(1e-9),
        drain: secs_between(posted.last_ack(), last),
        arrived: got,
        latency: Some(lat),
        cpu_ms: wabridge_cpu(&cpu) * 1000.0 / got.max(1) as f64,
        note: if all { format!("{} errors", posted.errors) } else { "timed out".into() },
    };
    (row, all)
}

fn scenario_portals(rt: &Runtimes, a: &Args, db: &'static str, pg: Option<String>) -> anyhow::Result<Vec<Figure>> {
    let mut rows = Vec::new();
    let k = a.portals;
    let mut rig = setup(rt, a, pg, "portals", k, k, Some)?;
    rig.start(rt, true, false)?;
    let scenario = format!("{k} portals × 1 number");
    let mut customers: Vec<(String, usize)> = Vec::new();
    let mut drained = true;
    for (run, rate) in a.rates.iter().enumerate() {
        let (rate, n) = match rate {
            0 => (None, a.flat_messages()),
            r => (Some(f64::from(*r)), (f64::from(*r) * a.seconds()) as usize),
        };
        if !drained {
            let offered = rate.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "flat out".into());
            println!("  offered {offered}: skipped, the previous run did not drain");
            continue;
        }
        let batch = webhooks(&format!("p{run}"), n, k, rig.port);
        customers.extend(batch.customers.iter().cloned().zip(batch.phones.iter().copied()));
        let (row, all) = forward_run(rt, a, &rig, db, &scenario, batch, rate, a.deadline);
        drained = all;
        rows.push(row);
    }
    // The other direction: an operator answers customers who wrote, one reply each.
    for (run, rate) in a.reverse_rates.iter().enumerate() {
        let n = ((f64::from(*rate) * a.seconds()) as usize).min(customers.len());
        let chosen: Vec<(String, usize)> = customers.drain(..n).collect();
        rows.push(reverse_run(rt, a, &rig, db, &scenario, run, chosen, f64::from(*rate))?);
    }
    rig.finish(rt)?;
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn reverse_run(
    rt: &Runtimes,
    a: &Args,
    rig: &Rig,
    db: &'static str,
    scenario: &str,
    run: usize,
    chosen: Vec<(String, usize)>,
    rate: f64,
) -> anyhow::Result<Figure> {
    let n = chosen.len();
    let base = rig.graph.sent_count();
    let texts: Vec<String> = (0..n).map(|i| format!("reply {run}-{i}")).collect();
    let jobs: Vec<(Arc<BitrixSandbox>, u64, String, String)> = chosen
        .iter()
        .zip(&texts)
        .map(|((who, phone), text)| {
            let ph = &rig.phones[*phone];
            (rig.portals[ph.portal.unwrap_or(0)].clone(), ph.line, who.clone(), text.clone())
        })
        .collect();
    let before = cpu_snap();
    let started = SystemTime::now();
    let t0 = Instant::now();
    let acked: Vec<Option<SystemTime>> = rt.load.block_on(async {
        let jobs = Arc::new(jobs);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..a.connections.min(n.max(1)) {
            let (jobs, next) = (jobs.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() {
                        break;
                    }
                    tokio::time::sleep_until((t0 + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                    let (b, line, who, text) = &jobs[i];
                    let ok = matches!(b.operator_reply(*line, who, text, vec![]).await, Ok(r) if r.status == 200);
                    out.push((i, ok.then(SystemTime::now)));
                }
                out
            }));
        }
        let mut acked = vec![None; jobs.len()];
        for t in tasks {
            for (i, at) in t.await.unwrap_or_default() {
                acked[i] = at;
            }
        }
        acked
    });
    let ok = acked.iter().flatten().count();
    let last_ack = acked.iter().flatten().max().copied().unwrap_or(started);
    let all = wait_until(Duration::from_secs_f64(a.deadline), || rig.graph.sent_count() >= base + ok);
    let end = SystemTime::now();
    let by_text: HashMap<String, SystemTime> = rig
        .graph
        .all_sent()
        .into_iter()
        .filter_map(|m| Some((m.body["text"]["body"].as_str()?.to_string(), m.at)))
        .collect();
    let mut ms = Vec::new();
    let mut last = started;
    for (i, t) in texts.iter().enumerate() {
        if let (Some(ack), Some(at)) = (acked[i], by_text.get(t)) {
            ms.push(secs_between(ack, *at).max(0.0) * 1000.0);
            last = last.max(*at);
        }
    }
    let got = ms.len();
    let wall = secs_between(started, if all { last } else { end });
    let cpu = cpu_delta(&before, &cpu_snap(), wall);
    let lat = latency(ms);
    let intake = ok as f64 / secs_between(started, last_ack).max(1e-9);
    println!(
        "  {scenario}, operator replies offered {rate:.0}/s: {ok} of {n} acknowledged ({intake:.0}/s), {got} sent to \
         Graph{}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; CPU {:.3} ms/reply",
        if all { "" } else { " (TIMED OUT)" },
        lat.p50,
        lat.p99,
        lat.max,
        wabridge_cpu(&cpu) * 1000.0 / got.max(1) as f64
    );
    println!("    {}", cpu.describe());
    Ok(Figure {
        db,
        scenario: format!("{scenario}: operator → Graph"),
        offered: format!("{rate:.0}/s"),
        messages: n,
        intake,
        end_to_end: got as f64 / wall.max(1e-9),
        drain: secs_between(last_ack, last),
        arrived: got,
        latency: Some(lat),
        cpu_ms: wabridge_cpu(&cpu) * 1000.0 / got.max(1) as f64,
        note: if all { String::new() } else { "timed out".into() },
    })
}

fn scenario_numbers(rt: &Runtimes, a: &Args, db: &'static str, pg: Option<String>) -> anyhow::Result<Vec<Figure>> {
    let k = a.numbers;
    let mut rig = setup(rt, a, pg, "numbers", k, 1, |_| Some(0))?;
    rig.start(rt, true, false)?;
    let scenario = format!("1 portal × {k} numbers");
    let batch = webhooks("n", a.numbers_messages(), k, rig.port);
    let (mut row, _) = forward_run(rt, a, &rig, db, &scenario, batch, None, a.numbers_seconds());
    // What the portal's rate limit let through: requests (a `batch` is one request, whatever it carries) and the
    // messages they carried.
    let defaults = Config::default();
    let all = rig.portals[0].calls();
    let requests: Vec<(SystemTime, u16)> = all
        .iter()
        .filter(|c| !c.via_batch && (c.method == "batch" || c.method == "imconnector.send.messages"))
        .map(|c| (c.at, c.http_status))
        .collect();
    let refused = requests.iter().filter(|c| c.1 != 200).count();
    let ok: Vec<SystemTime> = requests.iter().filter(|c| c.1 == 200).map(|c| c.0).collect();
    let carried: usize = all
        .iter()
        .filter(|c| c.method == "imconnector.send.messages" && c.http_status == 200)
        .map(|c| c.params["MESSAGES"].as_array().map_or(0, |m| m.len()))
        .sum();
    let burst = defaults.bitrix_burst as usize;
    let span = match (ok.first(), ok.last()) {
        (Some(a), Some(b)) => secs_between(*a, *b),
        _ => 0.0,
    };
    println!(
        "  {scenario}: {} requests ({refused} refused) carried {carried} messages ({:.1} per request) over {span:.2} s; \
         the portal allows a burst of {burst} requests, then {}/s",
        ok.len(),
        carried as f64 / ok.len().max(1) as f64,
        defaults.bitrix_rate_per_sec
    );
    row.note = format!(
        "{} requests for {carried} messages ({:.1} per request), {refused} refused; limit: burst {burst}, then {}/s",
        ok.len(),
        carried as f64 / ok.len().max(1) as f64,
        defaults.bitrix_rate_per_sec
    );
    rig.finish(rt)?;
    Ok(vec![row])
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let sql = a.sql_profile.then(wabridge_bench::sql_profile::install);
    let rt = Runtimes { sandbox: runtime("sandbox")?, service: runtime("wabridge")?, load: runtime("loadgen")? };
    let mut dbs: Vec<(&'static str, Option<String>)> = Vec::new();
    if matches!(a.db, DbChoice::Sqlite | DbChoice::Both) {
        dbs.push(("SQLite", None));
    }
    if matches!(a.db, DbChoice::Postgres | DbChoice::Both) {
        dbs.push(("PostgreSQL", Some(a.postgres.clone())));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "bench_pipeline: {} CPUs, load {}, worker_concurrency {}, {} connections; {:?}",
        cores,
        loadavg(),
        a.worker_concurrency.unwrap_or(Config::default().worker_concurrency),
        a.connections,
        a.scenario
    );
    let mut rows = Vec::new();
    for (db, pg) in dbs {
        for sc in &a.scenario {
            println!();
            println!("== {db}: {sc:?}");
            let r = match sc {
                Which::Inbox => scenario_inbox(&rt, &a, db, pg.clone()),
                Which::Portals => scenario_portals(&rt, &a, db, pg.clone()),
                Which::Numbers => scenario_numbers(&rt, &a, db, pg.clone()),
            };
            match r {
                Ok(r) => rows.extend(r),
                Err(e) => println!("  FAILED: {e:#}"),
            }
        }
    }
    println!();
    println!(
        "| db | scenario | offered | messages | intake (200s/s) | end to end | drain after last 200 | arrived | \
         latency p50 / p99 / max (ms) | CPU/msg | note |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        print_row(r);
    }
    if let Some(t) = &sql {
        println!();
        wabridge_bench::sql_profile::print(t, rows.iter().map(|r| r.messages).sum());
    }
    Ok(())
}
