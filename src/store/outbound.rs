//! The `outbound` table (and the sending side of `phones`/`wabas`): the SQL of the sender (`crate::outbound`),
//! which decides what to write; these functions only read and write. States and origins are the enums
//! [`SendState`] and [`Origin`]; their texts are spelled in `crate::outbound` only.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{now_ms, rfc3339, Store, StoreError};
use crate::outbound::{NewSend, Origin, Outbound, SendState};

const COLS: &str = "id, phone_id, recipient, origin, origin_ref, request, state, wamid, status, error_code, \
                    error_text, attempts, resent_unconfirmed, started, unknown_since, api_key_id, created_at, updated_at";

/// `state IN ('queued', 'unknown')`: the states of a send that is not over (the text of the partial indexes'
/// conditions, which SQLite uses only for a query that names the same condition).
fn pending() -> String {
    format!("state IN ('{}', '{}')", SendState::Queued.as_str(), SendState::Unknown.as_str())
}

fn bad(column: &str, value: &str) -> StoreError {
    StoreError::Db(sqlx::Error::Decode(format!("outbound.{column} {value:?} is not one this version knows").into()))
}

fn from_row(r: &AnyRow) -> Result<Outbound, StoreError> {
    let updated: i64 = r.try_get("updated_at")?;
    let origin: String = r.try_get("origin")?;
    let state: String = r.try_get("state")?;
    Ok(Outbound {
        id: r.try_get("id")?,
        phone_id: r.try_get("phone_id")?,
        recipient: r.try_get("recipient")?,
        origin: Origin::parse(&origin).ok_or_else(|| bad("origin", &origin))?,
        origin_ref: serde_json::from_str(&r.try_get::<String, _>("origin_ref")?).unwrap_or(Value::Null),
        request: serde_json::from_str(&r.try_get::<String, _>("request")?).unwrap_or(Value::Null),
        state: SendState::parse(&state).ok_or_else(|| bad("state", &state))?,
        wamid: r.try_get("wamid")?,
        status: r.try_get("status")?,
        error_code: r.try_get("error_code")?,
        error_text: r.try_get("error_text")?,
        attempts: r.try_get("attempts")?,
        resent_unconfirmed: r.try_get("resent_unconfirmed")?,
        started: r.try_get("started")?,
        unknown_since: r.try_get("unknown_since")?,
        api_key_id: r.try_get("api_key_id")?,
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(updated),
        updated_at_ms: updated,
    })
}

/// The send with this idempotency key, if any.
pub async fn id_by_idempotency_key_on(
    tx: &mut Transaction<'static, Any>,
    key: &str,
) -> Result<Option<i64>, StoreError> {
    let r =
        sqlx::query("SELECT id FROM outbound WHERE idempotency_key = $1").bind(key).fetch_optional(&mut **tx).await?;
    Ok(r.map(|r| r.try_get("id")).transpose()?)
}

