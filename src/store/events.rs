//! Tenant event webhooks: subscriptions, events, deliveries and every delivery attempt (migration 0014).
//!
//! A subscription's event types are stored as `,a,b,` (or `*` for all), so one `LIKE` finds the subscribers of
//! a type. Its signing secret is sealed. Deliveries move `pending` → `delivered` or `dead` (a redrive makes a
//! dead one `pending` again).

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};

/// A subscription as stored (its secret still sealed).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: i64,
    pub url: String,
    pub secret_sealed: String,
    /// The event types, or `["*"]` for all.
    pub event_types: Vec<String>,
    pub api_key_id: Option<i64>,
    pub waba_id: Option<i64>,
    pub description: String,
    pub failing_since: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SUB_COLS: &str = "id, url, secret, event_types, api_key_id, waba_id, description, failing_since, disabled_at, \
                        disabled_reason, created_at, updated_at";

fn sub(r: &AnyRow) -> Result<Subscription, StoreError> {
    let types: String = r.try_get("event_types")?;
    Ok(Subscription {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        secret_sealed: r.try_get("secret")?,
        event_types: types.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        api_key_id: r.try_get("api_key_id")?,
        waba_id: r.try_get("waba_id")?,
        description: r.try_get("description")?,
        failing_since: r.try_get("failing_since")?,
        disabled_at: r.try_get("disabled_at")?,
        disabled_reason: r.try_get("disabled_reason")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The stored form of a list of event types.
fn types_text(types: &[String]) -> String {
    if types.iter().any(|t| t == "*") {
        "*".into()
    } else {
        format!(",{},", types.join(","))
    }
}

/// A new subscription's fields.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    pub url: &'a str,
    pub secret_sealed: &'a str,
    pub event_types: &'a [String],
    pub api_key_id: Option<i64>,
    pub waba_id: Option<i64>,
    pub description: &'a str,
}

pub async fn insert_subscription(store: &Store, s: &NewSubscription<'_>) -> Result<Subscription, StoreError> {
    let now = now_ms();
    let row = sqlx::query(&format!(
        "INSERT INTO event_subscriptions (url, secret, event_types, api_key_id, waba_id, description, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {SUB_COLS}"
    ))
    .bind(s.url)
    .bind(s.secret_sealed)
    .bind(types_text(s.event_types))
    .bind(s.api_key_id)
    .bind(s.waba_id)
    .bind(s.description)
    .bind(now)
    .fetch_one(&store.pool)
    .await?;
    sub(&row)
}

pub async fn subscriptions(store: &Store) -> Result<Vec<Subscription>, StoreError> {
    let rows =
        sqlx::query(&format!("SELECT {SUB_COLS} FROM event_subscriptions ORDER BY id")).fetch_all(&store.pool).await?;
    rows.iter().map(sub).collect()
}

pub async fn subscription(store: &Store, id: i64) -> Result<Option<Subscription>, StoreError> {
    let row = sqlx::query(&format!("SELECT {SUB_COLS} FROM event_subscriptions WHERE id = $1"))
        .bind(id)
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(sub).transpose()
}

/// What a change of a subscription sets (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChange<'a> {
    pub url: Option<&'a str>,
    pub event_types: Option<&'a [String]>,
    pub description: Option<&'a str>,
    pub secret_sealed: Option<&'a str>,
    /// `Some(true)`: enable again (clears the failure streak and the reason); `Some(false)`: disable by hand.
    pub enabled: Option<bool>,
}

pub async fn update_subscription(
    store: &Store,
    id: i64,
    c: &SubscriptionChange<'_>,
) -> Result<Option<Subscription>, StoreError> {
    let now = now_ms();
    let (disabled_at, reason, clear) = match c.enabled {
        None => (None, None, false),
        Some(true) => (None, None, true),
        Some(false) => (Some(now), Some("disabled by an administrator".to_string()), false),
    };
    let row = sqlx::query(&format!(
        "UPDATE event_subscriptions SET url = COALESCE($2, url), event_types = COALESCE($3, event_types), \
         description = COALESCE($4, description), secret = COALESCE($5, secret), \
         disabled_at = CASE WHEN $6 THEN NULL ELSE COALESCE($7, disabled_at) END, \
         disabled_reason = CASE WHEN $6 THEN NULL ELSE COALESCE($8, disabled_reason) END, \
         failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END, \
         updated_at = $9 WHERE id = $1 RETURNING {SUB_COLS}"
    ))
    .bind(id)
    .bind(c.url)
    .bind(c.event_types.map(types_text))
    .bind(c.description)
    .bind(c.secret_sealed)
    .bind(clear)
    .bind(disabled_at)
    .bind(reason)
    .bind(now)
    .fetch_optional(&store.pool)
    .await?;
    row.as_ref().map(sub).transpose()
}

/// Deletes a subscription with its deliveries and their attempts. True when it existed.
pub async fn delete_subscription(store: &Store, id: i64) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "DELETE FROM event_attempts WHERE delivery_id IN (SELECT id FROM event_deliveries WHERE subscription_id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM event_deliveries WHERE subscription_id = $1").bind(id).execute(&mut *tx).await?;
    let n = sqlx::query("DELETE FROM event_subscriptions WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(n.rows_affected() == 1)
}

