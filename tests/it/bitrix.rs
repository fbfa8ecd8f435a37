//! Bitrix24 end to end, through real HTTP against both sandboxes, on both databases: install, a line per
//! number, chats both ways, the 24-hour window, template commands, tokens, forgeries, duplicates, uninstall.

use crate::common;

use common::bridge::{now_s, Bridged, CUSTOMER, PNID};
use common::Db;
use serde_json::{json, Value};
use wabridge_sandbox::payloads as p;

async fn install_and_bind_make_an_active_line(db: Db) {
    let b = Bridged::start(db).await;
    let line = b.line;
    let lines = b.bitrix.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].name, "wabridge_5511930001234");
    let status = b.bitrix.connector_status(line).expect("connector status");
    assert!(status.active && status.connected && status.registered && !status.error, "{status:?}");
    let data = b.bitrix.connector_data(line).expect("connector data");
    assert_eq!(data["ID"], "5511930001234");
    let events: Vec<String> = b.bitrix.bound_events().iter().map(|e| e.event.clone()).collect();
    for e in ["ONIMCONNECTORMESSAGEADD", "ONIMCONNECTORLINEDELETE", "ONIMCONNECTORSTATUSDELETE"] {
        assert!(events.iter().any(|x| x == e), "{e} bound: {events:?}");
    }
    let conn = &b.bitrix.connectors()[0];
    assert_eq!(conn.id, "wabridge_whatsapp");
    assert!(conn.icon["DATA_IMAGE"].as_str().unwrap().starts_with("data:image/svg+xml"));

    // Binding again is idempotent: same line, nothing duplicated.
    let (s, _) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"portal": b.portal_id}))).await;
    assert_eq!(s, 200);
    b.until("re-bound", |b| async move { b.phone().await["connector"]["status"] == "ok" }).await;
    assert_eq!(b.bitrix.lines().len(), 1);
    assert_eq!(b.phone().await["connector"]["line_id"], line.to_string());

    // Another connector on the line is disabled: not ours, the phone stays bound. Ours disabled: shown.
    let codes = b.bitrix.events().deactivate_other_connector(line, "telegrambot").await.expect("event");
    assert_eq!(codes, [200]);
    assert_eq!(b.phone().await["connector"]["status"], "ok", "another connector's event changes nothing");
    b.bitrix.events().deactivate_connector(line).await.expect("event");
    assert_eq!(b.phone().await["connector"]["status"], "disabled");
    let (s, _) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"portal": b.portal_id}))).await;
    assert_eq!(s, 200);
    b.until("re-activated", |b| async move { b.phone().await["connector"]["status"] == "ok" }).await;

    // The line is deleted in the portal: noticed and shown; binding again recreates it.
    b.bitrix.delete_line(line).await.expect("line delete event");
    assert_eq!(b.phone().await["connector"]["status"], "line_deleted");
    let (s, _) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"portal": b.portal_id}))).await;
    assert_eq!(s, 200);
    b.until("re-created", |b| async move { b.phone().await["connector"]["status"] == "ok" }).await;
    let lines = b.bitrix.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_ne!(lines[0].id, line);
    b.stop().await;
}

async fn an_operator_reply_reaches_meta_and_the_marks_come_back(db: Db) {
    let b = Bridged::start(db).await;
    let wamid = b.customer_text("Olá, meu pedido?").await;
    b.until("the message is in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    let m = &b.bitrix.chat_messages()[0];
    assert_eq!(m.external_message_id.as_deref(), Some(wamid.as_str()));
    assert_eq!(m.text.as_deref(), Some("Olá, meu pedido?"));
    assert_eq!(m.external_chat_id, CUSTOMER);
    assert_eq!(m.user["phone"], format!("+{CUSTOMER}"));
    assert_eq!(m.user["name"], "Maria Souza");

    let im_message = b.operator("[b]Klaus:[/b][br]Seu pedido está a caminho!").await;
    b.until("sent to Meta", |b| async move { !b.graph.sent_messages(PNID).is_empty() }).await;
    let sent = b.graph.sent_messages(PNID);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["type"], "text");
    assert_eq!(sent[0].body["to"], format!("+{CUSTOMER}"));
    assert!(sent[0].body["text"]["body"].as_str().unwrap().contains("Seu pedido está a caminho!"));
    let out_wamid = sent[0].wamid.clone();
    b.until("the delivery mark", |b| {
        let w = out_wamid.clone();
        async move { b.bitrix.delivery_marks().iter().any(|m| m.im_message_id == im_message && m.external_ids.contains(&w)) }
    })
    .await;
    b.until("the read mark", |b| async move { b.bitrix.reading_marks().iter().any(|m| m.im_message_id == im_message) })
        .await;
    b.stop().await;
}

