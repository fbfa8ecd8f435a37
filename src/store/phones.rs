//! A phone's CRM state (its contact-centre line and connector, its SMS-provider registration) and the lookups
//! of phones by what peers name them with. The phone rows themselves are in `registry.rs`.

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Store, StoreError};

/// `phones.connector_status`: the CRM line's state, written by the binder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorStatus {
    /// Binding is queued or being retried.
    Pending,
    /// The line exists and carries our connector.
    Ok,
    /// Binding failed (the reason is in `connector_error`).
    Error,
    /// The portal deleted the line.
    LineDeleted,
    /// The portal switched our connector off on the line.
    Disabled,
}

impl ConnectorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorStatus::Pending => "pending",
            ConnectorStatus::Ok => "ok",
            ConnectorStatus::Error => "error",
            ConnectorStatus::LineDeleted => "line_deleted",
            ConnectorStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<ConnectorStatus> {
        Some(match s {
            "pending" => ConnectorStatus::Pending,
            "ok" => ConnectorStatus::Ok,
            "error" => ConnectorStatus::Error,
            "line_deleted" => ConnectorStatus::LineDeleted,
            "disabled" => ConnectorStatus::Disabled,
            _ => return None,
        })
    }
}

/// `phones.sms_status`: the SMS-provider registration's state, written by its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsStatus {
    Pending,
    Registered,
    Removed,
    Error,
}

impl SmsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsStatus::Pending => "pending",
            SmsStatus::Registered => "registered",
            SmsStatus::Removed => "removed",
            SmsStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<SmsStatus> {
        Some(match s {
            "pending" => SmsStatus::Pending,
            "registered" => SmsStatus::Registered,
            "removed" => SmsStatus::Removed,
            "error" => SmsStatus::Error,
            _ => return None,
        })
    }
}

/// The id of the phone Meta calls `phone_number_id`.
pub async fn id_by_phone_number_id_on(
    tx: &mut Transaction<'static, Any>,
    phone_number_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT id FROM phones WHERE phone_number_id = $1")
        .bind(phone_number_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("id")).transpose()?)
}

/// True when phone `phone_id` is bound to a portal that exists (its inbound messages go to the CRM).
pub async fn bound_to_portal_on(tx: &mut Transaction<'static, Any>, phone_id: i64) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 AS one FROM phones p JOIN portals o ON o.id = p.portal_id WHERE p.id = $1")
        .bind(phone_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// The phone bound to line `line` of a portal.
pub async fn id_on_line(store: &Store, portal_id: i64, line: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT id FROM phones WHERE portal_id = $1 AND line_id = $2")
        .bind(portal_id)
        .bind(line)
        .fetch_optional(&store.pool)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("id")).transpose()?)
}

/// The phone registered in a portal as the SMS sender `code`.
pub async fn id_by_sms_code(store: &Store, portal_id: i64, code: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT id FROM phones WHERE sms_code = $1 AND portal_id = $2")
        .bind(code)
        .bind(portal_id)
        .fetch_optional(&store.pool)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("id")).transpose()?)
}

/// The connector state shown on a phone.
pub async fn set_connector(
    store: &Store,
    phone_id: i64,
    status: ConnectorStatus,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE phones SET connector_status = $2, connector_error = $3, updated_at = $4 WHERE id = $1")
        .bind(phone_id)
        .bind(status.as_str())
        .bind(error)
        .bind(now_ms())
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// After a registry change: the connector state starts over (`Pending` when a binding is queued, none when the
/// phone has no portal any more), without an error. The phone's `updated_at` is the registry's.
pub async fn reset_connector(store: &Store, phone_id: i64, status: Option<ConnectorStatus>) -> Result<(), StoreError> {
    sqlx::query("UPDATE phones SET connector_status = $2, connector_error = NULL WHERE id = $1")
        .bind(phone_id)
        .bind(status.map(ConnectorStatus::as_str))
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// The phone's line is ready: `line` carries our connector.
pub async fn set_line_ready(store: &Store, phone_id: i64, line: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE phones SET line_id = $2, connector_status = $4, connector_error = NULL, updated_at = $3 WHERE id = $1",
    )
    .bind(phone_id)
    .bind(line)
    .bind(now_ms())
    .bind(ConnectorStatus::Ok.as_str())
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Every phone on line `line` of a portal gets `status` and `why`; returns how many.
pub async fn set_line_status(
    store: &Store,
    portal_id: i64,
    line: &str,
    status: ConnectorStatus,
    why: &str,
) -> Result<u64, StoreError> {
    let n = sqlx::query(
        "UPDATE phones SET connector_status = $3, connector_error = $4, updated_at = $5 \
         WHERE portal_id = $1 AND line_id = $2",
    )
    .bind(portal_id)
    .bind(line)
    .bind(status.as_str())
    .bind(why)
    .bind(now_ms())
    .execute(&store.pool)
    .await?
    .rows_affected();
    Ok(n)
}

/// After a registry change that queues a registration: `Pending`, without an error.
pub async fn reset_sms(store: &Store, phone_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE phones SET sms_status = $2, sms_error = NULL WHERE id = $1")
        .bind(phone_id)
        .bind(SmsStatus::Pending.as_str())
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// The SMS-provider registration's outcome: `code` when registered (kept otherwise), cleared when removed.
pub async fn set_sms(
    store: &Store,
    phone_id: i64,
    status: SmsStatus,
    code: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE phones SET sms_status = $2, sms_code = COALESCE($3, sms_code), sms_error = $4, updated_at = $5 \
         WHERE id = $1",
    )
    .bind(phone_id)
    .bind(status.as_str())
    .bind(code)
    .bind(error)
    .bind(now_ms())
    .execute(&store.pool)
    .await?;
    if status == SmsStatus::Removed {
        sqlx::query("UPDATE phones SET sms_code = NULL WHERE id = $1").bind(phone_id).execute(&store.pool).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ConnectorStatus, SmsStatus};

    #[test]
    fn states_round_trip() {
        use ConnectorStatus::*;
        for s in [Pending, Ok, Error, LineDeleted, Disabled] {
            assert_eq!(ConnectorStatus::parse(s.as_str()), Some(s));
        }
        for s in [SmsStatus::Pending, SmsStatus::Registered, SmsStatus::Removed, SmsStatus::Error] {
            assert_eq!(SmsStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ConnectorStatus::parse("OK"), None);
    }
}
