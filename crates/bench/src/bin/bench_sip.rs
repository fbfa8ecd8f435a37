//! Benchmark: SIP call setups per second through the edge (Meta side TLS, PBX side UDP) to a SIPp UAS, and memory
//! per idle TLS connection, side by side with Kamailio configured as the same record-routing TLS-to-UDP proxy.
//!
//! cargo build --release --bin wabridge && cargo build --release -p wabridge-bench --bin bench_sip &&
//!     target/release/bench_sip \
//!     [--calls 10000] [--rate 1000] [--connections 50] [--idle 10000] [--only wabridge|kamailio]
//!
//! Needs `sipp` and, for the comparison, Debian's `kamailio` + `kamailio-tls-modules`. The call load runs against
//! wabridge's edge started in this process; the idle-connection memory is measured on a separate
//! `target/release/wabridge serve` process so that the load generator's own memory is not counted. Kamailio runs
//! as a child process from bench/kamailio/kamailio.cfg with one TLS worker (tcp_children=1).
//!
//! The load generator: for each offered rate (stepping up from --rate), --calls calls spread over one TLS
//! connection and then over --connections connections from 127.0.0.2, each call INVITE -> (100) -> 180 -> 200 ->
//! ACK -> BYE -> 200. A call fails on any final status other than 200 or when it has not completed 8 s after the
//! last INVITE went out; it is reordered when its 180 arrives after its 200. The highest rate with no failure
//! is the result.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use wabridge::edge::framing::{next_frame, Frame};
use wabridge::edge::tls;
use wabridge::registry::{self, AppInput, PhoneInput, WabaInput};
use wabridge::{Config, Service};
use wabridge_sandbox::sip::caller::{self, CallLeg};
use wabridge_sandbox::sip::text::headers;

const NUMBER: &str = "+5511930001234";
/// The repository root (this crate is `crates/bench`): `bench/` holds the SIPp and Kamailio files.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const KAMAILIO_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// SIP call setups per second through the edge to a SIPp UAS, and memory per idle TLS connection, beside Kamailio.
#[derive(clap::Parser)]
#[command(name = "bench_sip")]
struct Args {
    /// Calls per offered rate.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// The first offered rate, calls per second (stepping up from here).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// TLS connections the calls are spread over in the second round.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Idle TLS connections for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Measure only this proxy: wabridge or kamailio.
    #[arg(long)]
    only: Option<String>,
}

fn args() -> Args {
    clap::Parser::parse()
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A child process stopped when dropped: SIGTERM first (Kamailio's main process then stops its children; a
/// SIGKILL would orphan them), SIGKILL after 5 s.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a child's exit with a deadline
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIPp as the PBX: answers every INVITE with 180 + 200 and every BYE with 200, over UDP on 127.0.0.1.
fn sipp_uas() -> anyhow::Result<(Proc, u16)> {
    let port = free_port();
    let child = Command::new("sipp")
        .args(["-sf", &format!("{ROOT}/bench/sipp/uas.xml"), "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "u1", "-nostdin", "-nr", "-max_recv_loops", "10000", "-max_sched_loops", "10000"])
        .args(["-buff_size", "8388608"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300)); // SIPp binds its socket
    Ok((Proc(child), port))
}

// ---------------------------------------------------------------------------------------------- memory

/// Proportional set size (kB) of a process and its descendants: shared memory (Kamailio's shm) counted once.
fn pss_kb_tree(pid: u32) -> u64 {
    let mut total = 0;
    let mut pids = vec![pid];
    while let Some(p) = pids.pop() {
        total += status_kb(&format!("/proc/{p}/smaps_rollup"), "Pss:");
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
                let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)?.parse::<u32>().ok());
                if ppid == Some(p) {
                    pids.push(child);
                }
            }
        }
    }
    total
}

fn status_kb(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The kernel's count of UDP datagrams dropped because a socket's receive buffer was full (all sockets).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn nofile_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(1024)
}

