//! What a Bitrix24 portal posts to us, typed (the Bitrix24 counterpart of `meta::webhook`): the install callback
//! and the events we bind (docs/bitrix24.md; Bitrix24's REST reference for `ONAPPINSTALL`, `ONAPPUNINSTALL` and
//! the `ONIMCONNECTOR*` events). Pure: the body is already decoded (`bitrix::form::parse`), nothing is checked
//! against a portal here (`crm::events::authenticate` does that, in constant time).
//!
//! | request | parsed as |
//! |---|---|
//! | `event=ONAPPINSTALL`, or no `event` and `AUTH_ID` / `auth[refresh_token]` (the iframe install form) | [`Event::Install`] |
//! | `ONAPPUNINSTALL` | [`Event::Uninstall`] |
//! | `ONIMCONNECTORMESSAGEADD` with `data[LINE]`, `data[MESSAGES][]` | [`Event::MessageAdd`] (every item must carry `im[chat_id]`, `im[message_id]`, `chat[id]`) |
//! | `ONIMCONNECTORLINEDELETE` (`data` = the line id) | [`Event::LineDelete`] |
//! | `ONIMCONNECTORSTATUSDELETE` (`data[connector]`, `data[line]`, lower case) | [`Event::StatusDelete`] |
//! | any other event | [`Event::Other`] with its name |
//!
//! Bitrix24 sends ids as numbers or strings, lists as arrays or as objects keyed `0, 1, …` (PHP arrays), and
//! upper- or lower-case keys depending on the event: the parser accepts each of those, and a missing field is an
//! error that names it.

use serde_json::Value;

/// The `auth[…]` block every request carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub member_id: Option<String>,
    pub application_token: Option<String>,
}

/// What an install carries (event or iframe form; bitrix24.md §1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub member_id: String,
    pub application_token: String,
    pub access_token: String,
    pub refresh_token: String,
    pub domain: String,
    /// `auth[client_endpoint]`, else `https://<domain>/rest/`.
    pub client_endpoint: String,
    /// Seconds; 3600 when absent.
    pub expires_in: i64,
    pub scope: Option<String>,
}

/// A file an operator attached (`message.files[]`): `name/type/link` per Bitrix's source, `downloadLink/mime` per
/// one third-party app (both accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorFile {
    pub name: String,
    pub link: String,
    pub mime: Option<String>,
}

/// One message item of `ONIMCONNECTORMESSAGEADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMessage {
    /// `im.chat_id`: the open-line chat.
    pub im_chat_id: String,
    /// `im.message_id`: the portal's message id (our deduplication key).
    pub im_message_id: String,
    /// `chat.id`: our external chat id (the customer's key).
    pub chat_id: String,
    /// `message.user_id`; `0` or empty for the system.
    pub user_id: String,
    pub text: String,
    pub files: Vec<OperatorFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Install(Install),
    Uninstall,
    MessageAdd { connector: Option<String>, line: String, messages: Vec<OperatorMessage> },
    LineDelete { line: Option<String> },
    StatusDelete { connector: Option<String>, line: Option<String> },
    Other { name: String },
}

impl Event {
    /// The connector a connector event names (`None` for other events, or when it names none).
    pub fn connector(&self) -> Option<&str> {
        match self {
            Event::MessageAdd { connector, .. } | Event::StatusDelete { connector, .. } => connector.as_deref(),
            _ => None,
        }
    }
}

/// A request from a portal: its auth block and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub auth: Auth,
    pub event: Event,
}

/// A request that is not what Bitrix24 sends: names the missing or malformed field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ParseError {
    pub field: String,
    pub problem: String,
}

fn missing(field: &str) -> ParseError {
    ParseError { field: field.to_string(), problem: "is missing".into() }
}

/// A non-empty text or a number, as text (ids come as either).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A PHP list: an array, or an object keyed `0, 1, …` (in key order).
fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(m) => m.values().collect(),
        _ => Vec::new(),
    }
}

/// The `auth[…]` block of any decoded request (the SMS provider's sends carry it too).
pub fn auth_of(body: &Value) -> Auth {
    let a = &body["auth"];
    Auth { member_id: text(&a["member_id"]), application_token: text(&a["application_token"]) }
}

/// Whether a decoded body is an install (the event, or the iframe install form).
pub fn is_install(body: &Value) -> bool {
    body["event"].as_str().is_some_and(|e| e.eq_ignore_ascii_case("ONAPPINSTALL"))
        || (body.get("event").is_none()
            && (body.get("AUTH_ID").is_some() || body["auth"].get("refresh_token").is_some()))
}

