//! Benchmark: the message API's latency from an accepted send to its Graph request. An open-loop client posts
//! template messages to `POST /api/v1/messages` at a fixed rate (default 500/s for 20 s, each to a different
//! customer, so neither the 24-hour window nor the pair rate is in play); the Graph sandbox records when each
//! request reaches it. For every send: "accepted → Graph request" is the sandbox's arrival time minus the moment
//! the client had its 202 (a request that reached the sandbox before the 202 reached the client counts as 0 ms
//! and is counted separately), and "API answer" is the 202's own round trip.
//!
//! cargo build --release -p wabridge-bench --bin bench_api_send
//! target/release/bench_api_send [--rate 500] [--seconds 20] [--postgres postgres://postgres@127.0.0.1:5432]
//!
//! The sandbox runs on its own 2-thread runtime, wabridge and the client on another; both share the machine's
//! cores. The number's throughput is 1,000/s at wabridge and at the sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use serde_json::{json, Value};
use wabridge::registry::{self, PhoneInput};
use wabridge::{Config, Service};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::graph_messages::Progression;

use wabridge_bench::setup::{APP_ID, WABA_ID};
const PNID: &str = "106540352200001";
const NUMBER: &str = "+5511930000001";
const TOKEN: &str = "EAAGbenchapisendtoken0123456789";
const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[derive(Parser, Debug)]
#[command(about = "API send accepted → Graph request: latency at a fixed rate")]
struct Args {
    /// Sends per second, open loop.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// How long to send.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// `worker_concurrency` and `send_concurrency` of the service.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Run on PostgreSQL (a fresh database, dropped at the end) instead of SQLite in a temp dir.
    #[arg(long)]
    postgres: Option<String>,
}

fn recipient(i: usize) -> String {
    format!("+55219{:08}", i + 1)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: f64) -> String {
    format!("{d:.1} ms")
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let sandbox_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let g = sandbox_rt.block_on(GraphSandbox::start())?;
    g.allow_token(TOKEN, APP_ID);
    g.add_number(PNID, NUMBER.trim_start_matches('+'), WABA_ID);
    g.set_throughput(PNID, 1000);
    g.set_status_progression(PNID, Progression::Silent);
    g.add_template(
        WABA_ID,
        json!({"name": "order_ready", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready."}]}),
    );
    let dir = tempfile::tempdir()?;
    let pg_name = format!("wabridge_bench_api_send_{}", std::process::id());
    let database_url = match &a.postgres {
        Some(base) => rt.block_on(async {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name}")).execute(&mut c).await?;
            sqlx::query(&format!("CREATE DATABASE {pg_name}")).execute(&mut c).await?;
            anyhow::Ok(format!("{base}/{pg_name}"))
        })?,
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let config = Config {
        database_url,
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        master_key: Some(MASTER_KEY.into()),
        worker_concurrency: a.concurrency,
        send_concurrency: a.concurrency,
        log: "warn".into(),
        graph_base_url: g.base_url(),
        graph_version: "v23.0".into(),
        ..Config::default()
    };
    let total = (a.rate * a.seconds) as usize;
    let (accepted, api_ms, sent_at, wall) = rt.block_on(async {
        let svc = Service::start(config).await?;
        let waba_id = wabridge_bench::setup::app_and_waba(&svc.store, SECRET, TOKEN).await?;
        registry::create_phone(
            &svc.store,
            &PhoneInput {
                number: Some(NUMBER.into()),
                phone_number_id: Some(PNID.into()),
                waba: Some(waba_id),
                throughput_mps: Some(1000),
                ..Default::default()
            },
        )
        .await?;
        wabridge::templates::request_sync(&svc.store, waba_id).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while wabridge::templates::load(&svc.store, waba_id).await?.is_empty() {
            anyhow::ensure!(Instant::now() < deadline, "templates were not synced within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let key = wabridge::apikeys::create(&svc.store, "bench", None, &[]).await?.key;
        let url = format!("{}/api/v1/messages", svc.url());
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        // send id → (when the 202 arrived, the request's round trip in ms)
        let answers: Arc<Mutex<HashMap<i64, (SystemTime, f64)>>> = Arc::default();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(a.rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            tick.tick().await;
            let (http, url, key, answers) = (http.clone(), url.clone(), key.clone(), answers.clone());
            tasks.push(tokio::spawn(async move {
                let body = json!({"from": NUMBER, "to": recipient(i), "type": "template",
                                  "template": {"name": "order_ready", "locale": "en_US", "parameters": ["Anna", i]}});
                let t0 = Instant::now();
                let r = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                let status = r.status().as_u16();
                let v: Value = r.json().await?;
                let (at, rtt) = (SystemTime::now(), t0.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(status == 202, "send {i}: HTTP {status}: {v}");
                let id = v["id"].as_i64().ok_or_else(|| anyhow::anyhow!("no id in {v}"))?;
                answers.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(id, (at, rtt));
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let wall = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        while g.sent_messages(PNID).len() < total {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {total} sends reached the sandbox",
                g.sent_messages(PNID).len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sent_at: HashMap<i64, SystemTime> = g
            .sent_messages(PNID)
            .into_iter()
            .filter_map(|m| {
                let id = m.body["biz_opaque_callback_data"].as_str()?.strip_prefix("wb:")?.parse().ok()?;
                Some((id, m.at))
            })
            .collect();
        let answers = answers.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        svc.stop().await?;
        let accepted: Vec<(i64, SystemTime)> = answers.iter().map(|(id, (at, _))| (*id, *at)).collect();
        let api_ms: Vec<f64> = answers.values().map(|(_, rtt)| *rtt).collect();
        anyhow::Ok((accepted, api_ms, sent_at, wall))
    })?;
    if let Some(base) = &a.postgres {
        rt.block_on(async {
            if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name}")).execute(&mut c).await;
            }
        });
    }
    let mut early = 0usize;
    let mut lat: Vec<f64> = accepted
        .iter()
        .filter_map(|(id, at)| {
            let reached = sent_at.get(id)?;
            Some(match reached.duration_since(*at) {
                Ok(d) => d.as_secs_f64() * 1000.0,
                Err(_) => {
                    early += 1;
                    0.0
                }
            })
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut api = api_ms;
    api.sort_by(f64::total_cmp);
    let db = if a.postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("bench_api_send: {db}, {total} template sends at {}/s for {} s", a.rate, a.seconds);
    println!(
        "  offered in {:.2} s ({:.1}/s); all {} reached the sandbox",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        lat.len()
    );
    println!(
        "  accepted (202 at the client) → Graph request: p50 {}  p90 {}  p99 {}  max {}  ({early} reached Meta before their 202 arrived; counted as 0)",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.90)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(f64::NAN))
    );
    println!(
        "  API answer (request → 202): p50 {}  p99 {}  max {}",
        ms(percentile(&api, 0.50)),
        ms(percentile(&api, 0.99)),
        ms(api.last().copied().unwrap_or(f64::NAN))
    );
    Ok(())
}
