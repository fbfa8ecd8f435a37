//! Validation of `POST /{version}/{phone-number-id}/messages` bodies, as pure functions
//! (`shared/reference/meta-messaging.md` §5, §14.4). A refusal carries Meta's code and `error_data.details` naming
//! the field the way Meta's messages do (`Param text['body'] ...`):
//!
//! - **131008** a required parameter is missing;
//! - **131009** a value is not valid (too long, too many, not unique, not a URL, ...);
//! - **100** a parameter of the wrong JSON type, an unknown value of an enumeration, or a parameter that does not
//!   belong there (a caption on audio);
//! - **131051** an unknown message `type`;
//! - for templates ([`check_template_send`]): **132000** parameter count, **132012** parameter format.
//!
//! Lengths are counted in characters (Unicode scalar values).
//!
//! Deviations, chosen for a predictable emulator: `type` is required (Meta defaults it to `text`); a `to` without
//! `+` is taken as the full international number (Meta would prepend the business number's country code), so
//! `wa_id` is always the digits of `to`; media ids must be decimal strings (existence is not checked).

use std::collections::HashSet;

use serde_json::{Map, Value};

/// A refused body: Meta's error code and the `error_data.details` naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i64,
    pub details: String,
}

impl Refusal {
    pub fn new(code: i64, details: impl Into<String>) -> Refusal {
        Refusal { code, details: details.into() }
    }
}

type Checked<T> = Result<T, Refusal>;

/// What a valid send is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// `to` as given (the answer's `contacts[].input`).
    pub to: String,
    /// The digits of `to` (the answer's `contacts[].wa_id`); for `recipient_type: "group"`, `to` itself.
    pub wa_id: String,
    /// `type`: `text`, `template`, `reaction`, ...
    pub kind: String,
    /// `biz_opaque_callback_data`, echoed in every status.
    pub callback_data: Option<String>,
}

/// Message types Meta's send API knows.
pub const TYPES: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "reaction",
    "interactive",
    "template",
];

/// Interactive types accepted besides the four checked in detail (`button`, `list`, `cta_url`,
/// `location_request_message`); for these only `action` is required.
const OTHER_INTERACTIVE: &[&str] = &[
    "flow",
    "product",
    "product_list",
    "catalog_message",
    "call_permission_request",
    "address_message",
    "order_details",
    "order_status",
    "voice_call",
];

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}['{key}']")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn missing(path: &str) -> Refusal {
    Refusal::new(131008, format!("The parameter {path} is required."))
}

fn wrong_type(path: &str, kind: &str) -> Refusal {
    Refusal::new(100, format!("Param {path} must be {kind}."))
}

fn not_valid(path: &str, why: &str) -> Refusal {
    Refusal::new(131009, format!("Param {path} {why}"))
}

fn obj<'a>(v: &'a Value, path: &str) -> Checked<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| wrong_type(path, "a JSON object"))
}

/// The member `key` of `o` as an object; `Ok(None)` when absent.
fn opt_obj<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Checked<Option<&'a Map<String, Value>>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => obj(v, &child(path, key)).map(Some),
    }
}

fn req_obj<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Checked<&'a Map<String, Value>> {
    opt_obj(o, key, path)?.ok_or_else(|| missing(&child(path, key)))
}

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Checked<Option<&'a str>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(&child(path, key), "a string")),
    }
}

fn req_str<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Checked<&'a str> {
    match opt_str(o, key, path)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(missing(&child(path, key))),
    }
}

fn opt_array<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Checked<Option<&'a Vec<Value>>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(wrong_type(&child(path, key), "an array")),
    }
}

fn req_array<'a>(o: &'a Map<String, Value>, key: &str, path: &str) -> Checked<&'a Vec<Value>> {
    opt_array(o, key, path)?.ok_or_else(|| missing(&child(path, key)))
}

fn opt_bool(o: &Map<String, Value>, key: &str, path: &str) -> Checked<Option<bool>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong_type(&child(path, key), "a boolean")),
    }
}

fn max_len(s: &str, max: usize, path: &str) -> Checked<()> {
    if s.chars().count() > max {
        return Err(not_valid(path, &format!("must be at most {max} characters long.")));
    }
    Ok(())
}

/// A string member of at most `max` characters; `required` decides whether absence is refused.
fn text_field<'a>(
    o: &'a Map<String, Value>,
    key: &str,
    path: &str,
    max: usize,
    required: bool,
) -> Checked<Option<&'a str>> {
    let s = if required { Some(req_str(o, key, path)?) } else { opt_str(o, key, path)? };
    if let Some(s) = s {
        max_len(s, max, &child(path, key))?;
    }
    Ok(s)
}

fn no_member(o: &Map<String, Value>, key: &str, path: &str) -> Checked<()> {
    if o.contains_key(key) {
        return Err(Refusal::new(100, format!("Param {} is not a valid parameter.", child(path, key))));
    }
    Ok(())
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// The recipient's WhatsApp id: the digits of `to`, which may hold `+`, `-`, `(`, `)` and spaces.
pub fn wa_id_of(to: &str) -> Option<String> {
    if !to.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | ' ')) {
        return None;
    }
    if to.trim_start().strip_prefix('+').unwrap_or(to).contains('+') {
        return None;
    }
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    (5..=15).contains(&digits.len()).then_some(digits)
}

