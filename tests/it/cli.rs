//! The `wabridge` CLI, run as a process against both databases.

use crate::common;

use std::process::{Command, Output};

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

async fn registry_through_the_cli(kind: Db) {
    let db = TestDb::new(kind).await;
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

    let list = ok(&db, &["app", "list"]);
    assert!(list.contains("777000111") && list.contains("wb.example.com"), "{list}");
    let shown: Value = serde_json::from_str(&ok(&db, &["app", "show", "1"])).unwrap();
    assert_eq!(shown["app_secret"], "0123…0123");
    assert_eq!(shown["verify_token"], format!("{}…{}", &vt[..4], &vt[vt.len() - 4..]), "masked in show");
    let revealed: Value = serde_json::from_str(&ok(&db, &["app", "show", "1", "--reveal-verify-token"])).unwrap();
    assert_eq!(revealed["verify_token"], vt, "in full on request");

    let waba: Value = serde_json::from_str(&ok(&db, &["waba", "add", "--waba-id", "555000", "--app", "1"])).unwrap();
    assert_eq!(waba["app"], 1);
    let phone: Value = serde_json::from_str(&ok(
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
    ))
    .unwrap();
    assert_eq!(phone["number"], "+442079460018");
    assert_eq!(phone["sms_service"], true);
    let upd: Value =
        serde_json::from_str(&ok(&db, &["phone", "update", "1", "--file-proxy", "true", "--sms-service", "false"]))
            .unwrap();
    assert_eq!(upd["file_proxy"], true);
    assert_eq!(upd["sms_service"], false);
    assert!(ok(&db, &["phone", "list"]).contains("+442079460018"));
    assert!(ok(&db, &["portal", "list"]).contains("MEMBER ID"));

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
    let key: Value = serde_json::from_str(&ok(&db, &["api-key", "create", "--name", "shop", "--waba", "1"])).unwrap();
    let k = key["key"].as_str().unwrap();
    assert!(k.starts_with("wbk_"), "{key}");
    let list = ok(&db, &["api-key", "list"]);
    assert!(list.contains("shop") && list.contains(&k[..8]) && !list.contains(k), "{list}");
    ok(&db, &["api-key", "revoke", "1"]);
    assert!(fails(&db, &["api-key", "revoke", "1"]).contains("no active API key"));
    assert!(ok(&db, &["templates", "list", "--waba", "1"]).contains("LANGUAGE"));
    assert!(ok(&db, &["templates", "sync", "--waba", "1"]).contains("queued"));
    assert!(fails(&db, &["templates", "list", "--waba", "9"]).contains("not found"));
    assert!(ok(&db, &["sends", "list"]).contains("STATE"));
    assert!(fails(&db, &["sends", "show", "5"]).contains("no send"));

    ok(&db, &["phone", "remove", "1"]);
    ok(&db, &["waba", "remove", "1"]);
    ok(&db, &["app", "remove", "1"]);
    assert!(!ok(&db, &["app", "list"]).contains("777000111"));

    // Token rotation prints a new token.
    let out = ok(&db, &["admin-token", "rotate"]);
    assert!(out.contains("wbr_"), "{out}");
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
    }
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
}

async fn asterisk_config_for_calling_phones(kind: Db) {
    let db = TestDb::new(kind).await;
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
    let store = wabridge::store::Store::connect(&{
        let mut c = db.config();
        c.master_key = Some(KEY.into());
        c
    })
    .await
    .unwrap();
    let mut p = store.get_phone(1).await.unwrap().unwrap();
    p.calling_enabled = true;
    p.sip_password = Some("meta-generated-password".into());
    store.update_phone_calling(&p).await.unwrap();
    store.close().await;
    let out = ok(&db, &["asterisk-config", "--edge-host", "10.0.0.2"]);
    assert!(out.contains("[wa-5511930001234]") && out.contains("rewrite_contact=no"), "{out}");
    assert!(out.contains("exten => +5511930001234,1,"), "{out}");
    assert!(!out.contains("meta-generated-password"), "secrets only on request");
    let out = ok(&db, &["asterisk-config", "--edge-host", "10.0.0.2", "--with-secrets"]);
    assert!(out.contains("password=meta-generated-password"));
    db.drop_db().await;
}

both_databases!(asterisk_config_for_calling_phones);

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