/// The enabled subscriptions that want an event of `event_type` about WABA `waba_id` and phone `phone_id`: those
/// of every WABA (no key, no WABA), those of this WABA, and those of an unrevoked API key whose scope covers it (a
/// key limited to some phones covers only events of those phones).
pub async fn subscribers_on(
    tx: &mut Transaction<'static, Any>,
    event_type: &str,
    waba_id: Option<i64>,
    phone_id: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.id FROM event_subscriptions s LEFT JOIN api_keys k ON k.id = s.api_key_id \
         WHERE s.disabled_at IS NULL AND (s.event_types = '*' OR s.event_types LIKE $1) \
         AND ((s.api_key_id IS NULL AND (s.waba_id IS NULL OR s.waba_id = $2)) \
              OR (s.api_key_id IS NOT NULL AND k.revoked_at IS NULL AND (k.waba_id IS NULL OR k.waba_id = $2) \
                  AND (NOT EXISTS (SELECT 1 FROM api_key_phones kp WHERE kp.key_id = k.id) \
                       OR EXISTS (SELECT 1 FROM api_key_phones kp WHERE kp.key_id = k.id AND kp.phone_id = $3)))) \
         ORDER BY s.id",
    )
    .bind(format!("%,{event_type},%"))
    .bind(waba_id)
    .bind(phone_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// A new event.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub waba_id: Option<i64>,
    pub phone_id: Option<i64>,
    pub body: &'a str,
}

