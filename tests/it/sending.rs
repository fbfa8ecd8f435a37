//! Outbound delivery end to end, on both databases: the SMS provider, Meta's error classes, unanswered sends,
//! pacing, template notifications with locale fallback, template variant checks, two processes sending once.

use crate::common;

use std::time::Duration;

use common::bridge::{Bridged, APP, CUSTOMER, DISPLAY, PNID, SECRET, TOKEN, WABA};
use common::Db;
use serde_json::{json, Value};
use wabridge_sandbox::graph_messages::Progression;
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

const CODE: &str = "wabridge_5511930001234";

async fn enable_sms(b: &Bridged) {
    let (s, body) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"sms_service": true}))).await;
    assert_eq!(s, 200, "{body}");
    b.until("the SMS sender is registered", |b| async move { b.phone().await["sms"]["status"] == "registered" }).await;
}

async fn sms_provider_registers_sends_templates_and_reports_statuses(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    enable_sms(&b).await;
    let senders = b.bitrix.sms_senders();
    assert_eq!(senders.len(), 1);
    assert_eq!(senders[0].code, CODE);
    assert_eq!(senders[0].sender_type, "SMS");
    assert!(senders[0].handler.ends_with(&format!("/api/sms/{CODE}")), "{}", senders[0].handler);
    assert_eq!(senders[0].name, "WhatsApp +5511930001234");

    // A robot sends `NAME+LANG+v1|v2`: the template reaches Meta with those parameters.
    let (status, message_id) =
        b.bitrix.robot_sms(CODE, "+55 11 98765-4321", "order_ready+pt_BR+Anna|77").await.unwrap();
    assert_eq!(status, 200);
    b.until("sent to Meta", |b| async move { b.graph.sent_messages(PNID).len() == 1 }).await;
    let sent = b.graph.sent_messages(PNID).pop().unwrap();
    assert_eq!(sent.body["to"], format!("+{CUSTOMER}"));
    assert_eq!(
        sent.body["template"],
        json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "77"}]}]})
    );
    let id = message_id.clone();
    b.until("delivered reported", |b| {
        let id = id.clone();
        async move { b.bitrix.sms_statuses().iter().any(|(m, s)| *m == id && s == "delivered") }
    })
    .await;
    assert!(b.bitrix.sms_statuses().iter().any(|(m, s)| *m == message_id && s == "sent"));

    // A permanent refusal by Meta: `failed`, with the reason kept on the send.
    b.graph.fail_next_send(PNID, 131026);
    let (_, failing) = b.bitrix.robot_sms(CODE, "+5511987654321", "template-hello+en_US").await.unwrap();
    let id = failing.clone();
    b.until("failed reported", |b| {
        let id = id.clone();
        async move { b.bitrix.sms_statuses().iter().any(|(m, s)| *m == id && s == "failed") }
    })
    .await;
    // Meta took a send, then could not deliver it (a `failed` status webhook): `undelivered`.
    b.graph.set_status_progression(PNID, Progression::Silent);
    let (_, lost) = b.bitrix.robot_sms(CODE, "+5511987654321", "template-hello+en_US").await.unwrap();
    b.until("sent to Meta", |b| async move { b.graph.sent_messages(PNID).len() == 2 }).await;
    let wamid = b.graph.sent_messages(PNID).pop().unwrap().wamid;
    let failed =
        p::failed_status(&wamid, 1_700_000_000, CUSTOMER, 131026, "Message undeliverable", "Unable to deliver");
    let sender = MetaWebhookSender::new(b.app.url(&format!("/api/waba?app_id={APP}")), SECRET);
    let d = sender.deliver(&p::envelope(WABA, "messages", p::statuses_value(DISPLAY, PNID, vec![failed]))).await;
    assert!(d.delivered, "{:?}", d.statuses);
    let id = lost.clone();
    b.until("undelivered reported", |b| {
        let id = id.clone();
        async move { b.bitrix.sms_statuses().iter().any(|(m, s)| *m == id && s == "undelivered") }
    })
    .await;
    assert!(!b.bitrix.sms_statuses().iter().any(|(m, s)| *m == lost && s == "failed"));
    // Plain text outside the window fails with the reason, and nothing reaches Meta.
    let before = b.graph.sent_messages(PNID).len();
    let (status, text_id) = b.bitrix.robot_sms(CODE, "+5511987654321", "Olá, tudo bem?").await.unwrap();
    assert_eq!(status, 422);
    let id = text_id.clone();
    b.until("text refused", |b| {
        let id = id.clone();
        async move { b.bitrix.sms_statuses().iter().any(|(m, s)| *m == id && s == "failed") }
    })
    .await;
    assert_eq!(b.graph.sent_messages(PNID).len(), before);
    // A forged application token is refused.
    let forged = b.bitrix.with_application_token("nope").robot_sms(CODE, "+5511987654321", "hello+en_US").await;
    assert_eq!(forged.unwrap().0, 401);

    // Clearing the flag removes the sender from the portal.
    let (s, _) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"sms_service": false}))).await;
    assert_eq!(s, 200);
    b.until("the SMS sender is removed", |b| async move { b.phone().await["sms"]["status"] == "removed" }).await;
    assert!(b.bitrix.sms_senders().is_empty());
    b.stop().await;
}

