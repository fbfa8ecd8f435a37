//! Builders for webhook POST bodies shaped as Meta sends them, for the Meta emulator (sandbox) and tests.
//!
//! Timestamps in messages and statuses are strings of unix seconds; `entry[].time` of template webhooks is an
//! integer. Serialise with [`to_wire`] and sign exactly those bytes.
//!
//! Key order: `serde_json::Value` objects are sorted by key (unless serde_json's `preserve_order` feature is on), so
//! `"field"` comes before `"value"`; Meta's own order differs, which is harmless because receivers must not depend on it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// `href` of error objects in current payloads.
pub const ERROR_HREF: &str = "/documentation/business-messaging/whatsapp/support/error-codes";

/// `{"object":"whatsapp_business_account","entry":[{"id":waba_id,"changes":[{"value":value,"field":field}]}]}`.
pub fn envelope(waba_id: &str, field: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": field}]}]
    })
}

/// A `messages` value carrying inbound messages. `contacts` is left out when empty (the `system` message shape).
pub fn messages_value(
    display_phone_number: &str,
    phone_number_id: &str,
    contacts: Vec<Value>,
    messages: Vec<Value>,
) -> Value {
    let mut v = base_value(display_phone_number, phone_number_id);
    if !contacts.is_empty() {
        v.insert("contacts".into(), Value::Array(contacts));
    }
    v.insert("messages".into(), Value::Array(messages));
    Value::Object(v)
}

/// A `messages` value carrying outbound status updates.
pub fn statuses_value(display_phone_number: &str, phone_number_id: &str, statuses: Vec<Value>) -> Value {
    let mut v = base_value(display_phone_number, phone_number_id);
    v.insert("statuses".into(), Value::Array(statuses));
    Value::Object(v)
}

/// A `messages` value carrying value-level (asynchronous) errors, e.g. from [`error`].
pub fn errors_value(display_phone_number: &str, phone_number_id: &str, errors: Vec<Value>) -> Value {
    let mut v = base_value(display_phone_number, phone_number_id);
    v.insert("errors".into(), Value::Array(errors));
    Value::Object(v)
}

