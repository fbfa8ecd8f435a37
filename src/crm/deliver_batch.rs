//! `crm.deliver` in batches: many inbound messages into their CRM lines with one [`CrmLines::post_many`] per line
//! and chunk (Bitrix24: one `imconnector.send.messages` with an array, bitrix24.md §2.5), so a portal's request
//! budget (`bitrix_rate_per_sec`, `bitrix_burst`) carries up to [`CrmLines::post_many_max`] messages per request
//! instead of one.
//!
//! The rules of the single delivery ([`super::deliver::run`]) hold: a message waits while an earlier webhook of its
//! app is unprocessed or an earlier message of its customer is still on its way (so a batch holds at most the
//! first pending message of each customer: a later one defers), the attempt is recorded before the call and
//! cleared when the portal did not take the message, and a message is recorded as delivered only from its own
//! item of the answer. Anything out of the plain case (a recorded earlier attempt that needs the portal asked, an
//! edit or deletion, media, a line not ready, an unknown phone or portal) is left to the single delivery.
//!
//! The database work is per batch, not per message: one query each for the messages, their phones, the portals,
//! and the order checks; per wave (every portal's next request, all at once) one statement for the attempts before
//! the calls and one transaction for what the portals took (their ids, the chats, the jobs' end).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::deliver;
use super::lines::{ClientMessage, CrmLines, Posted};
use super::{set_connector, Bridge};
use crate::jobs::catalogue::{CrmBind, CrmDeliver};
use crate::jobs::{Batched, Enqueue, Job, JobError, Task};
use crate::meta::webhook;
use crate::store::phones::ConnectorStatus;
use crate::store::{crm_chats, inbox, messages, now_ms, StoreError};
use crate::translate::render;

/// One message ready to go in a batch.
struct Ready {
    job: Job,
    message_id: i64,
    phone_id: i64,
    arrival: i64,
    key: String,
    wa_id: Option<String>,
    profile: Option<String>,
    wamid: String,
    date: i64,
    text: String,
}

/// Delivers leased `crm.deliver` jobs (`owner` holds their leases): each line's messages go in requests of up to
/// [`CrmLines::post_many_max`], the portals at once, each portal's requests one after the other (its limiter paces
/// them). Jobs it does not handle come back as [`Batched::Alone`].
pub async fn run_batch(b: Arc<Bridge>, owner: &str, jobs: Vec<(Job, CrmDeliver)>) -> Vec<(Job, Batched)> {
    let mut out = Vec::new();
    let mut groups: HashMap<i64, BTreeMap<String, Vec<Ready>>> = HashMap::new();
    match prepare(&b, jobs).await {
        Ok(prepared) => {
            for (job, p) in prepared {
                match p {
                    Prepared::Ready(portal, line, r) => {
                        groups.entry(portal).or_default().entry(line).or_default().push(*r)
                    }
                    Prepared::Now(result) => out.push((job, Batched::Result(result))),
                    Prepared::Alone => out.push((job, Batched::Alone)),
                }
            }
        }
        // The single delivery reads each message on its own and reports its own error.
        Err((jobs, e)) => {
            tracing::debug!(error = %e, jobs = jobs.len(), "a batch of CRM deliveries could not be prepared");
            return jobs.into_iter().map(|job| (job, Batched::Alone)).collect();
        }
    }
    for lines in groups.values_mut() {
        for ready in lines.values_mut() {
            ready.sort_by_key(|r| r.arrival);
        }
    }
    let (max, max_lines) = (b.lines.post_many_max().max(1), b.lines.post_lines_max().max(1));
    // Waves: in each, every portal with messages left makes one request (its next chunk of up to `max_lines`
    // lines × `max` messages), all portals at once; usually one wave carries the whole batch.
    while !groups.is_empty() {
        let mut wave = Vec::with_capacity(groups.len());
        groups.retain(|portal, lines| {
            let mut round = Vec::new();
            let names: Vec<String> = lines.keys().take(max_lines).cloned().collect();
            for line in names {
                let Some(ready) = lines.get_mut(&line) else { continue };
                let tail = ready.split_off(ready.len().min(max));
                let chunk = std::mem::replace(ready, tail);
                if ready.is_empty() {
                    lines.remove(&line);
                }
                round.push((line, chunk));
            }
            wave.push((*portal, round));
            !lines.is_empty()
        });
        out.extend(send_wave(&b, owner, wave).await);
    }
    out
}

/// Shorter waits for a portal's rate limit are waited out in the call.
const LIMIT_WAIT_MIN: std::time::Duration = std::time::Duration::from_millis(20);

enum Prepared {
    Ready(i64, String, Box<Ready>),
    Now(Result<(), JobError>),
    Alone,
}