async fn permanent_errors_reach_whoever_asked(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    b.customer_text("oi").await;
    b.until("in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    // CRM chat: a short system message with the reason. The reply also marks the customer's message read; the
    // two requests may reach Meta in either order, so both are refused (a refused read mark is never shown).
    b.graph.fail_next_send(PNID, 131026);
    b.graph.fail_next_send(PNID, 131026);
    b.operator("Olá!").await;
    b.until("the failure in the chat", |b| async move { !b.system_messages().is_empty() }).await;
    let note = b.system_messages().pop().unwrap();
    assert!(note.starts_with("Not delivered to WhatsApp:") && note.contains("Meta error 131026"), "{note}");
    assert!(note.contains("could not be delivered"), "{note}");
    b.until("the read mark took the other refusal", |b| async move {
        let (_, sends) = b.app.admin("GET", "/sends", None).await;
        sends.as_array().is_some_and(|a| a.iter().any(|s| s["origin"] == "read" && s["state"] == "failed"))
    })
    .await;
    // API caller: the reason on the send.
    let key = b.api_key().await;
    b.graph.fail_next_send(PNID, 132001);
    let (s, body) =
        b.notify(&key, json!({"from": "+5511930001234", "to": "+5511987654321", "template": "hello"})).await;
    assert_eq!(s, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    b.until("the send failed", |b| async move { b.send(id).await["state"] == "failed" }).await;
    let send = b.send(id).await;
    assert_eq!(send["error_code"], 132001);
    assert!(send["error_text"].as_str().unwrap().to_lowercase().contains("template"), "{send}");
    let r = b.app.http.get(b.app.url(&format!("/api/v1/sends/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "failed");
    b.stop().await;
}

async fn retryable_errors_are_retried_and_succeed(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let key = b.api_key().await;
    for code in [131056, 130429, 131000] {
        b.graph.fail_next_send(PNID, code);
    }
    let (s, body) =
        b.notify(&key, json!({"from": "+5511930001234", "to": "+5511987654321", "template": "hello"})).await;
    assert_eq!(s, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    b.until("accepted after retries", |b| async move {
        b.app.svc.engine().make_all_due().await.unwrap();
        b.send(id).await["state"] == "accepted"
    })
    .await;
    let send = b.send(id).await;
    assert_eq!(send["attempts"], 4, "{send}");
    assert_eq!(b.graph.sent_messages(PNID).len(), 1);
    b.stop().await;
}

async fn an_unanswered_send_is_reconciled_not_duplicated(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let key = b.api_key().await;
    // Meta accepts, but answers after our 1 s timeout; its status webhooks say what happened.
    b.graph.timeout_next_send(PNID, Duration::from_secs(3));
    let (_, body) =
        b.notify(&key, json!({"from": "+5511930001234", "to": "+5511987654321", "template": "hello"})).await;
    let id = body["id"].as_i64().unwrap();
    b.until("reconciled from the status webhook", |b| async move { b.send(id).await["state"] == "accepted" }).await;
    b.until("delivered", |b| async move { b.send(id).await["status"] == "read" }).await;
    // The deferred job runs (as it would when the reconcile window ends) and sends nothing more.
    b.app.svc.engine().make_all_due().await.unwrap();
    b.settle().await;
    assert_eq!(b.graph.sent_messages(PNID).len(), 1);
    b.stop().await;
}

/// No answer and no status webhook within the reconcile window: the send goes again (documented: the customer may
/// get it twice), and that is shown with the send in the APIs and counted in /metrics.
async fn an_unconfirmed_resend_is_shown_and_counted(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    b.graph.set_status_progression(PNID, Progression::Silent);
    let key = b.api_key().await;
    // Meta accepts, but answers after our 1 s timeout, and no status webhook ever comes.
    b.graph.timeout_next_send(PNID, Duration::from_secs(2));
    let (_, body) =
        b.notify(&key, json!({"from": "+5511930001234", "to": "+5511987654321", "template": "hello"})).await;
    let id = body["id"].as_i64().unwrap();
    b.until("unknown", |b| async move { b.send(id).await["state"] == "unknown" }).await;
    assert_eq!(b.send(id).await["resent_unconfirmed"], 0);
    // The reconcile window (3 s here) passes without a word from Meta: sent again.
    b.until("sent again", |b| async move {
        b.app.svc.engine().make_all_due().await.unwrap();
        b.send(id).await["state"] == "accepted"
    })
    .await;
    assert_eq!(b.graph.sent_messages(PNID).len(), 2, "Meta had it twice");
    let send = b.send(id).await;
    assert_eq!(send["resent_unconfirmed"], 1, "{send}");
    let tenant = b.app.http.get(b.app.url(&format!("/api/v1/sends/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(tenant.status(), 200);
    let tenant: serde_json::Value = tenant.json().await.unwrap();
    assert_eq!(tenant["resent_unconfirmed"], 1, "{tenant}");
    let metrics = b.app.http.get(b.app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("wabridge_sends_resent_unconfirmed_total 1"), "{metrics}");
    b.stop().await;
}

async fn an_expired_token_pauses_the_waba_until_replaced(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let key = b.api_key().await;
    b.graph.revoke_token(TOKEN);
    let (_, body) =
        b.notify(&key, json!({"from": "+5511930001234", "to": "+5511987654321", "template": "hello"})).await;
    let id = body["id"].as_i64().unwrap();
    b.until("paused", |b| async move { b.app.admin("GET", "/wabas/1", None).await.1["sends_paused"].is_string() })
        .await;
    let send = b.send(id).await;
    assert_eq!(send["state"], "queued");
    assert_eq!(send["error_code"], 190);
    let requests = b.graph.requests().len();
    b.app.svc.engine().make_all_due().await.unwrap();
    b.settle().await;
    assert_eq!(b.send(id).await["attempts"], send["attempts"], "no retries burnt while paused");
    assert_eq!(b.graph.requests().len(), requests, "nothing sent to Meta while paused");
    let (_, jobs) = b.app.admin("GET", "/jobs?state=pending", None).await;
    assert!(jobs.as_array().unwrap().iter().any(|j| j["kind"] == "wa.send" && j["attempts"] == 0), "{jobs}");
    // A new token lifts the pause and the message goes out.
    b.graph.allow_token("EAAG-system-user-token-0002", "1234567890");
    let (s, _) = b.app.admin("PATCH", "/wabas/1", Some(json!({"access_token": "EAAG-system-user-token-0002"}))).await;
    assert_eq!(s, 200);
    assert!(b.app.admin("GET", "/wabas/1", None).await.1["sends_paused"].is_null());
    // The new token made the waiting send due at once (no make_all_due here).
    b.until("sent", |b| async move { b.send(id).await["state"] == "accepted" }).await;
    b.stop().await;
}

async fn the_pair_rate_queues_and_keeps_order(db: Db) {
    let b = Bridged::start_with(db, |c| {
        c.send_pair_interval_ms = 300;
        c.send_pair_burst = 2;
    })
    .await;
    b.templates_synced().await;
    b.graph.set_pair_rate(Duration::from_millis(300), 2);
    b.graph.set_status_progression(PNID, Progression::Silent);
    let key = b.api_key().await;
    for i in 0..6 {
        let (s, body) = b
            .notify(
                &key,
                json!({"from": "+5511930001234", "to": "+5511987654321", "template": "order_ready",
                                 "locale": "en_US", "parameters": ["Anna", format!("{i}")]}),
            )
            .await;
        assert_eq!(s, 202, "{body}");
    }
    b.until("all six sent", |b| async move { b.graph.sent_messages(PNID).len() == 6 }).await;
    // A phone with sends on record is not removed: a clear 409, not a database error.
    let (s, body) = b.app.admin("DELETE", &format!("/phones/{}", b.phone_id), None).await;
    assert_eq!(s, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("cannot be removed") && message.contains("archive"), "{body}");
    let order: Vec<String> = b
        .graph
        .sent_messages(PNID)
        .iter()
        .map(|m| m.body["template"]["components"][0]["parameters"][1]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5"]);
    let (_, sends) = b.app.admin("GET", "/sends", None).await;
    assert!(sends.as_array().unwrap().iter().all(|s| s["state"] == "accepted" && s["error_code"].is_null()), "{sends}");
    // Archived instead: unbound from the portal, no SMS service, its sends kept.
    let (s, phone) = b.app.admin("POST", &format!("/phones/{}/archive", b.phone_id), None).await;
    assert_eq!(s, 200, "{phone}");
    assert!(phone["archived_at"].is_string() && phone["portal"].is_null() && phone["sms_service"] == false, "{phone}");
    let (s, again) = b.app.admin("POST", &format!("/phones/{}/archive", b.phone_id), None).await;
    assert_eq!((s, &again["archived_at"]), (200, &phone["archived_at"]), "archiving twice changes nothing");
    b.settle().await;
    let (_, sends) = b.app.admin("GET", "/sends", None).await;
    assert_eq!(sends.as_array().unwrap().len(), 6, "the history stays");
    let (s, restored) = b.app.admin("POST", &format!("/phones/{}/restore", b.phone_id), None).await;
    assert_eq!(s, 200, "{restored}");
    assert!(restored.get("archived_at").is_none(), "{restored}");
    b.stop().await;
}

async fn notifications_fall_back_through_locales(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let key = b.api_key().await;
    let cases = [
        ("order_ready", "pt_BR", "pt_BR"),
        ("order_ready", "pt-PT", "pt_BR"),
        ("order_ready", "de_DE", "en_US"),
        ("tracking", "fr", "en"),
    ];
    for (i, (template, locale, expected)) in cases.iter().enumerate() {
        let params = if *template == "tracking" { json!(["Anna"]) } else { json!(["Anna", "9"]) };
        let mut req = json!({"from": "+5511930001234", "to": "+5511987654321", "template": template,
                             "locale": locale, "parameters": params});
        if *template == "tracking" {
            req["button_param"] = json!("XY1");
        }
        let (s, body) = b.notify(&key, req).await;
        assert_eq!(s, 202, "{body}");
        assert_eq!(body["language"], *expected, "{template} {locale}");
        b.until("sent", |b| async move { b.graph.sent_messages(PNID).len() == i + 1 }).await;
        assert_eq!(b.graph.sent_messages(PNID).pop().unwrap().body["template"]["language"]["code"], *expected);
    }
    // Named parameters.
    let (s, body) = b
        .notify(
            &key,
            json!({"from": "+5511930001234", "to": "+5511987654321", "template": "welcome",
                             "parameters": {"code": "1234", "first_name": "Anna"}}),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    b.until("sent", |b| async move { b.graph.sent_messages(PNID).len() == 5 }).await;
    let params = b.graph.sent_messages(PNID).pop().unwrap().body["template"]["components"][0]["parameters"].clone();
    assert!(
        params.as_array().unwrap().iter().any(|p| p["parameter_name"] == "first_name" && p["text"] == "Anna"),
        "{params}"
    );
    // Clear errors.
    let (s, body) =
        b.notify(&key, json!({"from": "+5511930001234", "to": "+5511987654321", "template": "nosuch"})).await;
    assert_eq!(s, 422);
    assert!(body["error"]["message"].as_str().unwrap().contains("nosuch"), "{body}");
    let (s, body) = b
        .notify(
            &key,
            json!({"from": "+5511930001234", "to": "+5511987654321", "template": "order_ready", "parameters": ["x"]}),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, _) = b.notify("wbk_forged", json!({})).await;
    assert_eq!(s, 401);
    // The API is in the OpenAPI document.
    let doc: Value = reqwest::get(b.app.url("/admin/api/v1/openapi.json")).await.unwrap().json().await.unwrap();
    for path in ["/api/v1/notifications", "/api/v1/sends/{id}", "/admin/api/v1/api-keys", "/admin/api/v1/sends"] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    b.stop().await;
}

async fn mismatched_template_variants_are_flagged(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let (_, list) = b.app.admin("GET", "/wabas/1/templates", None).await;
    let flagged: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["variant_problem"].is_string())
        .map(|t| (t["name"].as_str().unwrap().into(), t["language"].as_str().unwrap().into()))
        .collect();
    assert_eq!(flagged.len(), 1, "{list}");
    assert_eq!(flagged[0].0, "promo");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "order_ready")
        .all(|t| t["variant_problem"].is_null()));
    b.stop().await;
}

/// The tenant API names its own fields, in its own words: `header_link` and `button_param`, not the chat
/// command's `file_link:URL` / `button_param:VALUE` under `parameters`.
async fn notification_errors_name_header_link_and_button_param(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let key = b.api_key().await;
    let req = |template: &str, extra: Value| {
        let mut r = json!({"from": "+5511930001234", "to": "+5511987654321", "template": template,
                           "parameters": ["Anna"]});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    for (template, extra, field, says) in [
        ("invoice", json!({}), "header_link", "give header_link"),
        ("invoice", json!({"header_link": "ftp://files.example/a.pdf"}), "header_link", "public http or https"),
        (
            "order_ready",
            json!({"parameters": ["Anna", "9"], "header_link": "https://f.example/a.pdf"}),
            "header_link",
            "remove header_link",
        ),
        ("tracking", json!({}), "button_param", "give button_param"),
        ("hello", json!({"parameters": [], "button_param": "x"}), "button_param", "remove button_param"),
        ("order_ready", json!({}), "parameters", "needs 2 parameters"),
    ] {
        let (s, e) = b.notify(&key, req(template, extra.clone())).await;
        assert_eq!(s, 422, "{template} {extra}: {e}");
        let f = &e["error"]["fields"][0];
        assert_eq!(f["field"], field, "{template} {extra}: {e}");
        let message = f["message"].as_str().unwrap();
        assert!(message.contains(says), "{template} {extra}: {message}");
        assert!(!message.contains("file_link") && !message.contains("button_param:"), "chat wording: {message}");
    }
    // Named parameters that are not strings, numbers or booleans are refused by the schema's shape.
    let (s, e) = b.notify(&key, req("welcome", json!({"parameters": {"first_name": ["Anna"]}}))).await;
    assert_eq!((s, e["error"]["fields"][0]["field"].as_str()), (422, Some("parameters")), "{e}");
    b.stop().await;
}

async fn two_processes_send_each_message_once(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    b.graph.set_status_progression(PNID, Progression::Silent);
    // A second wabridge process on the same database.
    let mut config = b.app.db.config();
    config.graph_base_url = b.graph.base_url();
    let other = wabridge::Service::start(config).await.expect("second instance");
    let key = b.api_key().await;
    let n = 60;
    for i in 0..n {
        let to = format!("+55119876{:05}", i);
        let (s, body) = b.notify(&key, json!({"from": "+5511930001234", "to": to, "template": "hello"})).await;
        assert_eq!(s, 202, "{body}");
    }
    let (a, c) = tokio::join!(b.app.svc.engine().drain(), other.engine().drain());
    a.unwrap();
    c.unwrap();
    b.until("all sent", |b| async move { b.graph.sent_messages(PNID).len() >= n }).await;
    b.settle().await;
    let sent = b.graph.sent_messages(PNID);
    assert_eq!(sent.len(), n, "each message sent once");
    let mut to: Vec<String> = sent.iter().map(|m| m.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), n);
    other.stop().await.unwrap();
    b.stop().await;
}

/// Workers on (the send dispatcher runs as in production) and the pair rate out of the way.
fn workers_on(c: &mut wabridge::config::Config) {
    c.workers_enabled = true;
    c.send_pair_interval_ms = 1;
    c.send_pair_burst = 1_000;
}

/// A bridged service with [`workers_on`], templates synced, no status webhooks, and the number paced at 20/s in
/// wabridge and in the sandbox (which refuses anything faster with 130429).
async fn paced_at_20(db: Db) -> Bridged {
    let b = Bridged::start_with(db, workers_on).await;
    b.templates_synced().await;
    b.graph.set_status_progression(PNID, Progression::Silent);
    let (s, body) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"throughput_mps": 20}))).await;
    assert_eq!(s, 200, "{body}");
    b.graph.set_throughput(PNID, 20);
    b
}

/// A second wabridge process with [`workers_on`] on the same database and sandbox.
async fn second_process(b: &Bridged) -> wabridge::Service {
    let mut config = b.app.db.config();
    config.graph_base_url = b.graph.base_url();
    workers_on(&mut config);
    wabridge::Service::start(config).await.expect("second instance")
}

/// `/messages` requests the sandbox received (accepted or refused).
fn message_posts(g: &wabridge_sandbox::graph::GraphSandbox) -> usize {
    g.requests().iter().filter(|r| r.method.eq_ignore_ascii_case("post") && r.path.ends_with("/messages")).count()
}

/// The send dispatcher with the workers on, as in production: a number working through a backlog at its
/// throughput neither holds back another number's send nor goes above its throughput in any second.
async fn a_backlog_on_one_number_does_not_hold_back_another(db: Db) {
    let b = paced_at_20(db).await;
    const OTHER: &str = "106540352200002";
    b.graph.add_number(OTHER, "5511930005678", WABA);
    b.graph.set_status_progression(OTHER, Progression::Silent);
    let (s, body) = b
        .app
        .admin("POST", "/phones", Some(json!({"number": "+55 11 93000-5678", "phone_number_id": OTHER, "waba": 1})))
        .await;
    assert_eq!(s, 201, "{body}");
    let key = b.api_key().await;
    let n = 140; // 7 s of sends at 20/s
                 // Posted 14 at a time, so that the backlog is queued well within those 7 s even on a loaded machine (one by
                 // one, the posting itself could outlast the backlog).
    let (http, url) = (b.app.http.clone(), b.app.url("/api/v1/notifications"));
    for first in (0..n).step_by(14) {
        let mut posts = tokio::task::JoinSet::new();
        for i in first..(first + 14).min(n) {
            let (http, url, key) = (http.clone(), url.clone(), key.clone());
            let body = json!({"from": "+5511930001234", "to": format!("+55119876{:05}", i), "template": "hello"});
            posts.spawn(async move { http.post(url).bearer_auth(key).json(&body).send().await });
        }
        while let Some(r) = posts.join_next().await {
            let resp = r.expect("post task").expect("request");
            assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
        }
    }
    let (s, other) =
        b.notify(&key, json!({"from": "+5511930005678", "to": "+5511987650000", "template": "hello"})).await;
    assert_eq!(s, 202, "{other}");
    let other_id = other["id"].as_i64().expect("send id");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while b.send(other_id).await["state"] != "accepted" {
        assert!(std::time::Instant::now() < deadline, "the other number's send waited: {}", b.send(other_id).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_then = b.graph.sent_messages(PNID).len();
    assert!(sent_then < n, "the backlog was still going when the other number's send went ({sent_then} of {n})");
    // Other kinds of work do not queue behind the sends either: a customer's message reaches the CRM chat
    // (webhook → inbox.process → crm.deliver) while the backlog is still going.
    b.customer_text("Olá?").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while b.bitrix.chat_messages().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the inbound message waited behind the sends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_now = b.graph.sent_messages(PNID).len();
    assert!(sent_now < n, "the backlog was still going when the inbound message arrived ({sent_now} of {n})");
    b.until("the backlog is sent", |b| async move { b.graph.sent_messages(PNID).len() >= n }).await;
    let per_second = b.graph.accepted_per_second(PNID);
    assert!(per_second.iter().all(|(_, c)| *c <= 20), "at most 20 in any second: {per_second:?}");
    assert_eq!(message_posts(&b.graph), n + 1, "every message sent once, none refused");
    b.stop().await;
}

/// Two processes with their workers on, one database, one number: the number is paced in one place, so the two
/// together stay within its throughput (no second above it, nothing refused) and send each message once.
async fn two_processes_together_stay_within_the_numbers_throughput(db: Db) {
    let b = paced_at_20(db).await;
    let other = second_process(&b).await;
    let key = b.api_key().await;
    let n = 60; // 3 s at 20/s
    for i in 0..n {
        // Half the notifications reach each process.
        let base = if i % 2 == 0 { b.app.url("") } else { other.url() };
        let body = json!({"from": "+5511930001234", "to": format!("+55119876{:05}", i), "template": "hello"});
        let resp = b.app.http.post(format!("{base}/api/v1/notifications")).bearer_auth(&key).json(&body).send().await;
        assert_eq!(resp.expect("request").status().as_u16(), 202);
    }
    b.until("all sent", |b| async move { b.graph.sent_messages(PNID).len() >= n }).await;
    b.settle().await;
    let per_second = b.graph.accepted_per_second(PNID);
    assert!(per_second.iter().all(|(_, c)| *c <= 20), "at most 20 in any second: {per_second:?}");
    assert_eq!(message_posts(&b.graph), n, "every message sent once, none refused");
    other.stop().await.expect("second instance stops");
    b.stop().await;
}

/// A process that stops gracefully puts the sends it held back in the queue and gives the number up, so another
/// process sends the rest at once (not after the held jobs' leases expire), still within the throughput.
async fn a_stopping_process_hands_its_sends_to_another(db: Db) {
    let b = paced_at_20(db).await;
    let key = b.api_key().await;
    let n = 100; // 5 s at 20/s
    for i in 0..n {
        let (s, body) = b
            .notify(&key, json!({"from": "+5511930001234", "to": format!("+55119876{:05}", i), "template": "hello"}))
            .await;
        assert_eq!(s, 202, "{body}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.graph.sent_messages(PNID).len() < 10 {
        assert!(std::time::Instant::now() < deadline, "the first process did not start sending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = second_process(&b).await;
    let Bridged { app, graph, bitrix, .. } = b;
    let common::TestApp { svc, db, .. } = app;
    svc.stop().await.expect("the first process stops cleanly");
    let left = n - graph.sent_messages(PNID).len();
    assert!(left > 20, "the first process was still sending when it stopped ({left} left)");
    // At 20/s the rest takes about left / 20 s; a held send stuck until its lease expired would take 60 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while graph.sent_messages(PNID).len() < n {
        assert!(std::time::Instant::now() < deadline, "{} of {n} sent", graph.sent_messages(PNID).len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_second = graph.accepted_per_second(PNID);
    assert!(per_second.iter().all(|(_, c)| *c <= 20), "at most 20 in any second: {per_second:?}");
    assert_eq!(message_posts(&graph), n, "every message sent once, none refused");
    // Every started attempt has its outcome once all are recorded: sends held when the first process stopped
    // were not left marked as maybe sent (which would have made them wait for a status webhook after a restart).
    let count = |sql: &'static str| {
        let pool = other.store.raw_pool().clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.expect("count") }
    };
    while count("SELECT COUNT(*) FROM outbound WHERE state = 'accepted'").await < n as i64 {
        assert!(std::time::Instant::now() < deadline, "the outcomes were not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count("SELECT COUNT(*) FROM outbound WHERE started <> attempts").await, 0);
    other.stop().await.expect("second instance stops");
    graph.stop().await;
    bitrix.stop().await;
    db.drop_db().await;
}

/// Sends held in memory longer than a job lease (messages to one customer waiting behind a slow answer) are
/// never leased and sent a second time by the same process: the dispatcher renews the leases of what it holds.
async fn a_send_held_past_its_lease_goes_once(db: Db) {
    let b = Bridged::start_with(db, |c| {
        workers_on(c);
        c.job_lease_seconds = 1;
        c.send_timeout_ms = 10_000;
    })
    .await;
    b.templates_synced().await;
    b.graph.set_status_progression(PNID, Progression::Silent);
    // Each answer takes 1.5 s: the customer's later messages wait behind it, held, longer than the 1 s lease.
    b.graph.slow_sends(PNID, Duration::from_millis(1500));
    let key = b.api_key().await;
    let n = 4;
    for i in 0..n {
        let body = json!({"from": "+5511930001234", "to": "+5511987654321", "template": "order_ready",
                          "locale": "en_US", "parameters": ["Anna", format!("{i}")]});
        let (s, body) = b.notify(&key, body).await;
        assert_eq!(s, 202, "{body}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let accepted = |b: &Bridged| {
        let pool = b.app.svc.store.raw_pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbound WHERE state = 'accepted'")
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    while accepted(&b).await < n {
        if std::time::Instant::now() > deadline {
            let rows = sqlx::query_as::<_, (i64, String, i64, i64, Option<String>)>(
                "SELECT o.id, o.state, o.attempts, o.started, j.last_error FROM outbound o \
                 LEFT JOIN jobs j ON j.kind = 'wa.send' AND j.lane IS NOT NULL AND j.payload LIKE '%' || o.id || '%'",
            )
            .fetch_all(b.app.svc.store.raw_pool())
            .await;
            panic!("the sends were not all recorded ({} requests): {rows:?}", message_posts(&b.graph));
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the database with a deadline
    }
    let order: Vec<String> = b
        .graph
        .sent_messages(PNID)
        .iter()
        .map(|m| m.body["template"]["components"][0]["parameters"][1]["text"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(order, ["0", "1", "2", "3"], "each message once, in order");
    assert_eq!(message_posts(&b.graph), n as usize, "no second request for any message");
    b.stop().await;
}

/// A read mark is paced with the number's other requests: with the number at one request per second (in wabridge
/// and in the sandbox, which refuses anything faster with 130429), an operator's two replies and the read mark
/// they bring go out one per second, nothing refused.
async fn read_marks_are_paced_within_the_numbers_throughput(db: Db) {
    let b = Bridged::start_with(db, workers_on).await;
    b.graph.set_status_progression(PNID, Progression::Silent);
    let (s, body) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"throughput_mps": 1}))).await;
    assert_eq!(s, 200, "{body}");
    b.graph.set_throughput(PNID, 1);
    let t = common::bridge::now_s();
    let wamids: Vec<String> = (0..3).map(|_| p::new_wamid()).collect();
    b.customer_says(
        wamids.iter().enumerate().map(|(i, w)| p::text_message(CUSTOMER, w, t - 3 + i as i64, "oi")).collect(),
    )
    .await;
    b.until("in the portal", |b| async move { b.bitrix.chat_messages().len() == 3 }).await;
    b.operator("Olá!").await;
    b.operator("Como posso ajudar?").await;
    b.until("the replies and the read mark", |b| async move {
        b.graph.sent_messages(PNID).len() == 2 && !b.graph.read_marks(PNID).is_empty()
    })
    .await;
    b.settle().await;
    let marks: Vec<String> = b.graph.read_marks(PNID).into_iter().map(|m| m.message_id).collect();
    assert_eq!(marks, [wamids[2].clone()]);
    let per_second = b.graph.accepted_per_second(PNID);
    assert_eq!(per_second.iter().map(|(_, c)| *c).sum::<u32>(), 3, "two replies and one read mark: {per_second:?}");
    assert!(per_second.iter().all(|(_, c)| *c <= 1), "at most 1 in any second: {per_second:?}");
    assert_eq!(message_posts(&b.graph), 3, "each sent once, none refused");
    b.stop().await;
}

both_databases!(
    an_unconfirmed_resend_is_shown_and_counted,
    read_marks_are_paced_within_the_numbers_throughput,
    a_send_held_past_its_lease_goes_once,
    a_stopping_process_hands_its_sends_to_another,
    two_processes_together_stay_within_the_numbers_throughput,
    a_backlog_on_one_number_does_not_hold_back_another,
    sms_provider_registers_sends_templates_and_reports_statuses,
    permanent_errors_reach_whoever_asked,
    retryable_errors_are_retried_and_succeed,
    an_unanswered_send_is_reconciled_not_duplicated,
    an_expired_token_pauses_the_waba_until_replaced,
    the_pair_rate_queues_and_keeps_order,
    notifications_fall_back_through_locales,
    mismatched_template_variants_are_flagged,
    two_processes_send_each_message_once,
    notification_errors_name_header_link_and_button_param,
);