/// Parses a decoded request body.
pub fn parse(body: &Value) -> Result<Request, ParseError> {
    let auth = auth_of(body);
    if is_install(body) {
        return Ok(Request { auth, event: Event::Install(install(body)?) });
    }
    let name = text(&body["event"]).ok_or_else(|| missing("event"))?.to_ascii_uppercase();
    let data = &body["data"];
    let event = match name.as_str() {
        "ONAPPUNINSTALL" => Event::Uninstall,
        "ONIMCONNECTORMESSAGEADD" => {
            let line = text(&data["LINE"]).ok_or_else(|| missing("data[LINE]"))?;
            let items = list(&data["MESSAGES"]);
            if items.is_empty() {
                return Err(ParseError { field: "data[MESSAGES]".into(), problem: "is missing or empty".into() });
            }
            let messages =
                items.iter().enumerate().map(|(i, item)| operator_message(i, item)).collect::<Result<Vec<_>, _>>()?;
            Event::MessageAdd { connector: text(&data["CONNECTOR"]), line, messages }
        }
        "ONIMCONNECTORLINEDELETE" => {
            Event::LineDelete { line: text(data).or_else(|| text(&data["LINE"])).or_else(|| text(&data["line"])) }
        }
        "ONIMCONNECTORSTATUSDELETE" => Event::StatusDelete {
            connector: text(&data["connector"]).or_else(|| text(&data["CONNECTOR"])),
            line: text(&data["line"]).or_else(|| text(&data["LINE"])),
        },
        _ => Event::Other { name },
    };
    Ok(Request { auth, event })
}

fn install(body: &Value) -> Result<Install, ParseError> {
    let a = &body["auth"];
    // The iframe install form carries the same fields under other names (bitrix24.md §1.2b).
    let pick = |k: &str, alt: &str| text(&a[k]).or_else(|| text(&body[alt]));
    let need = |k: &str, alt: &str| pick(k, alt).ok_or_else(|| missing(&format!("auth[{k}]")));
    let domain = need("domain", "DOMAIN")?;
    Ok(Install {
        member_id: need("member_id", "member_id")?,
        application_token: need("application_token", "APPLICATION_TOKEN")?,
        access_token: need("access_token", "AUTH_ID")?,
        refresh_token: need("refresh_token", "REFRESH_ID")?,
        client_endpoint: pick("client_endpoint", "client_endpoint")
            .unwrap_or_else(|| format!("https://{domain}/rest/")),
        domain,
        expires_in: pick("expires_in", "AUTH_EXPIRES").and_then(|e| e.parse::<i64>().ok()).unwrap_or(3600),
        scope: text(&a["scope"]),
    })
}

