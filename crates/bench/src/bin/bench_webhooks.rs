//! Benchmark: signed, durable webhook POSTs per second and latency at N concurrent connections, side by side
//! with a bare axum handler that only answers 200 (the ceiling), in one run on one machine.
//!
//! cargo run --release -p wabridge-bench --bin bench_webhooks -- [--seconds 10] [--connections 64] [--postgres URL]
//!
//! The load generator runs in this process on its own runtime; the servers run on another.

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use wabridge::registry::{self, AppInput, PhoneInput, WabaInput};
use wabridge::{Config, Service};
use wabridge_sandbox::payloads as p;

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";

/// Signed, durable webhook POSTs per second and latency, beside a bare axum handler (the ceiling).
#[derive(clap::Parser)]
#[command(name = "bench_webhooks")]
struct Args {
    /// How long each server is loaded, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Also measure on this PostgreSQL server (postgres://user@host:port; a database is created and dropped).
    #[arg(long)]
    postgres: Option<String>,
}

fn args() -> Args {
    clap::Parser::parse()
}

struct Report {
    label: String,
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Report {
    fn print(&self) {
        println!(
            "{:<34} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests, {} errors)",
            self.label,
            self.requests as f64 / self.seconds,
            self.p50_ms,
            self.p99_ms,
            self.requests,
            self.errors
        );
    }
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// `connections` loops, each on its own keep-alive HTTP/1.1 connection, writing the same pre-serialised signed
/// request and reading the answer (status line, headers, Content-Length body): a wrk-like generator that costs
/// far less CPU than a full client, so the servers get most of the machine.
fn load(label: &str, url: String, body: Vec<u8>, sig: String, connections: usize, seconds: u64) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let parsed = url::Url::parse(&url).expect("url");
        let addr = format!("{}:{}", parsed.host_str().unwrap_or("127.0.0.1"), parsed.port().unwrap_or(80));
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let request = wabridge_bench::http1::signed_post(&target, &addr, &sig, &body);
        let request = std::sync::Arc::new(request);
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (addr, request) = (addr.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0usize;
                let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut buf = vec![0u8; 16 * 1024];
                while Instant::now() < end {
                    let t = Instant::now();
                    let ok = wabridge_bench::http1::exchange(&mut stream, &request, &mut buf).await.map(|s| s == 200);
                    match ok {
                        Some(true) => lat.push(t.elapsed().as_micros() as u32),
                        Some(false) => errors += 1,
                        None => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await.expect("load task");
            all.extend(lat);
            errors += e;
        }
        let seconds = start.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64
                / 1000.0
        };
        Report { label: label.into(), requests: all.len(), errors, seconds, p50_ms: pct(0.50), p99_ms: pct(0.99) }
    })
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let payload = p::envelope(
        "102290129340398",
        "messages",
        p::messages_value(
            "5511930001234",
            "106540352242922",
            vec![p::contact("5511987654321", "Jo\u{e3}o Silva")],
            vec![p::text_message("5511987654321", &p::new_wamid(), 1767800000, "Ol\u{e1}, quero agendar uma consulta")],
        ),
    );
    let body = p::to_wire(&payload);
    let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
    println!(
        "bench_webhooks: {} connections, {} s per run, body {} bytes, {} CPUs",
        a.connections,
        a.seconds,
        body.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    // 1. The ceiling: a bare axum handler that answers 200 and does nothing else.
    let bare_url = server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().route("/api/waba/", post(|| async { "" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(format!("http://{addr}/api/waba/"))
    })?;
    let bare = load("bare axum (200 only)", bare_url, body.clone(), sig.clone(), a.connections, a.seconds);
    bare.print();

    // 2. wabridge: verify signature on raw bytes, group-commit inbox row + job durably, then 200.
    let mut runs = vec![("wabridge, SQLite (sync=FULL, WAL)", None)];
    if let Some(pg) = &a.postgres {
        runs.push(("wabridge, PostgreSQL", Some(pg.clone())));
    }
    let mut reports = Vec::new();
    for (label, pg) in runs {
        let dir = tempfile::tempdir()?;
        let (svc, url) = server_rt.block_on(async {
            let database_url = match &pg {
                Some(base) => {
                    let name = format!("wabridge_bench_{}", std::process::id());
                    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut c).await?;
                    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await?;
                    format!("{base}/{name}")
                }
                None => format!("sqlite://{}", dir.path().join("bench.db").display()),
            };
            let config = Config {
                database_url,
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".into(),
                master_key: Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
                workers_enabled: false,
                log: "warn".into(),
                ..Config::default()
            };
            let svc = Service::start(config).await?;
            let app = registry::create_app(
                &svc.store,
                &AppInput {
                    meta_app_id: Some("1234567890".into()),
                    domain: Some("wb.example.com".into()),
                    app_secret: Some(SECRET.into()),
                    ..Default::default()
                },
            )
            .await?;
            let waba = registry::create_waba(
                &svc.store,
                &WabaInput { waba_id: Some("102290129340398".into()), app: Some(app.id), ..Default::default() },
            )
            .await?;
            registry::create_phone(
                &svc.store,
                &PhoneInput {
                    number: Some("+5511930001234".into()),
                    phone_number_id: Some("106540352242922".into()),
                    waba: Some(waba.id),
                    ..Default::default()
                },
            )
            .await?;
            let url = format!("{}/api/waba/?app_id=1234567890", svc.url());
            anyhow::Ok((svc, url))
        })?;
        let r = load(label, url, body.clone(), sig.clone(), a.connections, a.seconds);
        r.print();
        let stored: i64 = server_rt.block_on(async {
            let row = sqlx::query("SELECT COUNT(*) FROM inbox").fetch_one(svc.store.raw_pool()).await?;
            anyhow::Ok(sqlx::Row::get::<i64, _>(&row, 0))
        })?;
        println!("  committed inbox rows: {stored} (acknowledged: {})", r.requests);
        assert!(stored as usize >= r.requests, "every acknowledged request is committed");
        server_rt.block_on(svc.stop())?;
        reports.push(r);
    }
    println!();
    for r in &reports {
        println!("{:<34} {:.2} of the bare ceiling", r.label, r.rate() / bare.rate());
    }
    Ok(())
}