// ---------------------------------------------------------------------------------------------- TLS client

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection from 127.0.0.2 (the trusted network, like Meta) to the target, verifying `sip.test`.
async fn connect(target: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind("127.0.0.2:0".parse().expect("address"))?;
    let tcp = sock.connect(target).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("sip.test").expect("server name");
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

// ---------------------------------------------------------------------------------------------- SIP helpers

/// The calls of one connection, as Meta writes them (`wabridge_sandbox::sip::caller`).
fn leg(local: SocketAddr) -> CallLeg {
    CallLeg { local, host: "sip.test".into(), callee: NUMBER.into() }
}

/// ACK and BYE after `ok` (the 200 to our INVITE of call `call`), along the proxy's Record-Route set.
fn ack_and_bye(leg: &CallLeg, call: &str, ok: &str) -> Option<String> {
    let ack = leg.in_dialog("ACK", ok, call, 1, "").ok()?;
    let bye = leg.in_dialog("BYE", ok, call, 2, "").ok()?;
    Some(ack + &bye)
}

/// The first value of a header, long or compact name.
fn header<'a>(msg: &'a str, name: &str, short: &str) -> Option<&'a str> {
    headers(msg, name, short).into_iter().next()
}

// ---------------------------------------------------------------------------------------------- call load

#[derive(Default)]
struct CallState {
    started: Option<Instant>,
    got_180: bool,
    got_200: bool,
    reordered: bool,
    done: bool,
    failed: bool,
}

#[derive(Default, Clone)]
struct Tally {
    sent: usize,
    ok: usize,
    failed: usize,
    reordered: usize,
    missing_180: usize,
    setup_us: Vec<u32>,
    last_done: Option<Instant>,
    /// Why calls failed: final status code, or 0 for "not completed in time".
    why: std::collections::BTreeMap<u16, usize>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.failed += o.failed;
        self.reordered += o.reordered;
        self.missing_180 += o.missing_180;
        self.setup_us.extend(o.setup_us);
        self.last_done = self.last_done.max(o.last_done);
        for (k, v) in o.why {
            *self.why.entry(k).or_default() += v;
        }
    }
}

