//! Call records with their events: `call.started` when a call is first recorded, `call.ended` when it ends (a BYE,
//! or a final refusal of the INVITE), each committed with the record.

use serde_json::json;

use super::EventType;
use crate::store::calls::{self, CallView, NewCall};
use crate::store::{Store, StoreError};

fn data(c: &CallView) -> serde_json::Value {
    json!({"call": c})
}

async fn emit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    kind: EventType,
    call: Option<CallView>,
) -> Result<(), StoreError> {
    if let Some(c) = call {
        if let Some(phone) = c.phone {
            super::emit_for_phone_on(tx, kind, phone, data(&c)).await?;
        }
    }
    Ok(())
}

/// Records a call's start and emits `call.started` when it is new.
pub async fn started(store: &Store, c: &NewCall) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let call = calls::call_started_on(&mut tx, c).await?;
    emit(&mut tx, EventType::CallStarted, call).await?;
    tx.commit().await?;
    Ok(())
}

/// Records the INVITE's final status; a refusal (3xx and above) ends the call: `call.ended`.
pub async fn final_status(store: &Store, key: &str, status: u16, at_ms: i64) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let call = calls::call_final_status_on(&mut tx, key, status, at_ms).await?;
    if status >= 300 {
        emit(&mut tx, EventType::CallEnded, call).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Records a BYE and emits `call.ended`.
pub async fn ended(
    store: &Store,
    key: &str,
    sip_call_id: &str,
    hangup_by: &str,
    duration_seconds: Option<i64>,
    at_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let call = calls::call_ended_on(&mut tx, key, sip_call_id, hangup_by, duration_seconds, at_ms).await?;
    emit(&mut tx, EventType::CallEnded, call).await?;
    tx.commit().await?;
    Ok(())
}
