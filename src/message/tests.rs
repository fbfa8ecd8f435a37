//! The validator against every documented limit, and the Graph bodies against Meta's documented shapes.

use serde_json::{json, Value};

use super::graph::request;
use super::*;
use crate::translate::template::TemplateDef;

fn msg(kind: &str, object: Value) -> Value {
    let mut v = json!({"from": "+5511930001234", "to": "+55 11 98765-4321", "type": kind});
    v[kind] = object;
    v
}

/// The errors of a request as `field: message` lines.
fn errors(v: Value) -> Vec<String> {
    match parse(&v) {
        Ok(m) => panic!("expected errors, got {m:?}"),
        Err(e) => e.into_iter().map(|f| format!("{}: {}", f.field, f.message)).collect(),
    }
}

fn refused(v: Value, needle: &str) {
    let e = errors(v);
    assert!(e.iter().any(|l| l.contains(needle)), "{needle:?} not in {e:?}");
}

fn graph(v: Value) -> Value {
    let m = parse(&v).unwrap_or_else(|e| panic!("valid: {e:?}"));
    request(&m, &[]).expect("built").request
}

fn s(n: usize) -> String {
    "x".repeat(n)
}

fn buttons(n: usize) -> Value {
    let b: Vec<Value> =
        (0..n).map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("T{i}")}})).collect();
    json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": b}})
}

fn list(rows: &[usize]) -> Value {
    let mut k = 0;
    let sections: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let rows: Vec<Value> = (0..*n)
                .map(|_| {
                    k += 1;
                    json!({"id": format!("r{k}"), "title": format!("Row {k}")})
                })
                .collect();
            json!({"title": format!("S{i}"), "rows": rows})
        })
        .collect();
    json!({"type": "list", "body": {"text": "Choose"}, "action": {"button": "Options", "sections": sections}})
}

#[test]
fn text_bodies_up_to_4096_characters_with_link_preview() {
    assert_eq!(
        graph(msg("text", json!({"body": "Olá", "preview_url": true}))),
        json!({"type": "text", "text": {"body": "Olá", "preview_url": true}})
    );
    assert!(parse(&msg("text", json!({"body": "é".repeat(4096)}))).is_ok(), "characters, not bytes");
    refused(msg("text", json!({"body": s(4097)})), "text.body: at most 4,096 characters (4,097 given)");
    refused(msg("text", json!({"body": "  "})), "text.body: must not be empty");
}

