//! What portals post to us: the install callback, events, and the SMS provider's sends. Each request is
//! parsed (nested-bracket form or JSON), checked against the portal's stored `application_token` in
//! constant time, and turned into committed work before it is acknowledged.

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::bitrix::event::{Auth, Event, Install};
use crate::store::phones::{self, ConnectorStatus};
use crate::store::registry::Portal;
use crate::store::{contacts, now_ms, outbound, portals, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EventError {
    fn from(e: sqlx::Error) -> Self {
        EventError::Store(e.into())
    }
}

use super::id_text as text;

/// The portal a request claims to come from, if its `auth[application_token]` matches (constant time).
pub async fn authenticate(store: &Store, auth: &Auth) -> Result<Portal, EventError> {
    let member = auth
        .member_id
        .clone()
        .ok_or_else(|| EventError::Unauthorized("the request carries no auth[member_id]".into()))?;
    let token = auth
        .application_token
        .clone()
        .ok_or_else(|| EventError::Unauthorized("the request carries no auth[application_token]".into()))?;
    let portal = store
        .find_portal_by_member_id(&member)
        .await?
        .ok_or_else(|| EventError::Unauthorized("unknown portal (member_id); install the app first".into()))?;
    let stored = portal.application_token.clone().unwrap_or_default();
    if stored.is_empty() || !bool::from(stored.as_bytes().ct_eq(token.as_bytes())) {
        tracing::warn!(portal = portal.id, "refused a request whose application_token does not match the portal's");
        return Err(EventError::Unauthorized("application_token does not match this portal's".into()));
    }
    Ok(portal)
}

/// `ONAPPINSTALL` (or the install callback): stores the portal keyed by `member_id` with sealed tokens, once the
/// portal has confirmed the access token (`app.info` on its REST endpoint).
/// A portal that is installed and active keeps its `application_token`: a second install must carry the same
/// one (Bitrix24 re-sends it when the app is reinstalled after an uninstall, which deactivated the portal).
pub async fn install(store: &Store, install: &Install) -> Result<(Portal, bool), EventError> {
    let Install {
        member_id: member, application_token: app_token, access_token: access, refresh_token: refresh, ..
    } = install.clone();
    let (domain, endpoint, expires_in) = (install.domain.clone(), install.client_endpoint.clone(), install.expires_in);
    if url::Url::parse(&endpoint).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
        return Err(EventError::Unprocessable(format!("auth[client_endpoint] {endpoint:?} is not an http(s) URL")));
    }
    let now = now_ms();
    let existing = store.find_portal_by_member_id(&member).await?;
    let mut p = match existing {
        Some(p) => {
            let same =
                p.application_token.as_deref().is_some_and(|t| bool::from(t.as_bytes().ct_eq(app_token.as_bytes())));
            if !same || p.client_endpoint != endpoint {
                // A reinstall of a portal we know (or a forgery naming its member_id): the new access token must
                // work on the portal's REST endpoint as we first stored it, or nothing changes. Otherwise anyone
                // could post an install naming a known member_id and an endpoint of their own, and receive that
                // portal's chats.
                verify_with_portal(&p.client_endpoint, &access).await.map_err(|why| {
                    tracing::warn!(portal = p.id, "refused a reinstall whose token the portal does not accept");
                    EventError::Unauthorized(format!(
                        "this portal is already known and the install could not be confirmed with it: {why}"
                    ))
                })?;
            }
            p
        }
        None => {
            // A portal we do not know yet: its token must work on the REST endpoint it names before anything
            // is stored (Bitrix24's safe-event-handler guidance), so a made-up install stores nothing, and a
            // member_id cannot be taken in advance by someone who has no token of that portal.
            verify_with_portal(&endpoint, &access).await.map_err(|why| {
                tracing::warn!("refused a first install whose token the portal does not accept");
                EventError::Unauthorized(format!("the install could not be confirmed with the portal: {why}"))
            })?;
            Portal {
                id: 0,
                kind: "bitrix24".into(),
                member_id: member.clone(),
                domain: domain.clone(),
                client_endpoint: endpoint.clone(),
                access_token: None,
                refresh_token: None,
                token_expires_at: None,
                application_token: None,
                active: true,
                uninstalled_at: None,
                created_at: now,
                updated_at: now,
            }
        }
    };
    let new = p.id == 0;
    p.domain = domain;
    p.client_endpoint = endpoint;
    p.access_token = Some(access);
    p.refresh_token = Some(refresh);
    p.token_expires_at = Some(now + expires_in * 1000);
    p.application_token = Some(app_token);
    p.active = true;
    p.uninstalled_at = None;
    p.updated_at = now;
    if new {
        p.id = store.insert_portal(&p).await?;
    } else {
        store.update_portal(&p).await?;
    }
    store.set_portal_scope(p.id, install.scope.as_deref()).await?;
    tracing::info!(portal = p.id, new, "Bitrix24 portal installed");
    Ok((p, new))
}

