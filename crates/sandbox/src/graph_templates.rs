//! `GET|POST|DELETE /{version}/{waba-id}/message_templates` of the Graph sandbox
//! (`shared/reference/meta-messaging.md` §7), the template lookup of template sends, and
//! `message_template_status_update` webhooks.
//!
//! - **List**: the WABA's templates in the order they were added, filtered by `name` (substring), `status`,
//!   `category`, `language`; `fields=a,b` keeps those fields (and `id`). Pages of `limit` (default 25):
//!   `{"data":[...],"paging":{"cursors":{"before","after"},"next"?,"previous"?}}`; cursors are opaque (base64 of
//!   the template id), `next`/`previous` are full URLs on this server. An empty result is `{"data":[]}`.
//! - **Create**: `name` (≤512, lowercase letters, digits, `_`), `category` (`MARKETING`, `UTILITY`,
//!   `AUTHENTICATION`), `language`, `components` (objects with a known `type`, exactly one `BODY`, with `text`
//!   unless it is an authentication body); a (name, language) that exists is refused. Refusals are 100 with
//!   details. The answer is `{"id","status","category"}`; the status is `PENDING`, or `APPROVED` with
//!   [`GraphSandbox::set_template_auto_approve`] (then an `APPROVED` status webhook follows).
//! - **Delete**: `?name=` removes every language of that name (`&hsm_id=` only that template) → `{"success":true}`.
//! - **Webhook**: `message_template_status_update` with `event`, the integer `message_template_id`, name,
//!   `message_template_language` written with a hyphen as in Meta's example (`en-US`), `reason: "NONE"` and
//!   `message_template_category`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::graph::{gate, invalid, is_object_id, lock, no_such_object, ok_headers, GraphSandbox, Inner, Shared};
use super::graph_messages::post_webhook;
use super::graph_validate::Refusal;
use super::meta::MetaWebhookSender;
use super::payloads;

/// Page size when the request gives no `limit`.
pub const DEFAULT_PAGE_SIZE: usize = 25;

const CATEGORIES: &[&str] = &["MARKETING", "UTILITY", "AUTHENTICATION"];
const COMPONENT_TYPES: &[&str] = &["HEADER", "BODY", "FOOTER", "BUTTONS"];

#[derive(Debug, Default)]
pub(super) struct TemplateStore {
    by_waba: HashMap<String, Vec<Value>>,
    auto_approve: bool,
}