/// One connection's share: `calls` calls at `rate` per second, starting at `start`.
async fn conn_load(stream: Tls, tag: String, calls: usize, rate: f64, start: Instant) -> Tally {
    let leg = leg(stream.get_ref().0.local_addr().expect("local address"));
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer_task = tokio::spawn(async move {
        while let Some(mut bytes) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                bytes.extend_from_slice(&more);
            }
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut states: HashMap<String, CallState> = HashMap::with_capacity(calls);
    let mut t = Tally::default();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Pacing: wake about once per call due on this connection (1..20 ms), not more, to keep the generator cheap.
    let period = Duration::from_micros((1e6 / rate.max(1.0)).clamp(1000.0, 20_000.0) as u64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut deadline: Option<Instant> = None;
    loop {
        if t.sent == calls && (t.ok + t.failed == calls || deadline.is_some_and(|d| Instant::now() > d)) {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {
                if t.sent < calls {
                    let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(calls);
                    let mut out = Vec::new();
                    while t.sent < due {
                        let call = format!("{tag}-{}", t.sent);
                        out.extend_from_slice(leg.invite(&call, 1, None).as_bytes());
                        // Keyed by the Call-ID the answers carry.
                        let state = CallState { started: Some(Instant::now()), ..Default::default() };
                        states.insert(format!("outgoing:wacid.{call}"), state);
                        t.sent += 1;
                    }
                    if !out.is_empty() && tx.send(out).is_err() {
                        break;
                    }
                    if t.sent == calls {
                        deadline = Some(Instant::now() + Duration::from_secs(8));
                    }
                }
            }
            r = reader.read(&mut chunk) => {
                let n = match r { Ok(0) | Err(_) => break, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                let mut out = Vec::new();
                loop {
                    match next_frame(&buf) {
                        Ok(Frame::Message { len }) => {
                            let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
                            buf.drain(..len);
                            on_message(&msg, &leg, &mut states, &mut t, &mut out);
                        }
                        Ok(Frame::KeepAlive { skip, .. }) => { buf.drain(..skip); }
                        Ok(Frame::Incomplete) => break,
                        Err(_) => { buf.clear(); break; }
                    }
                }
                if !out.is_empty() && tx.send(out).is_err() {
                    break;
                }
            }
        }
    }
    for s in states.values() {
        if !s.done {
            t.failed += 1;
            *t.why.entry(0).or_default() += 1;
        }
        if s.got_200 && !s.got_180 {
            t.missing_180 += 1;
        }
    }
    t.failed = t.failed.min(t.sent - t.ok);
    drop(tx);
    let _ = writer_task.await;
    t
}

fn on_message(msg: &str, leg: &CallLeg, states: &mut HashMap<String, CallState>, t: &mut Tally, out: &mut Vec<u8>) {
    if !msg.starts_with("SIP/2.0 ") {
        return; // a request toward Meta: none in this scenario
    }
    let code: u16 = msg.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
    let Some(call) = header(msg, "call-id", "i") else { return };
    let method = header(msg, "cseq", "").and_then(|c| c.split_whitespace().nth(1)).unwrap_or("");
    let Some(s) = states.get_mut(call) else { return };
    if s.done {
        if method == "INVITE" && code == 180 && s.got_200 && !s.got_180 {
            s.got_180 = true;
            s.reordered = true;
            t.reordered += 1;
        }
        return;
    }
    match (method, code) {
        ("INVITE", 100..=179 | 181..=199) => {}
        ("INVITE", 180) => {
            if s.got_200 && !s.got_180 {
                s.reordered = true;
                t.reordered += 1;
            }
            s.got_180 = true;
        }
        ("INVITE", 200) if !s.got_200 => {
            s.got_200 = true;
            if let Some(started) = s.started {
                t.setup_us.push(started.elapsed().as_micros() as u32);
            }
            match ack_and_bye(leg, call.trim_start_matches("outgoing:wacid."), msg) {
                Some(m) => out.extend_from_slice(m.as_bytes()),
                None => {
                    s.failed = true;
                    s.done = true;
                    t.failed += 1;
                }
            }
        }
        ("INVITE", 200) => {} // a retransmission
        ("BYE", 200) => {
            s.done = true;
            t.ok += 1;
            t.last_done = Some(Instant::now());
        }
        (_, c) if c >= 300 => {
            s.failed = true;
            s.done = true;
            t.failed += 1;
            *t.why.entry(c).or_default() += 1;
        }
        _ => {}
    }
}

struct Step {
    offered: f64,
    tally: Tally,
    seconds: f64,
}

impl Step {
    fn achieved(&self) -> f64 {
        self.tally.ok as f64 / self.seconds.max(1e-9)
    }
    fn pct_ms(&self, q: f64) -> f64 {
        let mut v = self.tally.setup_us.clone();
        v.sort_unstable();
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0
    }
    fn clean(&self) -> bool {
        self.tally.failed == 0 && self.tally.ok == self.tally.sent && self.achieved() >= 0.95 * self.offered
    }
}

async fn run_step(
    target: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    conns: usize,
    rate: f64,
    calls: usize,
    tag: &str,
) -> anyhow::Result<Step> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(connect(target, config.clone()).await?);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for (i, s) in streams.into_iter().enumerate() {
        let share = calls / conns + usize::from(i < calls % conns);
        let tag = format!("{tag}-c{i}");
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            conn_load(s, tag, share, rate / conns as f64, start).await
        }));
    }
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await?);
    }
    let end = tally.last_done.unwrap_or_else(Instant::now);
    let seconds = end.saturating_duration_since(start).as_secs_f64();
    Ok(Step { offered: rate, tally, seconds })
}

struct Sweep {
    best: Option<Step>,
    last: Option<Step>,
}

/// Steps the offered rate up from `from` until a step has a failure (or cannot keep up); prints each step.
async fn sweep(
    label: &str,
    target: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    conns: usize,
    from: f64,
    calls: usize,
) -> anyhow::Result<Sweep> {
    let mut rate = from;
    let mut best: Option<Step> = None;
    let mut step_no = 0;
    loop {
        step_no += 1;
        let drops_before = udp_rcvbuf_errors();
        let step = run_step(target, config.clone(), conns, rate, calls, &format!("{label}-{conns}-{step_no}")).await?;
        let drops = udp_rcvbuf_errors() - drops_before;
        println!(
            "  {label:<9} {conns:>3} conn  offered {:>6.0}/s  completed {:>6.0}/s  ok {:>6}  failed {:>5}  \
             reordered {:>4}  no-180 {:>4}  setup p50 {:>7.2} ms  p99 {:>7.2} ms  UDP drops {drops}",
            step.offered,
            step.achieved(),
            step.tally.ok,
            step.tally.failed,
            step.tally.reordered,
            step.tally.missing_180,
            step.pct_ms(0.5),
            step.pct_ms(0.99)
        );
        if !step.tally.why.is_empty() {
            let why: Vec<String> = step
                .tally
                .why
                .iter()
                .map(|(k, v)| if *k == 0 { format!("{v} timed out") } else { format!("{v} got {k}") })
                .collect();
            println!("            failures: {}", why.join(", "));
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // let transactions and timers drain
        if !step.clean() {
            return Ok(Sweep { best, last: Some(step) });
        }
        rate = if rate < 4000.0 { rate + 500.0 } else { rate + 1000.0 };
        best = Some(step);
        if rate > 40_000.0 {
            return Ok(Sweep { best, last: None });
        }
    }
}

/// Opens `k` idle TLS connections to `target` and returns them with the number that failed.
async fn open_idle(target: SocketAddr, config: Arc<rustls::ClientConfig>, k: usize) -> (Vec<Tls>, usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(k);
    for _ in 0..k {
        let (sem, config) = (sem.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            tokio::time::timeout(Duration::from_secs(20), connect(target, config)).await.ok()?.ok()
        }));
    }
    let mut out = Vec::with_capacity(k);
    let mut failed = 0;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(s) => out.push(s),
            None => failed += 1,
        }
    }
    (out, failed)
}

