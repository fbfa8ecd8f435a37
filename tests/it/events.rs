//! Tenant event webhooks end to end, on both databases: events emitted where the facts are stored, signed POSTs
//! to a real HTTP endpoint, retries, a dead endpoint, redrive, a disabled endpoint, SSRF refusals. Every captured
//! delivery's signature is verified by the published Python `standardwebhooks` package (an independent
//! implementation of the specification), not by our signer.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use common::{Db, TestApp, TestDb};
use serde_json::{json, Value};
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const PNID: &str = "106540352242922";
const DISPLAY: &str = "5511930001234";
const WABA: &str = "102290129340398";
const CUSTOMER: &str = "5511987654321";

/// What the tenant's endpoint received, and what it answers next (then 200) to events of type `only` (to all
/// when `None`).
#[derive(Default)]
struct Endpoint {
    got: Vec<(HeaderMap, String)>,
    answers: Vec<u16>,
    only: Option<&'static str>,
}

/// A tenant endpoint on 127.0.0.1: records every request and answers the queued statuses, then 200.
async fn endpoint() -> (String, Arc<Mutex<Endpoint>>) {
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let s = state.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let mut e = s.lock().unwrap();
                let concerned = e.only.is_none_or(|t| body.contains(&format!("\"type\":\"{t}\"")));
                e.got.push((headers, body));
                let status = if e.answers.is_empty() || !concerned { 200 } else { e.answers.remove(0) };
                (axum::http::StatusCode::from_u16(status).unwrap(), format!("answer {status}"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn allow_private(c: &mut wabridge::Config) {
    c.events_allow_private_urls = true;
}

fn sender(app: &TestApp) -> MetaWebhookSender {
    MetaWebhookSender::new(app.url("/api/waba/?app_id=1234567890"), SECRET)
}

fn inbound(messages: Vec<Value>) -> Value {
    p::envelope(WABA, "messages", p::messages_value(DISPLAY, PNID, vec![p::contact(CUSTOMER, "João Silva")], messages))
}

/// Runs due jobs, making retries due at once, until `done` holds or 20 s pass.
async fn drain_until(app: &TestApp, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        app.svc.engine().drain().await.unwrap();
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "not done within 20 s");
        app.svc.engine().make_all_due().await.unwrap();
    }
}

/// Verifies every captured request with the Python `standardwebhooks` package; returns how many verified.
fn verify_independently(secret: &str, got: &[(HeaderMap, String)]) -> usize {
    let python = common::standardwebhooks_python();
    let items: Vec<Value> = got
        .iter()
        .map(|(h, body)| {
            let hv = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            json!({"headers": {"webhook-id": hv("webhook-id"), "webhook-timestamp": hv("webhook-timestamp"),
                               "webhook-signature": hv("webhook-signature")}, "body": body})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deliveries.json");
    std::fs::write(&file, serde_json::to_vec(&json!({"secret": secret, "items": items})).unwrap()).unwrap();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(open(sys.argv[1]))
wh = Webhook(data["secret"])
n = 0
for item in data["items"]:
    wh.verify(item["body"], item["headers"])
    n += 1
# A changed body must not verify.
item = data["items"][0]
try:
    wh.verify(item["body"] + " ", item["headers"])
    print("TAMPERED BODY VERIFIED")
    sys.exit(3)
except Exception:
    pass
print(n)
"#;
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(&file).output().expect("python runs");
    assert!(out.status.success(), "standardwebhooks refused: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let (st, sub) = app.admin("POST", "/event-subscriptions", Some(body)).await;
    assert_eq!(st, 201, "{sub}");
    assert!(sub["signing_secret"].as_str().unwrap().starts_with("whsec_"), "{sub}");
    sub
}

/// A received message, a status and a template status reach a key-scoped subscriber, signed; the first event's
/// endpoint fails twice and gets it on the third attempt with the same id.
async fn events_are_signed_retried_and_verified(db: Db) {
    if !common::standardwebhooks_available() {
        return;
    }
    let app = TestApp::start_with(TestDb::new(db).await, allow_private).await;
    let (_, waba, _) = app.seed(SECRET).await;
    let (_, key) = app.admin("POST", "/api-keys", Some(json!({"name": "shop", "waba": waba["id"]}))).await;
    let (url, ep) = endpoint().await;
    ep.lock().unwrap().answers = vec![503, 500];
    ep.lock().unwrap().only = Some("message.received");
    let sub = subscribe(
        &app,
        json!({"url": url, "event_types": ["message.received", "message.status", "template.status"],
               "api_key": key["id"], "description": "shop backend"}),
    )
    .await;
    // A subscription of another scope (a WABA that is not this one) gets nothing.
    let other = common::another_waba(&app).await;
    let (url2, ep2) = endpoint().await;
    subscribe(&app, json!({"url": url2, "event_types": ["*"], "waba": other["id"]})).await;
    // A key limited to another phone of this WABA gets nothing; one limited to this phone gets its message.
    let (s, phone_b) = app
        .admin(
            "POST",
            "/phones",
            Some(json!({"number": "+5511930005678", "phone_number_id": "106540352249999",
                                               "waba": waba["id"]})),
        )
        .await;
    assert_eq!(s, 201, "{phone_b}");
    let (url3, ep3) = endpoint().await;
    let (_, key_b) = app.admin("POST", "/api-keys", Some(json!({"name": "b", "phones": [phone_b["id"]]}))).await;
    subscribe(&app, json!({"url": url3, "event_types": ["*"], "api_key": key_b["id"]})).await;
    let (url4, ep4) = endpoint().await;
    let (_, key_a) = app.admin("POST", "/api-keys", Some(json!({"name": "a", "phones": ["+5511930001234"]}))).await;
    subscribe(&app, json!({"url": url4, "event_types": ["message.received"], "api_key": key_a["id"]})).await;

    let wamid = p::new_wamid();
    assert!(
        sender(&app).deliver(&inbound(vec![p::text_message(CUSTOMER, &wamid, 1767800000, "hello")])).await.delivered
    );
    let st = p::envelope(
        WABA,
        "messages",
        p::statuses_value(DISPLAY, PNID, vec![p::status("wamid.out-1", "delivered", 1767800010, CUSTOMER)]),
    );
    assert!(sender(&app).deliver(&st).await.delivered);
    let tpl = p::template_status_update(WABA, 1689556908129832, "order_confirmation", "en-US", "APPROVED");
    assert!(sender(&app).deliver(&tpl).await.delivered);
    drain_until(&app, || ep.lock().unwrap().got.len() >= 5).await;

    let got = std::mem::take(&mut ep.lock().unwrap().got);
    assert_eq!(got.len(), 5, "3 attempts of the first event, 1 of each other");
    let id = |i: usize| got[i].0["webhook-id"].to_str().unwrap().to_string();
    let bodies: Vec<Value> = got.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    let received: Vec<usize> = (0..5).filter(|&i| bodies[i]["type"] == "message.received").collect();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|&i| id(i) == id(received[0]) && got[i].1 == got[received[0]].1), "same id and body");
    let b = &bodies[received[0]];
    assert_eq!(b["data"]["message"]["text"], "hello");
    assert_eq!(b["data"]["message"]["wamid"], wamid.as_str());
    assert_eq!(b["data"]["message"]["content"], json!({"body": "hello"}));
    assert_eq!(b["data"]["contact"]["wa_id"], CUSTOMER);
    assert_eq!(b["data"]["phone"]["number"], "+5511930001234");
    let status = bodies.iter().find(|b| b["type"] == "message.status").expect("a status event");
    assert_eq!(status["data"]["status"], "delivered");
    let template = bodies.iter().find(|b| b["type"] == "template.status").expect("a template event");
    assert_eq!(
        (template["data"]["name"].as_str(), template["data"]["status"].as_str()),
        (Some("order_confirmation"), Some("APPROVED"))
    );
    assert_eq!(ep2.lock().unwrap().got.len(), 0, "another WABA's subscriber sees nothing");
    drain_until(&app, || !ep4.lock().unwrap().got.is_empty()).await;
    assert_eq!(ep4.lock().unwrap().got.len(), 1, "the key limited to this phone gets its message");
    assert_eq!(ep3.lock().unwrap().got.len(), 0, "a key limited to another phone sees nothing");

    let (_, full) = app.admin("GET", &format!("/event-subscriptions/{}/secret", sub["id"]), None).await;
    let secret = full["signing_secret"].as_str().unwrap();
    assert_eq!(verify_independently(secret, &got), 5);

    // Every attempt is visible: status, latency, answer.
    let (st, list) = app.admin("GET", &format!("/event-deliveries?subscription={}", sub["id"]), None).await;
    assert_eq!(st, 200, "{list}");
    let first = list.as_array().unwrap().iter().find(|d| d["event_type"] == "message.received").unwrap();
    assert_eq!((first["state"].as_str(), first["attempts"].as_i64()), (Some("delivered"), Some(3)));
    let (_, detail) = app.admin("GET", &format!("/event-deliveries/{}", first["id"]), None).await;
    let attempts = detail["attempts_made"].as_array().unwrap();
    let statuses: Vec<i64> = attempts.iter().map(|a| a["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [503, 500, 200]);
    assert_eq!(attempts[0]["answer"], "answer 503");
    assert!(attempts.iter().all(|a| a["latency_ms"].as_i64().unwrap() >= 0));
    assert_eq!(detail["event"]["type"], "message.received");
    let (_, view) = app.admin("GET", &format!("/event-subscriptions/{}", sub["id"]), None).await;
    assert_eq!((view["enabled"].as_bool(), view["failing_since"].as_str()), (Some(true), None), "{view}");
    assert!(!view["secret"].as_str().unwrap().starts_with("whsec_"), "masked: {view}");
    app.stop().await;
}

/// With a zero retry window and a zero disable delay: the first failure kills the delivery and disables the
/// endpoint (reason shown); a disabled endpoint gets no new events; enabled again and redriven, the same event
/// arrives with the same id.
async fn a_dead_endpoint_is_disabled_and_redriven(db: Db) {
    if !common::standardwebhooks_available() {
        return;
    }
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        allow_private(c);
        c.events_retry_window_seconds = 0;
        c.events_disable_after_seconds = 0;
    })
    .await;
    app.seed(SECRET).await;
    let (url, ep) = endpoint().await;
    ep.lock().unwrap().answers = vec![500];
    let sub = subscribe(&app, json!({"url": url, "event_types": ["message.received"]})).await;
    let send = |text: &str| inbound(vec![p::text_message(CUSTOMER, &p::new_wamid(), 1767800000, text)]);
    assert!(sender(&app).deliver(&send("one")).await.delivered);
    drain_until(&app, || !ep.lock().unwrap().got.is_empty()).await;

    let (_, list) = app.admin("GET", "/event-deliveries?state=dead", None).await;
    let dead = list.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{list}");
    assert!(dead[0]["last_error"].as_str().unwrap().contains("HTTP 500"), "{list}");
    let (_, view) = app.admin("GET", &format!("/event-subscriptions/{}", sub["id"]), None).await;
    assert_eq!(view["enabled"], false, "{view}");
    let reason = view["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("every delivery failed since") && reason.contains("HTTP 500"), "{reason}");

    // Disabled: a new message makes no delivery.
    assert!(sender(&app).deliver(&send("two")).await.delivered);
    app.svc.engine().drain().await.unwrap();
    let (_, all) = app.admin("GET", "/event-deliveries", None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    let (st, v) =
        app.admin("PATCH", &format!("/event-subscriptions/{}", sub["id"]), Some(json!({"enabled": true}))).await;
    assert_eq!((st, v["enabled"].as_bool(), v["disabled_reason"].as_str()), (200, Some(true), None), "{v}");
    let (st, r) = app.admin("POST", &format!("/event-deliveries/{}/redrive", dead[0]["id"]), None).await;
    assert_eq!(st, 200, "{r}");
    drain_until(&app, || ep.lock().unwrap().got.len() >= 2).await;
    let got = std::mem::take(&mut ep.lock().unwrap().got);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0["webhook-id"], got[1].0["webhook-id"], "the event id is stable across a redrive");
    let (_, detail) = app.admin("GET", &format!("/event-deliveries/{}", dead[0]["id"]), None).await;
    assert_eq!((detail["state"].as_str(), detail["attempts"].as_i64()), (Some("delivered"), Some(2)), "{detail}");
    let (st, again) = app.admin("POST", &format!("/event-deliveries/{}/redrive", dead[0]["id"]), None).await;
    assert_eq!(st, 404, "only dead deliveries are redriven: {again}");
    let (_, key) = app.admin("GET", &format!("/event-subscriptions/{}/secret", sub["id"]), None).await;
    assert_eq!(verify_independently(key["signing_secret"].as_str().unwrap(), &got), 2);
    app.stop().await;
}

/// Subscription URLs that are not http(s) or name private addresses are refused, naming the field; and an
/// address allowed when the subscription was saved is checked again at delivery time.
async fn private_addresses_are_refused(db: Db) {
    let tdb = TestDb::new(db).await;
    let mut config = tdb.config();
    config.events_allow_private_urls = true;
    let svc = wabridge::Service::start(config.clone()).await.expect("service starts");
    let token = svc.new_admin_token.clone().unwrap();
    let app = TestApp { svc, db: tdb, token, http: reqwest::Client::new() };
    app.seed(SECRET).await;
    let (url, ep) = endpoint().await;
    let sub = subscribe(&app, json!({"url": url, "event_types": ["message.received"]})).await;
    let TestApp { svc, db: tdb, token, http } = app;
    svc.stop().await.unwrap();

    // The same database, now with private addresses refused.
    config.events_allow_private_urls = false;
    let svc = wabridge::Service::start(config).await.expect("service starts again");
    let app = TestApp { svc, db: tdb, token, http };
    for (body, field, words) in [
        (json!({"url": "http://127.0.0.1:9/x", "event_types": ["*"]}), "url", "not a public address"),
        (json!({"url": "http://localhost:9/x", "event_types": ["*"]}), "url", "not a public address"),
        (json!({"url": "http://169.254.169.254/latest", "event_types": ["*"]}), "url", "not a public address"),
        (json!({"url": "ftp://hooks.example.com/x", "event_types": ["*"]}), "url", "http or https"),
        (json!({"url": "https://8.8.8.8/x", "event_types": ["message.sent"]}), "event_types[0]", "unknown event type"),
        (json!({"url": "https://8.8.8.8/x", "event_types": ["*"], "waba": 1, "api_key": 1}), "waba", "not both"),
    ] {
        let (st, e) = app.admin("POST", "/event-subscriptions", Some(body)).await;
        assert_eq!(st, 422, "{e}");
        assert_eq!(e["error"]["fields"][0]["field"], field, "{e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(words), "{e}");
    }
    let wamid = p::new_wamid();
    assert!(sender(&app).deliver(&inbound(vec![p::text_message(CUSTOMER, &wamid, 1767800000, "hi")])).await.delivered);
    app.svc.engine().drain().await.unwrap();
    assert!(ep.lock().unwrap().got.is_empty(), "nothing reached the private address");
    let (_, list) = app.admin("GET", &format!("/event-deliveries?subscription={}", sub["id"]), None).await;
    let d = &list[0];
    assert_eq!((d["state"].as_str(), d["attempts"].as_i64()), (Some("pending"), Some(1)), "{list}");
    assert!(d["last_error"].as_str().unwrap().contains("not a public address"), "{list}");
    app.stop().await;
}

both_databases!(
    events_are_signed_retried_and_verified,
    a_dead_endpoint_is_disabled_and_redriven,
    private_addresses_are_refused
);