async fn inbound_types_arrive_readable_and_media_links_are_signed(db: Db) {
    let b = Bridged::start(db).await;
    let first = b.customer_text("Quero saber do pedido 77").await;
    let jpeg = b"\xFF\xD8\xFF\xE0 a tiny jpeg".to_vec();
    let image = b.graph.add_media(&jpeg, "image/jpeg", PNID);
    let pdf = b"%PDF-1.4 invoice".to_vec();
    let doc = b.graph.add_media(&pdf, "application/pdf", PNID);
    let t = now_s();
    b.customer_says(vec![
        p::image_message(CUSTOMER, &p::new_wamid(), t, &image, "image/jpeg", Some("a foto")),
        p::location_message(
            CUSTOMER,
            &p::new_wamid(),
            t,
            -23.5505,
            -46.6333,
            Some("Loja Centro"),
            Some("Av. Paulista 1000"),
        ),
        p::reaction_message(CUSTOMER, &p::new_wamid(), t, &first, Some("👍")),
    ])
    .await;
    b.until("four messages in the portal", |b| async move { b.bitrix.chat_messages().len() == 4 }).await;
    let msgs = b.bitrix.chat_messages();
    assert!(msgs.iter().all(|m| m.external_chat_id == CUSTOMER && m.line == b.line));
    let img = msgs.iter().find(|m| !m.files.is_empty()).expect("the image");
    assert_eq!(img.text.as_deref(), Some("a foto"));
    let name = img.files[0]["name"].as_str().expect("file name");
    assert!(name.ends_with(".jpg"), "a photo gets an extension the portal shows inline: {name}");
    let url = img.files[0]["url"].as_str().expect("file url").to_string();
    // Kept locally (no file_proxy): downloaded from Meta once, at delivery.
    assert_eq!(b.graph.media_downloads(&image), 1);
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/jpeg");
    assert_eq!(got.bytes().await.unwrap().to_vec(), jpeg);
    assert_eq!(b.graph.media_downloads(&image), 1, "served from the local copy");
    // Tampered links are refused.
    let tampered = url.replace("exp=", "exp=9");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    let other = url.replace(&format!("/{image}?"), "/999?");
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 403);
    let loc = msgs.iter().find(|m| m.text.as_deref().is_some_and(|t| t.contains("Loja Centro"))).expect("location");
    let loc_text = loc.text.clone().unwrap();
    assert!(loc_text.contains("Av. Paulista 1000") && loc_text.contains("-23.5505"), "{loc_text}");
    let reaction = msgs.iter().find(|m| m.text.as_deref().is_some_and(|t| t.contains("👍"))).expect("reaction");
    assert!(reaction.text.as_deref().unwrap().contains("Quero saber do pedido 77"), "{:?}", reaction.text);

    // With file_proxy the bytes are streamed from Meta on each request.
    let (s, _) = b.app.admin("PATCH", &format!("/phones/{}", b.phone_id), Some(json!({"file_proxy": true}))).await;
    assert_eq!(s, 200);
    b.settle().await;
    b.customer_says(vec![p::document_message(
        CUSTOMER,
        &p::new_wamid(),
        now_s(),
        &doc,
        "application/pdf",
        "inv-77.pdf",
        None,
    )])
    .await;
    b.until("the document in the portal", |b| async move { b.bitrix.chat_messages().len() == 5 }).await;
    let m = b.bitrix.chat_messages().pop().unwrap();
    assert_eq!(m.files[0]["name"], "inv-77.pdf");
    assert_eq!(b.graph.media_downloads(&doc), 0, "nothing downloaded before someone asks");
    let url = m.files[0]["url"].as_str().unwrap().to_string();
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), pdf);
    reqwest::get(&url).await.unwrap();
    assert_eq!(b.graph.media_downloads(&doc), 2);
    b.stop().await;
}

async fn media_links_expire(db: Db) {
    let b = Bridged::start_with(db, |c| c.media_url_ttl_seconds = 0).await;
    let image = b.graph.add_media(b"\xFF\xD8\xFF", "image/jpeg", PNID);
    b.customer_says(vec![p::image_message(CUSTOMER, &p::new_wamid(), now_s(), &image, "image/jpeg", None)]).await;
    b.until("the image in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    let url = b.bitrix.chat_messages()[0].files[0]["url"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = reqwest::get(&url).await.unwrap();
        if r.status() == 403 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["message"], "the link has expired");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the link never expired");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.stop().await;
}

