//! Managing event subscriptions and looking at deliveries: what the admin API and the CLI call.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::events::{self as stored, NewSubscription, Subscription, SubscriptionChange};
use crate::store::{rfc3339, Store, StoreError};

/// Most subscriptions one installation keeps.
pub const MAX_SUBSCRIPTIONS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// A field of the request is wrong (422 naming it).
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad(field: &str, message: impl Into<String>) -> SubscriptionError {
    SubscriptionError::Field { field: field.into(), message: message.into() }
}

/// A new subscription.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// Where events are POSTed: an http(s) URL on a public address (private ones only with
    /// `events_allow_private_urls`).
    pub url: String,
    /// `message.received`, `message.status`, `send.failed`, `call.started`, `call.ended`, `template.status`, or
    /// `*` for all.
    pub event_types: Vec<String>,
    /// Events of the numbers this API key may use (its WABA's, or all for a key without one).
    pub api_key: Option<i64>,
    /// Events of this WABA's numbers. Neither `api_key` nor `waba`: events of every number.
    pub waba: Option<i64>,
    /// A note for people (at most 200 characters).
    pub description: Option<String>,
}

/// A change of a subscription; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` enables a disabled endpoint again (its failure streak starts over); `false` disables it.
    pub enabled: Option<bool>,
    /// Replace the signing secret (the new one is in the answer).
    #[serde(default)]
    pub rotate_secret: bool,
}

/// A subscription as the API shows it (its secret masked).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: i64,
    pub url: String,
    pub event_types: Vec<String>,
    pub api_key: Option<i64>,
    pub waba: Option<i64>,
    pub description: String,
    /// The signing secret, masked (`GET …/secret` shows it).
    pub secret: String,
    /// False once disabled (by hand, or after failing for `events_disable_after_seconds`).
    pub enabled: bool,
    pub disabled_at: Option<String>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (null while deliveries succeed).
    pub failing_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A subscription with its signing secret in full (on creation, on rotation, and from `GET …/secret`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub view: SubscriptionView,
    /// `whsec_…`: the Standard Webhooks signing secret to verify `webhook-signature` with.
    pub signing_secret: String,
}

fn view(s: &Subscription, secret: &str) -> SubscriptionView {
    SubscriptionView {
        id: s.id,
        url: s.url.clone(),
        event_types: s.event_types.clone(),
        api_key: s.api_key_id,
        waba: s.waba_id,
        description: s.description.clone(),
        secret: crate::seal::mask(secret),
        enabled: s.disabled_at.is_none(),
        disabled_at: s.disabled_at.map(rfc3339),
        disabled_reason: s.disabled_reason.clone(),
        failing_since: s.failing_since.map(rfc3339),
        created_at: rfc3339(s.created_at),
        updated_at: rfc3339(s.updated_at),
    }
}

const SECRET_FIELD: &str = "event_subscriptions.secret";

fn open(store: &Store, s: &Subscription) -> Result<String, SubscriptionError> {
    Ok(store.open(SECRET_FIELD, &s.secret_sealed)?)
}

fn check_description(d: &Option<String>) -> Result<(), SubscriptionError> {
    if d.as_ref().is_some_and(|d| d.chars().count() > 200) {
        return Err(bad("description", "must be at most 200 characters"));
    }
    Ok(())
}

async fn check_url(url: &str, allow_private: bool) -> Result<String, SubscriptionError> {
    super::url::check(url, allow_private).await.map(|u| u.to_string()).map_err(|e| bad("url", e))
}

fn check_types(types: &[String]) -> Result<Vec<String>, SubscriptionError> {
    super::parse_types(types).map_err(|e| match e.split_once(": ") {
        Some((field, _)) if field.starts_with("event_types[") => bad(field, e.clone()),
        _ => bad("event_types", e),
    })
}

pub async fn create(
    store: &Store,
    input: &SubscriptionInput,
    allow_private: bool,
) -> Result<SubscriptionWithSecret, SubscriptionError> {
    let url = check_url(&input.url, allow_private).await?;
    let types = check_types(&input.event_types)?;
    check_description(&input.description)?;
    if input.api_key.is_some() && input.waba.is_some() {
        return Err(bad("waba", "give api_key or waba, not both (a key's scope already names its WABA)"));
    }
    if let Some(k) = input.api_key {
        let active = crate::apikeys::list(store).await?.into_iter().any(|v| v.id == k && !v.revoked);
        if !active {
            return Err(bad("api_key", format!("no active API key with id {k}")));
        }
    }
    if let Some(w) = input.waba {
        if store.get_waba(w).await?.is_none() {
            return Err(bad("waba", format!("no WABA with id {w}")));
        }
    }
    if stored::subscriptions(store).await?.len() >= MAX_SUBSCRIPTIONS {
        return Err(bad("url", format!("at most {MAX_SUBSCRIPTIONS} subscriptions; delete one first")));
    }
    let secret = super::new_secret();
    let sealed = store.seal(SECRET_FIELD, &secret);
    let s = stored::insert_subscription(
        store,
        &NewSubscription {
            url: &url,
            secret_sealed: &sealed,
            event_types: &types,
            api_key_id: input.api_key,
            waba_id: input.waba,
            description: input.description.as_deref().unwrap_or_default(),
        },
    )
    .await?;
    Ok(SubscriptionWithSecret { view: view(&s, &secret), signing_secret: secret })
}

