//! Meta webhook intake end to end, over real HTTP on both databases, driven by the Meta sandbox.

use crate::common;

use std::time::{Duration, Instant};

use common::{Db, TestApp, TestDb};
use serde_json::{json, Value};
use sqlx::Row;
use wabridge_sandbox::meta::{HandshakeError, MetaWebhookSender};
use wabridge_sandbox::payloads as p;

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const PNID: &str = "106540352242922";
const DISPLAY: &str = "5511930001234";
const WABA: &str = "102290129340398";
const CUSTOMER: &str = "5511987654321";

fn sender(app: &TestApp) -> MetaWebhookSender {
    MetaWebhookSender::new(app.url("/api/waba/?app_id=1234567890"), SECRET)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(app.svc.store.raw_pool()).await.unwrap().get::<i64, _>(0)
}

fn inbound(messages: Vec<Value>) -> Value {
    p::envelope(WABA, "messages", p::messages_value(DISPLAY, PNID, vec![p::contact(CUSTOMER, "João Silva")], messages))
}

async fn handshake(db: Db) {
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    let vt = a["verify_token"].as_str().unwrap();
    sender(&app).verify_callback(vt).await.expect("handshake with the right token");
    // Without the trailing slash, too.
    MetaWebhookSender::new(app.url("/api/waba?app_id=1234567890"), SECRET).verify_callback(vt).await.unwrap();
    assert!(matches!(sender(&app).verify_callback("wrong-token").await, Err(HandshakeError::Status(403))));
    let r = app
        .http
        .get(app.url("/api/waba/?app_id=1234567890&hub.mode=unsubscribe&hub.challenge=42"))
        .query(&[("hub.verify_token", vt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "wrong mode");
    // Challenge echoed byte for byte, as text/plain.
    let r = app
        .http
        .get(app.url("/api/waba/?app_id=1234567890&hub.mode=subscribe&hub.challenge=1158201444"))
        .query(&[("hub.verify_token", vt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), "1158201444");
    // The app chosen by host name.
    let r = app
        .http
        .get(app.url("/api/waba/?hub.mode=subscribe&hub.challenge=7"))
        .header("host", "wb.example.com")
        .query(&[("hub.verify_token", vt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "7");
    // Unknown app: 404 with a JSON error.
    let r = app.http.get(app.url("/api/waba/?app_id=999&hub.mode=subscribe")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    app.stop().await;
}

async fn bad_signatures_store_nothing(db: Db) {
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    let payload = inbound(vec![p::text_message(CUSTOMER, &p::new_wamid(), 1767800000, "hi")]);
    let good = sender(&app);
    let (body, sig) = good.sign(&payload);

    let mut forged = MetaWebhookSender::new(app.url("/api/waba/?app_id=1234567890"), "not-the-secret-at-all-0000");
    forged.retry.max_attempts = 1;
    assert_eq!(forged.deliver(&payload).await.statuses[0], 401, "forged");
    assert_eq!(good.post_raw(body.clone(), None).await.unwrap(), 401, "missing");
    assert_eq!(good.post_raw(body.clone(), Some("sha256=xyz")).await.unwrap(), 401, "malformed");
    assert_eq!(good.post_raw(body.clone(), Some(&sig.replace("sha256=", "sha1="))).await.unwrap(), 401);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(good.post_raw(tampered, Some(&sig)).await.unwrap(), 401, "body changed after signing");
    // Stale secret: Meta's secret was reset; bodies signed with the old one are refused.
    let (s, _) = app
        .admin("PATCH", &format!("/apps/{}", a["id"]), Some(json!({"app_secret": "new-secret-0123456789abcdef"})))
        .await;
    assert_eq!(s, 200);
    assert_eq!(good.post_raw(body.clone(), Some(&sig)).await.unwrap(), 401, "stale secret");

    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbox").await, 0, "nothing stored");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM jobs").await, 0, "nothing enqueued");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"wabridge_webhook_rejected_total{reason="signature_mismatch"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"wabridge_webhook_rejected_total{reason="signature_missing"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"wabridge_webhook_rejected_total{reason="signature_malformed"} 2"#), "{metrics}");

    // With the new secret it goes through.
    let renewed = MetaWebhookSender::new(app.url("/api/waba/?app_id=1234567890"), "new-secret-0123456789abcdef");
    assert!(renewed.deliver(&payload).await.delivered);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbox").await, 1);
    app.stop().await;
}

/// The signature covers the raw bytes: `\u00e9` escapes and surrogate pairs verify, and the text is decoded.
async fn escaped_unicode_verifies(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let wamid = p::new_wamid();
    let payload = inbound(vec![p::text_message(CUSTOMER, &wamid, 1767800000, "Olá, quero agendar 😀 <b>&</b>")]);
    let (body, _) = sender(&app).sign(&payload);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains(r"Ol\u00e1") && text.contains(r"\ud83d\ude00") && text.is_ascii(), "{text}");
    assert!(sender(&app).deliver(&payload).await.delivered);
    let stored: Vec<u8> =
        sqlx::query("SELECT body FROM inbox").fetch_one(app.svc.store.raw_pool()).await.unwrap().get(0);
    assert_eq!(stored, body, "the raw body is kept byte for byte");
    app.svc.engine().drain().await.unwrap();
    let row = sqlx::query("SELECT body FROM messages WHERE wamid = $1")
        .bind(&wamid)
        .fetch_one(app.svc.store.raw_pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "Olá, quero agendar 😀 <b>&</b>");
    let name: String =
        sqlx::query("SELECT profile_name FROM contacts").fetch_one(app.svc.store.raw_pool()).await.unwrap().get(0);
    assert_eq!(name, "João Silva");
    app.stop().await;
}

async fn every_message_type_is_stored(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let ts = 1767800000;
    let biz = "wamid.business-message-1";
    let c = CUSTOMER;
    let mut msgs = vec![
        ("text", p::text_message(c, &p::new_wamid(), ts, "hello")),
        ("image", p::image_message(c, &p::new_wamid(), ts, "1003383421387256", "image/jpeg", Some("Taj Mahal"))),
        ("audio", p::audio_message(c, &p::new_wamid(), ts, "2001", "audio/ogg; codecs=opus", true)),
        ("video", p::video_message(c, &p::new_wamid(), ts, "2002", "video/mp4", None)),
        (
            "document",
            p::document_message(c, &p::new_wamid(), ts, "2003", "application/pdf", "invoice.pdf", Some("Invoice")),
        ),
        ("sticker", p::sticker_message(c, &p::new_wamid(), ts, "2004", true)),
        (
            "location",
            p::location_message(c, &p::new_wamid(), ts, 37.44221496582, -122.16, Some("HQ"), Some("1 Main St")),
        ),
        (
            "contacts",
            p::contacts_message(c, &p::new_wamid(), ts, vec![p::shared_contact("Ana Lima", "+55 11 90000-0000", None)]),
        ),
        ("interactive", p::button_reply_message(c, &p::new_wamid(), ts, DISPLAY, biz, "cancel-button", "Cancel")),
        (
            "interactive",
            p::list_reply_message(c, &p::new_wamid(), ts, DISPLAY, biz, "priority_express", "Express", Some("1 day")),
        ),
        ("interactive", p::flow_reply_message(c, &p::new_wamid(), ts, DISPLAY, biz, r#"{"flow_token":"t"}"#)),
        ("button", p::button_message(c, &p::new_wamid(), ts, DISPLAY, biz, "ORDER_DETAILS", "Details")),
        ("reaction", p::reaction_message(c, &p::new_wamid(), ts, biz, Some("👍"))),
        ("order", p::order_message(c, &p::new_wamid(), ts, "cat-1", "", vec![p::order_item("sku-1", 2, 10.5, "BRL")])),
        ("system", p::system_message(c, &p::new_wamid(), ts, "User changed number", "5511911112222")),
        ("unsupported", p::unsupported_message(c, &p::new_wamid(), ts)),
        ("poll_vote", p::message(c, &p::new_wamid(), ts, "poll_vote", json!({"option": 1}))),
        ("text", p::with_context(p::text_message(c, &p::new_wamid(), ts, "a reply"), DISPLAY, biz)),
    ];
    let mut referral = p::text_message(c, &p::new_wamid(), ts, "from an ad");
    referral["referral"] =
        json!({"source_url": "https://fb.me/x", "source_id": "ad-1", "source_type": "ad", "ctwa_clid": "clid"});
    msgs.push(("text", referral));
    let expected: Vec<(String, String)> =
        msgs.iter().map(|(t, m)| (m["id"].as_str().unwrap().to_string(), t.to_string())).collect();
    let payload = inbound(msgs.into_iter().map(|(_, m)| m).collect());
    assert!(sender(&app).deliver(&payload).await.delivered);

    // A sender known only by a business-scoped user id, no phone number.
    let bsuid_wamid = p::new_wamid();
    let mut bsuid_msg = p::text_message("", &bsuid_wamid, ts, "hidden number");
    bsuid_msg.as_object_mut().unwrap().remove("from");
    bsuid_msg["from_user_id"] = json!("MA.1587668549511396");
    let bsuid = p::envelope(
        WABA,
        "messages",
        p::messages_value(
            DISPLAY,
            PNID,
            vec![json!({"profile": {"name": "Hidden"}, "user_id": "MA.1587668549511396"})],
            vec![bsuid_msg],
        ),
    );
    assert!(sender(&app).deliver(&bsuid).await.delivered);
    let drained = app.svc.engine().drain().await.unwrap();
    assert_eq!((drained.done, drained.dead), (2, 0));

    for (wamid, ty) in &expected {
        let row = sqlx::query("SELECT msg_type, direction FROM messages WHERE wamid = $1")
            .bind(wamid)
            .fetch_one(app.svc.store.raw_pool())
            .await
            .unwrap_or_else(|e| panic!("{ty} {wamid} not stored: {e}"));
        assert_eq!(row.get::<String, _>(0), *ty);
        assert_eq!(row.get::<String, _>(1), "in");
    }
    let ctx: Option<String> = sqlx::query("SELECT context_wamid FROM messages WHERE body = 'a reply'")
        .fetch_one(app.svc.store.raw_pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(ctx.as_deref(), Some(biz));
    let raw: String = sqlx::query("SELECT raw FROM messages WHERE msg_type = 'poll_vote'")
        .fetch_one(app.svc.store.raw_pool())
        .await
        .unwrap()
        .get(0);
    assert!(raw.contains("\"option\""), "unknown types keep their raw JSON: {raw}");
    let row =
        sqlx::query("SELECT wa_id, user_id, profile_name FROM contacts WHERE contact_key = 'MA.1587668549511396'")
            .fetch_one(app.svc.store.raw_pool())
            .await
            .unwrap();
    assert_eq!(row.get::<Option<String>, _>(0), None);
    assert_eq!(row.get::<Option<String>, _>(2).as_deref(), Some("Hidden"));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contacts").await, 2);
    let last: i64 = sqlx::query("SELECT last_inbound_at FROM contacts WHERE contact_key = $1")
        .bind(CUSTOMER)
        .fetch_one(app.svc.store.raw_pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, ts * 1000, "last inbound time drives the 24-hour window");
    app.stop().await;
}

async fn statuses_templates_and_account_events(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let s = sender(&app);
    let (a, b) = (p::new_wamid(), p::new_wamid());
    // Out of order: read arrives before delivered and sent; failed is terminal.
    for st in [
        p::status(&a, "read", 30, CUSTOMER),
        p::status(&a, "delivered", 20, CUSTOMER),
        p::status(&a, "sent", 10, CUSTOMER),
    ] {
        assert!(s.deliver(&p::envelope(WABA, "messages", p::statuses_value(DISPLAY, PNID, vec![st]))).await.delivered);
    }
    let failed = p::failed_status(&b, 40, CUSTOMER, 131047, "Re-engagement message", "More than 24 hours have passed");
    for st in [
        p::with_pricing(p::status(&b, "sent", 10, CUSTOMER), "regular", "utility"),
        failed,
        p::status(&b, "read", 50, CUSTOMER),
    ] {
        assert!(s.deliver(&p::envelope(WABA, "messages", p::statuses_value(DISPLAY, PNID, vec![st]))).await.delivered);
    }
    let errors = p::envelope(
        WABA,
        "messages",
        p::errors_value(DISPLAY, PNID, vec![p::error(130429, "Rate limit hit", "too many messages")]),
    );
    assert!(s.deliver(&errors).await.delivered);
    let tpl = p::template_status_update(WABA, 1689556908129832, "order_confirmation", "en-US", "APPROVED");
    assert!(s.deliver(&tpl).await.delivered);
    let account = p::envelope(WABA, "account_update", json!({"event": "VERIFIED_ACCOUNT", "phone_number": DISPLAY}));
    assert!(s.deliver(&account).await.delivered);
    let quality = p::envelope(
        WABA,
        "phone_number_quality_update",
        json!({"display_phone_number": DISPLAY, "event": "UPGRADE", "current_limit": "TIER_10K"}),
    );
    assert!(s.deliver(&quality).await.delivered);
    let future = p::envelope(WABA, "some_future_field", json!({"anything": [1, 2, 3]}));
    assert!(s.deliver(&future).await.delivered);
    let d = app.svc.engine().drain().await.unwrap();
    assert_eq!((d.done, d.dead), (11, 0), "every field is understood or kept");

    let store = &app.svc.store;
    assert_eq!(wabridge::inbound::current_status(store, &a).await.unwrap().as_deref(), Some("read"));
    assert_eq!(wabridge::inbound::current_status(store, &b).await.unwrap().as_deref(), Some("failed"));
    let row = sqlx::query("SELECT error_code, error_text FROM message_statuses WHERE wamid = $1 AND status = 'failed'")
        .bind(&b)
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>(0), 131047);
    let row = sqlx::query("SELECT status, language, template_id FROM templates WHERE name = 'order_confirmation'")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "APPROVED");
    assert_eq!(row.get::<String, _>(1), "en_US", "en-US normalised");
    assert_eq!(row.get::<String, _>(2), "1689556908129832");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM account_events").await, 3, "account, quality and unknown field kept");
    app.stop().await;
}

/// Errors Meta puts in a messages webhook's value (not tied to a message) are kept on the phone, once, shown by
/// the admin API and counted in /metrics; before, they were dropped without a trace.
async fn value_level_errors_are_recorded(db: Db) {
    let app = TestApp::start(db).await;
    let (_, _, phone) = app.seed(SECRET).await;
    let s = sender(&app);
    let unsupported = p::error(131000, "Something went wrong", "Unsupported webhook payload");
    let errors = p::envelope(WABA, "messages", p::errors_value(DISPLAY, PNID, vec![unsupported]));
    assert!(s.deliver(&errors).await.delivered);
    assert!(s.deliver(&errors).await.delivered, "Meta resends: still one record");
    app.svc.engine().drain().await.unwrap();
    let (st, list) = app.admin("GET", &format!("/webhook-errors?phone={}", phone["id"]), None).await;
    assert_eq!(st, 200, "{list}");
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["code"], 131000);
    assert_eq!(list[0]["phone"], phone["id"]);
    assert_eq!(list[0]["details"], "Unsupported webhook payload", "{list:?}");
    let (st, other) = app.admin("GET", "/webhook-errors?phone=999999", None).await;
    assert_eq!((st, other.as_array().map(Vec::len)), (200, Some(0)));
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("wabridge_meta_webhook_errors_last_day 1"), "{metrics}");
    app.stop().await;
}

/// Meta resends; the same message may come in another batch. One effect each.
async fn duplicates_have_one_effect(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let s = sender(&app);
    let (m1, m2) = (p::new_wamid(), p::new_wamid());
    let first = inbound(vec![p::text_message(CUSTOMER, &m1, 100, "one"), p::text_message(CUSTOMER, &m2, 101, "two")]);
    let again_other_batch = inbound(vec![p::text_message(CUSTOMER, &m2, 101, "two")]);
    let st =
        p::envelope(WABA, "messages", p::statuses_value(DISPLAY, PNID, vec![p::status(&m1, "delivered", 5, CUSTOMER)]));
    let deliveries = s.deliver_duplicates(&first, 3).await;
    assert!(deliveries.iter().all(|d| d.delivered));
    assert!(s.deliver(&again_other_batch).await.delivered);
    s.deliver_duplicates(&st, 2).await;
    let d = app.svc.engine().drain().await.unwrap();
    assert_eq!(d.done, 6);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM message_statuses").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contacts").await, 1);
    // Processing the same job twice (a lease that expired mid-way) changes nothing either.
    let payload = wabridge::meta::webhook::parse(&wabridge_sandbox::payloads::to_wire(&first)).unwrap();
    let mut tx = app.svc.store.begin_write().await.unwrap();
    let again = wabridge::inbound::apply(&mut tx, &payload, None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again.messages_new, 0);
    app.stop().await;
}

async fn a_thousand_changes_in_one_post(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let changes: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"field": "messages", "value": p::messages_value(DISPLAY, PNID, vec![p::contact(&format!("55119{i:08}"), "C")],
                vec![p::text_message(&format!("55119{i:08}"), &format!("wamid.batch-{i}"), 1767800000 + i, "x")])})
        })
        .collect();
    let payload = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": changes}]});
    assert!(sender(&app).deliver(&payload).await.delivered);
    app.svc.engine().drain().await.unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 1000);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contacts").await, 1000);
    app.stop().await;
}

