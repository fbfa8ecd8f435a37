//! Benchmark: what large webhooks and idle or slow connections cost the real binary (issue 11, "HTTP: bounded").
//!
//! ulimit -n 20000   # 5,000 client sockets here, as many server sockets in the child
//! cargo build --release --bin wabridge && cargo build --release -p wabridge-bench --bin bench_memory
//! target/release/bench_memory [--binary target/release/wabridge] [--bodies 100] [--size 3000000]
//!                             [--idle 5000] [--slowloris 100] [--hold 45] [--methods 20000] [--env KEY=VALUE ...]
//!
//! It registers an app in a fresh SQLite database, starts `--binary serve` on it (workers on, as users run it),
//! and samples the server's VmRSS / VmHWM from /proc/PID/status:
//!
//! 1. `--bodies` concurrent signed webhooks of about `--size` bytes each (one connection each); answers of 503 are
//!    retried after their Retry-After, like Meta does, until every body got its 200. RSS before, the peak
//!    (VmHWM), and 5 s after the last 200.
//! 2. `--idle` connections that send nothing and `--slowloris` connections that send one header byte every 2 s;
//!    after `--hold` seconds: how many of each are still open, and RSS.
//! 3. `--methods` requests with made-up methods on made-up paths (one keep-alive connection): how many
//!    `wabridge_http_request*` lines `/metrics` gained, and its size.
//!
//! `--env KEY=VALUE` is passed to the server (e.g. `--env WABRIDGE_WEBHOOK_BODY_BUDGET_BYTES=33554432`); unknown
//! `WABRIDGE_*` keys are ignored by the server, so the same command measures older binaries too.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wabridge::registry::{self, AppInput};
use wabridge::{Config, Service};
use wabridge_sandbox::payloads as p;

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// What large webhooks and idle or slow connections cost the real binary (RSS, peak, connections kept).
#[derive(clap::Parser)]
#[command(name = "bench_memory")]
struct Args {
    /// The wabridge binary to start with `serve`.
    #[arg(long, default_value = "target/release/wabridge")]
    binary: String,
    /// Concurrent signed webhooks of `--size` bytes.
    #[arg(long, default_value_t = 100)]
    bodies: usize,
    /// Size of each webhook body, in bytes.
    #[arg(long, default_value_t = 3_000_000)]
    size: usize,
    /// Connections that send nothing.
    #[arg(long, default_value_t = 5_000)]
    idle: usize,
    /// Connections that send one header byte every 2 s.
    #[arg(long, default_value_t = 100)]
    slowloris: usize,
    /// Seconds the idle and slow connections are held before they are counted.
    #[arg(long, default_value_t = 45)]
    hold: u64,
    /// Requests with made-up methods on made-up paths.
    #[arg(long, default_value_t = 20_000)]
    methods: usize,
    /// KEY=VALUE passed to the server's environment (repeatable).
    #[arg(long, value_parser = key_value)]
    env: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn args() -> Args {
    clap::Parser::parse()
}

/// (VmRSS, VmHWM) of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let (rss, hwm, _) = rss3(pid);
    (rss, hwm)
}

/// (VmRSS, VmHWM, RssAnon) of a process, in MiB.
fn rss3(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0, kb("RssAnon:") / 1024.0)
}

