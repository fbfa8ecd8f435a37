//! The sandbox's Meta webhook payload builders (`wabridge_sandbox::payloads`), read back by the product's webhook
//! parser: every builder gives what `wabridge::meta::webhook` understands as the documented message or status.
//! (These lived beside the builders; they moved here when the sandbox became a crate that does not depend on the
//! product.)

use serde_json::{json, Value};
use wabridge::meta::webhook::{self, ChangeValue, Content, Interactive, MessagesValue, OrderItem, StatusKind};
use wabridge_sandbox::payloads::*;

const WABA: &str = "102290129340398";
const DISPLAY: &str = "5511930001234";
const PNID: &str = "106540352242922";
const USER: &str = "5511987654321";
const TS: i64 = 1_767_800_000;

fn parse_messages(body: &Value) -> MessagesValue {
    let p = webhook::parse(&to_wire(body)).unwrap();
    assert_eq!(p.object, "whatsapp_business_account");
    assert_eq!(p.entry[0].id, WABA);
    match &p.entry[0].changes[0].value {
        ChangeValue::Messages(m) => m.clone(),
        other => panic!("{other:?}"),
    }
}

/// Wraps one message as Meta would and returns its parsed content.
fn content_of(msg: Value) -> Content {
    let body = envelope(WABA, "messages", messages_value(DISPLAY, PNID, vec![contact(USER, "João")], vec![msg]));
    let mv = parse_messages(&body);
    assert_eq!(mv.metadata.phone_number_id, PNID);
    assert_eq!(mv.metadata.display_phone_number, DISPLAY);
    assert_eq!(mv.contacts[0].wa_id.as_deref(), Some(USER));
    assert_eq!(mv.contacts[0].profile_name.as_deref(), Some("João"));
    assert_eq!(mv.messages.len(), 1);
    let m = &mv.messages[0];
    assert_eq!(m.from.as_deref(), Some(USER));
    assert_eq!(m.timestamp, 1_767_800_000);
    assert!(m.id.starts_with("wamid."));
    m.content.clone()
}

#[test]
fn text_builder() {
    assert_eq!(content_of(text_message(USER, &new_wamid(), TS, "Olá 😀")), Content::Text { body: "Olá 😀".into() });
}

#[test]
fn media_builders() {
    let c = content_of(image_message(USER, &new_wamid(), TS, "1003383421387256", "image/jpeg", Some("Taj Mahal")));
    let Content::Image(m) = &c else { panic!("{c:?}") };
    assert_eq!(
        (m.id.as_str(), m.mime_type.as_deref(), m.caption.as_deref()),
        ("1003383421387256", Some("image/jpeg"), Some("Taj Mahal"))
    );

    let c = content_of(video_message(USER, &new_wamid(), TS, "2", "video/mp4", None));
    assert!(matches!(&c, Content::Video(m) if m.id == "2" && m.caption.is_none()));

    let c = content_of(audio_message(USER, &new_wamid(), TS, "3", "audio/ogg; codecs=opus", true));
    assert!(matches!(&c, Content::Audio(m) if m.id == "3" && m.voice == Some(true)));

    let c = content_of(document_message(USER, &new_wamid(), TS, "4", "application/pdf", "exame.pdf", Some("veja")));
    assert!(matches!(&c, Content::Document(m)
        if m.filename.as_deref() == Some("exame.pdf") && m.caption.as_deref() == Some("veja")));

    let c = content_of(sticker_message(USER, &new_wamid(), TS, "5", true));
    assert!(matches!(&c, Content::Sticker(m)
        if m.animated == Some(true) && m.mime_type.as_deref() == Some("image/webp")));
}

#[test]
fn location_and_contacts_builders() {
    let c = content_of(location_message(USER, &new_wamid(), TS, -23.5505, -46.6333, Some("Sé"), None));
    assert_eq!(
        c,
        Content::Location {
            latitude: -23.5505,
            longitude: -46.6333,
            name: Some("Sé".into()),
            address: None,
            url: None
        }
    );
    let c =
        content_of(contacts_message(USER, &new_wamid(), TS, vec![shared_contact("Ana", "+55 11 9", Some("55119"))]));
    let Content::Contacts(cards) = &c else { panic!("{c:?}") };
    assert_eq!(cards[0].formatted_name.as_deref(), Some("Ana"));
    assert_eq!(cards[0].phones[0].wa_id.as_deref(), Some("55119"));
    assert_eq!(cards[0].phones[0].kind.as_deref(), Some("CELL"));
}

