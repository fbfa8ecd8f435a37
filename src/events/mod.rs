//! Event webhooks to tenants, following the Standard Webhooks specification (<https://www.standardwebhooks.com>).
//!
//! A fact (an inbound message stored, a status applied, a send failed, a call started or ended, a template's
//! status changed) is turned into an event by [`emit_on`] in the transaction that stores the fact: the event, one
//! delivery per subscriber and each delivery's `event.deliver` job commit with it, so a fact stored once is one
//! event, and an event is delivered at least once. Each delivery is a signed POST ([`sign`]): headers
//! `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (unix seconds of the attempt) and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed by the subscription's
//! `whsec_…` secret). Retries follow [`retry_delay`] until [`deliver`] gives up after the retry window.
//!
//! Signing is ours (HMAC-SHA256 and base64, which the product already has); the `standardwebhooks` crate was
//! judged and not taken: it adds the `time` crate, a second `base64` version and `hmac-sha256` for three lines,
//! and it has no delivery side. The end-to-end tests verify our signatures with the published Python
//! `standardwebhooks` package, not with this code.

pub mod calls;
pub mod deliver;
pub mod subscriptions;
pub mod url;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::{Any, Transaction};

use crate::jobs::catalogue::EventDeliver;
use crate::jobs::{Enqueue, Task};
use crate::meta::webhook::{InboundMessage, MessagesValue, Status, TemplateStatusUpdate};
use crate::store::events as stored;
use crate::store::{now_ms, rfc3339, StoreError};

/// The kinds of event a subscription can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A customer's message was received (stored once per `wamid`).
    MessageReceived,
    /// Meta reported a status of a message the business sent (`sent`, `delivered`, `read`, `failed`, ...).
    MessageStatus,
    /// A send was given up on: refused by Meta, or failed permanently.
    SendFailed,
    /// A call through the SIP edge began (the INVITE arrived).
    CallStarted,
    /// A call through the SIP edge ended (a BYE, or a final refusal).
    CallEnded,
    /// A message template's status changed at Meta (approved, rejected, paused, ...).
    TemplateStatus,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::MessageReceived,
        EventType::MessageStatus,
        EventType::SendFailed,
        EventType::CallStarted,
        EventType::CallEnded,
        EventType::TemplateStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageReceived => "message.received",
            EventType::MessageStatus => "message.status",
            EventType::SendFailed => "send.failed",
            EventType::CallStarted => "call.started",
            EventType::CallEnded => "call.ended",
            EventType::TemplateStatus => "template.status",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The event types of a subscription request: known names or `*`, at least one, no repeats. The error names