#[test]
fn the_common_fields() {
    let m = parse(&msg("text", json!({"body": "hi"}))).unwrap();
    assert_eq!((m.from.as_str(), m.to.as_str()), ("+5511930001234", "+5511987654321"));
    let mut v = msg("text", json!({"body": "hi"}));
    v["reply_to"] = json!("wamid.ABC");
    assert_eq!(graph(v)["context"], json!({"message_id": "wamid.ABC"}));
    let mut v = msg("text", json!({"body": "hi"}));
    v["to"] = json!("5511987654321");
    refused(v, "to: must be in international form");
    let mut v = msg("text", json!({"body": "hi"}));
    v["idempotency_key"] = json!(s(201));
    refused(v, "idempotency_key: at most 200 characters");
    // The object of the type, and no other.
    refused(json!({"from": "+5511930001234", "to": "+5511987654321", "type": "image"}), "image: is required");
    let mut v = msg("text", json!({"body": "hi"}));
    v["image"] = json!({"link": "https://x.example/a.jpg"});
    refused(v, "image: does not belong to a message of type text");
    // Unknown types and fields are named.
    refused(json!({"from": "+5511930001234", "to": "+5511987654321", "type": "poll"}), "type: unknown variant `poll`");
    refused(msg("text", json!({"body": "hi", "bold": true})), "text.bold: unknown field `bold`");
    // Every error at once.
    let e = errors(json!({"from": "x", "to": "y", "type": "text", "text": {"body": s(5000)}}));
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn media_by_id_or_link_with_captions_and_file_names_where_meta_takes_them() {
    assert_eq!(
        graph(msg("image", json!({"id": "1037543291543636", "caption": "Taj Mahal"}))),
        json!({"type": "image", "image": {"id": "1037543291543636", "caption": "Taj Mahal"}})
    );
    assert_eq!(
        graph(msg("document", json!({"link": "https://x.example/a.pdf", "caption": "Invoice", "filename": "a.pdf"}))),
        json!({"type": "document", "document": {"link": "https://x.example/a.pdf", "caption": "Invoice", "filename": "a.pdf"}})
    );
    assert_eq!(
        graph(msg("audio", json!({"id": "12", "voice": true}))),
        json!({"type": "audio", "audio": {"id": "12", "voice": true}})
    );
    assert_eq!(graph(msg("sticker", json!({"id": "13"}))), json!({"type": "sticker", "sticker": {"id": "13"}}));
    assert_eq!(
        graph(msg("video", json!({"link": "http://x.example/v.mp4"}))),
        json!({"type": "video", "video": {"link": "http://x.example/v.mp4"}})
    );
    refused(msg("image", json!({"id": "1", "caption": s(1025)})), "image.caption: at most 1,024 characters");
    assert!(parse(&msg("video", json!({"id": "1", "caption": s(1024)}))).is_ok());
    refused(msg("audio", json!({"id": "1", "caption": "x"})), "audio.caption: audio messages take no caption");
    refused(msg("sticker", json!({"id": "1", "caption": "x"})), "sticker.caption: sticker messages take no caption");
    refused(msg("image", json!({"id": "1", "filename": "a.jpg"})), "image.filename: only documents take a file name");
    refused(msg("document", json!({"id": "1", "filename": s(241)})), "document.filename: at most 240 characters");
    refused(msg("video", json!({"id": "1", "voice": true})), "video.voice: only audio can be a voice note");
    refused(msg("image", json!({"id": "1", "link": "https://x.example/a"})), "image: give either id or link, not both");
    refused(msg("image", json!({})), "image: needs id");
    refused(msg("image", json!({"id": "abc"})), "image.id: must be a media id");
    refused(msg("image", json!({"link": "ftp://x.example/a"})), "image.link: must be a public http or https URL");
}

#[test]
fn location_contacts_and_reactions() {
    assert_eq!(
        graph(msg(
            "location",
            json!({"latitude": -23.55, "longitude": -46.63, "name": "Loja", "address": "Av. Paulista"})
        )),
        json!({"type": "location", "location": {"latitude": -23.55, "longitude": -46.63, "name": "Loja", "address": "Av. Paulista"}})
    );
    refused(msg("location", json!({"latitude": 91, "longitude": 0})), "location.latitude: must be between -90 and 90");
    refused(msg("location", json!({"latitude": 0, "longitude": -181})), "location.longitude: must be between");
    let card = json!({"name": {"formatted_name": "Anna Lima", "first_name": "Anna"},
                      "phones": [{"phone": "+5511987654321", "wa_id": "5511987654321", "type": "CELL"}],
                      "emails": [{"email": "a@example.com", "type": "WORK"}], "birthday": "1990-04-01"});
    assert_eq!(graph(msg("contacts", json!([card.clone()]))), json!({"type": "contacts", "contacts": [card.clone()]}));
    refused(msg("contacts", Value::Array(vec![card.clone(); 6])), "contacts[5]: at most 5 contacts");
    refused(msg("contacts", json!([])), "contacts: must hold at least 1 contact");
    refused(
        msg("contacts", json!([{"name": {"formatted_name": ""}}])),
        "contacts[0].name.formatted_name: must not be empty",
    );
    refused(msg("contacts", json!([{"name": {}}])), "contacts[0].name.formatted_name: is required");
    refused(
        msg("contacts", json!([{"name": {"formatted_name": "A"}, "birthday": "01/04/1990"}])),
        "contacts[0].birthday: must be a date YYYY-MM-DD",
    );
    assert_eq!(
        graph(msg("reaction", json!({"message_id": "wamid.X", "emoji": "😀"}))),
        json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "😀"}})
    );
    assert_eq!(
        graph(msg("reaction", json!({"message_id": "wamid.X", "emoji": ""}))),
        json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": ""}}),
        "an empty emoji removes the reaction"
    );
    refused(msg("reaction", json!({"message_id": "wamid.X", "emoji": "ok"})), "reaction.emoji: must be one emoji");
    refused(msg("reaction", json!({"message_id": "", "emoji": "👍"})), "reaction.message_id: must not be empty");
}

