//! The HTTP side: the OAuth token endpoint, the REST dispatcher with its checks (down, token, rate limits), the
//! methods and `batch`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{
    events, lock, BoundEvent, ChatMessage, Connector, ConnectorStatus, Inner, MessageKind, OpenChat, OpenLine,
    RefreshState, RestCall, Shared, SmsSender, StatusMark,
};
use crate::form;

const FORM: &str = "application/x-www-form-urlencoded";
const MAX_BATCH: usize = 50;

/// A REST error: `{"error", "error_description"(, "argument")}` with its HTTP status.
#[derive(Debug, Clone)]
pub(super) struct RestError {
    status: u16,
    code: String,
    description: String,
    argument: Option<String>,
}

impl RestError {
    fn new(status: u16, code: &str, description: impl Into<String>) -> RestError {
        RestError { status, code: code.into(), description: description.into(), argument: None }
    }

    fn bad(code: &str, description: impl Into<String>) -> RestError {
        RestError::new(400, code, description)
    }

    /// `ArgumentNullException`: 400 `ERROR_ARGUMENT` naming the argument.
    fn null_arg(name: &str) -> RestError {
        RestError::bad("ERROR_ARGUMENT", format!("Argument '{name}' is null or empty")).argument(name)
    }

    fn argument(mut self, name: &str) -> RestError {
        self.argument = Some(name.into());
        self
    }

    fn body(&self) -> Value {
        let mut b = json!({"error": self.code, "error_description": self.description});
        if let Some(a) = &self.argument {
            b["argument"] = json!(a);
        }
        b
    }
}

fn respond(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

pub(super) async fn not_found() -> Response {
    respond(404, json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}))
}

// ---- parameter helpers (PHP semantics) ----

/// A parameter by name, case-insensitively.
fn p<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    params.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// A scalar as text (`true` → `1`, `false` → empty, as PHP prints them).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// PHP `empty()`.
fn php_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty() || s == "0",
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(b)) => !b,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
    }
}

fn required_text(params: &Value, name: &str) -> Result<String, RestError> {
    let v = p(params, name);
    if php_empty(v) && text(v).as_deref() != Some("0") {
        return Err(RestError::null_arg(name));
    }
    text(v)
        .ok_or_else(|| RestError::bad("ERROR_ARGUMENT", format!("Argument '{name}' must be a scalar")).argument(name))
}

fn required_int(params: &Value, name: &str) -> Result<u64, RestError> {
    if php_empty(p(params, name)) {
        return Err(RestError::null_arg(name));
    }
    int(p(params, name)).ok_or_else(|| {
        RestError::bad("ERROR_ARGUMENT", format!("The value of an argument '{name}' must be of type integer"))
            .argument(name)
    })
}

fn map_keys(v: &Value, f: fn(&str) -> String) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (f(k), map_keys(v, f))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| map_keys(v, f)).collect()),
        other => other.clone(),
    }
}

fn upper_keys(v: &Value) -> Value {
    map_keys(v, str::to_ascii_uppercase)
}

fn lower_keys(v: &Value) -> Value {
    map_keys(v, str::to_ascii_lowercase)
}

/// Items of a PHP array (a JSON array, or an object's values).
fn items(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) => Some(a.clone()),
        Value::Object(m) => Some(m.values().cloned().collect()),
        _ => None,
    }
}

/// How PHP encodes an array: `[]` when empty, a list for keys `0..n`, else an object.
fn php_map(entries: Vec<(String, Value)>) -> Value {
    if entries.is_empty() {
        return json!([]);
    }
    if entries.iter().enumerate().all(|(i, (k, _))| *k == i.to_string()) {
        return Value::Array(entries.into_iter().map(|(_, v)| v).collect());
    }
    Value::Object(entries.into_iter().collect())
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The `time` block of every answer.
fn time_block(start: SystemTime, finish: SystemTime) -> Value {
    let (s, f) = (secs(start), secs(finish));
    json!({
        "start": s,
        "finish": f,
        "duration": f - s,
        "processing": f - s,
        "date_start": rfc3339(start),
        "date_finish": rfc3339(finish),
        "operating": 0,
        "operating_reset_at": s as u64 + 600,
    })
}

fn normalize_method(m: &str) -> String {
    let m = m.trim().to_ascii_lowercase();
    m.strip_suffix(".json").or_else(|| m.strip_suffix(".xml")).map(String::from).unwrap_or(m)
}

fn parse_form_or_json(content_type: Option<&str>, bytes: &[u8]) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    form::parse(content_type, bytes).map_err(|e| e.to_string())
}

/// Query parameters overlaid with body parameters.
fn request_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let mut params = parse_form_or_json(Some(FORM), query.unwrap_or_default().as_bytes())?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = parse_form_or_json(content_type, body)?;
    if let (Some(dst), Value::Object(src)) = (params.as_object_mut(), body) {
        dst.extend(src);
    }
    Ok(params)
}

