//! The message history end to end, on both databases: the customer's messages (through signed webhooks) and ours
//! (sends), with an edit, a deletion and reactions folded onto their messages; cursor paging; the tenant API
//! scoped by API key (403 outside it); the CLI; and the stats.

use crate::common;

use common::{Db, TestApp};
use serde_json::{json, Value};
use wabridge_sandbox::meta::MetaWebhookSender;
use wabridge_sandbox::payloads as p;

const SECRET: &str = "f00dfacecafe0123456789abcdef4242";
const PNID: &str = "106540352242922";
const DISPLAY: &str = "5511930001234";
const WABA: &str = "102290129340398";
const CUSTOMER: &str = "5511987654321";

async fn tenant(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let r = app.http.get(app.url(path)).bearer_auth(key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Queues one of our sends, as the API or the CRM would.
async fn send(app: &TestApp, phone: i64, request: Value) -> i64 {
    let send = wabridge::outbound::NewSend {
        phone_id: phone,
        recipient: CUSTOMER.into(),
        origin: wabridge::outbound::Origin::Api,
        origin_ref: json!({}),
        request,
        idempotency_key: None,
        api_key_id: None,
    };
    let mut tx = app.svc.store.begin_write().await.unwrap();
    let e = wabridge::outbound::enqueue_on(&mut tx, &send, 12).await.unwrap();
    tx.commit().await.unwrap();
    e.id
}

async fn history_of_both_directions(db: Db) {
    let app = TestApp::start(db).await;
    let (_, waba, phone) = app.seed(SECRET).await;
    let phone_id = phone["id"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    let (text, image, reply) = (p::new_wamid(), p::new_wamid(), p::new_wamid());
    let ours = "wamid.ours-1";
    let msgs = vec![
        p::text_message(CUSTOMER, &text, now - 60, "helo"),
        p::image_message(CUSTOMER, &image, now - 50, "1003383421387256", "image/jpeg", Some("my receipt")),
        p::with_context(p::text_message(CUSTOMER, &reply, now - 40, "thanks!"), DISPLAY, ours),
        p::edit_message(CUSTOMER, &p::new_wamid(), now - 30, &text, "hello"),
        p::revoke_message(CUSTOMER, &p::new_wamid(), now - 20, &image),
        p::reaction_message(CUSTOMER, &p::new_wamid(), now - 10, ours, Some("👍")),
    ];
    let body =
        p::envelope(WABA, "messages", p::messages_value(DISPLAY, PNID, vec![p::contact(CUSTOMER, "João Silva")], msgs));
    let sender = MetaWebhookSender::new(app.url("/api/waba/?app_id=1234567890"), SECRET);
    assert!(sender.deliver(&body).await.delivered);
    app.svc.engine().drain().await.unwrap();
    // Ours: a text Meta took (its wamid set as a webhook status would), and a reaction to the customer's reply.
    let out = send(&app, phone_id, json!({"type": "text", "text": {"body": "Your order shipped"}})).await;
    let status = p::envelope(
        WABA,
        "messages",
        p::statuses_value(
            DISPLAY,
            PNID,
            vec![json!({"id": ours, "status": "read", "timestamp": now.to_string(),
            "recipient_id": CUSTOMER, "biz_opaque_callback_data": format!("wb:{out}")})],
        ),
    );
    assert!(sender.deliver(&status).await.delivered);
    app.svc.engine().drain().await.unwrap();
    send(&app, phone_id, json!({"type": "reaction", "reaction": {"message_id": reply, "emoji": "❤️"}})).await;

    let (st, page) = app.admin("GET", "/messages?phone=%2B5511930001234&contact=%2B55%2011%2098765-4321", None).await;
    assert_eq!(st, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 8, "6 of the customer's, 2 of ours: {page}");
    let by_wamid = |w: &str| data.iter().find(|m| m["wamid"] == w).unwrap_or_else(|| panic!("{w} in {page}"));
    let t = by_wamid(&text);
    assert_eq!((t["text"].as_str(), t["content"].clone()), (Some("hello"), json!({"body": "hello"})), "{t}");
    assert_eq!(t["edits"][0]["text"], "hello");
    assert_eq!(t["direction"], "in");
    let i = by_wamid(&image);
    assert_eq!(
        (i["deleted"].as_bool(), i["content"].clone(), i["text"].clone()),
        (Some(true), Value::Null, Value::Null)
    );
    assert!(i["deleted_at"].is_string());
    let r = by_wamid(&reply);
    assert_eq!(r["reply_to"], ours);
    assert_eq!(r["reactions"], json!([{"by": "business", "emoji": "❤️", "at": r["reactions"][0]["at"]}]));
    let o = by_wamid(ours);
    assert_eq!(
        (o["direction"].as_str(), o["type"].as_str(), o["status"].as_str()),
        (Some("out"), Some("text"), Some("read"))
    );
    assert_eq!(o["text"], "Your order shipped");
    assert_eq!(o["reactions"][0]["by"], "customer");
    assert_eq!(o["origin"], "api");

    // Paging: two at a time covers the same eight, newest first, once each.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/messages?limit=2&cursor={c}"),
            None => "/messages?limit=2".into(),
        };
        let (st, page) = app.admin("GET", &path, None).await;
        assert_eq!(st, 200, "{page}");
        seen.extend(page["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let all: Vec<String> = data.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, all);
    let (_, outs) = app.admin("GET", "/messages?direction=out", None).await;
    assert_eq!(outs["data"].as_array().unwrap().len(), 2);
    for (path, field) in [
        ("/messages?direction=up", "direction"),
        ("/messages?limit=0", "limit"),
        ("/messages?cursor=zzz", "cursor"),
        ("/messages?since=yesterday", "since"),
        ("/messages?phone=%2B15550001111", "phone"),
    ] {
        let (st, e) = app.admin("GET", path, None).await;
        assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (422, Some(field)), "{path}: {e}");
    }

    // Contacts and conversations: the window is open (the customer wrote a minute ago).
    let (_, contacts) = app.admin("GET", "/contacts?q=jo", None).await;
    assert_eq!(contacts["data"][0]["profile_name"], "João Silva", "{contacts}");
    assert_eq!(contacts["data"][0]["window"]["open"], true);
    let (_, convs) = app.admin("GET", "/conversations", None).await;
    assert_eq!(convs["data"].as_array().unwrap().len(), 1, "{convs}");
    assert_eq!(convs["data"][0]["contact"], CUSTOMER);

    // The tenant API: a key of this WABA sees it all; a key of another WABA sees nothing and gets 403 for it.
    let (_, key) = app.admin("POST", "/api-keys", Some(json!({"name": "shop", "waba": waba["id"]}))).await;
    let key = key["key"].as_str().unwrap().to_string();
    let (st, mine) = tenant(&app, &key, "/api/v1/messages?contact=5511987654321").await;
    assert_eq!((st, mine["data"].as_array().unwrap().len()), (200, 8), "{mine}");
    let other = common::another_waba(&app).await;
    let (_, okey) = app.admin("POST", "/api-keys", Some(json!({"name": "other", "waba": other["id"]}))).await;
    let okey = okey["key"].as_str().unwrap().to_string();
    let (st, none) = tenant(&app, &okey, "/api/v1/messages").await;
    assert_eq!((st, none["data"].as_array().unwrap().len()), (200, 0), "{none}");
    let (st, e) = tenant(&app, &okey, "/api/v1/conversations?phone=%2B5511930001234").await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (403, Some("phone")), "{e}");
    let (st, _) = tenant(&app, "wbk_nope", "/api/v1/contacts").await;
    assert_eq!(st, 401);

    // Stats: the tenant's own numbers.
    let (st, stats) = tenant(&app, &key, "/api/v1/stats").await;
    assert_eq!(st, 200, "{stats}");
    assert_eq!(stats["messages_received"], 6, "{stats}");
    assert_eq!(stats["messages_sent"], 1, "the text Meta took; the reaction is still queued: {stats}");
    assert!(stats["api_calls"].as_i64().unwrap() >= 2, "{stats}");
    let (_, ostats) = tenant(&app, &okey, "/api/v1/stats").await;
    assert_eq!((ostats["messages_received"].as_i64(), ostats["messages_sent"].as_i64()), (Some(0), Some(0)));
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("wabridge_messages_received_total 6"), "{metrics}");
    assert!(metrics.contains("wabridge_messages_sent_total 1"), "{metrics}");
    assert!(metrics.contains(r#"wabridge_api_calls_total{route="/api/v1/stats"} 2"#), "{metrics}");

    // The CLI reads the same history.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wabridge"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WABRIDGE_DATABASE_URL", &app.db.url)
            .env("WABRIDGE_DATA_DIR", app.db.dir.path())
            .env("WABRIDGE_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .output()
            .unwrap()
    };
    let out = cli(&["messages", "list", "--phone", "+5511930001234", "--contact", CUSTOMER]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        table.contains("hello (edited)") && table.contains("(deleted)") && table.contains("[customer 👍]"),
        "{table}"
    );
    let out = cli(&["conversations", "list", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(page["data"][0]["contact"], CUSTOMER);
    app.stop().await;
}

both_databases!(history_of_both_directions);
