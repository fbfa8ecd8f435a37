//! WhatsApp calling activation end to end on both databases: the admin API and the CLI against the Graph
//! sandbox (`/{phone-number-id}/settings`): the body posted, Meta's SIP password sealed and masked, expected vs
//! Meta, disabling, every documented activation error stored and explained, and validation.

use crate::common;

use std::process::{Command, Output};

use common::{Db, TestApp, TestDb};
use serde_json::{json, Value};
use wabridge::calling::{CallingError, CallingInput};
use wabridge::meta::errors::explain_calling as explain;
use wabridge_sandbox::graph::{documented, GraphSandbox, RecordedRequest};

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const TOKEN: &str = "EAAG-system-user-token-0001";
const META_APP_ID: &str = "1234567890";
const PNID: &str = "106540352242922";
const SETTINGS: &str = "/v23.0/106540352242922/settings";

/// The Graph sandbox, the service pointed at it, and a seeded app → WABA → phone (its wabridge id).
async fn setup(db: Db) -> (GraphSandbox, TestApp, i64) {
    let graph = GraphSandbox::start().await.expect("sandbox starts");
    graph.allow_token(TOKEN, META_APP_ID);
    let base = graph.base_url();
    let app = TestApp::start_with(TestDb::new(db).await, |c| c.graph_base_url = base).await;
    let (_, _, phone) = app.seed(SECRET).await;
    (graph, app, phone["id"].as_i64().unwrap())
}

fn calling_path(phone: i64) -> String {
    format!("/phones/{phone}/calling")
}