/// Inserts a new `queued` send; its id. A reaction keeps the message it is about (`target_wamid`, for the
/// history).
pub async fn insert_on(tx: &mut Transaction<'static, Any>, send: &NewSend, now: i64) -> Result<i64, StoreError> {
    let target = send.request.get("reaction").and_then(|r| r.get("message_id")).and_then(|m| m.as_str());
    let msg_type = send.request.get("type").and_then(|t| t.as_str());
    let row = sqlx::query(
        "INSERT INTO outbound (phone_id, recipient, origin, origin_ref, request, state, idempotency_key, api_key_id, \
         created_at, updated_at, target_wamid, msg_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) \
         RETURNING id",
    )
    .bind(send.phone_id)
    .bind(&send.recipient)
    .bind(send.origin.as_str())
    .bind(send.origin_ref.to_string())
    .bind(send.request.to_string())
    .bind(SendState::Queued.as_str())
    .bind(&send.idempotency_key)
    .bind(send.api_key_id)
    .bind(now)
    .bind(target)
    .bind(msg_type)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

pub async fn get(store: &Store, id: i64) -> Result<Option<Outbound>, StoreError> {
    let q = format!("SELECT {COLS} FROM outbound WHERE id = $1");
    sqlx::query(&q).bind(id).fetch_optional(&store.pool).await?.as_ref().map(from_row).transpose()
}

/// Recent sends, newest first.
pub async fn list(store: &Store, before: Option<i64>, limit: i64) -> Result<Vec<Outbound>, StoreError> {
    let q = format!("SELECT {COLS} FROM outbound WHERE id < $2 ORDER BY id DESC LIMIT $1");
    sqlx::query(&q)
        .bind(limit)
        .bind(before.unwrap_or(i64::MAX))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The rows of `ids` (in any order), each with the first earlier message to the same customer from the same
/// number that is not over, if any; read marks neither wait nor are waited for. One query per 500 ids.
pub async fn get_many_with_blocker(store: &Store, ids: &[i64]) -> Result<Vec<(Outbound, Option<i64>)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let q = format!(
            "SELECT {COLS}, CASE WHEN b.origin = '{read}' THEN NULL ELSE (SELECT MIN(o.id) FROM outbound o \
             WHERE o.phone_id = b.phone_id AND o.recipient = b.recipient AND o.id < b.id AND o.origin <> '{read}' \
             AND o.{pending}) END AS blocker \
             FROM outbound b WHERE b.id IN ({})",
            marks.join(", "),
            read = Origin::Read.as_str(),
            pending = pending(),
        );
        let mut query = sqlx::query(&q);
        for id in chunk {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&store.pool).await? {
            out.push((from_row(&r)?, r.try_get::<Option<i64>, _>("blocker")?));
        }
    }
    Ok(out)
}

