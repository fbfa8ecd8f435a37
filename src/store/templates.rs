//! Templates (synced definitions per WABA) and template events (Meta's status webhooks, kept once each).

use serde_json::json;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError};
use crate::meta::webhook::TemplateStatusUpdate;
use crate::translate::template::TemplateDef;

/// A synced template as the admin API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
    pub status: String,
    pub category: Option<String>,
    /// Set when this language variant's parameters differ from the template's other languages.
    pub variant_problem: Option<String>,
}

/// One template of a sync, as stored.
#[derive(Debug, Clone)]
pub struct Synced<'a> {
    pub def: &'a TemplateDef,
    /// Meta's template id.
    pub template_id: Option<String>,
    pub variant_problem: Option<String>,
}

/// Records a template-status webhook once per `(template id, event, time)`. True when it was new; then the
/// template's status moves to the event, unless the stored template is newer than `at` (unix ms).
pub async fn record_event_on(
    tx: &mut Transaction<'static, Any>,
    waba_id: i64,
    t: &TemplateStatusUpdate,
    at: i64,
) -> Result<bool, StoreError> {
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
    Ok(new == 1)
}

/// Moves a template's status to a status event's (creating the template when it is not synced yet); only a
/// newer event moves it.
pub async fn apply_event_on(
    tx: &mut Transaction<'static, Any>,
    waba_id: i64,
    t: &TemplateStatusUpdate,
    at: i64,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Replaces a WABA's templates with a sync's, and records when it synced, in one transaction.
pub async fn replace(store: &Store, waba_id: i64, templates: &[Synced<'_>], now: i64) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM templates WHERE waba_id = $1").bind(waba_id).execute(&mut *tx).await?;
    for s in templates {
        let t = s.def;
        sqlx::query(
            "INSERT INTO templates (waba_id, template_id, name, language, category, status, components, \
             parameter_format, variant_problem, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (waba_id, name, language) DO NOTHING",
        )
        .bind(waba_id)
        .bind(&s.template_id)
        .bind(&t.name)
        .bind(&t.language)
        .bind(&t.category)
        .bind(&t.status)
        .bind(t.components.to_string())
        .bind(&t.parameter_format)
        .bind(&s.variant_problem)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE wabas SET templates_synced_at = $2 WHERE id = $1")
        .bind(waba_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The synced templates of a WABA.
pub async fn load(store: &Store, waba_id: i64) -> Result<Vec<TemplateDef>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, language, status, category, components, parameter_format FROM templates \
         WHERE waba_id = $1 ORDER BY name, language",
    )
    .bind(waba_id)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TemplateDef {
                name: r.try_get("name")?,
                language: r.try_get("language")?,
                status: r.try_get("status")?,
                category: r.try_get("category")?,
                components: r
                    .try_get::<Option<String>, _>("components")?
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or_else(|| json!([])),
                parameter_format: r.try_get("parameter_format")?,
            })
        })
        .collect()
}

/// The synced templates of a WABA as the admin API shows them.
pub async fn list_views(store: &Store, waba_id: i64) -> Result<Vec<TemplateView>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, language, status, category, variant_problem FROM templates WHERE waba_id = $1 ORDER BY name, language",
    )
    .bind(waba_id)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TemplateView {
                name: r.try_get("name")?,
                language: r.try_get("language")?,
                status: r.try_get("status")?,
                category: r.try_get("category")?,
                variant_problem: r.try_get("variant_problem")?,
            })
        })
        .collect()
}