struct Idle {
    k: usize,
    failed: usize,
    before_kb: u64,
    after_kb: u64,
}

impl Idle {
    fn per_conn_kb(&self) -> f64 {
        (self.after_kb as f64 - self.before_kb as f64) / (self.k - self.failed).max(1) as f64
    }
}

async fn idle_memory(pid: u32, target: SocketAddr, config: Arc<rustls::ClientConfig>, k: usize) -> Idle {
    // Warm up: a few connections and calls' worth of allocator state, closed again.
    let (warm, _) = open_idle(target, config.clone(), 50).await;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kb = pss_kb_tree(pid);
    let (conns, failed) = open_idle(target, config, k).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kb = pss_kb_tree(pid);
    drop(conns);
    Idle { k, failed, before_kb, after_kb }
}

// ---------------------------------------------------------------------------------------------- targets

struct Certs {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certs() -> anyhow::Result<Certs> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = tls::write_dev_pair("sip.test", &dir.path().join("edge"))?;
    Ok(Certs { dir: dir.path().to_path_buf(), _dir: dir, cert, key })
}

/// wabridge started in this process, with one phone ringing at SIPp.
async fn start_wabridge(c: &Certs, sipp_port: u16, data: &Path) -> anyhow::Result<(Service, SocketAddr)> {
    let config = Config {
        database_url: format!("sqlite://{}", data.join("bench.db").display()),
        data_dir: data.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        master_key: Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
        workers_enabled: false,
        log: "warn".into(),
        sip_enabled: true,
        sip_listen: "127.0.0.1:0".into(),
        sip_cert_file: c.cert.clone(),
        sip_key_file: c.key.clone(),
        sip_public_host: "sip.test:5061".into(),
        sip_pbx_udp_listen: "127.0.0.1:0".into(),
        sip_pbx_tcp_listen: String::new(),
        sip_trusted_networks: vec!["127.0.0.2/32".into()],
        sip_max_connections_per_source: 100_000,
        ..Config::default()
    };
    let svc = Service::start(config).await?;
    let app = registry::create_app(
        &svc.store,
        &AppInput {
            meta_app_id: Some("1234567890".into()),
            domain: Some("wb.example.com".into()),
            app_secret: Some("f00dfacecafe0123456789abcdef4242".into()),
            ..Default::default()
        },
    )
    .await?;
    let waba = registry::create_waba(
        &svc.store,
        &WabaInput { waba_id: Some("102290129340398".into()), app: Some(app.id), ..Default::default() },
    )
    .await?;
    let phone = registry::create_phone(
        &svc.store,
        &PhoneInput {
            number: Some(NUMBER.into()),
            phone_number_id: Some("106540352242922".into()),
            waba: Some(waba.id),
            ..Default::default()
        },
    )
    .await?;
    let mut phone = svc.store.get_phone(phone.id).await?.ok_or_else(|| anyhow::anyhow!("phone vanished"))?;
    phone.calling_enabled = true;
    phone.calling_status = Some("ENABLED".into());
    phone.asterisk_target = Some(format!("udp:127.0.0.1:{sipp_port}"));
    svc.store.update_phone(&phone).await?;
    svc.store.update_phone_calling(&phone).await?;
    let edge = svc.edge.as_ref().ok_or_else(|| anyhow::anyhow!("edge not running"))?;
    edge.refresh_phones().await;
    let addr = edge.tls_addr;
    Ok((svc, addr))
}