/// Every byte the database holds for the phones table (SQLite: the files on disk, WAL included).
async fn raw_phones(app: &TestApp) -> Vec<u8> {
    match app.db.kind {
        Db::Sqlite => app.db.sqlite_files().iter().flat_map(|f| std::fs::read(f).unwrap()).collect(),
        Db::Postgres => {
            let rows = sqlx::query("SELECT CAST(row_to_json(t) AS TEXT) AS j FROM phones t")
                .fetch_all(app.svc.store.raw_pool())
                .await
                .unwrap();
            rows.iter().flat_map(|r| sqlx::Row::get::<String, _>(r, "j").into_bytes()).collect()
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn last(graph: &GraphSandbox) -> RecordedRequest {
    graph.requests().pop().expect("a request reached the sandbox")
}

async fn enable_posts_settings_and_seals_the_password(db: Db) {
    let (graph, app, phone) = setup(db).await;
    let (s, view) =
        app.admin("POST", &calling_path(phone), Some(json!({"enabled": true, "sip_host": "sip.example.com"}))).await;
    assert_eq!(s, 200, "{view}");

    let reqs = graph.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("post", SETTINGS));
    assert_eq!(reqs[0].token.as_deref(), Some(TOKEN), "the app's default token");
    assert_eq!(
        reqs[0].body,
        Some(json!({"calling": {"status": "ENABLED", "srtp_key_exchange_protocol": "SDES",
            "sip": {"status": "ENABLED", "servers": [{"hostname": "sip.example.com", "port": 5061}]}}}))
    );
    assert_eq!((reqs[1].method.as_str(), reqs[1].path.as_str()), ("get", SETTINGS));
    assert_eq!(reqs[1].query.as_deref(), Some("include_sip_credentials=true"));

    let password = graph.sip_password(PNID, META_APP_ID).expect("the sandbox made a SIP password");
    let c = &view["calling"];
    assert_eq!(c["enabled"], true);
    assert_eq!(c["status"], "ENABLED");
    assert_eq!(c["sip_status"], "ENABLED");
    assert_eq!(c["sip_host"], "sip.example.com");
    assert_eq!(c["sip_port"], 5061);
    assert_eq!(c["srtp_key_exchange"], "SDES");
    assert_eq!(c["digest"], Value::Null);
    assert_eq!(c["digest_active"], true, "digest is on by default once the password is known");
    assert_eq!(c["last_error"], Value::Null);
    assert_eq!(c["sip_password"], wabridge::seal::mask(&password), "masked");
    assert!(!view.to_string().contains(&password));
    let (_, shown) = app.admin("GET", &format!("/phones/{phone}"), None).await;
    assert_eq!(shown["calling"]["sip_password"], wabridge::seal::mask(&password));

    // Sealed at rest; the service can still open it.
    assert!(!contains(&raw_phones(&app).await, &password), "the SIP password is readable in the raw database");
    let stored = app.svc.store.get_phone(phone).await.unwrap().unwrap();
    assert_eq!(stored.sip_password.as_deref(), Some(password.as_str()));
    assert!(stored.calling_active() && stored.digest_challenge());

    // A WABA token overrides the app's; every setting reaches Meta.
    let waba_token = "EAAG-waba-override-token-0002";
    graph.allow_token(waba_token, META_APP_ID);
    let (s, _) =
        app.admin("PATCH", &format!("/wabas/{}", stored.waba_id), Some(json!({"access_token": waba_token}))).await;
    assert_eq!(s, 200);
    graph.clear_requests();
    let (s, view) = app
        .admin(
            "POST",
            &calling_path(phone),
            Some(json!({"enabled": true, "sip_host": "pbx.example.com", "sip_port": 5070, "srtp_key_exchange": "DTLS",
                        "call_icon_visibility": "DISABLE_ALL", "callback_permission": "ENABLED", "digest": false})),
        )
        .await;
    assert_eq!(s, 200, "{view}");
    let post = &graph.requests()[0];
    assert_eq!(post.token.as_deref(), Some(waba_token));
    assert_eq!(
        post.body,
        Some(json!({"calling": {"status": "ENABLED", "call_icon_visibility": "DISABLE_ALL",
            "callback_permission_status": "ENABLED", "srtp_key_exchange_protocol": "DTLS",
            "sip": {"status": "ENABLED", "servers": [{"hostname": "pbx.example.com", "port": 5070}]}}}))
    );
    assert_eq!(view["calling"]["digest"], false);
    assert_eq!(view["calling"]["digest_active"], false);
    assert_eq!(view["calling"]["sip_port"], 5070);
    assert_eq!(view["calling"]["sip_password"], wabridge::seal::mask(&password), "one password per number and app");
    let meta = graph.settings(PNID).unwrap();
    assert_eq!(
        meta["calling"]["sip"]["servers"],
        json!([{"app_id": META_APP_ID, "hostname": "pbx.example.com", "port": 5070}])
    );
    app.stop().await;
}

async fn status_compares_expected_with_meta(db: Db) {
    let (graph, app, phone) = setup(db).await;
    // Nothing enabled yet: both sides off.
    let (s, st) = app.admin("GET", &calling_path(phone), None).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["in_sync"], true, "{st}");
    assert_eq!(st["expected"]["status"], "DISABLED");
    assert_eq!(st["meta"]["status"], "DISABLED");

    let (s, _) =
        app.admin("POST", &calling_path(phone), Some(json!({"enabled": true, "sip_host": "sip.example.com"}))).await;
    assert_eq!(s, 200);
    let password = graph.sip_password(PNID, META_APP_ID).unwrap();
    graph.clear_requests();
    let (s, st) = app.admin("GET", &calling_path(phone), None).await;
    assert_eq!(s, 200);
    let get = last(&graph);
    assert_eq!((get.method.as_str(), get.query), ("get", None), "a live read, without credentials");
    assert!(!st.to_string().contains(&password));
    assert_eq!(st["in_sync"], true, "{st}");
    assert_eq!(st["differences"], json!([]));
    assert_eq!(st["phone_number_id"], PNID);
    assert_eq!(st["expected"]["srtp_key_exchange_protocol"], "SDES");
    assert_eq!(st["meta"]["sip_status"], "ENABLED");
    assert_eq!(
        st["meta"]["sip_servers"][0],
        json!({"hostname": "sip.example.com", "port": 5061, "app_id": META_APP_ID})
    );
    assert_eq!(st["last_error"], Value::Null);

    // Someone changes the number in WhatsApp Manager.
    graph.edit(PNID, |v| {
        v["calling"]["srtp_key_exchange_protocol"] = json!("DTLS");
        v["calling"]["sip"]["servers"][0]["hostname"] = json!("pbx.other.example.com");
    });
    let (_, st) = app.admin("GET", &calling_path(phone), None).await;
    assert_eq!(st["in_sync"], false);
    assert_eq!(
        st["differences"],
        json!([
            {"field": "calling.srtp_key_exchange_protocol", "expected": "SDES", "meta": "DTLS"},
            {"field": "calling.sip.servers[0].hostname", "expected": "sip.example.com", "meta": "pbx.other.example.com"},
        ])
    );
    // Calling switched off at Meta.
    graph.edit(PNID, |v| v["calling"]["status"] = json!("DISABLED"));
    let (_, st) = app.admin("GET", &calling_path(phone), None).await;
    assert_eq!(st["differences"][0], json!({"field": "calling.status", "expected": "ENABLED", "meta": "DISABLED"}));
    app.stop().await;
}

async fn disable_turns_calling_and_sip_off(db: Db) {
    let (graph, app, phone) = setup(db).await;
    let (s, _) =
        app.admin("POST", &calling_path(phone), Some(json!({"enabled": true, "sip_host": "sip.example.com"}))).await;
    assert_eq!(s, 200);
    graph.clear_requests();
    let (s, view) = app.admin("POST", &calling_path(phone), Some(json!({"enabled": false}))).await;
    assert_eq!(s, 200, "{view}");
    let reqs = graph.requests();
    assert_eq!(reqs.len(), 1, "disabling needs no credentials: {reqs:?}");
    assert_eq!(reqs[0].body, Some(json!({"calling": {"status": "DISABLED", "sip": {"status": "DISABLED"}}})));
    let c = &view["calling"];
    assert_eq!(
        (c["enabled"].clone(), c["status"].clone(), c["sip_status"].clone()),
        (json!(false), json!("DISABLED"), json!("DISABLED"))
    );
    assert_eq!(c["sip_password"], Value::Null, "not kept while calling is off");
    assert_eq!(c["sip_host"], "sip.example.com", "settings are kept for the next enable");
    assert_eq!(c["digest_active"], false);
    let meta = graph.settings(PNID).unwrap();
    assert_eq!(meta["calling"]["status"], "DISABLED");
    assert_eq!(meta["calling"]["sip"]["status"], "DISABLED");
    assert_eq!(meta["calling"]["sip"]["servers"][0]["hostname"], "sip.example.com", "Meta keeps the server");
    let (_, st) = app.admin("GET", &calling_path(phone), None).await;
    assert_eq!(st["in_sync"], true, "{st}");
    assert!(!app.svc.store.get_phone(phone).await.unwrap().unwrap().calling_active());

    // Enabling again needs no host: the stored one is used.
    let (s, view) = app.admin("POST", &calling_path(phone), Some(json!({"enabled": true}))).await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["calling"]["status"], "ENABLED");
    assert!(view["calling"]["sip_password"].is_string());
    app.stop().await;
}

