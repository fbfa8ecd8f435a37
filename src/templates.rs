//! Template definitions, synced from `GET /{waba-id}/message_templates` (all pages) when a phone is bound,
//! when a template-status webhook arrives, and every hour. Each sync also checks that the language variants
//! of one template take the same parameters in the same order (`translate::variants`) and flags the ones that
//! do not (`variant_problem`, shown by the admin API).

use serde_json::{json, Value};
use sqlx::Any;

use crate::jobs::catalogue::TemplatesSync;
use crate::jobs::{Enqueue, Job, JobError, Kind, Task};
use crate::meta::graph;
use crate::store::templates::{self as stored, Synced};
use crate::store::{now_ms, Store, StoreError};
use crate::translate::template::TemplateDef;

pub use crate::store::templates::TemplateView;

/// Queues a sync of one WABA's templates.
pub async fn request_sync(store: &Store, waba_id: i64) -> Result<(), StoreError> {
    request_sync_on(&store.pool, waba_id).await
}

pub async fn request_sync_on<'c, E>(conn: E, waba_id: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    crate::jobs::enqueue(conn, &Task::TemplatesSync(TemplatesSync { waba_id }), Enqueue::default()).await?;
    Ok(())
}

/// The hourly sync of every WABA (one job per WABA per hour across all processes).
pub async fn schedule_hourly(store: &Store) -> Result<(), StoreError> {
    let hour = now_ms() / 3_600_000;
    for w in store.list_wabas().await? {
        let key = Kind::TemplatesSync.key(format_args!("{}:{hour}", w.id));
        let task = Task::TemplatesSync(TemplatesSync { waba_id: w.id });
        store.enqueue(&task, Enqueue { dedup_key: Some(&key), ..Enqueue::default() }).await?;
    }
    Ok(())
}

pub async fn run(store: Store, graph: graph::Client, job: Job, task: TemplatesSync) -> Result<(), JobError> {
    let waba_id = task.waba_id;
    let Some(waba) = store.get_waba(waba_id).await? else { return Ok(()) };
    let token = store.graph_token(waba_id).await?;
    let list = graph.list_templates(&waba.waba_id, &token).await.map_err(|e| sync_error(e, job.attempts))?;
    let defs: Vec<TemplateDef> = list.iter().filter_map(def_of).collect();
    let problems = crate::translate::variants::variant_problems(&defs);
    let now = now_ms();
    let synced: Vec<Synced> = defs
        .iter()
        .zip(list.iter().filter(|v| def_of(v).is_some()))
        .map(|(t, raw)| Synced {
            def: t,
            template_id: raw["id"].as_str().map(String::from).or_else(|| raw["id"].as_i64().map(|i| i.to_string())),
            variant_problem: problems
                .iter()
                .find(|(n, l, _)| n == &t.name && l == &t.language)
                .map(|(_, _, p)| p.clone()),
        })
        .collect();
    stored::replace(&store, waba_id, &synced, now).await?;
    if !problems.is_empty() {
        tracing::warn!(
            waba = waba_id,
            variants = problems.len(),
            "template language variants disagree on their parameters"
        );
    }
    tracing::info!(waba = waba_id, templates = defs.len(), "templates synced");
    Ok(())
}

fn def_of(v: &Value) -> Option<TemplateDef> {
    Some(TemplateDef {
        name: v["name"].as_str()?.to_string(),
        language: v["language"].as_str()?.to_string(),
        status: v["status"].as_str().unwrap_or("UNKNOWN").to_string(),
        category: v["category"].as_str().map(String::from),
        components: v.get("components").cloned().unwrap_or_else(|| json!([])),
        parameter_format: v["parameter_format"].as_str().map(String::from),
    })
}

/// The synced templates of a WABA.
pub async fn load(store: &Store, waba_id: i64) -> Result<Vec<TemplateDef>, StoreError> {
    stored::load(store, waba_id).await
}

/// The synced templates of a WABA as the admin API shows them.
pub async fn list_views(store: &Store, waba_id: i64) -> Result<Vec<TemplateView>, StoreError> {
    stored::list_views(store, waba_id).await
}

/// What a failed template listing means for the sync job, by the one Graph error table (`meta::errors::classify`):
/// retried when Meta says so (rate limits, 5xx), otherwise dead with Meta's words (a refused token included: the
/// next hourly sync asks again once a new token is set).
fn sync_error(e: graph::Error, attempts: i64) -> JobError {
    use crate::meta::errors::{classify, SendClass};
    match e {
        graph::Error::Graph(g) => {
            let retry_after = g.retry_after_secs.map(std::time::Duration::from_secs);
            match classify(g.http_status, Some(g.code), retry_after, attempts) {
                SendClass::Retry { after, .. } => JobError::Retry { message: format!("template sync: {g}"), after },
                SendClass::Permanent { .. } | SendClass::TokenInvalid { .. } => {
                    JobError::Permanent(format!("template sync: {g}"))
                }
            }
        }
        e => JobError::retry(format!("template sync: {e}")),
    }
}

#[cfg(test)]
mod sync_error_tests {
    use super::sync_error;
    use crate::jobs::JobError;
    use crate::meta::graph::{self, GraphError};

    fn meta(http_status: u16, code: i64) -> graph::Error {
        graph::Error::Graph(GraphError {
            http_status,
            code,
            message: format!("(#{code}) x"),
            kind: None,
            details: None,
            subcode: None,
            fbtrace_id: None,
            retry_after_secs: None,
        })
    }

    #[test]
    fn template_sync_failures_follow_the_one_error_table() {
        assert!(matches!(sync_error(meta(400, 4), 1), JobError::Retry { .. }), "rate limit: later");
        assert!(matches!(sync_error(meta(429, 80007), 1), JobError::Retry { .. }));
        assert!(matches!(sync_error(meta(500, 2), 1), JobError::Retry { .. }), "Meta's service down");
        assert!(matches!(sync_error(meta(401, 190), 1), JobError::Permanent(_)), "a refused token: next hourly sync");
        assert!(matches!(sync_error(meta(400, 100), 1), JobError::Permanent(_)), "a bad request will not change");
        let down = graph::Error::Connection { url: "u".into(), reason: "refused".into() };
        assert!(matches!(sync_error(down, 1), JobError::Retry { .. }));
    }
}