async fn outside_the_window_nothing_reaches_meta_and_the_operator_is_told(db: Db) {
    let b = Bridged::start(db).await;
    let old = now_s() - 25 * 3600;
    b.customer_says(vec![p::text_message(CUSTOMER, &p::new_wamid(), old, "ontem")]).await;
    b.until("in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    b.operator("Olá de novo!").await;
    b.until("the refusal in the chat", |b| async move { !b.system_messages().is_empty() }).await;
    let text = b.system_messages().pop().unwrap();
    assert!(text.contains("24 hours") && text.contains("template-NAME+LANG"), "{text}");
    b.settle().await;
    assert!(b.graph.sent_messages(PNID).is_empty());
    // A template command still goes out outside the window.
    b.operator("template-hello+en_US").await;
    b.until("the template sent", |b| async move { b.graph.sent_messages(PNID).len() == 1 }).await;
    b.stop().await;
}

async fn template_commands_send_exact_payloads_and_explain_mistakes(db: Db) {
    let b = Bridged::start(db).await;
    b.customer_text("oi").await;
    b.templates_synced().await;
    let cases: Vec<(&str, Value)> = vec![
        ("template-hello+en_US", json!({"name": "hello", "language": {"code": "en_US"}})),
        (
            "template-order_ready+pt_BR+Anna|12 500",
            json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "12 500"}]}]}),
        ),
        (
            "template-invoice+en_US+Anna file_link:https://files.example.com/inv-77.pdf",
            json!({"name": "invoice", "language": {"code": "en_US"}, "components": [
                {"type": "header", "parameters": [{"type": "document", "document": {
                    "link": "https://files.example.com/inv-77.pdf", "filename": "inv-77.pdf"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Anna"}]}]}),
        ),
        (
            "template-tracking+en+Anna button_param:AB12345",
            json!({"name": "tracking", "language": {"code": "en"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Anna"}]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "AB12345"}]}]}),
        ),
    ];
    for (i, (command, expected)) in cases.iter().enumerate() {
        b.operator(command).await;
        b.until(command, |b| async move { b.graph.sent_messages(PNID).len() == i + 1 }).await;
        let sent = b.graph.sent_messages(PNID).pop().unwrap();
        assert_eq!(sent.body["type"], "template", "{command}");
        let mut got = sent.body["template"].clone();
        if got["components"] == json!([]) {
            got.as_object_mut().unwrap().remove("components");
        }
        assert_eq!(&got, expected, "{command}");
    }
    let mistakes = [
        ("template-nosuch+en_US", "nosuch"),
        ("template-order_ready+de", "de"),
        ("template-pending_one+en_US", "PENDING"),
        ("template-order_ready+pt_BR+Anna", "2"),
        ("template-invoice+en_US+Anna", "file_link"),
        ("template-tracking+en+Anna", "button_param"),
        ("template-hello+en_US file_link:https://x.example.com/a.pdf", "header"),
        ("template-hello", "template-hello+LANG"),
    ];
    for (i, (command, needle)) in mistakes.iter().enumerate() {
        b.operator(command).await;
        b.until(command, |b| async move { b.system_messages().len() == i + 1 }).await;
        let text = b.system_messages().pop().unwrap();
        assert!(text.contains(needle), "{command}: {text}");
    }
    b.settle().await;
    assert_eq!(b.graph.sent_messages(PNID).len(), cases.len(), "no invalid command reached Meta");
    b.stop().await;
}

async fn tokens_forgeries_duplicates(db: Db) {
    let b = Bridged::start(db).await;
    b.customer_text("oi").await;
    b.until("in the portal", |b| async move { b.bitrix.chat_messages().len() == 1 }).await;
    // An expired access token is refreshed transparently, once.
    b.bitrix.expire_access_tokens();
    b.customer_text("tudo bem?").await;
    b.until("in the portal after a refresh", |b| async move { b.bitrix.chat_messages().len() == 2 }).await;
    assert!(b.bitrix.refresh_count() >= 1);
    assert_eq!(b.bitrix.double_spent_refresh(), 0);
    // A forged application_token is refused and does nothing.
    let forged =
        b.bitrix.with_application_token("forged-token").operator_reply(b.line, CUSTOMER, "pwned", vec![]).await;
    assert_eq!(forged.unwrap().status, 401);
    // A duplicated event sends once.
    b.operator("uma vez só").await;
    assert_eq!(b.bitrix.repost_last().await.unwrap(), 200);
    b.until("sent", |b| async move { !b.graph.sent_messages(PNID).is_empty() }).await;
    b.settle().await;
    let sent = b.graph.sent_messages(PNID);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].body["text"]["body"].as_str().unwrap().contains("uma vez só"));
    // A forged install naming this portal's member_id with an endpoint of its own is refused.
    let forged_install = json!({"event": "ONAPPINSTALL", "auth": {
        "member_id": b.bitrix.member_id(), "domain": "evil.example.com", "client_endpoint": "http://127.0.0.1:9/rest/",
        "access_token": "stolen", "refresh_token": "stolen", "expires_in": "3600", "application_token": "evil"}});
    let status = b.bitrix.post_event_raw(&b.app.url("/api/bitrix/install"), &forged_install).await.unwrap();
    assert_eq!(status, 401);
    let (_, portal) = b.app.admin("GET", &format!("/portals/{}", b.portal_id), None).await;
    assert_ne!(portal["domain"], "evil.example.com");
    // A first install of a portal nobody knows, with a token the named portal does not accept: nothing stored.
    let made_up = json!({"event": "ONAPPINSTALL", "auth": {
        "member_id": "not-yet-installed-portal", "domain": b.bitrix.client_endpoint(),
        "client_endpoint": b.bitrix.client_endpoint(), "access_token": "made-up", "refresh_token": "made-up",
        "expires_in": "3600", "application_token": "evil"}});
    let status = b.bitrix.post_event_raw(&b.app.url("/api/bitrix/install"), &made_up).await.unwrap();
    assert_eq!(status, 401);
    let (_, portals) = b.app.admin("GET", "/portals", None).await;
    assert_eq!(portals.as_array().map(Vec::len), Some(1), "nothing stored: {portals}");
    // Also once the portal is uninstalled (when its phones are still bound to it).
    assert_eq!(b.bitrix.uninstall(&b.app.url("/api/bitrix/events")).await.unwrap(), 200);
    let status = b.bitrix.post_event_raw(&b.app.url("/api/bitrix/install"), &forged_install).await.unwrap();
    assert_eq!(status, 401);
    let (_, portal) = b.app.admin("GET", &format!("/portals/{}", b.portal_id), None).await;
    assert_eq!(portal["active"], false);
    assert_eq!(b.bitrix.install(&b.app.url("/api/bitrix/install")).await.unwrap(), 200);
    // A forged uninstall is refused: the portal stays active.
    let forged_uninstall =
        b.bitrix.with_application_token("forged-token").uninstall(&b.app.url("/api/bitrix/events")).await;
    assert_eq!(forged_uninstall.unwrap(), 401);
    let (_, portal) = b.app.admin("GET", &format!("/portals/{}", b.portal_id), None).await;
    assert_eq!(portal["active"], true);
    b.stop().await;
}

async fn uninstall_stops_traffic_for_that_portal_only(db: Db) {
    use wabridge_sandbox::bitrix::{BitrixOptions, BitrixSandbox};
    let b = Bridged::start(db).await;
    // A second portal with its own number.
    let other = BitrixSandbox::start(BitrixOptions {
        client_id: b.bitrix.options().client_id,
        client_secret: b.bitrix.options().client_secret,
        ..BitrixOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(other.install(&b.app.url("/api/bitrix/install")).await.unwrap(), 201);
    let (_, portals) = b.app.admin("GET", "/portals", None).await;
    let second = portals.as_array().unwrap().iter().find(|p| p["id"] != b.portal_id).unwrap()["id"].as_i64().unwrap();
    b.graph.add_number("106540352242999", "5511930005678", common::bridge::WABA);
    let (s, phone2) = b
        .app
        .admin(
            "POST",
            "/phones",
            Some(json!({"number": "+5511930005678", "phone_number_id": "106540352242999",
                                             "waba": 1, "portal": second})),
        )
        .await;
    assert_eq!(s, 201, "{phone2}");
    let id2 = phone2["id"].as_i64().unwrap();
    b.until("second line bound", |b| async move {
        b.app.admin("GET", &format!("/phones/{id2}"), None).await.1["connector"]["status"] == "ok"
    })
    .await;

    // The first portal uninstalls the app.
    assert_eq!(b.bitrix.uninstall(&b.app.url("/api/bitrix/events")).await.unwrap(), 200);
    let (_, portal) = b.app.admin("GET", &format!("/portals/{}", b.portal_id), None).await;
    assert_eq!(portal["active"], false);
    let before = b.bitrix.calls().len();
    b.customer_text("alguém aí?").await;
    let value = p::messages_value(
        "5511930005678",
        "106540352242999",
        vec![p::contact(CUSTOMER, "Maria")],
        vec![p::text_message(CUSTOMER, &p::new_wamid(), now_s(), "para a loja 2")],
    );
    let sender = wabridge_sandbox::meta::MetaWebhookSender::new(
        b.app.url("/api/waba?app_id=1234567890"),
        common::bridge::SECRET,
    );
    assert!(sender.deliver(&p::envelope(common::bridge::WABA, "messages", value)).await.delivered);
    b.until("the second portal got its message", |_| async { !other.chat_messages().is_empty() }).await;
    b.settle().await;
    assert_eq!(other.chat_messages()[0].text.as_deref(), Some("para a loja 2"));
    assert_eq!(b.bitrix.calls().len(), before, "nothing more went to the uninstalled portal");
    // Installing the app again (new tokens, confirmed with the portal) brings the portal and its line back.
    assert_eq!(b.bitrix.install(&b.app.url("/api/bitrix/install")).await.unwrap(), 200);
    let (_, portal) = b.app.admin("GET", &format!("/portals/{}", b.portal_id), None).await;
    assert_eq!(portal["active"], true);
    b.until("line bound again", |b| async move { b.phone().await["connector"]["status"] == "ok" }).await;
    other.stop().await;
    b.stop().await;
}

/// A message the portal does not take (its item in the answer says `SUCCESS: false` with `ERRORS`) is not
/// recorded as delivered: it is retried until the portal takes it, and one the portal never takes ends as a dead
/// job naming the portal's reason in the admin API.
async fn a_message_the_portal_refuses_is_retried_not_recorded(db: Db) {
    let b = Bridged::start(db).await;
    let crm_id = |wamid: String| {
        let pool = b.app.svc.store.raw_pool().clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>("SELECT crm_message_id FROM messages WHERE wamid = $1")
                .bind(wamid)
                .fetch_optional(&pool)
                .await
                .expect("query")
                .flatten()
        }
    };
    let engine = b.app.svc.engine();
    b.bitrix.refuse_next_messages(2, "ERROR_CHAT", "the chat is closed");
    let first = b.customer_text("first").await;
    engine.drain().await.expect("drain");
    assert!(b.bitrix.chat_messages().is_empty());
    assert_eq!(crm_id(first.clone()).await, None, "refused: not recorded as delivered");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while b.bitrix.chat_messages().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the refused message was not retried");
        engine.make_all_due().await.expect("due");
        engine.drain().await.expect("drain");
    }
    let taken = b.bitrix.chat_messages();
    assert_eq!(taken.len(), 1, "taken once");
    assert_eq!(taken[0].external_message_id.as_deref(), Some(first.as_str()));
    assert!(crm_id(first).await.is_some());

    // A portal that never takes it: a dead job with the portal's reason, the message still not delivered.
    b.bitrix.refuse_next_messages(1_000, "ERROR_CHAT", "the chat is closed");
    let second = b.customer_text("second").await;
    let dead = loop {
        assert!(std::time::Instant::now() < deadline, "the refused message never gave up");
        engine.make_all_due().await.expect("due");
        engine.drain().await.expect("drain");
        let (st, dead) = b.app.admin("GET", "/jobs?state=dead", None).await;
        assert_eq!(st, 200, "{dead}");
        if let Some(job) = dead.as_array().and_then(|a| a.iter().find(|j| j["kind"] == "crm.deliver")) {
            break job.clone();
        }
    };
    let reason = dead["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("ERROR_CHAT: the chat is closed"), "{dead}");
    assert_eq!(crm_id(second).await, None);
    assert_eq!(b.bitrix.chat_messages().len(), 1);
    b.stop().await;
}

/// The portal's texts of this customer's chat, in the order it took them.
fn portal_texts(b: &Bridged) -> Vec<String> {
    b.bitrix.chat_messages().iter().filter_map(|m| m.text.clone()).collect()
}

/// Two webhooks of one customer whose `inbox.process` jobs run in the wrong order (two workers or processes
/// pick them up together and the later one finishes first): the portal still gets the messages in the order
/// their webhooks arrived.
async fn a_customers_messages_reach_the_portal_in_arrival_order(db: Db) {
    let b = Bridged::start(db).await;
    b.settle().await;
    let engine = b.app.svc.engine();
    b.customer_text("first").await;
    b.customer_text("second").await;
    let mut inbox: Vec<_> = Vec::new();
    for job in engine.lease(64).await.expect("lease") {
        if job.kind == "inbox.process" {
            inbox.push(job);
        } else {
            engine.run(job).await;
        }
    }
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    inbox.sort_by_key(|j| j.id);
    let earlier = inbox.remove(0);
    let later = inbox.remove(0);
    engine.run(later).await;
    engine.drain().await.expect("drain");
    assert!(portal_texts(&b).is_empty(), "the second message waits for the first webhook: {:?}", portal_texts(&b));
    engine.run(earlier).await;
    b.until("both messages are in the portal", |b| async move { portal_texts(b).len() == 2 }).await;
    assert_eq!(portal_texts(&b), ["first", "second"]);
    b.stop().await;
}

/// A portal at its rate limit: the messages that arrive while wabridge waits for the portal's next request go
/// together in that request (put off until it may go), instead of a queue of one-message requests each waiting
/// its turn. Each message reaches the portal once.
async fn messages_that_wait_for_the_portals_limit_go_together(db: Db) {
    // One request every 2 s after a burst of 1: the setup's calls have used the burst.
    let b = Bridged::start_with(db, |c| {
        c.bitrix_rate_per_sec = 0.5;
        c.bitrix_burst = 1;
    })
    .await;
    b.settle().await;
    let sent =
        |b: &Bridged| b.bitrix.calls_of("imconnector.send.messages").iter().filter(|c| c.http_status == 200).count();
    let before = sent(&b);
    let customers: Vec<String> = (0..12).map(|i| format!("55119800000{i:02}")).collect();
    for (i, c) in customers.iter().enumerate() {
        b.says(c, &format!("Customer {i}"), vec![p::text_message(c, &p::new_wamid(), now_s(), &format!("m{i}"))]).await;
        b.app.svc.engine().drain().await.expect("drain");
    }
    b.until("every message is in the portal", |b| async move { portal_texts(b).len() == 12 }).await;
    let mut texts = portal_texts(&b);
    texts.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(texts, expected, "each message once");
    let requests = sent(&b) - before;
    assert!(requests <= 6, "12 messages waiting for the limit took {requests} requests; they should share them");
    b.stop().await;
}

/// `imconnector.send.messages` took the message but its answer was lost (a cut connection; a kill right after
/// the call is the same to the next run): before sending again, the portal is asked, and the message reaches
/// the chat once. Where the portal cannot be asked (the customer's first message: no chat known yet) the
/// message is sent again, and that is counted.
async fn a_delivery_whose_answer_was_lost_is_not_sent_twice(db: Db) {
    let b = Bridged::start(db).await;
    let engine = b.app.svc.engine();
    let copies = |b: &Bridged, wamid: &str| {
        b.bitrix.chat_messages().iter().filter(|m| m.external_message_id.as_deref() == Some(wamid)).count()
    };
    let recorded = |b: &Bridged, wamid: String| {
        let pool = b.app.svc.store.raw_pool().clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>("SELECT crm_message_id FROM messages WHERE wamid = $1")
                .bind(wamid)
                .fetch_optional(&pool)
                .await
                .expect("query")
                .flatten()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let retry_until_recorded = |wamid: String| {
        let b = &b;
        async move {
            while recorded(b, wamid.clone()).await.is_none() {
                assert!(std::time::Instant::now() < deadline, "the message was never recorded as delivered");
                engine.make_all_due().await.expect("due");
                engine.drain().await.expect("drain");
            }
        }
    };

    // The first message of the customer: lost answer, no chat to look in. Sent again, counted.
    b.bitrix.lose_next_answers("imconnector.send.messages", 1);
    let first = b.customer_text("first").await;
    retry_until_recorded(first.clone()).await;
    assert_eq!(copies(&b, &first), 2, "no chat known yet: the portal could not be asked");
    assert!(b.bitrix.calls_of("imopenlines.session.history.get").is_empty());

    // Later messages: the portal is asked, finds it, and it is not sent again.
    b.bitrix.lose_next_answers("imconnector.send.messages", 1);
    let second = b.customer_text("second").await;
    retry_until_recorded(second.clone()).await;
    assert_eq!(copies(&b, &second), 1, "asked the portal, not sent again");
    let asked = b.bitrix.calls_of("imopenlines.session.history.get");
    assert!(!asked.is_empty(), "the portal was asked");
    let crm_id = recorded(&b, second.clone()).await.expect("recorded");
    let taken = b.bitrix.chat_messages();
    let portal_copy = taken.iter().find(|m| m.external_message_id.as_deref() == Some(second.as_str())).unwrap();
    assert_eq!(crm_id, portal_copy.im_message_id.to_string(), "the portal's own message id is recorded");

    // An attempt recorded, then a kill before the call went out: asked, not there, sent once.
    let third = b.customer_text("third").await;
    // Only the webhook is processed (its delivery is queued, not run).
    for job in engine.lease(64).await.expect("lease") {
        engine.run(job).await;
    }
    let marked = sqlx::query("UPDATE messages SET crm_attempt_at = 1 WHERE wamid = $1")
        .bind(&third)
        .execute(b.app.svc.store.raw_pool())
        .await
        .expect("mark the attempt");
    assert_eq!(marked.rows_affected(), 1);
    retry_until_recorded(third.clone()).await;
    assert_eq!(copies(&b, &third), 1);
    assert_eq!(portal_texts(&b), ["first", "first", "second", "third"]);

    let metrics = b.app.http.get(b.app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for line in [
        "wabridge_crm_deliveries_rechecked_total{outcome=\"could_not_tell\"} 1",
        "wabridge_crm_deliveries_rechecked_total{outcome=\"already_there\"} 1",
        "wabridge_crm_deliveries_rechecked_total{outcome=\"not_there\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    b.stop().await;
}

/// A profile name the portal's user fields cannot hold (emoji, digits, over 25 characters) is sent as the
/// letters it has; the full name stays readable in the chat's name.
async fn a_profile_name_is_sent_as_the_portal_takes_it(db: Db) {
    let b = Bridged::start(db).await;
    let profile = "Zoë 😊 Müller-Lüdenscheidt 2nd";
    let value = p::messages_value(
        "5511930001234",
        PNID,
        vec![p::contact(CUSTOMER, profile)],
        vec![p::text_message(CUSTOMER, &p::new_wamid(), now_s(), "oi")],
    );
    let sender = wabridge_sandbox::meta::MetaWebhookSender::new(
        b.app.url(&format!("/api/waba?app_id={}", common::bridge::APP)),
        common::bridge::SECRET,
    );
    assert!(sender.deliver(&p::envelope(common::bridge::WABA, "messages", value)).await.delivered);
    b.until("in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    let m = &b.bitrix.chat_messages()[0];
    assert_eq!(m.user["name"], "Zoë Müller-Lüdenscheidt");
    assert!(m.user.get("last_name").is_none(), "{:?}", m.user);
    let calls = b.bitrix.calls_of("imconnector.send.messages");
    let sent = calls.last().map(|c| c.params.to_string()).unwrap_or_default();
    assert!(sent.contains(&format!("WhatsApp +{CUSTOMER} ({profile})")), "the full name in the chat's name: {sent}");
    b.stop().await;
}

/// The customer edits a message that is in the portal: the portal's message is updated in place (same chat, same
/// external id = the original wamid) with the new text; the edit itself stays stored; nothing "unsupported".
async fn an_edit_updates_the_portal_message(db: Db) {
    use wabridge_sandbox::bitrix::MessageKind;
    let b = Bridged::start(db).await;
    let original = b.customer_text("Quero 2 pizzas").await;
    b.until("in the portal", |b| async move { b.bitrix.chat_messages().len() == 1 }).await;
    let edit = p::new_wamid();
    b.customer_says(vec![p::edit_message(CUSTOMER, &edit, now_s(), &original, "Quero 3 pizzas")]).await;
    b.until("the update", |b| async move { b.bitrix.chat_messages().iter().any(|m| m.kind == MessageKind::Updated) })
        .await;
    b.settle().await;
    let msgs = b.bitrix.chat_messages();
    assert_eq!(msgs.iter().filter(|m| m.kind == MessageKind::Sent).count(), 1, "no new line posted: {msgs:?}");
    let updated = msgs.iter().find(|m| m.kind == MessageKind::Updated).unwrap();
    assert_eq!(updated.external_message_id.as_deref(), Some(original.as_str()));
    assert_eq!(updated.external_chat_id, CUSTOMER);
    assert_eq!(updated.text.as_deref(), Some("Quero 3 pizzas"));
    assert_eq!(updated.chat_id, msgs[0].chat_id, "the same open-line chat");
    let calls = b.bitrix.calls_of("imconnector.update.messages");
    assert_eq!(calls.len(), 1, "{calls:?}");
    // The edit is kept in the history, marked as delivered; the original now reads as edited.
    let pool = b.app.svc.store.raw_pool().clone();
    let (msg_type, crm): (String, Option<String>) =
        sqlx::query_as("SELECT msg_type, crm_message_id FROM messages WHERE wamid = $1")
            .bind(&edit)
            .fetch_one(&pool)
            .await
            .expect("the edit is stored");
    assert_eq!(msg_type, "edit");
    assert!(crm.is_some(), "the edit is recorded as done");
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM messages WHERE wamid = $1")
        .bind(&original)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(body.as_deref(), Some("Quero 3 pizzas"));

    // A photo's caption edited: the message keeps its file.
    let image = b.graph.add_media(b"\xFF\xD8\xFF", "image/jpeg", PNID);
    let photo = p::new_wamid();
    b.customer_says(vec![p::image_message(CUSTOMER, &photo, now_s(), &image, "image/jpeg", Some("a pizza"))]).await;
    b.until("the photo", |b| async move { b.bitrix.chat_messages().len() == 3 }).await;
    let new_caption = p::message(
        CUSTOMER,
        &p::new_wamid(),
        now_s(),
        "edit",
        json!({"original_message_id": photo, "message": {"type": "image",
            "image": {"id": image, "mime_type": "image/jpeg", "caption": "a bigger pizza"}}}),
    );
    b.customer_says(vec![new_caption]).await;
    b.until("the caption", |b| async move { b.bitrix.chat_messages().len() == 4 }).await;
    let m = b.bitrix.chat_messages().pop().unwrap();
    assert_eq!(m.kind, MessageKind::Updated);
    assert_eq!(m.external_message_id.as_deref(), Some(photo.as_str()));
    assert_eq!(m.text.as_deref(), Some("a bigger pizza"));
    assert_eq!(m.files.len(), 1, "the photo stays: {:?}", m.files);
    b.stop().await;
}

/// The customer deletes a message that is in the portal: the portal's message is deleted; no line is posted.
async fn a_revoke_deletes_the_portal_message(db: Db) {
    use wabridge_sandbox::bitrix::MessageKind;
    let b = Bridged::start(db).await;
    let original = b.customer_text("número do cartão 1234").await;
    b.until("in the portal", |b| async move { b.bitrix.chat_messages().len() == 1 }).await;
    b.customer_says(vec![p::revoke_message(CUSTOMER, &p::new_wamid(), now_s(), &original)]).await;
    b.until("the deletion", |b| async move { b.bitrix.chat_messages().iter().any(|m| m.kind == MessageKind::Deleted) })
        .await;
    b.settle().await;
    let msgs = b.bitrix.chat_messages();
    assert_eq!(msgs.iter().filter(|m| m.kind == MessageKind::Sent).count(), 1, "no new line posted: {msgs:?}");
    let deleted = msgs.iter().find(|m| m.kind == MessageKind::Deleted).unwrap();
    assert_eq!(deleted.external_message_id.as_deref(), Some(original.as_str()));
    assert_eq!(deleted.external_chat_id, CUSTOMER);
    assert_eq!(b.bitrix.calls_of("imconnector.delete.messages").len(), 1);
    b.stop().await;
}

/// An edit or a revoke of a message the portal never got (unknown to us, e.g. older than the bridge) is posted
/// as a short readable line, never as "unsupported".
async fn a_change_of_an_unknown_message_is_a_readable_line(db: Db) {
    let b = Bridged::start(db).await;
    let unknown = p::new_wamid();
    b.customer_says(vec![p::revoke_message(CUSTOMER, &p::new_wamid(), now_s(), &unknown)]).await;
    b.until("the line", |b| async move { b.bitrix.chat_messages().len() == 1 }).await;
    b.customer_says(vec![p::edit_message(CUSTOMER, &p::new_wamid(), now_s(), &unknown, "afinal é amanhã")]).await;
    b.until("the second line", |b| async move { b.bitrix.chat_messages().len() == 2 }).await;
    b.settle().await;
    let texts: Vec<String> = b.bitrix.chat_messages().iter().map(|m| m.text.clone().unwrap_or_default()).collect();
    assert_eq!(texts, ["[the customer deleted a message]", "[edited] afinal é amanhã"]);
    assert!(b.bitrix.calls_of("imconnector.delete.messages").is_empty());
    assert!(b.bitrix.calls_of("imconnector.update.messages").is_empty());
    b.stop().await;
}

/// A message the customer deleted before it reached the portal (both in one webhook) is never shown; the chat
/// gets the readable line instead.
async fn a_message_deleted_before_delivery_never_reaches_the_portal(db: Db) {
    let b = Bridged::start(db).await;
    let original = p::new_wamid();
    let t = now_s();
    b.customer_says(vec![
        p::text_message(CUSTOMER, &original, t, "senha 0000"),
        p::revoke_message(CUSTOMER, &p::new_wamid(), t + 1, &original),
    ])
    .await;
    b.until("the line", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    b.settle().await;
    let texts: Vec<String> = b.bitrix.chat_messages().iter().map(|m| m.text.clone().unwrap_or_default()).collect();
    assert_eq!(texts, ["[the customer deleted a message]"]);
    b.stop().await;
}

/// A call permission reply reaches the chat as a readable line and is stored for calling.
async fn a_call_permission_reply_is_a_line_and_is_stored(db: Db) {
    let b = Bridged::start(db).await;
    let request = p::new_wamid();
    let until = 1_753_186_982;
    b.customer_says(vec![p::call_permission_reply_message(
        CUSTOMER,
        &p::new_wamid(),
        now_s(),
        common::bridge::DISPLAY,
        &request,
        true,
        Some(until),
    )])
    .await;
    b.until("the line", |b| async move { b.bitrix.chat_messages().len() == 1 }).await;
    assert_eq!(
        b.bitrix.chat_messages()[0].text.as_deref(),
        Some("[call permission: accepted, valid until 2025-07-22 12:23 UTC]")
    );
    let store = b.app.svc.store.clone();
    let stored = wabridge::calling::permissions::get(&store, b.phone_id, CUSTOMER).await.unwrap().expect("stored");
    assert_eq!(stored.response, "accept");
    assert_eq!(stored.expires_at, Some(until * 1000));
    assert!(!stored.permanent);
    // A later rejection replaces it; an older reply arriving late does not.
    let later = now_s() + 5;
    b.customer_says(vec![p::call_permission_reply_message(
        CUSTOMER,
        &p::new_wamid(),
        later,
        common::bridge::DISPLAY,
        &request,
        false,
        None,
    )])
    .await;
    b.until("the second line", |b| async move { b.bitrix.chat_messages().len() == 2 }).await;
    assert_eq!(b.bitrix.chat_messages()[1].text.as_deref(), Some("[call permission: rejected]"));
    b.customer_says(vec![p::call_permission_reply_message(
        CUSTOMER,
        &p::new_wamid(),
        later - 60,
        common::bridge::DISPLAY,
        &request,
        true,
        Some(until),
    )])
    .await;
    b.settle().await;
    let stored = wabridge::calling::permissions::get(&store, b.phone_id, CUSTOMER).await.unwrap().expect("stored");
    assert_eq!(stored.response, "reject", "an older reply does not win");
    assert!(!stored.allows_at(wabridge::store::now_ms()));
    b.stop().await;
}

/// The read marks wabridge sent for the phone, as the admin API lists them (oldest first).
async fn read_sends(b: &Bridged) -> Vec<Value> {
    let (_, sends) = b.app.admin("GET", "/sends", None).await;
    let mut rows: Vec<Value> = sends.as_array().cloned().unwrap_or_default();
    rows.retain(|s| s["origin"] == "read");
    rows.reverse();
    rows
}

/// An operator's replies mark the customer's latest message read at Meta (blue ticks), once per latest message:
/// three messages and two replies make exactly one read mark, naming the third; a later message and reply make
/// one more, naming it. The marks are sends of their own (`origin: read`), reported to nobody.
async fn operator_replies_mark_the_latest_message_read_once(db: Db) {
    let b = Bridged::start(db).await;
    let t = now_s();
    let first: Vec<String> = (0..3).map(|_| p::new_wamid()).collect();
    let texts = ["oi", "meu pedido 77", "chegou?"];
    b.customer_says(
        first
            .iter()
            .zip(texts)
            .enumerate()
            .map(|(i, (w, x))| p::text_message(CUSTOMER, w, t - 3 + i as i64, x))
            .collect(),
    )
    .await;
    b.until("three messages in the portal", |b| async move { b.bitrix.chat_messages().len() == 3 }).await;
    b.operator("Olá Maria!").await;
    b.operator("Vou verificar o pedido 77.").await;
    b.until("both replies sent", |b| async move { b.graph.sent_messages(PNID).len() == 2 }).await;
    b.until("the read mark", |b| async move { !b.graph.read_marks(PNID).is_empty() }).await;
    b.settle().await;
    let marks: Vec<String> = b.graph.read_marks(PNID).into_iter().map(|m| m.message_id).collect();
    assert_eq!(marks, [first[2].clone()], "one read mark, naming the latest inbound message");
    let sent = b.graph.sent_messages(PNID);
    assert!(sent.iter().all(|m| m.body["type"] == "text"), "the replies are messages: {sent:?}");
    let read = read_sends(&b).await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["state"], "accepted");
    assert_eq!(read[0]["request"], json!({"status": "read", "message_id": first[2]}));
    assert_eq!(read[0]["recipient"], CUSTOMER);
    assert!(read[0]["wamid"].is_null(), "a read mark has no wamid: {}", read[0]);

    // The customer writes again; the next reply marks the new latest message, once.
    let later = p::new_wamid();
    b.customer_says(vec![p::text_message(CUSTOMER, &later, t + 1, "obrigada")]).await;
    b.until("four messages in the portal", |b| async move { b.bitrix.chat_messages().len() == 4 }).await;
    b.operator("De nada!").await;
    b.until("the third reply sent", |b| async move { b.graph.sent_messages(PNID).len() == 3 }).await;
    b.until("the second read mark", |b| async move { b.graph.read_marks(PNID).len() >= 2 }).await;
    b.settle().await;
    let marks: Vec<String> = b.graph.read_marks(PNID).into_iter().map(|m| m.message_id).collect();
    assert_eq!(marks, [first[2].clone(), later.clone()]);
    // Nothing about read marks reaches the chat: no system message, no delivery mark naming anything but a reply.
    assert!(b.system_messages().is_empty(), "{:?}", b.system_messages());
    let replies: Vec<String> = b.graph.sent_messages(PNID).into_iter().map(|m| m.wamid).collect();
    for mark in b.bitrix.delivery_marks() {
        assert!(mark.external_ids.iter().all(|id| replies.contains(id)), "{mark:?}");
    }
    assert_eq!(read_sends(&b).await.len(), 2);
    b.stop().await;
}

/// Meta refusing a read mark for good is recorded on its send and told to nobody: the operator sees the reply's
/// failure only, never one about a read mark.
async fn a_refused_read_mark_is_recorded_not_shown(db: Db) {
    let b = Bridged::start(db).await;
    let wamid = b.customer_text("oi").await;
    b.until("in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    // Both requests of the reply (the message and the read mark) are refused for good.
    b.graph.fail_next_send(PNID, 131026);
    b.graph.fail_next_send(PNID, 131026);
    b.operator("Olá!").await;
    b.until(
        "the read mark failed",
        |b| async move { read_sends(b).await.first().is_some_and(|s| s["state"] == "failed") },
    )
    .await;
    b.until("the reply's failure in the chat", |b| async move { !b.system_messages().is_empty() }).await;
    b.settle().await;
    let read = read_sends(&b).await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["error_code"], 131026);
    assert_eq!(read[0]["request"]["message_id"], wamid);
    assert_eq!(read[0]["attempts"], 1, "a permanent error is not retried");
    let notes = b.system_messages();
    assert_eq!(notes.len(), 1, "only the reply's failure is shown: {notes:?}");
    assert!(b.graph.read_marks(PNID).is_empty());
    b.stop().await;
}

/// A read mark Meta refuses for now (131000, a temporary error) is retried like any send and then goes, once; the
/// chat hears nothing of it.
async fn a_read_mark_refused_for_now_is_retried(db: Db) {
    let b = Bridged::start(db).await;
    let wamid = b.customer_text("oi").await;
    b.until("in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    // The first attempts of the reply and of its read mark are refused for now.
    b.graph.fail_next_send(PNID, 131000);
    b.graph.fail_next_send(PNID, 131000);
    b.operator("Olá!").await;
    b.until("the read mark accepted after a retry", |b| async move {
        b.app.svc.engine().make_all_due().await.unwrap();
        read_sends(b).await.first().is_some_and(|s| s["state"] == "accepted")
    })
    .await;
    b.until("the reply sent", |b| async move {
        b.app.svc.engine().make_all_due().await.unwrap();
        b.graph.sent_messages(PNID).len() == 1
    })
    .await;
    b.settle().await;
    let read = read_sends(&b).await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["attempts"], 2, "{}", read[0]);
    let marks: Vec<String> = b.graph.read_marks(PNID).into_iter().map(|m| m.message_id).collect();
    assert_eq!(marks, [wamid]);
    assert!(b.system_messages().is_empty(), "{:?}", b.system_messages());
    b.stop().await;
}

/// An operator's replies in one chat reach WhatsApp in the operator's order even when their jobs finish out of
/// order (two workers, the second faster): a later reply waits for the earlier one of its chat.
async fn operator_replies_keep_their_order_per_chat(db: Db) {
    let b = Bridged::start(db).await;
    b.customer_text("oi").await;
    b.until("in the portal", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    for text in ["first", "second", "third"] {
        let r = b.bitrix.operator_reply(b.line, CUSTOMER, text, vec![]).await.expect("operator reply posted");
        assert_eq!(r.status, 200);
    }
    // Two workers lease all three replies at once; the later ones finish first.
    let engine = b.app.svc.engine();
    let mut jobs = engine.lease(16).await.expect("lease");
    jobs.retain(|j| j.kind == "crm.reply");
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let first = jobs.remove(0);
    for j in jobs.into_iter().rev() {
        engine.run(j).await;
    }
    engine.run(first).await;
    b.until("all three sent", |b| async move { b.graph.sent_messages(PNID).len() == 3 }).await;
    let order: Vec<String> = b
        .graph
        .sent_messages(PNID)
        .iter()
        .map(|m| m.body["text"]["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(order, ["first", "second", "third"], "the operator's order");
    b.stop().await;
}

both_databases!(
    messages_that_wait_for_the_portals_limit_go_together,
    a_customers_messages_reach_the_portal_in_arrival_order,
    a_delivery_whose_answer_was_lost_is_not_sent_twice,
    operator_replies_keep_their_order_per_chat,
    an_edit_updates_the_portal_message,
    a_revoke_deletes_the_portal_message,
    a_change_of_an_unknown_message_is_a_readable_line,
    a_message_deleted_before_delivery_never_reaches_the_portal,
    a_call_permission_reply_is_a_line_and_is_stored,
    a_profile_name_is_sent_as_the_portal_takes_it,
    a_read_mark_refused_for_now_is_retried,
    operator_replies_mark_the_latest_message_read_once,
    a_refused_read_mark_is_recorded_not_shown,
    a_message_the_portal_refuses_is_retried_not_recorded,
    install_and_bind_make_an_active_line,
    an_operator_reply_reaches_meta_and_the_marks_come_back,
    inbound_types_arrive_readable_and_media_links_are_signed,
    media_links_expire,
    outside_the_window_nothing_reaches_meta_and_the_operator_is_told,
    template_commands_send_exact_payloads_and_explain_mistakes,
    tokens_forgeries_duplicates,
    uninstall_stops_traffic_for_that_portal_only,
);