#[test]
fn reply_buttons_1_to_3_unique_with_titles_of_20() {
    let b = graph(msg("interactive", buttons(3)));
    assert_eq!(
        b["interactive"]["action"]["buttons"][2],
        json!({"type": "reply", "reply": {"id": "b2", "title": "T2"}})
    );
    assert_eq!(b["interactive"]["type"], "button");
    assert_eq!(b["interactive"]["body"], json!({"text": "Pick"}));
    refused(msg("interactive", buttons(4)), "interactive.action.buttons[3]: at most 3 buttons");
    refused(msg("interactive", buttons(0)), "interactive.action.buttons: must hold at least 1 button");
    let mut v = buttons(2);
    v["action"]["buttons"][1]["reply"]["title"] = json!("T0");
    refused(msg("interactive", v), "interactive.action.buttons[1].reply.title: must be unique");
    let mut v = buttons(2);
    v["action"]["buttons"][1]["reply"]["id"] = json!("b0");
    refused(msg("interactive", v), "interactive.action.buttons[1].reply.id: must be unique");
    let mut v = buttons(1);
    v["action"]["buttons"][0]["reply"]["title"] = json!(s(21));
    refused(msg("interactive", v), "interactive.action.buttons[0].reply.title: at most 20 characters");
    let mut v = buttons(1);
    v["action"]["buttons"][0]["reply"]["id"] = json!(s(257));
    refused(msg("interactive", v), "interactive.action.buttons[0].reply.id: at most 256 characters");
    let mut v = buttons(1);
    v["action"]["buttons"][0]["reply"]["id"] = json!(" b");
    refused(msg("interactive", v), "interactive.action.buttons[0].reply.id: must not start or end with spaces");
    let mut v = buttons(1);
    v["body"]["text"] = json!(s(1025));
    refused(msg("interactive", v), "interactive.body.text: at most 1,024 characters");
    let mut v = buttons(1);
    v["footer"] = json!({"text": s(61)});
    refused(msg("interactive", v), "interactive.footer.text: at most 60 characters");
    let mut v = buttons(1);
    v["header"] = json!({"type": "text", "text": s(61)});
    refused(msg("interactive", v), "interactive.header.text: at most 60 characters");
    let mut v = buttons(1);
    v.as_object_mut().unwrap().remove("body");
    refused(msg("interactive", v), "interactive.body: is required");
    // A media header.
    let mut v = buttons(1);
    v["header"] = json!({"type": "image", "image": {"link": "https://x.example/h.png"}});
    v["footer"] = json!({"text": "Thanks"});
    let b = graph(msg("interactive", v));
    assert_eq!(b["interactive"]["header"], json!({"type": "image", "image": {"link": "https://x.example/h.png"}}));
    assert_eq!(b["interactive"]["footer"], json!({"text": "Thanks"}));
}

#[test]
fn lists_of_10_rows_in_at_most_10_sections() {
    let b = graph(msg("interactive", list(&[4, 6])));
    let i = &b["interactive"];
    assert_eq!(i["type"], "list");
    assert_eq!(i["action"]["button"], "Options");
    assert_eq!(i["action"]["sections"][1]["rows"][5], json!({"id": "r10", "title": "Row 10"}));
    refused(msg("interactive", list(&[5, 6])), "interactive.action.sections[1].rows[5]: at most 10 rows in total");
    refused(msg("interactive", list(&[11])), "interactive.action.sections[0].rows[10]: at most 10 rows in total");
    refused(msg("interactive", list(&[])), "interactive.action.sections: must hold at least 1 section");
    let mut v = list(&[1, 1]);
    v["action"]["sections"][1].as_object_mut().unwrap().remove("title");
    refused(msg("interactive", v), "interactive.action.sections[1].title: is required when the list has more than one");
    let mut v = list(&[1]);
    v["action"]["sections"][0]["title"] = json!(s(25));
    refused(msg("interactive", v), "interactive.action.sections[0].title: at most 24 characters");
    let mut v = list(&[1]);
    v["action"]["sections"][0]["rows"][0] = json!({"id": s(201), "title": s(25), "description": s(73)});
    let e = errors(msg("interactive", v));
    for f in ["rows[0].id: at most 200", "rows[0].title: at most 24", "rows[0].description: at most 72"] {
        assert!(e.iter().any(|l| l.contains(f)), "{f} in {e:?}");
    }
    let mut v = list(&[2]);
    v["action"]["sections"][0]["rows"][1]["id"] = json!("r1");
    refused(msg("interactive", v), "interactive.action.sections[0].rows[1].id: must be unique");
    let mut v = list(&[1]);
    v["action"]["button"] = json!(s(21));
    refused(msg("interactive", v), "interactive.action.button: at most 20 characters");
    let mut v = list(&[1]);
    v["header"] = json!({"type": "image", "image": {"id": "1"}});
    refused(msg("interactive", v), "interactive.header.type: a list's header can only be text");
}