/// A message on the plain path so far: its row, phone, portal and line.
struct Candidate {
    job: Job,
    message_id: i64,
    row: messages::ForDelivery,
    arrival: i64,
    key: String,
    portal_id: i64,
    line: String,
}

/// Decides for every job of a batch, with a handful of queries for the whole batch (the rows, the order checks,
/// the customers' deletions) rather than several per message: ready to go in a batch, an outcome now (already
/// delivered, or a defer while an earlier webhook or message must go first), or left to the single delivery.
/// On a database error the jobs come back to run alone.
async fn prepare(b: &Bridge, jobs: Vec<(Job, CrmDeliver)>) -> Result<Vec<(Job, Prepared)>, (Vec<Job>, StoreError)> {
    let ids: Vec<i64> = jobs.iter().map(|(_, t)| t.message_id).collect();
    // The messages, their phones, and which of those phones' portals are active: three queries for the batch.
    let looked_up = async {
        let rows = messages::for_delivery_many(&b.store, &ids).await?;
        let mut phone_ids: Vec<i64> = rows.values().map(|r| r.phone_id).collect();
        phone_ids.sort_unstable();
        phone_ids.dedup();
        let phones = b.store.get_phones(&phone_ids).await?;
        let mut portal_ids: Vec<i64> = phones.values().filter_map(|p| p.portal_id).collect();
        portal_ids.sort_unstable();
        portal_ids.dedup();
        let active = b.store.active_portals(&portal_ids).await?;
        Ok::<_, StoreError>((rows, phones, active))
    };
    let (mut rows, phones, active) = match looked_up.await {
        Ok(x) => x,
        Err(e) => return Err((jobs.into_iter().map(|(j, _)| j).collect(), e)),
    };
    let mut out = Vec::with_capacity(jobs.len());
    let mut candidates = Vec::new();
    for (job, task) in jobs {
        let message_id = task.message_id;
        let Some(row) = rows.remove(&message_id) else {
            out.push((job, Prepared::Alone));
            continue;
        };
        if row.crm_message_id.is_some() {
            out.push((job, Prepared::Now(Ok(())))); // already in the portal
            continue;
        }
        let (Some(arrival), Some(key), None) = (row.arrival, row.contact_key.clone(), row.crm_attempt_at) else {
            out.push((job, Prepared::Alone));
            continue;
        };
        // An unknown phone, an unbound one, a portal gone or uninstalled, a line not ready: the single delivery
        // says what to do.
        let Some(phone) = phones.get(&row.phone_id) else {
            out.push((job, Prepared::Alone));
            continue;
        };
        let (Some(portal_id), Some(line), Some(ConnectorStatus::Ok)) = (
            phone.portal_id,
            phone.line_id.clone(),
            phone.connector_status.as_deref().and_then(ConnectorStatus::parse),
        ) else {
            out.push((job, Prepared::Alone));
            continue;
        };
        if !active.contains(&portal_id) {
            out.push((job, Prepared::Alone));
            continue;
        }
        candidates.push(Candidate { job, message_id, row, arrival, key, portal_id, line });
    }
    // The order (crm/deliver.rs `must_wait`), for the whole batch at once.
    let inbox_ids: Vec<i64> = candidates.iter().map(|c| c.arrival / crate::inbound::ARRIVAL_SLOTS).collect();
    let job_ids: Vec<i64> = candidates.iter().map(|c| c.job.id).collect();
    let checks = async {
        let unprocessed = inbox::earlier_unprocessed_among(&b.store, &inbox_ids, deliver::unprocessed_since()).await?;
        let in_order = crate::jobs::earlier_in_order_among(&b.store, &job_ids).await?;
        let wamids: Vec<&str> = candidates.iter().map(|c| c.row.wamid.as_str()).collect();
        let revoked = messages::revoked_among(&b.store, &wamids).await?;
        Ok::<_, StoreError>((unprocessed, in_order, revoked))
    };
    let (unprocessed, in_order, revoked) = match checks.await {
        Ok(c) => c,
        Err(e) => {
            out.extend(candidates.into_iter().map(|c| (c.job, Prepared::Alone)));
            tracing::debug!(error = %e, "the order checks of a batch of CRM deliveries failed");
            return Ok(out);
        }
    };
    // A portal whose rate limit makes a request wait now: its messages are put off until then, so that one request
    // carries them with whatever arrives meanwhile (instead of a queue of small requests, each waiting its turn).
    let mut waits: HashMap<i64, std::time::Duration> = HashMap::new();
    for c in &candidates {
        waits.entry(c.portal_id).or_insert_with(|| b.lines.wait_before_post(c.portal_id));
    }
    for c in candidates {
        let wait = waits.get(&c.portal_id).copied().unwrap_or_default();
        let prepared = if wait > LIMIT_WAIT_MIN {
            Prepared::Now(Err(JobError::Defer {
                message: "waiting for the portal's rate limit, to send with the messages that come meanwhile".into(),
                after: wait,
            }))
        } else if unprocessed.contains(&(c.arrival / crate::inbound::ARRIVAL_SLOTS)) {
            Prepared::Now(Err(deliver::wait_for_webhook()))
        } else if in_order.contains(&c.job.id) {
            Prepared::Now(Err(deliver::wait_for_earlier()))
        } else if revoked.contains(&c.row.wamid) {
            Prepared::Alone // deleted by the customer: the single delivery records that it is never shown
        } else {
            match ready(b, &c).await {
                Ok(Some(r)) => Prepared::Ready(c.portal_id, c.line.clone(), Box::new(r)),
                Ok(None) => Prepared::Alone,
                Err(e) => Prepared::Now(Err(e)),
            }
        };
        out.push((c.job, prepared));
    }
    Ok(out)
}

