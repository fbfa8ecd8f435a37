//! `POST /{version}/{phone-number-id}/messages` of the Graph sandbox (`shared/reference/meta-messaging.md` §5, §8,
//! §9, §14.4), and the status webhooks that follow an accepted send.
//!
//! A request goes through, in this order:
//!
//! 1. the record of requests, the version and the bearer token (200 without one; 190 with HTTP 401 when unknown),
//!    the phone-number id (Meta's `GraphMethodException` 100/33 when not decimal);
//! 2. the number's queued fault ([`GraphSandbox::fail_next_send`] answers with the code's envelope;
//!    [`GraphSandbox::timeout_next_send`] lets the send through and holds the answer);
//! 3. the JSON body: `status: "read"` bodies (mark as read, typing indicator) get `{"success":true}`; others are
//!    validated by [`check_message`] (100 / 131008 / 131009 / 131051, HTTP 400);
//! 4. templates: looked up among the templates of the number's WABA ([`GraphSandbox::add_number`]); 132001
//!    (HTTP 404) when the name/language does not exist or is not `APPROVED` (132015 when `PAUSED`, 132016 when
//!    `DISABLED`), then [`check_template_send`] (132000 / 132012);
//! 5. the customer service window, when enforced ([`GraphSandbox::set_window_enforced`]): a free-form send
//!    outside it is accepted and then gets a `failed` status with 131047, or is refused synchronously with
//!    131047 when [`GraphSandbox::set_window_refused_synchronously`] says so; templates are always allowed;
//! 6. throughput (130429) and pair rate (131056), see [`graph_limits`](super::graph_limits);
//! 7. accepted: `{"messaging_product":"whatsapp","contacts":[{"input","wa_id"}],"messages":[{"id":"wamid.…"}]}`,
//!    the message recorded ([`GraphSandbox::sent_messages`]) and counted in its unix second.
//!
//! Mark-as-read requests are not counted against the limits.
//!
//! **Status webhooks.** After an accepted send, one task per message posts its statuses in order, one webhook
//! each, through the webhook target ([`GraphSandbox::set_webhook`]; nothing is sent without one): by default
//! `sent` → `delivered` → `read`; per number [`GraphSandbox::set_status_progression`] stops after `sent` or
//! `delivered`, or sends none. Reactions get `sent` only; a send outside an enforced window gets `failed`
//! (131047) only. Every status echoes the request's `biz_opaque_callback_data`; `sent` and `delivered` carry
//! `pricing` (`PMP`; `service` / `free_customer_service` for free-form messages, the template's category and
//! `regular` for templates, `free_customer_service` for utility templates inside an open window), and there is no
//! `conversation` (v24+ shape). The envelope's entry id is the number's WABA and `metadata` its display number;
//! a number never added gets entry id `"0"` and its id as display number. Tasks start as soon as the send is
//! accepted, so a status can reach the callback before the client has read the HTTP answer (as with Meta);
//! [`GraphSandbox::set_status_delay`] puts a pause before each status.
//! [`GraphSandbox::emit_status`] pushes a status by hand.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::graph::{
    documented, envelope, error_response, gate, invalid, is_object_id, lock, no_such_object, ok_headers, refuse,
    GraphSandbox, Inner, Shared,
};
use super::graph_limits::Limits;
use super::graph_templates::find_sendable;
use super::graph_validate::{check_mark_read, check_message, check_template_send, Refusal};
use super::meta::{Delivery, MetaWebhookSender};
use super::payloads;

/// How long a customer service window stays open after the user's last message.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// One message the sandbox accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub wamid: String,
    pub phone_number_id: String,
    /// `to` as the request gave it.
    pub to: String,
    /// The digits of `to` (`contacts[].wa_id` of the answer; statuses' `recipient_id`).
    pub wa_id: String,
    /// The whole request body.
    pub body: Value,
    pub at: SystemTime,
    /// The bearer token of the request.
    pub token: String,
}

/// One read mark the sandbox accepted (`{"status": "read", "message_id": …}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMark {
    pub phone_number_id: String,
    /// The inbound message marked read.
    pub message_id: String,
    /// With a `typing_indicator`.
    pub typing: bool,
    pub at: SystemTime,
}

/// The last status the sandbox emits by itself after an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progression {
    /// No status at all.
    Silent,
    /// `sent`.
    Sent,
    /// `sent`, `delivered`.
    Delivered,
    /// `sent`, `delivered`, `read` (the default).
    #[default]
    Read,
}

/// One webhook the sandbox posted, and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    pub payload: Value,
    pub delivery: Delivery,
}

