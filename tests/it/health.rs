//! Account health end to end: the `health.check` job asks the Graph emulator (`debug_token` with the app's id and
//! secret, the phone number node's `health_status`, `quality_rating`, `messaging_limit_tier`), and the console's
//! Health page, `/metrics` and `wabridge health` show what it learned: a token expiring in 3 days (red, with what
//! to do), a LIMITED number with Meta's reason; then a token Meta says is not valid, and a `debug_token` refused
//! because wabridge has the wrong app secret.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

use crate::common::bridge::{now_s, APP, CUSTOMER, DISPLAY, PNID, SECRET, TOKEN, WABA};
use crate::common::{Db, TestApp, TestDb};

both_databases!(expiring_token_and_limited_phone, invalid_token_and_refused_debug_token);

const LIMIT_INFO: &str =
    "Your WhatsApp Business Account has reached its limit of 250 business-initiated conversations.";

/// A console session: its cookie and its CSRF token.
struct Console {
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Console {
    async fn login(app: &TestApp) -> Console {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let resp =
            http.post(app.url("/admin/login")).form(&[("token", app.token.as_str())]).send().await.expect("login");
        assert_eq!(resp.status().as_u16(), 303);
        let cookie =
            resp.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
        let mut me = Console { http, cookie, csrf: String::new() };
        let html = me.page(app, "/admin").await;
        let at = html.find("name=\"csrf\" value=\"").expect("a form with the CSRF token") + 19;
        me.csrf = html[at..].split('"').next().expect("csrf value").to_string();
        me
    }

    async fn page(&self, app: &TestApp, path: &str) -> String {
        let resp = self.http.get(app.url(path)).header("cookie", &self.cookie).send().await.expect("page");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        resp.text().await.expect("html")
    }

    /// "Check now": answered with a redirect to the page, which says what was queued.
    async fn check_now(&self, app: &TestApp) -> String {
        let resp = self
            .http
            .post(app.url("/admin/health/check"))
            .header("cookie", &self.cookie)
            .form(&[("csrf", self.csrf.as_str())])
            .send()
            .await
            .expect("check now");
        assert_eq!(resp.status().as_u16(), 303);
        assert_eq!(resp.headers()["location"], "/admin");
        self.page(app, "/admin").await
    }
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(app.url("/metrics")).await.expect("metrics").text().await.expect("text")
}

/// The value of the series `name{labels}` in a scrape, if it is there.
fn series(scrape: &str, name_and_labels: &str) -> Option<i64> {
    scrape.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn start(db: Db) -> (GraphSandbox, TestApp) {
    let graph = GraphSandbox::start().await.expect("graph sandbox");
    let app = TestApp::start_with(TestDb::new(db).await, |c| c.graph_base_url = graph.base_url()).await;
    graph.allow_token(TOKEN, APP);
    graph.set_app_secret(APP, SECRET);
    graph.add_number(PNID, DISPLAY, WABA);
    app.seed(SECRET).await;
    (graph, app)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// The HTML of the token table's row of WABA 1, and of the phone table's row of phone 1.
fn rows(html: &str) -> (String, String) {
    let row = |id: &str| {
        let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("row {id} in:\n{html}"));
        html[at..].split("</tr>").next().expect("row").to_string()
    };
    (row("health-waba-1"), row("health-phone-1"))
}

async fn expiring_token_and_limited_phone(db: Db) {
    let (graph, app) = start(db).await;
    let expires = unix_now() + 3 * 86_400 + 600;
    graph.edit_token(TOKEN, |t| t.expires_at = expires);
    graph.limit_entity(PNID, "WABA", &[LIMIT_INFO]);
    graph.set_quality(PNID, "YELLOW");
    graph.set_limit_tier(PNID, "TIER_250");
    // A webhook, so the last-webhook gauges have something to show.
    let sender = MetaWebhookSender::new(app.url(&format!("/api/waba?app_id={APP}")), SECRET);
    let value = p::messages_value(
        DISPLAY,
        PNID,
        vec![p::contact(CUSTOMER, "Maria Souza")],
        vec![p::text_message(CUSTOMER, &p::new_wamid(), now_s(), "Olá")],
    );
    assert!(sender.deliver(&p::envelope(WABA, "messages", value)).await.delivered);

    let console = Console::login(&app).await;
    let before = console.page(&app, "/admin").await;
    let (waba_row, phone_row) = rows(&before);
    assert!(waba_row.contains("not checked yet"), "{waba_row}");
    assert!(phone_row.contains("not checked yet"), "{phone_row}");
    // A "Check now" without the session's CSRF token is refused and queues nothing.
    let forged = console
        .http
        .post(app.url("/admin/health/check"))
        .header("cookie", &console.cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status().as_u16(), 403);
    let (_, pending) = app.admin("GET", "/jobs?state=pending", None).await;
    assert!(!pending.to_string().contains("health.check"), "{pending}");

    let queued = console.check_now(&app).await;
    assert!(
        queued.contains(&format!("Health check queued for 1 WABA ({WABA}) and 1 phone(s)")),
        "the feedback says what was queued:\n{queued}"
    );
    app.svc.engine().drain().await.expect("drain");

    // What the job asked: debug_token with the app's id and secret, the number's health fields with the token.
    let asked = graph.requests();
    let debug = asked.iter().find(|r| r.path.ends_with("/debug_token")).expect("debug_token asked");
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(debug.query.as_deref().unwrap_or_default().as_bytes()).into_owned().collect();
    assert!(q.contains(&("input_token".into(), TOKEN.into())), "{q:?}");
    assert!(q.contains(&("access_token".into(), format!("{APP}|{SECRET}"))), "{q:?}");
    let node = asked.iter().find(|r| r.path.ends_with(&format!("/{PNID}"))).expect("phone node asked");
    assert_eq!(node.query.as_deref(), Some("fields=health_status%2Cquality_rating%2Cmessaging_limit_tier"));
    assert_eq!(node.token.as_deref(), Some(TOKEN));

    let html = console.page(&app, "/admin").await;
    let (waba_row, phone_row) = rows(&html);
    assert!(waba_row.contains("<span class=\"bad\""), "red when it expires within a week: {waba_row}");
    assert!(waba_row.contains("expires in 3 days"), "{waba_row}");
    assert!(waba_row.contains("Replace it before it expires"), "what to do: {waba_row}");
    assert!(waba_row.contains("both WhatsApp permissions"), "{waba_row}");
    assert!(waba_row.contains("SYSTEM_USER token"), "{waba_row}");
    assert!(phone_row.contains("<span class=\"warn\">LIMITED</span>"), "{phone_row}");
    assert!(phone_row.contains(&format!("WABA <code>{WABA}</code>: LIMITED — {LIMIT_INFO}")), "{phone_row}");
    assert!(phone_row.contains("<span class=\"warn\">YELLOW</span> · TIER_250"), "{phone_row}");
    assert!(!phone_row.contains("not checked yet"), "{phone_row}");
    assert!(!html.contains(TOKEN), "the token is never shown");
    // The page keeps its accessible structure: column and row headers.
    assert!(html.contains("<th scope=\"col\">Token expiry</th>") && html.contains("<th scope=\"row\">"), "{html}");

    let scrape = metrics(&app).await;
    let w = format!("{{waba=\"{WABA}\"}}");
    assert_eq!(series(&scrape, &format!("wabridge_token_expires_at_seconds{w}")), Some(expires), "{scrape}");
    assert_eq!(series(&scrape, &format!("wabridge_token_valid{w}")), Some(1));
    assert!(series(&scrape, &format!("wabridge_health_checked_at_seconds{w}")).is_some_and(|t| t >= unix_now() - 60));
    for (status, v) in [("AVAILABLE", 0), ("LIMITED", 1), ("BLOCKED", 0)] {
        let name = format!("wabridge_phone_can_send{{phone=\"{PNID}\",status=\"{status}\"}}");
        assert_eq!(series(&scrape, &name), Some(v), "{name}: {scrape}");
    }
    for (rating, v) in [("GREEN", 0), ("YELLOW", 1), ("RED", 0)] {
        let name = format!("wabridge_phone_quality{{phone=\"{PNID}\",rating=\"{rating}\"}}");
        assert_eq!(series(&scrape, &name), Some(v), "{name}");
    }
    let app_seen = series(&scrape, &format!("wabridge_app_last_webhook_timestamp_seconds{{app=\"{APP}\"}}"));
    assert!(app_seen.is_some_and(|t| (t - unix_now()).abs() < 120), "{scrape}");
    let phone_seen = series(&scrape, &format!("wabridge_phone_last_webhook_timestamp_seconds{{phone=\"{PNID}\"}}"));
    assert!(phone_seen.is_some_and(|t| (t - unix_now()).abs() < 120), "{scrape}");
    assert_eq!(series(&scrape, "wabridge_jobs_dead"), Some(0));
    assert!(!scrape.contains(DISPLAY) && !scrape.contains(TOKEN), "no phone number or token in the metrics");

    // Fixed at Meta: the next check turns the number green; the token is still red until replaced.
    graph.clear_health(PNID);
    graph.set_quality(PNID, "GREEN");
    console.check_now(&app).await;
    app.svc.engine().drain().await.expect("drain");
    let (_, phone_row) = rows(&console.page(&app, "/admin").await);
    assert!(phone_row.contains("<span class=\"ok\">AVAILABLE</span>"), "{phone_row}");
    let scrape = metrics(&app).await;
    let name = format!("wabridge_phone_can_send{{phone=\"{PNID}\",status=\"LIMITED\"}}");
    assert_eq!(series(&scrape, &name), Some(0));
    let (_, dead) = app.admin("GET", "/jobs?state=dead", None).await;
    assert_eq!(dead.as_array().map(Vec::len), Some(0), "{dead}");
    app.stop().await;
    graph.stop().await;
}

/// `wabridge health check --json`, run as a process against the service's database and the emulator.
fn cli_check(app: &TestApp, graph: &GraphSandbox) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_wabridge"))
        .args(["health", "check", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WABRIDGE_DATABASE_URL", &app.db.url)
        .env("WABRIDGE_DATA_DIR", app.db.dir.path())
        .env("WABRIDGE_MASTER_KEY", app.db.config().master_key.expect("key"))
        .env("WABRIDGE_GRAPH_BASE_URL", graph.base_url())
        .output()
        .expect("run wabridge");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(!text.contains(TOKEN), "the token is never printed");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn invalid_token_and_refused_debug_token(db: Db) {
    let (graph, app) = start(db).await;
    graph.edit_token(TOKEN, |t| t.is_valid = false);
    let console = Console::login(&app).await;
    console.check_now(&app).await;
    app.svc.engine().drain().await.expect("drain");
    let html = console.page(&app, "/admin").await;
    let (waba_row, phone_row) = rows(&html);
    assert!(waba_row.contains("<span class=\"bad\""), "{waba_row}");
    assert!(waba_row.contains("Meta says the token is not valid: Error validating access token"), "{waba_row}");
    assert!(waba_row.contains("Make a new token"), "what to do: {waba_row}");
    // The number cannot be asked with a token Meta refuses: said in plain words.
    assert!(
        phone_row.contains("Meta refused the WABA&#39;s access token")
            || phone_row.contains("Meta refused the WABA's access token"),
        "{phone_row}"
    );
    let scrape = metrics(&app).await;
    assert_eq!(series(&scrape, &format!("wabridge_token_valid{{waba=\"{WABA}\"}}")), Some(0), "{scrape}");
    assert!(!scrape.contains("wabridge_phone_can_send{"), "no figures for the number yet: {scrape}");

    // The CLI asks Meta itself and prints the same figures.
    let report = cli_check(&app, &graph);
    assert_eq!(report["wabas"][0]["token_valid"], false, "{report}");
    assert_eq!(report["wabas"][0]["verdict"]["level"], "bad", "{report}");
    assert!(report["phones"][0]["error"].as_str().is_some_and(|e| e.contains("error 190")), "{report}");

    // A new, valid token, but wabridge holds the wrong app secret: debug_token is refused with Meta's error.
    graph.edit_token(TOKEN, |t| t.is_valid = true);
    graph.set_app_secret(APP, "a-secret-wabridge-does-not-have");
    console.check_now(&app).await;
    app.svc.engine().drain().await.expect("drain");
    let html = console.page(&app, "/admin").await;
    let (waba_row, phone_row) = rows(&html);
    assert!(waba_row.contains("<span class=\"bad\""), "{waba_row}");
    assert!(waba_row.contains(&format!("check the app secret registered for app {APP}")), "{waba_row}");
    assert!(waba_row.contains("Invalid OAuth access token signature"), "Meta's words: {waba_row}");
    assert!(
        phone_row.contains("<span class=\"ok\">AVAILABLE</span>"),
        "the number is asked with the token: {phone_row}"
    );
    let report = cli_check(&app, &graph);
    assert!(report["wabas"][0]["error"].as_str().is_some_and(|e| e.contains("error 190")), "{report}");
    assert_eq!(report["phones"][0]["can_send"], "AVAILABLE", "{report}");
    // Neither a refusal nor an invalid token kills the job: the next hourly check asks again.
    let (_, dead) = app.admin("GET", "/jobs?state=dead", None).await;
    assert_eq!(dead.as_array().map(Vec::len), Some(0), "{dead}");
    assert_eq!(series(&metrics(&app).await, "wabridge_jobs_dead"), Some(0));
    app.stop().await;
    graph.stop().await;
}

/// The emulator's wire format, asked directly: `debug_token`'s answers and Meta's errors for a missing or wrong
/// app token and a missing `input_token`; the phone node's fields and its error for a field that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_answers_as_meta_does() {
    let graph = GraphSandbox::start().await.expect("graph sandbox");
    graph.allow_token(TOKEN, APP);
    graph.set_app_secret(APP, SECRET);
    graph.add_number(PNID, DISPLAY, WABA);
    let http = reqwest::Client::new();
    let get = |path: &str, query: Vec<(&str, String)>, bearer: Option<&str>| {
        let mut req = http.get(format!("{}/v23.0/{path}", graph.base_url())).query(&query);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        }
    };
    let app_token = format!("{APP}|{SECRET}");
    let (s, body) =
        get("debug_token", vec![("input_token", TOKEN.into()), ("access_token", app_token.clone())], None).await;
    assert_eq!(s, 200, "{body}");
    let d = &body["data"];
    assert_eq!(
        (d["app_id"].as_str(), d["type"].as_str(), d["is_valid"].as_bool()),
        (Some(APP), Some("SYSTEM_USER"), Some(true))
    );
    assert_eq!((d["expires_at"].as_i64(), d["data_access_expires_at"].as_i64()), (Some(0), Some(0)), "never");
    for field in ["application", "issued_at", "scopes", "user_id"] {
        assert!(d.get(field).is_some(), "{field} in {body}");
    }
    assert!(d.get("error").is_none());
    // Past its expiry: not valid, with Meta's 190/463 inside `data`; and refused by the other endpoints.
    graph.edit_token(TOKEN, |t| t.expires_at = unix_now() - 60);
    let (_, body) =
        get("debug_token", vec![("input_token", TOKEN.into()), ("access_token", app_token.clone())], None).await;
    assert_eq!(body["data"]["is_valid"], false, "{body}");
    assert_eq!(
        (body["data"]["error"]["code"].as_i64(), body["data"]["error"]["subcode"].as_i64()),
        (Some(190), Some(463))
    );
    let (s, body) = get(PNID, vec![("fields", "health_status".into())], Some(TOKEN)).await;
    assert_eq!(
        (s, body["error"]["code"].as_i64(), body["error"]["error_subcode"].as_i64()),
        (401, Some(190), Some(463))
    );
    graph.edit_token(TOKEN, |t| t.expires_at = 0);
    // A token Meta does not know.
    let (s, body) =
        get("debug_token", vec![("input_token", "EAAG-unknown".into()), ("access_token", app_token.clone())], None)
            .await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        serde_json::json!({"data": {"error": {"code": 190, "message": "Invalid OAuth access token."}, "is_valid": false, "scopes": []}})
    );
    // Meta's error envelope for a wrong or missing app token and a missing input_token.
    let wrong = format!("{APP}|not-the-secret");
    let (s, body) = get("debug_token", vec![("input_token", TOKEN.into()), ("access_token", wrong)], None).await;
    assert_eq!(
        (s, body["error"]["code"].as_i64(), body["error"]["type"].as_str()),
        (401, Some(190), Some("OAuthException"))
    );
    assert!(body["error"]["fbtrace_id"].is_string(), "{body}");
    let (s, body) = get("debug_token", vec![("input_token", TOKEN.into())], None).await;
    assert_eq!((s, body["error"]["code"].as_i64()), (400, Some(104)));
    let (s, body) = get("debug_token", vec![("access_token", app_token)], None).await;
    assert_eq!((s, body["error"]["code"].as_i64()), (400, Some(100)));
    // The phone node: the fields asked for and its id; the overall status follows the gravest entity.
    graph.block_entity(PNID, "BUSINESS", 141010, "Business not verified", "Verify the business");
    let (s, body) =
        get(PNID, vec![("fields", "health_status,quality_rating,messaging_limit_tier".into())], Some(TOKEN)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["id"], PNID);
    assert_eq!(
        (body["quality_rating"].as_str(), body["messaging_limit_tier"].as_str()),
        (Some("GREEN"), Some("TIER_1K"))
    );
    assert_eq!(body["health_status"]["can_send_message"], "BLOCKED");
    let business = &body["health_status"]["entities"][2];
    assert_eq!(
        (business["entity_type"].as_str(), business["errors"][0]["error_code"].as_i64()),
        (Some("BUSINESS"), Some(141010))
    );
    assert!(body.get("display_phone_number").is_none(), "only the fields asked for: {body}");
    let (s, body) = get(PNID, vec![], Some(TOKEN)).await;
    assert_eq!(
        (s, body["display_phone_number"].as_str(), body["verified_name"].is_string()),
        (200, Some(DISPLAY), true)
    );
    let (s, body) = get(PNID, vec![("fields", "health_status,colour".into())], Some(TOKEN)).await;
    assert_eq!((s, body["error"]["code"].as_i64()), (400, Some(100)));
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("nonexisting field (colour)")), "{body}");
    graph.stop().await;
}