/// Asks the portal at `endpoint` (`.../rest/`) whether `access_token` is one of its tokens for our app
/// (`app.info`, a call every app may make).
async fn verify_with_portal(endpoint: &str, access_token: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/app.info", endpoint.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .json(&json!({"auth": access_token}))
        .send()
        .await
        .map_err(|_| "the portal could not be reached".to_string())?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 && body.get("result").is_some() {
        Ok(())
    } else {
        Err(format!("the portal answered HTTP {status} {}", body["error"].as_str().unwrap_or_default()))
    }
}

/// What an event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Queued(usize),
    Duplicate,
    Noted,
    Ignored,
}

/// An event from an authenticated portal: durable effects before the answer. `connector` is our connector's id:
/// connector events that name another connector (a line can carry several) are not ours and change nothing.
pub async fn event(store: &Store, portal: &Portal, connector: &str, event: &Event) -> Result<Handled, EventError> {
    if event.connector().is_some_and(|c| c != connector) {
        return Ok(Handled::Ignored);
    }
    match event {
        Event::Install(_) => Ok(Handled::Ignored), // handled by `install`, never here
        Event::Uninstall => {
            store.uninstall_portal(portal.id).await?;
            tracing::info!(portal = portal.id, "Bitrix24 portal uninstalled the app; its traffic stops");
            Ok(Handled::Noted)
        }
        Event::MessageAdd { line, messages, .. } => {
            if !portal.active {
                return Err(EventError::Unauthorized("the portal uninstalled the app".into()));
            }
            let turn = store.write_turn().await;
            let mut tx = store.begin_write().await?;
            let mut queued = 0;
            for m in messages {
                let reply = super::reply::from_operator(portal.id, line, m);
                let key = format!("msgadd:{}:{}:{}", portal.id, reply.im_chat_id, reply.im_message_id);
                if portals::accept_event_on(&mut tx, &key, portal.id).await? {
                    // One chat's replies take effect in the operator's order, whatever runs them (reply::run).
                    let order = super::reply::order_key(portal.id, &reply);
                    let order = crate::jobs::Order { key: &order, seq: None };
                    let opts = crate::jobs::Enqueue { order: Some(order), ..Default::default() };
                    crate::jobs::enqueue(&mut *tx, &crate::jobs::Task::CrmReply(reply), opts).await?;
                    queued += 1;
                }
            }
            tx.commit().await?;
            drop(turn);
            Ok(if queued == 0 { Handled::Duplicate } else { Handled::Queued(queued) })
        }
        Event::LineDelete { line } => {
            if let Some(line) = line {
                super::bind::line_lost(store, portal.id, line, ConnectorStatus::LineDeleted).await?;
            }
            Ok(Handled::Noted)
        }
        Event::StatusDelete { connector: named, line } => {
            if let Some(line) = line {
                let ours = phones::id_on_line(store, portal.id, line).await?.is_some();
                if ours && named.is_some() {
                    super::bind::line_lost(store, portal.id, line, ConnectorStatus::Disabled).await?;
                }
            }
            Ok(Handled::Noted)
        }
        Event::Other { .. } => Ok(Handled::Ignored),
    }
}

