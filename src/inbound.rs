//! Processing of a committed webhook body (`inbox.process` jobs): parse, then apply each effect exactly once.
//!
//! Effects are keyed: inbound messages by `wamid`, statuses by `(wamid, status)`, template events by
//! `(template id, event, time)`. All effects of one body commit in one transaction, so a crash mid-way
//! redoes the whole body and the keys turn the redo of what had been done into no-ops.

use std::collections::HashMap;

use sqlx::{Any, Row, Transaction};

use crate::jobs::catalogue::InboxProcess;
use crate::jobs::{Job, JobError};
use crate::meta::webhook::{self, ChangeValue, Content, InboundMessage, MessagesValue, Status, StatusKind};
use crate::store::{now_ms, Store};

/// What one body did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub messages_new: usize,
    pub statuses_new: usize,
    pub template_events: usize,
    pub other_changes: usize,
    pub unknown_phone: usize,
}

/// Bodies from this size on are dropped from the SQLite page cache once read.
const LARGE_BODY: usize = 1024 * 1024;

pub async fn process_job(store: Store, job: Job, task: InboxProcess) -> Result<(), JobError> {
    let inbox_id = task.inbox_id;
    let mut conn = store.pool.acquire().await?;
    let row = sqlx::query("SELECT id, body FROM inbox WHERE id = $1")
        .bind(inbox_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| JobError::Permanent("its inbox row is gone (pruned?)".into()))?;
    let inbox_id: i64 = row.try_get("id")?;
    // Parsed straight from the row's bytes (no copy), and the row is let go before the effects are applied: a
    // large body is held once, then only as its parsed form.
    let body: &[u8] = row.try_get("body")?;
    let large = body.len() >= LARGE_BODY;
    let payload = match webhook::parse(body) {
        Ok(p) => p,
        Err(e) => {
            drop(row);
            // Never processable: marked processed so that it does not hold back the CRM deliveries of later
            // webhooks (crm/deliver.rs waits for earlier unprocessed rows); the row stays for the dead job.
            sqlx::query("UPDATE inbox SET processed_at = $2 WHERE id = $1")
                .bind(inbox_id)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            return Err(JobError::Permanent(format!("webhook body is not a valid Meta payload: {e}")));
        }
    };
    drop(row);
    if large && store.backend == crate::store::Backend::Sqlite {
        // The body's pages now sit in this connection's page cache (up to 64 MiB per pool connection), where they
        // are of no further use: give them back rather than keep hundreds of MiB after a burst of large webhooks.
        if let Err(e) = sqlx::query("PRAGMA shrink_memory").execute(&mut *conn).await {
            tracing::debug!(error = %e, "PRAGMA shrink_memory failed");
        }
        // SQLite allocates with the C library's malloc, not the Rust allocator: glibc keeps what SQLite freed in
        // its arenas unless asked to give it back.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim takes no pointers and only returns free memory of the C heap to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    drop(conn);
    let mut tx = store.begin_write().await?;
    let applied = apply(&mut tx, &payload, Some(inbox_id)).await?;
    sqlx::query("UPDATE inbox SET processed_at = $2 WHERE id = $1")
        .bind(inbox_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::debug!(job = job.id, ?applied, "webhook processed");
    if applied.unknown_phone > 0 {
        tracing::warn!(
            job = job.id,
            changes = applied.unknown_phone,
            "webhook for a phone_number_id that is not registered"
        );
    }
    Ok(())
}

/// A message's place in the order of arrival: its webhook's inbox row id (rows are numbered in the order their
/// webhooks were acknowledged), then its index in the body (`messages.arrival`, migration 0011).
pub fn arrival(inbox_id: i64, index: usize) -> i64 {
    inbox_id.saturating_mul(ARRIVAL_SLOTS).saturating_add(index.min(ARRIVAL_SLOTS as usize - 1) as i64)
}

/// Messages of one body told apart in [`arrival`]; later ones share the last slot (Meta sends a few at most).
pub const ARRIVAL_SLOTS: i64 = 4096;

/// Applies every effect of a parsed body; `inbox_id` is its inbox row (None when it has none: a test applying a
/// body by hand), which gives its messages their [`arrival`].
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    payload: &webhook::Payload,
    inbox_id: Option<i64>,
) -> Result<Applied, JobError> {
    let mut applied = Applied::default();
    let mut index = 0usize;
    let mut phones: HashMap<String, Option<i64>> = HashMap::new();
    for entry in &payload.entry {
        for change in &entry.changes {
            match &change.value {
                ChangeValue::Messages(v) => {
                    let pnid = &v.metadata.phone_number_id;
                    let phone = match phones.get(pnid) {
                        Some(p) => *p,
                        None => {
                            let p = sqlx::query("SELECT id FROM phones WHERE phone_number_id = $1")
                                .bind(pnid)
                                .fetch_optional(&mut **tx)
                                .await?
                                .map(|r| r.try_get::<i64, _>("id"))
                                .transpose()?;
                            phones.insert(pnid.clone(), p);
                            p
                        }
                    };
                    let Some(phone_id) = phone else {
                        applied.unknown_phone += 1;
                        continue;
                    };
                    apply_messages(tx, phone_id, v, &mut applied, inbox_id, &mut index).await?;
                    let at = entry.time.map(|t| t * 1000);
                    for e in &v.errors {
                        // Not tied to a message: kept on the phone (admin API, /metrics), never silently dropped.
                        if crate::store::webhook_errors::record_on(tx, phone_id, e, at).await? {
                            tracing::warn!(phone = phone_id, code = e.code, "Meta reported an error in a webhook");
                            applied.other_changes += 1;
                        }
                    }
                }
                ChangeValue::TemplateStatus(t) => {
                    let waba: Option<i64> = sqlx::query("SELECT id FROM wabas WHERE waba_id = $1")
                        .bind(&entry.id)
                        .fetch_optional(&mut **tx)
                        .await?
                        .map(|r| r.try_get("id"))
                        .transpose()?;
                    let Some(waba_id) = waba else {
                        applied.other_changes += 1;
                        continue;
                    };
                    let at = entry.time.map(|t| t * 1000).unwrap_or_else(now_ms);
                    let new = sqlx::query(
                        "INSERT INTO template_events (waba_id, template_id, event, occurred_at, name, language, reason) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(waba_id)
                    .bind(&t.template_id)
                    .bind(&t.event)
                    .bind(at)
                    .bind(&t.name)
                    .bind(&t.language)
                    .bind(&t.reason)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    if new == 1 {
                        applied.template_events += 1;
                        crate::templates::request_sync_on(&mut **tx, waba_id).await?;
                        // Only a newer event moves the template's status.
                        sqlx::query(
                            "INSERT INTO templates (waba_id, template_id, name, language, category, status, reason, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (waba_id, name, language) DO UPDATE SET status = excluded.status, \
                               reason = excluded.reason, template_id = excluded.template_id, updated_at = excluded.updated_at \
                             WHERE templates.updated_at <= excluded.updated_at",
                        )
                        .bind(waba_id)
                        .bind(&t.template_id)
                        .bind(&t.name)
                        .bind(&t.language)
                        .bind(&t.category)
                        .bind(&t.event)
                        .bind(&t.reason)
                        .bind(at)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                ChangeValue::AccountUpdate(a) => {
                    record_account_event(tx, &entry.id, &change.field, a.event.as_deref(), &a.raw, entry.time).await?;
                    applied.other_changes += 1;
                }
                ChangeValue::PhoneQuality(q) => {
                    record_account_event(tx, &entry.id, &change.field, q.event.as_deref(), &q.raw, entry.time).await?;
                    applied.other_changes += 1;
                }
                ChangeValue::Other(raw) => {
                    record_account_event(tx, &entry.id, &change.field, None, raw, entry.time).await?;
                    applied.other_changes += 1;
                }
            }
        }
    }
    Ok(applied)
}

/// Account-level events (and fields we do not handle yet) are kept with their raw JSON, once.
async fn record_account_event(
    tx: &mut Transaction<'static, Any>,
    waba: &str,
    field: &str,
    event: Option<&str>,
    raw: &serde_json::Value,
    time: Option<i64>,
) -> Result<(), JobError> {
    use sha2::{Digest, Sha256};
    let raw_text = raw.to_string();
    let key = hex::encode(Sha256::digest(format!("{waba}|{field}|{}|{raw_text}", time.unwrap_or(0)).as_bytes()));
    sqlx::query(
        "INSERT INTO account_events (dedup_key, waba_id, field, event, raw, occurred_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(key)
    .bind(waba)
    .bind(field)
    .bind(event)
    .bind(raw_text)
    .bind(time.map(|t| t * 1000).unwrap_or_else(now_ms))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn apply_messages(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    v: &MessagesValue,
    applied: &mut Applied,
    inbox_id: Option<i64>,
    index: &mut usize,
) -> Result<(), JobError> {
    for m in &v.messages {
        let contact = upsert_contact(tx, phone_id, v, m).await?;
        let now = now_ms();
        let place = inbox_id.map(|id| arrival(id, *index));
        *index += 1;
        let new = sqlx::query(
            "INSERT INTO messages (wamid, phone_id, contact_id, direction, msg_type, body, context_wamid, raw, \
             sent_at, created_at, updated_at, arrival) VALUES ($1, $2, $3, 'in', $4, $5, $6, $7, $8, $9, $9, $10) \
             ON CONFLICT (wamid) DO NOTHING",
        )
        .bind(&m.id)
        .bind(phone_id)
        .bind(contact)
        .bind(m.content.type_name())
        .bind(text_of(&m.content))
        .bind(m.context.as_ref().and_then(|c| c.id.clone()))
        .bind(m.raw.to_string())
        .bind(m.timestamp * 1000)
        .bind(now)
        .bind(place)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        applied.messages_new += new as usize;
        if new == 1 {
            crate::calling::permissions::record_on(tx, phone_id, contact, m).await?;
            crate::crm::deliver::enqueue_on(tx, phone_id, &m.id).await?;
        }
    }
    for s in &v.statuses {
        applied.statuses_new += apply_status(tx, s).await?;
    }
    Ok(())
}

/// Creates or refreshes the sender as a contact of this phone; returns its id. The contact key is the
/// WhatsApp id when known, else the business-scoped user id. The last inbound time only moves forward.
async fn upsert_contact(
    tx: &mut Transaction<'static, Any>,
    phone_id: i64,
    v: &MessagesValue,
    m: &InboundMessage,
) -> Result<Option<i64>, JobError> {
    let profile = v
        .contacts
        .iter()
        .find(|c| (c.wa_id.is_some() && c.wa_id == m.from) || (c.user_id.is_some() && c.user_id == m.from_user_id));
    let profile = profile.or(if v.contacts.len() == 1 { v.contacts.first() } else { None });
    let wa_id = m.from.clone().or_else(|| profile.and_then(|p| p.wa_id.clone()));
    let user_id = m.from_user_id.clone().or_else(|| profile.and_then(|p| p.user_id.clone()));
    let Some(key) = wa_id.clone().or_else(|| user_id.clone()) else {
        return Ok(None);
    };
    let name = profile.and_then(|p| p.profile_name.clone());
    let at = m.timestamp * 1000;
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO contacts (phone_id, contact_key, wa_id, user_id, profile_name, last_inbound_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (phone_id, contact_key) DO UPDATE SET \
           wa_id = COALESCE(excluded.wa_id, contacts.wa_id), \
           user_id = COALESCE(excluded.user_id, contacts.user_id), \
           profile_name = COALESCE(excluded.profile_name, contacts.profile_name), \
           last_inbound_at = CASE WHEN contacts.last_inbound_at IS NULL OR excluded.last_inbound_at > contacts.last_inbound_at \
                                  THEN excluded.last_inbound_at ELSE contacts.last_inbound_at END, \
           updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(phone_id)
    .bind(key)
    .bind(wa_id)
    .bind(user_id)
    .bind(name)
    .bind(at)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(row.try_get("id")?))
}

/// Records a status once per `(wamid, status)`, and moves the message's current status only forward.
async fn apply_status(tx: &mut Transaction<'static, Any>, s: &Status) -> Result<usize, JobError> {
    let err = s.errors.first();
    let new = sqlx::query(
        "INSERT INTO message_statuses (wamid, status, occurred_at, recipient, error_code, error_text, pricing, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (wamid, status) DO NOTHING",
    )
    .bind(&s.id)
    .bind(s.status.as_str())
    .bind(s.timestamp * 1000)
    .bind(s.recipient_id.clone().or_else(|| s.recipient_user_id.clone()))
    .bind(err.map(|e| e.code))
    .bind(err.map(|e| e.details.clone().or_else(|| e.title.clone()).unwrap_or_default()))
    .bind(s.pricing.as_ref().map(|p| serde_json::json!({"model": p.pricing_model, "type": p.kind, "category": p.category}).to_string()))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if new == 1 && !matches!(s.status, StatusKind::Other(_)) {
        sqlx::query(
            "UPDATE messages SET status = $2, status_rank = $3, status_at = $4, error_code = $5, error_text = $6, \
             updated_at = $7 WHERE wamid = $1 AND status_rank < $3 AND (status IS NULL OR status <> 'failed')",
        )
        .bind(&s.id)
        .bind(s.status.as_str())
        .bind(s.status.rank() as i64)
        .bind(s.timestamp * 1000)
        .bind(err.map(|e| e.code))
        .bind(err.map(|e| e.details.clone().or_else(|| e.title.clone()).unwrap_or_default()))
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        let error = err.map(|e| (e.code, e.details.clone().or_else(|| e.title.clone()).unwrap_or_default()));
        let opaque = s.biz_opaque_callback_data.as_deref();
        crate::outbound::on_status(tx, &s.id, opaque, s.status.as_str(), s.status.rank() as i64, error).await?;
    }
    Ok(new as usize)
}

/// The furthest status recorded for a message (statuses may arrive in any order).
pub async fn current_status(store: &Store, wamid: &str) -> Result<Option<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT status FROM message_statuses WHERE wamid = $1").bind(wamid).fetch_all(&store.pool).await?;
    let mut current: Option<StatusKind> = None;
    for r in rows {
        let next = StatusKind::parse(&r.try_get::<String, _>("status")?);
        if webhook::advances(current.as_ref(), &next) {
            current = Some(next);
        }
    }
    Ok(current.map(|s| s.as_str().to_string()))
}

/// A short text for the message (kept in the store; never logged).
fn text_of(c: &Content) -> Option<String> {
    match c {
        Content::Text { body } => Some(body.clone()),
        Content::Image(m) | Content::Video(m) | Content::Document(m) => m.caption.clone(),
        Content::Button { text, .. } => Some(text.clone()),
        Content::Reaction { emoji, .. } => emoji.clone(),
        Content::Location { name, address, latitude, longitude, .. } => Some(format!(
            "{} {} ({latitude}, {longitude})",
            name.clone().unwrap_or_default(),
            address.clone().unwrap_or_default()
        )),
        Content::System { body, .. } => body.clone(),
        _ => None,
    }
}