fn base_value(display_phone_number: &str, phone_number_id: &str) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("messaging_product".into(), json!("whatsapp"));
    v.insert(
        "metadata".into(),
        json!({"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}),
    );
    v
}

/// `contacts[]` item: `{"profile":{"name":name},"wa_id":wa_id}`.
pub fn contact(wa_id: &str, name: &str) -> Value {
    json!({"profile": {"name": name}, "wa_id": wa_id})
}

/// An error object `{code,title,message,error_data:{details},href}` (`message` repeats `title`, as Meta does).
pub fn error(code: i64, title: &str, details: &str) -> Value {
    json!({"code": code, "title": title, "message": title, "error_data": {"details": details}, "href": ERROR_HREF})
}

/// Any inbound message: `{"from","id","timestamp":"<ts>","type":type_name, type_name: object}`.
/// Use it for shapes the specific builders do not cover (e.g. media with `sha256`/`url`).
pub fn message(from: &str, wamid: &str, ts: i64, type_name: &str, object: Value) -> Value {
    let mut m = Map::new();
    m.insert("from".into(), json!(from));
    m.insert("id".into(), json!(wamid));
    m.insert("timestamp".into(), json!(ts.to_string()));
    m.insert("type".into(), json!(type_name));
    m.insert(type_name.into(), object);
    Value::Object(m)
}

/// Adds `context{from,id}` (a reply to, or a tap on, the business message `quoted_wamid`).
pub fn with_context(mut msg: Value, business_number: &str, quoted_wamid: &str) -> Value {
    if let Some(m) = msg.as_object_mut() {
        m.insert("context".into(), json!({"from": business_number, "id": quoted_wamid}));
    }
    msg
}

/// Inbound text.
pub fn text_message(from: &str, wamid: &str, ts: i64, body: &str) -> Value {
    message(from, wamid, ts, "text", json!({"body": body}))
}

fn media_object(media_id: &str, mime: &str, extra: &[(&str, Option<Value>)]) -> Value {
    let mut o = Map::new();
    o.insert("mime_type".into(), json!(mime));
    o.insert("id".into(), json!(media_id));
    for (k, v) in extra {
        if let Some(v) = v {
            o.insert((*k).into(), v.clone());
        }
    }
    Value::Object(o)
}

/// Inbound image. `sha256`/`url` are not set (the builder has no bytes); add them with [`message`] if needed.
pub fn image_message(from: &str, wamid: &str, ts: i64, media_id: &str, mime: &str, caption: Option<&str>) -> Value {
    message(from, wamid, ts, "image", media_object(media_id, mime, &[("caption", caption.map(|c| json!(c)))]))
}

/// Inbound video.
pub fn video_message(from: &str, wamid: &str, ts: i64, media_id: &str, mime: &str, caption: Option<&str>) -> Value {
    message(from, wamid, ts, "video", media_object(media_id, mime, &[("caption", caption.map(|c| json!(c)))]))
}

/// Inbound audio; `voice` is true for voice notes.
pub fn audio_message(from: &str, wamid: &str, ts: i64, media_id: &str, mime: &str, voice: bool) -> Value {
    message(from, wamid, ts, "audio", media_object(media_id, mime, &[("voice", Some(json!(voice)))]))
}

/// Inbound document.
pub fn document_message(
    from: &str,
    wamid: &str,
    ts: i64,
    media_id: &str,
    mime: &str,
    filename: &str,
    caption: Option<&str>,
) -> Value {
    let extra = [("filename", Some(json!(filename))), ("caption", caption.map(|c| json!(c)))];
    message(from, wamid, ts, "document", media_object(media_id, mime, &extra))
}

/// Inbound sticker (`image/webp`).
pub fn sticker_message(from: &str, wamid: &str, ts: i64, media_id: &str, animated: bool) -> Value {
    message(from, wamid, ts, "sticker", media_object(media_id, "image/webp", &[("animated", Some(json!(animated)))]))
}

/// Inbound location.
pub fn location_message(
    from: &str,
    wamid: &str,
    ts: i64,
    latitude: f64,
    longitude: f64,
    name: Option<&str>,
    address: Option<&str>,
) -> Value {
    let mut o = Map::new();
    o.insert("latitude".into(), json!(latitude));
    o.insert("longitude".into(), json!(longitude));
    if let Some(n) = name {
        o.insert("name".into(), json!(n));
    }
    if let Some(a) = address {
        o.insert("address".into(), json!(a));
    }
    message(from, wamid, ts, "location", Value::Object(o))
}

/// One shared contact card for [`contacts_message`]: `{"name":{"formatted_name"},"phones":[{"phone","wa_id"?,"type":"CELL"}]}`.
pub fn shared_contact(formatted_name: &str, phone: &str, wa_id: Option<&str>) -> Value {
    let mut p = Map::new();
    p.insert("phone".into(), json!(phone));
    if let Some(w) = wa_id {
        p.insert("wa_id".into(), json!(w));
    }
    p.insert("type".into(), json!("CELL"));
    json!({"name": {"formatted_name": formatted_name}, "phones": [Value::Object(p)]})
}

/// Inbound shared contacts (`contacts` is an array of cards, e.g. from [`shared_contact`]).
pub fn contacts_message(from: &str, wamid: &str, ts: i64, cards: Vec<Value>) -> Value {
    message(from, wamid, ts, "contacts", Value::Array(cards))
}

/// Tap on a reply button of the business interactive message `quoted_wamid`.
pub fn button_reply_message(
    from: &str,
    wamid: &str,
    ts: i64,
    business_number: &str,
    quoted_wamid: &str,
    button_id: &str,
    title: &str,
) -> Value {
    let obj = json!({"type": "button_reply", "button_reply": {"id": button_id, "title": title}});
    with_context(message(from, wamid, ts, "interactive", obj), business_number, quoted_wamid)
}

/// Choice of a row in the business list message `quoted_wamid`.
#[allow(clippy::too_many_arguments)]
pub fn list_reply_message(
    from: &str,
    wamid: &str,
    ts: i64,
    business_number: &str,
    quoted_wamid: &str,
    row_id: &str,
    title: &str,
    description: Option<&str>,
) -> Value {
    let mut reply = Map::new();
    reply.insert("id".into(), json!(row_id));
    reply.insert("title".into(), json!(title));
    if let Some(d) = description {
        reply.insert("description".into(), json!(d));
    }
    let obj = json!({"type": "list_reply", "list_reply": Value::Object(reply)});
    with_context(message(from, wamid, ts, "interactive", obj), business_number, quoted_wamid)
}

/// WhatsApp Flows completion (`nfm_reply`); `response_json` is a JSON document as a string.
pub fn flow_reply_message(
    from: &str,
    wamid: &str,
    ts: i64,
    business_number: &str,
    quoted_wamid: &str,
    response_json: &str,
) -> Value {
    let obj = json!({"type": "nfm_reply",
        "nfm_reply": {"name": "flow", "body": "Sent", "response_json": response_json}});
    with_context(message(from, wamid, ts, "interactive", obj), business_number, quoted_wamid)
}

/// Tap on a quick-reply button of the template message `quoted_wamid` (`type: "button"`).
pub fn button_message(
    from: &str,
    wamid: &str,
    ts: i64,
    business_number: &str,
    quoted_wamid: &str,
    payload: &str,
    text: &str,
) -> Value {
    let obj = json!({"payload": payload, "text": text});
    with_context(message(from, wamid, ts, "button", obj), business_number, quoted_wamid)
}

/// Reaction to `target_wamid`; `None` is an un-react (the `emoji` field is left out).
pub fn reaction_message(from: &str, wamid: &str, ts: i64, target_wamid: &str, emoji: Option<&str>) -> Value {
    let mut o = Map::new();
    o.insert("message_id".into(), json!(target_wamid));
    if let Some(e) = emoji {
        o.insert("emoji".into(), json!(e));
    }
    message(from, wamid, ts, "reaction", Value::Object(o))
}

/// One `order.product_items[]` entry.
pub fn order_item(product_retailer_id: &str, quantity: i64, item_price: f64, currency: &str) -> Value {
    json!({"product_retailer_id": product_retailer_id, "quantity": quantity, "item_price": item_price, "currency": currency})
}

/// Inbound cart order; `text` is an empty string when the user wrote nothing, as Meta sends it.
pub fn order_message(from: &str, wamid: &str, ts: i64, catalog_id: &str, text: &str, items: Vec<Value>) -> Value {
    message(from, wamid, ts, "order", json!({"catalog_id": catalog_id, "text": text, "product_items": items}))
}

/// `user_changed_number` system message. Wrap it with [`messages_value`] and no contacts.
pub fn system_message(from: &str, wamid: &str, ts: i64, body: &str, new_wa_id: &str) -> Value {
    message(from, wamid, ts, "system", json!({"body": body, "wa_id": new_wa_id, "type": "user_changed_number"}))
}

/// `unsupported` message with Meta's 131051 error.
pub fn unsupported_message(from: &str, wamid: &str, ts: i64) -> Value {
    json!({
        "from": from,
        "id": wamid,
        "timestamp": ts.to_string(),
        "type": "unsupported",
        "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."}}]
    })
}