/// The message as it goes in a batch, or `None` when it is off the plain path (an edit, a deletion, media).
async fn ready(b: &Bridge, c: &Candidate) -> Result<Option<Ready>, JobError> {
    let row = &c.row;
    let Some(parsed) = row.raw.as_deref().and_then(|r| webhook::parse_message(serde_json::from_str(r).ok()?).ok())
    else {
        return Ok(None);
    };
    let plain = !matches!(parsed.content, webhook::Content::Edit { .. } | webhook::Content::Revoke { .. })
        && render::media_of(&parsed.content).is_none();
    if !plain {
        return Ok(None);
    }
    let quoted_wamid = match &parsed.content {
        webhook::Content::Reaction { message_id, .. } => Some(message_id.clone()),
        _ => row.context_wamid.clone(),
    };
    let quoted = match quoted_wamid {
        Some(q) => deliver::quoted_text(b, &q).await?,
        None => None,
    };
    let text = render::crm_text(&parsed, quoted.as_deref());
    Ok(Some(Ready {
        job: c.job.clone(),
        message_id: c.message_id,
        phone_id: row.phone_id,
        arrival: c.arrival,
        key: c.key.clone(),
        wa_id: row.wa_id.clone(),
        profile: row.profile_name.clone(),
        date: parsed.timestamp.max(row.sent_at / 1000),
        wamid: row.wamid.clone(),
        text,
    }))
}

/// The same error for every job of `chunk`.
fn fail_all(chunk: Vec<Ready>, e: &JobError) -> Vec<(Job, Batched)> {
    let message = e.to_string();
    chunk.into_iter().map(|r| (r.job, Batched::Result(Err(copy(e, &message))))).collect()
}

fn copy(e: &JobError, message: &str) -> JobError {
    match e {
        JobError::Retry { after, .. } => JobError::Retry { message: message.to_string(), after: *after },
        JobError::Permanent(_) => JobError::Permanent(message.to_string()),
        JobError::Defer { after, .. } => JobError::Defer { message: message.to_string(), after: *after },
    }
}

fn items(chunk: &[Ready]) -> Vec<ClientMessage<'_>> {
    chunk
        .iter()
        .map(|r| ClientMessage {
            key: &r.key,
            wa_id: r.wa_id.as_deref(),
            profile: r.profile.as_deref(),
            wamid: &r.wamid,
            date: r.date,
            text: &r.text,
            files: Vec::new(),
        })
        .collect()
}

/// One portal's request of a wave: per line one chunk (arrival order, at most one message per customer).
type Round = Vec<(String, Vec<Ready>)>;

