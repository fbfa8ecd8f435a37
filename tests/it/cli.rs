//! The `wabridge` CLI, run as a process against both databases.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Db, TestDb};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_wabridge");
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn run(db: &TestDb, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WABRIDGE_DATABASE_URL", &db.url)
        .env("WABRIDGE_DATA_DIR", db.dir.path())
        .env("WABRIDGE_MASTER_KEY", KEY)
        .output()
        .expect("run wabridge")
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(db: &TestDb, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Like `ok`, with `--json`, parsed.
fn json(db: &TestDb, args: &[&str]) -> Value {
    let out = ok(db, &[args, &["--json"]].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

async fn registry_through_the_cli(kind: Db) {
    let db = TestDb::new(kind).await;
    // Registry commands need a database that exists: `migrate` (or `serve`) creates it.
    if kind == Db::Sqlite {
        let e = fails(&db, &["app", "list"]);
        assert!(e.contains("no database at"), "{e}");
    }
    assert!(ok(&db, &["migrate"]).contains("migrations applied"));
    let out = ok(
        &db,
        &[
            "app",
            "add",
            "--meta-app-id",
            "777000111",
            "--domain",
            "wb.example.com",
            "--app-secret",
            "0123456789abcdef0123",
        ],
    );
    assert!(out.contains("https://wb.example.com/api/waba/?app_id=777000111"), "{out}");
    assert!(out.contains("https://wb.example.com/api/waba/"), "{out}");
    let vt = out.lines().find_map(|l| l.trim().strip_prefix("Verify token:")).unwrap().trim().to_string();
    assert!(vt.len() >= 32, "{out}");

    // Readable by default: a table, a `key  value` record; JSON with --json.
    let list = ok(&db, &["app", "list"]);
    assert!(list.starts_with("ID  META APP ID  DOMAIN          NAME\n1   777000111"), "{list}");
    let shown = ok(&db, &["app", "show", "1"]);
    assert!(shown.starts_with("id ") && shown.contains("\napp_secret "), "{shown}");
    assert!(shown.contains("webhook_urls.by_app_id ") && !shown.contains('{'), "{shown}");
    let shown = json(&db, &["app", "show", "1"]);
    assert_eq!(shown["app_secret"], "0123…0123");
    assert_eq!(shown["verify_token"], format!("{}…{}", &vt[..4], &vt[vt.len() - 4..]), "masked in show");
    let revealed = json(&db, &["app", "show", "1", "--reveal-verify-token"]);
    assert_eq!(revealed["verify_token"], vt, "in full on request");
    assert_eq!(json(&db, &["app", "list"])[0]["meta_app_id"], "777000111");

    let waba = json(&db, &["waba", "add", "--waba-id", "555000", "--app", "1"]);
    assert_eq!(waba["app"], 1);
    // `--sms-service` and `--file-proxy` are the same on `add` and `update`: alone they mean true, or take a value.
    let phone = json(
        &db,
        &[
            "phone",
            "add",
            "--number",
            "+44 20 7946 0018",
            "--phone-number-id",
            "888000",
            "--waba",
            "1",
            "--sms-service",
        ],
    );
    assert_eq!(phone["number"], "+442079460018");
    assert_eq!(phone["sms_service"], true);
    let upd = json(&db, &["phone", "update", "1", "--file-proxy", "true", "--sms-service", "false"]);
    assert_eq!(upd["file_proxy"], true);
    assert_eq!(upd["sms_service"], false);
    assert_eq!(json(&db, &["phone", "update", "1", "--sms-service"])["sms_service"], true);
    let other = ["phone", "add", "--number", "+442079460019", "--phone-number-id", "888001", "--waba", "1"];
    let other = json(&db, &[&other[..], &["--sms-service", "false", "--file-proxy"]].concat());
    assert_eq!((&other["sms_service"], &other["file_proxy"]), (&Value::Bool(false), &Value::Bool(true)));
    let list = ok(&db, &["phone", "list"]);
    assert!(
        list.starts_with("ID  NUMBER         PHONE NUMBER ID  WABA  PORTAL  LINE  SMS    CALLING  ARCHIVED"),
        "{list}"
    );
    assert!(list.contains("\n1   +442079460018  888000           1     -       -     true   -        -\n"), "{list}");
    assert!(ok(&db, &["portal", "list"]).contains("MEMBER ID"));
    assert_eq!(json(&db, &["portal", "list"]), Value::Array(vec![]));
    // A phone can be archived (one with history cannot be removed): out of the list unless asked for.
    let archived = json(&db, &["phone", "archive", "2"]);
    assert!(archived["archived_at"].is_string(), "{archived}");
    assert!(!ok(&db, &["phone", "list"]).contains("+442079460019"));
    assert!(ok(&db, &["phone", "list", "--archived"]).contains("+442079460019"));
    assert!(ok(&db, &["phone", "restore", "2"]).contains("restored"));
    assert!(ok(&db, &["phone", "list"]).contains("+442079460019"));
    ok(&db, &["phone", "remove", "2"]);

    // Errors: one line, non-zero exit.
    let e = fails(&db, &["phone", "add", "--number", "12345", "--phone-number-id", "1", "--waba", "1"]);
    assert!(e.contains("number"), "{e}");
    let e = fails(&db, &["phone", "add", "--number", "+442079460018", "--phone-number-id", "2", "--waba", "1"]);
    assert!(e.contains("already exists"), "{e}");
    let e = fails(&db, &["waba", "remove", "1"]);
    assert!(e.contains("phone"), "{e}");
    let e = fails(&db, &["app", "show", "42"]);
    assert!(e.contains("not found"), "{e}");
    let e = fails(&db, &["portal", "show", "42"]);
    assert!(e.contains("not found"), "{e}");

    // API keys: the key is printed once; the list shows its prefix only.
    let key = json(&db, &["api-key", "create", "--name", "shop", "--waba", "1"]);
    let k = key["key"].as_str().unwrap();
    assert!(k.starts_with("wbk_"), "{key}");
    let list = ok(&db, &["api-key", "list"]);
    assert!(list.contains("shop") && list.contains(&k[..8]) && !list.contains(k), "{list}");
    assert_eq!(json(&db, &["api-key", "list"])[0]["prefix"], &k[..8]);
    ok(&db, &["api-key", "revoke", "1"]);
    assert!(fails(&db, &["api-key", "revoke", "1"]).contains("no active API key"));
    // A key limited to phones: each must exist; the list shows them.
    let key = json(&db, &["api-key", "create", "--name", "desk", "--phone", "+44 20 7946 0018"]);
    assert_eq!(key["phones"], serde_json::json!([1]), "{key}");
    let e = fails(&db, &["api-key", "create", "--name", "desk", "--phone", "1", "--phone", "77"]);
    assert!(e.contains("phones[1]"), "{e}");
    let list = ok(&db, &["api-key", "list"]);
    assert!(list.contains("PHONES") && list.lines().any(|l| l.contains("desk") && l.contains(" 1 ")), "{list}");
    assert!(ok(&db, &["templates", "list", "--waba", "1"]).contains("LANGUAGE"));
    assert!(ok(&db, &["templates", "sync", "--waba", "1"]).contains("queued"));
    assert!(fails(&db, &["templates", "list", "--waba", "9"]).contains("not found"));
    assert!(ok(&db, &["sends", "list"]).contains("STATE"));
    assert_eq!(json(&db, &["sends", "list"]), Value::Array(vec![]));
    assert_eq!(json(&db, &["templates", "list", "--waba", "1"]), Value::Array(vec![]));
    assert!(fails(&db, &["sends", "show", "5"]).contains("no send"));

    ok(&db, &["phone", "remove", "1"]);
    ok(&db, &["waba", "remove", "1"]);
    ok(&db, &["app", "remove", "1"]);
    assert!(!ok(&db, &["app", "list"]).contains("777000111"));

    // Token rotation prints a new token.
    let out = ok(&db, &["admin-token", "rotate"]);
    assert!(out.contains("wbr_"), "{out}");
    assert!(json(&db, &["admin-token", "rotate"])["admin_token"].as_str().unwrap().starts_with("wbr_"));
    assert!(ok(&db, &["migrate"]).contains("migrations applied"));
    db.drop_db().await;
}

both_databases!(registry_through_the_cli);

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["migrate"],
        &["admin-token"],
        &["admin-token", "rotate"],
        &["app"],
        &["app", "add"],
        &["app", "list"],
        &["app", "show"],
        &["app", "update"],
        &["app", "remove"],
        &["waba"],
        &["waba", "add"],
        &["waba", "list"],
        &["waba", "show"],
        &["waba", "update"],
        &["waba", "remove"],
        &["phone"],
        &["phone", "add"],
        &["phone", "list"],
        &["phone", "show"],
        &["phone", "update"],
        &["phone", "remove"],
        &["phone", "archive"],
        &["phone", "restore"],
        &["healthcheck"],
        &["demo"],
        &["portal"],
        &["portal", "list"],
        &["portal", "show"],
        &["calling"],
        &["calling", "enable"],
        &["calling", "disable"],
        &["calling", "status"],
        &["certs"],
        &["certs", "dev"],
        &["asterisk-config"],
        &["api-key"],
        &["api-key", "create"],
        &["api-key", "list"],
        &["api-key", "revoke"],
        &["templates"],
        &["templates", "list"],
        &["templates", "sync"],
        &["sends"],
        &["sends", "list"],
        &["sends", "show"],
    ];
    for c in commands {
        let out = Command::new(BIN).args(*c).arg("--help").output().unwrap();
        assert!(out.status.success(), "{c:?} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{c:?}: {text}");
        assert!(!text.contains('\x1b'), "no colour when not a terminal: {c:?}");
    }
    // The three flags `app add` needs are all marked required (in the usage line, not in brackets).
    let out = Command::new(BIN).args(["app", "add", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(usage.contains("--meta-app-id <META_APP_ID> --domain <DOMAIN> --app-secret <APP_SECRET>"), "{usage}");
}

#[test]
fn certs_dev_writes_a_usable_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["certs", "dev", "--host", "sip.example.test", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cert = dir.path().join("sip-cert.pem");
    let key = dir.path().join("sip-key.pem");
    wabridge::edge::tls::ReloadableCert::load(&cert, &key).expect("the pair loads");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let certs = |args: &[&str]| Command::new(BIN).args(args).arg("--dir").arg(dir.path()).output().unwrap();
    // The pair is not overwritten silently...
    let before = std::fs::read(&cert).unwrap();
    let out = certs(&["certs", "dev", "--host", "sip.example.test"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success() && err.contains("exists already") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    // ...only with --force.
    assert!(certs(&["certs", "dev", "--host", "sip.example.test", "--force"]).status.success());
    assert_ne!(std::fs::read(&cert).unwrap(), before);
    // A URL is not a host name: refused, with the host it should have been.
    for (host, says) in [
        ("https://sip.example.test", "use --host sip.example.test"),
        ("sip.example.test:5061", "no scheme, port or path"),
    ] {
        let out = certs(&["certs", "dev", "--host", host, "--force"]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success() && err.contains(says), "{host}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

async fn asterisk_config_for_calling_phones(kind: Db) {
    let db = TestDb::new(kind).await;
    ok(&db, &["migrate"]);
    // No phone with calling: a clear error.
    let e = fails(&db, &["asterisk-config", "--edge-host", "10.0.0.2"]);
    assert!(e.contains("calling"), "{e}");
    ok(
        &db,
        &[
            "app",
            "add",
            "--meta-app-id",
            "777000111",
            "--domain",
            "wb.example.com",
            "--app-secret",
            "0123456789abcdef0123",
        ],
    );
    ok(&db, &["waba", "add", "--waba-id", "555000", "--app", "1"]);
    ok(&db, &["phone", "add", "--number", "+5511930001234", "--phone-number-id", "888000", "--waba", "1"]);
    ok(&db, &["phone", "add", "--number", "+5511930005678", "--phone-number-id", "888001", "--waba", "1"]);
    ok(&db, &["phone", "add", "--number", "+5511930009999", "--phone-number-id", "888002", "--waba", "1"]);
    let store = wabridge::store::Store::connect(&{
        let mut c = db.config();
        c.master_key = Some(KEY.into());
        c
    })
    .await
    .unwrap();
    let mut p = store.get_phone(1).await.unwrap().unwrap();
    p.calling_enabled = true;
    p.calling_status = Some("ENABLED".into());
    p.sip_password = Some("meta-generated-password".into());
    store.update_phone_calling(&p).await.unwrap();
    // Phone 2: calling requested, but Meta refused it. Phone 3: no calling at all.
    let mut p = store.get_phone(2).await.unwrap().unwrap();
    p.calling_enabled = true;
    p.calling_last_error = Some("Meta refused".into());
    store.update_phone_calling(&p).await.unwrap();
    store.close().await;
    let full = run(&db, &["asterisk-config", "--edge-host", "10.0.0.2"]);
    assert!(full.status.success());
    let out = String::from_utf8(full.stdout).unwrap();
    assert!(out.contains("[wa-5511930001234]") && out.contains("rewrite_contact=no"), "{out}");
    assert!(!out.contains("5511930005678") && !out.contains("5511930009999"), "only phones Meta calls: {out}");
    let note = String::from_utf8(full.stderr).unwrap();
    assert!(note.contains("phone 2 is left out") && note.contains("Meta refused"), "{note}");
    assert!(out.contains("exten => +5511930001234,1,"), "{out}");
    assert!(!out.contains("meta-generated-password"), "secrets only on request");
    let out = ok(&db, &["asterisk-config", "--edge-host", "10.0.0.2", "--with-secrets"]);
    assert!(out.contains("password=meta-generated-password"));
    db.drop_db().await;
}

both_databases!(asterisk_config_for_calling_phones);

/// The newcomer's frictions with where the database is: a command run in another directory, a URL into a
/// directory that does not exist, a TOML typo, PostgreSQL down.
#[test]
fn the_database_is_found_or_the_command_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let wabridge = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap()
    };
    let one_line = |out: &Output| {
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr.clone()).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    };
    // In a directory without a database: refused, naming the file it looked for; nothing is created.
    let err = one_line(&wabridge(&["admin-token", "rotate"]));
    let looked = dir.path().join("data").join("wabridge.db");
    assert!(err.contains(&format!("no database at {}", looked.display())), "{err}");
    assert!(err.contains("'wabridge serve' or 'wabridge migrate' creates it"), "{err}");
    assert!(!dir.path().join("data").exists(), "no database or key created");
    // `migrate` (like `serve`) creates the default data directory, the database and the key...
    assert!(wabridge(&["migrate"]).status.success());
    assert!(looked.exists() && dir.path().join("data/master.key").exists());
    // ...and then the registry commands work there.
    let out = wabridge(&["admin-token", "rotate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the key file the secrets cannot be opened: refused rather than a new key.
    std::fs::rename(dir.path().join("data/master.key"), dir.path().join("master.key.bak")).unwrap();
    let err = one_line(&wabridge(&["app", "list"]));
    assert!(err.contains("no master key at") && err.contains("master.key"), "{err}");
    assert!(!dir.path().join("data/master.key").exists());

    // A sqlite URL into a directory that does not exist is not created silently (only data_dir is).
    let url = format!("sqlite://{}/typo/wabridge.db", dir.path().display());
    let err = one_line(&wabridge(&["migrate", "--database-url", &url]));
    assert!(err.contains(&format!("does not exist: {}", dir.path().join("typo").display())), "{err}");
    assert!(!dir.path().join("typo").exists());

    // A TOML typo: the key, the file, and the nearest key.
    std::fs::write(dir.path().join("w.toml"), "lisen = \"127.0.0.1:9000\"\n").unwrap();
    let err = one_line(&wabridge(&["--config", "w.toml", "app", "list"]));
    assert!(err.starts_with("error: configuration: unknown key 'lisen' in "), "{err}");
    assert!(err.trim_end().ends_with("w.toml; did you mean 'listen'?"), "{err}");
}

#[test]
fn postgres_down_fails_fast_naming_host_and_cause() {
    // Port 1 on the loopback: nothing listens there, the connection is refused at once.
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["app", "list"])
        .env("WABRIDGE_DATABASE_URL", "postgres://postgres@127.0.0.1:1/wabridge")
        .env("WABRIDGE_MASTER_KEY", KEY)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot connect to PostgreSQL at 127.0.0.1:1 (database \"wabridge\")"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "the cause: {err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert!(took < Duration::from_secs(5), "failed fast: {took:?}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `serve` with its output piped (as under systemd or docker): no colour codes, the warning about a SIP edge on
/// all interfaces with the default (self-signed) certificate, and `healthcheck` answered.
#[test]
fn serve_logs_plain_text_and_answers_healthcheck() {
    let dir = tempfile::tempdir().unwrap();
    let wabridge = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WABRIDGE_MASTER_KEY", KEY)
            .env("WABRIDGE_SIP_ENABLED", "true")
            .env("WABRIDGE_SIP_LISTEN", "0.0.0.0:0")
            .env("WABRIDGE_SIP_PBX_UDP_LISTEN", "127.0.0.1:0");
        c
    };
    assert!(wabridge(&["certs", "dev", "--host", "sip.example.test"]).status().unwrap().success());
    let mut child =
        wabridge(&["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("serve stopped before listening");
        }
        if let Some(u) = line.trim().strip_prefix("wabridge listening on ") {
            break u.to_string();
        }
        assert!(Instant::now() < deadline, "serve did not start");
    };
    let health = wabridge(&["healthcheck", "--url", &format!("{url}/healthz")]).output().unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));
    assert!(String::from_utf8(health.stdout).unwrap().starts_with("ok ("));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("INFO") && !log.contains('\x1b'), "plain text when piped: {log}");
    assert!(log.contains("WARN") && log.contains("sip_enabled with the default certificate files"), "{log}");
    // Nothing answers: a clear failure.
    let out = wabridge(&["healthcheck", "--url", &format!("{url}/healthz")]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["app", "list"])
        .env("WABRIDGE_DATABASE_URL", "mysql://nope")
        .env("WABRIDGE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("database_url"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The test harness itself: a test whose PostgreSQL, SIPp or browser is missing fails with what to run, unless
/// `WABRIDGE_TEST_SKIP` names it, and then it is a recorded skip, never a silent pass.
#[test]
fn a_missing_prerequisite_fails_unless_left_out_on_purpose() {
    use common::{verdict, Prereq, Verdict};
    let missing = || Err("`sipp -v` did not run".to_string());
    assert_eq!(verdict(Prereq::Sipp, Ok(()), None), Verdict::Run);
    assert_eq!(verdict(Prereq::Sipp, Ok(()), Some("sipp")), Verdict::Run, "available: runs even when listed");
    let Verdict::Fail(message) = verdict(Prereq::Sipp, missing(), None) else { panic!("a missing SIPp must fail") };
    assert!(message.contains("apt-get install sip-tester") && message.contains("WABRIDGE_TEST_SKIP=sipp"), "{message}");
    assert!(matches!(verdict(Prereq::Sipp, missing(), Some("postgres")), Verdict::Fail(_)), "only what is named");
    assert_eq!(verdict(Prereq::Sipp, missing(), Some("postgres, SIPP")), Verdict::Skip("`sipp -v` did not run".into()));
    let pg = verdict(Prereq::Postgres, Err("refused".into()), Some(""));
    assert!(matches!(pg, Verdict::Fail(m) if m.contains("WABRIDGE_TEST_POSTGRES")));
    let browser = verdict(Prereq::Browser, Err("no chromedriver".into()), None);
    assert!(
        matches!(browser, Verdict::Fail(m) if m.contains("chromium-driver") && m.contains("WABRIDGE_TEST_SKIP=browser"))
    );
    let browser = verdict(Prereq::Browser, Err("no chromedriver".into()), Some("sipp,browser"));
    assert_eq!(browser, Verdict::Skip("no chromedriver".into()));
}
