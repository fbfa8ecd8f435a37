//! Bitrix24's open lines as the CRM seam ([`CrmLines`], `crm/lines.rs`): a customer's chat is a chat of the
//! `imconnector` connector on the phone's line, one per customer (`user.id = chat.id =` the customer's key).
//!
//! | seam method | Bitrix24 method (bitrix24.md) |
//! |---|---|
//! | [`CrmLines::post`] | `imconnector.send.messages` (§2.5), one message per call ([`send_messages_params`]) |
//! | [`CrmLines::post_many`] | `imconnector.send.messages` with up to [`SEND_MANY_MAX`] messages ([`send_many_params`]) |
//! | [`CrmLines::post_lines`] | `batch` of one `imconnector.send.messages` per line (up to 50 lines, one request) |
//! | [`CrmLines::find`] | `imopenlines.session.history.get`, our wamid as the message's `connectorMid` ([`history_has`]) |
//! | [`CrmLines::edit`], [`CrmLines::delete`] | `imconnector.update.messages`, `imconnector.delete.messages` (§2.6) |
//! | [`CrmLines::mark`] | `imconnector.send.status.delivery` / `imconnector.send.status.reading` |
//! | [`CrmLines::notice`] | `im.message.add` with `SYSTEM: Y` |
//!
//! The builders and readers of those bodies are pure and tested here; the REST client (`bitrix::client`) paces
//! every call to the portal's rate limit and refreshes its tokens.

use serde_json::{json, Value};

use super::id_text;
use super::lines::{At, ClientMessage, CrmLines, File, KnownChat, LineError, Mark, OperatorMessage, Posted, Recheck};
use crate::bitrix::client::{Client, Error as BitrixError};
use crate::store::now_ms;

/// Messages per `imconnector.send.messages` call at most ([`CrmLines::post_many`]). The method takes an array
/// (bitrix24.md §2.5) and documents no bound; 50 is the bound of Bitrix24's `batch`, kept here so one call stays
/// well within a request's 60 s and the method's execution-time budget.
pub const SEND_MANY_MAX: usize = 50;

/// The Bitrix24 implementation of [`CrmLines`]: the REST client and our connector's id.
#[derive(Clone, Debug)]
pub struct Bitrix24Lines {
    pub client: Client,
    pub connector: String,
}

/// A failed call: whether it may have taken effect, and what the job does about it.
fn line_error(e: BitrixError) -> LineError {
    // The portal could not be reached or its answer could not be read (a timeout, a cut connection, a gateway
    // error). A portal that answered with its own error, or a call we never sent, did not act.
    let may_have_reached = matches!(e, BitrixError::Unavailable(_) | BitrixError::Protocol { .. });
    LineError { may_have_reached, job: e.into() }
}

fn files_json(files: &[File]) -> Value {
    Value::Array(files.iter().map(|f| json!({"url": f.url, "name": f.name})).collect())
}

impl Bitrix24Lines {
    /// `method` for one existing message of the customer's chat; `Ok(false)` when the portal did not take it.
    async fn change(&self, at: At<'_>, key: &str, method: &str, message: Value) -> Result<bool, LineError> {
        let params = json!({
            "CONNECTOR": self.connector,
            "LINE": at.line,
            "MESSAGES": [{"user": {"id": key}, "message": message, "chat": {"id": key}}],
        });
        let answer = self.client.call(at.portal_id, method, &params).await.map_err(line_error)?;
        match refusal(&answer["result"]["DATA"]["RESULT"][0]) {
            None => Ok(true),
            Some(reason) => {
                tracing::info!(method, %reason, "the portal did not take the change");
                Ok(false)
            }
        }
    }
}

impl CrmLines for Bitrix24Lines {
    async fn post(&self, at: At<'_>, m: ClientMessage<'_>) -> Result<Posted, LineError> {
        let params = send_messages_params(&self.connector, at.line, m);
        let answer = match self.client.call(at.portal_id, "imconnector.send.messages", &params).await {
            Ok(a) => a,
            // The line or the connector on it went away.
            Err(BitrixError::Api { code, description, .. }) if code == "NOT_ACTIVE_LINE" => {
                return Ok(Posted::LineGone(format!("{code}: {description}")));
            }
            Err(e) => return Err(line_error(e)),
        };
        Ok(posted(&answer))
    }

