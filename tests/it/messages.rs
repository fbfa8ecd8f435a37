//! The message API end to end, on both databases: every message type through `POST /api/v1/messages` to the
//! Graph emulator (which validates each as Meta documents) with the exact Graph body checked; media upload and
//! download through `/api/v1/media`; 422s naming the field and nothing queued; the 24-hour window refusal; a key
//! used outside its scope (403), a key limited to one phone of a WABA; idempotency; the OpenAPI description.

use crate::common;

use common::bridge::{Bridged, CUSTOMER, PNID, WABA};
use common::Db;
use serde_json::{json, Value};

const FROM: &str = "+5511930001234";
const TO: &str = "+5511987654321";

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, 8,
    6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1,
    0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

struct Api<'a> {
    b: &'a Bridged,
    key: String,
}

impl Api<'_> {
    async fn post(&self, body: Value) -> (u16, Value) {
        let r = self.b.app.http.post(self.b.app.url("/api/v1/messages")).bearer_auth(&self.key).json(&body).send();
        let r = r.await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON answer"))
    }

    async fn upload(&self, from: &str, name: &str, mime: &str, bytes: Vec<u8>) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()).mime_str(mime).expect("mime");
        let form = reqwest::multipart::Form::new().text("from", from.to_string()).part("file", part);
        let r = self.b.app.http.post(self.b.app.url("/api/v1/media")).bearer_auth(&self.key).multipart(form).send();
        let r = r.await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON answer"))
    }

    /// Sends `object` as a message of `kind` and returns the Graph body the emulator took.
    async fn sent(&self, kind: &str, object: Value) -> Value {
        let before = self.b.graph.sent_messages(PNID).len();
        let mut req = json!({"from": FROM, "to": TO, "type": kind});
        req[kind] = object;
        let (s, body) = self.post(req).await;
        assert_eq!(s, 202, "{kind}: {body}");
        assert_eq!(body["type"], kind);
        let id = body["id"].as_i64().expect("send id");
        self.b
            .until(&format!("the {kind} reaches Meta"), |b| async move { b.graph.sent_messages(PNID).len() > before })
            .await;
        let sent = self.b.graph.sent_messages(PNID).pop().expect("sent");
        assert_eq!(sent.body["biz_opaque_callback_data"], format!("wb:{id}"));
        self.b.until("accepted", |b| async move { b.send(id).await["state"] == "accepted" }).await;
        sent.body
    }

    /// The whole Graph body expected for a message to the customer.
    fn expected(kind: &str, object: Value, id_from: &Value) -> Value {
        let mut v = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": format!("+{CUSTOMER}"),
                           "type": kind, "biz_opaque_callback_data": id_from["biz_opaque_callback_data"]});
        v[kind] = object;
        v
    }

    async fn sends(&self) -> usize {
        self.b.app.admin("GET", "/sends", None).await.1.as_array().map_or(0, Vec::len)
    }
}

