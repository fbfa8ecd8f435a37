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

    const WABA: &str = "102290129340398";
    const USER: &str = "5511987654321";
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
}