/// The customer edited their message `original_wamid` to say `new_text` (`type: "edit"`, Meta's "Edit messages
/// webhook reference"): the new content is a whole message object under `edit.message`.
pub fn edit_message(from: &str, wamid: &str, ts: i64, original_wamid: &str, new_text: &str) -> Value {
    let inner = json!({"context": {"from": from, "id": original_wamid}, "type": "text", "text": {"body": new_text}});
    message(from, wamid, ts, "edit", json!({"original_message_id": original_wamid, "message": inner}))
}

/// The customer deleted their message `original_wamid` (`type: "revoke"`, Meta's "Revoke messages webhook
/// reference").
pub fn revoke_message(from: &str, wamid: &str, ts: i64, original_wamid: &str) -> Value {
    message(from, wamid, ts, "revoke", json!({"original_message_id": original_wamid}))
}

/// The customer's answer to the call permission request `request_wamid` (`interactive.call_permission_reply`,
/// calling-outbound.md §4.1): `accept` with `expiration_timestamp` (unix seconds) when given, or `reject`.
pub fn call_permission_reply_message(
    from: &str,
    wamid: &str,
    ts: i64,
    business_number: &str,
    request_wamid: &str,
    accept: bool,
    expiration_timestamp: Option<i64>,
) -> Value {
    let mut reply = Map::new();
    reply.insert("response".into(), json!(if accept { "accept" } else { "reject" }));
    if let Some(t) = expiration_timestamp {
        reply.insert("expiration_timestamp".into(), json!(t));
    }
    reply.insert("response_source".into(), json!("user_action"));
    let obj = json!({"type": "call_permission_reply", "call_permission_reply": Value::Object(reply)});
    with_context(message(from, wamid, ts, "interactive", obj), business_number, request_wamid)
}