    async fn post_many(&self, at: At<'_>, ms: Vec<ClientMessage<'_>>) -> Result<Vec<Posted>, LineError> {
        let n = ms.len();
        let params = send_many_params(&self.connector, at.line, ms);
        let answer = match self.client.call(at.portal_id, "imconnector.send.messages", &params).await {
            Ok(a) => a,
            Err(BitrixError::Api { code, description, .. }) if code == "NOT_ACTIVE_LINE" => {
                return Ok(vec![Posted::LineGone(format!("{code}: {description}")); n]);
            }
            Err(e) => return Err(line_error(e)),
        };
        Ok((0..n).map(|i| posted_item(&answer["result"]["DATA"]["RESULT"][i])).collect())
    }

    fn post_many_max(&self) -> usize {
        SEND_MANY_MAX
    }

    async fn post_lines(
        &self,
        portal_id: i64,
        mut posts: Vec<(&str, Vec<ClientMessage<'_>>)>,
    ) -> Result<Vec<Result<Vec<Posted>, LineError>>, LineError> {
        if posts.len() == 1 {
            if let Some((line, ms)) = posts.pop() {
                return Ok(vec![self.post_many(At { portal_id, line }, ms).await]);
            }
        }
        let sizes: Vec<usize> = posts.iter().map(|(_, ms)| ms.len()).collect();
        let cmds: Vec<(String, String, Value)> = posts
            .into_iter()
            .enumerate()
            .map(|(i, (line, ms))| {
                (format!("l{i}"), "imconnector.send.messages".to_string(), send_many_params(&self.connector, line, ms))
            })
            .collect();
        let answer = self.client.batch(portal_id, &cmds, false).await.map_err(line_error)?;
        Ok(sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let key = format!("l{i}");
                match (answer.result.get(&key), answer.errors.get(&key)) {
                    (Some(r), _) if !r.is_null() => Ok((0..*n).map(|j| posted_item(&r["DATA"]["RESULT"][j])).collect()),
                    (_, Some(e)) if e["error"] == "NOT_ACTIVE_LINE" => Ok(vec![
                        Posted::LineGone(format!(
                            "NOT_ACTIVE_LINE: {}",
                            e["error_description"].as_str().unwrap_or_default()
                        ));
                        *n
                    ]),
                    (_, e) => Err(LineError {
                        may_have_reached: false,
                        job: crate::jobs::JobError::retry(format!(
                            "imconnector.send.messages in a batch: {}",
                            e.map(|e| e.to_string()).unwrap_or_else(|| "no result".into())
                        )),
                    }),
                }
            })
            .collect())
    }

    fn post_lines_max(&self) -> usize {
        crate::bitrix::client::BATCH_MAX
    }

    fn wait_before_post(&self, portal_id: i64) -> std::time::Duration {
        self.client.wait_before(portal_id)
    }

    async fn find(&self, at: At<'_>, chat: KnownChat<'_>, wamid: &str) -> Recheck {
        let mut asks = Vec::new();
        if let Some(s) = chat.session_id {
            asks.push(json!({"CHAT_ID": chat.chat_id, "SESSION_ID": s}));
        }
        // Our message may have opened a new session: the chat's latest too.
        asks.push(json!({"CHAT_ID": chat.chat_id}));
        for params in asks {
            match self.client.call(at.portal_id, "imopenlines.session.history.get", &params).await {
                Ok(answer) => {
                    if let Some(found) = history_has(&answer["result"], wamid) {
                        return found;
                    }
                }
                Err(e) => return Recheck::CannotTell(format!("imopenlines.session.history.get: {e}")),
            }
        }
        Recheck::NotThere
    }

    async fn edit(
        &self,
        at: At<'_>,
        key: &str,
        original: &str,
        text: &str,
        files: Vec<File>,
    ) -> Result<bool, LineError> {
        let mut message = json!({"id": original, "text": text});
        if !files.is_empty() {
            message["files"] = files_json(&files);
        }
        self.change(at, key, "imconnector.update.messages", message).await
    }

    async fn delete(&self, at: At<'_>, key: &str, original: &str) -> Result<bool, LineError> {
        self.change(at, key, "imconnector.delete.messages", json!({"id": original})).await
    }

    async fn mark(&self, at: At<'_>, m: OperatorMessage<'_>, mark: Mark) -> Result<(), LineError> {
        let (method, with_date) = match mark {
            Mark::Delivered => ("imconnector.send.status.delivery", true),
            Mark::Read => ("imconnector.send.status.reading", false),
        };
        let params = mark_params(&self.connector, at.line, m, with_date.then(|| now_ms() / 1000));
        self.client.call(at.portal_id, method, &params).await.map_err(line_error)?;
        Ok(())
    }

    async fn notice(&self, portal_id: i64, im_chat_id: &str, text: &str) -> Result<(), LineError> {
        let params = json!({"DIALOG_ID": format!("chat{im_chat_id}"), "MESSAGE": text, "SYSTEM": "Y"});
        self.client.call(portal_id, "im.message.add", &params).await.map_err(line_error)?;
        Ok(())
    }
}