/// A business number: its display number (digits) and WABA.
#[derive(Debug, Clone)]
pub(super) struct Number {
    pub(super) display: String,
    pub(super) waba_id: String,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Fail { code: i64, retry_after: Option<Duration> },
    Hold(Duration),
}

#[derive(Debug, Clone)]
struct Record {
    msg: SentMessage,
    callback_data: Option<String>,
    /// `(pricing.type, pricing.category)`.
    pricing: (String, String),
}

/// The sending side's state.
#[derive(Debug, Default)]
pub(super) struct Messaging {
    sent: Vec<Record>,
    read_marks: Vec<ReadMark>,
    by_wamid: HashMap<String, usize>,
    faults: HashMap<String, VecDeque<Fault>>,
    slow: HashMap<String, Duration>,
    progression: HashMap<String, Progression>,
    limits: Limits,
    window_enforced: bool,
    window_sync: bool,
    /// (number, wa_id) → the user's last message.
    windows: HashMap<(String, String), SystemTime>,
    status_delay: Duration,
    on_accepted: AcceptHook,
}

/// A test's action, run at the moment a given number of sends has been accepted (see
/// [`GraphSandbox::on_accepted`]).
#[derive(Default)]
struct AcceptHook(Option<(usize, Box<dyn FnOnce() + Send>)>);

impl std::fmt::Debug for AcceptHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "AcceptHook(set)" } else { "AcceptHook(none)" })
    }
}

impl Messaging {
    fn window_open(&self, pnid: &str, wa_id: &str, now: SystemTime) -> bool {
        self.windows
            .get(&(pnid.to_string(), wa_id.to_string()))
            .is_some_and(|t| now.duration_since(*t).map(|d| d < WINDOW).unwrap_or(true))
    }
}

/// What a status task needs to post to the right place.
#[derive(Debug, Clone)]
struct Target {
    sender: MetaWebhookSender,
    waba_id: String,
    display: String,
    pnid: String,
}

fn target(inner: &Inner, pnid: &str) -> Option<Target> {
    let sender = inner.webhook.clone()?;
    let (waba_id, display) = match inner.numbers.get(pnid) {
        Some(n) => (n.waba_id.clone(), n.display.clone()),
        None => ("0".to_string(), pnid.to_string()),
    };
    Some(Target { sender, waba_id, display, pnid: pnid.to_string() })
}

/// Posts `payload` (signed, with retries) and records it.
pub(super) async fn post_webhook(shared: &Shared, sender: &MetaWebhookSender, payload: Value) -> Delivery {
    let delivery = sender.deliver(&payload).await;
    lock(shared).webhooks.push(WebhookRecord { payload, delivery: delivery.clone() });
    delivery
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Status(&'static str),
    Failed(i64),
}

/// The statuses of one message, posted in order by one task.
struct Plan {
    target: Target,
    record: Record,
    steps: Vec<Step>,
    delay: Duration,
}

/// One `statuses[]` item for `record`.
fn status_item(record: &Record, step: Step) -> Value {
    let ts = i64::try_from(unix_now()).unwrap_or_default();
    let mut item = match step {
        Step::Status(s) => {
            let item = payloads::status(&record.msg.wamid, s, ts, &record.msg.wa_id);
            if matches!(s, "sent" | "delivered") {
                payloads::with_pricing(item, &record.pricing.0, &record.pricing.1)
            } else {
                item
            }
        }
        Step::Failed(code) => {
            let e = documented(code);
            payloads::failed_status(&record.msg.wamid, ts, &record.msg.wa_id, code, e.title, e.details)
        }
    };
    if let (Some(data), Some(o)) = (&record.callback_data, item.as_object_mut()) {
        o.insert("biz_opaque_callback_data".into(), json!(data));
    }
    item
}

fn status_payload(target: &Target, item: Value) -> Value {
    payloads::envelope(&target.waba_id, "messages", payloads::statuses_value(&target.display, &target.pnid, vec![item]))
}

impl Plan {
    async fn run(self, shared: Shared) {
        for step in &self.steps {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let payload = status_payload(&self.target, status_item(&self.record, *step));
            post_webhook(&shared, &self.target.sender, payload).await;
        }
    }
}

fn steps_for(kind: &str, outside_window: bool, progression: Progression) -> Vec<Step> {
    if outside_window {
        return vec![Step::Failed(131047)];
    }
    let all: &[&'static str] = match progression {
        Progression::Silent => &[],
        Progression::Sent => &["sent"],
        Progression::Delivered => &["sent", "delivered"],
        Progression::Read => &["sent", "delivered", "read"],
    };
    let n = if kind == "reaction" { all.len().min(1) } else { all.len() };
    all[..n].iter().map(|s| Step::Status(s)).collect()
}

fn refusal(r: Refusal) -> Response {
    refuse(r.code, Some(&r.details))
}

fn fail_response(code: i64, retry_after: Option<Duration>) -> Response {
    let e = documented(code);
    let mut response = error_response(e.http_status, envelope(&e, None));
    if let Some(after) = retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert("retry-after", v);
        }
    }
    response
}