/// The SMS provider's send (bitrix24.md §3): commits the send (or its failure) and its status report.
pub async fn sms(b: &super::Bridge, code: &str, body: &Value) -> Result<(i64, Option<String>), EventError> {
    let portal = authenticate(&b.store, &crate::bitrix::event::auth_of(body)).await?;
    if !portal.active {
        return Err(EventError::Unauthorized("the portal uninstalled the app".into()));
    }
    let phone_id = phones::id_by_sms_code(&b.store, portal.id, code)
        .await?
        .ok_or_else(|| EventError::NotFound(format!("no SMS sender {code:?} is registered for this portal")))?;
    let phone = b.store.get_phone(phone_id).await?.ok_or_else(|| EventError::NotFound("the phone is gone".into()))?;
    let message_id =
        text(&body["message_id"]).ok_or_else(|| EventError::Unprocessable("message_id is missing".into()))?;
    let to = text(&body["message_to"])
        .or_else(|| text(&body["properties"]["phone_number"]))
        .ok_or_else(|| EventError::Unprocessable("message_to is missing".into()))?;
    let recipient = crate::phone::normalize_e164(&to)
        .map(|n| crate::phone::digits(&n))
        .map_err(|e| EventError::Unprocessable(format!("message_to {to:?} is not a phone number: {e}")))?;
    let text_body = text(&body["message_body"])
        .or_else(|| text(&body["properties"]["message_text"]))
        .ok_or_else(|| EventError::Unprocessable("message_body is missing".into()))?;
    let decision = decide_sms(&b.store, &phone, &recipient, &text_body).await?;
    let origin_ref = json!({"portal_id": portal.id, "code": code, "message_id": message_id});
    let key = format!("sms:{}:{message_id}", portal.id);
    let mut tx = b.store.begin_write().await?;
    let (id, failure) = match decision {
        Ok(request) => {
            let send = crate::outbound::NewSend {
                phone_id,
                recipient,
                origin: crate::outbound::Origin::Sms,
                origin_ref,
                request,
                idempotency_key: Some(key),
                api_key_id: None,
            };
            (crate::outbound::enqueue_on(&mut tx, &send, b.config.job_max_attempts).await?.id, None)
        }
        Err(reason) => {
            // Refused before Meta: recorded as a failed send, and the portal is told why.
            let id = match outbound::id_by_idempotency_key_on(&mut tx, &key).await? {
                Some(id) => id,
                None => {
                    let request = json!({"message_body": text_body});
                    let id = outbound::insert_refused_sms_on(
                        &mut tx,
                        phone_id,
                        &recipient,
                        &origin_ref,
                        &request,
                        &reason,
                        &key,
                    )
                    .await?;
                    crate::outbound::report_on(&mut *tx, crate::outbound::Origin::Sms, id, "failed", Some(&reason))
                        .await?;
                    id
                }
            };
            (id, Some(reason))
        }
    };
    tx.commit().await?;
    Ok((id, failure))
}

/// The SMS body → a Graph request, or why it cannot be sent.
async fn decide_sms(
    store: &Store,
    phone: &crate::store::registry::Phone,
    recipient: &str,
    body: &str,
) -> Result<Result<Value, String>, EventError> {
    use crate::translate::command::{parse_sms, SmsBody};
    Ok(match parse_sms(body) {
        Ok(SmsBody::Template(cmd)) => {
            let defs = crate::templates::load(store, phone.waba_id).await?;
            match crate::translate::template::from_command(&defs, &cmd) {
                Ok(t) => Ok(json!({"type": "template", "template": t})),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(SmsBody::Text(t)) => {
            let last = contacts::last_inbound(store, phone.id, recipient).await?;
            let now = now_ms();
            let w = crate::translate::window::window(last, now);
            if matches!(w, crate::translate::window::Window::Open { .. }) {
                Ok(json!({"type": "text", "text": {"body": t, "preview_url": true}}))
            } else {
                Err(crate::translate::window::refusal(&w, now))
            }
        }
        Err(e) => Err(e.to_string()),
    })
}
