//! Test harness: starts the whole service on 127.0.0.1:0 against a fresh database (SQLite in a temporary
//! directory, or a fresh PostgreSQL database), and talks to it over real HTTP.
//!
//! PostgreSQL is at `WABRIDGE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`). A test whose
//! PostgreSQL or SIPp is missing fails, saying what to run, unless `WABRIDGE_TEST_SKIP` leaves it out on purpose
//! (then it is recorded for the summary `scripts/test` prints); see [`prerequisite`].
#![allow(dead_code)]

pub mod bridge;

use std::path::PathBuf;

use serde_json::{json, Value};
use sqlx::Connection;
use wabridge::{Config, Service};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Declares `mod name { sqlite, postgres }` tests that run `name(Db)` once per database.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::common::Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_available().await { super::$name($crate::common::Db::Postgres).await }
            }
        }
    )*};
}

fn pg_base() -> String {
    std::env::var("WABRIDGE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// What some tests need besides Rust: a PostgreSQL server and SIPp (the PBX side of the SIP edge tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    Postgres,
    Sipp,
    /// Headless Chromium and chromedriver (the console's browser tests).
    Browser,
    /// The published Python `standardwebhooks` package, in a virtualenv `scripts/test` makes.
    StandardWebhooks,
}

impl Prereq {
    /// Its name in `WABRIDGE_TEST_SKIP` (a comma-separated list: `postgres`, `sipp`).
    pub fn name(self) -> &'static str {
        match self {
            Prereq::Postgres => "postgres",
            Prereq::Sipp => "sipp",
            Prereq::Browser => "browser",
            Prereq::StandardWebhooks => "standardwebhooks",
        }
    }

    fn how_to_get(self) -> &'static str {
        match self {
            Prereq::Postgres => {
                "start PostgreSQL (Debian: `pg_ctlcluster --skip-systemctl-redirect 15 main start`) or point \
                 WABRIDGE_TEST_POSTGRES at one; `scripts/test` does this for you"
            }
            Prereq::Sipp => "install SIPp (Debian: `apt-get install sip-tester`); `scripts/test` does this for you",
            Prereq::Browser => {
                "install Chromium and its WebDriver (Debian: `apt-get install chromium chromium-driver`); \
                 `scripts/test` does this for you"
            }
            Prereq::StandardWebhooks => {
                "make the virtualenv: `python3 -m venv target/tools/standardwebhooks && \
                 target/tools/standardwebhooks/bin/pip install standardwebhooks==1.1.0`, or point \
                 WABRIDGE_TEST_STANDARDWEBHOOKS_PYTHON at a Python that has it; `scripts/test` does this for you"
            }
        }
    }
}

/// What becomes of a test that needs something.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Left out on purpose: the reason, for the summary.
    Skip(String),
    /// Missing and not left out: the test fails with this message.
    Fail(String),
}

/// The decision, pure: `skip_list` is `WABRIDGE_TEST_SKIP` (comma-separated names, e.g. `postgres,sipp`).
pub fn verdict(what: Prereq, available: Result<(), String>, skip_list: Option<&str>) -> Verdict {
    let Err(why) = available else { return Verdict::Run };
    let opted_out = skip_list.is_some_and(|v| v.split(',').any(|s| s.trim().eq_ignore_ascii_case(what.name())));
    if opted_out {
        return Verdict::Skip(why);
    }
    Verdict::Fail(format!(
        "this test needs {}, which is not available ({why}): {}; or set WABRIDGE_TEST_SKIP={} to leave such tests \
         out on purpose",
        what.name(),
        what.how_to_get(),
        what.name()
    ))
}

/// Decides whether a test that needs `what` runs (see [`verdict`]). Available: true. Missing and left out with
/// `WABRIDGE_TEST_SKIP`: the skip is recorded in `target/tmp/skipped-tests.log` (which `scripts/test` prints as
/// a summary) and false. Missing and not left out: the test fails, saying what to run. A test that did not run
/// never looks passed by accident.
pub fn prerequisite(what: Prereq, available: Result<(), String>) -> bool {
    let why = match verdict(what, available, std::env::var("WABRIDGE_TEST_SKIP").ok().as_deref()) {
        Verdict::Run => return true,
        Verdict::Fail(message) => panic!("{message}"),
        Verdict::Skip(why) => why,
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("{}\t{}\t{test}\t{why}\n", what.name(), env!("CARGO_CRATE_NAME"));
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = f.write_all(line.as_bytes());
    }
    eprintln!("left out on purpose (WABRIDGE_TEST_SKIP, recorded for the summary): {test} needs {}", what.name());
    false
}

/// True when PostgreSQL answers; see [`prerequisite`] for what happens when it does not.
pub async fn postgres_available() -> bool {
    let url = format!("{}/postgres", pg_base());
    let reached = match sqlx::PgConnection::connect(&url).await {
        Ok(c) => {
            let _ = c.close().await;
            Ok(())
        }
        Err(e) => Err(format!("no PostgreSQL at {url}: {e}")),
    };
    prerequisite(Prereq::Postgres, reached)
}