/// the bad entry.
pub fn parse_types(types: &[String]) -> Result<Vec<String>, String> {
    if types.is_empty() {
        return Err(format!("give at least one event type: * or {}", known_types()));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if t != "*" && EventType::parse(t).is_none() {
            return Err(format!("event_types[{i}]: unknown event type {t:?}; known: * or {}", known_types()));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn known_types() -> String {
    EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("the signing secret is not base64: {e}"))
}

/// The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Waits between attempts, after the attempt of that number failed (Standard Webhooks' suggested schedule):
/// 5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h. With the default 24-hour window ([`gives_up`]) that is 8
/// attempts, the last about 27.5 hours after the first.
pub const SCHEDULE: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The wait after failed attempt number `attempt` (1-based), with jitter: between the scheduled wait and 20 %
/// more, so a burst of failures to one endpoint does not come back at one instant (and the schedule's total is a
/// floor).
pub fn retry_delay(attempt: i64, rng: &mut impl Rng) -> Duration {
    let i = (attempt.max(1) as usize - 1).min(SCHEDULE.len() - 1);
    let base = SCHEDULE[i];
    base + base.mul_f64(rng.gen_range(0.0..=0.2))
}

/// True when a delivery whose first attempt was at `first_attempt_at` is given up after a failure at `now`: the
/// retry window (`events_retry_window_seconds`) has passed. Never before it, so every delivery is tried for at
/// least the whole window.
pub fn gives_up(first_attempt_at: i64, now: i64, window: Duration) -> bool {
    now.saturating_sub(first_attempt_at) >= window.as_millis() as i64
}

/// Records an event in the caller's transaction and queues its delivery to every subscriber. `waba_id` decides
/// who may see it (a subscription of another WABA, or of a key scoped to another WABA, does not); `phone_id` is
/// kept with it, and a key limited to some phones sees only events of those. Returns the event id, or `None` when nobody subscribed (nothing is stored then).
pub async fn emit_on(
    tx: &mut Transaction<'static, Any>,
    event_type: EventType,
    waba_id: Option<i64>,
    phone_id: Option<i64>,
    data: Value,
) -> Result<Option<String>, StoreError> {
    let subscribers = stored::subscribers_on(tx, event_type.as_str(), waba_id, phone_id).await?;
    emit_to(tx, event_type, waba_id, phone_id, data, &subscribers).await
}

/// Stores the event and queues its deliveries to `subscribers` (nothing when there are none).
async fn emit_to(
    tx: &mut Transaction<'static, Any>,
    event_type: EventType,
    waba_id: Option<i64>,
    phone_id: Option<i64>,
    data: Value,
    subscribers: &[i64],
) -> Result<Option<String>, StoreError> {
    if subscribers.is_empty() {
        return Ok(None);
    }
    let id = format!("msg_{}", crate::seal::random_token(27));
    let body = json!({"type": event_type.as_str(), "timestamp": rfc3339(now_ms()), "data": data}).to_string();
    let event = stored::NewEvent { id: &id, event_type: event_type.as_str(), waba_id, phone_id, body: &body };
    stored::insert_event_on(tx, &event).await?;
    for &sub in subscribers {
        let delivery_id = stored::insert_delivery_on(tx, &id, sub).await?;
        let job = enqueue_delivery(&mut **tx, delivery_id).await?;
        stored::set_delivery_job_on(&mut **tx, delivery_id, job).await?;
    }
    Ok(Some(id))
}

/// What [`emit_for_phone_cached`] looked up once per transaction: each phone's WABA and number, and the
/// subscribers per event type and phone. Valid for one transaction only (a batch of webhooks): subscriptions
/// made meanwhile count from the next one.
#[derive(Debug, Default)]
pub struct EmitCache {
    phones: HashMap<i64, Option<(i64, String)>>,
    subscribers: HashMap<(EventType, i64), Vec<i64>>,
}

/// [`emit_for_phone_on`] for many events in one transaction: the phone and its subscribers are read once.
pub async fn emit_for_phone_cached(
    tx: &mut Transaction<'static, Any>,
    cache: &mut EmitCache,
    event_type: EventType,
    phone_id: i64,
    data: impl FnOnce() -> Value,
) -> Result<Option<String>, StoreError> {
    let phone = match cache.phones.get(&phone_id) {
        Some(p) => p.clone(),
        None => {
            let p = stored::phone_of_on(tx, phone_id).await?;
            cache.phones.insert(phone_id, p.clone());
            p
        }
    };
    let Some((waba_id, number)) = phone else { return Ok(None) };
    let subscribers = match cache.subscribers.get(&(event_type, phone_id)) {
        Some(s) => s.clone(),
        None => {
            let s = stored::subscribers_on(tx, event_type.as_str(), Some(waba_id), Some(phone_id)).await?;
            cache.subscribers.insert((event_type, phone_id), s.clone());
            s
        }
    };
    if subscribers.is_empty() {
        return Ok(None); // the message is not even rendered into an event body
    }
    let data = with_phone(data(), phone_id, &number, waba_id);
    emit_to(tx, event_type, Some(waba_id), Some(phone_id), data, &subscribers).await
}

fn with_phone(mut data: Value, phone_id: i64, number: &str, waba_id: i64) -> Value {
    if let Some(obj) = data.as_object_mut() {
        obj.insert("phone".into(), json!({"id": phone_id, "number": number, "waba": waba_id}));
    }
    data
}

/// Queues the `event.deliver` job of a delivery; returns the job's id.
pub async fn enqueue_delivery<'c, E>(conn: E, delivery_id: i64) -> Result<Option<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    crate::jobs::enqueue(conn, &Task::EventDeliver(EventDeliver { delivery_id }), Enqueue::default()).await
}

/// [`emit_on`] for an event about a phone: its WABA is the scope, and `data` gets the phone
/// (`{"id", "number"}`) added.
pub async fn emit_for_phone_on(
    tx: &mut Transaction<'static, Any>,
    event_type: EventType,
    phone_id: i64,
    data: Value,
) -> Result<Option<String>, StoreError> {
    let Some((waba_id, number)) = stored::phone_of_on(tx, phone_id).await? else { return Ok(None) };
    let data = with_phone(data, phone_id, &number, waba_id);
    emit_on(tx, event_type, Some(waba_id), Some(phone_id), data).await
}

/// `message.received`: the customer (as the webhook names them) and the message, its type's object as WhatsApp
/// spells it (the same shape as the history's messages).
pub fn message_received(v: &MessagesValue, m: &InboundMessage) -> Value {
    let profile = v
        .contacts
        .iter()
        .find(|c| (c.wa_id.is_some() && c.wa_id == m.from) || (c.user_id.is_some() && c.user_id == m.from_user_id))
        .or(if v.contacts.len() == 1 { v.contacts.first() } else { None });
    let msg_type = m.content.type_name();
    let content = crate::history::content_of(msg_type, &m.raw);
    json!({
        "contact": {
            "wa_id": m.from,
            "user_id": m.from_user_id,
            "profile_name": profile.and_then(|p| p.profile_name.clone()),
        },
        "message": {
            "wamid": m.id,
            "type": msg_type,
            "text": crate::history::text_of(msg_type, &content),
            "content": content,
            "reply_to": m.context.as_ref().and_then(|c| c.id.clone()),
            "target": crate::history::target_of(&m.content),
            "timestamp": rfc3339(m.timestamp * 1000),
        },
    })
}

/// `message.status`: a status of a message the business sent, with Meta's errors and pricing as sent.
pub fn message_status(s: &Status) -> Value {
    json!({
        "wamid": s.id,
        "status": s.status.as_str(),
        "timestamp": rfc3339(s.timestamp * 1000),
        "recipient": s.recipient_id.clone().or_else(|| s.recipient_user_id.clone()),
        "errors": s.raw.get("errors").cloned().unwrap_or(Value::Array(Vec::new())),
        "pricing": s.raw.get("pricing").cloned(),
        "biz_opaque_callback_data": s.biz_opaque_callback_data,
    })
}

/// `template.status`: Meta's template status update.
pub fn template_status(waba: &str, t: &TemplateStatusUpdate, at_ms: i64) -> Value {
    json!({
        "waba_id": waba,
        "template_id": t.template_id,
        "name": t.name,
        "language": t.language,
        "status": t.event,
        "reason": t.reason,
        "category": t.category,
        "timestamp": rfc3339(at_ms),
    })
}

/// `send.failed`: a send given up on, with its id (`GET /api/v1/sends/{id}`) and why.
pub fn send_failed(send_id: i64, recipient: &str, origin: &str, code: Option<i64>, reason: &str) -> Value {
    json!({
        "send_id": send_id,
        "recipient": recipient,
        "origin": origin,
        "error": {"code": code, "message": reason},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn signs_the_specifications_test_vector() {
        // The test vector of the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_whsec_and_32_bytes() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"), "{s}");
        assert_eq!(secret_key(&s).unwrap().len(), 32);
        assert_ne!(s, new_secret());
        assert!(secret_key("whsec_!!").is_err());
    }

    #[test]
    fn retries_span_more_than_a_day_before_the_window_closes() {
        let mut rng = StdRng::seed_from_u64(7);
        let day = Duration::from_secs(24 * 3600);
        // Attempts fail one after the other until the delivery is given up.
        let (mut t, mut attempt) = (0i64, 1i64);
        while !gives_up(0, t, day) {
            t += retry_delay(attempt, &mut rng).as_millis() as i64;
            attempt += 1;
        }
        assert_eq!(attempt, 8, "the 8th attempt is the first one after the window");
        assert!((24 * 3_600_000..=34 * 3_600_000).contains(&t), "{t}");
        assert!(!gives_up(1_000, 1_000 + 86_399_999, day) && gives_up(1_000, 1_000 + 86_400_000, day));
        for attempt in 1..12 {
            let d = retry_delay(attempt, &mut rng);
            let base = SCHEDULE[(attempt as usize - 1).min(5)];
            assert!(d >= base && d <= base.mul_f64(1.2), "attempt {attempt}: {d:?}");
        }
        assert_eq!(retry_delay(0, &mut rng).as_secs(), 5);
    }

    #[test]
    fn event_types_parse_and_name_the_bad_one() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        let ok = parse_types(&["message.received".into(), "*".into(), "message.received".into()]).unwrap();
        assert_eq!(ok, vec!["message.received".to_string(), "*".to_string()]);
        let e = parse_types(&["message.received".into(), "message.sent".into()]).unwrap_err();
        assert!(e.starts_with("event_types[1]: unknown event type \"message.sent\""), "{e}");
        assert!(parse_types(&[]).is_err());
    }
}