/// A signed body that is not JSON is acknowledged (Meta would resend it forever) but kept as a dead job.
async fn invalid_json_becomes_a_dead_job(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let s = sender(&app);
    let body = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
    assert_eq!(s.post_raw(body, Some(&sig)).await.unwrap(), 200);
    let d = app.svc.engine().drain().await.unwrap();
    assert_eq!(d.dead, 1);
    let (st, dead) = app.admin("GET", "/jobs?state=dead", None).await;
    assert_eq!(st, 200);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["kind"], "inbox.process");
    assert!(dead[0]["last_error"].as_str().unwrap().contains("not a valid Meta payload"), "{dead:?}");
    let (st, e) = app.admin("GET", "/jobs?state=zombie", None).await;
    assert_eq!(st, 422, "{e}");
    // Redrive puts it back; it dies again with the same reason (the body is what it is).
    let (st, _) = app.admin("POST", &format!("/jobs/{}/redrive", dead[0]["id"]), None).await;
    assert_eq!(st, 200);
    let (_, pending) = app.admin("GET", "/jobs?state=pending", None).await;
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(app.svc.engine().drain().await.unwrap().dead, 1);
    assert_eq!(app.admin("POST", "/jobs/999999/redrive", None).await.0, 404);
    app.stop().await;
}