pub async fn insert_event_on(tx: &mut Transaction<'static, Any>, e: &NewEvent<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, event_type, waba_id, phone_id, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.id)
    .bind(e.event_type)
    .bind(e.waba_id)
    .bind(e.phone_id)
    .bind(e.body)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds the delivery of an event to a subscription; returns its id.
pub async fn insert_delivery_on(
    tx: &mut Transaction<'static, Any>,
    event_id: &str,
    subscription_id: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO event_deliveries (event_id, subscription_id, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(event_id)
    .bind(subscription_id)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

pub async fn set_delivery_job_on<'c, E>(conn: E, delivery_id: i64, job_id: Option<i64>) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query("UPDATE event_deliveries SET job_id = $2 WHERE id = $1")
        .bind(delivery_id)
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A delivery with its event and its subscription, as the delivery job needs them.
#[derive(Debug, Clone)]
pub struct ToDeliver {
    pub delivery_id: i64,
    pub state: String,
    pub first_attempt_at: Option<i64>,
    pub event_id: String,
    pub body: String,
    pub subscription: Subscription,
}

pub async fn to_deliver(store: &Store, delivery_id: i64) -> Result<Option<ToDeliver>, StoreError> {
    let row = sqlx::query(
        "SELECT d.id AS delivery_id, d.state, d.first_attempt_at, d.event_id, e.body, s.id, s.url, s.secret, \
         s.event_types, s.api_key_id, s.waba_id, s.description, s.failing_since, s.disabled_at, s.disabled_reason, \
         s.created_at, s.updated_at \
         FROM event_deliveries d JOIN events e ON e.id = d.event_id JOIN event_subscriptions s ON s.id = d.subscription_id \
         WHERE d.id = $1",
    )
    .bind(delivery_id)
    .fetch_optional(&store.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(ToDeliver {
        delivery_id: r.try_get("delivery_id")?,
        state: r.try_get("state")?,
        first_attempt_at: r.try_get("first_attempt_at")?,
        event_id: r.try_get("event_id")?,
        body: r.try_get("body")?,
        subscription: sub(&r)?,
    }))
}

/// One attempt as it ended.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub delivery_id: i64,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub answer: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Delivered,
    Retry,
    Dead,
}

/// Records an attempt and its consequence for the delivery (and its subscription's failure streak) together.
/// `disable_after_ms`: a subscription failing that long is disabled, with `disable_reason`.
pub async fn record_attempt(
    store: &Store,
    a: &NewAttempt<'_>,
    after: After,
    subscription_id: i64,
    disable_after_ms: i64,
    disable_reason: &str,
) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO event_attempts (delivery_id, attempted_at, status_code, latency_ms, answer, error) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(a.delivery_id)
    .bind(a.attempted_at)
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(a.answer)
    .bind(a.error)
    .execute(&mut *tx)
    .await?;
    let state = match after {
        After::Delivered => "delivered",
        After::Retry => "pending",
        After::Dead => "dead",
    };
    let delivered = (after == After::Delivered).then_some(a.attempted_at);
    sqlx::query(
        "UPDATE event_deliveries SET attempts = attempts + 1, state = $2, \
         first_attempt_at = COALESCE(first_attempt_at, $3), last_attempt_at = $3, delivered_at = $4, last_error = $5 \
         WHERE id = $1",
    )
    .bind(a.delivery_id)
    .bind(state)
    .bind(a.attempted_at)
    .bind(delivered)
    .bind(a.error)
    .execute(&mut *tx)
    .await?;
    let mut disabled = false;
    if after == After::Delivered {
        sqlx::query("UPDATE event_subscriptions SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query("UPDATE event_subscriptions SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL")
            .bind(subscription_id)
            .bind(a.attempted_at)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query(
            "UPDATE event_subscriptions SET disabled_at = $2, disabled_reason = $3, updated_at = $2 \
             WHERE id = $1 AND disabled_at IS NULL AND failing_since <= $4",
        )
        .bind(subscription_id)
        .bind(a.attempted_at)
        .bind(disable_reason)
        .bind(a.attempted_at - disable_after_ms)
        .execute(&mut *tx)
        .await?;
        disabled = n.rows_affected() == 1;
    }
    tx.commit().await?;
    Ok(disabled)
}

/// Marks a delivery dead without an attempt (its endpoint is disabled or gone).
pub async fn mark_dead(store: &Store, delivery_id: i64, reason: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE event_deliveries SET state = 'dead', last_error = $2 WHERE id = $1")
        .bind(delivery_id)
        .bind(reason)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Makes a dead delivery pending again, with a fresh retry window; returns its job id (None: not dead).
pub async fn redrive(store: &Store, delivery_id: i64) -> Result<Option<Option<i64>>, StoreError> {
    let row = sqlx::query(
        "UPDATE event_deliveries SET state = 'pending', first_attempt_at = NULL WHERE id = $1 AND state = 'dead' \
         RETURNING job_id",
    )
    .bind(delivery_id)
    .fetch_optional(&store.pool)
    .await?;
    row.map(|r| Ok(r.try_get::<Option<i64>, _>("job_id")?)).transpose()
}

/// A delivery as the API shows it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub subscription_id: i64,
    pub state: String,
    pub attempts: i64,
    pub first_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Deliveries, newest first, after the cursor `before` (a delivery id), filtered.
pub async fn deliveries(
    store: &Store,
    subscription_id: Option<i64>,
    state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, e.event_type, d.subscription_id, d.state, d.attempts, d.first_attempt_at, \
         d.last_attempt_at, d.delivered_at, d.last_error, d.created_at \
         FROM event_deliveries d JOIN events e ON e.id = d.event_id \
         WHERE ($1 IS NULL OR d.subscription_id = $1) AND ($2 IS NULL OR d.state = $2) AND ($3 IS NULL OR d.id < $3) \
         ORDER BY d.id DESC LIMIT $4",
    )
    .bind(subscription_id)
    .bind(state)
    .bind(before)
    .bind(limit)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                subscription_id: r.try_get("subscription_id")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                first_attempt_at: r.try_get("first_attempt_at")?,
                last_attempt_at: r.try_get("last_attempt_at")?,
                delivered_at: r.try_get("delivered_at")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// An attempt as stored.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: i64,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub answer: Option<String>,
    pub error: Option<String>,
}

/// Every attempt of a delivery, oldest first.
pub async fn attempts(store: &Store, delivery_id: i64) -> Result<Vec<Attempt>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, attempted_at, status_code, latency_ms, answer, error FROM event_attempts WHERE delivery_id = $1 \
         ORDER BY id",
    )
    .bind(delivery_id)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Attempt {
                id: r.try_get("id")?,
                attempted_at: r.try_get("attempted_at")?,
                status_code: r.try_get("status_code")?,
                latency_ms: r.try_get("latency_ms")?,
                answer: r.try_get("answer")?,
                error: r.try_get("error")?,
            })
        })
        .collect()
}

/// The body of an event (what every attempt sends).
pub async fn event_body(store: &Store, event_id: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT body FROM events WHERE id = $1").bind(event_id).fetch_optional(&store.pool).await?;
    row.map(|r| Ok(r.try_get("body")?)).transpose()
}

/// A phone's WABA and number, for an event's scope and body.
pub async fn phone_of_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
) -> Result<Option<(i64, String)>, StoreError> {
    let row = sqlx::query("SELECT waba_id, number FROM phones WHERE id = $1")
        .bind(phone_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| Ok((r.try_get("waba_id")?, r.try_get("number")?))).transpose()
}

/// Removes delivered deliveries (with their attempts) delivered before `before`, and events older than that
/// with no delivery left. Dead and pending ones stay (to be redriven, and counted). Returns the deliveries removed.
pub async fn prune(store: &Store, before: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "DELETE FROM event_attempts WHERE delivery_id IN \
         (SELECT id FROM event_deliveries WHERE state = 'delivered' AND delivered_at < $1)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?;
    let n = sqlx::query("DELETE FROM event_deliveries WHERE state = 'delivered' AND delivered_at < $1")
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "DELETE FROM events WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_id = events.id)",
    )
    .bind(before)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}