/// `POST /{version}/{phone-number-id}/messages`.
pub(super) async fn post_messages(
    State(shared): State<Shared>,
    Path((version, pnid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, hold, plan) = {
        let mut inner = lock(&shared);
        let mut hold = Duration::ZERO;
        let (response, plan) = handle_send(&mut inner, &version, &pnid, &query, &headers, &body, &mut hold);
        (response, hold, plan)
    };
    if let Some(plan) = plan {
        tokio::spawn(plan.run(shared.clone()));
    }
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    response
}

/// The decision for one send, under the lock; `hold` is how long to delay the answer.
fn handle_send(
    inner: &mut Inner,
    version: &str,
    pnid: &str,
    query: &Option<String>,
    headers: &HeaderMap,
    raw: &[u8],
    hold: &mut Duration,
) -> (Response, Option<Plan>) {
    let now = Instant::now();
    let parsed: Option<Value> = serde_json::from_slice(raw).ok();
    *hold = inner.messaging.slow.get(pnid).copied().unwrap_or_default();
    let path = format!("/{version}/{pnid}/messages");
    let token = match gate(inner, "post", version, path, query, headers, parsed.clone()) {
        Ok((token, _app)) => token,
        Err(r) => return (*r, None),
    };
    if !is_object_id(pnid) {
        return (no_such_object("POST", pnid), None);
    }
    match inner.messaging.faults.get_mut(pnid).and_then(VecDeque::pop_front) {
        Some(Fault::Fail { code, retry_after }) => return (fail_response(code, retry_after), None),
        Some(Fault::Hold(d)) => *hold += d,
        None => {}
    }
    let Some(body) = parsed else {
        return (invalid("The request body is not valid JSON".into()), None);
    };
    if body.get("status").is_some() {
        if let Err(r) = check_mark_read(&body) {
            return (refusal(r), None);
        }
        // Counted within the number's throughput like every request to /messages (whether Meta counts read marks
        // is UNCONFIRMED; the sandbox does, so pacing them is tested), but not a message: no pair rate, no window.
        if let Err(hit) = inner.messaging.limits.admit_request(pnid, now) {
            return (refuse(hit.code(), None), None);
        }
        let wall = SystemTime::now();
        let m = &mut inner.messaging;
        m.limits.count(pnid, wall.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        m.read_marks.push(ReadMark {
            phone_number_id: pnid.to_string(),
            message_id: body["message_id"].as_str().unwrap_or_default().to_string(),
            typing: body.get("typing_indicator").is_some(),
            at: wall,
        });
        return ((ok_headers(version), Json(json!({"success": true}))).into_response(), None);
    }
    let send = match check_message(&body) {
        Ok(s) => s,
        Err(r) => return (refusal(r), None),
    };
    let wall = SystemTime::now();
    let window_open = inner.messaging.window_open(pnid, &send.wa_id, wall);
    let mut pricing = ("free_customer_service".to_string(), "service".to_string());
    if send.kind == "template" {
        let request = body.get("template").cloned().unwrap_or_default();
        let def = match find_sendable(inner, pnid, &request) {
            Ok(d) => d,
            Err(r) => return (refusal(r), None),
        };
        if let Err(r) = check_template_send(&def, &request) {
            return (refusal(r), None);
        }
        let category =
            def.get("category").and_then(Value::as_str).unwrap_or("UTILITY").to_ascii_lowercase().replace('-', "_");
        let kind = if category == "utility" && window_open { "free_customer_service" } else { "regular" };
        pricing = (kind.to_string(), category);
    }
    let outside = send.kind != "template" && inner.messaging.window_enforced && !window_open;
    if outside && inner.messaging.window_sync {
        return (refuse(131047, None), None);
    }
    if let Err(hit) = inner.messaging.limits.admit(pnid, &send.wa_id, now) {
        return (refuse(hit.code(), None), None);
    }
    let wamid = payloads::new_wamid();
    let record = Record {
        msg: SentMessage {
            wamid: wamid.clone(),
            phone_number_id: pnid.to_string(),
            to: send.to.clone(),
            wa_id: send.wa_id.clone(),
            body,
            at: wall,
            token,
        },
        callback_data: send.callback_data.clone(),
        pricing,
    };
    let m = &mut inner.messaging;
    m.limits.count(pnid, wall.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    m.by_wamid.insert(wamid.clone(), m.sent.len());
    m.sent.push(record.clone());
    if m.on_accepted.0.as_ref().is_some_and(|(n, _)| m.sent.len() >= *n) {
        if let Some((_, action)) = m.on_accepted.0.take() {
            action(); // before this send is answered: the caller never learns that Meta took it
        }
    }
    let progression = m.progression.get(pnid).copied().unwrap_or_default();
    let steps = steps_for(&send.kind, outside, progression);
    let delay = m.status_delay;
    let plan = match target(inner, pnid) {
        Some(target) if !steps.is_empty() => Some(Plan { target, record, steps, delay }),
        _ => None,
    };
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": send.to, "wa_id": send.wa_id}],
        "messages": [{"id": wamid}],
    });
    ((ok_headers(version), Json(answer)).into_response(), plan)
}

/// Test helpers of the sending side.
impl GraphSandbox {
    /// Registers a business number: its display number (digits, for webhooks' `metadata.display_phone_number`)
    /// and its WABA (webhooks' entry id; where template sends look their template up).
    pub fn add_number(&self, phone_number_id: &str, display_phone_number: &str, waba_id: &str) {
        lock(&self.inner)
            .numbers
            .insert(phone_number_id.into(), Number { display: display_phone_number.into(), waba_id: waba_id.into() });
    }

    /// Sends status and template webhooks to `callback_url`, signed with `app_secret`, with
    /// [`MetaWebhookSender`]'s default retries.
    pub fn set_webhook(&self, callback_url: &str, app_secret: &str) {
        self.set_webhook_sender(MetaWebhookSender::new(callback_url, app_secret));
    }

    /// Like [`set_webhook`](Self::set_webhook), with a sender of your own (another retry policy, say).
    pub fn set_webhook_sender(&self, sender: MetaWebhookSender) {
        lock(&self.inner).webhook = Some(sender);
    }

    /// Stops sending webhooks.
    pub fn clear_webhook(&self) {
        lock(&self.inner).webhook = None;
    }

    /// Every webhook posted so far (statuses and template updates), oldest delivery first.
    pub fn webhooks(&self) -> Vec<WebhookRecord> {
        lock(&self.inner).webhooks.clone()
    }

    /// Which statuses follow an accepted send from this number (default [`Progression::Read`]).
    pub fn set_status_progression(&self, phone_number_id: &str, progression: Progression) {
        lock(&self.inner).messaging.progression.insert(phone_number_id.into(), progression);
    }

    /// A pause before each automatic status (default none).
    pub fn set_status_delay(&self, delay: Duration) {
        lock(&self.inner).messaging.status_delay = delay;
    }

    /// The messages accepted from this number, oldest first.
    pub fn sent_messages(&self, phone_number_id: &str) -> Vec<SentMessage> {
        let inner = lock(&self.inner);
        inner
            .messaging
            .sent
            .iter()
            .filter(|r| r.msg.phone_number_id == phone_number_id)
            .map(|r| r.msg.clone())
            .collect()
    }

    /// The read marks accepted for this number, oldest first.
    pub fn read_marks(&self, phone_number_id: &str) -> Vec<ReadMark> {
        let inner = lock(&self.inner);
        inner.messaging.read_marks.iter().filter(|r| r.phone_number_id == phone_number_id).cloned().collect()
    }

    /// Every accepted message, oldest first.
    pub fn all_sent(&self) -> Vec<SentMessage> {
        lock(&self.inner).messaging.sent.iter().map(|r| r.msg.clone()).collect()
    }

    /// How many messages [`all_sent`](Self::all_sent) holds (cheap enough to poll).
    pub fn sent_count(&self) -> usize {
        lock(&self.inner).messaging.sent.len()
    }

    /// The accepted message with this wamid.
    pub fn sent_message(&self, wamid: &str) -> Option<SentMessage> {
        let inner = lock(&self.inner);
        inner.messaging.by_wamid.get(wamid).and_then(|i| inner.messaging.sent.get(*i)).map(|r| r.msg.clone())
    }

    /// Posts one status of an accepted message now and waits for its delivery: `status` is `sent`, `delivered`,
    /// `read` or `played`, or `failed` with `error_code` (its documented title and details; 131000 when `None`).
    /// `None` when the wamid is unknown, the status is not one of these, or no webhook target is set.
    pub async fn emit_status(&self, wamid: &str, status: &str, error_code: Option<i64>) -> Option<Delivery> {
        let step = match status {
            "sent" => Step::Status("sent"),
            "delivered" => Step::Status("delivered"),
            "read" => Step::Status("read"),
            "played" => Step::Status("played"),
            "failed" => Step::Failed(error_code.unwrap_or(131000)),
            _ => return None,
        };
        let (target, payload) = {
            let inner = lock(&self.inner);
            let record = inner.messaging.by_wamid.get(wamid).and_then(|i| inner.messaging.sent.get(*i))?;
            let target = target(&inner, &record.msg.phone_number_id)?;
            let payload = status_payload(&target, status_item(record, step));
            (target, payload)
        };
        Some(post_webhook(&self.inner, &target.sender, payload).await)
    }

    /// Runs `action` once, when the `n`th send in all has been accepted and before it is answered (a test kills the
    /// sender there, so the kill lands at a known point of a backlog rather than whenever a poll notices). The
    /// action runs under the sandbox's lock: it must not call the sandbox.
    pub fn on_accepted(&self, n: usize, action: impl FnOnce() + Send + 'static) {
        lock(&self.inner).messaging.on_accepted = AcceptHook(Some((n, Box::new(action))));
    }

    /// The number's throughput in messages per second (default 80); past it sends get 130429.
    pub fn set_throughput(&self, phone_number_id: &str, mps: u32) {
        lock(&self.inner).messaging.limits.set_throughput(phone_number_id, f64::from(mps));
    }

    /// The pair rate of every (number, recipient): one message per `per`, bursts of `burst` (default 6 s, 45);
    /// past it sends get 131056. Resets every pair.
    pub fn set_pair_rate(&self, per: Duration, burst: u32) {
        lock(&self.inner).messaging.limits.set_pair_rate(per, burst);
    }

    /// `(unix second, accepted requests)` of this number, for each second with at least one: messages and read
    /// marks (both count within the throughput).
    pub fn accepted_per_second(&self, phone_number_id: &str) -> Vec<(u64, u32)> {
        lock(&self.inner).messaging.limits.per_second(phone_number_id)
    }

    /// Enforces the 24-hour customer service window on free-form sends (default off).
    pub fn set_window_enforced(&self, enforced: bool) {
        lock(&self.inner).messaging.window_enforced = enforced;
    }

    /// With the window enforced: refuse a free-form send outside it synchronously with 131047 (HTTP 400) instead
    /// of accepting it and emitting a `failed` status (the default, as community reports describe Meta).
    pub fn set_window_refused_synchronously(&self, sync: bool) {
        lock(&self.inner).messaging.window_sync = sync;
    }

    /// The user `wa_id` messaged the number now: its window is open for 24 hours.
    pub fn customer_messaged(&self, phone_number_id: &str, wa_id: &str) {
        self.customer_messaged_at(phone_number_id, wa_id, SystemTime::now());
    }

    /// The user `wa_id` last messaged the number at `at` (in the past to test an expired window).
    pub fn customer_messaged_at(&self, phone_number_id: &str, wa_id: &str, at: SystemTime) {
        lock(&self.inner).messaging.windows.insert((phone_number_id.into(), wa_id.into()), at);
    }

    /// The next send from this number (after the token check) is refused with `code`: its documented envelope
    /// and HTTP status. Faults queue in the order given (with [`timeout_next_send`](Self::timeout_next_send)).
    pub fn fail_next_send(&self, phone_number_id: &str, code: i64) {
        self.push_fault(phone_number_id, Fault::Fail { code, retry_after: None });
    }

    /// Like [`fail_next_send`](Self::fail_next_send), with a `Retry-After` header (whole seconds, rounded up).
    pub fn fail_next_send_retry_after(&self, phone_number_id: &str, code: i64, retry_after: Duration) {
        self.push_fault(phone_number_id, Fault::Fail { code, retry_after: Some(retry_after) });
    }

    /// The next send from this number is handled as usual (accepted, recorded, statuses emitted, or refused) but
    /// its answer is held for `hold`: a client with a shorter timeout gives up on a message Meta accepted.
    pub fn timeout_next_send(&self, phone_number_id: &str, hold: Duration) {
        self.push_fault(phone_number_id, Fault::Hold(hold));
    }

    /// Every answer of the messages endpoint for this number is delayed by `delay` (`Duration::ZERO` stops it).
    pub fn slow_sends(&self, phone_number_id: &str, delay: Duration) {
        let mut inner = lock(&self.inner);
        if delay.is_zero() {
            inner.messaging.slow.remove(phone_number_id);
        } else {
            inner.messaging.slow.insert(phone_number_id.into(), delay);
        }
    }

    fn push_fault(&self, phone_number_id: &str, fault: Fault) {
        lock(&self.inner).messaging.faults.entry(phone_number_id.into()).or_default().push_back(fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature;
    use axum::extract::State as AxState;
    use axum::routing::post;
    use axum::Router;
    use std::sync::{Arc, Mutex};

    const TOKEN: &str = "EAAG-test-token";
    const PNID: &str = "106540352242922";
    const WABA: &str = "102290129340398";
    const DISPLAY: &str = "15550783881";
    const SECRET: &str = "app-secret-for-tests";

    type Received = Arc<Mutex<Vec<Value>>>;

    /// A tiny webhook receiver: verifies `X-Hub-Signature-256` (401 otherwise) and keeps the payloads.
    async fn receiver() -> (String, Received) {
        let got: Received = Arc::default();
        let app = Router::new()
            .route(
                "/hook",
                post(|AxState(got): AxState<Received>, headers: HeaderMap, body: Bytes| async move {
                    let header = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
                    if !signature::verifies(SECRET.as_bytes(), &body, header) {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    got.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                    axum::http::StatusCode::OK
                }),
            )
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), got)
    }

    async fn sandbox() -> GraphSandbox {
        let g = GraphSandbox::start().await.unwrap();
        g.allow_token(TOKEN, "1");
        g.add_number(PNID, DISPLAY, WABA);
        g
    }

    fn text(to: &str, body: &str) -> Value {
        json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}})
    }

    async fn post_json(g: &GraphSandbox, token: Option<&str>, body: &Value) -> (u16, Value, HeaderMap) {
        let mut req = reqwest::Client::new().post(format!("{}/v23.0/{PNID}/messages", g.base_url())).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap(), headers)
    }

    async fn wait_for(got: &Received, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            if got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got.lock().unwrap().clone()
    }

    fn statuses(got: &[Value]) -> Vec<(String, String)> {
        got.iter()
            .filter_map(|p| p.pointer("/entry/0/changes/0/value/statuses/0"))
            .map(|s| (s["id"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn steps_follow_progression_and_kind() {
        let s = |v: &[&'static str]| v.iter().map(|x| Step::Status(x)).collect::<Vec<_>>();
        assert_eq!(steps_for("text", false, Progression::Read), s(&["sent", "delivered", "read"]));
        assert_eq!(steps_for("text", false, Progression::Delivered), s(&["sent", "delivered"]));
        assert_eq!(steps_for("text", false, Progression::Silent), vec![]);
        assert_eq!(steps_for("reaction", false, Progression::Read), s(&["sent"]));
        assert_eq!(steps_for("reaction", false, Progression::Silent), vec![]);
        assert_eq!(steps_for("text", true, Progression::Silent), vec![Step::Failed(131047)]);
    }

    #[tokio::test]
    async fn text_send_answers_a_wamid_and_posts_signed_statuses() {
        let g = sandbox().await;
        let (url, got) = receiver().await;
        g.set_webhook(&url, SECRET);
        let mut body = text("+1 (650) 555-1234", "hello");
        body["biz_opaque_callback_data"] = json!("crm-42");
        let (status, answer, headers) = post_json(&g, Some(TOKEN), &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(headers["facebook-api-version"], "v23.0");
        let wamid = answer["messages"][0]["id"].as_str().unwrap().to_string();
        assert!(wamid.starts_with("wamid."));
        assert_eq!(
            answer,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": "+1 (650) 555-1234", "wa_id": "16505551234"}],
                   "messages": [{"id": wamid}]})
        );
        let sent = g.sent_messages(PNID);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].wamid.as_str(), sent[0].token.as_str(), sent[0].wa_id.as_str()),
            (wamid.as_str(), TOKEN, "16505551234")
        );
        assert_eq!(sent[0].body, body);
        assert_eq!(g.all_sent(), sent);
        assert_eq!(g.sent_message(&wamid).unwrap().to, "+1 (650) 555-1234");

        let got = wait_for(&got, 3).await;
        assert_eq!(
            statuses(&got),
            vec![(wamid.clone(), "sent".into()), (wamid.clone(), "delivered".into()), (wamid.clone(), "read".into())]
        );
        let first = &got[0];
        assert_eq!(first["object"], "whatsapp_business_account");
        assert_eq!(first["entry"][0]["id"], WABA);
        let value = &first["entry"][0]["changes"][0]["value"];
        assert_eq!(first["entry"][0]["changes"][0]["field"], "messages");
        assert_eq!(value["metadata"], json!({"display_phone_number": DISPLAY, "phone_number_id": PNID}));
        let s = &value["statuses"][0];
        assert_eq!(s["recipient_id"], "16505551234");
        assert_eq!(s["biz_opaque_callback_data"], "crm-42");
        assert!(s["timestamp"].is_string());
        assert_eq!(s["pricing"]["category"], "service");
        assert!(got[2]["entry"][0]["changes"][0]["value"]["statuses"][0].get("pricing").is_none());
        assert!(got.iter().all(
            |p| p.pointer("/entry/0/changes/0/value/statuses/0/biz_opaque_callback_data") == Some(&json!("crm-42"))
        ));
        for _ in 0..100 {
            if g.webhooks().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(g.webhooks().iter().all(|w| w.delivery.delivered));

        // By hand: a failure with its documented title.
        let d = g.emit_status(&wamid, "failed", Some(131026)).await.unwrap();
        assert!(d.delivered);
        let last = g.webhooks().pop().unwrap().payload;
        let s = &last["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!((s["status"].as_str(), s["errors"][0]["code"].as_i64()), (Some("failed"), Some(131026)));
        assert_eq!(s["errors"][0]["title"], "Message undeliverable");
        assert!(g.emit_status("wamid.unknown", "read", None).await.is_none());
    }

    #[tokio::test]
    async fn progression_reactions_and_mark_read() {
        let g = sandbox().await;
        let (url, got) = receiver().await;
        g.set_webhook(&url, SECRET);
        g.set_status_progression(PNID, Progression::Delivered);
        let (s, a, _) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!(s, 200);
        let w1 = a["messages"][0]["id"].as_str().unwrap().to_string();
        g.set_status_progression(PNID, Progression::Read);
        let reaction = json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "reaction",
            "reaction": {"message_id": "wamid.X", "emoji": "\u{1F600}"}});
        let (s, a, _) = post_json(&g, Some(TOKEN), &reaction).await;
        assert_eq!(s, 200);
        let w2 = a["messages"][0]["id"].as_str().unwrap().to_string();
        let got = wait_for(&got, 3).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut st = statuses(&got);
        st.sort();
        let mut want = vec![(w1.clone(), "delivered".to_string()), (w1, "sent".into()), (w2, "sent".into())];
        want.sort();
        assert_eq!(st, want);

        let read = json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN",
            "typing_indicator": {"type": "text"}});
        let (s, a, _) = post_json(&g, Some(TOKEN), &read).await;
        assert_eq!((s, a), (200, json!({"success": true})));
        assert_eq!(g.sent_messages(PNID).len(), 2);
    }

    #[tokio::test]
    async fn token_validation_and_injected_failures() {
        let g = sandbox().await;
        let (s, a, _) = post_json(&g, Some("nope"), &text("16505551234", "x")).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (401, Some(190)));
        let (s, a, _) = post_json(&g, None, &text("16505551234", "x")).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (403, Some(200)));
        let (s, a, _) = post_json(&g, Some(TOKEN), &text("16505551234", &"x".repeat(4097))).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (400, Some(131009)));
        assert!(a["error"]["error_data"]["details"].as_str().unwrap().contains("text['body']"), "{a}");
        assert_eq!(a["error"]["message"], "(#131009) Parameter value is not valid");

        g.fail_next_send(PNID, 131000);
        g.fail_next_send_retry_after(PNID, 130429, Duration::from_millis(1500));
        let (s, a, _) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (500, Some(131000)));
        let (s, a, h) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (400, Some(130429)));
        assert_eq!(h["retry-after"], "2");
        let (s, _, h) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!(s, 200);
        assert!(h.get("retry-after").is_none());
        assert_eq!(g.sent_messages(PNID).len(), 1);
    }

    #[tokio::test]
    async fn throughput_past_the_limit_gets_130429() {
        let g = sandbox().await;
        g.set_throughput(PNID, 5);
        g.set_pair_rate(Duration::ZERO, 1000);
        let mut codes = Vec::new();
        for i in 0..8 {
            let (s, a, _) = post_json(&g, Some(TOKEN), &text(&format!("1650555{i:04}"), "x")).await;
            codes.push(if s == 200 { 0 } else { a["error"]["code"].as_i64().unwrap() });
        }
        // 5 pass at once; the bucket refills 5/s, so one more can slip through on a slow machine.
        let ok = codes.iter().filter(|c| **c == 0).count();
        assert!((5..=6).contains(&ok), "{codes:?}");
        assert!(codes[5..].contains(&130429), "{codes:?}");
        let per_second = g.accepted_per_second(PNID);
        assert_eq!(per_second.iter().map(|(_, n)| *n as usize).sum::<usize>(), ok);
    }

    #[tokio::test]
    async fn pair_rate_past_the_burst_gets_131056() {
        let g = sandbox().await;
        g.set_pair_rate(Duration::from_secs(60), 3);
        for _ in 0..3 {
            assert_eq!(post_json(&g, Some(TOKEN), &text("16505551234", "x")).await.0, 200);
        }
        let (s, a, _) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (400, Some(131056)));
        // Another recipient is not affected.
        assert_eq!(post_json(&g, Some(TOKEN), &text("16505559999", "x")).await.0, 200);
    }

    #[tokio::test]
    async fn timeout_next_send_holds_the_answer_but_accepts() {
        let g = sandbox().await;
        g.timeout_next_send(PNID, Duration::from_millis(600));
        let client = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
        let started = Instant::now();
        let r = client
            .post(format!("{}/v23.0/{PNID}/messages", g.base_url()))
            .bearer_auth(TOKEN)
            .json(&text("16505551234", "x"))
            .send()
            .await;
        assert!(r.unwrap_err().is_timeout());
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(g.sent_messages(PNID).len(), 1, "Meta accepted it");
        // The next one is answered at once; a patient client sees the held answer.
        g.timeout_next_send(PNID, Duration::from_millis(300));
        let started = Instant::now();
        let (s, _, _) = post_json(&g, Some(TOKEN), &text("16505551234", "y")).await;
        assert_eq!(s, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(post_json(&g, Some(TOKEN), &text("16505551234", "z")).await.0, 200);
        assert!(started.elapsed() < Duration::from_millis(250));
        g.slow_sends(PNID, Duration::from_millis(150));
        let started = Instant::now();
        assert_eq!(post_json(&g, Some(TOKEN), &text("16505551234", "z")).await.0, 200);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn window_enforcement_async_and_sync() {
        let g = sandbox().await;
        let (url, got) = receiver().await;
        g.set_webhook(&url, SECRET);
        g.set_window_enforced(true);
        let (s, a, _) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!(s, 200, "accepted, fails later");
        let wamid = a["messages"][0]["id"].as_str().unwrap().to_string();
        let got = wait_for(&got, 1).await;
        let st = &got[0]["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!((st["id"].as_str(), st["status"].as_str()), (Some(wamid.as_str()), Some("failed")));
        assert_eq!(st["errors"][0]["code"], 131047);
        g.set_window_refused_synchronously(true);
        let (s, a, _) = post_json(&g, Some(TOKEN), &text("16505551234", "x")).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (400, Some(131047)));
        g.customer_messaged(PNID, "16505551234");
        assert_eq!(post_json(&g, Some(TOKEN), &text("16505551234", "x")).await.0, 200);
        g.customer_messaged_at(PNID, "16505551234", SystemTime::now() - WINDOW - Duration::from_secs(1));
        assert_eq!(post_json(&g, Some(TOKEN), &text("16505551234", "x")).await.0, 400);
    }

    #[tokio::test]
    async fn template_sends_are_checked_against_the_wabas_templates() {
        let g = sandbox().await;
        g.add_template(
            WABA,
            json!({"name": "order_update", "language": "en_US", "status": "APPROVED",
            "category": "UTILITY", "components": [{"type": "BODY", "text": "Order {{1}} is {{2}}"}]}),
        );
        g.add_template(
            WABA,
            json!({"name": "promo", "language": "en_US", "status": "PENDING",
            "category": "MARKETING", "components": [{"type": "BODY", "text": "Sale"}]}),
        );
        let send = |name: &str, lang: &str, params: Vec<Value>| {
            json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "template", "template":
                {"name": name, "language": {"code": lang}, "components": [{"type": "body", "parameters": params}]}})
        };
        let p = |t: &str| json!({"type": "text", "text": t});
        let (s, a, _) = post_json(&g, Some(TOKEN), &send("order_update", "en_US", vec![p("1"), p("shipped")])).await;
        assert_eq!(s, 200, "{a}");
        let (s, a, _) = post_json(&g, Some(TOKEN), &send("order_update", "pt_BR", vec![p("1"), p("x")])).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (404, Some(132001)));
        let (s, a, _) = post_json(&g, Some(TOKEN), &send("promo", "en_US", vec![])).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (404, Some(132001)));
        let (s, a, _) = post_json(&g, Some(TOKEN), &send("order_update", "en_US", vec![p("1")])).await;
        assert_eq!((s, a["error"]["code"].as_i64()), (400, Some(132000)));
        // Templates are allowed outside the window.
        g.set_window_enforced(true);
        g.set_window_refused_synchronously(true);
        let (s, _, _) = post_json(&g, Some(TOKEN), &send("order_update", "en_US", vec![p("1"), p("x")])).await;
        assert_eq!(s, 200);
        // A number without a WABA has no templates.
        let other = json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "template",
            "template": {"name": "order_update", "language": {"code": "en_US"}}});
        let resp = reqwest::Client::new()
            .post(format!("{}/v23.0/999/messages", g.base_url()))
            .bearer_auth(TOKEN)
            .json(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        // The recorded request list has every call.
        assert!(g.requests().iter().any(|r| r.path == format!("/v23.0/{PNID}/messages")));
    }
}