async fn body_limit_is_3_mib(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let body = vec![b' '; 3 * 1024 * 1024 + 1];
    let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
    assert_eq!(sender(&app).post_raw(body, Some(&sig)).await.unwrap(), 413);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbox").await, 0);
    app.stop().await;
}

async fn sandbox_retries_until_acknowledged(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let payload = inbound(vec![p::text_message(CUSTOMER, &p::new_wamid(), 1, "x")]);
    // Unknown app for the first attempts: the sandbox keeps retrying (first retry immediate), then gives up.
    let mut s = MetaWebhookSender::new(app.url("/api/waba/?app_id=42"), SECRET);
    s.retry.base = Duration::from_millis(1);
    s.retry.max_attempts = 3;
    let d = s.deliver(&payload).await;
    assert_eq!(d.statuses, vec![404, 404, 404]);
    assert!(!d.delivered);
    app.stop().await;
}

/// Leases: two engines never hold the same job; an expired lease (dead process) makes the job due again.
async fn leases_are_exclusive_and_expire(db: Db) {
    let app = TestApp::start(db).await;
    app.seed(SECRET).await;
    let s = sender(&app);
    for i in 0..40 {
        assert!(s.deliver(&inbound(vec![p::text_message(CUSTOMER, &format!("wamid.l{i}"), i, "x")])).await.delivered);
    }
    let store = app.svc.store.clone();
    let metrics = wabridge::metrics::Metrics::new();
    let a = wabridge::jobs::Engine::new(store.clone(), Duration::from_millis(300), 5, metrics.clone());
    let b = wabridge::jobs::Engine::new(store.clone(), Duration::from_secs(60), 5, metrics);
    let (ja, jb) = tokio::join!(a.lease(25), b.lease(25));
    let (ja, jb) = (ja.unwrap(), jb.unwrap());
    let mut all: Vec<i64> = ja.iter().chain(jb.iter()).map(|j| j.id).collect();
    all.sort();
    assert_eq!(all.len(), 40, "{all:?}");
    assert!(ja.iter().all(|x| jb.iter().all(|y| x.id != y.id)), "no job leased twice");
    // `a` dies holding its jobs; once its 300 ms lease runs out they are due again and `b` takes them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut retaken = Vec::new();
    while retaken.len() < ja.len() && Instant::now() < deadline {
        retaken.extend(b.lease(40).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await; // polling with a deadline
    }
    let mut ids: Vec<i64> = retaken.iter().map(|j| j.id).collect();
    ids.sort();
    let mut expected: Vec<i64> = ja.iter().map(|j| j.id).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(retaken.iter().all(|j| j.attempts == 2));
    app.stop().await;
}

async fn retention_prunes_old_work(db: Db) {
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    let s = sender(&app);
    for i in 0..3 {
        s.deliver(&inbound(vec![p::text_message(CUSTOMER, &format!("wamid.r{i}"), i, "x")])).await;
    }
    app.svc.engine().drain().await.unwrap();
    let old = wabridge::store::now_ms() - 8 * 86_400_000;
    sqlx::query("UPDATE inbox SET processed_at = $1").bind(old).execute(app.svc.store.raw_pool()).await.unwrap();
    sqlx::query("UPDATE jobs SET done_at = $1").bind(old).execute(app.svc.store.raw_pool()).await.unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let month = Duration::from_secs(30 * 86_400);
    // An app that keeps raw events keeps them for the debug retention.
    app.admin("PATCH", &format!("/apps/{}", a["id"]), Some(json!({"keep_raw_events": true}))).await;
    assert_eq!(
        wabridge::jobs::prune(&app.svc.store, week, month).await.unwrap(),
        (0, 3),
        "raw bodies kept, finished jobs pruned"
    );
    app.admin("PATCH", &format!("/apps/{}", a["id"]), Some(json!({"keep_raw_events": false}))).await;
    assert_eq!(wabridge::jobs::prune(&app.svc.store, week, month).await.unwrap(), (3, 0));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbox").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 3, "effects stay");
    app.stop().await;
}

/// Two service instances on one database, workers on: every job runs exactly once.
async fn two_instances_process_each_job_once(db: Db) {
    let testdb = TestDb::new(db).await;
    let mut config = testdb.config();
    config.workers_enabled = true;
    config.worker_concurrency = 4;
    let one = wabridge::Service::start(config.clone()).await.unwrap();
    let two = wabridge::Service::start(config).await.unwrap();
    let token = one.new_admin_token.clone().unwrap();
    common::seed_over_http(&one.url(), &token, SECRET).await;
    let senders = [
        MetaWebhookSender::new(format!("{}/api/waba/?app_id=1234567890", one.url()), SECRET),
        MetaWebhookSender::new(format!("{}/api/waba/?app_id=1234567890", two.url()), SECRET),
    ];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = senders[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.deliver(&inbound(vec![p::text_message(CUSTOMER, &format!("wamid.two-{i}"), i as i64, "x")]))
                .await
                .delivered
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let pool = one.store.raw_pool().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: i64 = sqlx::query("SELECT COUNT(*) FROM jobs WHERE kind = 'inbox.process' AND done_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        if done == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of 200 jobs done");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await; // polling the database with a deadline
    }
    let max_attempts: i64 = sqlx::query("SELECT MAX(attempts) FROM jobs WHERE kind = 'inbox.process'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(max_attempts, 1, "no job was leased twice");
    let messages: i64 = sqlx::query("SELECT COUNT(*) FROM messages").fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(messages, 200);
    one.stop().await.unwrap();
    two.stop().await.unwrap();
    testdb.drop_db().await;
}

// ---------------------------------------------------------------------------------------------------------------------
// HTTP bounds (issue 11): connection cap, idle / header / body timeouts, webhook body budget, metric labels.

/// Short timeouts so the tests are quick; each test sets what it needs.
fn limits(c: &mut wabridge::Config) {
    c.http_idle_timeout_ms = 1_000;
    c.http_header_read_timeout_ms = 1_000;
    c.http_body_read_timeout_ms = 1_000;
}

async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.svc.addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset) or `within` passes; returns what was read and
/// whether it was closed.
async fn read_to_close(s: &mut tokio::net::TcpStream, within: Duration) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One `GET /healthz` on a raw keep-alive connection; true when it was answered 200.
async fn healthz_on(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if rest.len() >= len {
                        return head.starts_with("HTTP/1.1 200");
                    }
                }
            }
            _ => return false,
        }
    }
}