#[test]
fn interactive_and_button_builders() {
    let quoted = new_wamid();
    let msg = button_reply_message(USER, &new_wamid(), TS, DISPLAY, &quoted, "yes", "Sim");
    assert_eq!(msg["context"], json!({"from": DISPLAY, "id": quoted}));
    assert_eq!(
        content_of(msg),
        Content::Interactive(Interactive::ButtonReply { id: "yes".into(), title: "Sim".into() })
    );

    let c = content_of(list_reply_message(USER, &new_wamid(), TS, DISPLAY, &quoted, "r1", "Seg", Some("9h")));
    assert_eq!(
        c,
        Content::Interactive(Interactive::ListReply {
            id: "r1".into(),
            title: "Seg".into(),
            description: Some("9h".into())
        })
    );

    let c = content_of(flow_reply_message(USER, &new_wamid(), TS, DISPLAY, &quoted, r#"{"flow_token":"t"}"#));
    assert!(
        matches!(&c, Content::Interactive(Interactive::NfmReply { response_json, .. }) if response_json == r#"{"flow_token":"t"}"#)
    );

    let c = content_of(button_message(USER, &new_wamid(), TS, DISPLAY, &quoted, "STOP", "Parar"));
    assert_eq!(c, Content::Button { payload: Some("STOP".into()), text: "Parar".into() });
}

#[test]
fn reaction_order_unsupported_builders() {
    let target = new_wamid();
    assert_eq!(
        content_of(reaction_message(USER, &new_wamid(), TS, &target, Some("❤️"))),
        Content::Reaction { message_id: target.clone(), emoji: Some("❤️".into()) }
    );
    assert_eq!(
        content_of(reaction_message(USER, &new_wamid(), TS, &target, None)),
        Content::Reaction { message_id: target, emoji: None }
    );
    let c = content_of(order_message(USER, &new_wamid(), TS, "cat-1", "", vec![order_item("SKU", 2, 9.9, "BRL")]));
    assert_eq!(
        c,
        Content::Order {
            catalog_id: "cat-1".into(),
            text: Some(String::new()),
            items: vec![OrderItem {
                product_retailer_id: "SKU".into(),
                quantity: 2,
                item_price: 9.9,
                currency: "BRL".into()
            }]
        }
    );
    let wamid = new_wamid();
    let body = envelope(
        WABA,
        "messages",
        messages_value(DISPLAY, PNID, vec![contact(USER, "x")], vec![unsupported_message(USER, &wamid, TS)]),
    );
    let mv = parse_messages(&body);
    assert_eq!(mv.messages[0].content, Content::Unsupported { type_name: "unsupported".into() });
    assert_eq!(mv.messages[0].errors[0].code, 131051);
    assert_eq!(mv.messages[0].id, wamid);
}

#[test]
fn edit_revoke_call_permission_builders() {
    let original = new_wamid();
    assert_eq!(
        content_of(edit_message(USER, &new_wamid(), TS, &original, "novo texto")),
        Content::Edit {
            original_message_id: original.clone(),
            message: Box::new(Content::Text { body: "novo texto".into() })
        }
    );
    assert_eq!(
        content_of(revoke_message(USER, &new_wamid(), TS, &original)),
        Content::Revoke { original_message_id: original.clone() }
    );
    let c = content_of(call_permission_reply_message(USER, &new_wamid(), TS, DISPLAY, &original, true, Some(TS)));
    assert!(matches!(&c, Content::Interactive(Interactive::CallPermissionReply(r))
        if r.accepted && r.expiration_timestamp == Some(TS)));
    let c = content_of(call_permission_reply_message(USER, &new_wamid(), TS, DISPLAY, &original, false, None));
    assert!(matches!(&c, Content::Interactive(Interactive::CallPermissionReply(r)) if !r.accepted));
}

#[test]
fn system_builder_has_no_contacts() {
    let msg = system_message(
        USER,
        &new_wamid(),
        TS,
        "User João changed from 5511987654321 to 5511900000000",
        "5511900000000",
    );
    let value = messages_value(DISPLAY, PNID, vec![], vec![msg]);
    assert!(value.get("contacts").is_none());
    let mv = parse_messages(&envelope(WABA, "messages", value));
    assert!(mv.contacts.is_empty());
    assert_eq!(
        mv.messages[0].content,
        Content::System {
            body: Some("User João changed from 5511987654321 to 5511900000000".into()),
            kind: Some("user_changed_number".into()),
            new_wa_id: Some("5511900000000".into())
        }
    );
}

#[test]
fn status_builders() {
    let w = new_wamid();
    let statuses = vec![
        with_pricing(status(&w, "sent", TS, USER), "regular", "utility"),
        status(&w, "delivered", TS + 1, USER),
        with_pricing(status(&w, "read", TS + 2, USER), "free_customer_service", "service"),
        status(&w, "played", TS + 3, USER),
        failed_status(
            &w,
            TS + 4,
            USER,
            131047,
            "Re-engagement message",
            "More than 24 hours have passed since the recipient last replied to the sender number.",
        ),
    ];
    assert_eq!(statuses[1]["timestamp"], json!("1767800001"));
    let mv = parse_messages(&envelope(WABA, "messages", statuses_value(DISPLAY, PNID, statuses)));
    let kinds: Vec<_> = mv.statuses.iter().map(|s| s.status.clone()).collect();
    use StatusKind::*;
    assert_eq!(kinds, vec![Sent, Delivered, Read, Played, Failed]);
    assert!(mv.statuses.iter().all(|s| s.id == w && s.recipient_id.as_deref() == Some(USER)));
    assert_eq!(mv.statuses[2].timestamp, TS + 2);
    let p0 = mv.statuses[0].pricing.as_ref().unwrap();
    assert_eq!(
        (p0.billable, p0.pricing_model.as_deref(), p0.kind.as_deref()),
        (Some(true), Some("PMP"), Some("regular"))
    );
    assert_eq!(mv.statuses[2].pricing.as_ref().unwrap().billable, Some(false));
    assert!(mv.statuses[1].pricing.is_none());
    let e = &mv.statuses[4].errors[0];
    assert_eq!(
        (e.code, e.title.as_deref(), e.message.as_deref()),
        (131047, Some("Re-engagement message"), Some("Re-engagement message"))
    );
    assert_eq!(e.href.as_deref(), Some(ERROR_HREF));
    assert!(e.details.as_deref().is_some_and(|d| d.starts_with("More than 24 hours")));
}

#[test]
fn errors_value_builder() {
    let v = errors_value(DISPLAY, PNID, vec![error(130429, "Rate limit hit", "too many")]);
    let mv = parse_messages(&envelope(WABA, "messages", v));
    assert_eq!(mv.errors[0].code, 130429);
    assert_eq!(mv.errors[0].details.as_deref(), Some("too many"));
}

#[test]
fn template_status_builder() {
    let body = template_status_update(WABA, 1_689_556_908_129_832, "order_confirmation", "en-US", "APPROVED");
    assert!(body["entry"][0]["time"].is_u64());
    assert!(body["entry"][0]["changes"][0]["value"]["message_template_id"].is_u64());
    let p = webhook::parse(&to_wire(&body)).unwrap();
    assert!(p.entry[0].time.is_some_and(|t| t > 1_700_000_000));
    let ChangeValue::TemplateStatus(t) = &p.entry[0].changes[0].value else { panic!("{p:?}") };
    assert_eq!(t.template_id, "1689556908129832");
    assert_eq!((t.name.as_str(), t.language.as_str(), t.event.as_str()), ("order_confirmation", "en_US", "APPROVED"));
    assert_eq!(t.reason.as_deref(), Some("NONE"));
}