#[test]
fn cta_url_location_request_call_permission_and_voice_call() {
    let cta = json!({"type": "cta_url", "body": {"text": "Tickets"},
                     "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://x.example/d"}}});
    assert_eq!(
        graph(msg("interactive", cta.clone()))["interactive"],
        json!({"type": "cta_url", "body": {"text": "Tickets"},
               "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://x.example/d"}}})
    );
    let mut v = cta.clone();
    v["action"]["parameters"]["display_text"] = json!(s(21));
    v["action"]["parameters"]["url"] = json!("javascript:alert(1)");
    let e = errors(msg("interactive", v));
    assert!(e.iter().any(|l| l.starts_with("interactive.action.parameters.display_text: at most 20")), "{e:?}");
    assert!(e.iter().any(|l| l.starts_with("interactive.action.parameters.url: must be a public")), "{e:?}");

    let loc = json!({"type": "location_request_message", "body": {"text": "Where are you?"}});
    assert_eq!(
        graph(msg("interactive", loc))["interactive"],
        json!({"type": "location_request_message", "body": {"text": "Where are you?"}, "action": {"name": "send_location"}})
    );
    let perm = json!({"type": "call_permission_request", "body": {"text": "May we call you?"}});
    assert_eq!(
        graph(msg("interactive", perm.clone()))["interactive"],
        json!({"type": "call_permission_request", "body": {"text": "May we call you?"},
               "action": {"name": "call_permission_request"}})
    );
    let mut v = perm.clone();
    v["footer"] = json!({"text": "x"});
    v["header"] = json!({"type": "text", "text": "x"});
    let e = errors(msg("interactive", v));
    assert!(e.iter().any(|l| l.starts_with("interactive.header: call_permission_request messages take no header")));
    assert!(e.iter().any(|l| l.starts_with("interactive.footer: call_permission_request messages take a body only")));
    let mut v = perm;
    v["action"] = json!({"name": "send_location"});
    refused(msg("interactive", v), "interactive.action.name: must be call_permission_request");

    let call = json!({"type": "voice_call", "body": {"text": "Call us"},
                      "action": {"parameters": {"display_text": "Call on WhatsApp", "ttl_minutes": 100, "payload": "order-4471"}}});
    assert_eq!(
        graph(msg("interactive", call.clone()))["interactive"],
        json!({"type": "voice_call", "body": {"text": "Call us"},
               "action": {"name": "voice_call", "parameters": {"display_text": "Call on WhatsApp", "ttl_minutes": 100, "payload": "order-4471"}}})
    );
    assert_eq!(
        graph(msg("interactive", json!({"type": "voice_call", "body": {"text": "Call us"}})))["interactive"]["action"],
        json!({"name": "voice_call"})
    );
    let mut v = call;
    v["action"]["parameters"] = json!({"display_text": s(21), "ttl_minutes": 43_201, "payload": s(513)});
    let e = errors(msg("interactive", v));
    for f in ["display_text: at most 20", "ttl_minutes: must be 1 to 43200", "payload: at most 512"] {
        assert!(e.iter().any(|l| l.contains(f)), "{f} in {e:?}");
    }
    refused(
        msg("interactive", json!({"type": "carousel", "body": {"text": "x"}})),
        "interactive.type: unknown variant",
    );
}

