//! Acknowledged work survives `kill -9`: the real binary is started, fed webhooks, killed, and restarted.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Db, TestDb};
use sqlx::Row;
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

const BIN: &str = env!("CARGO_BIN_EXE_wabridge");
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &str = "f00dfacecafe0123456789abcdef4242";

struct Running {
    child: Child,
    url: String,
    token: Option<String>,
}

/// A test that fails half-way leaves no server behind (it would hold the test's output pipe open).
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `wabridge serve` on a free port and reads the address (and first-start token) it prints.
/// The caller owns the child and waits for it (clippy cannot see that through the returned struct).
#[allow(clippy::zombie_processes)]
fn serve(db: &TestDb, workers: bool) -> Running {
    serve_with(db, workers, &[])
}

#[allow(clippy::zombie_processes)]
fn serve_with(db: &TestDb, workers: bool, env: &[(&str, String)]) -> Running {
    serve_at(&db.url, db.dir.path(), workers, env)
}

#[allow(clippy::zombie_processes)]
fn serve_at(url: &str, dir: &std::path::Path, workers: bool, env: &[(&str, String)]) -> Running {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("WABRIDGE_DATABASE_URL", url)
        .env("WABRIDGE_DATA_DIR", dir)
        .env("WABRIDGE_MASTER_KEY", KEY)
        .env("WABRIDGE_LISTEN", "127.0.0.1:0")
        .env("WABRIDGE_WORKERS_ENABLED", workers.to_string())
        .env("WABRIDGE_JOB_LEASE_SECONDS", "1")
        .env("WABRIDGE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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
    sqlx::query(sql).fetch_one(store.raw_pool()).await.unwrap().get::<i64, _>(0)
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

fn stop(mut r: Running) {
    let status = Command::new("kill").args(["-TERM", &r.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(r.child.wait().unwrap().success(), "clean exit on SIGTERM");
}

const PNID: &str = "106540352242922";

/// The Graph sandbox with our number and templates, no status webhooks.
async fn graph_sandbox() -> wabridge_sandbox::graph::GraphSandbox {
    let graph = wabridge_sandbox::graph::GraphSandbox::start().await.unwrap();
    graph.allow_token("EAAG-system-user-token-0001", "1234567890");
    graph.add_number(PNID, "5511930001234", "102290129340398");
    graph.set_status_progression(PNID, wabridge_sandbox::graph_messages::Progression::Silent);
    for t in common::bridge::templates() {
        graph.add_template("102290129340398", t);
    }
    graph
}

/// Registers app, WABA and number through a first process, syncs the templates, applies `phone` to the number
/// (`PATCH`), creates an API key and stops the process cleanly. Returns the key.
async fn registered(testdb: &TestDb, env: &[(&str, String)], phone: serde_json::Value) -> String {
    let http = reqwest::Client::new();
    let first = serve_with(testdb, true, env);
    let token = first.token.clone().expect("first start prints the admin token");
    common::seed_over_http(&first.url, &token, SECRET).await;
    let admin = |m: reqwest::Method, path: &str| {
        http.request(m, format!("{}/admin/api/v1{path}", first.url)).bearer_auth(&token)
    };
    assert_eq!(admin(reqwest::Method::PATCH, "/phones/1").json(&phone).send().await.unwrap().status(), 200);
    assert_eq!(admin(reqwest::Method::POST, "/wabas/1/templates/sync").send().await.unwrap().status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t: serde_json::Value =
            admin(reqwest::Method::GET, "/wabas/1/templates").send().await.unwrap().json().await.unwrap();
        if t.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "templates never synced");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling with a deadline
    }
    let key: serde_json::Value = admin(reqwest::Method::POST, "/api-keys")
        .json(&serde_json::json!({"name": "crash"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stop(first);
    key["key"].as_str().unwrap().to_string()
}

async fn notify(http: &reqwest::Client, url: &str, key: &str, i: usize) {
    let r = http
        .post(format!("{url}/api/v1/notifications"))
        .bearer_auth(key)
        .json(&serde_json::json!({"from": "+5511930001234", "to": format!("+55119876{i:05}"), "template": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

async fn acknowledged_sends_survive_kill_9_and_go_out_once(db: Db) {
    let testdb = TestDb::new(db).await;
    let graph = graph_sandbox().await;
    let env = [("WABRIDGE_GRAPH_BASE_URL", graph.base_url())];
    let http = reqwest::Client::new();
    // 0. Register, sync the templates, create an API key.
    let key = registered(&testdb, &env, serde_json::json!({})).await;

    // 1. Workers off: 30 notifications acknowledged (202), then kill -9.
    let mut second = serve_with(&testdb, false, &env);
    for i in 0..30 {
        notify(&http, &second.url, &key, i).await;
    }
    second.child.kill().unwrap(); // SIGKILL
    second.child.wait().unwrap();
    let store = wabridge::store::Store::connect(&testdb.config()).await.unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM outbound WHERE state = 'queued'").await, 30);
    assert!(graph.all_sent().is_empty());

    // 2. Restart with workers on: every acknowledged send goes out, once.
    let third = serve_with(&testdb, true, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&store, "SELECT COUNT(*) FROM outbound WHERE state = 'accepted'").await < 30 {
        assert!(Instant::now() < deadline, "the sends did not go out after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the database with a deadline
    }
    assert_eq!(graph.all_sent().len(), 30);
    stop(third);
    store.close().await;
    graph.stop().await;
    testdb.drop_db().await;
}

/// `kill -9` while a number works through a backlog: nothing is lost; sends that were only leased (not marked
/// started) go out as soon as their leases expire; only the few marked ones (a quarter second's worth and those
/// in flight) wait out the reconcile window before they are sent again.
async fn a_kill_while_sending_resends_only_what_may_have_gone(db: Db) {
    let testdb = TestDb::new(db).await;
    let graph = graph_sandbox().await;
    graph.set_throughput(PNID, 20);
    let env = [
        ("WABRIDGE_GRAPH_BASE_URL", graph.base_url()),
        ("WABRIDGE_SEND_RECONCILE_SECONDS", "8".to_string()),
        ("WABRIDGE_SEND_PAIR_INTERVAL_MS", "1".to_string()),
        ("WABRIDGE_SEND_PAIR_BURST", "1000".to_string()),
    ];
    let http = reqwest::Client::new();
    let key = registered(&testdb, &env, serde_json::json!({"throughput_mps": 20})).await;
    let n = 60; // 3 s at 20/s

    // 1. The whole backlog is acknowledged first (workers off), however slowly this machine takes requests.
    let queued = serve_with(&testdb, false, &env);
    for i in 0..n {
        notify(&http, &queued.url, &key, i).await;
    }
    stop(queued);
    // 2. Workers on; kill -9 at the moment Meta takes the 10th send (before it is answered): an event, not a poll.
    //    The sandbox holds that request (and, under its lock, every other) until the kill has been delivered.
    let (pid_tx, pid_rx) = std::sync::mpsc::channel::<u32>();
    let (killed_tx, killed_rx) = tokio::sync::oneshot::channel();
    graph.on_accepted(10, move || {
        let pid = pid_rx.recv_timeout(Duration::from_secs(30)).expect("the sender's pid");
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status().is_ok_and(|s| s.success());
        let _ = killed_tx.send(killed);
    });
    let mut first = serve_with(&testdb, true, &env);
    pid_tx.send(first.child.id()).unwrap();
    let killed = tokio::time::timeout(Duration::from_secs(30), killed_rx).await.expect("10 sends reached Meta");
    assert!(killed.unwrap(), "kill -9 was delivered");
    first.child.wait().unwrap();
    let store = wabridge::store::Store::connect(&testdb.config()).await.unwrap();
    let ids = |sql: &'static str| {
        let pool = store.raw_pool().clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_all(&pool).await.unwrap() }
    };
    let maybe = ids("SELECT id FROM outbound WHERE state = 'queued' AND started > attempts").await;
    let never = ids("SELECT id FROM outbound WHERE state = 'queued' AND started = attempts").await;
    assert!(maybe.len() <= 10, "at most a quarter second's worth and those in flight were marked: {}", maybe.len());
    assert!(never.len() > 20, "the kill came mid-backlog ({} never started)", never.len());

    // 3. Restart: the never-started sends go once their 1 s leases expire, well within the 8 s reconcile window.
    let second = serve_with(&testdb, true, &env);
    let deadline = Instant::now() + Duration::from_secs(7);
    let pending = |ids: &[i64]| {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        format!("SELECT COUNT(*) FROM outbound WHERE id IN ({list}) AND state <> 'accepted'")
    };
    let never_left = pending(&never);
    while count(&store, &never_left).await > 0 {
        assert!(Instant::now() < deadline, "never-started sends waited as if they might have been sent");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the database with a deadline
    }
    // 4. The maybe-sent ones go again after the window (no status webhook told us): all accepted, nothing lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&store, "SELECT COUNT(*) FROM outbound WHERE state = 'accepted'").await < n as i64 {
        assert!(Instant::now() < deadline, "not every send went out after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the database with a deadline
    }
    let sent = graph.all_sent().len();
    assert!(
        sent >= n && sent <= n + maybe.len(),
        "{sent} sent for {n} messages ({} maybe sent at the kill)",
        maybe.len()
    );
    let per_second = graph.accepted_per_second(PNID);
    assert!(per_second.iter().all(|(_, c)| *c <= 20), "at most 20 in any second: {per_second:?}");
    stop(second);
    store.close().await;
    graph.stop().await;
    testdb.drop_db().await;
}

/// The whole path under `kill -9`: customers write (each their next message only after the previous got 200),
/// the portal gets every message, operators answer from the portal, Meta gets every answer and reports
/// statuses, while the process is killed at random points of the traffic and restarted at once. Per conversation: nothing
/// lost, nothing reordered, nothing twice except what wabridge itself recorded as "sent again without being
/// able to tell" (`messages.crm_resent_uncertain`, `outbound.resent_unconfirmed`; both are counted in /metrics).
async fn the_whole_path_survives_kill_9(db: Db) {
    use rand::Rng;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use wabridge_sandbox::bitrix::{BitrixOptions, BitrixSandbox};

    const CUSTOMERS: usize = 12;
    const MESSAGES: usize = 6;
    const KILLS: usize = 5;
    let testdb = TestDb::new(db).await;
    let graph = Arc::new(graph_sandbox().await);
    graph.set_status_progression(PNID, wabridge_sandbox::graph_messages::Progression::Read);
    let bitrix = Arc::new(
        BitrixSandbox::start(BitrixOptions {
            rate_drain_per_sec: 10_000.0,
            rate_limit: 10_000.0,
            ..BitrixOptions::default()
        })
        .await
        .unwrap(),
    );
    let opts = bitrix.options();
    // One address for every process, so Meta's and the portal's callbacks reach whichever is running.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("WABRIDGE_LISTEN", format!("127.0.0.1:{port}")),
        ("WABRIDGE_PUBLIC_URL", base.clone()),
        ("WABRIDGE_GRAPH_BASE_URL", graph.base_url()),
        ("WABRIDGE_BITRIX_OAUTH_URL", bitrix.oauth_url()),
        ("WABRIDGE_BITRIX_CLIENT_ID", opts.client_id.clone()),
        ("WABRIDGE_BITRIX_CLIENT_SECRET", opts.client_secret.clone()),
        ("WABRIDGE_BITRIX_RATE_PER_SEC", "1000".to_string()),
        ("WABRIDGE_BITRIX_BURST", "1000".to_string()),
        ("WABRIDGE_SEND_RECONCILE_SECONDS", "3".to_string()),
        ("WABRIDGE_SEND_TIMEOUT_MS", "2000".to_string()),
    ];
    graph.set_webhook(&format!("{base}/api/waba?app_id=1234567890"), SECRET);

    // Registered, installed and bound by a first process.
    let first = serve_with(&testdb, true, &env);
    let token = first.token.clone().expect("first start prints the admin token");
    common::seed_over_http(&first.url, &token, SECRET).await;
    assert_eq!(bitrix.install(&format!("{base}/api/bitrix/install")).await.unwrap(), 201);
    let http = reqwest::Client::new();
    let admin =
        |m: reqwest::Method, path: &str| http.request(m, format!("{base}/admin/api/v1{path}")).bearer_auth(&token);
    let portals: serde_json::Value =
        admin(reqwest::Method::GET, "/portals").send().await.unwrap().json().await.unwrap();
    let portal = portals[0]["id"].as_i64().unwrap();
    let r =
        admin(reqwest::Method::PATCH, "/phones/1").json(&serde_json::json!({"portal": portal})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let phone: serde_json::Value =
            admin(reqwest::Method::GET, "/phones/1").send().await.unwrap().json().await.unwrap();
        if phone["connector"]["status"] == "ok" {
            break phone["connector"]["line_id"].as_str().and_then(|l| l.parse::<u64>().ok()).unwrap();
        }
        assert!(Instant::now() < deadline, "the line was never bound: {phone}");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling with a deadline
    };

    // The process under test, and a killer that kill -9s it at random moments and restarts it at once.
    let current = Arc::new(Mutex::new(Some(first)));
    let stop_killing = Arc::new(AtomicBool::new(false));
    // The kills are tied to progress, not to the clock, so all of them land while traffic flows however fast or
    // slow this machine is: the k-th when the portal has taken a random number of messages in the k-th twelfth.
    let killer = {
        let (current, stop_killing, env, portal) = (current.clone(), stop_killing.clone(), env.clone(), bitrix.clone());
        let (url, dir) = (testdb.url.clone(), testdb.dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut kills = 0;
            while kills < KILLS && !stop_killing.load(Ordering::SeqCst) {
                let at = (kills + 1) * 12 + rand::thread_rng().gen_range(0..8);
                let deadline = Instant::now() + Duration::from_secs(60);
                while portal.chat_messages().len() < at && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5)); // polling the emulator with a deadline
                }
                let mut slot = current.lock().unwrap();
                if let Some(mut r) = slot.take() {
                    r.child.kill().unwrap(); // SIGKILL
                    r.child.wait().unwrap();
                    kills += 1;
                }
                *slot = Some(serve_at(&url, &dir, true, &env));
            }
            kills
        })
    };

    // The customers: each writes its next message only after the last got 200; after every second message it
    // waits until the portal shows it, and an operator answers in the chat.
    let sender = MetaWebhookSender::new(format!("{base}/api/waba?app_id=1234567890"), SECRET);
    let mut customers = Vec::new();
    for c in 0..CUSTOMERS {
        let (sender, bitrix, graph) = (sender.clone(), bitrix.clone(), graph.clone());
        customers.push(tokio::spawn(async move {
            let wa = format!("551198770{c:04}");
            for k in 1..=MESSAGES {
                let wamid = p::new_wamid();
                let v = p::messages_value(
                    "5511930001234",
                    PNID,
                    vec![p::contact(&wa, "Customer")],
                    vec![p::text_message(&wa, &wamid, common::bridge::now_s(), &format!("c{c} m{k}"))],
                );
                let envelope = p::envelope("102290129340398", "messages", v);
                let deadline = Instant::now() + Duration::from_secs(60);
                while !sender.deliver(&envelope).await.delivered {
                    assert!(Instant::now() < deadline, "webhook never acknowledged");
                }
                graph.customer_messaged(PNID, &wa);
                if k % 2 == 0 {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !bitrix
                        .chat_messages()
                        .iter()
                        .any(|m| m.external_message_id.as_deref() == Some(wamid.as_str()))
                    {
                        assert!(Instant::now() < deadline, "c{c} m{k} never reached the portal");
                        tokio::time::sleep(Duration::from_millis(20)).await; // polling with a deadline
                    }
                    let reply = bitrix.operator_reply(line, &wa, &format!("r{c} {k}"), vec![]).await.unwrap();
                    let mut status = reply.status;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while status != 200 {
                        // Not acknowledged (the process was down): the portal's event, posted again as it was.
                        assert!(Instant::now() < deadline, "the operator's reply was never acknowledged");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let posted = bitrix.posted_events();
                        let event = posted
                            .iter()
                            .find(|e| {
                                e.payload["data"]["MESSAGES"][0]["im"]["message_id"]
                                    == serde_json::json!(reply.message_id)
                            })
                            .expect("the reply's event");
                        status = bitrix.post_event_raw(&event.url, &event.payload).await.unwrap_or(0);
                    }
                }
            }
        }));
    }
    for c in customers {
        c.await.expect("customer");
    }
    stop_killing.store(true, Ordering::SeqCst);
    let kills = killer.await.unwrap();

    // Everything arrives in the end.
    let expected_in = CUSTOMERS * MESSAGES;
    let expected_out = CUSTOMERS * MESSAGES / 2;
    let deadline = Instant::now() + Duration::from_secs(90);
    let distinct = |v: Vec<String>| v.into_iter().collect::<std::collections::BTreeSet<_>>().len();
    loop {
        let inbound = distinct(bitrix.chat_messages().iter().filter_map(|m| m.external_message_id.clone()).collect());
        let outbound = distinct(
            graph.all_sent().iter().filter_map(|m| m.body["text"]["body"].as_str().map(str::to_string)).collect(),
        );
        if inbound == expected_in && outbound == expected_out {
            break;
        }
        assert!(Instant::now() < deadline, "{inbound}/{expected_in} in the portal, {outbound}/{expected_out} at Meta");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling with a deadline
    }
    let store = wabridge::store::Store::connect(&testdb.config()).await.unwrap();
    // No job is left to run (a resend still due would show up as a duplicate only later).
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&store, "SELECT COUNT(*) FROM jobs WHERE done_at IS NULL AND NOT dead AND kind <> 'crm.maintenance' AND kind <> 'templates.sync'").await > 0 {
        assert!(Instant::now() < deadline, "jobs left over");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the database with a deadline
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM jobs WHERE dead").await, 0, "no dead job");

    // Per conversation: in order, once, except what was recorded as sent again without knowing.
    let uncertain_in: std::collections::BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT body FROM messages WHERE crm_resent_uncertain > 0")
            .fetch_all(store.raw_pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    let uncertain_out: std::collections::BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT request FROM outbound WHERE resent_unconfirmed > 0")
            .fetch_all(store.raw_pool())
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
            .filter_map(|r| r["text"]["body"].as_str().map(str::to_string))
            .collect();
    let (mut twice_in, mut twice_out) = (0, 0);
    for c in 0..CUSTOMERS {
        let wa = format!("551198770{c:04}");
        let portal: Vec<String> =
            bitrix.chat_messages().iter().filter(|m| m.external_user_id == wa).filter_map(|m| m.text.clone()).collect();
        let meta: Vec<String> = graph
            .all_sent()
            .iter()
            .filter(|m| m.wa_id == wa)
            .filter_map(|m| m.body["text"]["body"].as_str().map(str::to_string))
            .collect();
        let want_in: Vec<String> = (1..=MESSAGES).map(|k| format!("c{c} m{k}")).collect();
        let want_out: Vec<String> = (1..=MESSAGES).filter(|k| k % 2 == 0).map(|k| format!("r{c} {k}")).collect();
        for (seen, want, uncertain, twice) in
            [(&portal, &want_in, &uncertain_in, &mut twice_in), (&meta, &want_out, &uncertain_out, &mut twice_out)]
        {
            let mut once = seen.clone();
            once.dedup();
            assert_eq!(&once, want, "customer {c}: in order, nothing lost (seen {seen:?})");
            for w in want {
                let n = seen.iter().filter(|s| *s == w).count();
                if n > 1 {
                    assert!(uncertain.contains(w), "{w:?} {n} times, not recorded as sent again without knowing");
                    *twice += n - 1;
                }
            }
        }
    }
    eprintln!(
        "whole path under kill -9 ({:?}): {kills} kills, {expected_in} messages in, {expected_out} replies out; \
         sent twice after a could-not-tell: {twice_in} in, {twice_out} out",
        testdb.kind
    );
    assert_eq!(kills, KILLS, "every kill happened while traffic flowed");
    store.close().await;
    if let Some(r) = current.lock().unwrap().take() {
        stop(r);
    }
    Arc::into_inner(graph).expect("the customers are done").stop().await;
    Arc::into_inner(bitrix).expect("the customers are done").stop().await;
    testdb.drop_db().await;
}

both_databases!(
    the_whole_path_survives_kill_9,
    acknowledged_webhooks_survive_kill_9,
    acknowledged_sends_survive_kill_9_and_go_out_once,
    a_kill_while_sending_resends_only_what_may_have_gone
);