/// `statuses[]` item (v24+ shape, no `conversation`).
pub fn status(wamid: &str, status: &str, ts: i64, recipient_id: &str) -> Value {
    json!({"id": wamid, "status": status, "timestamp": ts.to_string(), "recipient_id": recipient_id})
}

/// Adds `pricing` (`PMP`; `billable` is true only for `pricing_type == "regular"`).
/// Meta puts it on `sent` and on one of `delivered`/`read`.
pub fn with_pricing(mut status: Value, pricing_type: &str, category: &str) -> Value {
    if let Some(s) = status.as_object_mut() {
        s.insert(
            "pricing".into(),
            json!({"billable": pricing_type == "regular", "pricing_model": "PMP", "type": pricing_type,
                "category": category}),
        );
    }
    status
}

/// `failed` status with one error.
pub fn failed_status(wamid: &str, ts: i64, recipient_id: &str, code: i64, title: &str, details: &str) -> Value {
    let mut s = status(wamid, "failed", ts, recipient_id);
    if let Some(o) = s.as_object_mut() {
        o.insert("errors".into(), json!([error(code, title, details)]));
    }
    s
}

/// Full `message_template_status_update` envelope. `template_id` is a JSON integer and `entry[].time` an integer
/// (now), as Meta sends them. `language` is written as given (Meta's example uses `en-US`). `reason` is `NONE`.
pub fn template_status_update(waba_id: &str, template_id: u64, name: &str, language: &str, event: &str) -> Value {
    let value = json!({
        "event": event,
        "message_template_id": template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": "NONE"
    });
    let mut env = envelope(waba_id, "message_template_status_update", value);
    if let Some(entry) = env.pointer_mut("/entry/0").and_then(Value::as_object_mut) {
        entry.insert("time".into(), json!(unix_now()));
    }
    env
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh, process-unique message id: `"wamid."` + 44 base64 characters (32 bytes).
pub fn new_wamid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let state = RandomState::new();
    let mut bytes = Vec::with_capacity(32);
    for round in 0u8..3 {
        bytes.extend_from_slice(&state.hash_one((nanos, n, round, std::process::id())).to_be_bytes());
    }
    // The counter makes ids unique within the process whatever the hashes give.
    bytes.extend_from_slice(&n.to_be_bytes());
    format!("wamid.{}", base64(&bytes))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serialises JSON compactly the way Meta puts it on the wire: every non-ASCII character written as \uXXXX with
/// lowercase hex; characters outside the BMP as a UTF-16 surrogate pair (e.g. 😀 -> \ud83d\ude00). Sign exactly these bytes.
///
/// ASCII control characters use the short escapes (`\n`, `\t`, ...) or `\u00XX`; `/` is not escaped.
pub fn to_wire(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            // Printable ASCII and DEL go out as they are (as serde_json writes them).
            c if c.is_ascii() && (!c.is_ascii_control() || c == '\u{7f}') => out.push(c as u8),
            // Other control characters and all non-ASCII: \uXXXX, UTF-16 surrogate pairs beyond the BMP.
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[usize::from((*unit >> shift) & 0xf)]);
                    }
                }
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::webhook::{self, ChangeValue, Content, Interactive, MessagesValue, OrderItem, StatusKind};

    const WABA: &str = "102290129340398";
    const DISPLAY: &str = "5511930001234";
    const PNID: &str = "106540352242922";
    const USER: &str = "5511987654321";

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

    const TS: i64 = 1_767_800_000;

    #[test]
    fn to_wire_escapes_like_meta() {
        let v = json!({"a": "é😀"});
        let wire = to_wire(&v);
        assert_eq!(wire, br#"{"a":"\u00e9\ud83d\ude00"}"#.to_vec());
        assert_eq!(serde_json::from_slice::<Value>(&wire).unwrap(), v);
        assert!(wire.is_ascii());
    }

    #[test]
    fn to_wire_matches_serde_json_on_ascii_and_round_trips() {
        let v = json!({"s": "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{7f}", "n": [1, -2, 3.5, 1e300, 0.1, u64::MAX],
            "b": [true, false, null], "o": {"z": {}, "a": []}, "ü": "Olá, مرحبا 中文 𝄞 👍🏽"});
        let wire = to_wire(&v);
        assert!(wire.is_ascii());
        assert_eq!(serde_json::from_slice::<Value>(&wire).unwrap(), v);
        let ascii_only = json!({"s": "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}", "n": [1, -2, 3.5, 1e300, 0.1, u64::MAX]});
        assert_eq!(to_wire(&ascii_only), serde_json::to_vec(&ascii_only).unwrap());
        let text = String::from_utf8(wire).unwrap();
        assert!(text.contains(r#""\u00fc":"Ol\u00e1, \u0645"#));
        assert!(text.contains(r"\ud834\udd1e \ud83d\udc4d\ud83c\udffd"));
        assert!(text.contains(r"\u0001"));
    }

    #[test]
    fn new_wamid_is_unique_and_base64_looking() {
        let ids: std::collections::HashSet<String> = (0..2000).map(|_| new_wamid()).collect();
        assert_eq!(ids.len(), 2000);
        for id in &ids {
            let rest = id.strip_prefix("wamid.").unwrap();
            assert_eq!(rest.len(), 44);
            assert!(rest.ends_with('=') && !rest.ends_with("=="));
            assert!(rest.trim_end_matches('=').chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'));
        }
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn envelope_shape() {
        let v = envelope(WABA, "messages", json!({"x": 1}));
        assert_eq!(
            v,
            json!({"object":"whatsapp_business_account","entry":[{"id":WABA,"changes":[{"value":{"x":1},"field":"messages"}]}]})
        );
        let t = text_message(USER, "wamid.1", TS, "hi");
        assert_eq!(t, json!({"from":USER,"id":"wamid.1","timestamp":"1767800000","type":"text","text":{"body":"hi"}}));
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
        let c = content_of(contacts_message(
            USER,
            &new_wamid(),
            TS,
            vec![shared_contact("Ana", "+55 11 9", Some("55119"))],
        ));
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
        assert_eq!(
            (t.name.as_str(), t.language.as_str(), t.event.as_str()),
            ("order_confirmation", "en_US", "APPROVED")
        );
        assert_eq!(t.reason.as_deref(), Some("NONE"));
    }
}