/// The params of `imconnector.send.status.delivery` / `.reading` for an operator's message (pure): the portal's
/// own ids of it, and ours as its external id (`date` only for delivery).
pub fn mark_params(connector: &str, line: &str, m: OperatorMessage<'_>, date: Option<i64>) -> Value {
    let mut message = json!({"id": [m.our_id]});
    if let Some(d) = date {
        message["date"] = json!(d);
    }
    json!({
        "CONNECTOR": connector,
        "LINE": line,
        "MESSAGES": [{"im": {"chat_id": m.im_chat_id, "message_id": m.im_message_id},
                      "message": message, "chat": {"id": m.chat_id}}],
    })
}

/// What an `imconnector.send.messages` answer (HTTP 200) says about our one message (pure).
pub fn posted(answer: &Value) -> Posted {
    posted_item(&answer["result"]["DATA"]["RESULT"][0])
}

/// What one item of an `imconnector.send.messages` answer's `DATA.RESULT` says about its message (pure).
pub fn posted_item(first: &Value) -> Posted {
    if let Some(reason) = refusal(first) {
        return Posted::NotTaken(reason);
    }
    let message = match &first["message"]["id"] {
        Value::Array(ids) => ids.first().and_then(id_text),
        other => id_text(other),
    }
    .unwrap_or_else(|| "sent".to_string());
    Posted::Taken {
        message,
        chat_id: id_text(&first["session"]["CHAT_ID"]),
        session_id: id_text(&first["session"]["ID"]),
    }
}

