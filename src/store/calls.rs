//! Call records: written by the SIP edge as a call progresses, read by the admin API.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::{now_ms, rfc3339, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub call_key: String,
    pub sip_call_id: String,
    pub phone_id: Option<i64>,
    /// `inbound` (Meta → PBX, a customer calls) or `outbound` (PBX → Meta).
    pub direction: String,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub invited_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallView {
    pub id: i64,
    /// WhatsApp call id (`wacid...`) or the SIP Call-ID.
    pub call_key: String,
    pub sip_call_id: String,
    pub phone: Option<i64>,
    pub direction: String,
    pub caller: Option<String>,
    pub callee: Option<String>,
    pub invited_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<i64>,
    /// Final SIP status of the INVITE (200 when answered).
    pub final_status: Option<i64>,
    /// `caller`, `callee`, or null while the call is up or when it was never answered.
    pub hangup_by: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    pub phone: Option<i64>,
    pub direction: Option<String>,
    pub since_ms: Option<i64>,
    pub answered: Option<bool>,
    pub limit: i64,
    /// Rows skipped before the first one returned (paging).
    pub offset: i64,
}

fn view(r: &AnyRow) -> Result<CallView, sqlx::Error> {
    let ts = |c: &str| -> Result<Option<String>, sqlx::Error> { Ok(r.try_get::<Option<i64>, _>(c)?.map(rfc3339)) };
    Ok(CallView {
        id: r.try_get("id")?,
        call_key: r.try_get("call_key")?,
        sip_call_id: r.try_get("sip_call_id")?,
        phone: r.try_get("phone_id")?,
        direction: r.try_get("direction")?,
        caller: r.try_get("caller")?,
        callee: r.try_get("callee")?,
        invited_at: rfc3339(r.try_get("invited_at")?),
        answered_at: ts("answered_at")?,
        ended_at: ts("ended_at")?,
        duration_seconds: r.try_get("duration_seconds")?,
        final_status: r.try_get("final_status")?,
        hangup_by: r.try_get("hangup_by")?,
    })
}

impl Store {
    pub async fn list_calls(&self, f: &CallFilter) -> Result<Vec<CallView>, StoreError> {
        let mut sql = String::from("SELECT * FROM calls WHERE 1 = 1");
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if f.phone.is_some() {
            sql.push_str(&format!(" AND phone_id = ${}", next()));
        }
        if f.direction.is_some() {
            sql.push_str(&format!(" AND direction = ${}", next()));
        }
        if f.since_ms.is_some() {
            sql.push_str(&format!(" AND invited_at >= ${}", next()));
        }
        match f.answered {
            Some(true) => sql.push_str(" AND answered_at IS NOT NULL"),
            Some(false) => sql.push_str(" AND answered_at IS NULL"),
            None => {}
        }
        sql.push_str(&format!(" ORDER BY invited_at DESC, id DESC LIMIT $1 OFFSET ${}", next()));
        let mut q = sqlx::query(&sql).bind(f.limit);
        if let Some(p) = f.phone {
            q = q.bind(p);
        }
        if let Some(d) = &f.direction {
            q = q.bind(d.clone());
        }
        if let Some(s) = f.since_ms {
            q = q.bind(s);
        }
        q = q.bind(f.offset);
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(view).collect::<Result<_, _>>()?)
    }
}

/// Records a new call once (a retransmitted or re-authenticated INVITE changes nothing): the call when it is new.
pub async fn call_started_on(tx: &mut Transaction<'static, Any>, c: &NewCall) -> Result<Option<CallView>, StoreError> {
    let row = sqlx::query(
        "INSERT INTO calls (call_key, sip_call_id, phone_id, direction, caller, callee, invited_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (call_key) DO NOTHING RETURNING *",
    )
    .bind(&c.call_key)
    .bind(&c.sip_call_id)
    .bind(c.phone_id)
    .bind(&c.direction)
    .bind(&c.caller)
    .bind(&c.callee)
    .bind(c.invited_at)
    .bind(now_ms())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(view).transpose()?)
}

/// The INVITE's final answer (2xx marks the answer time; only the first final status counts): the call when this
/// was its final status.
pub async fn call_final_status_on(
    tx: &mut Transaction<'static, Any>,
    key: &str,
    status: u16,
    at_ms: i64,
) -> Result<Option<CallView>, StoreError> {
    let answered = (200..300).contains(&status).then_some(at_ms);
    let ended = (status >= 300).then_some(at_ms);
    let row = sqlx::query(
        "UPDATE calls SET final_status = $2, answered_at = $3, ended_at = COALESCE(ended_at, $4), updated_at = $5 \
         WHERE call_key = $1 AND final_status IS NULL RETURNING *",
    )
    .bind(key)
    .bind(status as i64)
    .bind(answered)
    .bind(ended)
    .bind(now_ms())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(view).transpose()?)
}

/// A BYE: who hung up, and the duration (Meta's `x-wa-meta-call-duration` when given, else measured). `key` or
/// `sip_call_id` finds the call: a BYE from the PBX carries the SIP Call-ID but not Meta's call id. The call when
/// this BYE ended it.
pub async fn call_ended_on(
    tx: &mut Transaction<'static, Any>,
    key: &str,
    sip_call_id: &str,
    hangup_by: &str,
    duration_seconds: Option<i64>,
    at_ms: i64,
) -> Result<Option<CallView>, StoreError> {
    let row = sqlx::query(
        "UPDATE calls SET ended_at = $2, hangup_by = $3, \
           duration_seconds = COALESCE($4, CASE WHEN answered_at IS NULL THEN NULL ELSE ($2 - answered_at) / 1000 END), \
           updated_at = $5 \
         WHERE (call_key = $1 OR sip_call_id = $6) AND hangup_by IS NULL RETURNING *",
    )
    .bind(key)
    .bind(at_ms)
    .bind(hangup_by)
    .bind(duration_seconds)
    .bind(now_ms())
    .bind(sip_call_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(view).transpose()?)
}
