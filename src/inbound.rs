//! Processing of a committed webhook body (`inbox.process` jobs): parse, then apply each effect exactly once.
//!
//! Effects are keyed: inbound messages by `wamid`, statuses by `(wamid, status)`, template events by
//! `(template id, event, time)`. All effects of one body commit in one transaction, so a crash mid-way
//! redoes the whole body and the keys turn the redo of what had been done into no-ops.

use std::collections::HashMap;

use sqlx::{Any, Transaction};

use crate::events::EventType;
use crate::jobs::catalogue::InboxProcess;
use crate::jobs::{Batched, Job, JobError};
use crate::meta::webhook::{self, ChangeValue, Content, InboundMessage, MessagesValue, Status, StatusKind};
use crate::store::{account_events, activity, contacts, inbox, messages, phones, registry, templates};
use crate::store::{now_ms, Store, StoreError};

/// What one body did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub messages_new: usize,
    pub statuses_new: usize,
    pub template_events: usize,
    pub other_changes: usize,
    pub unknown_phone: usize,
    /// The registered phones the body was about (each once), for the console's last-webhook times.
    pub phones: Vec<i64>,
}

/// What a transaction of webhook bodies looks up once rather than per message: the phones by Meta's id, whether
/// each is bound to a portal, and who subscribed to its events. Valid for one transaction only.
#[derive(Debug, Default)]
pub struct Lookups {
    phones: HashMap<String, Option<i64>>,
    bound: HashMap<i64, bool>,
    events: crate::events::EmitCache,
}

/// Bodies from this size on are dropped from the SQLite page cache once read.
const LARGE_BODY: usize = 1024 * 1024;