impl TemplateStore {
    pub(super) fn find_by_id(&self, id: &str) -> Option<&Value> {
        self.by_waba.values().flatten().find(|t| str_of(t, "id") == id)
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn new_id() -> String {
    rand::thread_rng().gen_range(1_000_000_000_000_000u64..9_000_000_000_000_000u64).to_string()
}

/// The template a send names, if it can be sent from this number: the WABA of the number
/// ([`GraphSandbox::add_number`]) must hold `(name, language.code)` with status `APPROVED`. Otherwise 132001
/// (132015 for `PAUSED`, 132016 for `DISABLED`).
pub(super) fn find_sendable(inner: &Inner, pnid: &str, req: &Value) -> Result<Value, Refusal> {
    let name = str_of(req, "name");
    let lang = req.get("language").map(|l| str_of(l, "code")).unwrap_or("");
    let not_found = || Refusal::new(132001, format!("template name ({name}) does not exist in {lang}"));
    let waba = inner.numbers.get(pnid).map(|n| n.waba_id.as_str()).ok_or_else(not_found)?;
    let def = inner
        .templates
        .by_waba
        .get(waba)
        .and_then(|ts| ts.iter().find(|t| str_of(t, "name") == name && str_of(t, "language") == lang))
        .ok_or_else(not_found)?;
    match str_of(def, "status") {
        "APPROVED" => Ok(def.clone()),
        "PAUSED" => Err(Refusal::new(132015, format!("template name ({name}) is paused in {lang}"))),
        "DISABLED" => Err(Refusal::new(132016, format!("template name ({name}) is disabled in {lang}"))),
        other => Err(Refusal::new(132001, format!("template name ({name}) in {lang} is not approved ({other})"))),
    }
}

fn cursor(t: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(str_of(t, "id"))
}

fn position(items: &[Value], cursor_text: &str) -> Option<usize> {
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor_text).ok()?;
    let id = String::from_utf8(id).ok()?;
    items.iter().position(|t| str_of(t, "id") == id)
}

/// One page: `[start, end)` of `items`, after the `after` cursor or before the `before` one.
pub(super) fn page_bounds(
    items: &[Value],
    limit: usize,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<(usize, usize), String> {
    if let Some(a) = after {
        let start = position(items, a).ok_or_else(|| format!("Invalid cursor: {a}"))? + 1;
        return Ok((start, (start + limit).min(items.len())));
    }
    if let Some(b) = before {
        let end = position(items, b).ok_or_else(|| format!("Invalid cursor: {b}"))?;
        return Ok((end.saturating_sub(limit), end));
    }
    Ok((0, limit.min(items.len())))
}

fn project(t: &Value, fields: Option<&[String]>) -> Value {
    let Some(fields) = fields else { return t.clone() };
    let mut out = Map::new();
    if let Some(o) = t.as_object() {
        for (k, v) in o {
            if k == "id" || fields.iter().any(|f| f == k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()).into_owned().collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `GET /{version}/{waba-id}/message_templates`.
pub(super) async fn list(
    State(shared): State<Shared>,
    Path((version, waba)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&shared);
    let path = format!("/{version}/{waba}/message_templates");
    if let Err(r) = gate(&mut inner, "get", &version, path.clone(), &query, &headers, None) {
        return *r;
    }
    if !is_object_id(&waba) {
        return no_such_object("GET", &waba);
    }
    let pairs = query_pairs(&query);
    let limit = match param(&pairs, "limit") {
        None => DEFAULT_PAGE_SIZE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return invalid(format!("Param limit must be a positive integer, got {l}")),
        },
    };
    let fields: Option<Vec<String>> =
        param(&pairs, "fields").map(|f| f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let items: Vec<Value> = inner
        .templates
        .by_waba
        .get(&waba)
        .map(|ts| {
            ts.iter()
                .filter(|t| param(&pairs, "name").is_none_or(|n| str_of(t, "name").contains(n)))
                .filter(|t| param(&pairs, "status").is_none_or(|s| str_of(t, "status").eq_ignore_ascii_case(s)))
                .filter(|t| param(&pairs, "category").is_none_or(|c| str_of(t, "category").eq_ignore_ascii_case(c)))
                .filter(|t| param(&pairs, "language").is_none_or(|l| str_of(t, "language") == l))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let (start, end) = match page_bounds(&items, limit, param(&pairs, "after"), param(&pairs, "before")) {
        Ok(b) => b,
        Err(e) => return invalid(e),
    };
    let data: Vec<Value> = items[start..end].iter().map(|t| project(t, fields.as_deref())).collect();
    if data.is_empty() {
        return (ok_headers(&version), Json(json!({"data": []}))).into_response();
    }
    let link = |key: &str, c: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| !matches!(k.as_str(), "after" | "before" | "limit")) {
            s.append_pair(k, v);
        }
        s.append_pair("limit", &limit.to_string());
        s.append_pair(key, c);
        format!("{}{}?{}", inner.base_url, path, s.finish())
    };
    let before = cursor(&items[start]);
    let after = cursor(&items[end - 1]);
    let mut paging = json!({"cursors": {"before": before, "after": after}});
    if end < items.len() {
        paging["next"] = json!(link("after", &after));
    }
    if start > 0 {
        paging["previous"] = json!(link("before", &before));
    }
    (ok_headers(&version), Json(json!({"data": data, "paging": paging}))).into_response()
}

/// Checks a creation body; gives the template to store (without id and status).
pub(super) fn check_create(body: &Value) -> Result<Map<String, Value>, String> {
    let o = body.as_object().ok_or("The request body must be a JSON object")?;
    let name = o.get("name").and_then(Value::as_str).ok_or("The parameter name is required")?;
    if name.is_empty()
        || name.chars().count() > 512
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "Param name must be at most 512 lowercase alphanumeric characters or underscores, got {name}"
        ));
    }
    let category = o.get("category").and_then(Value::as_str).ok_or("The parameter category is required")?;
    let category = category.to_ascii_uppercase();
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(format!("Param category must be one of {{{}}}, got {category}", CATEGORIES.join(", ")));
    }
    let language = o.get("language").and_then(Value::as_str).filter(|l| !l.trim().is_empty());
    let language = language.ok_or("The parameter language is required")?;
    let components = o.get("components").and_then(Value::as_array).filter(|c| !c.is_empty());
    let components = components.ok_or("The parameter components is required and must be a non-empty array")?;
    let mut bodies = 0;
    for (i, c) in components.iter().enumerate() {
        let kind = c.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase).unwrap_or_default();
        if !COMPONENT_TYPES.contains(&kind.as_str()) {
            return Err(format!("Param components[{i}][type] must be one of {{{}}}", COMPONENT_TYPES.join(", ")));
        }
        if kind == "BODY" {
            bodies += 1;
            let auth = c.get("add_security_recommendation").is_some() || category == "AUTHENTICATION";
            match c.get("text").and_then(Value::as_str) {
                Some(t) if t.chars().count() > 1024 => {
                    return Err(format!("Param components[{i}][text] must be at most 1024 characters long"))
                }
                Some(_) => {}
                None if auth => {}
                None => return Err(format!("The parameter components[{i}][text] is required")),
            }
        }
    }
    if bodies != 1 {
        return Err("A template needs exactly one BODY component".into());
    }
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("language".into(), json!(language));
    out.insert("category".into(), json!(category));
    out.insert("components".into(), json!(components));
    if let Some(f) = o.get("parameter_format").and_then(Value::as_str) {
        let f = f.to_ascii_uppercase();
        if f != "POSITIONAL" && f != "NAMED" {
            return Err(format!("Param parameter_format must be one of {{positional, named}}, got {f}"));
        }
        out.insert("parameter_format".into(), json!(f));
    }
    Ok(out)
}