/// True when SIPp runs; see [`prerequisite`] for what happens when it does not.
pub fn sipp_available() -> bool {
    let ran = std::process::Command::new("sipp")
        .arg("-v")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    prerequisite(Prereq::Sipp, ran.map(|_| ()).map_err(|e| format!("`sipp -v` did not run: {e}")))
}

/// True when `chromedriver` and `chromium` run; see [`prerequisite`] for what happens when they do not.
pub fn browser_available() -> bool {
    let runs = |program: &str| -> Result<(), String> {
        match std::process::Command::new(program).arg("--version").output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("`{program} --version` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Err(format!("`{program} --version` did not run: {e}")),
        }
    };
    prerequisite(Prereq::Browser, runs("chromedriver").and_then(|_| runs("chromium")))
}

/// The Python that has the `standardwebhooks` package: `WABRIDGE_TEST_STANDARDWEBHOOKS_PYTHON`, else the
/// virtualenv `scripts/test` makes in `<target>/tools/standardwebhooks`.
pub fn standardwebhooks_python() -> PathBuf {
    if let Ok(p) = std::env::var("WABRIDGE_TEST_STANDARDWEBHOOKS_PYTHON") {
        return PathBuf::from(p);
    }
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("the target directory");
    target.join("tools/standardwebhooks/bin/python")
}

/// True when that Python imports `standardwebhooks`; see [`prerequisite`] for what happens when it does not.
pub fn standardwebhooks_available() -> bool {
    let python = standardwebhooks_python();
    let ran = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let available = match ran {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err(format!("{} cannot import standardwebhooks", python.display())),
        Err(e) => Err(format!("{} does not run: {e}", python.display())),
    };
    prerequisite(Prereq::StandardWebhooks, available)
}

/// A fresh, empty database and a data directory, removed when dropped (PostgreSQL databases by `drop_db`).
pub struct TestDb {
    pub kind: Db,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(kind: Db) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match kind {
            Db::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("wabridge.db").display());
                TestDb { kind, url, dir, pg_name: None }
            }
            Db::Postgres => {
                let name = format!("wabridge_t_{}", wabridge::seal::random_token(12).to_lowercase());
                let mut c = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await.expect("postgres");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("create database");
                let _ = c.close().await;
                TestDb { kind, url: format!("{}/{name}", pg_base()), dir, pg_name: Some(name) }
            }
        }
    }

    pub fn config(&self) -> Config {
        Config {
            database_url: self.url.clone(),
            data_dir: self.dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            master_key: Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
            workers_enabled: false,
            database_max_connections: 8,
            ..Config::default()
        }
    }

    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        ["wabridge.db", "wabridge.db-wal"].iter().map(|f| self.dir.path().join(f)).filter(|p| p.exists()).collect()
    }

    pub async fn drop_db(&self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut c) = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                let _ = c.close().await;
            }
        }
    }
}

pub struct TestApp {
    pub svc: Service,
    pub db: TestDb,
    pub token: String,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn start(kind: Db) -> TestApp {
        let db = TestDb::new(kind).await;
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = db.config();
        tweak(&mut config);
        let svc = Service::start(config).await.expect("service starts");
        let token = svc.new_admin_token.clone().expect("first start creates an admin token");
        TestApp { svc, db, token, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.svc.url())
    }

    /// An admin API call with the admin token; returns status and JSON body (Null when empty).
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(&format!("/admin/api/v1{path}"))).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON answer") })
    }

    /// Registers app → WABA → phone, returning (app, waba, phone) JSON views.
    pub async fn seed(&self, secret: &str) -> (Value, Value, Value) {
        seed_over_http(&self.svc.url(), &self.token, secret).await
    }

    pub async fn stop(self) {
        self.svc.stop().await.expect("clean stop");
        self.db.drop_db().await;
    }
}

/// Registers a second app and WABA (777), for scope tests; returns the WABA's view.
pub async fn another_waba(app: &TestApp) -> Value {
    let body = json!({"meta_app_id": "999", "domain": "o.example.com", "app_secret": "s".repeat(32)});
    let (_, other_app) = app.admin("POST", "/apps", Some(body)).await;
    let (st, waba) = app.admin("POST", "/wabas", Some(json!({"waba_id": "777", "app": other_app["id"]}))).await;
    assert_eq!(st, 201, "{waba}");
    waba
}

/// Registers app 1234567890 (host wb.example.com) → WABA 102290129340398 → phone +5511930001234
/// (phone_number_id 106540352242922) through the admin API of a service at `base`.
pub async fn seed_over_http(base: &str, token: &str, secret: &str) -> (Value, Value, Value) {
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{base}/admin/api/v1{path}")).bearer_auth(token).json(&body);
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("JSON answer");
            assert_eq!(status, 201, "{body}");
            body
        }
    };
    let app = post(
        "/apps",
        json!({"meta_app_id": "1234567890", "domain": "wb.example.com", "app_secret": secret,
               "access_token": "EAAG-system-user-token-0001"}),
    )
    .await;
    let waba = post("/wabas", json!({"waba_id": "102290129340398", "app": app["id"]})).await;
    let phone = post(
        "/phones",
        json!({"number": "+55 11 93000-1234", "phone_number_id": "106540352242922", "waba": waba["id"]}),
    )
    .await;
    (app, waba, phone)
}
