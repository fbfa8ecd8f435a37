//! The web console in a real browser: headless Chromium driven over WebDriver (chromedriver) by fantoccini.
//! One walk through the console per database: log in (a wrong token first), register an app, a WABA and a phone,
//! bind the phone to a portal (the Bitrix24 emulator) and watch its connector turn green, see a customer's
//! message arrive (a signed webhook from the Meta emulator), read the conversation and reply in its 24-hour
//! window (the reply is queued, sent to the Graph emulator and delivered), see a closed window say a template is
//! needed and send one, sync templates, redrive a dead job, archive and unarchive a phone, and see a forged form
//! refused. A screenshot of every page is kept in `target/screenshots/` (test artefacts).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs them); a missing browser fails the
//! test unless `WABRIDGE_TEST_SKIP=browser` leaves it out on purpose.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use wabridge_sandbox::bitrix::{BitrixOptions, BitrixSandbox};
use wabridge_sandbox::graph::GraphSandbox;
use wabridge_sandbox::graph_messages::Progression;
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

use crate::common::bridge::{now_s, templates, APP, CUSTOMER, DISPLAY, PNID, SECRET, TOKEN, WABA};
use crate::common::{browser_available, Db, TestApp, TestDb};

/// A customer whose last message is two days old.
const OLD_CUSTOMER: &str = "5511912345678";

both_databases!(console_walkthrough, sessions_expire_and_logins_are_limited, logins_behind_a_trusted_proxy);

/// chromedriver on a port of its own, ended when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// A headless browser session, once chromedriver answers (within 20 s).
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1280,900"]}),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&self.url).await {
                Ok(c) => return c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "chromedriver at {} did not start a browser: {e}", self.url);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().map(|t| t.join("screenshots")).expect("target dir");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    dir
}

struct Walk<'a> {
    c: &'a Client,
    app: &'a TestApp,
    db: &'static str,
}