pub async fn list(store: &Store) -> Result<Vec<SubscriptionView>, SubscriptionError> {
    let mut out = Vec::new();
    for s in stored::subscriptions(store).await? {
        let secret = open(store, &s)?;
        out.push(view(&s, &secret));
    }
    Ok(out)
}

fn not_found(id: i64) -> SubscriptionError {
    SubscriptionError::NotFound(format!("no event subscription with id {id}"))
}

pub async fn get(store: &Store, id: i64) -> Result<SubscriptionView, SubscriptionError> {
    let s = stored::subscription(store, id).await?.ok_or_else(|| not_found(id))?;
    Ok(view(&s, &open(store, &s)?))
}

pub async fn reveal(store: &Store, id: i64) -> Result<SubscriptionWithSecret, SubscriptionError> {
    let s = stored::subscription(store, id).await?.ok_or_else(|| not_found(id))?;
    let secret = open(store, &s)?;
    Ok(SubscriptionWithSecret { view: view(&s, &secret), signing_secret: secret })
}

pub async fn update(
    store: &Store,
    id: i64,
    p: &SubscriptionPatch,
    allow_private: bool,
) -> Result<SubscriptionWithSecret, SubscriptionError> {
    let url = match &p.url {
        Some(u) => Some(check_url(u, allow_private).await?),
        None => None,
    };
    let types = p.event_types.as_deref().map(check_types).transpose()?;
    check_description(&p.description)?;
    let secret = p.rotate_secret.then(super::new_secret);
    let sealed = secret.as_ref().map(|s| store.seal(SECRET_FIELD, s));
    let change = SubscriptionChange {
        url: url.as_deref(),
        event_types: types.as_deref(),
        description: p.description.as_deref(),
        secret_sealed: sealed.as_deref(),
        enabled: p.enabled,
    };
    let s = stored::update_subscription(store, id, &change).await?.ok_or_else(|| not_found(id))?;
    let secret = open(store, &s)?;
    Ok(SubscriptionWithSecret { view: view(&s, &secret), signing_secret: secret })
}

pub async fn delete(store: &Store, id: i64) -> Result<(), SubscriptionError> {
    if stored::delete_subscription(store, id).await? {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// A delivery of an event to a subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// The event's id, sent as `webhook-id` on every attempt.
    pub event_id: String,
    pub event_type: String,
    pub subscription: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub first_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    pub id: i64,
    pub at: String,
    /// The endpoint's HTTP status; null when no answer came.
    pub status: Option<i64>,
    pub latency_ms: i64,
    /// The first KiB of the endpoint's answer.
    pub answer: Option<String>,
    /// Why the attempt failed.
    pub error: Option<String>,
}

/// A delivery with the event's body and every attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// The body every attempt POSTs: `{"type", "timestamp", "data"}`.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    pub attempts_made: Vec<AttemptView>,
}

fn delivery_view(d: &stored::Delivery) -> DeliveryView {
    DeliveryView {
        id: d.id,
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        subscription: d.subscription_id,
        state: d.state.clone(),
        attempts: d.attempts,
        first_attempt_at: d.first_attempt_at.map(rfc3339),
        last_attempt_at: d.last_attempt_at.map(rfc3339),
        delivered_at: d.delivered_at.map(rfc3339),
        last_error: d.last_error.clone(),
        created_at: rfc3339(d.created_at),
    }
}

/// Deliveries, newest first, below the id `before`; `state` is `pending`, `delivered` or `dead`.
pub async fn deliveries(
    store: &Store,
    subscription: Option<i64>,
    state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryView>, SubscriptionError> {
    if let Some(st) = state {
        if !matches!(st, "pending" | "delivered" | "dead") {
            return Err(bad("state", "must be pending, delivered or dead"));
        }
    }
    if !(1..=500).contains(&limit) {
        return Err(bad("limit", "must be between 1 and 500"));
    }
    Ok(stored::deliveries(store, subscription, state, before, limit).await?.iter().map(delivery_view).collect())
}

pub async fn delivery(store: &Store, id: i64) -> Result<DeliveryDetail, SubscriptionError> {
    let d = stored::deliveries(store, None, None, Some(id + 1), 1)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| SubscriptionError::NotFound(format!("no event delivery with id {id}")))?;
    let body = stored::event_body(store, &d.event_id).await?.unwrap_or_default();
    let attempts = stored::attempts(store, id)
        .await?
        .into_iter()
        .map(|a| AttemptView {
            id: a.id,
            at: rfc3339(a.attempted_at),
            status: a.status_code,
            latency_ms: a.latency_ms,
            answer: a.answer,
            error: a.error,
        })
        .collect();
    Ok(DeliveryDetail {
        delivery: delivery_view(&d),
        event: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        attempts_made: attempts,
    })
}

/// Puts a dead delivery back in the queue with a fresh retry window (its dead job redriven, or a new job when
/// that one is gone). The caller wakes the job engine.
pub async fn redrive(store: &Store, id: i64) -> Result<(), SubscriptionError> {
    let Some(job) = stored::redrive(store, id).await? else {
        return Err(SubscriptionError::NotFound(format!("no dead event delivery with id {id}")));
    };
    let redriven = match job {
        Some(j) => crate::store::jobs::redrive(store, j).await?,
        None => false,
    };
    if !redriven {
        let job = super::enqueue_delivery(&store.pool, id).await?;
        stored::set_delivery_job_on(&store.pool, id, job).await?;
    }
    Ok(())
}
