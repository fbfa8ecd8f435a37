//! The CRM's SMS provider (bitrix24.md §3): a phone with `sms_service` and a bound portal is registered with
//! `messageservice.sender.add` (code `wabridge_<digits>`, handler `/api/sms/<code>`); clearing the flag or
//! unbinding removes it. The handler turns the CRM's `message_body` into a template send (`NAME+LANG`,
//! `NAME+LANG+v1|v2`, `template-...`: the chat command grammar) or, inside the 24-hour window, a text.

use std::sync::Arc;

use serde_json::json;

use super::Bridge;
use crate::bitrix::client::Error as BitrixError;
use crate::jobs::catalogue::SmsRegister;
use crate::jobs::{Job, JobError};
use crate::phone::digits;
use crate::store::phones::{self, SmsStatus};

pub fn code_for(number: &str) -> String {
    format!("wabridge_{}", digits(number))
}

pub async fn register_job(b: Arc<Bridge>, job: Job, p: SmsRegister) -> Result<(), JobError> {
    let phone_id = p.phone_id;
    let Some(phone) = b.store.get_phone(phone_id).await? else { return Ok(()) };
    let code = code_for(&phone.number);
    if let Some(old_portal) = p.remove_from {
        match b.bitrix.call(old_portal, "messageservice.sender.delete", &json!({"CODE": code})).await {
            Ok(_) => {}
            Err(BitrixError::Api { code: c, .. }) if c == "ERROR_SENDER_NOT_FOUND" => {}
            Err(BitrixError::PortalInactive | BitrixError::Reauthorize(_) | BitrixError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        if !p.register {
            set(&b, phone_id, SmsStatus::Removed, None, None).await?;
        }
    }
    if !p.register {
        return Ok(());
    }
    let (true, Some(portal_id)) = (phone.sms_service, phone.portal_id) else { return Ok(()) };
    let handler = b.url(&format!("/api/sms/{code}"));
    let name = format!("WhatsApp +{}", digits(&phone.number));
    let add = json!({"CODE": code, "TYPE": "SMS", "HANDLER": handler, "NAME": name,
                     "DESCRIPTION": "WhatsApp templates through wabridge: NAME+LANG+value1|value2"});
    let result = match b.bitrix.call(portal_id, "messageservice.sender.add", &add).await {
        Err(BitrixError::Api { code: c, .. }) if c == "ERROR_SENDER_ALREADY_INSTALLED" => {
            let upd = json!({"CODE": code, "HANDLER": handler, "NAME": name});
            b.bitrix.call(portal_id, "messageservice.sender.update", &upd).await.map(|_| ())
        }
        other => other.map(|_| ()),
    };
    match result {
        Ok(()) => set(&b, phone_id, SmsStatus::Registered, Some(&code), None).await,
        Err(e) if e.is_retryable() && job.attempts < job.max_attempts => {
            set(&b, phone_id, SmsStatus::Pending, None, Some(&e.to_string())).await?;
            Err(e.into())
        }
        Err(e) => set(&b, phone_id, SmsStatus::Error, None, Some(&e.to_string())).await,
    }
}

async fn set(
    b: &Bridge,
    phone_id: i64,
    status: SmsStatus,
    code: Option<&str>,
    error: Option<&str>,
) -> Result<(), JobError> {
    phones::set_sms(&b.store, phone_id, status, code, error).await?;
    Ok(())
}