/// Sends a wave: the attempts of all its messages recorded in one statement before the calls (whatever happens
/// next, a later run knows these may have reached the portal), every portal's [`CrmLines::post_lines`] at once
/// (each paced by its own limiter), then what the portals took recorded in one transaction with the jobs' end, and
/// the attempts of what they did not take cleared in one statement.
async fn send_wave(b: &Arc<Bridge>, owner: &str, wave: Vec<(i64, Round)>) -> Vec<(Job, Batched)> {
    let ids: Vec<i64> =
        wave.iter().flat_map(|(_, r)| r.iter().flat_map(|(_, c)| c.iter().map(|m| m.message_id))).collect();
    let turn = b.store.write_turn().await;
    let attempt = messages::set_crm_attempt_many(&b.store, &ids, Some(now_ms())).await;
    drop(turn);
    if let Err(e) = attempt {
        let e = JobError::from(e);
        return wave.into_iter().flat_map(|(_, r)| r.into_iter().flat_map(|(_, c)| fail_all(c, &e))).collect();
    }
    let mut calls = tokio::task::JoinSet::new();
    for (portal_id, round) in wave {
        let b = b.clone();
        calls.spawn(async move {
            let posts: Vec<(&str, Vec<ClientMessage<'_>>)> =
                round.iter().map(|(l, c)| (l.as_str(), items(c))).collect();
            let answers = b.lines.post_lines(portal_id, posts).await;
            (portal_id, round, answers)
        });
    }
    let mut out = Vec::new();
    let mut clear: Vec<i64> = Vec::new();
    let mut gone: Vec<(i64, String)> = Vec::new();
    // Taken by a portal: recorded together below. `(portal, line, message, what the portal named)`.
    let mut taken: Vec<(i64, String, Ready, Posted)> = Vec::new();
    while let Some(joined) = calls.join_next().await {
        // A panicking call: its jobs' leases expire and they run again (the attempt record makes it safe).
        let (portal_id, round, answers) = match joined {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "a CRM delivery call failed");
                continue;
            }
        };
        let per_line: Vec<Result<Vec<Posted>, (bool, JobError)>> = match answers {
            Ok(per_line) => per_line.into_iter().map(|a| a.map_err(|e| (e.may_have_reached, e.job))).collect(),
            Err(e) => {
                let (reached, job) = (e.may_have_reached, e.job);
                let message = job.to_string();
                round.iter().map(|_| Err((reached, copy(&job, &message)))).collect()
            }
        };
        for ((line, chunk), answer) in round.into_iter().zip(per_line) {
            match answer {
                Err((reached, e)) => {
                    if !reached {
                        clear.extend(chunk.iter().map(|r| r.message_id));
                    }
                    out.extend(fail_all(chunk, &e));
                }
                Ok(posted) => {
                    for (r, p) in chunk.into_iter().zip(posted) {
                        match p {
                            Posted::Taken { .. } => taken.push((portal_id, line.clone(), r, p)),
                            Posted::NotTaken(reason) => {
                                clear.push(r.message_id);
                                let e = JobError::retry(format!("the portal did not take the message: {reason}"));
                                out.push((r.job, Batched::Result(Err(e))));
                            }
                            Posted::LineGone(reason) => {
                                clear.push(r.message_id);
                                gone.push((r.phone_id, reason));
                                let e = JobError::retry("the portal says the line is not active; binding it again");
                                out.push((r.job, Batched::Result(Err(e))));
                            }
                        }
                    }
                }
            }
        }
    }
    if !clear.is_empty() {
        let turn = b.store.write_turn().await;
        if let Err(e) = messages::set_crm_attempt_many(&b.store, &clear, None).await {
            tracing::warn!(error = %e, "could not clear delivery attempts");
        }
        drop(turn);
    }
    gone.sort();
    gone.dedup_by_key(|(phone, _)| *phone);
    for (phone_id, reason) in gone {
        // The line or the connector on it went away: show it and bind again.
        if let Err(e) = set_connector(&b.store, phone_id, ConnectorStatus::Error, Some(&reason)).await {
            tracing::warn!(phone = phone_id, error = %e, "could not record the connector's state");
        }
        if let Err(e) = b.store.enqueue(&Task::CrmBind(CrmBind { phone_id }), Enqueue::default()).await {
            tracing::warn!(phone = phone_id, error = %e, "could not queue binding the line again");
        }
    }
    // Every message the portals took, and its job's end, in one transaction.
    let recorded = record_taken(b, owner, &taken).await;
    for (_, _, r, _) in taken {
        let result = match &recorded {
            Ok(()) => Batched::Done,
            // The attempt stays recorded: the next run asks the portal before sending again.
            Err(e) => Batched::Result(Err(JobError::retry(e.to_string()))),
        };
        out.push((r.job, result));
    }
    out
}

async fn record_taken(b: &Bridge, owner: &str, taken: &[(i64, String, Ready, Posted)]) -> Result<(), StoreError> {
    if taken.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(taken.len());
    let mut chats = Vec::with_capacity(taken.len());
    for (portal_id, line, r, p) in taken {
        let Posted::Taken { message, chat_id, session_id } = p else { continue };
        ids.push((r.message_id, chat_id.as_deref(), message.as_str()));
        chats.push(crm_chats::ChatOnLine {
            phone_id: r.phone_id,
            contact_key: &r.key,
            portal_id: *portal_id,
            line,
            chat_id: chat_id.as_deref(),
            session_id: session_id.as_deref(),
        });
    }
    let jobs: Vec<i64> = taken.iter().map(|(_, _, r, _)| r.job.id).collect();
    let _turn = b.store.write_turn().await;
    let mut tx = b.store.begin_write().await?;
    messages::set_crm_ids_many_on(&mut *tx, &ids).await?;
    crm_chats::upsert_many_on(&mut tx, &chats).await?;
    crate::jobs::finish_many_on(&mut *tx, owner, &jobs).await?;
    crate::store::jobs::hasten_next_on(&mut *tx, &jobs, now_ms()).await?;
    tx.commit().await?;
    Ok(())
}