/// Checks a send body (anything but `status: "read"`). Template bodies get only the shape checks here; their
/// parameters are checked against the stored template with [`check_template_send`].
pub fn check_message(body: &Value) -> Checked<Send> {
    let o = obj(body, "body")?;
    check_product(o)?;
    let group = match opt_str(o, "recipient_type", "")? {
        None | Some("individual") => false,
        Some("group") => true,
        Some(other) => {
            return Err(Refusal::new(
                100,
                format!("Param recipient_type must be one of {{individual, group}}, got {other}."),
            ))
        }
    };
    let to = req_str(o, "to", "")?;
    let wa_id = if group {
        to.to_string()
    } else {
        wa_id_of(to).ok_or_else(|| not_valid("to", "is not a valid WhatsApp phone number."))?
    };
    let kind = req_str(o, "type", "")?;
    if !TYPES.contains(&kind) {
        return Err(Refusal::new(131051, format!("Message type {kind} is not currently supported.")));
    }
    if let Some(ctx) = opt_obj(o, "context", "")? {
        req_str(ctx, "message_id", "context")?;
    }
    let callback_data = text_field(o, "biz_opaque_callback_data", "", 512, false)?.map(String::from);
    if kind == "contacts" {
        let cards = req_array(o, "contacts", "")?;
        check_contacts(cards)?;
        return Ok(Send { to: to.to_string(), wa_id, kind: kind.to_string(), callback_data });
    }
    let payload = req_obj(o, kind, "")?;
    match kind {
        "text" => {
            text_field(payload, "body", "text", 4096, true)?;
            opt_bool(payload, "preview_url", "text")?;
        }
        "image" | "video" | "audio" | "document" | "sticker" => check_media(payload, kind, kind)?,
        "location" => check_location(payload, "location")?,
        "reaction" => {
            req_str(payload, "message_id", "reaction")?;
            // `emoji` may be "" (removes the reaction) but must be there.
            if opt_str(payload, "emoji", "reaction")?.is_none() {
                return Err(missing("reaction['emoji']"));
            }
        }
        "interactive" => check_interactive(payload)?,
        "template" => {
            req_str(payload, "name", "template")?;
            let lang = req_obj(payload, "language", "template")?;
            req_str(lang, "code", "template['language']")?;
            if let Some(components) = opt_array(payload, "components", "template")? {
                for (i, c) in components.iter().enumerate() {
                    let p = index("template['components']", i);
                    let c = obj(c, &p)?;
                    req_str(c, "type", &p)?;
                    if c.get("index").is_some_and(|v| !v.is_string()) {
                        return Err(wrong_type(&child(&p, "index"), "a string"));
                    }
                    opt_array(c, "parameters", &p)?;
                }
            }
        }
        _ => {}
    }
    Ok(Send { to: to.to_string(), wa_id, kind: kind.to_string(), callback_data })
}

/// `contacts` (an array, unlike the other types' objects): 1 to 5 cards, each with `name.formatted_name`.
fn check_contacts(cards: &[Value]) -> Checked<()> {
    if cards.is_empty() || cards.len() > 5 {
        return Err(not_valid("contacts", "must hold 1 to 5 contacts."));
    }
    for (i, c) in cards.iter().enumerate() {
        let p = index("contacts", i);
        let c = obj(c, &p)?;
        let name = req_obj(c, "name", &p)?;
        req_str(name, "formatted_name", &child(&p, "name"))?;
    }
    Ok(())
}

fn check_product(o: &Map<String, Value>) -> Checked<()> {
    match opt_str(o, "messaging_product", "")? {
        None => Err(missing("messaging_product")),
        Some("whatsapp") => Ok(()),
        Some(other) => {
            Err(Refusal::new(100, format!("Param messaging_product must be one of {{whatsapp}}, got {other}.")))
        }
    }
}

/// Checks a mark-as-read body: `{"messaging_product","status":"read","message_id"[,"typing_indicator":{"type":"text"}]}`.
pub fn check_mark_read(body: &Value) -> Checked<()> {
    let o = obj(body, "body")?;
    check_product(o)?;
    match opt_str(o, "status", "")? {
        Some("read") => {}
        Some(other) => return Err(Refusal::new(100, format!("Param status must be one of {{read}}, got {other}."))),
        None => return Err(missing("status")),
    }
    req_str(o, "message_id", "")?;
    if let Some(t) = opt_obj(o, "typing_indicator", "")? {
        match req_str(t, "type", "typing_indicator")? {
            "text" => {}
            other => {
                return Err(Refusal::new(
                    100,
                    format!("Param typing_indicator['type'] must be one of {{text}}, got {other}."),
                ))
            }
        }
    }
    Ok(())
}

/// A media object (`image`, `video`, `audio`, `document`, `sticker`, or an interactive/template header media):
/// exactly one of `id`/`link`, the caption rules of `kind`.
fn check_media(m: &Map<String, Value>, kind: &str, path: &str) -> Checked<()> {
    let id = opt_str(m, "id", path)?;
    let link = opt_str(m, "link", path)?;
    match (id, link) {
        (None, None) => return Err(Refusal::new(131008, format!("Param {path} must have one of id or link."))),
        (Some(_), Some(_)) => return Err(not_valid(path, "must have only one of id or link.")),
        (Some(id), None) => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not_valid(&child(path, "id"), "is not a valid media id."));
            }
        }
        (None, Some(link)) => {
            if !is_http_url(link) {
                return Err(not_valid(&child(path, "link"), "must be a valid http or https URL."));
            }
        }
    }
    match kind {
        "image" | "video" | "document" => {
            text_field(m, "caption", path, 1024, false)?;
        }
        _ => no_member(m, "caption", path)?,
    }
    if kind == "document" || kind == "header-document" {
        if let Some(name) = opt_str(m, "filename", path)? {
            if name.trim().is_empty() {
                return Err(not_valid(&child(path, "filename"), "must not be empty."));
            }
            max_len(name, 240, &child(path, "filename"))?;
        }
    } else {
        no_member(m, "filename", path)?;
    }
    if kind == "audio" {
        opt_bool(m, "voice", path)?;
    } else {
        no_member(m, "voice", path)?;
    }
    Ok(())
}

