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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::deliver;
use super::lines::{ClientMessage, CrmLines, Posted};
use super::{changes, set_connector, Bridge};
use crate::jobs::catalogue::{CrmBind, CrmDeliver};
use crate::jobs::{Batched, Enqueue, Job, JobError, Task};
use crate::meta::webhook;
use crate::store::phones::ConnectorStatus;
use crate::store::registry::Phone;
use crate::store::{crm_chats, messages, now_ms, StoreError};
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
    let mut phones: HashMap<i64, Option<Phone>> = HashMap::new();
    let mut portals: HashMap<i64, bool> = HashMap::new();
    for (job, task) in jobs {
        match prepare(&b, job.clone(), task, &mut phones, &mut portals).await {
            Ok(Prepared::Ready(portal, line, r)) => groups.entry(portal).or_default().entry(line).or_default().push(*r),
            Ok(Prepared::Now(result)) => out.push((job, Batched::Result(result))),
            Ok(Prepared::Alone) => out.push((job, Batched::Alone)),
            Err(e) => out.push((job, Batched::Result(Err(e)))),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (portal, mut lines) in groups {
        for ready in lines.values_mut() {
            ready.sort_by_key(|r| r.arrival);
        }
        let (b, owner) = (b.clone(), owner.to_string());
        let (max, max_lines) = (b.lines.post_many_max().max(1), b.lines.post_lines_max().max(1));
        tasks.spawn(async move {
            let mut out = Vec::new();
            // Rounds of one request each: the first chunk of up to `max_lines` lines.
            while !lines.is_empty() {
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
                out.extend(send_round(&b, &owner, portal, round).await);
            }
            out
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(results) => out.extend(results),
            // A panicking chunk: its jobs' leases expire and they run again (the attempt record makes it safe).
            Err(e) => tracing::error!(error = %e, "a batch of CRM deliveries failed"),
        }
    }
    out
}

enum Prepared {
    Ready(i64, String, Box<Ready>),
    Now(Result<(), JobError>),
    Alone,
}

async fn prepare(
    b: &Bridge,
    job: Job,
    task: CrmDeliver,
    phones: &mut HashMap<i64, Option<Phone>>,
    portals: &mut HashMap<i64, bool>,
) -> Result<Prepared, JobError> {
    let message_id = task.message_id;
    let Some(row) = messages::for_delivery(&b.store, message_id).await? else { return Ok(Prepared::Alone) };
    if row.crm_message_id.is_some() {
        return Ok(Prepared::Now(Ok(()))); // already in the portal
    }
    let (Some(arrival), Some(key), None) = (row.arrival, row.contact_key.clone(), row.crm_attempt_at) else {
        return Ok(Prepared::Alone);
    };
    let phone = match phones.get(&row.phone_id) {
        Some(p) => p.clone(),
        None => {
            let p = b.store.get_phone(row.phone_id).await?;
            phones.insert(row.phone_id, p.clone());
            p
        }
    };
    let Some(phone) = phone else { return Ok(Prepared::Alone) };
    let Some(portal_id) = phone.portal_id else { return Ok(Prepared::Alone) };
    let active = match portals.get(&portal_id) {
        Some(a) => *a,
        None => {
            let a = b.store.get_portal(portal_id).await?.is_some_and(|p| p.active);
            portals.insert(portal_id, a);
            a
        }
    };
    let (true, Some(line), Some(ConnectorStatus::Ok)) =
        (active, phone.line_id.clone(), phone.connector_status.as_deref().and_then(ConnectorStatus::parse))
    else {
        return Ok(Prepared::Alone);
    };
    if let Some(wait) = deliver::must_wait(b, job.id, Some(arrival)).await? {
        return Ok(Prepared::Now(Err(wait)));
    }
    let Some(parsed) = row.raw.as_deref().and_then(|r| webhook::parse_message(serde_json::from_str(r).ok()?).ok())
    else {
        return Ok(Prepared::Alone);
    };
    let plain = !matches!(parsed.content, webhook::Content::Edit { .. } | webhook::Content::Revoke { .. })
        && render::media_of(&parsed.content).is_none();
    let change =
        changes::Change { message_id, phone: &phone, contact_id: row.contact_id, portal_id, line: &line, key: &key };
    if !plain || changes::revoked(b, &change, &row.wamid).await? {
        return Ok(Prepared::Alone);
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
    Ok(Prepared::Ready(
        portal_id,
        line,
        Box::new(Ready {
            job,
            message_id,
            phone_id: row.phone_id,
            arrival,
            key,
            wa_id: row.wa_id,
            profile: row.profile_name,
            date: parsed.timestamp.max(row.sent_at / 1000),
            wamid: row.wamid,
            text,
        }),
    ))
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

/// One [`CrmLines::post_lines`] request for `round`: per line one chunk (arrival order, at most one message per
/// customer).
async fn send_round(b: &Bridge, owner: &str, portal_id: i64, round: Vec<(String, Vec<Ready>)>) -> Vec<(Job, Batched)> {
    let ids: Vec<i64> = round.iter().flat_map(|(_, c)| c.iter().map(|r| r.message_id)).collect();
    // Recorded before the call: whatever happens next, a later run knows these may have reached the portal.
    if let Err(e) = messages::set_crm_attempt_many(&b.store, &ids, Some(now_ms())).await {
        let e = JobError::from(e);
        return round.into_iter().flat_map(|(_, c)| fail_all(c, &e)).collect();
    }
    let posts: Vec<(&str, Vec<ClientMessage<'_>>)> = round.iter().map(|(l, c)| (l.as_str(), items(c))).collect();
    let answers = b.lines.post_lines(portal_id, posts).await;
    let mut out = Vec::new();
    match answers {
        Err(e) => {
            let reached = e.may_have_reached;
            let e = JobError::from(e);
            if !reached {
                if let Err(clear) = messages::set_crm_attempt_many(&b.store, &ids, None).await {
                    tracing::warn!(error = %clear, "could not clear delivery attempts");
                }
            }
            for (_, chunk) in round {
                out.extend(fail_all(chunk, &e));
            }
        }
        Ok(per_line) => {
            for ((line, chunk), answer) in round.into_iter().zip(per_line) {
                let result = match answer {
                    Ok(posted) => settle(b, owner, portal_id, &line, &chunk, posted).await,
                    Err(e) => {
                        let reached = e.may_have_reached;
                        let line_ids: Vec<i64> = chunk.iter().map(|r| r.message_id).collect();
                        let e = JobError::from(e);
                        match reached {
                            false => messages::set_crm_attempt_many(&b.store, &line_ids, None)
                                .await
                                .map_err(JobError::from)
                                .and(Err(e)),
                            true => Err(e),
                        }
                    }
                };
                match result {
                    Ok(results) => out.extend(chunk.into_iter().zip(results).map(|(r, o)| (r.job, o))),
                    Err(e) => out.extend(fail_all(chunk, &e)),
                }
            }
        }
    }
    out
}

/// What the portal did with one line's chunk: recorded (taken: delivered and the job done, in one transaction;
/// not taken: the attempt cleared), one outcome per message.
async fn settle(
    b: &Bridge,
    owner: &str,
    portal_id: i64,
    line: &str,
    chunk: &[Ready],
    posted: Vec<Posted>,
) -> Result<Vec<Batched>, JobError> {
    let mut not_taken = Vec::new();
    let mut taken = Vec::new();
    let mut gone = None;
    for (r, p) in chunk.iter().zip(&posted) {
        match p {
            Posted::Taken { message, chat_id, session_id } => {
                taken.push(Taken { r, message, chat_id: chat_id.as_deref(), session_id: session_id.as_deref() })
            }
            Posted::NotTaken(_) => not_taken.push(r.message_id),
            Posted::LineGone(reason) => {
                not_taken.push(r.message_id);
                gone = Some(reason.clone());
            }
        }
    }
    if !not_taken.is_empty() {
        messages::set_crm_attempt_many(&b.store, &not_taken, None).await?;
    }
    if let Some(reason) = &gone {
        // The line or the connector on it went away: show it and bind again.
        let phones: std::collections::BTreeSet<i64> = chunk.iter().map(|r| r.phone_id).collect();
        for phone_id in phones {
            set_connector(&b.store, phone_id, ConnectorStatus::Error, Some(reason)).await?;
            b.store.enqueue(&Task::CrmBind(CrmBind { phone_id }), Enqueue::default()).await?;
        }
    }
    // Every message the portal took, and its job's end, in one transaction.
    let recorded = record_taken(b, owner, portal_id, line, &taken).await;
    Ok(posted
        .iter()
        .map(|p| match (p, &recorded) {
            (Posted::NotTaken(reason), _) => {
                Batched::Result(Err(JobError::retry(format!("the portal did not take the message: {reason}"))))
            }
            (Posted::LineGone(_), _) => {
                Batched::Result(Err(JobError::retry("the portal says the line is not active; binding it again")))
            }
            (Posted::Taken { .. }, Ok(())) => Batched::Done,
            // The attempt stays recorded: the next run asks the portal before sending again.
            (Posted::Taken { .. }, Err(e)) => Batched::Result(Err(JobError::retry(e.to_string()))),
        })
        .collect())
}

/// A message the portal took, as it named it.
struct Taken<'a> {
    r: &'a Ready,
    message: &'a str,
    chat_id: Option<&'a str>,
    session_id: Option<&'a str>,
}

async fn record_taken(
    b: &Bridge,
    owner: &str,
    portal_id: i64,
    line: &str,
    taken: &[Taken<'_>],
) -> Result<(), StoreError> {
    if taken.is_empty() {
        return Ok(());
    }
    let mut tx = b.store.begin_write().await?;
    for t in taken {
        messages::set_crm_ids_on(&mut *tx, t.r.message_id, t.chat_id, t.message).await?;
        crm_chats::upsert_on(&mut tx, t.r.phone_id, &t.r.key, portal_id, line, t.chat_id, t.session_id).await?;
    }
    let ids: Vec<i64> = taken.iter().map(|t| t.r.job.id).collect();
    crate::jobs::finish_many_on(&mut *tx, owner, &ids).await?;
    tx.commit().await?;
    Ok(())
}