pub async fn process_job(store: Store, job: Job, task: InboxProcess) -> Result<(), JobError> {
    let inbox_id = task.inbox_id;
    let mut conn = store.acquire().await?;
    let row = inbox::body_on(&mut conn, inbox_id)
        .await?
        .ok_or_else(|| JobError::Permanent("its inbox row is gone (pruned?)".into()))?;
    let inbox_id: i64 = row.id()?;
    // Parsed straight from the row's bytes (no copy), and the row is let go before the effects are applied: a
    // large body is held once, then only as its parsed form.
    let body: &[u8] = row.body()?;
    let large = body.len() >= LARGE_BODY;
    let source = row.source()?;
    let (app_id, received_at) = (row.app_id()?, row.received_at()?);
    let payload = match crate::channel::parse_inbound(&source, body) {
        Ok(p) => p,
        Err(e) => {
            drop(row);
            // Never processable: marked processed so that it does not hold back the CRM deliveries of later
            // webhooks (crm/deliver.rs waits for earlier unprocessed rows); the row stays for the dead job.
            inbox::mark_processed_on(&mut *conn, inbox_id).await?;
            return Err(JobError::Permanent(format!("the stored body cannot be read: {e}")));
        }
    };
    drop(row);
    if large && store.backend == crate::store::Backend::Sqlite {
        // The body's pages now sit in this connection's page cache (up to 64 MiB per pool connection), where they
        // are of no further use: give them back rather than keep hundreds of MiB after a burst of large webhooks.
        if let Err(e) = inbox::shrink_memory(&mut conn).await {
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
    let turn = store.write_turn().await;
    let mut tx = store.begin_write().await?;
    let applied = apply(&mut tx, &payload, Some(inbox_id)).await?;
    inbox::mark_processed_on(&mut *tx, inbox_id).await?;
    tx.commit().await?;
    drop(turn);
    tracing::debug!(job = job.id, ?applied, "webhook processed");
    // Best effort, outside the transaction: a failure here must not redo the body.
    let seen = std::iter::once((activity::Scope::App, app_id))
        .chain(applied.phones.iter().map(|p| (activity::Scope::Phone, *p)));
    for (scope, id) in seen {
        if let Err(e) = activity::touch(&store, scope, id, received_at).await {
            tracing::debug!(error = %e, "could not record the last webhook time");
        }
    }
    if applied.unknown_phone > 0 {
        tracing::warn!(
            job = job.id,
            changes = applied.unknown_phone,
            "webhook for a phone_number_id that is not registered"
        );
    }
    Ok(())
}

/// Processes many `inbox.process` jobs at once (`owner` holds their leases): their bodies are read in one query
/// and every effect of every body, the rows' `processed_at` and the jobs' `done` commit in one transaction: one
/// commit (one fsync) for the batch instead of two per body. Crash safety is the single job's: nothing of the
/// batch is committed, or all of it is. A body that is large, gone or unreadable, or a batch whose transaction
/// fails, is left to the single-job path ([`process_job`]), which isolates the one at fault.
pub async fn process_batch(store: &Store, owner: &str, jobs: Vec<(Job, InboxProcess)>) -> Vec<(Job, Batched)> {
    match apply_batch(store, owner, &jobs).await {
        Ok(done) => jobs
            .into_iter()
            .map(|(job, task)| {
                let d = if done.contains(&task.inbox_id) { Batched::Done } else { Batched::Alone };
                (job, d)
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, jobs = jobs.len(), "a batch of webhooks failed; processing them one by one");
            jobs.into_iter().map(|(job, _)| (job, Batched::Alone)).collect()
        }
    }
}

/// The batch of [`process_batch`]: the inbox ids it committed as processed (with their jobs done).
async fn apply_batch(store: &Store, owner: &str, jobs: &[(Job, InboxProcess)]) -> Result<Vec<i64>, JobError> {
    let ids: Vec<i64> = jobs.iter().map(|(_, t)| t.inbox_id).collect();
    let rows = {
        let mut conn = store.acquire().await?;
        inbox::small_bodies_on(&mut conn, &ids, LARGE_BODY).await?
    };
    let mut parsed = Vec::with_capacity(rows.len());
    let mut received = std::collections::HashMap::new();
    for row in rows {
        if let Ok(p) = crate::channel::parse_inbound(&row.source, &row.body) {
            received.insert(row.id, (row.app_id, row.received_at));
            parsed.push((row.id, p));
        }
    }
    if parsed.is_empty() {
        return Ok(Vec::new());
    }
    let turn = store.write_turn().await;
    let mut tx = store.begin_write().await?;
    let mut unknown = 0;
    // The latest webhook per app and phone, for the console's last-webhook times.
    let mut seen: std::collections::HashMap<(activity::Scope, i64), i64> = std::collections::HashMap::new();
    let mut look = Lookups::default();
    for (id, payload) in &parsed {
        let applied = apply_with(&mut tx, payload, Some(*id), &mut look).await?;
        unknown += applied.unknown_phone;
        if let Some(&(app_id, at)) = received.get(id) {
            let scopes = std::iter::once((activity::Scope::App, app_id))
                .chain(applied.phones.iter().map(|p| (activity::Scope::Phone, *p)));
            for key in scopes {
                let latest = seen.entry(key).or_insert(at);
                *latest = (*latest).max(at);
            }
        }
    }
    let done: Vec<i64> = parsed.iter().map(|(id, _)| *id).collect();
    inbox::mark_many_processed_on(&mut *tx, &done).await?;
    let job_ids: Vec<i64> = jobs.iter().filter(|(_, t)| done.contains(&t.inbox_id)).map(|(j, _)| j.id).collect();
    crate::jobs::finish_many_on(&mut *tx, owner, &job_ids).await?;
    tx.commit().await?;
    drop(turn);
    tracing::debug!(bodies = done.len(), "webhooks processed in one transaction");
    // Best effort, outside the transaction, as for a single body.
    for ((scope, id), at) in seen {
        if let Err(e) = activity::touch(store, scope, id, at).await {
            tracing::debug!(error = %e, "could not record the last webhook time");
        }
    }
    if unknown > 0 {
        tracing::warn!(changes = unknown, "webhook for a phone_number_id that is not registered");
    }
    Ok(done)
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
    apply_with(tx, payload, inbox_id, &mut Lookups::default()).await
}

/// [`apply`] with the lookups of a transaction that applies several bodies.
pub async fn apply_with(
    tx: &mut Transaction<'static, Any>,
    payload: &webhook::Payload,
    inbox_id: Option<i64>,
    look: &mut Lookups,
) -> Result<Applied, JobError> {
    let mut applied = Applied::default();
    let mut index = 0usize;
    for entry in &payload.entry {
        for change in &entry.changes {
            match &change.value {
                ChangeValue::Messages(v) => {
                    let pnid = &v.metadata.phone_number_id;
                    let phone = match look.phones.get(pnid) {
                        Some(p) => *p,
                        None => {
                            let p = phones::id_by_phone_number_id_on(tx, pnid).await?;
                            look.phones.insert(pnid.clone(), p);
                            p
                        }
                    };
                    let Some(phone_id) = phone else {
                        applied.unknown_phone += 1;
                        continue;
                    };
                    if !applied.phones.contains(&phone_id) {
                        applied.phones.push(phone_id);
                    }
                    apply_messages(tx, look, phone_id, v, &mut applied, inbox_id, &mut index).await?;
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
                    let waba = registry::waba_id_by_meta_id_on(tx, &entry.id).await?;
                    let Some(waba_id) = waba else {
                        applied.other_changes += 1;
                        continue;
                    };
                    let at = entry.time.map(|t| t * 1000).unwrap_or_else(now_ms);
                    if templates::record_event_on(tx, waba_id, t, at).await? {
                        applied.template_events += 1;
                        crate::templates::request_sync_on(&mut **tx, waba_id).await?;
                        // Only a newer event moves the template's status.
                        templates::apply_event_on(tx, waba_id, t, at).await?;
                        let data = crate::events::template_status(&entry.id, t, at);
                        crate::events::emit_on(tx, EventType::TemplateStatus, Some(waba_id), None, data).await?;
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
) -> Result<(), StoreError> {
    account_events::record_on(tx, waba, field, event, raw, time).await
}

async fn apply_messages(
    tx: &mut Transaction<'static, Any>,
    look: &mut Lookups,
    phone_id: i64,
    v: &MessagesValue,
    applied: &mut Applied,
    inbox_id: Option<i64>,
    index: &mut usize,
) -> Result<(), JobError> {
    for m in &v.messages {
        let contact = upsert_contact(tx, phone_id, v, m).await?;
        let place = inbox_id.map(|id| arrival(id, *index));
        *index += 1;
        let new = messages::insert_inbound_on(
            tx,
            &messages::NewInbound {
                wamid: &m.id,
                phone_id,
                contact_id: contact,
                msg_type: m.content.type_name(),
                body: text_of(&m.content),
                context_wamid: m.context.as_ref().and_then(|c| c.id.clone()),
                raw: m.raw.to_string(),
                sent_at: m.timestamp * 1000,
                arrival: place,
                target_wamid: crate::history::target_of(&m.content),
            },
        )
        .await?;
        applied.messages_new += usize::from(new.is_some());
        if let Some(message_id) = new {
            crate::calling::permissions::record_on(tx, phone_id, contact, m).await?;
            let bound = match look.bound.get(&phone_id) {
                Some(b) => *b,
                None => {
                    let b = phones::bound_to_portal_on(tx, phone_id).await?;
                    look.bound.insert(phone_id, b);
                    b
                }
            };
            if bound {
                crate::crm::deliver::enqueue_on(tx, phone_id, contact, message_id, place).await?;
            }
            let data = || crate::events::message_received(v, m);
            crate::events::emit_for_phone_cached(tx, &mut look.events, EventType::MessageReceived, phone_id, data)
                .await?;
        }
    }
    for s in &v.statuses {
        applied.statuses_new += apply_status(tx, look, phone_id, s).await?;
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
    let sender = contacts::Sender {
        phone_id,
        contact_key: key,
        wa_id,
        user_id,
        profile_name: profile.and_then(|p| p.profile_name.clone()),
        inbound_at: m.timestamp * 1000,
    };
    Ok(Some(contacts::upsert_on(tx, &sender).await?))
}

/// Records a status once per `(wamid, status)`, and moves the message's current status only forward.
async fn apply_status(
    tx: &mut Transaction<'static, Any>,
    look: &mut Lookups,
    phone_id: i64,
    s: &Status,
) -> Result<usize, JobError> {
    let err = s.errors.first();
    let error_text = err.map(|e| e.details.clone().or_else(|| e.title.clone()).unwrap_or_default());
    let status = messages::NewStatus {
        wamid: &s.id,
        status: &s.status,
        occurred_at: s.timestamp * 1000,
        recipient: s.recipient_id.clone().or_else(|| s.recipient_user_id.clone()),
        error_code: err.map(|e| e.code),
        error_text: error_text.clone(),
        pricing: s
            .pricing
            .as_ref()
            .map(|p| serde_json::json!({"model": p.pricing_model, "type": p.kind, "category": p.category}).to_string()),
    };
    let new = messages::record_status_on(tx, &status).await?;
    if new && !matches!(s.status, StatusKind::Other(_)) {
        let error = err.map(|e| (e.code, error_text.unwrap_or_default()));
        let opaque = s.biz_opaque_callback_data.as_deref();
        crate::outbound::on_status(tx, &s.id, opaque, s.status.as_str(), s.status.rank() as i64, error).await?;
        let data = || crate::events::message_status(s);
        crate::events::emit_for_phone_cached(tx, &mut look.events, EventType::MessageStatus, phone_id, data).await?;
    }
    Ok(usize::from(new))
}

/// The furthest status recorded for a message (statuses may arrive in any order).
pub async fn current_status(store: &Store, wamid: &str) -> Result<Option<String>, StoreError> {
    let mut current: Option<StatusKind> = None;
    for next in messages::statuses_of(store, wamid).await? {
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
