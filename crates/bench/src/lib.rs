//! What the `bench_*` programs share: CPU accounting from /proc, and a fresh database per run.

/// CPU accounting from /proc: per thread group of this process (by thread name: `sandbox*`, `wabridge*`,
/// `sqlx-sqlite*`, anything else), the whole process, PostgreSQL's processes, and the machine (to see what other
/// jobs on the shared machine took meanwhile).
pub mod cpu {
    use std::collections::BTreeMap;

    #[derive(Clone, Debug, Default)]
    pub struct CpuSnap {
        /// Thread group → ticks.
        pub groups: BTreeMap<&'static str, u64>,
        pub process: u64,
        pub postgres: u64,
        pub machine_busy: u64,
        pub machine_total: u64,
    }

    pub fn ticks_of_stat(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // Fields after comm: state(3) ... utime(14) stime(15) → indices 11, 12 here.
        let utime: u64 = rest.get(11)?.parse().ok()?;
        let stime: u64 = rest.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    }

    pub fn group_of(comm: &str) -> &'static str {
        if comm.starts_with("sandbox") {
            "sandbox"
        } else if comm.starts_with("wabridge") {
            "wabridge"
        } else if comm.starts_with("sqlx-sqlite") {
            "sqlite"
        } else {
            "other"
        }
    }

    pub fn cpu_snap() -> CpuSnap {
        let mut s = CpuSnap::default();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for e in dir.flatten() {
                if let Some((comm, t)) =
                    std::fs::read_to_string(e.path().join("stat")).ok().as_deref().and_then(ticks_of_stat)
                {
                    *s.groups.entry(group_of(&comm)).or_default() += t;
                }
            }
        }
        s.process =
            std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(ticks_of_stat).map_or(0, |x| x.1);
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                if let Some((comm, t)) =
                    std::fs::read_to_string(e.path().join("stat")).ok().as_deref().and_then(ticks_of_stat)
                {
                    if comm.starts_with("postgres") {
                        s.postgres += t;
                    }
                }
            }
        }
        if let Some(line) = std::fs::read_to_string("/proc/stat").ok().and_then(|t| t.lines().next().map(String::from))
        {
            let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            let total: u64 = v.iter().take(8).sum();
            s.machine_total = total;
            s.machine_busy = total - idle;
        }
        s
    }

    /// CPU used between two snapshots, in seconds (ticks are 1/100 s on Linux).
    #[derive(Clone, Debug, Default)]
    pub struct Cpu {
        pub groups: BTreeMap<&'static str, f64>,
        pub process: f64,
        pub postgres: f64,
        /// Busy cores of the whole machine, averaged over the phase.
        pub machine_cores: f64,
        pub wall: f64,
    }

    pub const TICK: f64 = 0.01;

    pub fn cpu_delta(a: &CpuSnap, b: &CpuSnap, wall: f64) -> Cpu {
        let mut groups = BTreeMap::new();
        for (k, v) in &b.groups {
            let before = a.groups.get(k).copied().unwrap_or(0);
            groups.insert(*k, v.saturating_sub(before) as f64 * TICK);
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let total = b.machine_total.saturating_sub(a.machine_total).max(1) as f64;
        Cpu {
            groups,
            process: b.process.saturating_sub(a.process) as f64 * TICK,
            postgres: b.postgres.saturating_sub(a.postgres) as f64 * TICK,
            machine_cores: b.machine_busy.saturating_sub(a.machine_busy) as f64 / total * cores,
            wall,
        }
    }

    impl Cpu {
        pub fn group(&self, g: &str) -> f64 {
            self.groups.get(g).copied().unwrap_or(0.0)
        }
        /// Cores used outside this process and PostgreSQL: other work on the shared machine.
        pub fn others_cores(&self) -> f64 {
            (self.machine_cores - (self.process + self.postgres) / self.wall.max(1e-9)).max(0.0)
        }
        pub fn describe(&self) -> String {
            format!(
                "CPU s: wabridge/client runtime {:.2}, sqlite threads {:.2}, sandbox {:.2}, other threads {:.2}, \
                 process {:.2}, postgres {:.2}; machine busy {:.2} cores of which others {:.2}",
                self.group("wabridge"),
                self.group("sqlite"),
                self.group("sandbox"),
                self.group("other"),
                self.process,
                self.postgres,
                self.machine_cores,
                self.others_cores()
            )
        }
    }

    pub fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

/// A fresh database per run: a new PostgreSQL database under `base` (dropped by [`drop_pg`]), or a SQLite file in
/// `dir`.
pub mod db {
    /// The URL of a fresh database named after `bench` and `run` (PostgreSQL when `pg` is its base URL,
    /// `postgres://user@host:port`; else SQLite in `dir`).
    pub async fn database_url(
        pg: &Option<String>,
        dir: &std::path::Path,
        bench: &str,
        run: &str,
    ) -> anyhow::Result<String> {
        Ok(match pg {
            Some(base) => {
                let name = pg_name(bench, run);
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&mut c).await?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await?;
                format!("{base}/{name}")
            }
            None => format!("sqlite://{}", dir.join("bench.db").display()),
        })
    }

    fn pg_name(bench: &str, run: &str) -> String {
        format!("wabridge_{bench}_{}_{}", std::process::id(), run.replace('-', "_"))
    }

    /// Drops the database [`database_url`] made for `bench` and `run`.
    pub async fn drop_pg(base: &str, bench: &str, run: &str) {
        if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/postgres")).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg_name(bench, run)))
                .execute(&mut c)
                .await;
        }
    }
}