/// The `message_template_status_update` webhook for `t` becoming `event`.
fn status_webhook(waba_id: &str, t: &Value, event: &str) -> Value {
    let id = str_of(t, "id").parse::<u64>().unwrap_or_default();
    let language = str_of(t, "language").replace('_', "-");
    let mut env = payloads::template_status_update(waba_id, id, str_of(t, "name"), &language, event);
    if let Some(v) = env.pointer_mut("/entry/0/changes/0/value").and_then(Value::as_object_mut) {
        v.insert("message_template_category".into(), json!(str_of(t, "category")));
    }
    env
}

/// `POST /{version}/{waba-id}/message_templates`.
pub(super) async fn create(
    State(shared): State<Shared>,
    Path((version, waba)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (response, webhook) = {
        let mut inner = lock(&shared);
        let path = format!("/{version}/{waba}/message_templates");
        if let Err(r) = gate(&mut inner, "post", &version, path, &query, &headers, parsed.clone()) {
            return *r;
        }
        if !is_object_id(&waba) {
            return no_such_object("POST", &waba);
        }
        let Some(body) = parsed else { return invalid("The request body is not valid JSON".into()) };
        let mut t = match check_create(&body) {
            Ok(t) => t,
            Err(e) => return invalid(e),
        };
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        let language = t.get("language").and_then(Value::as_str).unwrap_or_default();
        let exists =
            inner.templates.by_waba.get(&waba).is_some_and(|list| {
                list.iter().any(|x| str_of(x, "name") == name && str_of(x, "language") == language)
            });
        if exists {
            return invalid("Content in this language already exists".into());
        }
        let approve = inner.templates.auto_approve;
        let id = new_id();
        let status = if approve { "APPROVED" } else { "PENDING" };
        t.insert("id".into(), json!(id));
        t.insert("status".into(), json!(status));
        let t = Value::Object(t);
        let category = str_of(&t, "category").to_string();
        inner.templates.by_waba.entry(waba.clone()).or_default().push(t.clone());
        let webhook = match (&inner.webhook, approve) {
            (Some(sender), true) => Some((sender.clone(), status_webhook(&waba, &t, "APPROVED"))),
            _ => None,
        };
        let answer = json!({"id": id, "status": status, "category": category});
        ((ok_headers(&version), Json(answer)).into_response(), webhook)
    };
    if let Some((sender, payload)) = webhook {
        let shared = shared.clone();
        tokio::spawn(async move {
            post_webhook(&shared, &sender, payload).await;
        });
    }
    response
}

/// `DELETE /{version}/{waba-id}/message_templates?name=<name>[&hsm_id=<id>]`.
pub(super) async fn delete(
    State(shared): State<Shared>,
    Path((version, waba)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&shared);
    let path = format!("/{version}/{waba}/message_templates");
    if let Err(r) = gate(&mut inner, "delete", &version, path, &query, &headers, None) {
        return *r;
    }
    if !is_object_id(&waba) {
        return no_such_object("DELETE", &waba);
    }
    let pairs = query_pairs(&query);
    let Some(name) = param(&pairs, "name").filter(|n| !n.is_empty()) else {
        return invalid("The parameter name is required".into());
    };
    let hsm_id = param(&pairs, "hsm_id");
    let list = inner.templates.by_waba.entry(waba).or_default();
    let before = list.len();
    list.retain(|t| !(str_of(t, "name") == name && hsm_id.is_none_or(|h| str_of(t, "id") == h)));
    if list.len() == before {
        return invalid(format!("Message template not found: {name}"));
    }
    (ok_headers(&version), Json(json!({"success": true}))).into_response()
}

/// Test helpers of the template side.
impl GraphSandbox {
    /// Stores a template of `waba_id` as Meta lists it (`name`, `language`, `status`, `category`, `id`,
    /// `components`[, `parameter_format`]). A missing `id` is generated and a missing `status` is `APPROVED`.
    /// Gives the id.
    pub fn add_template(&self, waba_id: &str, mut template: Value) -> String {
        let id = match template.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => new_id(),
        };
        if let Some(o) = template.as_object_mut() {
            o.insert("id".into(), json!(id));
            o.entry("status").or_insert_with(|| json!("APPROVED"));
        }
        lock(&self.inner).templates.by_waba.entry(waba_id.into()).or_default().push(template);
        id
    }

    /// The templates of `waba_id`, in the order they were added.
    pub fn templates(&self, waba_id: &str) -> Vec<Value> {
        lock(&self.inner).templates.by_waba.get(waba_id).cloned().unwrap_or_default()
    }

    /// The template `(name, language)` of `waba_id`.
    pub fn template(&self, waba_id: &str, name: &str, language: &str) -> Option<Value> {
        let inner = lock(&self.inner);
        let list = inner.templates.by_waba.get(waba_id)?;
        list.iter().find(|t| str_of(t, "name") == name && str_of(t, "language") == language).cloned()
    }

    /// Templates created through the API are `APPROVED` at once (with an `APPROVED` webhook) instead of `PENDING`.
    pub fn set_template_auto_approve(&self, auto: bool) {
        lock(&self.inner).templates.auto_approve = auto;
    }

    /// Sets a template's status and posts the `message_template_status_update` webhook (`event` = `status`),
    /// waiting for its delivery when a webhook target is set. False when there is no such template.
    pub async fn set_template_status(&self, waba_id: &str, name: &str, language: &str, status: &str) -> bool {
        let (sender, payload): (Option<MetaWebhookSender>, Value) =
            {
                let mut inner = lock(&self.inner);
                let sender = inner.webhook.clone();
                let Some(t) = inner.templates.by_waba.get_mut(waba_id).and_then(|ts| {
                    ts.iter_mut().find(|t| str_of(t, "name") == name && str_of(t, "language") == language)
                }) else {
                    return false;
                };
                t["status"] = json!(status);
                (sender, status_webhook(waba_id, t, status))
            };
        if let Some(sender) = sender {
            post_webhook(&self.inner, &sender, payload).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "EAAG-test-token";
    const WABA: &str = "102290129340398";

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("{}", 1000 + i), "name": format!("t{i}")})).collect()
    }

    #[test]
    fn pages_follow_cursors() {
        let all = items(60);
        assert_eq!(page_bounds(&all, 25, None, None), Ok((0, 25)));
        let c = cursor(&all[24]);
        assert_eq!(page_bounds(&all, 25, Some(&c), None), Ok((25, 50)));
        let c = cursor(&all[49]);
        assert_eq!(page_bounds(&all, 25, Some(&c), None), Ok((50, 60)));
        let c = cursor(&all[25]);
        assert_eq!(page_bounds(&all, 25, None, Some(&c)), Ok((0, 25)));
        assert!(page_bounds(&all, 25, Some("bogus"), None).is_err());
        assert_eq!(page_bounds(&[], 25, None, None), Ok((0, 0)));
    }

    #[test]
    fn creation_is_checked() {
        let good = json!({"name": "order_confirmation", "category": "utility", "language": "en_US",
            "components": [{"type": "BODY", "text": "Hi {{1}}"}]});
        let t = check_create(&good).unwrap();
        assert_eq!(t["category"], "UTILITY");
        for (patch, needle) in [
            (json!({"name": "Order"}), "name"),
            (json!({"name": "x".repeat(513)}), "name"),
            (json!({"category": "SPAM"}), "category"),
            (json!({"language": ""}), "language"),
            (json!({"components": []}), "components"),
            (json!({"components": [{"type": "HEADER", "format": "TEXT", "text": "h"}]}), "BODY"),
            (json!({"components": [{"type": "BODY"}]}), "text"),
            (json!({"components": [{"type": "WIDGET"}]}), "type"),
            (json!({"parameter_format": "mixed"}), "parameter_format"),
        ] {
            let mut b = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                b[k] = v.clone();
            }
            let e = check_create(&b).unwrap_err();
            assert!(e.contains(needle), "{patch}: {e}");
        }
        let auth = json!({"name": "otp", "category": "AUTHENTICATION", "language": "en_US",
            "components": [{"type": "BODY", "add_security_recommendation": true}]});
        check_create(&auth).unwrap();
    }

    #[test]
    fn status_webhook_shape() {
        let t = json!({"id": "1689556908129832", "name": "order_confirmation", "language": "en_US",
            "category": "UTILITY"});
        let w = status_webhook(WABA, &t, "APPROVED");
        let v = &w["entry"][0]["changes"][0]["value"];
        assert_eq!(w["entry"][0]["changes"][0]["field"], "message_template_status_update");
        assert!(w["entry"][0]["time"].is_u64());
        assert_eq!(v["message_template_id"], json!(1689556908129832u64));
        assert_eq!(v["message_template_language"], "en-US");
        assert_eq!(v["message_template_category"], "UTILITY");
        assert_eq!((v["event"].as_str(), v["reason"].as_str()), (Some("APPROVED"), Some("NONE")));
    }

    async fn get(url: &str) -> (u16, Value) {
        let r = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn listing_sixty_templates_takes_three_pages() {
        let g = GraphSandbox::start().await.unwrap();
        g.allow_token(TOKEN, "1");
        for i in 0..60 {
            g.add_template(
                WABA,
                json!({"name": format!("tpl_{i:02}"), "language": "en_US", "category": "UTILITY",
                "components": [{"type": "BODY", "text": "x"}]}),
            );
        }
        let mut url = format!("{}/v23.0/{WABA}/message_templates", g.base_url());
        let mut names = Vec::new();
        let mut pages = 0;
        loop {
            let (s, page) = get(&url).await;
            assert_eq!(s, 200, "{page}");
            pages += 1;
            let data = page["data"].as_array().unwrap();
            names.extend(data.iter().map(|t| t["name"].as_str().unwrap().to_string()));
            assert!(page["paging"]["cursors"]["before"].is_string() && page["paging"]["cursors"]["after"].is_string());
            match page["paging"]["next"].as_str() {
                Some(next) => url = next.to_string(),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(names, (0..60).map(|i| format!("tpl_{i:02}")).collect::<Vec<_>>());
        // limit, fields, filters, and back with `previous`.
        let (_, page) =
            get(&format!("{}/v23.0/{WABA}/message_templates?limit=10&fields=name,status", g.base_url())).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 10);
        let keys: Vec<&String> = page["data"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "name", "status"]);
        let (_, second) = get(page["paging"]["next"].as_str().unwrap()).await;
        assert_eq!(second["data"][0]["name"], "tpl_10");
        let (_, back) = get(second["paging"]["previous"].as_str().unwrap()).await;
        assert_eq!(back["data"][0]["name"], "tpl_00");
        let (_, filtered) = get(&format!("{}/v23.0/{WABA}/message_templates?name=tpl_5", g.base_url())).await;
        assert_eq!(filtered["data"].as_array().unwrap().len(), 10);
        assert!(filtered["paging"].get("next").is_none());
        let (_, empty) = get(&format!("{}/v23.0/555/message_templates", g.base_url())).await;
        assert_eq!(empty, json!({"data": []}));
        let (s, e) = get(&format!("{}/v23.0/{WABA}/message_templates?after=zzz", g.base_url())).await;
        assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(100)));
    }

    #[tokio::test]
    async fn create_delete_and_status_changes() {
        let g = GraphSandbox::start().await.unwrap();
        g.allow_token(TOKEN, "1");
        let http = reqwest::Client::new();
        let url = format!("{}/v23.0/{WABA}/message_templates", g.base_url());
        let body = json!({"name": "order_confirmation", "category": "UTILITY", "language": "en_US",
            "components": [{"type": "BODY", "text": "Hi {{1}}", "example": {"body_text": [["Pablo"]]}}]});
        let r = http.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let a: Value = r.json().await.unwrap();
        assert_eq!((a["status"].as_str(), a["category"].as_str()), (Some("PENDING"), Some("UTILITY")));
        let id = a["id"].as_str().unwrap().to_string();
        let again = http.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        assert_eq!(again.status(), 400);
        let unauth = http.post(&url).bearer_auth("bad").json(&body).send().await.unwrap();
        assert_eq!(unauth.status(), 401);
        // GET /{template-id}
        let (s, t) = get(&format!("{}/v23.0/{id}", g.base_url())).await;
        assert_eq!((s, t["name"].as_str()), (200, Some("order_confirmation")));

        // Status changes post the webhook (and wait for it).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        g.set_webhook(&hook, "secret");
        assert!(g.set_template_status(WABA, "order_confirmation", "en_US", "APPROVED").await);
        assert_eq!(g.template(WABA, "order_confirmation", "en_US").unwrap()["status"], "APPROVED");
        let sent = g.webhooks();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].delivery.delivered);
        let v = &sent[0].payload["entry"][0]["changes"][0]["value"];
        assert_eq!((v["event"].as_str(), v["message_template_id"].as_u64()), (Some("APPROVED"), id.parse().ok()));
        // Auto-approval answers APPROVED and posts the webhook.
        g.set_template_auto_approve(true);
        let other = json!({"name": "second", "category": "MARKETING", "language": "pt_BR",
            "components": [{"type": "BODY", "text": "Oi"}]});
        let a: Value = http.post(&url).bearer_auth(TOKEN).json(&other).send().await.unwrap().json().await.unwrap();
        assert_eq!(a["status"], "APPROVED");
        for _ in 0..100 {
            if g.webhooks().len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(g.webhooks()[1].payload["entry"][0]["changes"][0]["value"]["message_template_language"], "pt-BR");
        let r = http.delete(format!("{url}?name=second")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!g.set_template_status(WABA, "nope", "en_US", "APPROVED").await);

        let r = http.delete(format!("{url}?name=order_confirmation")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
        assert!(g.templates(WABA).is_empty());
        let r = http.delete(format!("{url}?name=order_confirmation")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
}
