//! Bitrix24 end to end, through real HTTP against both sandboxes, on both databases: install, a line per
//! number, chats both ways, the 24-hour window, template commands, tokens, forgeries, duplicates, uninstall.

mod common;

use common::bridge::{Bridged, CUSTOMER, PNID};
use common::Db;
use serde_json::json;

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

both_databases!(install_and_bind_make_an_active_line, an_operator_reply_reaches_meta_and_the_marks_come_back);