async fn every_type_reaches_meta_exactly(db: Db) {
    let b = Bridged::start(db).await;
    b.graph.add_template(
        WABA,
        json!({"name": "sale", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
               "components": [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi {{1}}, use {{2}}"},
                              {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"},
                                                              {"type": "URL", "text": "Shop", "url": "https://s.example/{{1}}"},
                                                              {"type": "COPY_CODE", "example": "SAVE20"}]}]}),
    );
    let (s, _) = b.app.admin("POST", "/wabas/1/templates/sync", None).await;
    assert_eq!(s, 202);
    b.until("templates synced", |b| async move {
        let (_, t) = b.app.admin("GET", "/wabas/1/templates", None).await;
        t.as_array().is_some_and(|a| a.iter().any(|t| t["name"] == "sale"))
    })
    .await;
    let api = Api { b: &b, key: b.api_key().await };
    let inbound = b.customer_text("oi").await;
    b.until("the customer's message is in", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;

    // Media: uploaded through wabridge to Meta's /{phone-number-id}/media, then downloadable through wabridge.
    let (s, up) = api.upload(FROM, "dot.png", "image/png", PNG.to_vec()).await;
    assert_eq!(s, 201, "{up}");
    assert_eq!(
        (up["type"].as_str(), up["mime_type"].as_str(), up["file_size"].as_u64()),
        (Some("image"), Some("image/png"), Some(PNG.len() as u64))
    );
    let media_id = up["id"].as_str().expect("media id").to_string();
    assert_eq!(b.graph.media(&media_id), Some((PNG.to_vec(), "image/png".to_string())));
    let r = b.app.http.get(b.app.url(&format!("/api/v1/media/{media_id}?from=%2B5511930001234"))).bearer_auth(&api.key);
    let r = r.send().await.expect("download");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), PNG);

    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "text",
            json!({"body": "Olá! https://x.example", "preview_url": true}),
            json!({"body": "Olá! https://x.example", "preview_url": true}),
        ),
        ("image", json!({"id": media_id, "caption": "Seu pedido"}), json!({"id": media_id, "caption": "Seu pedido"})),
        (
            "audio",
            json!({"link": "https://cdn.example/a.ogg", "voice": true}),
            json!({"link": "https://cdn.example/a.ogg", "voice": true}),
        ),
        (
            "video",
            json!({"link": "https://cdn.example/v.mp4", "caption": "Demo"}),
            json!({"link": "https://cdn.example/v.mp4", "caption": "Demo"}),
        ),
        (
            "document",
            json!({"link": "https://cdn.example/n.pdf", "filename": "nota.pdf", "caption": "Nota"}),
            json!({"link": "https://cdn.example/n.pdf", "filename": "nota.pdf", "caption": "Nota"}),
        ),
        ("sticker", json!({"link": "https://cdn.example/s.webp"}), json!({"link": "https://cdn.example/s.webp"})),
        (
            "location",
            json!({"latitude": -23.5614, "longitude": -46.6559, "name": "Loja", "address": "Av. Paulista, 1578"}),
            json!({"latitude": -23.5614, "longitude": -46.6559, "name": "Loja", "address": "Av. Paulista, 1578"}),
        ),
        (
            "contacts",
            json!([{"name": {"formatted_name": "Anna Lima", "first_name": "Anna"}, "phones": [{"phone": "+5511987650000", "type": "CELL"}]}]),
            json!([{"name": {"formatted_name": "Anna Lima", "first_name": "Anna"}, "phones": [{"phone": "+5511987650000", "type": "CELL"}]}]),
        ),
        ("reaction", json!({"message_id": inbound, "emoji": "👍"}), json!({"message_id": inbound, "emoji": "👍"})),
        ("reaction", json!({"message_id": inbound, "emoji": ""}), json!({"message_id": inbound, "emoji": ""})),
        (
            "interactive",
            json!({"type": "button", "header": {"type": "text", "text": "Pedido 4471"}, "body": {"text": "Confirma?"},
                               "footer": {"text": "Loja"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Sim"}},
                                                                                  {"type": "reply", "reply": {"id": "no", "title": "Não"}}]}}),
            json!({"type": "button", "header": {"type": "text", "text": "Pedido 4471"}, "body": {"text": "Confirma?"},
                               "footer": {"text": "Loja"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Sim"}},
                                                                                  {"type": "reply", "reply": {"id": "no", "title": "Não"}}]}}),
        ),
        (
            "interactive",
            json!({"type": "list", "body": {"text": "Entrega"}, "action": {"button": "Opções", "sections": [
                                  {"title": "Rápido", "rows": [{"id": "x", "title": "Expresso", "description": "1 dia"}]},
                                  {"title": "Normal", "rows": [{"id": "n", "title": "Normal"}]}]}}),
            json!({"type": "list", "body": {"text": "Entrega"}, "action": {"button": "Opções", "sections": [
                                  {"title": "Rápido", "rows": [{"id": "x", "title": "Expresso", "description": "1 dia"}]},
                                  {"title": "Normal", "rows": [{"id": "n", "title": "Normal"}]}]}}),
        ),
        (
            "interactive",
            json!({"type": "cta_url", "header": {"type": "image", "image": {"id": media_id}}, "body": {"text": "Datas"},
                               "action": {"parameters": {"display_text": "Ver datas", "url": "https://x.example/d"}}}),
            json!({"type": "cta_url", "header": {"type": "image", "image": {"id": media_id}}, "body": {"text": "Datas"},
                               "action": {"name": "cta_url", "parameters": {"display_text": "Ver datas", "url": "https://x.example/d"}}}),
        ),
        (
            "interactive",
            json!({"type": "location_request_message", "body": {"text": "Onde você está?"}}),
            json!({"type": "location_request_message", "body": {"text": "Onde você está?"}, "action": {"name": "send_location"}}),
        ),
        (
            "interactive",
            json!({"type": "call_permission_request", "body": {"text": "Podemos ligar?"}}),
            json!({"type": "call_permission_request", "body": {"text": "Podemos ligar?"}, "action": {"name": "call_permission_request"}}),
        ),
        (
            "interactive",
            json!({"type": "voice_call", "body": {"text": "Ligue para nós"},
                               "action": {"parameters": {"display_text": "Ligar", "ttl_minutes": 100, "payload": "order-4471"}}}),
            json!({"type": "voice_call", "body": {"text": "Ligue para nós"},
                               "action": {"name": "voice_call", "parameters": {"display_text": "Ligar", "ttl_minutes": 100, "payload": "order-4471"}}}),
        ),
        (
            "template",
            json!({"name": "order_ready", "locale": "pt-PT", "parameters": ["Anna", 77]}),
            json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": [
                         {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "77"}]}]}),
        ),
        (
            "template",
            json!({"name": "welcome", "locale": "en_GB", "parameters": {"first_name": "Anna", "code": "9"}}),
            json!({"name": "welcome", "language": {"code": "en"}, "components": [
                         {"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Anna"},
                                                         {"type": "text", "parameter_name": "code", "text": "9"}]}]}),
        ),
        (
            "template",
            json!({"name": "sale", "parameters": ["Anna", "SAVE20"], "header": {"id": media_id},
                            "buttons": [{"type": "quick_reply", "index": 0, "payload": "STOP"}, {"type": "url", "text": "p-1"},
                                        {"type": "copy_code", "code": "SAVE20"}]}),
            json!({"name": "sale", "language": {"code": "en_US"}, "components": [
                         {"type": "header", "parameters": [{"type": "image", "image": {"id": media_id}}]},
                         {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "SAVE20"}]},
                         {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "STOP"}]},
                         {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "p-1"}]},
                         {"type": "button", "sub_type": "copy_code", "index": "2", "parameters": [{"type": "coupon_code", "coupon_code": "SAVE20"}]}]}),
        ),
    ];
    for (kind, object, graph) in cases {
        let body = api.sent(kind, object).await;
        assert_eq!(body, Api::expected(kind, graph, &body), "{kind}");
    }
    // A reply quotes the customer's message.
    let body = api.sent("text", json!({"body": "Respondendo"})).await;
    assert!(body.get("context").is_none());
    let before = b.graph.sent_messages(PNID).len();
    let (s, r) =
        api.post(json!({"from": FROM, "to": TO, "type": "text", "text": {"body": "Sim"}, "reply_to": inbound})).await;
    assert_eq!(s, 202, "{r}");
    b.until("the reply reaches Meta", |b| async move { b.graph.sent_messages(PNID).len() > before }).await;
    assert_eq!(b.graph.sent_messages(PNID).pop().unwrap().body["context"], json!({"message_id": inbound}));
    b.stop().await;
}