fn defs() -> Vec<TemplateDef> {
    let d = |name: &str, lang: &str, components: Value, format: Option<&str>| TemplateDef {
        name: name.into(),
        language: lang.into(),
        status: "APPROVED".into(),
        category: Some("MARKETING".into()),
        components,
        parameter_format: format.map(String::from),
    };
    vec![
        d("order_ready", "pt_BR", json!([{"type": "BODY", "text": "Olá {{1}}, pedido {{2}}."}]), None),
        d("order_ready", "en_US", json!([{"type": "BODY", "text": "Hi {{1}}, order {{2}}."}]), None),
        d("welcome", "en", json!([{"type": "BODY", "text": "Welcome {{first_name}}"}]), Some("named")),
        d(
            "invoice",
            "en_US",
            json!([{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Hi {{1}}"}]),
            None,
        ),
        d(
            "sale",
            "en_US",
            json!([{"type": "BODY", "text": "Use {{1}}"},
                   {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"},
                                                   {"type": "URL", "text": "Shop", "url": "https://s.example/{{1}}"},
                                                   {"type": "COPY_CODE", "example": "SAVE20"}]}]),
            None,
        ),
    ]
}

fn template_body(t: Value) -> Result<Value, String> {
    let m = parse(&msg("template", t))
        .map_err(|e| e.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))?;
    request(&m, &defs()).map(|b| b.request["template"].clone()).map_err(|f| format!("{}: {}", f.field, f.message))
}

#[test]
fn templates_positional_named_headers_buttons_and_locale_fallback() {
    assert_eq!(
        template_body(json!({"name": "order_ready", "locale": "pt-PT", "parameters": ["Anna", 42]})).unwrap(),
        json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "42"}]}]})
    );
    assert_eq!(
        template_body(json!({"name": "order_ready", "locale": "de", "parameters": ["A", "1"]})).unwrap()["language"],
        json!({"code": "en_US"})
    );
    assert_eq!(
        template_body(json!({"name": "welcome", "parameters": {"first_name": "Anna"}})).unwrap()["components"],
        json!([{"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Anna"}]}])
    );
    assert_eq!(
        template_body(
            json!({"name": "invoice", "parameters": ["Anna"], "header": {"id": "555", "filename": "inv.pdf"}})
        )
        .unwrap()["components"][0],
        json!({"type": "header", "parameters": [{"type": "document", "document": {"id": "555", "filename": "inv.pdf"}}]})
    );
    assert_eq!(
        template_body(json!({"name": "sale", "parameters": ["SAVE20"], "buttons": [
            {"type": "copy_code", "code": "SAVE20"}, {"type": "url", "text": "p-123"},
            {"type": "quick_reply", "index": 0, "payload": "STOP"}]}))
        .unwrap()["components"],
        json!([
            {"type": "body", "parameters": [{"type": "text", "text": "SAVE20"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "STOP"}]},
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "p-123"}]},
            {"type": "button", "sub_type": "copy_code", "index": "2", "parameters": [{"type": "coupon_code", "coupon_code": "SAVE20"}]}
        ])
    );
    let e = template_body(json!({"name": "sale", "parameters": ["X"], "buttons": [{"type": "url", "text": "p"}]}));
    assert!(e.unwrap_err().starts_with("template.buttons: template \"sale\" (en_US) has a copy-code button"));
    let e = template_body(json!({"name": "sale", "parameters": ["X"], "buttons": [
        {"type": "url", "text": "p"}, {"type": "copy_code", "code": "A"}, {"type": "quick_reply", "index": 1, "payload": "x"}]}));
    assert!(e.unwrap_err().contains("no quick-reply button at index 1"));
    assert!(template_body(json!({"name": "sale", "buttons": [{"type": "copy_code", "code": s(16)}]}))
        .unwrap_err()
        .contains("template.buttons[0].code: at most 15 characters"));
    assert!(template_body(json!({"name": "nosuch"})).unwrap_err().starts_with("template.name: no template \"nosuch\""));
    assert!(template_body(json!({"name": "invoice", "parameters": ["A"]}))
        .unwrap_err()
        .starts_with("template.header:"));
    assert!(template_body(json!({"name": "order_ready", "parameters": ["A"]}))
        .unwrap_err()
        .starts_with("template.parameters:"));
    assert!(template_body(
        json!({"name": "invoice", "parameters": ["A"], "header": {"id": "1", "link": "https://x.example/a"}})
    )
    .unwrap_err()
    .contains("template.header: give either id or link"));
    assert!(!Kind::Template.is_free_form() && Kind::Reaction.is_free_form());
}