/// A webhook of about `size` bytes: many inbound text messages for a phone number id nobody registered, so the
/// processing job parses the whole body and then has nothing to store (the parse is what costs memory).
fn webhook(size: usize, n: usize) -> (Vec<u8>, String) {
    let text = "x".repeat(900);
    let mut messages = Vec::new();
    let mut approx = 400;
    while approx < size {
        messages.push(p::text_message("5511987654321", &p::new_wamid(), 1_767_800_000 + n as i64, &text));
        approx += 1_050;
    }
    let payload = p::envelope(
        "102290129340398",
        "messages",
        p::messages_value("5511930009999", "999999999999999", vec![p::contact("5511987654321", "x")], messages),
    );
    let body = p::to_wire(&payload);
    let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

/// One POST on its own connection; the status and the Retry-After seconds.
async fn post(addr: &str, body: &[u8], sig: &str) -> (u16, u64) {
    let Ok(mut s) = TcpStream::connect(addr).await else { return (0, 1) };
    let head = format!(
        "POST /api/waba/?app_id=1234567890 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return (0, 1);
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let retry = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    (status, retry)
}

/// True while the server has not closed the connection.
fn still_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    // Register the app with the library (migrations, admin token), then hand the database to the binary.
    rt.block_on(async {
        let config = Config {
            database_url: database_url.clone(),
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            master_key: Some(MASTER_KEY.into()),
            workers_enabled: false,
            log: "warn".into(),
            ..Config::default()
        };
        let svc = Service::start(config).await?;
        registry::create_app(
            &svc.store,
            &AppInput {
                meta_app_id: Some("1234567890".into()),
                domain: Some("wb.example.com".into()),
                app_secret: Some(SECRET.into()),
                ..Default::default()
            },
        )
        .await?;
        svc.stop().await
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(&a.binary);
    cmd.arg("serve")
        .env("WABRIDGE_DATABASE_URL", &database_url)
        .env("WABRIDGE_DATA_DIR", dir.path())
        .env("WABRIDGE_LISTEN", &addr)
        .env("WABRIDGE_MASTER_KEY", MASTER_KEY)
        .env("WABRIDGE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in &a.env {
        cmd.env(k, v);
    }
    let server = Server(cmd.spawn()?);
    let pid = server.0.id();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("bench_memory: {} (pid {pid}) on {addr}, {cpus} CPUs", a.binary);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the server did not start listening");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(())
    })?;

    // 1. Large webhooks, all at once.
    let bodies: Vec<(Vec<u8>, String)> = (0..a.bodies).map(|n| webhook(a.size, n)).collect();
    let size = bodies.first().map(|b| b.0.len()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let (before, _) = rss(pid);
    let refused = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let statuses = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (body, sig) in bodies {
            let (addr, refused) = (addr.clone(), refused.clone());
            tasks.spawn(async move {
                // Like Meta: retry until a 200 (a few times at most).
                for _ in 0..60 {
                    let (status, retry) = post(&addr, &body, &sig).await;
                    if status == 200 {
                        return 200;
                    }
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(retry.clamp(1, 5))).await;
                }
                0
            });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            ok += usize::from(r.unwrap_or(0) == 200);
        }
        ok
    });
    let took = start.elapsed();
    let (_, peak) = rss(pid);
    std::thread::sleep(Duration::from_secs(5));
    let (after, hwm, anon) = rss3(pid);
    println!(
        "webhooks: {} x {size} bytes concurrent: {statuses} got 200 in {:.1} s ({} answers were not 200 and were retried)",
        a.bodies,
        took.as_secs_f64(),
        refused.load(Ordering::Relaxed)
    );
    println!(
        "  RSS before {before:.0} MiB, peak (VmHWM) at the last 200 {peak:.0} MiB; 5 s later RSS {after:.0} MiB \
         (anonymous {anon:.0} MiB), VmHWM {hwm:.0} MiB (the processing jobs run meanwhile)"
    );

    // 2. Idle and slowloris connections.
    let (idle_open, slow_open, rss_open, rss_held) = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..a.idle {
            match TcpStream::connect(&addr).await {
                Ok(s) => idle.push(s),
                Err(e) => {
                    eprintln!("connect failed after {} idle connections: {e}", idle.len());
                    break;
                }
            }
        }
        let slow_alive = Arc::new(AtomicUsize::new(0));
        for _ in 0..a.slowloris {
            let Ok(mut s) = TcpStream::connect(&addr).await else { continue };
            let alive = slow_alive.clone();
            alive.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\n".iter().cycle();
                for b in head {
                    if s.write_all(&[*b]).await.is_err() || !still_open(&s) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                alive.fetch_sub(1, Ordering::Relaxed);
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_open = rss(pid).0;
        tokio::time::sleep(Duration::from_secs(a.hold)).await;
        let (_, _, anon) = rss3(pid);
        eprintln!("  (anonymous RSS after the hold: {anon:.0} MiB)");
        let idle_open = idle.iter().filter(|s| still_open(s)).count();
        (idle_open, slow_alive.load(Ordering::Relaxed), rss_open, rss(pid).0)
    });
    println!(
        "connections: {} idle + {} slowloris (1 byte / 2 s): after {} s {idle_open} idle and {slow_open} slowloris still open",
        a.idle, a.slowloris, a.hold
    );
    println!("  RSS with them open {rss_open:.0} MiB, after {} s {rss_held:.0} MiB", a.hold);

    // 3. Made-up methods and paths.
    let (lines_before, bytes_before) = rt.block_on(scrape(&addr));
    rt.block_on(async {
        let mut s = TcpStream::connect(&addr).await?;
        let mut buf = vec![0u8; 64 * 1024];
        for i in 0..a.methods {
            s.write_all(format!("FROB{i} /made/up/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await?;
            // Each answer is a small JSON error: read until its body is complete.
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "the server closed the connection");
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:")?.trim().parse().ok())
                        .unwrap_or(0usize);
                    if body.len() >= len {
                        break;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    let (lines_after, bytes_after) = rt.block_on(scrape(&addr));
    println!(
        "metrics: {} requests with made-up methods and paths: wabridge_http_request* lines {lines_before} -> \
         {lines_after}, /metrics {bytes_before} -> {bytes_after} bytes",
        a.methods
    );
    drop(server);
    Ok(())
}

/// (`wabridge_http_request*` lines, bytes) of `/metrics`.
async fn scrape(addr: &str) -> (usize, usize) {
    let Ok(resp) = reqwest::get(format!("http://{addr}/metrics")).await else { return (0, 0) };
    let text = resp.text().await.unwrap_or_default();
    (text.lines().filter(|l| l.starts_with("wabridge_http_request")).count(), text.len())
}