/// The sum of the samples of a metric (lines starting with `prefix`).
async fn metric(app: &TestApp, prefix: &str) -> f64 {
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn idle_connections_are_closed(db: Db) {
    let app = TestApp::start_with(TestDb::new(db).await, limits).await;
    let start = Instant::now();
    // Five connections that never send a byte, and one kept alive after a request.
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(connect(&app).await);
    }
    let mut used = connect(&app).await;
    assert!(healthz_on(&mut used).await);
    conns.push(used);
    for c in &mut conns {
        let (_, closed) = read_to_close(c, Duration::from_secs(6)).await;
        assert!(closed, "an idle connection is still open after {:?} (idle timeout 1 s)", start.elapsed());
    }
    assert!(start.elapsed() < Duration::from_secs(6), "closed within the idle timeout and a generous margin");
    assert!(metric(&app, "wabridge_http_connections_timed_out_total{phase=\"idle\"}").await >= 6.0);
    app.stop().await;
}

async fn slowloris_headers_are_cut(db: Db) {
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        limits(c);
        c.http_idle_timeout_ms = 30_000; // only the header timeout (1 s) may cut it
    })
    .await;
    let mut s = connect(&app).await;
    let (mut rd, mut wr) = s.split();
    let start = Instant::now();
    let trickle = async {
        use tokio::io::AsyncWriteExt;
        for b in b"GET /healthz HTTP/1.1\r\nHost: slow.example.com\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await; // the attacker's pace, not a wait for a result
        }
    };
    let closed = async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    let cut = tokio::select! {
        _ = trickle => false,
        c = closed => c,
        _ = tokio::time::sleep(Duration::from_secs(8)) => false,
    };
    assert!(cut, "a header sent one byte every 0.5 s was not cut (header timeout 1 s)");
    assert!(start.elapsed() < Duration::from_secs(8));
    assert!(metric(&app, "wabridge_http_connections_timed_out_total{phase=\"header\"}").await >= 1.0);
    app.stop().await;
}