/// A minimal HTTP/1.1 client for load generators: far less CPU per request than a full client, so the servers
/// get most of the machine.
pub mod http1 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A complete `POST` request with a JSON body and an `X-Hub-Signature-256` header, ready to write.
    pub fn signed_post(target: &str, host: &str, sig: &str, body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    }

    /// Writes `request` on a keep-alive connection and reads one response (status line, headers,
    /// `Content-Length` bytes of body) into `buf`. `Some(status)`, or `None` when the connection failed.
    pub async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8], buf: &mut [u8]) -> Option<u16> {
        stream.write_all(request).await.ok()?;
        let mut filled = 0;
        loop {
            match stream.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => filled += n,
            }
            let Some(head_end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
                if filled == buf.len() {
                    return None;
                }
                continue;
            };
            let head = std::str::from_utf8(&buf[..head_end]).unwrap_or("");
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if filled >= head_end + 4 + len {
                return head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            }
            if filled == buf.len() {
                return None;
            }
        }
    }
}

/// The Meta app and WABA every benchmark registers (the sandboxes know the same ids).
pub mod setup {
    use wabridge::registry::{self, AppInput, WabaInput};
    use wabridge::store::Store;

    pub const APP_ID: &str = "1234567890";
    pub const WABA_ID: &str = "102290129340398";

    /// Registers the app (with `secret` and `token`) and its WABA; the WABA's wabridge id.
    pub async fn app_and_waba(store: &Store, secret: &str, token: &str) -> anyhow::Result<i64> {
        let app = registry::create_app(
            store,
            &AppInput {
                meta_app_id: Some(APP_ID.into()),
                domain: Some("wb.example.com".into()),
                app_secret: Some(secret.into()),
                access_token: Some(token.into()),
                ..Default::default()
            },
        )
        .await?;
        let waba = registry::create_waba(
            store,
            &WabaInput { waba_id: Some(WABA_ID.into()), app: Some(app.id), ..Default::default() },
        )
        .await?;
        Ok(waba.id)
    }
}

/// Diagnostic SQL profile (not the product's figures): sqlx emits one `sqlx::query` event per statement with its
/// execution time; [`sql_profile::install`] tallies them per statement and [`sql_profile::print`] shows the
/// twelve that took the most time, and how many of each per message.
pub mod sql_profile {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    pub type SqlTally = Arc<Mutex<HashMap<String, (u64, f64)>>>;

    struct SqlProfile(SqlTally);

    #[derive(Default)]
    struct SqlVisit {
        summary: String,
        statement: String,
        elapsed: f64,
    }

    impl tracing::field::Visit for SqlVisit {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            match field.name() {
                "summary" => self.summary = value.to_string(),
                "db.statement" => self.statement = value.to_string(),
                _ => {}
            }
        }
        fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
            if field.name() == "elapsed_secs" {
                self.elapsed = value;
            }
        }
        fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SqlProfile {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
            if event.metadata().target() != "sqlx::query" {
                return;
            }
            let mut v = SqlVisit::default();
            event.record(&mut v);
            let sql = if v.statement.trim().is_empty() { v.summary } else { v.statement };
            let key: String = sql.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(150).collect();
            let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let e = t.entry(key).or_default();
            e.0 += 1;
            e.1 += v.elapsed;
        }
    }

    pub fn install() -> SqlTally {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let tally = SqlTally::default();
        let filter = tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::DEBUG);
        tracing_subscriber::registry().with(SqlProfile(tally.clone()).with_filter(filter)).init();
        tally
    }

    pub fn print(tally: &SqlTally, messages: usize) {
        let mut rows: Vec<(String, u64, f64)> = {
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            t.drain().map(|(k, (n, s))| (k, n, s)).collect()
        };
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        let total: f64 = rows.iter().map(|r| r.2).sum();
        println!(
            "    SQL profile (statement execution time in SQLite/PostgreSQL as sqlx measures it; total {total:.2} s):"
        );
        for (sql, n, s) in rows.iter().take(12) {
            println!(
                "      {:>7} × {:>7.3} ms = {:>6.2} s ({:>4.1}%, {:.2} per message)  {sql}",
                n,
                s * 1000.0 / (*n).max(1) as f64,
                s,
                s / total.max(1e-9) * 100.0,
                *n as f64 / messages.max(1) as f64
            );
        }
    }
}