async fn graph_errors_are_stored_and_explained(db: Db) {
    let (graph, app, phone) = setup(db).await;
    let enable = json!({"enabled": true, "sip_host": "sip.example.com"});
    for code in [138000, 138014, 138015, 138018, 131055, 100, 190] {
        graph.refuse_next(PNID, code);
        let (s, e) = app.admin("POST", &calling_path(phone), Some(enable.clone())).await;
        assert_eq!(s, 502, "{code}: {e}");
        let err = &e["error"];
        assert_eq!(err["code"], "graph_error", "{e}");
        let g = &err["graph"];
        assert_eq!(g["code"], code, "{e}");
        assert!(g["message"].as_str().unwrap().starts_with(&format!("(#{code}) ")), "{e}");
        assert_eq!(g["type"], "OAuthException");
        assert_eq!(g["http_status"], documented(code).http_status, "{code}");
        assert_eq!(g["explanation"], explain(code).unwrap(), "{code}");
        assert!(g["details"].is_string() && g["fbtrace_id"].is_string(), "{e}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(&code.to_string()) && message.contains(explain(code).unwrap()), "{message}");

        let (_, shown) = app.admin("GET", &format!("/phones/{phone}"), None).await;
        let last = &shown["calling"]["last_error"];
        assert_eq!(last["code"], code, "{shown}");
        assert_eq!(last["message"], g["message"]);
        assert_eq!(last["details"], g["details"]);
        assert_eq!(last["fbtrace_id"], g["fbtrace_id"]);
        assert_eq!(last["explanation"], explain(code).unwrap());
        assert!(last["at"].is_string());
        assert_eq!(shown["calling"]["enabled"], true, "what was asked is kept");
        assert_eq!(shown["calling"]["status"], Value::Null, "Meta never accepted");
        let (_, st) = app.admin("GET", &calling_path(phone), None).await;
        assert_eq!(st["last_error"]["code"], code);
        assert_eq!(st["in_sync"], false);
    }
    assert!(graph.sip_password(PNID, META_APP_ID).is_none(), "no refused request changed Meta's settings");

    // An unknown token: Meta's 190 envelope with HTTP 401, for enabling and for the status.
    let waba = app.svc.store.get_phone(phone).await.unwrap().unwrap().waba_id;
    let (s, _) = app
        .admin("PATCH", &format!("/wabas/{waba}"), Some(json!({"access_token": "EAAG-unknown-token-00000000"})))
        .await;
    assert_eq!(s, 200);
    let (s, e) = app.admin("POST", &calling_path(phone), Some(enable.clone())).await;
    assert_eq!(s, 502, "{e}");
    assert_eq!(e["error"]["graph"]["code"], 190);
    assert_eq!(e["error"]["graph"]["http_status"], 401);
    assert_eq!(e["error"]["graph"]["message"], "(#190) Invalid OAuth access token");
    let (s, st) = app.admin("GET", &calling_path(phone), None).await;
    assert_eq!(s, 200, "the status still shows what wabridge expects: {st}");
    assert_eq!(st["meta"], Value::Null);
    assert_eq!(st["meta_error"]["code"], 190);
    assert_eq!(st["meta_error"]["explanation"], explain(190).unwrap());
    assert_eq!(st["expected"]["status"], "ENABLED");

    // Back to the app's token: a success clears the error.
    let (s, _) = app.admin("PATCH", &format!("/wabas/{waba}"), Some(json!({"access_token": ""}))).await;
    assert_eq!(s, 200);
    let (s, view) = app.admin("POST", &calling_path(phone), Some(enable)).await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(view["calling"]["last_error"], Value::Null);
    assert_eq!(view["calling"]["status"], "ENABLED");
    app.stop().await;
}

async fn validation_and_missing_token(db: Db) {
    let (graph, app, phone) = setup(db).await;
    let path = calling_path(phone);
    let host = "sip.example.com";
    for (body, field) in [
        (json!({}), "enabled"),
        (json!({"enabled": true}), "sip_host"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"enabled": true, "sip_host": "https://sip.example.com/"}), "sip_host"),
        (json!({"enabled": true, "sip_host": "sip.example.com:5061"}), "sip_host"),
        (json!({"enabled": true, "sip_host": host, "sip_port": 70000}), "sip_port"),
        (json!({"enabled": true, "sip_host": host, "sip_port": 0}), "sip_port"),
        (json!({"enabled": true, "sip_host": host, "srtp_key_exchange": "ZRTP"}), "srtp_key_exchange"),
        (json!({"enabled": true, "sip_host": host, "call_icon_visibility": "HIDDEN"}), "call_icon_visibility"),
        (json!({"enabled": true, "sip_host": host, "callback_permission": "MAYBE"}), "callback_permission"),
        (json!({"enabled": true, "sip_host": host, "digest": "on"}), "digest"),
        (json!({"enabled": true, "sipHost": host}), "sipHost"),
    ] {
        let (s, e) = app.admin("POST", &path, Some(body.clone())).await;
        assert_eq!(s, 422, "{body}: {e}");
        assert_eq!(e["error"]["code"], "validation_failed");
        assert_eq!(e["error"]["fields"][0]["field"], field, "{body}: {e}");
    }
    assert!(graph.requests().is_empty(), "nothing invalid reached Meta");
    let (_, shown) = app.admin("GET", &format!("/phones/{phone}"), None).await;
    assert_eq!(shown["calling"]["enabled"], false, "a refused request changes nothing");
    assert_eq!(app.admin("POST", "/phones/999/calling", Some(json!({"enabled": false}))).await.0, 404);
    assert_eq!(app.admin("GET", "/phones/999/calling", None).await.0, 404);

    // An app without a token and a WABA without one: 409 naming both, stored on the phone.
    let (_, a) = app
        .admin("POST", "/apps", Some(json!({"meta_app_id": "555", "domain": "b.example.com", "app_secret": SECRET})))
        .await;
    let (_, w) = app.admin("POST", "/wabas", Some(json!({"waba_id": "556", "app": a["id"]}))).await;
    let (_, p) = app
        .admin("POST", "/phones", Some(json!({"number": "+442079460018", "phone_number_id": "557", "waba": w["id"]})))
        .await;
    let p = p["id"].as_i64().unwrap();
    let (s, e) = app.admin("POST", &calling_path(p), Some(json!({"enabled": true, "sip_host": host}))).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["code"], "no_access_token");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains(&format!("WABA {}", w["id"])) && m.contains(&format!("app {}", a["id"])), "{m}");
    let (_, shown) = app.admin("GET", &format!("/phones/{p}"), None).await;
    assert!(shown["calling"]["last_error"]["message"].as_str().unwrap().contains("no access token"), "{shown}");
    let (s, st) = app.admin("GET", &calling_path(p), None).await;
    assert_eq!(s, 200);
    assert!(st["meta_error"]["message"].as_str().unwrap().contains("no access token"), "{st}");

    // Meta unreachable: 502 graph_unreachable, and the reason stays on the phone.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = wabridge::meta::graph::Client::new(&format!("http://127.0.0.1:{port}"), "v23.0");
    let input = CallingInput { enabled: true, sip_host: Some(host.into()), ..Default::default() };
    let err = wabridge::calling::service::apply(&app.svc.store, &closed, phone, &input).await.unwrap_err();
    assert!(matches!(err, CallingError::Unreachable(_)), "{err:?}");
    let api = wabridge::http::error::ApiError::from(err);
    assert_eq!((api.status.as_u16(), api.code), (502, "graph_unreachable"));
    let (_, shown) = app.admin("GET", &format!("/phones/{phone}"), None).await;
    let last = &shown["calling"]["last_error"];
    assert!(last["message"].as_str().unwrap().contains("could not reach the Graph API"), "{shown}");
    assert_eq!(last["code"], Value::Null);

    // Documented in the OpenAPI document.
    let spec: Value = app.http.get(app.url("/admin/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let op = &spec["paths"]["/admin/api/v1/phones/{id}/calling"];
    assert!(op["get"].is_object() && op["post"].is_object(), "{op}");
    for schema in ["CallingInput", "CallingStatus", "CallingErrorView", "GraphErrorDetail"] {
        assert!(spec["components"]["schemas"][schema].is_object(), "{schema} documented");
    }
    app.stop().await;
}

// ---- the CLI, run as a process

const BIN: &str = env!("CARGO_BIN_EXE_wabridge");
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn cli(db: &TestDb, graph: &GraphSandbox, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--json")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WABRIDGE_DATABASE_URL", &db.url)
        .env("WABRIDGE_DATA_DIR", db.dir.path())
        .env("WABRIDGE_MASTER_KEY", KEY)
        .env("WABRIDGE_GRAPH_BASE_URL", graph.base_url());
    // The sandbox answers on this runtime's workers while the process runs.
    tokio::task::spawn_blocking(move || cmd.output().expect("run wabridge")).await.unwrap()
}