async fn refusals_name_the_field_and_queue_nothing(db: Db) {
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let api = Api { b: &b, key: b.api_key().await };
    b.customer_text("oi").await;
    b.until("the customer's message is in", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    let sends = api.sends().await;
    let graph = b.graph.sent_messages(PNID).len();
    let buttons: Vec<Value> =
        (0..4).map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("B{i}")}})).collect();
    let rows: Vec<Value> = (0..11).map(|i| json!({"id": format!("r{i}"), "title": format!("R{i}")})).collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "x"}, "action": {"buttons": buttons}}}),
            "interactive.action.buttons[3]",
            "at most 3 buttons",
        ),
        (json!({"type": "text", "text": {"body": "x".repeat(4097)}}), "text.body", "at most 4,096 characters"),
        (
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "x".repeat(1025)},
                "action": {"buttons": [{"reply": {"id": "a", "title": "A"}}]}}}),
            "interactive.body.text",
            "at most 1,024 characters",
        ),
        (
            json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "x"},
                "action": {"button": "Go", "sections": [{"rows": rows}]}}}),
            "interactive.action.sections[0].rows[10]",
            "at most 10 rows",
        ),
        (json!({"type": "poll"}), "type", "unknown variant `poll`"),
        (json!({"type": "image", "image": {"link": "file:///etc/passwd"}}), "image.link", "http or https"),
        (json!({"type": "text", "text": {"body": "x"}, "to": "12345"}), "to", "international form"),
        (json!({"type": "template", "template": {"name": "nosuch"}}), "template.name", "nosuch"),
    ];
    for (mut req, field, needle) in cases {
        req["from"] = json!(FROM);
        if req.get("to").is_none() {
            req["to"] = json!(TO);
        }
        let (s, body) = api.post(req).await;
        assert_eq!(s, 422, "{body}");
        let f = &body["error"]["fields"][0];
        assert_eq!(f["field"], field, "{body}");
        assert!(f["message"].as_str().unwrap().contains(needle), "{needle}: {body}");
    }
    // Uploads: a type Meta does not take, a file over its type's limit, a malformed number.
    let (s, body) = api.upload(FROM, "a.gif", "image/gif", vec![1; 10]).await;
    assert_eq!((s, body["error"]["fields"][0]["field"].as_str()), (422, Some("file")), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("\"image/gif\" is not a type WhatsApp takes"),
        "{body}"
    );
    let (s, body) = api.upload(FROM, "big.jpg", "image/jpeg", vec![1; 5 * 1024 * 1024 + 1]).await;
    assert_eq!((s, body["error"]["fields"][0]["field"].as_str()), (422, Some("file")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 5 MB"), "{body}");
    let (s, body) = api.upload("5511930001234", "a.png", "image/png", PNG.to_vec()).await;
    assert_eq!((s, body["error"]["fields"][0]["field"].as_str()), (422, Some("from")), "{body}");

    // Outside the window: a customer who never wrote gets a template only.
    let (s, body) =
        api.post(json!({"from": FROM, "to": "+5511987650000", "type": "text", "text": {"body": "Olá"}})).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["code"], "outside_window");
    assert!(body["error"]["message"].as_str().unwrap().contains("template"), "{body}");
    let (s, body) = api
        .post(json!({"from": FROM, "to": "+5511987650000", "type": "template", "template": {"name": "hello", "locale": "en_US"}}))
        .await;
    assert_eq!(s, 202, "{body}");
    b.until("the template reaches Meta", |b| async move { b.graph.sent_messages(PNID).len() == graph + 1 }).await;

    // A key limited to another WABA may not send from this number: 403 naming `from`.
    let (s, other) = b.app.admin("POST", "/wabas", Some(json!({"waba_id": "999000111222333", "app": 1}))).await;
    assert_eq!(s, 201, "{other}");
    let (s, k) = b.app.admin("POST", "/api-keys", Some(json!({"name": "other", "waba": other["id"]}))).await;
    assert_eq!(s, 201, "{k}");
    let scoped = Api { b: &b, key: k["key"].as_str().unwrap().to_string() };
    let (s, body) = scoped.post(json!({"from": FROM, "to": TO, "type": "text", "text": {"body": "x"}})).await;
    assert_eq!((s, body["error"]["fields"][0]["field"].as_str()), (403, Some("from")), "{body}");
    let (s, body) = scoped.upload(FROM, "a.png", "image/png", PNG.to_vec()).await;
    assert_eq!(s, 403, "{body}");
    let r = b.app.http.get(b.app.url("/api/v1/media/123?from=%2B5511930001234")).bearer_auth(&scoped.key).send().await;
    assert_eq!(r.unwrap().status(), 403);
    let (s, _) = Api { b: &b, key: "wbk_forged".into() }.post(json!({})).await;
    assert_eq!(s, 401);
    assert_eq!(api.sends().await, sends + 1, "only the template was queued");

    // The same idempotency key sends once.
    let req =
        json!({"from": FROM, "to": TO, "type": "text", "text": {"body": "uma vez"}, "idempotency_key": "order-1"});
    let (s1, first) = api.post(req.clone()).await;
    let (s2, again) = api.post(req).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!((first["id"].clone(), first["duplicate"].clone()), (again["id"].clone(), json!(false)));
    assert_eq!(again["duplicate"], true);
    b.settle().await;
    let texts = b.graph.sent_messages(PNID).iter().filter(|m| m.body["text"]["body"] == "uma vez").count();
    assert_eq!(texts, 1);

    // Described in the OpenAPI document under the API-key scheme, with the required fields.
    let doc: Value = reqwest::get(b.app.url("/admin/api/v1/openapi.json")).await.unwrap().json().await.unwrap();
    for (path, method) in [("/api/v1/messages", "post"), ("/api/v1/media", "post"), ("/api/v1/media/{id}", "get")] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["security"], json!([{"api_key": []}]), "{path}");
    }
    let input = &doc["components"]["schemas"]["MessageInput"];
    assert_eq!(input["required"], json!(["from", "to", "type"]), "{input}");
    assert!(doc["paths"]["/api/v1/media"]["post"]["requestBody"]["content"]["multipart/form-data"].is_object());
    b.stop().await;
}