async fn slow_bodies_get_408(db: Db) {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        limits(c);
        c.http_idle_timeout_ms = 30_000;
        c.http_header_read_timeout_ms = 30_000; // only the body deadline (1 s) may cut it
    })
    .await;
    app.seed(SECRET).await;
    let mut s = connect(&app).await;
    s.write_all(
        b"POST /api/waba/?app_id=1234567890 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          X-Hub-Signature-256: sha256=00\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        for _ in 0..99 {
            tokio::time::sleep(Duration::from_millis(500)).await; // the attacker's pace
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let answer = async {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let got = tokio::select! {
        _ = trickle => unreachable!(),
        g = answer => Some(g),
        _ = tokio::time::sleep(Duration::from_secs(8)) => None,
    };
    let got = got.expect("the connection of a body trickled past the 1 s deadline was not closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(start.elapsed() < Duration::from_secs(8));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbox").await, 0);
    app.stop().await;
}

async fn connections_beyond_the_cap_are_refused(db: Db) {
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        c.http_max_connections = 4;
        c.http_idle_timeout_ms = 30_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&app).await;
        assert!(healthz_on(&mut c).await);
        held.push(c);
    }
    // The fifth is accepted and closed at once, without an answer.
    let mut fifth = connect(&app).await;
    assert!(!healthz_on(&mut fifth).await, "a connection beyond the cap was served");
    let (_, closed) = read_to_close(&mut fifth, Duration::from_secs(5)).await;
    assert!(closed);
    // The earlier ones are still served.
    for c in &mut held {
        assert!(healthz_on(c).await, "a connection within the cap was not served");
    }
    // Once two go, new connections are served again (the server notices the close asynchronously: poll).
    held.truncate(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect(&app).await;
        if healthz_on(&mut c).await {
            held.push(c);
            break;
        }
        assert!(Instant::now() < deadline, "no connection was served after two of the four had closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The harness's own client may need a slot too: make room before reading the metric.
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        if let Ok(r) = app.http.get(app.url("/metrics")).send().await {
            let text = r.text().await.unwrap_or_default();
            if let Some(v) = text
                .lines()
                .find(|l| l.starts_with("wabridge_http_connections_refused_total"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "/metrics never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused >= 1.0);
    app.stop().await;
}

async fn made_up_methods_and_paths_make_no_series(db: Db) {
    let app = TestApp::start(db).await;
    let series = |text: &str| {
        text.lines().filter(|l| l.starts_with("wabridge_http_request")).map(str::to_owned).collect::<Vec<_>>()
    };
    let before = series(&app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
    for i in 0..200 {
        let method = reqwest::Method::from_bytes(format!("FROB{i}X").as_bytes()).unwrap();
        let paths = [format!("/nothing/{i}"), format!("/admin/api/v1/made-up-{i}"), "/healthz".to_string()];
        let path = &paths[i % paths.len()];
        let _ = app.http.request(method, app.url(path)).send().await.unwrap();
        let _ = app.http.get(app.url(&format!("/x{i}/y"))).send().await.unwrap();
    }
    let after = series(&app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
    let new: Vec<&String> =
        after.iter().filter(|l| !before.iter().any(|b| b.split(' ').next() == l.split(' ').next())).collect();
    // Counters by (route, method, status) and one histogram per route: a handful, not hundreds.
    let counters = new.iter().filter(|l| l.starts_with("wabridge_http_requests_total")).count();
    assert!(counters <= 6, "{counters} new request series: {new:#?}");
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("FROB"), "a made-up method became a label");
    assert!(!text.contains("/nothing/") && !text.contains("made-up-"), "a raw path became a label");
    app.stop().await;
}

/// A padded inbound text webhook of about `size` bytes, signed.
fn big_webhook(size: usize) -> (Vec<u8>, String) {
    let text = "x".repeat(size);
    let payload = inbound(vec![p::text_message(CUSTOMER, &p::new_wamid(), 1, &text)]);
    let body = serde_json::to_vec(&payload).unwrap();
    let sig = wabridge_sandbox::signature::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

async fn post_signed(app: &TestApp, body: &[u8], sig: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/waba/?app_id=1234567890"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(body.to_vec())
        .send()
        .await
        .expect("request")
}

async fn webhook_budget_refuses_with_503_and_loses_nothing(db: Db) {
    use tokio::io::AsyncWriteExt;
    const LIMIT: usize = 512 * 1024;
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        c.webhook_body_limit = LIMIT;
        c.webhook_body_budget_bytes = 2 * LIMIT;
        c.webhook_budget_wait_ms = 300;
        c.http_body_read_timeout_ms = 4_000;
    })
    .await;
    app.seed(SECRET).await;
    let head = |len: usize, sig: &str| {
        format!(
            "POST /api/waba/?app_id=1234567890 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             X-Hub-Signature-256: {sig}\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    // A: declares the whole limit and never sends its body. B: a real webhook of the whole limit, half sent.
    let mut a = connect(&app).await;
    a.write_all(head(LIMIT, "sha256=00").as_bytes()).await.unwrap();
    let (b_body, b_sig) = big_webhook(LIMIT - 2_000);
    let b_len = b_body.len();
    assert!(b_len <= LIMIT);
    let mut b = connect(&app).await;
    b.write_all(head(b_len, &b_sig).as_bytes()).await.unwrap();
    b.write_all(&b_body[..b_len / 2]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "wabridge_webhook_body_bytes_in_flight").await < (LIMIT + b_len) as f64 {
        assert!(Instant::now() < deadline, "A and B never took the budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The whole budget is taken: a wave of concurrent webhooks waits, and the first answers are 503s.
    let wave: Vec<(Vec<u8>, String)> = (0..8).map(|_| big_webhook(200 * 1024)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (body, sig)) in wave.iter().cloned().enumerate() {
        let (http, url) = (app.http.clone(), app.url("/api/waba/?app_id=1234567890"));
        tasks.spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await
                .expect("request");
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (i, r.status().as_u16(), retry_after)
        });
    }
    let mut answers = vec![tasks.join_next().await.unwrap().unwrap()];
    assert_eq!(answers[0].1, 503, "the budget was full, yet a webhook got {}", answers[0].1);
    // B finishes: it is stored, and its bytes go back to the budget (the rest of the wave may get them).
    b.write_all(&b_body[b_len / 2..]).await.unwrap();
    let (b_answer, _) = read_to_close(&mut b, Duration::from_millis(3_000)).await;
    assert!(String::from_utf8_lossy(&b_answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&b_answer));
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    // A is cut by the body deadline.
    let (a_answer, closed) = read_to_close(&mut a, Duration::from_secs(10)).await;
    assert!(closed && String::from_utf8_lossy(&a_answer).starts_with("HTTP/1.1 408"));
    let mut refused = 0;
    for (i, status, retry_after) in answers {
        match status {
            200 => {}
            503 => {
                refused += 1;
                assert!(retry_after.is_some_and(|v| v.parse::<u64>().is_ok()), "503 without Retry-After");
                let (body, sig) = &wave[i];
                assert_eq!(post_signed(&app, body, sig).await.status(), 200, "a resent webhook was refused");
            }
            other => panic!("a webhook got {other}"),
        }
    }
    assert!(refused >= 1);
    // Nothing lost, nothing twice: B and every wave body exactly once.
    let rows = sqlx::query("SELECT body FROM inbox").fetch_all(app.svc.store.raw_pool()).await.unwrap();
    let mut stored: Vec<Vec<u8>> = rows.iter().map(|r| r.get::<Vec<u8>, _>("body")).collect();
    let mut expected: Vec<Vec<u8>> = wave.iter().map(|(b, _)| b.clone()).chain([b_body]).collect();
    stored.sort();
    expected.sort();
    assert!(stored == expected, "stored {} bodies, expected {}", stored.len(), expected.len());
    assert_eq!(metric(&app, "wabridge_webhook_body_bytes_in_flight").await, 0.0);
    app.stop().await;
}

async fn chunked_webhooks_take_budget_as_they_grow(db: Db) {
    const LIMIT: usize = 512 * 1024;
    let app = TestApp::start_with(TestDb::new(db).await, |c| {
        c.webhook_body_limit = LIMIT;
        c.webhook_body_budget_bytes = LIMIT;
        c.webhook_budget_wait_ms = 300;
    })
    .await;
    app.seed(SECRET).await;
    // No Content-Length: the body comes in 16 KiB chunks, on a raw connection; the answer's status.
    let addr = app.svc.addr;
    let chunked = |body: Vec<u8>, sig: String| async move {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /api/waba/?app_id=1234567890 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             X-Hub-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let mut wire = head.into_bytes();
        for c in body.chunks(16 * 1024) {
            wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        // The server may answer 413 and close before it has read everything: a failed write is fine then.
        let _ = s.write_all(&wire).await;
        let (answer, _) = read_to_close(&mut s, Duration::from_secs(10)).await;
        String::from_utf8_lossy(&answer).get(9..12).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
    };
    let (body, sig) = big_webhook(300 * 1024);
    assert_eq!(chunked(body.clone(), sig).await, 200);
    let stored: Vec<u8> =
        sqlx::query("SELECT body FROM inbox").fetch_one(app.svc.store.raw_pool()).await.unwrap().get(0);
    assert!(stored == body, "the chunked body was not stored as sent");
    // Half a chunked body: it holds budget for what has arrived (rounded up to 64 KiB steps), not nothing.
    {
        use tokio::io::AsyncWriteExt;
        let (body, sig) = big_webhook(300 * 1024);
        let mut s = connect(&app).await;
        let mut wire = format!(
            "POST /api/waba/?app_id=1234567890 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             X-Hub-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        let half = 200 * 1024;
        wire.extend_from_slice(format!("{half:x}\r\n").as_bytes());
        wire.extend_from_slice(&body[..half]);
        wire.extend_from_slice(b"\r\n");
        s.write_all(&wire).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&app, "wabridge_webhook_body_bytes_in_flight").await < half as f64 {
            assert!(Instant::now() < deadline, "a growing chunked body took no budget");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&app, "wabridge_webhook_body_bytes_in_flight").await > 0.0 {
        assert!(Instant::now() < deadline, "an abandoned chunked body kept its budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Over the limit while it grows: 413, nothing stored, the budget given back.
    let (big, sig) = big_webhook(LIMIT + 1024);
    assert_eq!(chunked(big, sig).await, 413);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM inbox").await, 1);
    assert_eq!(metric(&app, "wabridge_webhook_body_bytes_in_flight").await, 0.0);
    app.stop().await;
}

/// The `inbox_enqueue` trigger writes the `inbox.process` job of every inbox row in SQL: what it writes is a task
/// the job catalogue parses (its kind spelled as the catalogue spells it, its payload naming the row).
async fn the_inbox_trigger_writes_a_catalogue_task(db: Db) {
    use wabridge::jobs::catalogue::InboxProcess;
    use wabridge::jobs::{Kind, Task};
    let app = TestApp::start(db).await;
    let (a, _, _) = app.seed(SECRET).await;
    let app_id = a["id"].as_i64().expect("app id");
    let pool = app.svc.store.raw_pool();
    let id: i64 =
        sqlx::query("INSERT INTO inbox (source, app_id, body, received_at) VALUES ('meta', $1, $2, $3) RETURNING id")
            .bind(app_id)
            .bind(b"{}".to_vec())
            .bind(wabridge::store::now_ms())
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
    let rows = sqlx::query("SELECT kind, payload, max_attempts FROM jobs").fetch_all(pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    let (kind, payload): (String, String) = (rows[0].get("kind"), rows[0].get("payload"));
    let task = Task::parse(&kind, &payload).unwrap_or_else(|e| panic!("{kind} {payload}: {e}"));
    assert_eq!(task, Task::InboxProcess(InboxProcess { inbox_id: id }));
    assert_eq!(task.kind(), Kind::InboxProcess);
    assert_eq!(rows[0].get::<Option<i64>, _>("max_attempts"), Kind::InboxProcess.max_attempts());
    app.stop().await;
}

both_databases!(
    value_level_errors_are_recorded,
    handshake,
    bad_signatures_store_nothing,
    escaped_unicode_verifies,
    every_message_type_is_stored,
    statuses_templates_and_account_events,
    duplicates_have_one_effect,
    a_thousand_changes_in_one_post,
    invalid_json_becomes_a_dead_job,
    body_limit_is_3_mib,
    sandbox_retries_until_acknowledged,
    leases_are_exclusive_and_expire,
    retention_prunes_old_work,
    the_inbox_trigger_writes_a_catalogue_task,
    two_instances_process_each_job_once,
    idle_connections_are_closed,
    slowloris_headers_are_cut,
    slow_bodies_get_408,
    connections_beyond_the_cap_are_refused,
    made_up_methods_and_paths_make_no_series,
    webhook_budget_refuses_with_503_and_loses_nothing,
    chunked_webhooks_take_budget_as_they_grow,
);
