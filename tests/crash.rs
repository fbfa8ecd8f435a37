//! Acknowledged work survives `kill -9`: the real binary is started, fed webhooks, killed, and restarted.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Db, TestDb};
use sqlx::Row;
use wabridge::sandbox::meta::MetaWebhookSender;
use wabridge::sandbox::payloads as p;

const BIN: &str = env!("CARGO_BIN_EXE_wabridge");
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &str = "f00dfacecafe0123456789abcdef4242";

struct Running {
    child: Child,
    url: String,
    token: Option<String>,
}

/// Starts `wabridge serve` on a free port and reads the address (and first-start token) it prints.
/// The caller owns the child and waits for it (clippy cannot see that through the returned struct).
#[allow(clippy::zombie_processes)]
fn serve(db: &TestDb, workers: bool) -> Running {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("WABRIDGE_DATABASE_URL", &db.url)
        .env("WABRIDGE_DATA_DIR", db.dir.path())
        .env("WABRIDGE_MASTER_KEY", KEY)
        .env("WABRIDGE_LISTEN", "127.0.0.1:0")
        .env("WABRIDGE_WORKERS_ENABLED", workers.to_string())
        .env("WABRIDGE_JOB_LEASE_SECONDS", "1")
        .env("WABRIDGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wabridge");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    loop {
        let line = lines.next().expect("wabridge printed its address").unwrap();
        if let Some(t) = line.split_whitespace().find(|w| w.starts_with("wbr_")) {
            token = Some(t.to_string());
        }
        if let Some(url) = line.strip_prefix("wabridge listening on ") {
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return Running { child, url: url.trim().to_string(), token };
        }
    }
}

async fn count(store: &wabridge::store::Store, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(&store.pool).await.unwrap().get::<i64, _>(0)
}

async fn acknowledged_webhooks_survive_kill_9(db: Db) {
    let testdb = TestDb::new(db).await;
    // 1. Workers off: everything acknowledged is committed but not processed when the process dies.
    let mut first = serve(&testdb, false);
    let token = first.token.clone().expect("first start prints the admin token");
    common::seed_over_http(&first.url, &token, SECRET).await;
    let sender = MetaWebhookSender::new(format!("{}/api/waba/?app_id=1234567890", first.url), SECRET);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = sender.clone();
        tasks.push(tokio::spawn(async move {
            let v = p::messages_value(
                "5511930001234",
                "106540352242922",
                vec![p::contact("5511987654321", "C")],
                vec![p::text_message("5511987654321", &format!("wamid.crash-{i}"), i, "x")],
            );
            s.deliver(&p::envelope("102290129340398", "messages", v)).await.delivered
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "every webhook acknowledged");
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let store = wabridge::store::Store::connect(&testdb.config()).await.unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM inbox").await, 60, "every acknowledged body is on disk");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM jobs WHERE done_at IS NULL").await, 60);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM messages").await, 0);

    // 2. Restart with workers on: processing finishes.
    let mut second = serve(&testdb, true);
    assert!(second.token.is_none(), "no new admin token on restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&store, "SELECT COUNT(*) FROM jobs WHERE kind = 'inbox.process' AND done_at IS NOT NULL").await < 60 {
        assert!(Instant::now() < deadline, "processing did not finish after restart");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the database with a deadline
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM messages").await, 60);

    // 3. Graceful stop on SIGTERM exits cleanly.
    let status = Command::new("kill").args(["-TERM", &second.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(second.child.wait().unwrap().success(), "clean exit on SIGTERM");
    store.close().await;
    testdb.drop_db().await;
}

both_databases!(acknowledged_webhooks_survive_kill_9);