/// `target/release/wabridge serve` as its own process, for the idle-connection memory.
fn start_wabridge_process(c: &Certs) -> anyhow::Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe()?.with_file_name("wabridge");
    anyhow::ensure!(exe.exists(), "{} missing: run `cargo build --release --bin wabridge` first", exe.display());
    let data = c.dir.join("serve");
    std::fs::create_dir_all(&data)?;
    let port = free_tcp_port();
    let child = Command::new(&exe)
        .arg("serve")
        .env("WABRIDGE_DATABASE_URL", format!("sqlite://{}", data.join("serve.db").display()))
        .env("WABRIDGE_DATA_DIR", &data)
        .env("WABRIDGE_LISTEN", "127.0.0.1:0")
        .env("WABRIDGE_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .env("WABRIDGE_LOG", "warn")
        .env("WABRIDGE_SIP_ENABLED", "true")
        .env("WABRIDGE_SIP_LISTEN", format!("127.0.0.1:{port}"))
        .env("WABRIDGE_SIP_CERT_FILE", &c.cert)
        .env("WABRIDGE_SIP_KEY_FILE", &c.key)
        .env("WABRIDGE_SIP_PUBLIC_HOST", "sip.test:5061")
        .env("WABRIDGE_SIP_PBX_UDP_LISTEN", "127.0.0.1:0")
        .env("WABRIDGE_SIP_MAX_CONNECTIONS_PER_SOURCE", "100000")
        // The connections come from 127.0.0.2: untrusted sources are closed at accept.
        .env("WABRIDGE_SIP_TRUSTED_NETWORKS", "[127.0.0.2/32]")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let proc = Proc(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_listening(addr)?;
    Ok((proc, addr))
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(100)); // polling a child's startup with a deadline
    }
    Ok(())
}

fn kamailio_available() -> bool {
    Command::new("kamailio").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        && Path::new(KAMAILIO_MODULES).join("tls.so").exists()
}

