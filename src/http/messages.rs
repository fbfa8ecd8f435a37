//! `POST /api/v1/messages`: any WhatsApp message type through the tenant API (an API key, scoped to a WABA).
//!
//! The request is checked whole first (`message::validate`: every field error at once, 422), then the number
//! (`from`: registered, and inside the key's scope, else 403), then the customer's 24-hour window for anything
//! but a template (422 `outside_window`, saying when the window closed and that a template is needed), then a
//! template against the synced definitions. Only then is the send committed — an `outbound` row and its `wa.send`
//! job, the same path as notifications and operator replies (`outbound::enqueue_on`: pacing, the pair rate,
//! exactly-once, `idempotency_key`) — and the answer is 202 with the send's id. Nothing is queued for a refused
//! request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use super::AppState;
use crate::apikeys::Caller;
use crate::message::{self, MessageInput};
use crate::outbound::{NewSend, Origin};
use crate::store::registry::{Phone, PhoneKey};
use crate::translate::window::{self, Window};

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageAccepted {
    /// The send's id, for `GET /api/v1/sends/{id}`.
    pub id: i64,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: message::Kind,
    /// The template language chosen (templates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// True when this idempotency key had already been used: nothing new was queued.
    pub duplicate: bool,
}

/// Send a WhatsApp message of any type.
///
/// Free-form types (everything but `template`) go only inside the customer's 24-hour window; outside it the
/// answer is 422 `outside_window`.
#[utoipa::path(post, path = "/api/v1/messages", tag = "messages", request_body = MessageInput,
    responses((status = 202, description = "queued: the send's id", body = MessageAccepted),
              (status = 401, body = ErrorBody), (status = 403, description = "`from` is outside the key's scope", body = ErrorBody),
              (status = 422, description = "a field breaks a limit (each named), or the 24-hour window is closed", body = ErrorBody)))]
pub async fn send(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(input): ApiJson<MessageInput>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let m = message::validate(input).map_err(ApiError::fields)?;
    let phone = number_in_scope(&s, &caller, "from", &m.from).await?;
    let recipient = crate::phone::digits(&m.to);
    if m.kind().is_free_form() {
        let last = crate::store::contacts::last_inbound(&s.store, phone.id, &recipient).await?;
        let now = crate::store::now_ms();
        let w = window::window(last, now);
        if !w.is_open() {
            return Err(outside_window(&w, now));
        }
    }
    let defs = if m.kind() == message::Kind::Template {
        crate::templates::load(&s.store, phone.waba_id).await?
    } else {
        Vec::new()
    };
    let built = message::graph::request(&m, &defs).map_err(|f| ApiError::fields(vec![f]))?;
    let send = NewSend {
        phone_id: phone.id,
        recipient,
        origin: Origin::Api,
        origin_ref: json!({"api_key": caller.key_id}),
        request: built.request,
        idempotency_key: m.idempotency_key.as_ref().map(|k| format!("api:{}:{k}", caller.key_id)),
        api_key_id: Some(caller.key_id),
    };
    let e = super::notify::commit_send(&s, &send).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageAccepted { id: e.id, kind: m.kind(), language: built.language, duplicate: e.duplicate }),
    ))
}

/// The registered number `number` (E.164), if the key may use it: 422 naming `field` when wabridge does not know
/// it, 403 when the key is scoped to another WABA or to other phones.
pub async fn number_in_scope(s: &AppState, caller: &Caller, field: &str, number: &str) -> Result<Phone, ApiError> {
    let phone = s
        .store
        .find_phone_by(PhoneKey::Number, number)
        .await?
        .ok_or_else(|| ApiError::field(field, format!("{number} is not a number registered in wabridge")))?;
    if !caller.allows_phone(phone.waba_id, phone.id) {
        let why = if caller.waba.is_some_and(|w| w != phone.waba_id) {
            "it belongs to another WhatsApp Business Account"
        } else {
            "the key is limited to other numbers"
        };
        return Err(ApiError::forbidden_field(field, format!("this API key may not use {number}: {why}")));
    }
    Ok(phone)
}

/// 422 `outside_window`: when the window closed (or that it never opened) and that only a template may go.
pub(crate) fn outside_window(w: &Window, now_ms: i64) -> ApiError {
    let how = "only an approved template can be sent now: send \"type\": \"template\" (the customer's next \
               message opens a new 24-hour window)";
    let why = match *w {
        Window::Closed { closed_at_ms } => format!(
            "the customer's 24-hour window closed at {} ({} ago), 24 hours after their last message; {how}",
            rfc3339(closed_at_ms),
            since(now_ms - closed_at_ms)
        ),
        _ => format!("the customer has never written to this number, so no 24-hour window is open; {how}"),
    };
    ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "outside_window", ..ApiError::field("type", why) }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// "45 minutes", "3 hours", "2 days".
fn since(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    let (n, unit) = match minutes {
        m if m < 120 => (m, "minute"),
        m if m < 48 * 60 => (m / 60, "hour"),
        m => (m / (24 * 60), "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refusal_says_when_it_closed_and_that_a_template_is_needed() {
        let now = 1_767_800_000_000;
        let e = outside_window(&window::window(Some(now - 26 * 3_600_000), now), now);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "outside_window");
        assert_eq!(e.fields[0].field, "type");
        assert!(e.message.contains("closed at 2026-01-07T13:33:20Z (2 hours ago)"), "{}", e.message);
        assert!(e.message.contains("template"), "{}", e.message);
        let never = outside_window(&Window::Never, now);
        assert!(never.message.contains("never written") && never.message.contains("template"));
        assert_eq!(since(90 * 60_000), "90 minutes");
        assert_eq!(since(60_000), "1 minute");
        assert_eq!(since(72 * 3_600_000), "3 days");
    }
}