/// Adds `by` to the started attempts of the sends `ids` that are not over (with `by < 0`, only where more were
/// started than recorded); a resend of an `unknown` one counts in `resent_unconfirmed` too.
pub async fn mark_started_on(tx: &mut Transaction<'static, Any>, ids: &[i64], by: i64) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let guard = if by < 0 { " AND started > attempts" } else { "" };
        let q = format!(
            "UPDATE outbound SET started = started + $1, \
             resent_unconfirmed = resent_unconfirmed + CASE WHEN state = '{unknown}' THEN $1 ELSE 0 END \
             WHERE id IN ({}) AND {pending}{guard}",
            marks.join(", "),
            unknown = SendState::Unknown.as_str(),
            pending = pending(),
        );
        let mut query = sqlx::query(&q).bind(by);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// What a status webhook needs of the send it names.
#[derive(Debug, Clone)]
pub struct StatusTarget {
    pub id: i64,
    pub origin: Origin,
    pub state: SendState,
    pub status: Option<String>,
}

/// The send that became `wamid`, else the send `by_opaque` (our `biz_opaque_callback_data`), if any.
pub async fn status_target_on(
    tx: &mut Transaction<'static, Any>,
    wamid: &str,
    by_opaque: Option<i64>,
) -> Result<Option<StatusTarget>, StoreError> {
    let row = match sqlx::query("SELECT id, origin, state, status FROM outbound WHERE wamid = $1")
        .bind(wamid)
        .fetch_optional(&mut **tx)
        .await?
    {
        Some(r) => Some(r),
        None => match by_opaque {
            Some(id) => {
                sqlx::query("SELECT id, origin, state, status FROM outbound WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            None => None,
        },
    };
    let Some(r) = row else { return Ok(None) };
    let (origin, state): (String, String) = (r.try_get("origin")?, r.try_get("state")?);
    Ok(Some(StatusTarget {
        id: r.try_get("id")?,
        origin: Origin::parse(&origin).ok_or_else(|| bad("origin", &origin))?,
        state: SendState::parse(&state).ok_or_else(|| bad("state", &state))?,
        status: r.try_get("status")?,
    }))
}

/// A send whose answer was lost, confirmed by a status webhook: `accepted` with its wamid.
pub async fn confirm_on(tx: &mut Transaction<'static, Any>, id: i64, wamid: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbound SET state = $4, wamid = $2, unknown_since = NULL, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(wamid)
        .bind(now)
        .bind(SendState::Accepted.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Meta's latest status of a send, with its error when it carries one (an earlier error is kept otherwise).
pub async fn set_status_on(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    status: &str,
    error: Option<(i64, &str)>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbound SET status = $2, error_code = COALESCE($3, error_code), error_text = COALESCE($4, error_text), \
         updated_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(error.map(|e| e.0))
    .bind(error.map(|e| e.1.to_string()))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A send not over becomes `accepted` (with its wamid; a read mark has none), counting the attempt.
pub async fn accept_on(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    wamid: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let q = format!(
        "UPDATE outbound SET state = '{accepted}', wamid = COALESCE($2, wamid), unknown_since = NULL, error_code = NULL, \
         error_text = NULL, attempts = attempts + 1, updated_at = $3 WHERE id = $1 AND {pending}",
        accepted = SendState::Accepted.as_str(),
        pending = pending(),
    );
    sqlx::query(&q).bind(id).bind(wamid).bind(now).execute(&mut **tx).await?;
    Ok(())
}

/// Many sends become `accepted` with their wamids at once (`(id, wamid)`, two binds each).
pub async fn accept_many_on(
    tx: &mut Transaction<'static, Any>,
    accepted: &[(i64, &str)],
    now: i64,
) -> Result<(), StoreError> {
    let values: Vec<String> = (0..accepted.len()).map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
    let q = format!(
        "UPDATE outbound SET state = '{state}', wamid = v.column2, unknown_since = NULL, error_code = NULL, \
         error_text = NULL, attempts = attempts + 1, updated_at = $1 FROM (VALUES {}) AS v \
         WHERE outbound.id = v.column1 AND outbound.{pending}",
        values.join(", "),
        state = SendState::Accepted.as_str(),
        pending = pending(),
    );
    let mut query = sqlx::query(&q).bind(now);
    for (id, wamid) in accepted {
        query = query.bind(*id).bind(*wamid);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// A request went out and no answer came: a `queued` send becomes `unknown` since `now` (counting the attempt);
/// one a status webhook confirmed meanwhile stays as it is.
pub async fn unanswered_on(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    error_text: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbound SET state = $4, unknown_since = $2, error_text = $3, attempts = attempts + 1, \
         updated_at = $2 WHERE id = $1 AND state = $5",
    )
    .bind(id)
    .bind(now)
    .bind(error_text)
    .bind(SendState::Unknown.as_str())
    .bind(SendState::Queued.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An earlier attempt left no outcome: a `queued` send becomes `unknown` since `now` (no attempt counted).
pub async fn left_unknown_on(tx: &mut Transaction<'static, Any>, id: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbound SET state = $3, unknown_since = $2, updated_at = $2 WHERE id = $1 AND state = $4")
        .bind(id)
        .bind(now)
        .bind(SendState::Unknown.as_str())
        .bind(SendState::Queued.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes back the started mark of a send that never went out.
pub async fn unstart_on(tx: &mut Transaction<'static, Any>, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbound SET started = started - 1 WHERE id = $1 AND started > attempts")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves a send that is not over to `state` with Meta's code and the reason, counting `attempt` (0 or 1).
#[allow(clippy::too_many_arguments)]
pub async fn set_state_on(
    tx: &mut Transaction<'static, Any>,
    id: i64,
    state: SendState,
    code: Option<i64>,
    reason: &str,
    attempt: i64,
    now: i64,
) -> Result<(), StoreError> {
    let q = format!(
        "UPDATE outbound SET state = $5, error_code = $2, error_text = $3, attempts = attempts + $6, updated_at = $4 \
         WHERE id = $1 AND {}",
        pending()
    );
    sqlx::query(&q)
        .bind(id)
        .bind(code)
        .bind(reason)
        .bind(now)
        .bind(state.as_str())
        .bind(attempt)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What sending from one number needs, as stored.
#[derive(Debug, Clone)]
pub struct PhoneSending {
    pub phone_id: i64,
    pub phone_number_id: String,
    pub throughput_mps: i64,
    pub waba_id: i64,
    /// The WABA's sealed token, else its app's, with the field it is sealed as.
    pub token: (&'static str, Option<String>),
    /// Why the WABA's sends are paused, when they are.
    pub paused: Option<String>,
}

/// [`PhoneSending`] of every number (one query).
pub async fn phones_sending(store: &Store) -> Result<Vec<PhoneSending>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.id, p.phone_number_id, p.throughput_mps, w.id AS waba_id, w.access_token AS waba_token, \
         a.access_token AS app_token, w.sends_paused_at, w.sends_paused_reason \
         FROM phones p JOIN wabas w ON w.id = p.waba_id JOIN meta_apps a ON a.id = w.app_id",
    )
    .fetch_all(&store.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let token = match row.try_get::<Option<String>, _>("waba_token")? {
            Some(t) => ("wabas.access_token", Some(t)),
            None => ("meta_apps.access_token", row.try_get::<Option<String>, _>("app_token")?),
        };
        let paused = match row.try_get::<Option<i64>, _>("sends_paused_at")? {
            Some(_) => Some(row.try_get::<Option<String>, _>("sends_paused_reason")?.unwrap_or_default()),
            None => None,
        };
        out.push(PhoneSending {
            phone_id: row.try_get("id")?,
            phone_number_id: row.try_get("phone_number_id")?,
            throughput_mps: row.try_get("throughput_mps")?,
            waba_id: row.try_get("waba_id")?,
            token,
            paused,
        });
    }
    Ok(out)
}

/// Pauses every send of a WABA with `reason`; false when they already were.
pub async fn pause_waba_on<'c, E>(conn: E, waba_id: i64, reason: &str) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let n = sqlx::query(
        "UPDATE wabas SET sends_paused_at = $2, sends_paused_reason = $3 WHERE id = $1 AND sends_paused_at IS NULL",
    )
    .bind(waba_id)
    .bind(now_ms())
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Lifts the pause of a WABA's sends; false when they were not paused.
pub async fn unpause_waba(store: &Store, waba_id: i64) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE wabas SET sends_paused_at = NULL, sends_paused_reason = NULL WHERE id = $1 AND sends_paused_at IS NOT NULL",
    )
    .bind(waba_id)
    .execute(&store.pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// How many sends are in each of `queued` and `unknown` (states without sends are left out).
pub async fn pending_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(&format!("SELECT state, COUNT(*) AS n FROM outbound WHERE {} GROUP BY state", pending()))
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
}

/// How many WABAs have their sends paused.
pub async fn wabas_paused(store: &Store) -> Result<i64, StoreError> {
    let r =
        sqlx::query("SELECT COUNT(*) AS n FROM wabas WHERE sends_paused_at IS NOT NULL").fetch_one(&store.pool).await?;
    Ok(r.try_get("n")?)
}

/// The Graph request of the send that became message `wamid`, when it is readable JSON.
pub async fn request_by_wamid(store: &Store, wamid: &str) -> Result<Option<Value>, StoreError> {
    let r =
        sqlx::query("SELECT request FROM outbound WHERE wamid = $1").bind(wamid).fetch_optional(&store.pool).await?;
    Ok(r.and_then(|r| r.try_get::<String, _>("request").ok()).and_then(|t| serde_json::from_str::<Value>(&t).ok()))
}

/// A send of the SMS provider refused before Meta (`failed` at once, with why); returns its id.
pub async fn insert_refused_sms_on(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    recipient: &str,
    origin_ref: &Value,
    request: &Value,
    reason: &str,
    idempotency_key: &str,
) -> Result<i64, StoreError> {
    let r = sqlx::query(
        "INSERT INTO outbound (phone_id, recipient, origin, origin_ref, request, state, error_text, \
         idempotency_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         RETURNING id",
    )
    .bind(phone_id)
    .bind(recipient)
    .bind(Origin::Sms.as_str())
    .bind(origin_ref.to_string())
    .bind(request.to_string())
    .bind(SendState::Failed.as_str())
    .bind(reason)
    .bind(idempotency_key)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok(r.try_get("id")?)
}