/// The order of `cmd` keys as sent (JSON maps lose it once parsed).
fn cmd_order(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a map or a list of commands")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        keys.push(keys.len().to_string());
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_any(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Body {
        cmd: Option<Keys>,
    }
    let mut keys = Vec::new();
    let mut from_form = |bytes: &[u8]| {
        for (k, _) in url::form_urlencoded::parse(bytes) {
            if let Some(key) = k.strip_prefix("cmd[").and_then(|r| r.split(']').next()) {
                if !keys.iter().any(|x: &String| x == key) {
                    keys.push(key.to_string());
                }
            }
        }
    };
    from_form(query.unwrap_or_default().as_bytes());
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let json = content_type.contains("json") || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if json {
        if let Ok(Body { cmd: Some(Keys(k)) }) = serde_json::from_slice::<Body>(body) {
            keys = k;
        }
    } else {
        from_form(body);
    }
    keys
}

// ---- OAuth ----

pub(super) async fn oauth_token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match request_params(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(e) => return respond(400, json!({"error": "invalid_request", "error_description": e})),
    };
    let get = |k: &str| text(params.get(k)).unwrap_or_default();
    let mut inner = lock(&shared);
    let grant = get("grant_type");
    if grant != "refresh_token" && grant != "authorization_code" {
        return respond(400, json!({"error": "invalid_request", "error_description": "Unsupported grant_type"}));
    }
    if get("client_id") != inner.opts.client_id || get("client_secret") != inner.opts.client_secret {
        return respond(401, json!({"error": "invalid_client", "error_description": "Invalid client"}));
    }
    let grant_status = inner.invalid_grant_status;
    let invalid_grant =
        || respond(grant_status, json!({"error": "invalid_grant", "error_description": "Invalid grant"}));
    if grant == "refresh_token" {
        let token = get("refresh_token");
        if token.is_empty() {
            return respond(400, json!({"error": "invalid_request", "error_description": "refresh_token is required"}));
        }
        match inner.refresh.get(&token).copied() {
            Some(RefreshState::Valid) => {
                inner.refresh.insert(token, RefreshState::Spent);
                inner.issue_pair();
                inner.refresh_count += 1;
            }
            Some(RefreshState::Spent) => {
                inner.double_spent += 1;
                return invalid_grant();
            }
            _ => return invalid_grant(),
        }
    } else {
        let code = get("code");
        match inner.auth_codes.remove(&code) {
            Some(until) if until > Instant::now() => inner.issue_pair(),
            _ => return invalid_grant(),
        }
    }
    let answer = json!({
        "access_token": inner.current_access,
        "expires": inner.expires_unix(),
        "expires_in": inner.opts.access_token_lifetime.as_secs(),
        "scope": inner.opts.scope,
        "domain": "oauth.bitrix.info",
        "server_endpoint": format!("{}/rest/", inner.base),
        "status": inner.opts.status,
        "client_endpoint": inner.client_endpoint(),
        "member_id": inner.opts.member_id,
        "user_id": inner.opts.user_id,
        "refresh_token": inner.current_refresh,
    });
    respond(200, answer)
}

// ---- REST ----

pub(super) async fn rest(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = SystemTime::now();
    let method = normalize_method(&method);
    let mut params = match request_params(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(e) => return respond(400, RestError::bad("INVALID_REQUEST", e).body()),
    };
    let token = params.as_object_mut().and_then(|m| m.remove("auth")).and_then(|v| text(Some(&v)));
    let order = if method == "batch" { cmd_order(query.as_deref(), &headers, &body) } else { Vec::new() };
    let (status, answer, outgoing) = {
        let mut inner = lock(&shared);
        let index = inner.calls.len();
        let (status, answer) = match handle(&mut inner, &method, &params, token.as_deref(), &order) {
            Ok(result) => (200, json!({"result": result, "time": time_block(start, SystemTime::now())})),
            Err(e) => (e.status, e.body()),
        };
        let lose = status == 200
            && inner.lost_answers.get_mut(&method).is_some_and(|n| {
                let lose = *n > 0;
                *n = n.saturating_sub(1);
                lose
            });
        let call = RestCall { method, params, at: start, token, http_status: status, via_batch: false };
        inner.calls.insert(index, call);
        let outgoing = std::mem::take(&mut inner.pending);
        inner.in_flight += outgoing.len();
        (status, if lose { Err(answer) } else { Ok(answer) }, outgoing)
    };
    events::deliver_in_background(shared.clone(), outgoing);
    match answer {
        Ok(answer) => respond(status, answer),
        Err(answer) => {
            // The call took effect; only the first half of its answer reaches the caller.
            let text = answer.to_string();
            let cut: String = text.chars().take(text.chars().count() / 2).collect();
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], cut).into_response()
        }
    }
}

/// The checks in order (down, token, query limit, operation limit), then the method.
fn handle(
    inner: &mut Inner,
    method: &str,
    params: &Value,
    token: Option<&str>,
    order: &[String],
) -> Result<Value, RestError> {
    if inner.down {
        return Err(RestError::new(500, "INTERNAL_SERVER_ERROR", "Internal server error"));
    }
    check_token(inner, token)?;
    if inner.forced_query_limit > 0 {
        inner.forced_query_limit -= 1;
        return Err(query_limit());
    }
    if !inner.bucket.admit() {
        return Err(query_limit());
    }
    if method == "batch" {
        return batch(inner, params, order);
    }
    operation_limit(inner, method)?;
    call_method(inner, method, params)
}