/// Kamailio from bench/kamailio/kamailio.cfg: TLS on 127.0.0.1, UDP toward SIPp, one TLS worker.
fn start_kamailio(c: &Certs, sipp_port: u16) -> anyhow::Result<(Proc, SocketAddr)> {
    let dir = c.dir.join("kamailio");
    std::fs::create_dir_all(&dir)?;
    let tls_port = free_tcp_port();
    let udp_port = free_port();
    let tls_cfg = std::fs::read_to_string(format!("{ROOT}/bench/kamailio/tls.cfg"))?
        .replace("@CERT@", &c.cert.display().to_string())
        .replace("@KEY@", &c.key.display().to_string());
    std::fs::write(dir.join("tls.cfg"), tls_cfg)?;
    let cfg = std::fs::read_to_string(format!("{ROOT}/bench/kamailio/kamailio.cfg"))?
        .replace("@TLS_ADDR@", "127.0.0.1")
        .replace("@TLS_PORT@", &tls_port.to_string())
        .replace("@UDP_ADDR@", &format!("127.0.0.1:{udp_port}"))
        .replace("@SIPP@", &format!("127.0.0.1:{sipp_port}"))
        .replace("@TLS_CFG@", &dir.join("tls.cfg").display().to_string())
        .replace("@MODDIR@", KAMAILIO_MODULES);
    std::fs::write(dir.join("kamailio.cfg"), cfg)?;
    let log = std::fs::File::create(dir.join("kamailio.log"))?;
    let child = Command::new("kamailio")
        .args(["-DD", "-E", "-f"])
        .arg(dir.join("kamailio.cfg"))
        .args(["-m", "4096", "-M", "64", "-Y"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let proc = Proc(child);
    let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse()?;
    wait_listening(addr).map_err(|e| anyhow::anyhow!("{e}; see {}", dir.join("kamailio.log").display()))?;
    std::thread::sleep(Duration::from_millis(500));
    Ok((proc, addr))
}

// ---------------------------------------------------------------------------------------------- main

struct Row {
    target: &'static str,
    one: Option<Sweep>,
    many: Option<Sweep>,
    idle: Option<Idle>,
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let limit = nofile_limit();
    let idle_k = a.idle.min(limit.saturating_sub(500));
    println!(
        "bench_sip: {} calls per step from {}/s, 1 and {} connections, {} idle connections (open-files limit {limit}), \
         {cpus} CPUs",
        a.calls, a.rate, a.connections, idle_k
    );
    if idle_k < a.idle {
        println!("  (idle connections capped by the open-files limit; raise it with `ulimit -n 20000`)");
    }
    // The load generator gets one thread; the in-process wabridge its own runtime with two.
    let load_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let c = certs()?;
    let config = caller::client_config(&c.cert)?;
    let want = |t: &str| a.only.as_deref().is_none_or(|o| o == t);
    let mut rows = Vec::new();

    if want("wabridge") {
        let (sipp, port) = sipp_uas()?;
        let data = c.dir.join("inproc");
        std::fs::create_dir_all(&data)?;
        let (svc, addr) = server_rt.block_on(start_wabridge(&c, port, &data))?;
        println!("wabridge edge (in process) at {addr}, SIPp UAS at 127.0.0.1:{port}");
        let one = load_rt.block_on(sweep("wabridge", addr, config.clone(), 1, a.rate, a.calls))?;
        let many = load_rt.block_on(sweep("wabridge", addr, config.clone(), a.connections, a.rate, a.calls))?;
        server_rt.block_on(svc.stop())?;
        drop(sipp);
        let (serve, addr) = start_wabridge_process(&c)?;
        let idle = load_rt.block_on(idle_memory(serve.0.id(), addr, config.clone(), idle_k));
        println!(
            "  wabridge  idle: {} connections ({} failed), PSS {} kB -> {} kB",
            idle.k, idle.failed, idle.before_kb, idle.after_kb
        );
        drop(serve);
        rows.push(Row { target: "wabridge", one: Some(one), many: Some(many), idle: Some(idle) });
    }

    if want("kamailio") {
        if kamailio_available() {
            let (sipp, port) = sipp_uas()?;
            let (kam, addr) = start_kamailio(&c, port)?;
            println!("Kamailio (tcp_children=1) at {addr}, SIPp UAS at 127.0.0.1:{port}");
            let one = load_rt.block_on(sweep("kamailio", addr, config.clone(), 1, a.rate, a.calls))?;
            let many = load_rt.block_on(sweep("kamailio", addr, config.clone(), a.connections, a.rate, a.calls))?;
            drop(kam);
            drop(sipp);
            let (sipp, port) = sipp_uas()?;
            let (kam, addr) = start_kamailio(&c, port)?;
            let idle = load_rt.block_on(idle_memory(kam.0.id(), addr, config.clone(), idle_k));
            println!(
                "  kamailio  idle: {} connections ({} failed), PSS {} kB -> {} kB",
                idle.k, idle.failed, idle.before_kb, idle.after_kb
            );
            drop(kam);
            drop(sipp);
            rows.push(Row { target: "kamailio", one: Some(one), many: Some(many), idle: Some(idle) });
        } else {
            println!("Kamailio not installed (apt-get install kamailio kamailio-tls-modules): skipped");
        }
    }

    println!();
    println!(
        "{:<10} {:>22} {:>22} {:>18} {:>18}",
        "target",
        "zero-fail calls/s, 1",
        format!("zero-fail calls/s, {}", a.connections),
        "reordered (1/many)",
        "kB per idle TLS"
    );
    for r in &rows {
        let best = |s: &Option<Sweep>| {
            s.as_ref().and_then(|s| s.best.as_ref()).map(|b| format!("{:.0}", b.achieved())).unwrap_or("-".into())
        };
        let reordered = |s: &Option<Sweep>| {
            s.as_ref()
                .and_then(|s| s.best.as_ref())
                .map(|b| format!("{}/{}", b.tally.reordered, b.tally.ok))
                .unwrap_or("-".into())
        };
        let idle = r.idle.as_ref().map(|i| format!("{:.1} ({} conns)", i.per_conn_kb(), i.k - i.failed));
        println!(
            "{:<10} {:>22} {:>22} {:>18} {:>18}",
            r.target,
            best(&r.one),
            best(&r.many),
            format!("{} {}", reordered(&r.one), reordered(&r.many)),
            idle.unwrap_or("-".into())
        );
    }
    for r in &rows {
        for (conns, s) in [(1, &r.one), (a.connections, &r.many)] {
            if let Some(l) = s.as_ref().and_then(|s| s.last.as_ref()) {
                println!(
                    "{} over {conns}: first step not clean at {:.0}/s offered ({:.0}/s completed, {} failed)",
                    r.target,
                    l.offered,
                    l.achieved(),
                    l.tally.failed
                );
            }
        }
    }
    Ok(())
}