/// A latitude or longitude: a number or a numeric string (the OAS types them as strings, examples use numbers).
fn coordinate(o: &Map<String, Value>, key: &str, path: &str, bound: f64) -> Checked<()> {
    let p = child(path, key);
    let v = match o.get(key) {
        None | Some(Value::Null) => return Err(missing(&p)),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => return Err(wrong_type(&p, "a number")),
    };
    match v {
        Some(x) if x.is_finite() && x.abs() <= bound => Ok(()),
        _ => Err(not_valid(&p, &format!("must be a number between -{bound} and {bound}."))),
    }
}

fn check_location(l: &Map<String, Value>, path: &str) -> Checked<()> {
    coordinate(l, "latitude", path, 90.0)?;
    coordinate(l, "longitude", path, 180.0)?;
    opt_str(l, "name", path)?;
    opt_str(l, "address", path)?;
    Ok(())
}

fn check_interactive(i: &Map<String, Value>) -> Checked<()> {
    const P: &str = "interactive";
    let kind = req_str(i, "type", P)?;
    if !["button", "list", "cta_url", "location_request_message"].contains(&kind) && !OTHER_INTERACTIVE.contains(&kind)
    {
        return Err(Refusal::new(
            100,
            format!("Param interactive['type'] must be a valid interactive type, got {kind}."),
        ));
    }
    if matches!(kind, "call_permission_request" | "voice_call") {
        // Only the body of these can be customised (calling-outbound.md §3.1, §5).
        no_member(i, "header", P)?;
    }
    if kind == "call_permission_request" {
        no_member(i, "footer", P)?;
    }
    if let Some(h) = opt_obj(i, "header", P)? {
        let hp = child(P, "header");
        let htype = req_str(h, "type", &hp)?;
        match htype {
            "text" => {
                text_field(h, "text", &hp, 60, true)?;
            }
            "image" | "video" | "document" if kind != "list" => {
                let m = req_obj(h, htype, &hp)?;
                check_media(m, "header", &child(&hp, htype))?;
            }
            _ => return Err(not_valid(&child(&hp, "type"), &format!("{htype} is not supported for {kind} messages."))),
        }
    }
    let body_required = !matches!(kind, "product" | "catalog_message" | "order_status");
    match opt_obj(i, "body", P)? {
        Some(b) => {
            text_field(b, "text", &child(P, "body"), 1024, true)?;
        }
        None if body_required => return Err(missing("interactive['body']")),
        None => {}
    }
    if let Some(f) = opt_obj(i, "footer", P)? {
        text_field(f, "text", &child(P, "footer"), 60, true)?;
    }
    let action = req_obj(i, "action", P)?;
    let ap = child(P, "action");
    match kind {
        "button" => check_buttons(action, &ap),
        "list" => check_list(action, &ap),
        "cta_url" => {
            if req_str(action, "name", &ap)? != "cta_url" {
                return Err(not_valid(&child(&ap, "name"), "must be cta_url."));
            }
            let pp = child(&ap, "parameters");
            let params = req_obj(action, "parameters", &ap)?;
            text_field(params, "display_text", &pp, 20, true)?;
            if !is_http_url(req_str(params, "url", &pp)?) {
                return Err(not_valid(&child(&pp, "url"), "must be a valid http or https URL."));
            }
            Ok(())
        }
        "location_request_message" => {
            if req_str(action, "name", &ap)? != "send_location" {
                return Err(not_valid(&child(&ap, "name"), "must be send_location."));
            }
            Ok(())
        }
        "call_permission_request" => {
            if req_str(action, "name", &ap)? != "call_permission_request" {
                return Err(not_valid(&child(&ap, "name"), "must be call_permission_request."));
            }
            no_member(action, "parameters", &ap)
        }
        "voice_call" => {
            if req_str(action, "name", &ap)? != "voice_call" {
                return Err(not_valid(&child(&ap, "name"), "must be voice_call."));
            }
            if let Some(params) = opt_obj(action, "parameters", &ap)? {
                let pp = child(&ap, "parameters");
                text_field(params, "display_text", &pp, 20, false)?;
                text_field(params, "payload", &pp, 512, false)?;
                match params.get("ttl_minutes") {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) if n.as_i64().is_some_and(|t| (1..=43_200).contains(&t)) => {}
                    Some(Value::Number(_)) => {
                        return Err(not_valid(&child(&pp, "ttl_minutes"), "must be between 1 and 43200."))
                    }
                    Some(_) => return Err(wrong_type(&child(&pp, "ttl_minutes"), "an integer")),
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_buttons(action: &Map<String, Value>, ap: &str) -> Checked<()> {
    let buttons = req_array(action, "buttons", ap)?;
    let bp = child(ap, "buttons");
    if buttons.is_empty() || buttons.len() > 3 {
        return Err(not_valid(&bp, "must hold 1 to 3 buttons."));
    }
    let mut titles = HashSet::new();
    let mut ids = HashSet::new();
    for (n, b) in buttons.iter().enumerate() {
        let p = index(&bp, n);
        let b = obj(b, &p)?;
        if req_str(b, "type", &p)? != "reply" {
            return Err(not_valid(&child(&p, "type"), "must be reply."));
        }
        let reply = req_obj(b, "reply", &p)?;
        let rp = child(&p, "reply");
        let id = text_field(reply, "id", &rp, 256, true)?.unwrap_or_default();
        if id.trim() != id {
            return Err(not_valid(&child(&rp, "id"), "must not have leading or trailing spaces."));
        }
        let title = text_field(reply, "title", &rp, 20, true)?.unwrap_or_default();
        if !titles.insert(title) {
            return Err(not_valid(&child(&rp, "title"), "must be unique: buttons titles must be unique."));
        }
        if !ids.insert(id) {
            return Err(not_valid(&child(&rp, "id"), "must be unique: buttons ids must be unique."));
        }
    }
    Ok(())
}

fn check_list(action: &Map<String, Value>, ap: &str) -> Checked<()> {
    text_field(action, "button", ap, 20, true)?;
    let sections = req_array(action, "sections", ap)?;
    let sp = child(ap, "sections");
    if sections.is_empty() || sections.len() > 10 {
        return Err(not_valid(&sp, "must hold 1 to 10 sections."));
    }
    let mut total = 0usize;
    let mut ids = HashSet::new();
    for (s, section) in sections.iter().enumerate() {
        let p = index(&sp, s);
        let section = obj(section, &p)?;
        text_field(section, "title", &p, 24, sections.len() > 1)?;
        let rows = req_array(section, "rows", &p)?;
        let rp = child(&p, "rows");
        if rows.is_empty() {
            return Err(not_valid(&rp, "must hold at least 1 row."));
        }
        total += rows.len();
        if total > 10 {
            return Err(not_valid(&sp, "must hold at most 10 rows in total."));
        }
        for (r, row) in rows.iter().enumerate() {
            let p = index(&rp, r);
            let row = obj(row, &p)?;
            let id = text_field(row, "id", &p, 200, true)?.unwrap_or_default();
            if !ids.insert(id) {
                return Err(not_valid(&child(&p, "id"), "must be unique: row ids must be unique."));
            }
            text_field(row, "title", &p, 24, true)?;
            text_field(row, "description", &p, 72, false)?;
        }
    }
    Ok(())
}

/// The distinct placeholders of a template text, in order of first appearance: `{{1}}`, `{{2}}` give
/// `["1","2"]`; named ones (`{{first_name}}`) give their names.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

fn component<'a>(components: &'a [Value], kind: &str) -> Option<&'a Map<String, Value>> {
    components
        .iter()
        .filter_map(Value::as_object)
        .find(|c| c.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(kind)))
}

fn params_of(c: Option<&Map<String, Value>>) -> Vec<&Value> {
    c.and_then(|c| c.get("parameters")).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

fn count_mismatch(what: &str, got: usize, expected: usize) -> Refusal {
    Refusal::new(
        132000,
        format!(
            "{what}: number of localizable_params ({got}) does not match the expected number of params ({expected})"
        ),
    )
}

fn format_mismatch(details: String) -> Refusal {
    Refusal::new(132012, details)
}

fn param_type(p: &Value) -> &str {
    p.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Text parameters (header, body): the types allowed, `text` present, and for named templates the names.
fn check_text_params(what: &str, params: &[&Value], expected: &[String], named: bool, allowed: &[&str]) -> Checked<()> {
    if params.len() != expected.len() {
        return Err(count_mismatch(what, params.len(), expected.len()));
    }
    let mut seen = HashSet::new();
    for (i, p) in params.iter().enumerate() {
        let t = param_type(p);
        if !allowed.contains(&t) {
            return Err(format_mismatch(format!("{what}: parameter {i} has type '{t}', expected one of {allowed:?}")));
        }
        if p.get(t).is_none() {
            return Err(format_mismatch(format!("{what}: parameter {i} of type '{t}' has no '{t}' object")));
        }
        if t == "text" {
            match p.get("text").and_then(Value::as_str) {
                Some(s) if s.chars().count() <= 32768 => {}
                Some(_) => return Err(not_valid(&format!("{what} parameter {i} text"), "is too long.")),
                None => return Err(format_mismatch(format!("{what}: parameter {i} text must be a string"))),
            }
        }
        if named {
            let Some(name) = p.get("parameter_name").and_then(Value::as_str) else {
                return Err(format_mismatch(format!("{what}: parameter {i} needs a parameter_name (named template)")));
            };
            if !expected.iter().any(|e| e == name) || !seen.insert(name) {
                return Err(Refusal::new(
                    132000,
                    format!("{what}: parameter_name '{name}' does not match the template's parameters {expected:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a template send's `template` object against the stored definition `def` (as Meta lists it:
/// `components[]` with `HEADER{format,text}`, `BODY{text}`, `BUTTONS{buttons}`; optional `parameter_format`):
///
/// - body and text-header parameters: as many as the distinct `{{n}}` placeholders (132000), of the allowed types
///   with their object (132012); named templates need matching `parameter_name`s;
/// - a media or location header needs one parameter of that kind, a valid media object (132012 otherwise);
/// - a dynamic URL button (`{{1}}` in its url) needs its `button` component (`sub_type: "url"`, `index` the
///   button's position as a string) with one text parameter (132000).
pub fn check_template_send(def: &Value, req: &Value) -> Checked<()> {
    let def_components = def.get("components").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let req_components = req.get("components").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let named = def.get("parameter_format").and_then(Value::as_str).is_some_and(|f| f.eq_ignore_ascii_case("named"));

    let def_header = component(def_components, "header");
    let req_header = component(req_components, "header");
    let header_params = params_of(req_header);
    let format =
        def_header.and_then(|h| h.get("format")).and_then(Value::as_str).unwrap_or("TEXT").to_ascii_uppercase();
    match (def_header, format.as_str()) {
        (None, _) => {
            if !header_params.is_empty() {
                return Err(count_mismatch("header", header_params.len(), 0));
            }
        }
        (Some(h), "TEXT") => {
            let expected = placeholders(h.get("text").and_then(Value::as_str).unwrap_or(""));
            check_text_params("header", &header_params, &expected, named, &["text"])?;
        }
        (Some(_), media) => {
            let kind = media.to_ascii_lowercase();
            let [p] = header_params.as_slice() else {
                return Err(format_mismatch(format!(
                    "header: Format mismatch, expected {media}, received {} parameters",
                    header_params.len()
                )));
            };
            if param_type(p) != kind {
                return Err(format_mismatch(format!(
                    "header: Format mismatch, expected {media}, received {}",
                    param_type(p).to_ascii_uppercase()
                )));
            }
            let object = p
                .get(&kind)
                .and_then(Value::as_object)
                .ok_or_else(|| format_mismatch(format!("header: the {kind} parameter needs a '{kind}' object")))?;
            let checked = if kind == "location" {
                check_location(object, "header location")
            } else {
                // A template header's media takes no caption; a document may name its file (`filename`).
                check_media(
                    object,
                    if kind == "document" { "header-document" } else { "header" },
                    &format!("header {kind}"),
                )
            };
            checked.map_err(|e| format_mismatch(format!("header: {}", e.details)))?;
        }
    }

    let body_text = component(def_components, "body").and_then(|b| b.get("text")).and_then(Value::as_str);
    let expected = placeholders(body_text.unwrap_or(""));
    let body_params = params_of(component(req_components, "body"));
    check_text_params("body", &body_params, &expected, named, &["text", "currency", "date_time"])?;

    let buttons = component(def_components, "buttons")
        .and_then(|b| b.get("buttons"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let button_component = |i: usize| {
        req_components.iter().filter_map(Value::as_object).find(|c| {
            c.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("button"))
                && c.get("index").and_then(Value::as_str) == Some(i.to_string().as_str())
        })
    };
    for (i, b) in buttons.iter().enumerate() {
        let kind = b.get("type").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
        let given = button_component(i);
        let sub_type = given.and_then(|c| c.get("sub_type")).and_then(Value::as_str).map(str::to_ascii_lowercase);
        let params = params_of(given);
        let dynamic_url =
            kind == "URL" && b.get("url").and_then(Value::as_str).is_some_and(|u| !placeholders(u).is_empty());
        if dynamic_url {
            if params.len() != 1 {
                return Err(count_mismatch(&format!("button {i}"), params.len(), 1));
            }
        } else if kind == "COPY_CODE" {
            // A copy-code button needs its coupon code (coupon code templates: one `coupon_code` parameter).
            if sub_type.as_deref() != Some("copy_code") || params.len() != 1 {
                return Err(count_mismatch(&format!("button {i}"), params.len(), 1));
            }
            if param_type(params[0]) != "coupon_code" {
                return Err(format_mismatch(format!("button {i}: a copy_code button takes a coupon_code parameter")));
            }
            match params[0].get("coupon_code").and_then(Value::as_str) {
                Some(c) if !c.is_empty() && c.chars().count() <= 15 => {}
                _ => return Err(not_valid(&format!("button {i} coupon_code"), "must be 1 to 15 characters.")),
            }
        } else if kind == "QUICK_REPLY" && given.is_some() {
            // A quick-reply payload is optional; when given, it is one `payload` parameter.
            if sub_type.as_deref() != Some("quick_reply") || params.len() != 1 || param_type(params[0]) != "payload" {
                return Err(format_mismatch(format!("button {i}: a quick_reply button takes one payload parameter")));
            }
        } else if given.is_some() && kind != "URL" && kind != "OTP" && kind != "QUICK_REPLY" {
            return Err(format_mismatch(format!("button {i}: the template's {kind} button takes no parameters")));
        }
    }
    for c in req_components.iter().filter_map(Value::as_object) {
        let is_button = c.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("button"));
        let index = c.get("index").and_then(Value::as_str).and_then(|i| i.parse::<usize>().ok());
        if is_button && index.is_none_or(|i| i >= buttons.len()) {
            return Err(not_valid("template['components'] button index", "does not name a button of the template."));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn send(kind: &str, object: Value) -> Value {
        let mut v = json!({"messaging_product": "whatsapp", "to": "+1 (650) 555-1234", "type": kind});
        v[kind] = object;
        v
    }

    fn refused(body: Value) -> Refusal {
        check_message(&body).expect_err(&format!("should be refused: {body}"))
    }

    fn assert_refused(body: Value, code: i64, needle: &str) {
        let r = refused(body.clone());
        assert_eq!(r.code, code, "{body}: {r:?}");
        assert!(r.details.contains(needle), "{body}: {:?} lacks {needle}", r.details);
    }

    fn buttons(n: usize) -> Value {
        let b: Vec<Value> = (0..n)
            .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("T{i}")}}))
            .collect();
        json!({"type": "button", "body": {"text": "Pick"}, "action": {"buttons": b}})
    }

    fn list(rows: &[usize]) -> Value {
        let sections: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(s, n)| {
                let rows: Vec<Value> =
                    (0..*n).map(|r| json!({"id": format!("s{s}r{r}"), "title": format!("Row {r}")})).collect();
                json!({"title": format!("S{s}"), "rows": rows})
            })
            .collect();
        json!({"type": "list", "body": {"text": "Pick"}, "action": {"button": "Options", "sections": sections}})
    }

    #[test]
    fn text_and_common_fields() {
        let ok = check_message(&send("text", json!({"body": "hi", "preview_url": true}))).unwrap();
        assert_eq!(ok.to, "+1 (650) 555-1234");
        assert_eq!(ok.wa_id, "16505551234");
        assert_eq!(ok.kind, "text");
        check_message(&send("text", json!({"body": "é".repeat(4096)}))).unwrap();
        assert_refused(send("text", json!({"body": "x".repeat(4097)})), 131009, "text['body']");
        assert_refused(send("text", json!({})), 131008, "text['body']");
        assert_refused(send("text", json!({"body": 5})), 100, "text['body']");
        assert_refused(json!({"messaging_product": "whatsapp", "to": "1650", "type": "text"}), 131009, "to");
        assert_refused(json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}), 131008, "to");
        assert_refused(
            json!({"to": "16505551234", "type": "text", "text": {"body": "x"}}),
            131008,
            "messaging_product",
        );
        assert_refused(
            json!({"messaging_product": "sms", "to": "16505551234", "type": "text", "text": {"body": "x"}}),
            100,
            "messaging_product",
        );
        assert_refused(json!({"messaging_product": "whatsapp", "to": "16505551234"}), 131008, "type");
        assert_refused(send("hologram", json!({})), 131051, "hologram");
        assert_refused(json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "text"}), 131008, "text");
        let mut b = send("text", json!({"body": "x"}));
        b["biz_opaque_callback_data"] = json!("tracking-1");
        assert_eq!(check_message(&b).unwrap().callback_data.as_deref(), Some("tracking-1"));
        b["biz_opaque_callback_data"] = json!("x".repeat(513));
        assert_refused(b, 131009, "biz_opaque_callback_data");
        let mut g = send("text", json!({"body": "x"}));
        g["recipient_type"] = json!("group");
        g["to"] = json!("EgxSwYyf2L3Q");
        assert_eq!(check_message(&g).unwrap().wa_id, "EgxSwYyf2L3Q");
    }

    #[test]
    fn media_objects() {
        check_message(&send("image", json!({"id": "1037543291543636", "caption": "c"}))).unwrap();
        check_message(&send("document", json!({"link": "https://x.example/a.pdf", "filename": "a.pdf"}))).unwrap();
        check_message(&send("audio", json!({"id": "1", "voice": true}))).unwrap();
        assert_refused(send("image", json!({})), 131008, "image");
        assert_refused(send("image", json!({"id": "1", "link": "https://x.example/a.jpg"})), 131009, "only one");
        assert_refused(send("image", json!({"link": "ftp://x.example/a.jpg"})), 131009, "image['link']");
        assert_refused(send("image", json!({"id": "abc"})), 131009, "image['id']");
        assert_refused(send("video", json!({"id": "1", "caption": "c".repeat(1025)})), 131009, "video['caption']");
        assert_refused(send("audio", json!({"id": "1", "caption": "c"})), 100, "audio['caption']");
        assert_refused(send("sticker", json!({"id": "1", "caption": "c"})), 100, "sticker['caption']");
        assert_refused(send("document", json!({"id": "1", "filename": " "})), 131009, "document['filename']");
        assert_refused(send("image", json!({"id": "1", "filename": "a.jpg"})), 100, "image['filename']");
    }

    #[test]
    fn location_contacts_reaction() {
        check_message(&send("location", json!({"latitude": -23.5, "longitude": "-46.6", "name": "SP"}))).unwrap();
        assert_refused(send("location", json!({"latitude": 91, "longitude": 0})), 131009, "latitude");
        assert_refused(send("location", json!({"latitude": 1})), 131008, "longitude");
        let card = json!({"name": {"formatted_name": "Ana"}, "phones": [{"phone": "+1"}]});
        check_message(&send("contacts", json!([card.clone()]))).unwrap();
        assert_refused(send("contacts", json!([])), 131009, "contacts");
        assert_refused(send("contacts", json!(vec![card; 6])), 131009, "contacts");
        assert_refused(send("contacts", json!([{"name": {}}])), 131008, "contacts[0]['name']['formatted_name']");
        check_message(&send("reaction", json!({"message_id": "wamid.X", "emoji": ""}))).unwrap();
        assert_refused(send("reaction", json!({"message_id": "wamid.X"})), 131008, "emoji");
    }

    #[test]
    fn interactive_buttons() {
        check_message(&send("interactive", buttons(3))).unwrap();
        assert_refused(send("interactive", buttons(4)), 131009, "interactive['action']['buttons']");
        assert_refused(send("interactive", buttons(0)), 131009, "1 to 3");
        let mut b = buttons(2);
        b["action"]["buttons"][1]["reply"]["title"] = json!("T0");
        assert_refused(send("interactive", b), 131009, "['buttons'][1]['reply']['title']");
        let mut b = buttons(1);
        b["action"]["buttons"][0]["reply"]["title"] = json!("x".repeat(21));
        assert_refused(send("interactive", b), 131009, "['title']");
        let mut b = buttons(1);
        b["action"]["buttons"][0]["reply"]["id"] = json!("x".repeat(257));
        assert_refused(send("interactive", b), 131009, "['reply']['id']");
        let mut b = buttons(1);
        b["action"]["buttons"][0]["reply"]["id"] = json!(" x");
        assert_refused(send("interactive", b), 131009, "leading");
        let mut b = buttons(1);
        b["header"] = json!({"type": "text", "text": "h".repeat(61)});
        assert_refused(send("interactive", b), 131009, "interactive['header']['text']");
        let mut b = buttons(1);
        b["header"] = json!({"type": "image", "image": {"id": "5"}});
        check_message(&send("interactive", b.clone())).unwrap();
        b["body"]["text"] = json!("b".repeat(1025));
        assert_refused(send("interactive", b), 131009, "interactive['body']['text']");
        let mut b = buttons(1);
        b["footer"] = json!({"text": "f".repeat(61)});
        assert_refused(send("interactive", b), 131009, "interactive['footer']['text']");
        let mut b = buttons(1);
        b.as_object_mut().unwrap().remove("body");
        assert_refused(send("interactive", b), 131008, "interactive['body']");
    }

    #[test]
    fn interactive_lists_and_cta() {
        check_message(&send("interactive", list(&[4, 6]))).unwrap();
        assert_refused(send("interactive", list(&[5, 6])), 131009, "10 rows");
        assert_refused(send("interactive", list(&[1; 11])), 131009, "10 sections");
        let mut l = list(&[2]);
        l["action"]["sections"][0]["rows"][1]["title"] = json!("t".repeat(25));
        assert_refused(send("interactive", l), 131009, "['rows'][1]['title']");
        let mut l = list(&[2]);
        l["action"]["sections"][0]["rows"][0]["description"] = json!("d".repeat(73));
        assert_refused(send("interactive", l), 131009, "['description']");
        let mut l = list(&[2]);
        l["action"]["sections"][0]["rows"][0]["id"] = json!("i".repeat(201));
        assert_refused(send("interactive", l), 131009, "['rows'][0]['id']");
        let mut l = list(&[1, 1]);
        l["action"]["sections"][1].as_object_mut().unwrap().remove("title");
        assert_refused(send("interactive", l), 131008, "['sections'][1]['title']");
        let mut l = list(&[1]);
        l["action"]["button"] = json!("b".repeat(21));
        assert_refused(send("interactive", l), 131009, "interactive['action']['button']");
        let mut l = list(&[1]);
        l["header"] = json!({"type": "image", "image": {"id": "5"}});
        assert_refused(send("interactive", l), 131009, "header");
        let cta = json!({"type": "cta_url", "body": {"text": "b"},
            "action": {"name": "cta_url", "parameters": {"display_text": "See", "url": "https://x.example"}}});
        check_message(&send("interactive", cta.clone())).unwrap();
        let mut c = cta;
        c["action"]["parameters"]["display_text"] = json!("d".repeat(21));
        assert_refused(send("interactive", c), 131009, "display_text");
    }

    #[test]
    fn call_permission_requests_and_voice_call_buttons() {
        let perm = json!({"type": "call_permission_request", "body": {"text": "May we call?"},
                          "action": {"name": "call_permission_request"}});
        assert!(check_message(&send("interactive", perm.clone())).is_ok());
        let mut p = perm.clone();
        p["footer"] = json!({"text": "x"});
        assert_refused(send("interactive", p), 100, "interactive['footer']");
        let mut p = perm.clone();
        p["header"] = json!({"type": "text", "text": "x"});
        assert_refused(send("interactive", p), 100, "interactive['header']");
        let mut p = perm;
        p["action"]["name"] = json!("voice_call");
        assert_refused(send("interactive", p), 131009, "must be call_permission_request");
        let call = json!({"type": "voice_call", "body": {"text": "Call us"},
                          "action": {"name": "voice_call", "parameters": {"display_text": "Call on WhatsApp", "ttl_minutes": 100, "payload": "p"}}});
        assert!(check_message(&send("interactive", call.clone())).is_ok());
        let mut c = call.clone();
        c["action"]["parameters"]["ttl_minutes"] = json!(43_201);
        assert_refused(send("interactive", c), 131009, "ttl_minutes");
        let mut c = call.clone();
        c["action"]["parameters"]["display_text"] = json!("x".repeat(21));
        assert_refused(send("interactive", c), 131009, "display_text");
        let mut c = call;
        c["action"]["parameters"]["payload"] = json!("x".repeat(513));
        assert_refused(send("interactive", c), 131009, "payload");
        let bare = json!({"type": "voice_call", "body": {"text": "Call"}, "action": {"name": "voice_call"}});
        assert!(check_message(&send("interactive", bare)).is_ok());
    }

    #[test]
    fn template_copy_code_and_quick_reply_buttons() {
        let def = json!({"components": [{"type": "BODY", "text": "Use {{1}}"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"}, {"type": "COPY_CODE", "example": "SAVE20"}]}]});
        let body = json!({"type": "body", "parameters": [{"type": "text", "text": "SAVE20"}]});
        let code = |c: &str| {
            json!({"type": "button", "sub_type": "copy_code", "index": "1",
                                    "parameters": [{"type": "coupon_code", "coupon_code": c}]})
        };
        let qr = json!({"type": "button", "sub_type": "quick_reply", "index": "0",
                        "parameters": [{"type": "payload", "payload": "STOP"}]});
        let req = |components: Value| json!({"name": "sale", "language": {"code": "en_US"}, "components": components});
        assert_eq!(check_template_send(&def, &req(json!([body.clone(), qr.clone(), code("SAVE20")]))), Ok(()));
        assert_eq!(check_template_send(&def, &req(json!([body.clone(), code("SAVE20")]))), Ok(()), "payload optional");
        assert_eq!(check_template_send(&def, &req(json!([body.clone()]))).unwrap_err().code, 132000);
        assert_eq!(
            check_template_send(&def, &req(json!([body.clone(), code(&"X".repeat(16))]))).unwrap_err().code,
            131009
        );
        let mut wrong = qr.clone();
        wrong["parameters"][0] = json!({"type": "text", "text": "x"});
        assert_eq!(check_template_send(&def, &req(json!([body.clone(), wrong, code("A")]))).unwrap_err().code, 132012);
        let mut beyond = qr;
        beyond["index"] = json!("5");
        assert_eq!(check_template_send(&def, &req(json!([body, beyond, code("A")]))).unwrap_err().code, 131009);
    }

    #[test]
    fn mark_read() {
        check_mark_read(&json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A"})).unwrap();
        check_mark_read(&json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A",
            "typing_indicator": {"type": "text"}}))
        .unwrap();
        let r = check_mark_read(&json!({"messaging_product": "whatsapp", "status": "read"})).unwrap_err();
        assert_eq!(r.code, 131008);
        let r = check_mark_read(&json!({"messaging_product": "whatsapp", "status": "read", "message_id": "w",
            "typing_indicator": {"type": "audio"}}))
        .unwrap_err();
        assert_eq!(r.code, 100);
    }

    #[test]
    fn placeholders_are_distinct_in_order() {
        assert_eq!(placeholders("Hi {{1}}, order {{2}} for {{1}}"), vec!["1", "2"]);
        assert_eq!(placeholders("Hi {{ first_name }}!"), vec!["first_name"]);
        assert!(placeholders("no vars, {not} {{}} {{a-b}}").is_empty());
        assert_eq!(placeholders("{{1}}{{2}}{{3"), vec!["1", "2"]);
    }

    fn order_template() -> Value {
        json!({"name": "order_confirmation", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
            "id": "1689556908129832", "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Our {{1}} is on!"},
                {"type": "BODY", "text": "Hi {{1}}! Your order number is {{2}}."},
                {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Shop", "url": "https://x/shop?promo={{1}}"}]}]})
    }

    fn text(t: &str) -> Value {
        json!({"type": "text", "text": t})
    }

    #[test]
    fn template_parameters_are_counted() {
        let def = order_template();
        let good = json!({"name": "order_confirmation", "language": {"code": "en_US"}, "components": [
            {"type": "header", "parameters": [text("Sale")]},
            {"type": "body", "parameters": [text("Pablo"), {"type": "currency", "currency":
                {"fallback_value": "$1", "code": "USD", "amount_1000": 1000}}]},
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("x1")]}]});
        check_template_send(&def, &good).unwrap();
        let mut short = good.clone();
        short["components"][1]["parameters"].as_array_mut().unwrap().pop();
        let r = check_template_send(&def, &short).unwrap_err();
        assert_eq!((r.code, r.details.contains("body")), (132000, true), "{r:?}");
        let mut no_header = good.clone();
        no_header["components"].as_array_mut().unwrap().remove(0);
        assert_eq!(check_template_send(&def, &no_header).unwrap_err().code, 132000);
        let mut no_button = good.clone();
        no_button["components"].as_array_mut().unwrap().pop();
        let r = check_template_send(&def, &no_button).unwrap_err();
        assert_eq!((r.code, r.details.contains("button 1")), (132000, true), "{r:?}");
        let mut bad_type = good.clone();
        bad_type["components"][1]["parameters"][0] = json!({"type": "image", "image": {"id": "1"}});
        assert_eq!(check_template_send(&def, &bad_type).unwrap_err().code, 132012);
        // hello_world: no parameters at all.
        let hello = json!({"name": "hello_world", "language": "en_US", "status": "APPROVED",
            "components": [{"type": "BODY", "text": "Hello World"}]});
        check_template_send(&hello, &json!({"name": "hello_world", "language": {"code": "en_US"}})).unwrap();
        let extra = json!({"name": "hello_world", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [text("x")]}]});
        assert_eq!(check_template_send(&hello, &extra).unwrap_err().code, 132000);
    }

    #[test]
    fn template_media_headers_and_named_parameters() {
        let def = json!({"name": "promo", "language": "pt_BR", "status": "APPROVED", "components": [
            {"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Oi"}]});
        let with = |p: Value| {
            json!({"name": "promo", "language": {"code": "pt_BR"},
            "components": [{"type": "header", "parameters": [p]}]})
        };
        check_template_send(&def, &with(json!({"type": "image", "image": {"link": "https://x.example/a.jpg"}})))
            .unwrap();
        for p in [
            json!({"type": "video", "video": {"id": "1"}}),
            json!({"type": "image", "image": {}}),
            json!({"type": "image", "image": {"id": "1", "link": "https://x.example/a.jpg"}}),
            text("x"),
        ] {
            assert_eq!(check_template_send(&def, &with(p.clone())).unwrap_err().code, 132012, "{p}");
        }
        assert_eq!(
            check_template_send(&def, &json!({"name": "promo", "language": {"code": "pt_BR"}})).unwrap_err().code,
            132012
        );
        let named = json!({"name": "n", "language": "en", "status": "APPROVED", "parameter_format": "NAMED",
            "components": [{"type": "BODY", "text": "Hi {{first_name}}, your {{order_id}}"}]});
        let req = |a: &str, b: &str| {
            json!({"name": "n", "language": {"code": "en"}, "components": [{"type": "body",
            "parameters": [{"type": "text", "text": "x", "parameter_name": a},
                           {"type": "text", "text": "y", "parameter_name": b}]}]})
        };
        check_template_send(&named, &req("order_id", "first_name")).unwrap();
        assert_eq!(check_template_send(&named, &req("order_id", "last_name")).unwrap_err().code, 132000);
        assert_eq!(check_template_send(&named, &req("order_id", "order_id")).unwrap_err().code, 132000);
        let unnamed = json!({"name": "n", "language": {"code": "en"}, "components": [{"type": "body",
            "parameters": [text("x"), text("y")]}]});
        assert_eq!(check_template_send(&named, &unnamed).unwrap_err().code, 132012);
    }

    #[test]
    fn template_shape_checks() {
        assert_refused(send("template", json!({"language": {"code": "en_US"}})), 131008, "template['name']");
        assert_refused(send("template", json!({"name": "x", "language": {}})), 131008, "template['language']['code']");
        assert_refused(
            send(
                "template",
                json!({"name": "x", "language": {"code": "en"},
                "components": [{"type": "button", "sub_type": "url", "index": 0, "parameters": []}]}),
            ),
            100,
            "index",
        );
    }
}