impl Walk<'_> {
    async fn go(&self, path: &str) {
        self.c.goto(&self.app.url(path)).await.expect("page loads");
    }

    /// The page's text (empty while a page is being replaced).
    async fn body(&self) -> String {
        match self.c.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The page's text comes to contain `what` (after a click, the next page may still be loading): 10 s at most.
    async fn sees(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.body().await;
            if text.contains(what) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] expected {what:?} on {}; the page says:\n{text}",
                self.db,
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page (already loaded) does not contain `what`.
    async fn not_sees(&self, what: &str) {
        let text = self.body().await;
        assert!(!text.contains(what), "[{}] {what:?} should not be on {}:\n{text}", self.db, self.url().await);
    }

    /// The browser comes to show `path` (10 s at most).
    async fn at(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.url().await.ends_with(path) {
            assert!(Instant::now() < deadline, "[{}] expected to be at {path}, at {}", self.db, self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn url(&self) -> String {
        self.c.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = screenshots_dir().join(format!("console-{}-{name}.png", self.db));
        std::fs::write(&path, png).expect("screenshot written");
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("field {css}"));
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.c.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("element {css}")).click().await.expect("click");
    }

    /// Runs due jobs and reloads `path` until its text contains `what` (15 s at most).
    async fn until_sees(&self, path: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.app.svc.engine().drain().await.expect("drain");
            self.go(path).await;
            if self.body().await.contains(what) {
                return;
            }
            assert!(Instant::now() < deadline, "[{}] {path} never showed {what:?}:\n{}", self.db, self.body().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn console_walkthrough(db: Db) {
    if !browser_available() {
        return;
    }
    let graph = GraphSandbox::start().await.expect("graph sandbox");
    let bitrix = BitrixSandbox::start(BitrixOptions::default()).await.expect("bitrix sandbox");
    let opts = bitrix.options();
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        c.graph_base_url = graph.base_url();
        c.bitrix_oauth_url = bitrix.oauth_url();
        c.bitrix_client_id = opts.client_id.clone();
        c.bitrix_client_secret = Some(opts.client_secret.clone());
    })
    .await;
    graph.allow_token(TOKEN, APP);
    graph.add_number(PNID, DISPLAY, WABA);
    for t in templates() {
        graph.add_template(WABA, t);
    }
    assert_eq!(bitrix.install(&app.url("/api/bitrix/install")).await.expect("install posted"), 201);

    let driver = Driver::start();
    let c = driver.browser().await;
    let w = Walk { c: &c, app: &app, db: if db == Db::Sqlite { "sqlite" } else { "postgres" } };

    // `/` leads to the console, which asks for the admin token; a wrong one is refused where it was typed.
    w.go("/").await;
    w.at("/admin/login").await;
    w.fill("#token", "wbr_not-the-token").await;
    w.click("form.card button[type=submit]").await;
    w.sees("That is not the admin token.").await;
    w.shot("login-refused").await;
    w.fill("#token", &app.token).await;
    w.click("form.card button[type=submit]").await;
    w.sees("Apps: the last webhook from Meta").await;
    let cookies = c.get_all_cookies().await.expect("cookies");
    let session = cookies.iter().find(|k| k.name() == "wabridge_console").expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"));

    // An app: the form, then its callback URL and verify token with copy buttons.
    w.go("/admin/apps").await;
    w.fill("#meta_app_id", APP).await;
    w.fill("#app_name", "Shop").await;
    w.fill("#domain", "wb.example.com").await;
    w.fill("#app_secret", "short").await;
    w.click("section[aria-labelledby=new-app] button[type=submit]").await;
    w.sees("app_secret: must be at least 16 characters without spaces").await;
    w.fill("#app_secret", SECRET).await;
    w.fill("#access_token", TOKEN).await;
    w.click("section[aria-labelledby=new-app] button[type=submit]").await;
    w.sees(&format!("App {APP} registered")).await;
    w.sees("https://wb.example.com/api/waba/").await;
    let vt = c.find(Locator::Css("#vt-1")).await.expect("verify token").text().await.expect("text");
    assert_eq!(vt.len(), 40, "the verify token in full: {vt}");
    // The copy button (the console's one script, allowed by its Content-Security-Policy) answers the click.
    let copy = c.find(Locator::Css("button[data-copy=vt-1]")).await.expect("a copy button");
    copy.click().await.expect("click");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let label = copy.text().await.expect("label");
        if label == "Copied" || label.starts_with("Selected") {
            break;
        }
        assert!(Instant::now() < deadline, "the copy button did nothing: {label:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.shot("apps").await;

    // A WABA and a phone; then bind the phone to the portal and see the connector turn green.
    w.go("/admin/wabas").await;
    w.fill("#waba_id", WABA).await;
    w.click("section[aria-labelledby=new-waba] button[type=submit]").await;
    w.sees(&format!("WABA {WABA} registered.")).await;
    w.shot("wabas").await;
    w.go("/admin/phones").await;
    w.fill("#number", "+55 11 93000-1234").await;
    w.fill("#phone_number_id", PNID).await;
    w.click("section[aria-labelledby=new-phone] button[type=submit]").await;
    w.sees("Phone +5511930001234 registered.").await;
    w.sees("not bound to a portal").await;
    c.find(Locator::Css("#portal-1")).await.expect("portal select").select_by_index(1).await.expect("portal chosen");
    w.click("section[aria-labelledby=phone-1] form button[type=submit]").await;
    w.sees("bound to its portal").await;
    w.until_sees("/admin/phones", "connected (open line").await;
    w.shot("phones").await;
    c.set_window_size(390, 844).await.expect("phone width");
    w.go("/admin/phones").await;
    w.shot("phones-narrow").await;
    c.set_window_size(1280, 900).await.expect("desktop width");

    // Calling: Meta refuses the first enable; its code and what it means show at the form, then a retry works.
    graph.refuse_next(PNID, 138015);
    w.click("section[aria-labelledby=phone-1] details summary").await;
    w.click("#call-on-1").await;
    w.fill("#sip-host-1", "sip.example.com").await;
    w.click("form[action='/admin/phones/1/calling'] button").await;
    w.sees("Meta answered with error 138015").await;
    w.sees(&format!("What it means: {}", wabridge::meta::errors::explain_calling(138015).expect("explained"))).await;
    w.shot("phones-calling-refused").await;
    w.click("form[action='/admin/phones/1/calling'] button").await;
    w.sees("Meta accepted: calling is enabled.").await;
    w.sees("Calling: enabled at Meta").await;

    w.go("/admin/portals").await;
    w.sees("installed").await;
    w.shot("portals").await;

    // A customer writes: the signed webhook is acknowledged, processed, and the message shows.
    let sender = MetaWebhookSender::new(app.url(&format!("/api/waba?app_id={APP}")), SECRET);
    let value = p::messages_value(
        DISPLAY,
        PNID,
        vec![p::contact(CUSTOMER, "Maria Souza")],
        vec![p::text_message(CUSTOMER, &p::new_wamid(), now_s(), "Olá, the console test writes")],
    );
    assert!(sender.deliver(&p::envelope(WABA, "messages", value)).await.delivered);
    w.until_sees("/admin/messages", "Olá, the console test writes").await;
    w.sees("from customer").await;
    w.shot("messages").await;

    // Conversations: the customer leads the list with the message and an open window; the thread; a reply in the
    // window is queued through the sender, reaches the Graph emulator, and its delivery shows on reload.
    graph.set_status_progression(PNID, Progression::Delivered);
    graph.set_webhook(&app.url(&format!("/api/waba?app_id={APP}")), SECRET);
    w.go("/admin/conversations").await;
    w.sees("Maria Souza +5511987654321").await;
    w.sees("← Olá, the console test writes").await;
    w.sees("open until").await;
    w.shot("conversations").await;
    w.go("/admin/conversations?phone=1&contact=5500000000000").await;
    w.sees("No conversation yet").await;
    w.go("/admin/conversations?phone=%2B1999").await;
    w.sees("phone:").await;
    w.go("/admin/conversations").await;
    w.click("tr.conversation a").await;
    let thread = format!("/admin/conversations/1/{CUSTOMER}");
    w.at(&thread).await;
    w.sees("Conversation with Maria Souza").await;
    w.sees("Customer · ").await;
    w.sees("Olá, the console test writes").await;
    w.fill("#reply-body", "Your order ships today").await;
    w.click("#reply button[type=submit]").await;
    w.sees("Reply queued, send #").await;
    w.shot("thread-queued").await;
    w.until_sees(&thread, "delivered").await;
    w.sees("Your order ships today").await;
    w.sees("from console").await;
    w.shot("thread").await;
    let sent = graph.sent_messages(PNID);
    assert!(
        sent.iter().any(|m| m.wa_id == CUSTOMER
            && m.body.get("text").and_then(|t| t.get("body")) == Some(&json!("Your order ships today"))),
        "the reply reached the Graph emulator: {sent:?}"
    );
    // An empty reply is refused at the form, naming the field; nothing is queued.
    let before = graph.sent_count();
    c.execute("document.querySelector('#reply-body').removeAttribute('required');", vec![]).await.expect("script");
    w.click("#reply button[type=submit]").await;
    w.sees("text.body").await;
    assert_eq!(graph.sent_count(), before);
    // A customer who wrote two days ago: the window is closed, and the page says a template is needed.
    let old = p::messages_value(
        DISPLAY,
        PNID,
        vec![p::contact(OLD_CUSTOMER, "João Lima")],
        vec![p::text_message(OLD_CUSTOMER, &p::new_wamid(), now_s() - 48 * 3600, "an old question")],
    );
    assert!(sender.deliver(&p::envelope(WABA, "messages", old)).await.delivered);
    w.until_sees("/admin/conversations", "João Lima").await;
    w.sees("closed since").await;
    w.go(&format!("/admin/conversations/1/{OLD_CUSTOMER}")).await;
    w.sees("window closed at").await;
    w.sees("only an approved template can").await;
    assert!(c.find(Locator::Css("#reply-body")).await.is_err(), "no free-text box outside the window");
    w.shot("thread-window-closed").await;
    // Account health: the number's quality and messaging limit, and account updates, from Meta's webhooks.
    let quality = json!({"display_phone_number": DISPLAY, "event": "FLAGGED", "current_limit": "TIER_10K"});
    assert!(sender.deliver(&p::envelope(WABA, "phone_number_quality_update", quality)).await.delivered);
    let update = json!({"phone_number": DISPLAY, "event": "ACCOUNT_VIOLATION"});
    assert!(sender.deliver(&p::envelope(WABA, "account_update", update)).await.delivered);
    w.until_sees("/admin", "FLAGGED · limit TIER_10K").await;
    w.sees("ACCOUNT_VIOLATION").await;
    w.sees(" s ago").await;
    // Meta's own figures: "Check now" queues the health check; the token's expiry and the number's health show.
    graph.set_app_secret(APP, SECRET);
    graph.edit_token(TOKEN, |t| t.expires_at = now_s() + 12 * 86_400 + 600);
    graph.limit_entity(PNID, "WABA", &["The business has reached its messaging limit."]);
    w.sees("not checked yet").await;
    w.click("form[action='/admin/health/check'] button").await;
    w.sees(&format!("Health check queued for 1 WABA ({WABA}) and 1 phone(s)")).await;
    w.until_sees("/admin", "expires in 12 days").await;
    w.sees("WABA 102290129340398: LIMITED — The business has reached its messaging limit.").await;
    w.sees("GREEN · TIER_1K").await;
    w.shot("health").await;
    c.set_window_size(390, 844).await.expect("phone width");
    w.go("/admin").await;
    w.shot("health-narrow").await;
    c.set_window_size(1280, 900).await.expect("desktop width");

    // Templates: the sync button queues a sync; the workers fetch them from Meta.
    w.go("/admin/templates").await;
    w.click("form[action='/admin/templates/sync'] button").await;
    w.sees("Template sync queued").await;
    w.until_sees("/admin/templates", "order_ready").await;
    w.shot("templates").await;

    // Outside the window an approved template goes: without its values it is refused naming the field, then sent.
    let old_thread = format!("/admin/conversations/1/{OLD_CUSTOMER}");
    w.go(&old_thread).await;
    let select = c.find(Locator::Css("#template-name")).await.expect("the approved templates");
    select.select_by_value("order_ready|en_US").await.expect("template chosen");
    w.click("#template-send button[type=submit]").await;
    w.sees("template.parameters").await;
    w.fill("#template-params", "João\n42").await;
    w.click("#template-send button[type=submit]").await;
    w.sees("Template queued, send #").await;
    w.until_sees(&old_thread, "delivered").await;
    w.sees("[template order_ready (en_US)]").await;
    w.shot("thread-template").await;
    let sent = graph.sent_messages(PNID);
    let t = sent.iter().find(|m| m.wa_id == OLD_CUSTOMER).expect("the template reached the Graph emulator");
    assert_eq!(t.body["template"]["name"], "order_ready", "{:?}", t.body);

    // A dead job (a signed body that is not JSON), redriven from the jobs page.
    let body = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
    assert_eq!(sender.post_raw(body, Some(&sig)).await.expect("posted"), 200);
    w.until_sees("/admin/jobs?state=dead", "Redrive").await;
    w.sees("dead").await;
    w.go("/admin").await;
    w.sees("1 dead job(s)").await;
    w.go("/admin/jobs?state=dead").await;
    w.shot("jobs-dead").await;
    let (_, dead) = app.admin("GET", "/jobs?state=dead", None).await;
    let dead_id = dead[0]["id"].as_i64().expect("dead job id");
    w.click(&format!("#job-{dead_id} button")).await;
    w.sees(&format!("Job {dead_id} is queued again")).await;
    w.shot("jobs-redriven").await;
    let (_, pending) = app.admin("GET", "/jobs?state=pending", None).await;
    assert!(pending.as_array().expect("list").iter().any(|j| j["id"] == dead_id), "redriven: {pending}");

    // Sends (the console's reply, with its origin and outcome) and calls (an empty list still renders).
    w.go("/admin/sends").await;
    w.sees("console accepted delivered").await;
    w.shot("sends").await;
    w.go("/admin/calls").await;
    w.sees("No call yet.").await;
    w.shot("calls").await;

    // Archive the phone (it has history): it leaves the list, "Show archived" shows it marked, and it comes back.
    w.go("/admin/phones").await;
    w.click("form[action='/admin/phones/1/archive'] button").await;
    w.sees("Phone +5511930001234 archived").await;
    w.not_sees("Save phone +5511930001234").await;
    w.sees("Show archived (1)").await;
    w.shot("phones-archived-hidden").await;
    w.click("#show-archived").await;
    w.sees("Unarchive +5511930001234").await;
    let marker = c.find(Locator::Css("#phone-1 span.archived")).await.expect("the archived marker");
    assert_eq!(marker.text().await.expect("text"), "archived");
    w.shot("phones-archived-shown").await;
    let (_, phone) = app.admin("GET", "/phones/1", None).await;
    assert!(phone["archived_at"].is_string(), "archived: {phone}");
    w.click("form[action='/admin/phones/1/restore'] button").await;
    w.sees("Phone +5511930001234 is in use again").await;
    w.sees("Save phone +5511930001234").await;
    w.sees("Show archived (0)").await;
    let (_, phone) = app.admin("GET", "/phones/1", None).await;
    assert!(phone.get("archived_at").is_none_or(|a| a.is_null()), "restored: {phone}");

    // A forged form (the wrong CSRF token) is refused and changes nothing.
    w.go("/admin/wabas").await;
    c.execute("document.querySelector('section[aria-labelledby=new-waba] input[name=csrf]').value = 'forged';", vec![])
        .await
        .expect("script runs");
    w.fill("#waba_id", "999000111").await;
    w.click("section[aria-labelledby=new-waba] button[type=submit]").await;
    w.sees("This form was refused").await;
    w.shot("csrf-refused").await;
    let (_, wabas) = app.admin("GET", "/wabas", None).await;
    assert_eq!(wabas.as_array().map(Vec::len), Some(1), "nothing created: {wabas}");
    // And without the session's cookie a post only leads to the login page.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(app.url("/admin/wabas"))
        .form(&[("csrf", "x"), ("waba_id", "999000111"), ("app", "1")])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/admin/login");

    // Log out: the session ends on the server too.
    w.go("/admin").await;
    w.click("form.logout button").await;
    w.at("/admin/login").await;
    w.go("/admin/jobs").await;
    w.at("/admin/login").await;

    c.close().await.expect("browser closes");
    drop(driver);
    app.stop().await;
    graph.stop().await;
    bitrix.stop().await;
}

/// Without a browser: a session stops working when it expires (server side) and after logout, and logins are
/// limited to `LOGINS_PER_MINUTE` a minute.
async fn sessions_expire_and_logins_are_limited(db: Db) {
    let app = TestApp::start(db).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let login = |token: String| {
        let req = http.post(app.url("/admin/login")).form(&[("token", token)]);
        async move { req.send().await.expect("login posted") }
    };
    let resp = login(app.token.clone()).await;
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http without an https public_url: {cookie}");
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let page = |path: &str| http.get(app.url(path)).header("cookie", pair.clone()).send();
    let resp = page("/admin/jobs").await.expect("page");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(resp.headers()["content-security-policy"].to_str().unwrap_or_default().contains("frame-ancestors 'none'"));

    // Expired on the server: the cookie alone no longer opens a page.
    sqlx::query("UPDATE console_sessions SET expires_at = 0").execute(app.svc.store.raw_pool()).await.expect("expire");
    let resp = page("/admin/jobs").await.expect("page");
    assert_eq!((resp.status().as_u16(), resp.headers()["location"].to_str().ok()), (303, Some("/admin/login")));

    // Rotating the admin token ends every session.
    let resp = login(app.token.clone()).await;
    let pair = resp.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
    let opened = http.get(app.url("/admin")).header("cookie", pair.clone()).send().await.expect("page");
    assert_eq!(opened.status().as_u16(), 200);
    let token = wabridge::admin_token::rotate(&app.svc.store).await.expect("rotated");
    let after = http.get(app.url("/admin")).header("cookie", pair).send().await.expect("page");
    assert_eq!(after.status().as_u16(), 303, "a session of the old token");

    // Behind an https proxy the cookie is Secure.
    let resp = http
        .post(app.url("/admin/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", token.clone())])
        .send()
        .await
        .expect("login posted");
    assert!(resp.headers()["set-cookie"].to_str().expect("cookie").contains("; Secure"));

    // Wrong tokens are refused; past the limit every login waits, the right token too.
    let mut statuses = Vec::new();
    for _ in 0..3 * wabridge::http::console::LOGINS_PER_MINUTE {
        let status = login("wbr_wrong".into()).await.status().as_u16();
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "the limit is reached: {statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 401), "{statuses:?}");
    let resp = login(token.clone()).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    assert!(resp.text().await.expect("page").contains("Too many login attempts"));
    // The limit is per client: another address (127.0.0.2, also this machine) still logs in.
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let resp = other.post(app.url("/admin/login")).form(&[("token", token)]).send().await.expect("login posted");
    assert_eq!(resp.status().as_u16(), 303, "a different client is not locked out");
    app.stop().await;
}

/// Behind a trusted reverse proxy (`trusted_proxies`), the client is the address the proxy forwarded for: one
/// client's wrong logins do not block another behind the same proxy, and a client cannot pick its own address.
async fn logins_behind_a_trusted_proxy(db: Db) {
    let app = TestApp::start_with(TestDb::new(db).await, |c| c.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let login = |forwarded: &'static str, token: String| {
        let req = http.post(app.url("/admin/login")).header("x-forwarded-for", forwarded).form(&[("token", token)]);
        async move { req.send().await.expect("login posted").status().as_u16() }
    };
    // A stranger forged an address left of the one the proxy appended: the proxy's entry is believed.
    let mut statuses = Vec::new();
    for _ in 0..=wabridge::http::console::LOGINS_PER_MINUTE {
        statuses.push(login("198.51.100.1, 203.0.113.66", "wbr_wrong".into()).await);
    }
    assert_eq!(statuses.last(), Some(&429), "the stranger is limited: {statuses:?}");
    assert_eq!(login("198.51.100.1", app.token.clone()).await, 303, "the forged address is someone else's");
    assert_eq!(login("203.0.113.66", app.token.clone()).await, 429, "the stranger, however the header is spelt");
    app.stop().await;
}