fn operator_message(i: usize, item: &Value) -> Result<OperatorMessage, ParseError> {
    let field = |name: &str| format!("data[MESSAGES][{i}][{name}]");
    let need = |v: &Value, name: &str| text(v).ok_or_else(|| missing(&field(name)));
    let files = list(&item["message"]["files"])
        .into_iter()
        .filter_map(|f| {
            let link = text(&f["link"]).or_else(|| text(&f["downloadLink"]))?;
            Some(OperatorFile {
                name: text(&f["name"]).unwrap_or_else(|| "file".into()),
                link,
                mime: text(&f["mime"]).or_else(|| text(&f["type"]).filter(|t| t.contains('/'))),
            })
        })
        .collect();
    Ok(OperatorMessage {
        im_chat_id: need(&item["im"]["chat_id"], "im][chat_id")?,
        im_message_id: need(&item["im"]["message_id"], "im][message_id")?,
        chat_id: need(&item["chat"]["id"], "chat][id")?,
        user_id: text(&item["message"]["user_id"]).unwrap_or_default(),
        text: text(&item["message"]["text"]).unwrap_or_default(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth() -> Value {
        json!({"member_id": "m1", "application_token": "t1", "access_token": "a", "refresh_token": "r",
               "domain": "x.bitrix24.com", "expires_in": "3600", "scope": "imopenlines,imconnector"})
    }

    #[test]
    fn installs_from_the_event_and_from_the_iframe_form() {
        let r = parse(&json!({"event": "ONAPPINSTALL", "auth": auth()})).unwrap();
        match r.event {
            Event::Install(i) => {
                assert_eq!(i.member_id, "m1");
                assert_eq!(i.client_endpoint, "https://x.bitrix24.com/rest/");
                assert_eq!(i.expires_in, 3600);
                assert_eq!(i.scope.as_deref(), Some("imopenlines,imconnector"));
            }
            other => panic!("{other:?}"),
        }
        let form = json!({"AUTH_ID": "a", "REFRESH_ID": "r", "DOMAIN": "y.bitrix24.com", "member_id": "m2",
                          "APPLICATION_TOKEN": "t2", "AUTH_EXPIRES": 1800});
        match parse(&form).unwrap().event {
            Event::Install(i) => assert_eq!((i.member_id.as_str(), i.expires_in), ("m2", 1800)),
            other => panic!("{other:?}"),
        }
        let err = parse(&json!({"event": "ONAPPINSTALL", "auth": {"member_id": "m"}})).unwrap_err();
        assert_eq!(err.field, "auth[domain]");
    }

    #[test]
    fn operator_messages_as_arrays_or_php_objects() {
        let item = json!({"im": {"chat_id": 1807, "message_id": "86497"},
                          "message": {"user_id": 27, "text": "[b]Klaus:[/b] Hi",
                                      "files": {"0": {"name": "a.pdf", "type": "file", "link": "https://p/a"},
                                                "1": {"name": "b.png", "mime": "image/png", "downloadLink": "https://p/b"},
                                                "2": {"name": "no link"}}},
                          "chat": {"id": "5511987654321"}});
        let body = json!({"event": "onimconnectormessageadd", "auth": {"member_id": "m", "application_token": "t"},
                          "data": {"CONNECTOR": "wabridge_whatsapp", "LINE": 107, "MESSAGES": {"0": item}}});
        let r = parse(&body).unwrap();
        assert_eq!(r.auth, Auth { member_id: Some("m".into()), application_token: Some("t".into()) });
        assert_eq!(r.event.connector(), Some("wabridge_whatsapp"));
        match r.event {
            Event::MessageAdd { line, messages, .. } => {
                assert_eq!(line, "107");
                let m = &messages[0];
                assert_eq!(
                    (m.im_chat_id.as_str(), m.im_message_id.as_str(), m.chat_id.as_str()),
                    ("1807", "86497", "5511987654321")
                );
                assert_eq!(m.user_id, "27");
                assert_eq!(m.files.len(), 2, "a file without a link is left out");
                assert_eq!(m.files[0].mime, None, "`type: file` is not a MIME type");
                assert_eq!(m.files[1].mime.as_deref(), Some("image/png"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_fields_are_named() {
        let no_chat = json!({"event": "ONIMCONNECTORMESSAGEADD",
                             "data": {"LINE": 1, "MESSAGES": [{"im": {"chat_id": 1, "message_id": 2}}]}});
        assert_eq!(parse(&no_chat).unwrap_err().field, "data[MESSAGES][0][chat][id]");
        let empty = json!({"event": "ONIMCONNECTORMESSAGEADD", "data": {"LINE": 1, "MESSAGES": []}});
        assert_eq!(parse(&empty).unwrap_err().field, "data[MESSAGES]");
        let no_line = json!({"event": "ONIMCONNECTORMESSAGEADD", "data": {"MESSAGES": []}});
        assert_eq!(parse(&no_line).unwrap_err().field, "data[LINE]");
        assert_eq!(parse(&json!({"data": {}})).unwrap_err().field, "event");
    }

    #[test]
    fn line_and_status_events_and_others() {
        let line = parse(&json!({"event": "ONIMCONNECTORLINEDELETE", "data": "107"})).unwrap();
        assert_eq!(line.event, Event::LineDelete { line: Some("107".into()) });
        let status = parse(&json!({"event": "ONIMCONNECTORSTATUSDELETE",
                                   "data": {"connector": "other_connector", "line": 5}}))
        .unwrap();
        assert_eq!(
            status.event,
            Event::StatusDelete { connector: Some("other_connector".into()), line: Some("5".into()) }
        );
        assert_eq!(status.event.connector(), Some("other_connector"));
        assert_eq!(parse(&json!({"event": "ONAPPUNINSTALL"})).unwrap().event, Event::Uninstall);
        assert_eq!(
            parse(&json!({"event": "OnCrmLeadAdd"})).unwrap().event,
            Event::Other { name: "ONCRMLEADADD".into() }
        );
    }
}