fn query_limit() -> RestError {
    RestError::new(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
}

fn check_token(inner: &Inner, token: Option<&str>) -> Result<(), RestError> {
    let no_auth = || RestError::new(401, "NO_AUTH_FOUND", "Wrong authorization data");
    let token = token.filter(|t| !t.is_empty()).ok_or_else(no_auth)?;
    match inner.access.get(token) {
        None => Err(no_auth()),
        Some(until) if *until <= Instant::now() => {
            Err(RestError::new(401, "expired_token", "The access token provided has expired."))
        }
        Some(_) => Ok(()),
    }
}

fn operation_limit(inner: &mut Inner, method: &str) -> Result<(), RestError> {
    if let Some(n) = inner.forced_op_limit.get_mut(method) {
        if *n > 0 {
            *n -= 1;
            return Err(RestError::new(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."));
        }
    }
    Ok(())
}

fn batch(inner: &mut Inner, params: &Value, order: &[String]) -> Result<Value, RestError> {
    let halt = !php_empty(p(params, "halt"));
    let mut cmds: Vec<(String, String)> = match p(params, "cmd") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(Some(v)).unwrap_or_default())).collect(),
        Some(Value::Array(a)) => {
            a.iter().enumerate().map(|(i, v)| (i.to_string(), text(Some(v)).unwrap_or_default())).collect()
        }
        _ => Vec::new(),
    };
    cmds.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    if cmds.len() > MAX_BATCH {
        return Err(RestError::bad("ERROR_BATCH_LENGTH_EXCEEDED", format!("Max batch length exceeded ({MAX_BATCH})")));
    }
    let mut results: Vec<(String, Value)> = Vec::new();
    let mut errors: Vec<(String, Value)> = Vec::new();
    let mut times: Vec<(String, Value)> = Vec::new();
    for (key, cmd) in cmds {
        let t0 = SystemTime::now();
        let (method, query) = cmd.split_once('?').unwrap_or((cmd.as_str(), ""));
        let method = normalize_method(method);
        let mut sub = parse_form_or_json(Some(FORM), query.as_bytes()).unwrap_or_else(|_| json!({}));
        if let Some(m) = sub.as_object_mut() {
            m.remove("auth");
        }
        substitute(&mut sub, &results);
        let outcome = if method == "batch" {
            Err(RestError::new(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Batch call is not allowed"))
        } else {
            operation_limit(inner, &method).and_then(|_| call_method(inner, &method, &sub))
        };
        let status = outcome.as_ref().map(|_| 200).unwrap_or_else(|e| e.status);
        inner.calls.push(RestCall { method, params: sub, at: t0, token: None, http_status: status, via_batch: true });
        times.push((key.clone(), time_block(t0, SystemTime::now())));
        match outcome {
            Ok(v) => results.push((key, v)),
            Err(e) => {
                errors.push((key, e.body()));
                if halt {
                    break;
                }
            }
        }
    }
    Ok(json!({
        "result": php_map(results),
        "result_error": php_map(errors),
        "result_total": [],
        "result_next": [],
        "result_time": php_map(times),
    }))
}

/// Replaces `$result[key][field]…` in string values with earlier results.
fn substitute(v: &mut Value, results: &[(String, Value)]) {
    match v {
        Value::Object(m) => m.values_mut().for_each(|c| substitute(c, results)),
        Value::Array(a) => a.iter_mut().for_each(|c| substitute(c, results)),
        Value::String(s) if s.contains("$result[") => *s = substitute_str(s, results),
        _ => {}
    }
}

fn substitute_str(s: &str, results: &[(String, Value)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("$result[") {
        out.push_str(&rest[..at]);
        let mut tail = &rest[at + "$result".len()..];
        let mut path = Vec::new();
        while let Some(seg) = tail.strip_prefix('[') {
            let Some(close) = seg.find(']') else { break };
            path.push(&seg[..close]);
            tail = &seg[close + 1..];
        }
        let found = path.split_first().and_then(|(key, fields)| {
            let mut node = &results.iter().find(|(k, _)| k == key)?.1;
            for f in fields {
                node = match node {
                    Value::Array(a) => a.get(f.parse::<usize>().ok()?)?,
                    other => other.get(*f)?,
                };
            }
            text(Some(node))
        });
        match found {
            Some(t) => out.push_str(&t),
            None => out.push_str(&rest[at..rest.len() - tail.len()]),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn call_method(inner: &mut Inner, method: &str, params: &Value) -> Result<Value, RestError> {
    match method {
        "app.info" => Ok(app_info(inner)),
        "profile" => Ok(json!({"ID": inner.opts.user_id.to_string(), "ADMIN": true, "NAME": "Admin", "LAST_NAME": ""})),
        "scope" => Ok(json!(inner.opts.scope.split([',', ' ']).filter(|s| !s.is_empty()).collect::<Vec<_>>())),
        "event.bind" => event_bind(inner, params),
        "event.get" => Ok(event_get(inner)),
        "event.unbind" => event_unbind(inner, params),
        "imconnector.register" => Ok(register(inner, params)),
        "imconnector.unregister" => Ok(unregister(inner, params)),
        "imconnector.list" => Ok(connector_list(inner)),
        "imconnector.activate" => activate(inner, params),
        "imconnector.status" => status(inner, params),
        "imconnector.connector.data.set" => data_set(inner, params),
        "imconnector.set.error" => set_error(inner, params),
        "imconnector.chat.name.set" => {
            required_text(params, "CONNECTOR")?;
            required_int(params, "LINE")?;
            Ok(json!(true))
        }
        "imconnector.send.messages" => send_messages(inner, params),
        "imconnector.update.messages" => change_messages(inner, params, MessageKind::Updated),
        "imconnector.delete.messages" => change_messages(inner, params, MessageKind::Deleted),
        "imconnector.send.status.delivery" => status_marks(inner, params, true),
        "imconnector.send.status.reading" => status_marks(inner, params, false),
        "imopenlines.config.add" => {
            let fields = p(params, "PARAMS").cloned().unwrap_or_else(|| json!({}));
            Ok(json!(add_line(inner, &fields)))
        }
        "imopenlines.config.list.get" => Ok(config_list(inner, params)),
        "imopenlines.session.history.get" => session_history(inner, params),
        "imopenlines.config.get" => config_get(inner, params),
        "imopenlines.config.update" => config_update(inner, params),
        "imopenlines.config.delete" => {
            let id = config_id(params)?;
            if inner.delete_line(id) {
                Ok(json!(true))
            } else {
                Err(config_not_found())
            }
        }
        // A message in a chat, e.g. a system note for operators (`SYSTEM=Y`): `DIALOG_ID` is `chat<id>` for
        // a group/open-line chat or a user id. Answers the new message id.
        "im.message.add" => {
            let dialog = required_text(params, "DIALOG_ID")?;
            let message = required_text(params, "MESSAGE")?;
            let chat_ok = dialog.strip_prefix("chat").is_some_and(|id| id.parse::<u64>().is_ok());
            if !chat_ok && dialog.parse::<u64>().is_err() {
                return Err(RestError::new(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty"));
            }
            if message.trim().is_empty() {
                return Err(RestError::new(400, "MESSAGE_EMPTY", "Message can't be empty"));
            }
            Ok(json!(inner.next_message_id()))
        }
        "messageservice.sender.add" => sender_add(inner, params),
        "messageservice.sender.update" => sender_update(inner, params),
        "messageservice.sender.list" => Ok(json!(inner.senders.keys().collect::<Vec<_>>())),
        "messageservice.sender.delete" => sender_delete(inner, params),
        "messageservice.message.status.update" => sms_status(inner, params),
        _ => Err(RestError::new(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")),
    }
}

fn app_info(inner: &Inner) -> Value {
    json!({
        "ID": 7,
        "CODE": inner.opts.client_id,
        "VERSION": 1,
        "STATUS": inner.opts.status,
        "INSTALLED": inner.installed,
        "PAYMENT_EXPIRED": "N",
        "DAYS": null,
        "LANGUAGE_ID": "en",
        "LICENSE": "en_project",
        "LICENSE_TYPE": "project",
        "LICENSE_FAMILY": "project",
    })
}

// ---- events ----

const KNOWN_EVENTS: &[&str] = &[
    "ONAPPINSTALL",
    "ONAPPUNINSTALL",
    "ONAPPUPDATE",
    "ONAPPPAYMENT",
    "ONAPPTEST",
    "ONIMCONNECTORMESSAGEADD",
    "ONIMCONNECTORMESSAGEUPDATE",
    "ONIMCONNECTORMESSAGEDELETE",
    "ONIMCONNECTORDIALOGSTART",
    "ONIMCONNECTORDIALOGFINISH",
    "ONIMCONNECTORSTATUSDELETE",
    "ONIMCONNECTORLINEDELETE",
    "ONOPENLINEMESSAGEADD",
    "ONOPENLINEMESSAGEUPDATE",
    "ONOPENLINEMESSAGEDELETE",
    "ONIMBOTMESSAGEADD",
    "ONEXTERNALCALLSTART",
    "ONEXTERNALCALLBACKSTART",
    "ONOFFLINEEVENT",
];

fn known_event(event: &str) -> bool {
    KNOWN_EVENTS.contains(&event) || event.starts_with("ONCRM") || event.starts_with("ONTASK")
}

fn event_bind(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let event = text(p(params, "event")).unwrap_or_default().trim().to_ascii_uppercase();
    if event.is_empty() {
        return Err(RestError::null_arg("EVENT"));
    }
    let offline = text(p(params, "event_type")).is_some_and(|t| t.eq_ignore_ascii_case("offline"));
    let handler = text(p(params, "handler")).unwrap_or_default().trim().to_string();
    if handler.is_empty() && !offline {
        return Err(RestError::null_arg("HANDLER"));
    }
    if !(handler.is_empty() || handler.starts_with("http://") || handler.starts_with("https://")) {
        return Err(RestError::bad("ERROR_ARGUMENT", "Wrong handler URL").argument("HANDLER"));
    }
    if !known_event(&event) {
        return Err(RestError::bad("ERROR_EVENT_NOT_FOUND", "Event not found"));
    }
    if inner.bindings.iter().any(|b| b.event == event && b.handler == handler && b.offline == offline) {
        return Err(RestError::bad("ERROR_HANDLER_ALREADY_EXIST", "Handler already binded"));
    }
    let id = inner.next_binding;
    inner.next_binding += 1;
    let auth_type = int(p(params, "auth_type")).unwrap_or(0);
    inner.bindings.push(BoundEvent { id, event, handler, auth_type, offline });
    Ok(json!(true))
}

fn event_get(inner: &Inner) -> Value {
    Value::Array(
        inner
            .bindings
            .iter()
            .map(|b| {
                json!({"event": b.event, "handler": b.handler, "auth_type": b.auth_type.to_string(),
                       "offline": u8::from(b.offline)})
            })
            .collect(),
    )
}

fn event_unbind(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let event = text(p(params, "event")).unwrap_or_default().trim().to_ascii_uppercase();
    if event.is_empty() {
        return Err(RestError::null_arg("EVENT"));
    }
    let handler = text(p(params, "handler")).filter(|h| !h.is_empty());
    let auth_type = int(p(params, "auth_type"));
    let before = inner.bindings.len();
    inner.bindings.retain(|b| {
        !(b.event == event
            && handler.as_ref().is_none_or(|h| *h == b.handler)
            && auth_type.is_none_or(|a| a == b.auth_type))
    });
    Ok(json!({"count": before - inner.bindings.len()}))
}

// ---- connectors ----

fn register(inner: &mut Inner, params: &Value) -> Value {
    let params = upper_keys(params);
    let fail =
        |code: &str, description: &str| json!({"result": false, "error": code, "error_description": description});
    let id = text(params.get("ID")).unwrap_or_default();
    if id.contains('.') {
        return fail("APPLICATION_REGISTRATION_ERROR_POINT", "The connector ID must not contain a dot");
    }
    if php_empty(params.get("ID")) {
        return fail("CONNECTOR_ID_REQUIRED", "The connector ID is not specified");
    }
    if php_empty(params.get("NAME")) {
        return fail("NAME_REQUIRED", "The connector name is not specified");
    }
    if php_empty(params.get("ICON").and_then(|i| i.get("DATA_IMAGE"))) {
        return fail("ICON_REQUIRED", "The connector icon is not specified");
    }
    if php_empty(params.get("PLACEMENT_HANDLER")) {
        return fail("NO_PLACEMENT_HANDLER", "The placement handler is not specified");
    }
    let id = id.to_lowercase();
    let mut options = params.as_object().cloned().unwrap_or_default();
    let name = options.remove("NAME").unwrap_or(Value::Null);
    let icon = options.remove("ICON").unwrap_or(Value::Null);
    let placement_handler = text(options.remove("PLACEMENT_HANDLER").as_ref()).unwrap_or_default();
    options.remove("ID");
    let connector = Connector { id: id.clone(), name, icon, placement_handler, options: Value::Object(options) };
    inner.connectors.insert(id, connector);
    json!({"result": true})
}

fn unregister(inner: &mut Inner, params: &Value) -> Value {
    let id = text(p(params, "ID")).unwrap_or_default().to_lowercase();
    if id.is_empty() || inner.connectors.remove(&id).is_none() {
        return json!({"result": false, "error": "APPLICATION_UNREGISTRATION_ERROR",
                      "error_description": "Failed to unregister the connector"});
    }
    inner.statuses.retain(|(c, _), _| *c != id);
    inner.data.retain(|(c, _), _| *c != id);
    json!({"result": true})
}

fn connector_list(inner: &Inner) -> Value {
    let mut list = Map::new();
    for (id, name) in [
        ("livechat", "Live chat"),
        ("whatsappbyedna", "WhatsApp by Edna"),
        ("telegrambot", "Telegram"),
        ("vkgroup", "VK"),
        ("facebook", "Facebook"),
        ("network", "Bitrix24.Network"),
    ] {
        list.insert(id.into(), json!(name));
    }
    for c in inner.connectors.values() {
        let name = match &c.name {
            Value::Object(m) => m.values().next().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        list.insert(c.id.clone(), name);
    }
    Value::Object(list)
}

/// Disables `connector` on `line`: status and data are deleted; `ONIMCONNECTORSTATUSDELETE` is queued when a
/// status existed.
pub(super) fn deactivate(inner: &mut Inner, connector: &str, line: u64) {
    inner.data.remove(&(connector.to_string(), line));
    if inner.statuses.remove(&(connector.to_string(), line)).is_some() {
        inner.fire("ONIMCONNECTORSTATUSDELETE", json!({"connector": connector, "line": line}));
    }
}

fn activate(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let connector = required_text(params, "CONNECTOR")?.to_lowercase();
    let line = required_int(params, "LINE")?;
    let active = p(params, "ACTIVE").ok_or_else(|| RestError::null_arg("ACTIVE"))?;
    if php_empty(Some(active)) {
        deactivate(inner, &connector, line);
    } else {
        let status = ConnectorStatus {
            connector: connector.clone(),
            line,
            active: true,
            connected: true,
            registered: true,
            error: false,
        };
        inner.statuses.insert((connector, line), status);
    }
    Ok(json!(true))
}

fn status(inner: &Inner, params: &Value) -> Result<Value, RestError> {
    let connector = required_text(params, "CONNECTOR")?.to_lowercase();
    let line = int(p(params, "LINE")).unwrap_or(0);
    let s = inner.statuses.get(&(connector.clone(), line));
    let configured = s.is_some_and(|s| s.active && s.registered);
    let ok = s.is_some_and(|s| s.active && s.registered && s.connected && !s.error);
    Ok(json!({
        "LINE": line,
        "CONNECTOR": connector,
        "ERROR": s.is_some_and(|s| s.error),
        "CONFIGURED": configured,
        "STATUS": ok,
    }))
}

fn data_set(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let connector = required_text(params, "CONNECTOR")?.to_lowercase();
    let line = required_int(params, "LINE")?;
    let data = p(params, "DATA").filter(|d| d.is_object()).ok_or_else(|| RestError::null_arg("DATA"))?;
    let entry = inner.data.entry((connector, line)).or_insert_with(|| json!({}));
    if let (Some(dst), Value::Object(src)) = (entry.as_object_mut(), upper_keys(data)) {
        // The newer documented behaviour: passed fields are merged, empty strings ignored.
        for (k, v) in src {
            if text(Some(&v)).is_some_and(|t| t.is_empty()) {
                continue;
            }
            dst.insert(k, v);
        }
    }
    Ok(json!(true))
}

fn set_error(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let connector = required_text(params, "CONNECTOR")?.to_lowercase();
    let line = required_int(params, "LINE")?;
    match inner.statuses.get_mut(&(connector, line)) {
        Some(s) => {
            s.error = true;
            Ok(json!(true))
        }
        None => Ok(json!(false)),
    }
}

/// `CONNECTOR`, `LINE` and `MESSAGES` (keys lowercased), each message an object having `parts`.
fn connector_messages(params: &Value, parts: &[&str]) -> Result<(String, u64, Vec<Value>), RestError> {
    let connector = required_text(params, "CONNECTOR")?.to_lowercase();
    let line = required_int(params, "LINE")?;
    let messages =
        p(params, "MESSAGES").filter(|m| !php_empty(Some(m))).ok_or_else(|| RestError::null_arg("MESSAGES"))?;
    let messages = items(&lower_keys(messages)).ok_or_else(|| {
        RestError::bad("ERROR_ARGUMENT", "The value of an argument 'MESSAGES' must be of type array")
            .argument("MESSAGES")
    })?;
    for m in &messages {
        if !m.is_object() {
            return Err(RestError::bad(
                "ERROR_ARGUMENT",
                "The MESSAGES parameter must be an array of messages (arrays)",
            )
            .argument("MESSAGES"));
        }
        if parts.iter().any(|k| !m.get(*k).is_some_and(Value::is_object)) {
            return Err(RestError::bad(
                "ERROR_ARGUMENT",
                "The incorrect structure of a message inside MESSAGES parameter.",
            )
            .argument("MESSAGES"));
        }
    }
    Ok((connector, line, messages))
}

fn require_active(inner: &Inner, connector: &str, line: u64) -> Result<(), RestError> {
    if !inner.connectors.contains_key(connector) {
        return Err(RestError::bad(
            "IMCONNECTOR_NO_CORRECT_PROVIDER",
            "Could not find a suitable provider for the connector",
        ));
    }
    let line_active = inner.lines.get(&line).is_some_and(|l| l.active);
    let connector_active = inner.statuses.get(&(connector.to_string(), line)).is_some_and(|s| s.active);
    if line_active && connector_active {
        Ok(())
    } else {
        Err(RestError::bad("NOT_ACTIVE_LINE", "Line with this ID is inactive or does not exist"))
    }
}

fn missing_data() -> RestError {
    RestError::bad("IMCONNECTOR_NOT_ALL_THE_REQUIRED_DATA", "Not all required data has been provided")
}

fn field(m: &Value, part: &str, key: &str) -> Option<String> {
    text(m.get(part).and_then(|o| o.get(key))).filter(|t| !t.is_empty())
}

fn files_of(message: &Value) -> Vec<Value> {
    message.get("files").and_then(items).unwrap_or_default()
}

fn send_messages(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let (connector, line, messages) = connector_messages(params, &["user", "message", "chat"])?;
    require_active(inner, &connector, line)?;
    for m in &messages {
        let has_text = field(m, "message", "text").is_some();
        let has_files = m.get("message").is_some_and(|msg| !files_of(msg).is_empty());
        if field(m, "user", "id").is_none() || field(m, "chat", "id").is_none() || !(has_text || has_files) {
            return Err(missing_data());
        }
    }
    let chat_group = inner.connectors.get(&connector).and_then(|c| c.options.get("CHAT_GROUP")).is_some_and(|v| {
        matches!(v, Value::Bool(true)) || matches!(text(Some(v)).as_deref(), Some("Y" | "1" | "true"))
    });
    let mut results = Vec::new();
    let mut all = true;
    for m in messages {
        if inner.refused_messages.0 > 0 {
            inner.refused_messages.0 -= 1;
            let (_, code, text) = &inner.refused_messages;
            all = false;
            results.push(json!({
                "user": Value::Null,
                "message": m.get("message").cloned().unwrap_or_else(|| json!({})),
                "chat": {"id": field(&m, "chat", "id")},
                "SUCCESS": false,
                "ERRORS": [{"code": code, "message": text}],
            }));
            continue;
        }
        let ext_user = field(&m, "user", "id").unwrap_or_default();
        let ext_chat = field(&m, "chat", "id").unwrap_or_default();
        let user_key = (connector.clone(), ext_user.clone());
        let bitrix_user = match inner.users.get(&user_key) {
            Some(id) => *id,
            None => {
                let id = inner.next_user;
                inner.next_user += 1;
                inner.users.insert(user_key, id);
                id
            }
        };
        let existing = inner.chats.iter().rev().find(|c| {
            c.connector == connector
                && c.line == line
                && c.external_chat_id == ext_chat
                && (chat_group || c.external_user_id == ext_user)
        });
        let chat = match existing {
            Some(c) => c.clone(),
            None => {
                let chat = OpenChat {
                    connector: connector.clone(),
                    line,
                    external_chat_id: ext_chat.clone(),
                    external_user_id: ext_user.clone(),
                    chat_id: inner.next_chat,
                    session_id: inner.next_session,
                    bitrix_user_id: bitrix_user,
                };
                inner.next_chat += 1;
                inner.next_session += 1;
                inner.chats.push(chat.clone());
                chat
            }
        };
        let message = m.get("message").cloned().unwrap_or_else(|| json!({}));
        let im_message_id = inner.next_message_id();
        inner.messages.push(ChatMessage {
            kind: MessageKind::Sent,
            connector: connector.clone(),
            line,
            chat_id: chat.chat_id,
            external_chat_id: ext_chat.clone(),
            external_user_id: ext_user,
            user: m.get("user").cloned().unwrap_or(Value::Null),
            external_message_id: text(message.get("id")),
            text: text(message.get("text")),
            files: files_of(&message),
            im_message_id,
            message: message.clone(),
            at: SystemTime::now(),
        });
        let mut chat_out = json!({"id": ext_chat});
        if let Some(name) = field(&m, "chat", "name") {
            chat_out["name"] = json!(name);
        }
        if let Some(url) = field(&m, "chat", "url") {
            chat_out["description"] = json!(url);
        }
        let yn = |v: Option<String>| if v.as_deref() == Some("Y") { "Y" } else { "N" };
        results.push(json!({
            "user": bitrix_user.to_string(),
            "message": message,
            "chat": chat_out,
            "extra": {
                "skip_phone_validate": yn(field(&m, "user", "skip_phone_validate")),
                "disable_tracker": yn(field(&m, "message", "disable_crm")),
            },
            "SUCCESS": true,
            "session": {"ID": chat.session_id, "CHAT_ID": chat.chat_id},
        }));
    }
    Ok(json!({"SUCCESS": all, "DATA": {"RESULT": results}}))
}

/// `imopenlines.session.history.get` (`CHAT_ID`, `SESSION_ID`): the session's messages as a map by id, each
/// client message with the external id it was sent with as `params.connectorMid` (as the documented answer
/// shows). Without `SESSION_ID` the chat's latest session. A chat that is not an open line: 400 `CHAT_ID`.
fn session_history(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let chat_id = int(p(params, "CHAT_ID")).filter(|c| *c > 0);
    let session = int(p(params, "SESSION_ID")).filter(|s| *s > 0);
    let chat = inner
        .chats
        .iter()
        .rev()
        .find(|c| chat_id.is_none_or(|id| c.chat_id == id) && session.is_none_or(|s| c.session_id == s))
        .cloned();
    let chat = match (chat, chat_id, session) {
        (Some(c), _, _) => c,
        (None, Some(id), Some(s)) if inner.chats.iter().any(|c| c.chat_id == id) => {
            // A session of this chat with nothing in it (or not ours): an empty history.
            return Ok(json!({"chatId": id, "sessionId": s, "message": [], "usersMessage": {}}));
        }
        (None, None, None) => return Err(RestError::bad("CHAT_ID", "Chat ID can't be empty")),
        _ => return Err(RestError::bad("CHAT_ID", "Chat is not an open line or does not exist")),
    };
    let mut messages = Map::new();
    let mut ids = Vec::new();
    for m in inner.messages.iter().filter(|m| m.chat_id == chat.chat_id && m.kind == MessageKind::Sent) {
        let id = m.im_message_id.to_string();
        let mut params = json!({});
        if let Some(ext) = &m.external_message_id {
            params["connectorMid"] = json!([ext]);
        }
        messages.insert(
            id.clone(),
            json!({
                "id": id,
                "chatid": chat.chat_id.to_string(),
                "senderid": chat.bitrix_user_id.to_string(),
                "recipientid": format!("chat{}", chat.chat_id),
                "text": m.text.clone().unwrap_or_default(),
                "params": params,
            }),
        );
        ids.push(id);
    }
    ids.reverse();
    Ok(json!({
        "chatId": chat.chat_id,
        "sessionId": chat.session_id,
        "userId": format!("chat{}", chat.chat_id),
        "message": Value::Object(messages),
        "usersMessage": {format!("chat{}", chat.chat_id): ids},
    }))
}

fn change_messages(inner: &mut Inner, params: &Value, kind: MessageKind) -> Result<Value, RestError> {
    let (connector, line, messages) = connector_messages(params, &["user", "message", "chat"])?;
    require_active(inner, &connector, line)?;
    for m in &messages {
        if field(m, "user", "id").is_none() || field(m, "chat", "id").is_none() || field(m, "message", "id").is_none() {
            return Err(missing_data());
        }
    }
    let mut all = true;
    let mut results = Vec::new();
    for m in messages {
        let ext_chat = field(&m, "chat", "id").unwrap_or_default();
        let ext_id = field(&m, "message", "id");
        let original = inner
            .messages
            .iter()
            .rev()
            .find(|c| {
                c.kind == MessageKind::Sent
                    && c.connector == connector
                    && c.line == line
                    && c.external_chat_id == ext_chat
                    && c.external_message_id == ext_id
            })
            .cloned();
        let message = m.get("message").cloned().unwrap_or_else(|| json!({}));
        let mut out = json!({"user": m.get("user"), "message": message, "chat": m.get("chat")});
        match original {
            Some(o) => {
                inner.messages.push(ChatMessage {
                    kind,
                    text: text(message.get("text")),
                    files: files_of(&message),
                    user: m.get("user").cloned().unwrap_or(Value::Null),
                    message,
                    at: SystemTime::now(),
                    ..o
                });
                out["SUCCESS"] = json!(true);
            }
            None => {
                all = false;
                out["SUCCESS"] = json!(false);
                out["ERRORS"] = json!([{"code": "MESSAGE_NOT_FOUND", "message": "The message was not found"}]);
            }
        }
        results.push(out);
    }
    Ok(json!({"SUCCESS": all, "DATA": {"RESULT": results}}))
}

fn status_marks(inner: &mut Inner, params: &Value, delivery: bool) -> Result<Value, RestError> {
    let (connector, line, messages) = connector_messages(params, &["im", "message", "chat"])?;
    require_active(inner, &connector, line)?;
    let mut marks = Vec::new();
    for m in &messages {
        let im_chat_id = int(m.get("im").and_then(|i| i.get("chat_id")));
        let im_message_id = int(m.get("im").and_then(|i| i.get("message_id")));
        let (Some(im_chat_id), Some(im_message_id)) = (im_chat_id, im_message_id) else {
            return Err(missing_data());
        };
        let ids = match m.get("message").and_then(|msg| msg.get("id")) {
            Some(Value::Array(ids)) => ids.iter().filter_map(|v| text(Some(v))).collect::<Vec<_>>(),
            _ => {
                return Err(RestError::bad("ERROR_ARGUMENT", "MESSAGES[][message][id] must be an array of message ids")
                    .argument("MESSAGES"))
            }
        };
        let external_chat_id = field(m, "chat", "id").ok_or_else(missing_data)?;
        marks.push(StatusMark {
            connector: connector.clone(),
            line,
            im_chat_id,
            im_message_id,
            external_ids: ids,
            external_chat_id,
            date: field(m, "message", "date"),
        });
    }
    // Bitrix can only mark messages it sent; unknown ones make SUCCESS false (they are recorded anyway).
    let known = marks
        .iter()
        .all(|k| inner.operator_messages.iter().any(|o| o.chat_id == k.im_chat_id && o.message_id == k.im_message_id));
    if delivery {
        inner.delivery.extend(marks);
    } else {
        inner.reading.extend(marks);
    }
    Ok(json!({"SUCCESS": known, "DATA": []}))
}

// ---- open lines ----

/// Creates a line from `PARAMS` (keys uppercased) over Bitrix's defaults; gives its id.
pub(super) fn add_line(inner: &mut Inner, params: &Value) -> u64 {
    let id = inner.next_line;
    inner.next_line += 1;
    let mut fields = json!({
        "ID": id.to_string(),
        "ACTIVE": "Y",
        "LINE_NAME": format!("Open Channel {id}"),
        "CRM": "Y",
        "CRM_CREATE": "lead",
        "CRM_FORWARD": "Y",
        "CRM_SOURCE": "create",
        "QUEUE_TYPE": "evenly",
        "WELCOME_MESSAGE": "Y",
        "LANGUAGE_ID": "en",
        "DATE_CREATE": rfc3339(SystemTime::now()),
    });
    merge_fields(&mut fields, params);
    let mut line = OpenLine { id, name: String::new(), active: true, fields };
    sync_line(&mut line);
    inner.lines.insert(id, line);
    id
}

fn merge_fields(fields: &mut Value, params: &Value) {
    if let (Some(dst), Value::Object(src)) = (fields.as_object_mut(), upper_keys(params)) {
        for (k, v) in src {
            if k != "ID" {
                dst.insert(k, v);
            }
        }
    }
}

fn sync_line(line: &mut OpenLine) {
    line.name = text(line.fields.get("LINE_NAME")).unwrap_or_default();
    line.active = text(line.fields.get("ACTIVE")).as_deref() != Some("N");
}

fn config_id(params: &Value) -> Result<u64, RestError> {
    int(p(params, "CONFIG_ID"))
        .filter(|id| *id > 0)
        .ok_or_else(|| RestError::bad("CONFIG_ID_EMPTY", "Config id is not specified"))
}

fn config_not_found() -> RestError {
    RestError::bad("CONFIG_NOT_FOUND", "Config not found")
}

fn config_get(inner: &Inner, params: &Value) -> Result<Value, RestError> {
    let id = config_id(params)?;
    inner.lines.get(&id).map(|l| l.fields.clone()).ok_or_else(config_not_found)
}

fn config_update(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let id = config_id(params)?;
    let line = inner.lines.get_mut(&id).ok_or_else(config_not_found)?;
    if let Some(fields) = p(params, "PARAMS") {
        merge_fields(&mut line.fields, fields);
        sync_line(line);
    }
    Ok(json!(true))
}

fn config_list(inner: &Inner, params: &Value) -> Value {
    let q = p(params, "PARAMS").cloned().unwrap_or_else(|| json!({}));
    let filter = p(&q, "filter").and_then(Value::as_object).cloned().unwrap_or_default();
    let matches = |fields: &Value| {
        filter.iter().all(|(k, want)| {
            let (negate, name) = match k.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, k.trim_start_matches('=')),
            };
            let have = text(p(fields, name));
            let hit = match want {
                Value::Array(options) => options.iter().any(|o| text(Some(o)) == have),
                other => text(Some(other)) == have,
            };
            hit != negate
        })
    };
    let mut rows: Vec<&OpenLine> = inner.lines.values().filter(|l| matches(&l.fields)).collect();
    let desc = p(&q, "order")
        .and_then(|o| p(o, "ID"))
        .and_then(|d| text(Some(d)))
        .is_some_and(|d| d.eq_ignore_ascii_case("desc"));
    if desc {
        rows.reverse();
    }
    let offset = int(p(&q, "offset")).unwrap_or(0) as usize;
    let limit = int(p(&q, "limit")).unwrap_or(50).min(200) as usize;
    let select: Vec<String> = p(&q, "select")
        .and_then(items)
        .map(|s| s.iter().filter_map(|v| text(Some(v))).map(|s| s.to_ascii_uppercase()).collect())
        .unwrap_or_default();
    let all = select.is_empty() || select.iter().any(|s| s == "*");
    Value::Array(
        rows.into_iter()
            .skip(offset)
            .take(limit)
            .map(|l| {
                if all {
                    l.fields.clone()
                } else {
                    let picked: Map<String, Value> =
                        select.iter().filter_map(|k| l.fields.get(k).map(|v| (k.clone(), v.clone()))).collect();
                    Value::Object(picked)
                }
            })
            .collect(),
    )
}

// ---- messageservice ----

fn sender_error(code: &str, description: &str) -> RestError {
    RestError::bad(code, description)
}

fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn valid_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn sender_add(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let validation = |d: &str| sender_error("ERROR_SENDER_VALIDATION_FAILURE", d);
    let code = text(p(params, "CODE")).unwrap_or_default();
    if code.is_empty() {
        return Err(validation("Empty sender code"));
    }
    if !valid_code(&code) {
        return Err(validation("Invalid sender code"));
    }
    let sender_type = text(p(params, "TYPE")).unwrap_or_default();
    if sender_type.is_empty() {
        return Err(validation("Empty sender type"));
    }
    if sender_type != "SMS" {
        return Err(validation("Invalid sender type"));
    }
    let handler = text(p(params, "HANDLER")).unwrap_or_default();
    if handler.is_empty() {
        return Err(validation("Empty sender handler"));
    }
    if !valid_url(&handler) {
        return Err(validation("Invalid sender handler"));
    }
    let name = p(params, "NAME").cloned().unwrap_or(Value::Null);
    if php_empty(Some(&name)) {
        return Err(validation("Empty sender name"));
    }
    if inner.senders.contains_key(&code) {
        return Err(sender_error("ERROR_SENDER_ALREADY_INSTALLED", "Sender already installed"));
    }
    let description = p(params, "DESCRIPTION").cloned().unwrap_or(Value::Null);
    inner.senders.insert(code.clone(), SmsSender { code, sender_type, handler, name, description });
    Ok(json!(true))
}

fn sender_update(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let code = text(p(params, "CODE")).unwrap_or_default();
    if code.is_empty() {
        return Err(sender_error("ERROR_SENDER_CODE_REQUIRED", "Empty sender code"));
    }
    let handler = text(p(params, "HANDLER")).filter(|h| !h.is_empty());
    let name = p(params, "NAME").filter(|n| !php_empty(Some(n))).cloned();
    let description = p(params, "DESCRIPTION").filter(|n| !php_empty(Some(n))).cloned();
    if handler.is_none() && name.is_none() && description.is_none() {
        return Err(sender_error("ERROR_SENDER_OTHER_PARAMS_REQUIRED", "Handler, name or description required"));
    }
    if handler.as_deref().is_some_and(|h| !valid_url(h)) {
        return Err(sender_error("ERROR_SENDER_VALIDATION_FAILURE", "Invalid sender handler"));
    }
    let sender =
        inner.senders.get_mut(&code).ok_or_else(|| sender_error("ERROR_SENDER_NOT_FOUND", "Sender not found"))?;
    if let Some(h) = handler {
        sender.handler = h;
    }
    if let Some(n) = name {
        sender.name = n;
    }
    if let Some(d) = description {
        sender.description = d;
    }
    Ok(json!(true))
}

fn sender_delete(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let code = text(p(params, "CODE")).unwrap_or_default();
    if code.is_empty() {
        return Err(sender_error("ERROR_SENDER_CODE_REQUIRED", "Empty sender code"));
    }
    inner.senders.remove(&code).ok_or_else(|| sender_error("ERROR_SENDER_NOT_FOUND", "Sender not found"))?;
    Ok(json!(true))
}

const SMS_STATUSES: &[&str] = &["queued", "sent", "delivered", "undelivered", "failed"];

fn sms_status(inner: &mut Inner, params: &Value) -> Result<Value, RestError> {
    let code = text(p(params, "CODE")).unwrap_or_default();
    let message_id = text(p(params, "MESSAGE_ID")).unwrap_or_default();
    let status = text(p(params, "STATUS")).unwrap_or_default().to_ascii_lowercase();
    if !SMS_STATUSES.contains(&status.as_str()) {
        return Err(RestError::bad("ERROR_MESSAGE_STATUS_INCORRECT", "Message status incorrect!"));
    }
    let message = inner
        .sms
        .iter_mut()
        .find(|m| m.message_id == message_id && m.code == code)
        .ok_or_else(|| RestError::bad("ERROR_MESSAGE_NOT_FOUND", "Message not found!"))?;
    message.status = Some(status.clone());
    inner.sms_statuses.push((message_id, status));
    Ok(json!(true))
}