/// Why the portal did not take one message of `imconnector.send.messages`, from its item in `DATA.RESULT`
/// (bitrix24.md §2.5: each item has its own `SUCCESS` and `ERRORS`): `None` when it took it. An item that is
/// missing, or says neither `SUCCESS: true` nor carries the message back, is not taken either.
pub fn refusal(item: &Value) -> Option<String> {
    let errors: Vec<String> = item["ERRORS"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| match (e["code"].as_str(), e["message"].as_str()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    (None, Some(m)) => m.to_string(),
                    (None, None) => e.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let success = match &item["SUCCESS"] {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(matches!(s.as_str(), "Y" | "true" | "1")),
        Value::Number(n) => Some(n.as_i64() == Some(1)),
        _ => None,
    };
    match (success, errors.is_empty()) {
        (Some(true), true) => None,
        (_, false) => Some(errors.join("; ")),
        (Some(false), true) => Some("SUCCESS is false, no ERRORS given".into()),
        (None, true) if item.is_null() => Some("the answer has no result for the message".into()),
        (None, true) => None, // an older portal without per-message SUCCESS: the call itself succeeded
    }
}

/// The params of `imconnector.send.messages` for one customer message (bitrix24.md §2.5), pure:
/// - `user`: `id` = the customer's key, `skip_phone_validate: Y`, the profile name as the portal's fields take it
///   ([`crm_names`]), `phone` = `+<wa_id>` when known;
/// - `message`: `id` = the wamid, `date`, `text` (always when there are no files, so the call is never empty),
///   `files` when any;
/// - `chat`: `id` = the customer's key, `name` = `WhatsApp +<wa_id>`, with the full profile name in brackets
///   when the user fields could not hold it as it is.
pub fn send_messages_params(connector: &str, line: &str, m: ClientMessage<'_>) -> Value {
    send_many_params(connector, line, vec![m])
}

/// The params of `imconnector.send.messages` for several customer messages on one line, in the order given: one
/// `MESSAGES` item each, as [`send_messages_params`] builds it (pure).
pub fn send_many_params(connector: &str, line: &str, ms: Vec<ClientMessage<'_>>) -> Value {
    let items: Vec<Value> = ms.into_iter().map(send_messages_item).collect();
    json!({"CONNECTOR": connector, "LINE": line, "MESSAGES": items})
}

fn send_messages_item(m: ClientMessage<'_>) -> Value {
    let mut user = json!({"id": m.key, "skip_phone_validate": "Y"});
    let names = m.profile.map(crm_names).unwrap_or_default();
    if let Some(first) = &names.0 {
        user["name"] = json!(first);
    }
    if let Some(last) = &names.1 {
        user["last_name"] = json!(last);
    }
    if let Some(w) = m.wa_id {
        user["phone"] = json!(format!("+{w}"));
    }
    let mut message = json!({"id": m.wamid, "date": m.date});
    if !m.text.is_empty() || m.files.is_empty() {
        message["text"] = json!(m.text);
    }
    if !m.files.is_empty() {
        message["files"] = files_json(&m.files);
    }
    let mut chat_name = match m.wa_id {
        Some(w) => format!("WhatsApp +{w}"),
        None => "WhatsApp".to_string(),
    };
    // A profile name the portal's user fields cannot hold as it is stays readable in the chat's name.
    if let Some(p) = m.profile.map(str::trim).filter(|p| !p.is_empty()) {
        let shown = [names.0.as_deref(), names.1.as_deref()].iter().flatten().copied().collect::<Vec<_>>().join(" ");
        if shown != p {
            chat_name = format!("{chat_name} ({p})");
        }
    }
    json!({"user": user, "message": message, "chat": {"id": m.key, "name": chat_name}})
}

/// Finds our message in an `imopenlines.session.history.get` result: a message whose `params.connectorMid`
/// holds `wamid` (pure).
pub fn history_has(result: &Value, wamid: &str) -> Option<Recheck> {
    let messages = result["message"].as_object()?;
    let session_id = id_text(&result["sessionId"]);
    let chat_id = id_text(&result["chatId"]);
    messages.iter().find_map(|(id, m)| {
        let mids = &m["params"]["connectorMid"];
        let ours = match mids {
            Value::Array(a) => a.iter().any(|x| id_text(x).as_deref() == Some(wamid)),
            other => id_text(other).as_deref() == Some(wamid),
        };
        ours.then(|| Recheck::Found {
            message: id_text(&m["id"]).unwrap_or_else(|| id.clone()),
            chat_id: chat_id.clone().or_else(|| id_text(&m["chatid"])),
            session_id: session_id.clone(),
        })
    })
}

/// The most of a WhatsApp profile name the portal's `user.name` / `user.last_name` take (bitrix24.md §2.5:
/// letters, spaces, `-` and `'` only, at most 25 characters each): all of it as the name when it fits (Bitrix
/// splits "A B" itself), else the first word as the name and as much of the rest as fits as the last name. Other characters (emoji, punctuation) are dropped, and so are words with digits ("2nd").
pub fn crm_names(profile: &str) -> (Option<String>, Option<String>) {
    const MAX: usize = 25;
    let allowed = |c: char| c.is_alphabetic() || c == '-' || c == '\'' || c == '’';
    let words: Vec<String> = profile
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_numeric()))
        .map(|w| w.chars().filter(|c| allowed(*c)).map(|c| if c == '’' { '\'' } else { c }).collect::<String>())
        .map(|w| w.trim_matches(|c| c == '-' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let fit = |words: &[String]| -> Option<String> {
        let mut out = String::new();
        for w in words {
            let len = out.chars().count() + usize::from(!out.is_empty()) + w.chars().count();
            if len > MAX {
                if out.is_empty() {
                    out = w.chars().take(MAX).collect();
                }
                break;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        }
        (!out.is_empty()).then_some(out)
    };
    let whole = words.join(" ");
    match words.split_first() {
        None => (None, None),
        Some(_) if whole.chars().count() <= MAX => (Some(whole), None),
        Some((first, rest)) => (fit(std::slice::from_ref(first)), fit(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::{
        crm_names, history_has, mark_params, posted, posted_item, refusal, send_many_params, send_messages_params,
    };
    use crate::crm::lines::{ClientMessage, File, OperatorMessage, Posted, Recheck};
    use serde_json::json;

    fn client<'a>(profile: Option<&'a str>, text: &'a str, files: Vec<File>) -> ClientMessage<'a> {
        ClientMessage {
            key: "5511987654321",
            wa_id: Some("5511987654321"),
            profile,
            wamid: "wamid.X",
            date: 1_700_000_000,
            text,
            files,
        }
    }

    #[test]
    fn the_portal_gets_one_message_per_call_in_its_documented_shape() {
        let p = send_messages_params("wabridge_whatsapp", "107", client(Some("Maria Souza"), "oi", vec![]));
        assert_eq!(
            p,
            json!({"CONNECTOR": "wabridge_whatsapp", "LINE": "107", "MESSAGES": [{
                "user": {"id": "5511987654321", "skip_phone_validate": "Y", "name": "Maria Souza",
                         "phone": "+5511987654321"},
                "message": {"id": "wamid.X", "date": 1_700_000_000, "text": "oi"},
                "chat": {"id": "5511987654321", "name": "WhatsApp +5511987654321"},
            }]})
        );
        // A name the fields cannot hold: what fits, and the whole name in the chat's name.
        let p = send_messages_params(
            "c",
            "1",
            client(Some("Zoë 😊 2nd"), "", vec![File { url: "u".into(), name: "a.jpg".into() }]),
        );
        let m = &p["MESSAGES"][0];
        assert_eq!(m["user"]["name"], "Zoë");
        assert_eq!(m["chat"]["name"], "WhatsApp +5511987654321 (Zoë 😊 2nd)");
        assert!(m["message"].get("text").is_none(), "a file alone carries no empty text");
        assert_eq!(m["message"]["files"][0]["name"], "a.jpg");
        // No text and no file: the text is sent (empty), so the call is never without both.
        let p = send_messages_params("c", "1", ClientMessage { wa_id: None, ..client(None, "", vec![]) });
        let m = &p["MESSAGES"][0];
        assert_eq!(m["message"]["text"], "");
        assert!(m["user"].get("phone").is_none() && m["user"].get("name").is_none());
        assert_eq!(m["chat"]["name"], "WhatsApp");
    }

    #[test]
    fn names_the_portal_takes() {
        let n = |p: &str| crm_names(p);
        let s = |v: &str| Some(v.to_string());
        assert_eq!(n("Maria Souza"), (s("Maria Souza"), None));
        assert_eq!(n("Zoë 😊 Müller-Lüdenscheidt 2nd"), (s("Zoë Müller-Lüdenscheidt"), None));
        assert_eq!(n("O’Brien"), (s("O'Brien"), None));
        assert_eq!(n("😊🎉 123"), (None, None));
        assert_eq!(n("   "), (None, None));
        let long = n("Maximiliana Alexandrovna Konstantinopolskaya-Smith Jr");
        assert_eq!(long.0, s("Maximiliana"));
        assert_eq!(long.1, s("Alexandrovna"), "whole words, at most 25 characters");
        let one = n("Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(one.0.map(|x| x.chars().count()), Some(25));
        for p in ["Zoë 😊 Müller-Lüdenscheidt 2nd", "a.b@c! d_e", "Ünïcödé Ñame — the “best”"] {
            let (a, b) = n(p);
            for part in [a, b].into_iter().flatten() {
                assert!(part.chars().count() <= 25, "{part}");
                assert!(part.chars().all(|c| c.is_alphabetic() || " -'".contains(c)), "{part}");
            }
        }
    }

    #[test]
    fn what_the_portal_did_not_take() {
        assert_eq!(refusal(&json!({"SUCCESS": true, "session": {"ID": 1}})), None);
        assert_eq!(refusal(&json!({"session": {"ID": 1}})), None, "no per-message SUCCESS: the call succeeded");
        assert_eq!(
            refusal(&json!({"SUCCESS": false, "ERRORS": [{"code": "ERROR_CHAT", "message": "chat is closed"}]})),
            Some("ERROR_CHAT: chat is closed".into())
        );
        assert_eq!(refusal(&json!({"SUCCESS": true, "ERRORS": [{"code": "X"}]})), Some("X".into()), "errors win");
        assert_eq!(refusal(&json!({"SUCCESS": false})), Some("SUCCESS is false, no ERRORS given".into()));
        assert_eq!(refusal(&json!({"SUCCESS": "N"})), Some("SUCCESS is false, no ERRORS given".into()));
        assert_eq!(refusal(&json!(null)), Some("the answer has no result for the message".into()));
    }

    #[test]
    fn many_messages_go_in_one_call_in_the_order_given_and_each_item_answers_for_its_own() {
        let a = ClientMessage { key: "5511900000001", wamid: "wamid.A", ..client(None, "a", vec![]) };
        let b = ClientMessage { key: "5511900000002", wamid: "wamid.B", ..client(Some("Maria Souza"), "b", vec![]) };
        let p = send_many_params("wabridge_whatsapp", "107", vec![a.clone(), b.clone()]);
        assert_eq!(p["CONNECTOR"], "wabridge_whatsapp");
        assert_eq!(p["LINE"], "107");
        let one = |m: ClientMessage<'_>| send_messages_params("wabridge_whatsapp", "107", m)["MESSAGES"][0].clone();
        assert_eq!(p["MESSAGES"], json!([one(a), one(b)]), "each item as the single call builds it, in order");
        let answer = json!({"result": {"SUCCESS": false, "DATA": {"RESULT": [
            {"SUCCESS": true, "message": {"id": "wamid.A"}, "session": {"ID": 5, "CHAT_ID": 30}},
            {"SUCCESS": false, "ERRORS": [{"code": "ERROR_CHAT", "message": "closed"}]}]}}});
        let items = &answer["result"]["DATA"]["RESULT"];
        assert_eq!(
            posted_item(&items[0]),
            Posted::Taken { message: "wamid.A".into(), chat_id: Some("30".into()), session_id: Some("5".into()) }
        );
        assert_eq!(posted_item(&items[1]), Posted::NotTaken("ERROR_CHAT: closed".into()));
        assert_eq!(posted_item(&items[2]), Posted::NotTaken("the answer has no result for the message".into()));
    }

    #[test]
    fn what_an_answer_to_send_messages_says() {
        let taken = json!({"result": {"SUCCESS": true, "DATA": {"RESULT": [
            {"SUCCESS": true, "message": {"id": [1207]}, "session": {"ID": "55", "CHAT_ID": 301}}]}}});
        assert_eq!(
            posted(&taken),
            Posted::Taken { message: "1207".into(), chat_id: Some("301".into()), session_id: Some("55".into()) }
        );
        let bare = json!({"result": {"DATA": {"RESULT": [{"session": {"ID": 9}}]}}});
        assert_eq!(
            posted(&bare),
            Posted::Taken { message: "sent".into(), chat_id: None, session_id: Some("9".into()) }
        );
        let refused =
            json!({"result": {"DATA": {"RESULT": [{"SUCCESS": false, "ERRORS": [{"code": "E", "message": "no"}]}]}}});
        assert_eq!(posted(&refused), Posted::NotTaken("E: no".into()));
        assert_eq!(
            posted(&json!({"result": true})),
            Posted::NotTaken("the answer has no result for the message".into())
        );
    }

    #[test]
    fn marks_name_the_portals_message_and_ours() {
        let (chat, msg, cid) = (json!(77), json!("9001"), json!("5511987654321"));
        let m = OperatorMessage { im_chat_id: &chat, im_message_id: &msg, chat_id: &cid, our_id: "wamid.Y" };
        assert_eq!(
            mark_params("conn", "107", m, Some(1_700_000_000)),
            json!({"CONNECTOR": "conn", "LINE": "107", "MESSAGES": [{
                "im": {"chat_id": 77, "message_id": "9001"},
                "message": {"id": ["wamid.Y"], "date": 1_700_000_000},
                "chat": {"id": "5511987654321"}}]})
        );
        assert!(mark_params("conn", "107", m, None)["MESSAGES"][0]["message"].get("date").is_none());
    }

    #[test]
    fn our_message_in_the_chats_history() {
        let result = json!({"chatId": 301, "sessionId": 55, "message": {
            "1200": {"id": 1200, "params": {"connectorMid": ["wamid.OTHER"]}},
            "1207": {"id": 1207, "params": {"connectorMid": ["wamid.X"]}},
            "1210": {"id": 1210, "params": {}}}});
        assert_eq!(
            history_has(&result, "wamid.X"),
            Some(Recheck::Found { message: "1207".into(), chat_id: Some("301".into()), session_id: Some("55".into()) })
        );
        assert_eq!(history_has(&result, "wamid.NONE"), None);
        let single = json!({"message": {"5": {"id": 5, "chatid": 8, "params": {"connectorMid": "wamid.S"}}}});
        assert_eq!(
            history_has(&single, "wamid.S"),
            Some(Recheck::Found { message: "5".into(), chat_id: Some("8".into()), session_id: None })
        );
        assert_eq!(history_has(&json!([]), "wamid.X"), None, "an empty history is a list in Bitrix24's answers");
    }
}