/// A key limited to phone A sends from A, gets 403 naming `from` for phone B of the same WABA, and reads A's
/// history only; its phones are checked when it is made and shown in the listing.
async fn a_key_limited_to_a_phone_uses_that_phone_only(db: Db) {
    const FROM_B: &str = "+5511930005678";
    const PNID_B: &str = "106540352249999";
    let b = Bridged::start(db).await;
    b.templates_synced().await;
    let waba = b.phone().await["waba"].as_i64().expect("waba id");
    b.graph.add_number(PNID_B, "5511930005678", WABA);
    let (s, phone_b) =
        b.app.admin("POST", "/phones", Some(json!({"number": FROM_B, "phone_number_id": PNID_B, "waba": waba}))).await;
    assert_eq!(s, 201, "{phone_b}");
    let (s, other) = b.app.admin("POST", "/wabas", Some(json!({"waba_id": "999000111222333", "app": 1}))).await;
    assert_eq!(s, 201, "{other}");

    // Each phone must exist (and belong to the key's WABA when one is given): 422 naming `phones[i]`.
    let refusals = [
        (json!({"name": "a", "phones": [FROM, "+5511930000000"]}), "phones[1]"),
        (json!({"name": "a", "phones": [b.phone_id, 987654]}), "phones[1]"),
        (json!({"name": "a", "phones": ["12x"]}), "phones[0]"),
        (json!({"name": "a", "waba": other["id"], "phones": [FROM]}), "phones[0]"),
    ];
    for (req, field) in refusals {
        let (s, body) = b.app.admin("POST", "/api-keys", Some(req)).await;
        assert_eq!((s, body["error"]["fields"][0]["field"].as_str()), (422, Some(field)), "{body}");
    }
    let (s, k) = b.app.admin("POST", "/api-keys", Some(json!({"name": "a", "waba": waba, "phones": [FROM]}))).await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(k["phones"], json!([b.phone_id]), "{k}");
    let (_, keys) = b.app.admin("GET", "/api-keys", None).await;
    let listed = keys.as_array().unwrap().iter().find(|l| l["id"] == k["id"]).expect("listed").clone();
    assert_eq!(listed["phones"], json!([b.phone_id]), "{keys}");

    let scoped = Api { b: &b, key: k["key"].as_str().unwrap().to_string() };
    let all = Api { b: &b, key: b.api_key().await };
    b.customer_text("oi").await;
    b.until("the customer's message is in", |b| async move { !b.bitrix.chat_messages().is_empty() }).await;
    let (s, body) = scoped.post(json!({"from": FROM, "to": TO, "type": "text", "text": {"body": "de A"}})).await;
    assert_eq!(s, 202, "{body}");
    let (s, body) = scoped.post(json!({"from": FROM_B, "to": TO, "type": "text", "text": {"body": "de B"}})).await;
    assert_eq!((s, body["error"]["fields"][0]["field"].as_str()), (403, Some("from")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("limited to other numbers"), "{body}");
    let template =
        json!({"from": FROM_B, "to": TO, "type": "template", "template": {"name": "hello", "locale": "en_US"}});
    let (s, body) = all.post(template).await;
    assert_eq!(s, 202, "a key without limits sends from B: {body}");

    // History: the unlimited key sees both phones, the limited one only A.
    let history = |key: String| {
        let b = &b;
        async move {
            let r = b.app.http.get(b.app.url("/api/v1/messages?limit=100")).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            page["data"].as_array().unwrap().iter().map(|m| m["phone"].as_i64().unwrap()).collect::<Vec<_>>()
        }
    };
    let phone_b = phone_b["id"].as_i64().unwrap();
    let seen = history(all.key.clone()).await;
    assert!(seen.contains(&b.phone_id) && seen.contains(&phone_b), "{seen:?}");
    let seen = history(scoped.key.clone()).await;
    assert!(seen.len() >= 2 && seen.iter().all(|&p| p == b.phone_id), "{seen:?}");
    let r = b.app.http.get(b.app.url("/api/v1/conversations?phone=%2B5511930005678")).bearer_auth(&scoped.key).send();
    assert_eq!(r.await.unwrap().status(), 403);
    b.stop().await;
}

both_databases!(every_type_reaches_meta_exactly);
both_databases!(refusals_name_the_field_and_queue_nothing);
both_databases!(a_key_limited_to_a_phone_uses_that_phone_only);
