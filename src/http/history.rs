//! Conversation history over HTTP: contacts, conversations and messages, in the admin API (every number) and in
//! the tenant API (the numbers of the API key's scope). The work is in [`crate::history`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::error::{ApiError, ErrorBody};
use super::json::ApiQuery;
use super::AppState;
use crate::apikeys::Caller;
use crate::history::{self, ContactView, ConversationView, HistoryError, HistoryQuery, MessageView, Page};

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Field { field, message } => ApiError::field(field, message),
            HistoryError::Forbidden { field, message } => {
                ApiError::field(field, message).with_status(StatusCode::FORBIDDEN, "forbidden")
            }
            HistoryError::Store(s) => s.into(),
        }
    }
}

type Res<T> = Result<Json<Page<T>>, ApiError>;

/// Messages of every number, both directions, newest first.
#[utoipa::path(get, path = "/admin/api/v1/messages", tag = "history", params(HistoryQuery),
    responses((status = 200, body = history::MessagePage), (status = 422, body = ErrorBody)))]
pub async fn admin_messages(State(s): State<AppState>, ApiQuery(q): ApiQuery<HistoryQuery>) -> Res<MessageView> {
    Ok(Json(history::messages(&s.store, None, &q).await?))
}

/// Contacts (customers who wrote) of every number, newest first.
#[utoipa::path(get, path = "/admin/api/v1/contacts", tag = "history", params(HistoryQuery),
    responses((status = 200, body = history::ContactPage), (status = 422, body = ErrorBody)))]
pub async fn admin_contacts(State(s): State<AppState>, ApiQuery(q): ApiQuery<HistoryQuery>) -> Res<ContactView> {
    Ok(Json(history::contacts(&s.store, None, &q).await?))
}

/// Conversations (a customer and one of our numbers) of every number, latest first.
#[utoipa::path(get, path = "/admin/api/v1/conversations", tag = "history", params(HistoryQuery),
    responses((status = 200, body = history::ConversationPage), (status = 422, body = ErrorBody)))]
pub async fn admin_conversations(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Res<ConversationView> {
    Ok(Json(history::conversations(&s.store, None, &q).await?))
}

/// Messages of the API key's numbers, both directions, newest first.
#[utoipa::path(get, path = "/api/v1/messages", tag = "history", params(HistoryQuery),
    responses((status = 200, body = history::MessagePage), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn tenant_messages(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Res<MessageView> {
    let scope = history::scope_of(&s.store, &caller).await?;
    Ok(Json(history::messages(&s.store, scope, &q).await?))
}

/// Contacts of the API key's numbers, newest first.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "history", params(HistoryQuery),
    responses((status = 200, body = history::ContactPage), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn tenant_contacts(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Res<ContactView> {
    let scope = history::scope_of(&s.store, &caller).await?;
    Ok(Json(history::contacts(&s.store, scope, &q).await?))
}

/// Conversations of the API key's numbers, latest first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "history", params(HistoryQuery),
    responses((status = 200, body = history::ConversationPage), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn tenant_conversations(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Res<ConversationView> {
    let scope = history::scope_of(&s.store, &caller).await?;
    Ok(Json(history::conversations(&s.store, scope, &q).await?))
}
