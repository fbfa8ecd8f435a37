//! Events the portal posts to the app: install/uninstall, operator messages, line and connector changes, SMS.

use serde_json::{json, Value};

use super::{
    lock, random_hex, unix_now, BitrixSandbox, FileSpec, LastPost, OperatorMessage, OperatorReply, Outgoing, PostError,
    PostedEvent, Shared, SmsMessage, SmsOrigin,
};
use crate::form;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// Posts events as the Bitrix queue server does. By default they carry the portal's application token and the
/// admin as user; the builder methods forge or vary that:
///
/// ```ignore
/// sandbox.with_application_token("forged").operator_reply(line, "4917…", "hi", vec![]).await?;
/// sandbox.events().user_id(27).as_json().operator_reply(line, "4917…", "hi", vec![]).await?;
/// ```
pub struct EventPoster<'a> {
    sb: &'a BitrixSandbox,
    application_token: Option<String>,
    user_id: Option<u64>,
    json: bool,
}

impl<'a> EventPoster<'a> {
    pub(super) fn new(sb: &'a BitrixSandbox) -> EventPoster<'a> {
        EventPoster { sb, application_token: None, user_id: None, json: false }
    }

    /// `auth[application_token]` of the posted events (a forgery unless it is the portal's).
    pub fn application_token(mut self, token: &str) -> Self {
        self.application_token = Some(token.into());
        self
    }

    /// The Bitrix user the event comes from (`auth[user_id]`, and `message.user_id` of operator messages;
    /// `0` = a system/automatic message).
    pub fn user_id(mut self, user_id: u64) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Posts the payload as a JSON body instead of a form (some proxies re-encode; handlers should accept both).
    pub fn as_json(mut self) -> Self {
        self.json = true;
        self
    }

    fn encode(&self, payload: &Value) -> (String, &'static str) {
        if self.json {
            (payload.to_string(), JSON)
        } else {
            (form::encode(payload), FORM)
        }
    }

    async fn post(&self, url: &str, event: &str, payload: Value) -> Result<u16, PostError> {
        let (body, content_type) = self.encode(&payload);
        lock(&self.sb.shared).last_post = Some(LastPost {
            url: url.into(),
            event: event.into(),
            payload: payload.clone(),
            body: body.clone(),
            content_type,
        });
        send(&self.sb.shared, url, event, payload, body, content_type).await
    }

    async fn post_all(&self, outgoing: Vec<Outgoing>) -> Vec<u16> {
        let mut statuses = Vec::new();
        for o in outgoing {
            // A transport failure counts as no answer (0); it is in `posted_events`.
            statuses.push(self.post(&o.url, &o.event, o.payload).await.unwrap_or(0));
        }
        statuses
    }

    /// `ONAPPINSTALL` (§1.2a): a fresh token pair, `refresh_token` included; the app counts as installed.
    pub async fn install(self, install_url: &str) -> Result<u16, PostError> {
        let payload = {
            let mut inner = lock(&self.sb.shared);
            inner.issue_pair();
            inner.installed = true;
            let user = self.user_id.unwrap_or(inner.opts.user_id);
            let mut auth = inner.auth_user(self.application_token.as_deref(), user);
            auth["refresh_token"] = json!(inner.current_refresh);
            json!({
                "event": "ONAPPINSTALL",
                "data": {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"},
                "ts": unix_now(),
                "auth": auth,
            })
        };
        self.post(install_url, "ONAPPINSTALL", payload).await
    }

    /// `ONAPPUNINSTALL` (§1.2c): `auth` without tokens. The app counts as uninstalled; its bindings are removed.
    pub async fn uninstall(self, handler_url: &str) -> Result<u16, PostError> {
        let payload = {
            let mut inner = lock(&self.sb.shared);
            let payload = json!({
                "event": "ONAPPUNINSTALL",
                "data": {"LANGUAGE_ID": "en", "CLEAN": "0"},
                "ts": unix_now(),
                "auth": inner.auth_portal(self.application_token.as_deref()),
            });
            inner.installed = false;
            inner.bindings.clear();
            payload
        };
        self.post(handler_url, "ONAPPUNINSTALL", payload).await
    }

    /// An operator writes in the open-line chat of `external_chat_id` on `line` (the newest such chat):
    /// `ONIMCONNECTORMESSAGEADD` (§2.8) with a fresh `im.message_id` to every handler bound for it.
    pub async fn operator_reply(
        self,
        line: u64,
        external_chat_id: &str,
        text: &str,
        files: Vec<FileSpec>,
    ) -> Result<OperatorReply, PostError> {
        let (outgoing, connector, chat_id, message_id) = {
            let mut inner = lock(&self.sb.shared);
            if !inner.installed {
                return Err(PostError::NotInstalled);
            }
            let chat = inner
                .chats
                .iter()
                .rev()
                .find(|c| c.line == line && c.external_chat_id == external_chat_id)
                .cloned()
                .ok_or_else(|| PostError::UnknownChat { line, chat: external_chat_id.into() })?;
            let active = inner.statuses.get(&(chat.connector.clone(), line)).is_some_and(|s| s.active);
            if !active || !inner.lines.contains_key(&line) {
                return Err(PostError::ConnectorNotActive(line));
            }
            let handlers = inner.handlers("ONIMCONNECTORMESSAGEADD");
            if handlers.is_empty() {
                return Err(PostError::NoHandler("ONIMCONNECTORMESSAGEADD".into()));
            }
            let message_id = inner.next_message_id();
            inner.operator_messages.push(OperatorMessage {
                line,
                connector: chat.connector.clone(),
                chat_id: chat.chat_id,
                message_id,
                external_chat_id: external_chat_id.into(),
            });
            let user = self.user_id.unwrap_or(inner.opts.user_id);
            let files: Vec<Value> =
                files.iter().map(|f| json!({"name": f.name, "type": f.kind, "link": f.link, "size": f.size})).collect();
            let data = json!({
                "CONNECTOR": chat.connector,
                "LINE": line,
                "MESSAGES": [{
                    "im": {"chat_id": chat.chat_id, "message_id": message_id},
                    "message": {"user_id": user, "text": text, "files": files},
                    "chat": {"id": external_chat_id},
                }],
            });
            let auth = inner.auth_user(self.application_token.as_deref(), user);
            let outgoing: Vec<Outgoing> = handlers
                .into_iter()
                .map(|(id, url)| Outgoing {
                    url,
                    event: "ONIMCONNECTORMESSAGEADD".into(),
                    payload: inner.event_payload("ONIMCONNECTORMESSAGEADD", id, data.clone(), auth.clone()),
                })
                .collect();
            (outgoing, chat.connector, chat.chat_id, message_id)
        };
        let statuses = self.post_all(outgoing).await;
        let status = statuses.first().copied().unwrap_or(0);
        Ok(OperatorReply { status, statuses, connector, chat_id, message_id })
    }

    /// The operator edits a message of [`operator_reply`](Self::operator_reply): `ONIMCONNECTORMESSAGEUPDATE` with
    /// `message.id` = the external ids its delivery marks gave.
    pub async fn operator_edit(self, im_message_id: u64, text: &str) -> Result<Vec<u16>, PostError> {
        self.operator_change(im_message_id, Some(text)).await
    }

    /// The operator deletes a message of [`operator_reply`](Self::operator_reply): `ONIMCONNECTORMESSAGEDELETE`.
    pub async fn operator_delete(self, im_message_id: u64) -> Result<Vec<u16>, PostError> {
        self.operator_change(im_message_id, None).await
    }

    async fn operator_change(self, im_message_id: u64, text: Option<&str>) -> Result<Vec<u16>, PostError> {
        let event = if text.is_some() { "ONIMCONNECTORMESSAGEUPDATE" } else { "ONIMCONNECTORMESSAGEDELETE" };
        let outgoing = {
            let inner = lock(&self.sb.shared);
            if !inner.installed {
                return Err(PostError::NotInstalled);
            }
            let m = inner
                .operator_messages
                .iter()
                .find(|m| m.message_id == im_message_id)
                .cloned()
                .ok_or(PostError::UnknownChat { line: 0, chat: format!("message {im_message_id}") })?;
            let handlers = inner.handlers(event);
            if handlers.is_empty() {
                return Err(PostError::NoHandler(event.into()));
            }
            let ids: Vec<String> = inner
                .delivery
                .iter()
                .filter(|d| d.im_message_id == im_message_id)
                .flat_map(|d| d.external_ids.clone())
                .collect();
            let message = match text {
                Some(t) => json!({"id": ids, "text": t}),
                None => json!({"id": ids.first().cloned().unwrap_or_default()}),
            };
            let data = json!({
                "CONNECTOR": m.connector,
                "LINE": m.line,
                "MESSAGES": [{
                    "im": {"chat_id": m.chat_id, "message_id": m.message_id},
                    "message": message,
                    "chat": {"id": m.external_chat_id},
                }],
            });
            let user = self.user_id.unwrap_or(inner.opts.user_id);
            let auth = inner.auth_user(self.application_token.as_deref(), user);
            handlers
                .into_iter()
                .map(|(id, url)| Outgoing {
                    url,
                    event: event.into(),
                    payload: inner.event_payload(event, id, data.clone(), auth.clone()),
                })
                .collect::<Vec<_>>()
        };
        Ok(self.post_all(outgoing).await)
    }

    /// Deletes the open line (its connector status and data go too) and posts `ONIMCONNECTORLINEDELETE`
    /// (`data` = the line id) to bound handlers. Gives their statuses.
    pub async fn delete_line(self, line: u64) -> Result<Vec<u16>, PostError> {
        let outgoing = {
            let mut inner = lock(&self.sb.shared);
            let before = inner.pending.len();
            if !inner.delete_line(line) {
                return Err(PostError::UnknownLine(line));
            }
            self.restamp(inner.pending.split_off(before))
        };
        Ok(self.post_all(outgoing).await)
    }

    /// The admin disables the connector on `line` in the Contact Center: status and data are deleted and
    /// `ONIMCONNECTORSTATUSDELETE` (`data{connector, line}`) is posted to bound handlers.
    pub async fn deactivate_connector(self, line: u64) -> Result<Vec<u16>, PostError> {
        let outgoing = {
            let mut inner = lock(&self.sb.shared);
            let Some(status) = inner.status_on_line(line).cloned() else {
                return Err(PostError::ConnectorNotActive(line));
            };
            let before = inner.pending.len();
            super::rest::deactivate(&mut inner, &status.connector, line);
            self.restamp(inner.pending.split_off(before))
        };
        Ok(self.post_all(outgoing).await)
    }

    /// Another connector on `line` (a built-in such as `telegrambot`, or another app's) is disabled: the portal
    /// posts `ONIMCONNECTORSTATUSDELETE` with that connector's id to the handlers bound to the event, ours too.
    pub async fn deactivate_other_connector(self, line: u64, connector: &str) -> Result<Vec<u16>, PostError> {
        let outgoing = {
            let mut inner = lock(&self.sb.shared);
            let before = inner.pending.len();
            inner.fire("ONIMCONNECTORSTATUSDELETE", json!({"connector": connector, "line": line}));
            self.restamp(inner.pending.split_off(before))
        };
        Ok(self.post_all(outgoing).await)
    }

    /// Applies this poster's application token / user to events queued by the portal logic.
    fn restamp(&self, mut outgoing: Vec<Outgoing>) -> Vec<Outgoing> {
        for o in &mut outgoing {
            if let Some(auth) = o.payload.get_mut("auth").and_then(Value::as_object_mut) {
                if let Some(t) = &self.application_token {
                    auth.insert("application_token".into(), json!(t));
                }
                if let Some(u) = self.user_id {
                    auth.insert("user_id".into(), json!(u));
                }
            }
        }
        outgoing
    }

    /// Bitrix hands an SMS to the provider `code` (§3): posts to its `HANDLER` and remembers the message so
    /// `messageservice.message.status.update` accepts it. Gives the handler's status and the `message_id`.
    pub async fn sms(
        self,
        code: &str,
        message_to: &str,
        message_body: &str,
        origin: SmsOrigin,
    ) -> Result<(u16, String), PostError> {
        let (url, payload, message_id) = {
            let mut inner = lock(&self.sb.shared);
            if !inner.installed {
                return Err(PostError::NotInstalled);
            }
            let sender = inner.senders.get(code).cloned().ok_or_else(|| PostError::UnknownSender(code.into()))?;
            let message_id = random_hex(16);
            inner.sms.push(SmsMessage {
                message_id: message_id.clone(),
                code: code.into(),
                to: message_to.into(),
                body: message_body.into(),
                status: None,
            });
            let user = self.user_id.unwrap_or(inner.opts.user_id);
            let mut payload = json!({
                "properties": {"phone_number": message_to, "message_text": message_body},
                "type": "SMS",
                "code": code,
                "message_id": message_id,
                "message_to": message_to,
                "message_body": message_body,
                "ts": unix_now(),
                "auth": inner.auth_user(self.application_token.as_deref(), user),
            });
            match origin {
                SmsOrigin::Crm { owner_type_id, owner_id } => {
                    payload["module_id"] = json!("crm");
                    payload["bindings"] = json!([{"OWNER_TYPE_ID": owner_type_id, "OWNER_ID": owner_id}]);
                }
                SmsOrigin::Bizproc { workflow_id, document_id, document_type } => {
                    payload["module_id"] = json!("bizproc");
                    payload["workflow_id"] = json!(workflow_id);
                    payload["document_id"] = json!(document_id);
                    payload["document_type"] = json!(document_type);
                }
            }
            (sender.handler, payload, message_id)
        };
        let status = self.post(&url, "SMS", payload).await?;
        Ok((status, message_id))
    }

    /// [`sms`](Self::sms) from an automation robot on a lead (`module_id=bizproc`).
    pub async fn robot_sms(self, code: &str, message_to: &str, message_body: &str) -> Result<(u16, String), PostError> {
        let origin = SmsOrigin::Bizproc {
            workflow_id: format!("{}.{}", random_hex(7), random_hex(5)),
            document_id: ["crm".into(), "CCrmDocumentLead".into(), "LEAD_1".into()],
            document_type: ["crm".into(), "CCrmDocumentLead".into(), "LEAD".into()],
        };
        self.sms(code, message_to, message_body, origin).await
    }

    /// Posts `payload` to `url` as is (form-encoded unless [`as_json`](Self::as_json)).
    pub async fn post_raw(self, url: &str, payload: &Value) -> Result<u16, PostError> {
        self.post(url, "RAW", payload.clone()).await
    }
}

/// Posts one body and records the outcome.
pub(super) async fn send(
    shared: &Shared,
    url: &str,
    event: &str,
    payload: Value,
    body: String,
    content_type: &'static str,
) -> Result<u16, PostError> {
    let outcome = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    lock(shared).posted.push(PostedEvent { url: url.into(), event: event.into(), payload, outcome: outcome.clone() });
    outcome.map_err(PostError::Transport)
}

/// Posts events queued by REST calls in the background (Bitrix delivers through a queue, after answering).
pub(super) fn deliver_in_background(shared: std::sync::Arc<Shared>, outgoing: Vec<Outgoing>) {
    if outgoing.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for o in outgoing {
            let body = form::encode(&o.payload);
            let _ = send(&shared, &o.url, &o.event, o.payload, body, FORM).await;
            let mut inner = lock(&shared);
            inner.in_flight = inner.in_flight.saturating_sub(1);
        }
    });
}
