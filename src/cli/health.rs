//! `wabridge health`: the account's health as the last checks found it (per WABA the access token's expiry,
//! validity and permissions; per phone whether Meta lets it send and why not, its quality rating and messaging
//! limit tier), and `wabridge health check`, which asks Meta now (the same check as the hourly `health.check`
//! job) and then shows them. `--json` prints the whole report as one object.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::output::{table_text, Out};
use crate::config::Config;
use crate::health::{self, Report};
use crate::meta::graph;
use crate::store::{now_ms, Store};

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(subcommand)]
    pub cmd: Option<HealthCmd>,
}

#[derive(Debug, Subcommand)]
pub enum HealthCmd {
    /// Show the figures of the last checks (what `wabridge health` alone does).
    Show,
    /// Ask Meta now (debug_token for each WABA's token, each phone's health), store and show the figures.
    Check {
        /// Only this WABA (wabridge id).
        #[arg(long)]
        waba: Option<i64>,
    },
}

const WABA_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("WABA ID", "waba_id"),
    ("TOKEN", "token"),
    ("STATE", "level"),
    ("CHECKED", "checked"),
    ("WHAT TO DO", "todo"),
];

const PHONE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NUMBER", "number"),
    ("CAN SEND", "can_send"),
    ("QUALITY", "quality"),
    ("TIER", "tier"),
    ("CHECKED", "checked"),
    ("WHY / ERROR", "why"),
];

pub async fn run(args: HealthArgs, store: &Store, config: &Config, out: Out) -> anyhow::Result<()> {
    if let Some(HealthCmd::Check { waba }) = args.cmd {
        let graph = graph::Client::from_config(config);
        let ids: Vec<i64> = match waba {
            Some(id) => vec![crate::registry::get_waba(store, id).await?.id],
            None => store.list_wabas().await?.iter().map(|w| w.id).collect(),
        };
        for id in ids {
            health::check_waba(store, &graph, id).await?;
        }
    }
    let report = health::report(store, now_ms()).await?;
    if out.json {
        return out.record(&report);
    }
    print!("{}", text(&report, now_ms()));
    Ok(())
}

fn checked(at: Option<i64>, now: i64) -> Value {
    match at {
        Some(t) => json!(crate::http::console::ago(t, now)),
        None => json!("never"),
    }
}

/// The report as two tables.
fn text(r: &Report, now: i64) -> String {
    let wabas: Vec<Value> = r
        .wabas
        .iter()
        .map(|w| {
            json!({"id": w.id, "waba_id": w.waba_id, "token": w.verdict.summary, "level": w.verdict.level,
                   "checked": checked(w.checked_at, now), "todo": w.verdict.todo})
        })
        .collect();
    let phones: Vec<Value> = r
        .phones
        .iter()
        .map(|p| {
            let mut why: Vec<String> = p
                .reasons
                .iter()
                .map(|x| {
                    format!("{} {}: {} {}", x.entity_type, x.id, x.status, x.info.join(" ")).trim_end().to_string()
                })
                .collect();
            why.extend(p.error.clone());
            json!({"id": p.id, "number": p.number, "can_send": p.can_send, "quality": p.quality_rating,
                   "tier": p.messaging_limit_tier, "checked": checked(p.checked_at, now), "why": why.join("; ")})
        })
        .collect();
    format!("WABAs\n{}\nPhones\n{}", table_text(&wabas, WABA_COLUMNS), table_text(&phones, PHONE_COLUMNS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::figures::{Level, Verdict};
    use crate::health::{PhoneReport, WabaReport};
    use crate::store::health::Reason;

    #[test]
    fn the_report_as_text() {
        let r = Report {
            wabas: vec![WabaReport {
                id: 1,
                waba_id: "102".into(),
                name: String::new(),
                checked_at: Some(1_000),
                ok_at: Some(1_000),
                token_valid: Some(true),
                token_type: Some("SYSTEM_USER".into()),
                expires_at: Some(0),
                data_access_expires_at: Some(0),
                missing_scopes: vec![],
                error: None,
                verdict: Verdict { level: Level::Ok, summary: "never".into(), todo: None },
            }],
            phones: vec![PhoneReport {
                id: 2,
                number: "+5511930001234".into(),
                phone_number_id: "106".into(),
                waba: 1,
                checked_at: None,
                ok_at: None,
                can_send: Some("LIMITED".into()),
                reasons: vec![Reason {
                    entity_type: "WABA".into(),
                    id: "102".into(),
                    status: "LIMITED".into(),
                    info: vec!["Limit reached.".into()],
                }],
                quality_rating: Some("GREEN".into()),
                messaging_limit_tier: Some("TIER_1K".into()),
                error: None,
            }],
        };
        let t = text(&r, 61_000);
        assert!(t.contains("1   102      never  ok     1 min ago  -"), "{t}");
        assert!(
            t.contains("2   +5511930001234  LIMITED   GREEN    TIER_1K  never    WABA 102: LIMITED Limit reached."),
            "{t}"
        );
    }
}
