//! `crm.bind`: make a phone's contact-centre line exist and carry our connector (bitrix24.md §2.1–2.4, §2.9).
//! Register the connector and bind its events (one `batch`), find or create the open line
//! `wabridge_<digits>`, activate the connector on it and set its data (one `batch`). Every step is idempotent,
//! so re-binding runs the whole sequence again and recreates a line deleted in the portal.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{id_text, set_connector, Bridge};
use crate::bitrix::client::Error as BitrixError;
use crate::jobs::catalogue::CrmBind;
use crate::jobs::{Job, JobError};
use crate::phone::digits;
use crate::store::phones::{self, ConnectorStatus};
use crate::store::StoreError;

/// The events a line needs (bitrix24.md §2.8).
pub const EVENTS: [&str; 3] = ["OnImConnectorMessageAdd", "OnImConnectorLineDelete", "OnImConnectorStatusDelete"];

/// The connector's tile icon: a speech bubble, as the `data:image/svg+xml` URI Bitrix24 requires.
const ICON: &str = "data:image/svg+xml;charset=US-ASCII,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%20viewBox%3D%220%200%2070%2071%22%3E%3Cpath%20fill%3D%22%23FFF%22%20d%3D%22M35%205C18%205%205%2018%205%2034c0%206%202%2011%205%2016L6%2065l16-4c4%202%208%203%2013%203%2017%200%2030-13%2030-29S52%205%2035%205z%22%2F%3E%3C%2Fsvg%3E";

pub fn line_name(number: &str) -> String {
    format!("wabridge_{}", digits(number))
}

pub async fn run(b: Arc<Bridge>, job: Job, task: CrmBind) -> Result<(), JobError> {
    let phone_id = task.phone_id;
    let Some(phone) = b.store.get_phone(phone_id).await? else { return Ok(()) };
    let Some(portal_id) = phone.portal_id else { return Ok(()) };
    let Some(portal) = b.store.get_portal(portal_id).await? else { return Ok(()) };
    if !portal.active {
        set_connector(&b.store, phone_id, ConnectorStatus::Error, Some("the portal uninstalled the app")).await?;
        return Ok(());
    }
    match bind(&b, portal_id, &phone.number).await {
        Ok(line) => {
            phones::set_line_ready(&b.store, phone_id, &line).await?;
            tracing::info!(phone = phone_id, portal = portal_id, line = %line, "contact-centre line ready");
            crate::templates::request_sync(&b.store, phone.waba_id).await?;
            Ok(())
        }
        Err(e) if e.is_retryable() && job.attempts < job.max_attempts => {
            set_connector(&b.store, phone_id, ConnectorStatus::Pending, Some(&e.to_string())).await?;
            Err(e.into())
        }
        Err(e) => {
            set_connector(&b.store, phone_id, ConnectorStatus::Error, Some(&e.to_string())).await?;
            tracing::warn!(phone = phone_id, portal = portal_id, error = %e, "binding the line failed");
            Ok(())
        }
    }
}

/// Runs the binding sequence; returns the line id.
async fn bind(b: &Bridge, portal_id: i64, number: &str) -> Result<String, BitrixError> {
    let connector = b.connector().to_string();
    let handler = b.url("/api/bitrix/events");
    let mut cmds = vec![(
        "register".to_string(),
        "imconnector.register".to_string(),
        json!({
            "ID": connector,
            "NAME": "WhatsApp (wabridge)",
            "ICON": {"DATA_IMAGE": ICON, "COLOR": "#25D366", "SIZE": "90%", "POSITION": "center"},
            "PLACEMENT_HANDLER": b.url("/api/bitrix/placement"),
            "CHAT_GROUP": "N",
            "NEED_SIGNATURE": "N",
        }),
    )];
    for (i, event) in EVENTS.iter().enumerate() {
        cmds.push((format!("bind{i}"), "event.bind".into(), json!({"event": event, "handler": handler})));
    }
    let answer = b.bitrix.batch(portal_id, &cmds, false).await?;
    for (key, err) in &answer.errors {
        let code = err["error"].as_str().unwrap_or_default();
        if code == "ERROR_HANDLER_ALREADY_EXIST" {
            continue;
        }
        return Err(api_error(key, code, err["error_description"].as_str().unwrap_or_default()));
    }
    if let Some(r) = answer.result.get("register") {
        if r.get("result") == Some(&Value::Bool(false)) || r == &Value::Bool(false) {
            return Err(api_error("register", r["error"].as_str().unwrap_or("REGISTRATION_FAILED"), ""));
        }
    }

    let name = line_name(number);
    let found = b
        .bitrix
        .call(
            portal_id,
            "imopenlines.config.list.get",
            &json!({"PARAMS": {"select": ["ID", "LINE_NAME"], "filter": {"LINE_NAME": name}}}),
        )
        .await?;
    let existing = found["result"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["LINE_NAME"].as_str() == Some(name.as_str())))
        .and_then(|l| id_text(&l["ID"]));
    let line = match existing {
        Some(id) => id,
        None => {
            let added = b
                .bitrix
                .call(portal_id, "imopenlines.config.add", &json!({"PARAMS": {"LINE_NAME": name, "ACTIVE": "Y"}}))
                .await?;
            id_text(&added["result"])
                .ok_or_else(|| api_error("config.add", "NO_LINE_ID", "no line id in the answer"))?
        }
    };
    let d = digits(number);
    let cmds = vec![
        (
            "activate".to_string(),
            "imconnector.activate".to_string(),
            json!({"CONNECTOR": connector, "LINE": line, "ACTIVE": "1"}),
        ),
        (
            "data".to_string(),
            "imconnector.connector.data.set".to_string(),
            json!({"CONNECTOR": connector, "LINE": line, "DATA": {
                "ID": d, "URL": format!("https://wa.me/{d}"), "URL_IM": format!("https://wa.me/{d}"),
                "NAME": format!("WhatsApp +{d}")}}),
        ),
    ];
    let answer = b.bitrix.batch(portal_id, &cmds, true).await?;
    if let Some((key, err)) = answer.errors.iter().next() {
        return Err(api_error(
            key,
            err["error"].as_str().unwrap_or_default(),
            err["error_description"].as_str().unwrap_or_default(),
        ));
    }
    Ok(line)
}

fn api_error(step: &str, code: &str, description: &str) -> BitrixError {
    BitrixError::Api { http: 200, code: code.to_string(), description: format!("{step}: {description}") }
}

/// The portal told us a line was deleted (`LineDeleted`) or our connector was switched off on it (`Disabled`):
/// every phone on that line shows it until bound again. Returns how many phones it concerned.
pub async fn line_lost(
    store: &crate::store::Store,
    portal_id: i64,
    line: &str,
    status: ConnectorStatus,
) -> Result<u64, StoreError> {
    let why = match status {
        ConnectorStatus::LineDeleted => "the open line was deleted in the portal; bind the phone again to recreate it",
        _ => "the connector was switched off on the line in the portal; bind the phone again to switch it on",
    };
    phones::set_line_status(store, portal_id, line, status, why).await
}