async fn ok(db: &TestDb, graph: &GraphSandbox, args: &[&str]) -> Value {
    let out = cli(db, graph, args).await;
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn fails(db: &TestDb, graph: &GraphSandbox, args: &[&str]) -> (String, String) {
    let out = cli(db, graph, args).await;
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    (err, String::from_utf8(out.stdout).unwrap())
}

async fn calling_through_the_cli(kind: Db) {
    let graph = GraphSandbox::start().await.unwrap();
    graph.allow_token(TOKEN, META_APP_ID);
    let db = TestDb::new(kind).await;
    let (g, d) = (&graph, &db);
    ok(d, g, &["migrate"]).await;
    let app = ["app", "add", "--meta-app-id", META_APP_ID, "--domain", "wb.example.com", "--app-secret", SECRET];
    let out = cli(d, g, &[&app[..], &["--access-token", TOKEN]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(d, g, &["waba", "add", "--waba-id", "102290129340398", "--app", "1"]).await;
    ok(d, g, &["phone", "add", "--number", "+5511930001234", "--phone-number-id", PNID, "--waba", "1"]).await;

    let st = ok(d, g, &["calling", "status", "--phone", "1"]).await;
    assert_eq!(st["in_sync"], true, "{st}");

    let view =
        ok(d, g, &["calling", "enable", "--phone", "1", "--sip-host", "sip.example.com", "--srtp", "DTLS"]).await;
    let password = graph.sip_password(PNID, META_APP_ID).unwrap();
    assert_eq!(view["status"], "ENABLED", "{view}");
    assert_eq!(view["sip_password"], wabridge::seal::mask(&password));
    let post = graph.requests().into_iter().find(|r| r.method == "post").unwrap();
    assert_eq!(post.path, SETTINGS);
    assert_eq!(post.body.unwrap()["calling"]["srtp_key_exchange_protocol"], "DTLS");
    let st = ok(d, g, &["calling", "status", "--phone", "1"]).await;
    assert_eq!(st["in_sync"], true, "{st}");
    assert_eq!(st["expected"]["srtp_key_exchange_protocol"], "DTLS");
    assert!(!serde_json::to_string(&st).unwrap().contains(&password));

    // Meta refuses: one line with the code and what it means; non-zero exit.
    graph.refuse_next(PNID, 138015);
    let (e, _) = fails(d, g, &["calling", "enable", "--phone", "1", "--sip-host", "sip.example.com"]).await;
    assert!(e.contains("138015") && e.contains("2,000"), "{e}");
    let (e, _) = fails(d, g, &["calling", "enable", "--phone", "1", "--srtp", "ZRTP"]).await;
    assert!(e.contains("srtp_key_exchange"), "{e}");
    let (e, _) =
        fails(d, g, &["calling", "enable", "--phone", "1", "--sip-host", "sip.example.com", "--sip-port", "0"]).await;
    assert!(e.contains("sip_port"), "{e}");
    graph.revoke_token(TOKEN);
    let (e, stdout) = fails(d, g, &["calling", "status", "--phone", "1"]).await;
    assert!(e.contains("190") && e.contains("token"), "{e}");
    let st: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(st["expected"]["status"], "ENABLED", "the expected side is still printed: {st}");
    assert_eq!(st["last_error"]["code"], 138015, "{st}");
    graph.allow_token(TOKEN, META_APP_ID);

    let view = ok(d, g, &["calling", "disable", "--phone", "1"]).await;
    assert_eq!(view["status"], "DISABLED", "{view}");
    assert_eq!(view["last_error"], Value::Null);
    let (e, _) = fails(d, g, &["calling", "status", "--phone", "42"]).await;
    assert!(e.contains("not found"), "{e}");
    db.drop_db().await;
}

both_databases!(
    enable_posts_settings_and_seals_the_password,
    status_compares_expected_with_meta,
    disable_turns_calling_and_sip_off,
    graph_errors_are_stored_and_explained,
    validation_and_missing_token,
    calling_through_the_cli,
);

#[test]
fn calling_commands_have_help() {
    for c in [&["calling"][..], &["calling", "enable"], &["calling", "disable"], &["calling", "status"]] {
        let out = Command::new(BIN).args(c).arg("--help").output().unwrap();
        assert!(out.status.success(), "{c:?} --help");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{c:?}: {text}");
    }
    let out = Command::new(BIN).args(["calling", "enable", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in
        ["--phone", "--sip-host", "--sip-port", "--srtp", "--call-icon-visibility", "--callback-permission", "--digest"]
    {
        assert!(text.contains(flag), "{flag}: {text}");
    }
}

#[test]
fn a_bad_graph_version_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["calling", "status", "--phone", "1"])
        .env("WABRIDGE_DATA_DIR", dir.path())
        .env("WABRIDGE_DATABASE_URL", format!("sqlite://{}/w.db", dir.path().display()))
        .env("WABRIDGE_GRAPH_VERSION", "latest")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("graph_version"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
