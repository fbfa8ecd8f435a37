//! Registry tables: Meta apps, WABAs, phones and CRM portals. Secrets are sealed here and opened on load,
//! so nothing above this module ever sees a sealed value and nothing below it ever sees a plain one.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{get_bool, Store, StoreError};

#[derive(Debug, Clone)]
pub struct App {
    pub id: i64,
    pub meta_app_id: String,
    pub name: String,
    pub domain: String,
    pub app_secret: String,
    pub access_token: Option<String>,
    pub verify_token: String,
    pub keep_raw_events: bool,
    pub verify_signatures: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Waba {
    pub id: i64,
    pub waba_id: String,
    pub app_id: i64,
    pub name: String,
    pub access_token: Option<String>,
    /// Why sends are paused (Meta refused the token), when they are. Written by the sender only.
    pub sends_paused_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Portal {
    pub id: i64,
    pub kind: String,
    pub member_id: String,
    pub domain: String,
    pub client_endpoint: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub token_expires_at: Option<i64>,
    pub application_token: Option<String>,
    pub active: bool,
    pub uninstalled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Phone {
    pub id: i64,
    pub number: String,
    pub phone_number_id: String,
    pub waba_id: i64,
    pub portal_id: Option<i64>,
    pub channel: String,
    pub sms_service: bool,
    pub file_proxy: bool,
    pub line_id: Option<String>,
    /// What wabridge wants: calling (and SIP) on at Meta. Set by the last enable/disable request.
    pub calling_enabled: bool,
    /// Meta's calling status as last known (`ENABLED`/`DISABLED`), changed only when Meta accepted a request.
    pub calling_status: Option<String>,
    pub sip_host: Option<String>,
    pub sip_port: Option<i64>,
    /// `SDES` or `DTLS`.
    pub srtp_key_exchange: Option<String>,
    /// Meta's message of the last failed activation (or why it could not be tried); `None` after a success.
    pub calling_last_error: Option<String>,
    /// Meta's `sip_user_password` for this number and app (plain here; sealed in the database).
    pub sip_password: Option<String>,
    pub asterisk_target: Option<String>,
    /// Meta's `sip.status` as last known.
    pub sip_status: Option<String>,
    /// `DEFAULT` or `DISABLE_ALL`; `None` leaves Meta's value alone.
    pub call_icon_visibility: Option<String>,
    /// `ENABLED` or `DISABLED` (Meta's `callback_permission_status`); `None` leaves Meta's value alone.
    pub callback_permission: Option<String>,
    /// Challenge Meta's INVITEs with digest; `None` = on whenever the SIP password is known.
    pub sip_digest: Option<bool>,
    /// Meta's error code of the last failed activation.
    pub calling_error_code: Option<i64>,
    /// Meta's `error_data.details` of the last failed activation.
    pub calling_error_details: Option<String>,
    /// Meta's `fbtrace_id` of the last failed activation.
    pub calling_error_trace: Option<String>,
    pub calling_error_at: Option<i64>,
    /// Meta's throughput for this number in messages per second (80 by default, up to 1,000).
    pub throughput_mps: i64,
    /// The CRM line's state: `pending`, `ok`, `error`, `line_deleted` or `disabled` (written by the binder).
    pub connector_status: Option<String>,
    /// The portal's message when `connector_status` is `error`.
    pub connector_error: Option<String>,
    /// The SMS-provider code registered in the portal (`None` when not registered).
    pub sms_code: Option<String>,
    /// `registered`, `removed` or `error` (written by the SMS-provider registration job).
    pub sms_status: Option<String>,
    pub sms_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the phone was archived (Unix ms): unbound, no SMS service, out of the default list, history kept.
    pub archived_at: Option<i64>,
}

impl Phone {
    /// True when the SIP edge should challenge Meta's INVITEs for this number with digest authentication:
    /// as configured, and by default whenever Meta's SIP password is known.
    pub fn digest_challenge(&self) -> bool {
        self.sip_digest.unwrap_or(self.sip_password.is_some())
    }

    /// A new phone (not stored yet): no portal, flags off, calling not configured.
    pub fn new(number: String, phone_number_id: String, waba_id: i64, now: i64) -> Phone {
        Phone {
            id: 0,
            number,
            phone_number_id,
            waba_id,
            portal_id: None,
            channel: "meta".into(),
            sms_service: false,
            file_proxy: false,
            line_id: None,
            calling_enabled: false,
            calling_status: None,
            sip_host: None,
            sip_port: None,
            srtp_key_exchange: None,
            calling_last_error: None,
            sip_password: None,
            asterisk_target: None,
            sip_status: None,
            call_icon_visibility: None,
            callback_permission: None,
            sip_digest: None,
            calling_error_code: None,
            calling_error_details: None,
            calling_error_trace: None,
            calling_error_at: None,
            throughput_mps: 80,
            connector_status: None,
            connector_error: None,
            sms_code: None,
            sms_status: None,
            sms_error: None,
            created_at: now,
            updated_at: now,
            archived_at: None,
        }
    }

    /// True when calling is wanted and Meta accepted it: Meta sends this number's calls to the SIP edge.
    pub fn calling_active(&self) -> bool {
        self.calling_enabled && self.calling_status.as_deref() == Some("ENABLED")
    }
}

const APP_COLS: &str = "id, meta_app_id, name, domain, app_secret, access_token, verify_token, keep_raw_events, \
                        verify_signatures, created_at, updated_at";
const WABA_COLS: &str = "id, waba_id, app_id, name, access_token, sends_paused_reason, created_at, updated_at";
const PORTAL_COLS: &str = "id, kind, member_id, domain, client_endpoint, access_token, refresh_token, \
                           token_expires_at, application_token, active, uninstalled_at, created_at, updated_at";
const PHONE_COLS: &str = "id, number, phone_number_id, waba_id, portal_id, channel, sms_service, file_proxy, line_id, \
                          calling_enabled, calling_status, sip_host, sip_port, srtp_key_exchange, calling_last_error, \
                          sip_password, asterisk_target, sip_status, call_icon_visibility, callback_permission, \
                          sip_digest, calling_error_code, calling_error_details, calling_error_trace, \
                          calling_error_at, throughput_mps, connector_status, connector_error, sms_code, \
                          sms_status, sms_error, archived_at, created_at, updated_at";

/// Why a WABA has no Graph token ([`Store::graph_token`]).
#[derive(Debug, thiserror::Error)]
pub enum GraphTokenError {
    #[error("WABA {0} is gone")]
    WabaGone(i64),
    #[error("the WABA's app is gone")]
    AppGone { waba: i64, app: i64 },
    #[error("no access token is configured for this WABA or its app")]
    NoToken { waba: i64, app: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<GraphTokenError> for crate::jobs::JobError {
    /// The database may come back (retried); a missing WABA, app or token will not (permanent).
    fn from(e: GraphTokenError) -> Self {
        match e {
            GraphTokenError::Store(e) => e.into(),
            other => crate::jobs::JobError::Permanent(other.to_string()),
        }
    }
}

/// The id of the WABA Meta calls `waba_id`, inside a transaction.
pub async fn waba_id_by_meta_id_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    waba_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT id FROM wabas WHERE waba_id = $1").bind(waba_id).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| r.try_get::<i64, _>("id")).transpose()?)
}

/// Reads a nullable boolean column from either dialect.
fn get_opt_bool(r: &AnyRow, col: &str) -> Result<Option<bool>, sqlx::Error> {
    match r.try_get::<Option<bool>, _>(col) {
        Ok(b) => Ok(b),
        Err(_) => Ok(r.try_get::<Option<i64>, _>(col)?.map(|v| v != 0)),
    }
}

impl Store {
    fn app_from(&self, r: &AnyRow) -> Result<App, StoreError> {
        Ok(App {
            id: r.try_get("id")?,
            meta_app_id: r.try_get("meta_app_id")?,
            name: r.try_get("name")?,
            domain: r.try_get("domain")?,
            app_secret: self.open("meta_apps.app_secret", &r.try_get::<String, _>("app_secret")?)?,
            access_token: self.open_opt("meta_apps.access_token", r.try_get("access_token")?)?,
            verify_token: self.open("meta_apps.verify_token", &r.try_get::<String, _>("verify_token")?)?,
            keep_raw_events: get_bool(r, "keep_raw_events")?,
            verify_signatures: get_bool(r, "verify_signatures")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    fn waba_from(&self, r: &AnyRow) -> Result<Waba, StoreError> {
        Ok(Waba {
            id: r.try_get("id")?,
            waba_id: r.try_get("waba_id")?,
            app_id: r.try_get("app_id")?,
            name: r.try_get("name")?,
            access_token: self.open_opt("wabas.access_token", r.try_get("access_token")?)?,
            sends_paused_reason: r.try_get("sends_paused_reason")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    fn portal_from(&self, r: &AnyRow) -> Result<Portal, StoreError> {
        Ok(Portal {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            member_id: r.try_get("member_id")?,
            domain: r.try_get("domain")?,
            client_endpoint: r.try_get("client_endpoint")?,
            access_token: self.open_opt("portals.access_token", r.try_get("access_token")?)?,
            refresh_token: self.open_opt("portals.refresh_token", r.try_get("refresh_token")?)?,
            token_expires_at: r.try_get("token_expires_at")?,
            application_token: self.open_opt("portals.application_token", r.try_get("application_token")?)?,
            active: get_bool(r, "active")?,
            uninstalled_at: r.try_get("uninstalled_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    fn phone_from(&self, r: &AnyRow) -> Result<Phone, StoreError> {
        Ok(Phone {
            id: r.try_get("id")?,
            number: r.try_get("number")?,
            phone_number_id: r.try_get("phone_number_id")?,
            waba_id: r.try_get("waba_id")?,
            portal_id: r.try_get("portal_id")?,
            channel: r.try_get("channel")?,
            sms_service: get_bool(r, "sms_service")?,
            file_proxy: get_bool(r, "file_proxy")?,
            line_id: r.try_get("line_id")?,
            calling_enabled: get_bool(r, "calling_enabled")?,
            calling_status: r.try_get("calling_status")?,
            sip_host: r.try_get("sip_host")?,
            sip_port: r.try_get("sip_port")?,
            srtp_key_exchange: r.try_get("srtp_key_exchange")?,
            calling_last_error: r.try_get("calling_last_error")?,
            sip_password: self.open_opt("phones.sip_password", r.try_get("sip_password")?)?,
            asterisk_target: r.try_get("asterisk_target")?,
            sip_status: r.try_get("sip_status")?,
            call_icon_visibility: r.try_get("call_icon_visibility")?,
            callback_permission: r.try_get("callback_permission")?,
            sip_digest: get_opt_bool(r, "sip_digest")?,
            calling_error_code: r.try_get("calling_error_code")?,
            calling_error_details: r.try_get("calling_error_details")?,
            calling_error_trace: r.try_get("calling_error_trace")?,
            calling_error_at: r.try_get("calling_error_at")?,
            throughput_mps: r.try_get("throughput_mps")?,
            connector_status: r.try_get("connector_status")?,
            connector_error: r.try_get("connector_error")?,
            sms_code: r.try_get("sms_code")?,
            sms_status: r.try_get("sms_status")?,
            sms_error: r.try_get("sms_error")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            archived_at: r.try_get("archived_at")?,
        })
    }

    // ---- apps ----

    pub async fn insert_app(&self, a: &App) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO meta_apps (meta_app_id, name, domain, app_secret, access_token, verify_token, \
             keep_raw_events, verify_signatures, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&a.meta_app_id)
        .bind(&a.name)
        .bind(&a.domain)
        .bind(self.seal("meta_apps.app_secret", &a.app_secret))
        .bind(a.access_token.as_deref().map(|t| self.seal("meta_apps.access_token", t)))
        .bind(self.seal("meta_apps.verify_token", &a.verify_token))
        .bind(a.keep_raw_events)
        .bind(a.verify_signatures)
        .bind(a.created_at)
        .bind(a.updated_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn update_app(&self, a: &App) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE meta_apps SET name = $2, domain = $3, app_secret = $4, access_token = $5, verify_token = $6, \
             keep_raw_events = $7, verify_signatures = $8, updated_at = $9 WHERE id = $1",
        )
        .bind(a.id)
        .bind(&a.name)
        .bind(&a.domain)
        .bind(self.seal("meta_apps.app_secret", &a.app_secret))
        .bind(a.access_token.as_deref().map(|t| self.seal("meta_apps.access_token", t)))
        .bind(self.seal("meta_apps.verify_token", &a.verify_token))
        .bind(a.keep_raw_events)
        .bind(a.verify_signatures)
        .bind(a.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_app(&self, id: i64) -> Result<Option<App>, StoreError> {
        let q = format!("SELECT {APP_COLS} FROM meta_apps WHERE id = $1");
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| self.app_from(&r)).transpose()
    }

    pub async fn find_app_by_meta_id(&self, meta_app_id: &str) -> Result<Option<App>, StoreError> {
        let q = format!("SELECT {APP_COLS} FROM meta_apps WHERE meta_app_id = $1");
        let row = sqlx::query(&q).bind(meta_app_id).fetch_optional(&self.pool).await?;
        row.map(|r| self.app_from(&r)).transpose()
    }

    pub async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let q = format!("SELECT {APP_COLS} FROM meta_apps ORDER BY id");
        let rows = sqlx::query(&q).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.app_from(r)).collect()
    }

    pub async fn delete_app(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM meta_apps WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- WABAs ----

    pub async fn insert_waba(&self, w: &Waba) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO wabas (waba_id, app_id, name, access_token, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&w.waba_id)
        .bind(w.app_id)
        .bind(&w.name)
        .bind(w.access_token.as_deref().map(|t| self.seal("wabas.access_token", t)))
        .bind(w.created_at)
        .bind(w.updated_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn update_waba(&self, w: &Waba) -> Result<(), StoreError> {
        sqlx::query("UPDATE wabas SET app_id = $2, name = $3, access_token = $4, updated_at = $5 WHERE id = $1")
            .bind(w.id)
            .bind(w.app_id)
            .bind(&w.name)
            .bind(w.access_token.as_deref().map(|t| self.seal("wabas.access_token", t)))
            .bind(w.updated_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_waba(&self, id: i64) -> Result<Option<Waba>, StoreError> {
        let q = format!("SELECT {WABA_COLS} FROM wabas WHERE id = $1");
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| self.waba_from(&r)).transpose()
    }

    pub async fn find_waba_by_meta_id(&self, waba_id: &str) -> Result<Option<Waba>, StoreError> {
        let q = format!("SELECT {WABA_COLS} FROM wabas WHERE waba_id = $1");
        let row = sqlx::query(&q).bind(waba_id).fetch_optional(&self.pool).await?;
        row.map(|r| self.waba_from(&r)).transpose()
    }

    pub async fn list_wabas(&self) -> Result<Vec<Waba>, StoreError> {
        let q = format!("SELECT {WABA_COLS} FROM wabas ORDER BY id");
        let rows = sqlx::query(&q).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.waba_from(r)).collect()
    }

    pub async fn delete_waba(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM wabas WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// The Graph token of a WABA: its own, else its app's.
    pub async fn graph_token(&self, waba_id: i64) -> Result<String, GraphTokenError> {
        let waba = self.get_waba(waba_id).await?.ok_or(GraphTokenError::WabaGone(waba_id))?;
        if let Some(t) = waba.access_token {
            return Ok(t);
        }
        let app =
            self.get_app(waba.app_id).await?.ok_or(GraphTokenError::AppGone { waba: waba.id, app: waba.app_id })?;
        app.access_token.ok_or(GraphTokenError::NoToken { waba: waba.id, app: app.id })
    }

    // ---- portals ----

    pub async fn insert_portal(&self, p: &Portal) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO portals (kind, member_id, domain, client_endpoint, access_token, refresh_token, \
             token_expires_at, application_token, active, uninstalled_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&p.kind)
        .bind(&p.member_id)
        .bind(&p.domain)
        .bind(&p.client_endpoint)
        .bind(p.access_token.as_deref().map(|t| self.seal("portals.access_token", t)))
        .bind(p.refresh_token.as_deref().map(|t| self.seal("portals.refresh_token", t)))
        .bind(p.token_expires_at)
        .bind(p.application_token.as_deref().map(|t| self.seal("portals.application_token", t)))
        .bind(p.active)
        .bind(p.uninstalled_at)
        .bind(p.created_at)
        .bind(p.updated_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn update_portal(&self, p: &Portal) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE portals SET domain = $2, client_endpoint = $3, access_token = $4, refresh_token = $5, \
             token_expires_at = $6, application_token = $7, active = $8, uninstalled_at = $9, updated_at = $10 \
             WHERE id = $1",
        )
        .bind(p.id)
        .bind(&p.domain)
        .bind(&p.client_endpoint)
        .bind(p.access_token.as_deref().map(|t| self.seal("portals.access_token", t)))
        .bind(p.refresh_token.as_deref().map(|t| self.seal("portals.refresh_token", t)))
        .bind(p.token_expires_at)
        .bind(p.application_token.as_deref().map(|t| self.seal("portals.application_token", t)))
        .bind(p.active)
        .bind(p.uninstalled_at)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_portal(&self, id: i64) -> Result<Option<Portal>, StoreError> {
        let q = format!("SELECT {PORTAL_COLS} FROM portals WHERE id = $1");
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| self.portal_from(&r)).transpose()
    }

    pub async fn find_portal_by_member_id(&self, member_id: &str) -> Result<Option<Portal>, StoreError> {
        let q = format!("SELECT {PORTAL_COLS} FROM portals WHERE member_id = $1");
        let row = sqlx::query(&q).bind(member_id).fetch_optional(&self.pool).await?;
        row.map(|r| self.portal_from(&r)).transpose()
    }

    pub async fn list_portals(&self) -> Result<Vec<Portal>, StoreError> {
        let q = format!("SELECT {PORTAL_COLS} FROM portals ORDER BY id");
        let rows = sqlx::query(&q).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.portal_from(r)).collect()
    }

    // ---- phones ----

    pub async fn insert_phone(&self, p: &Phone) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO phones (number, phone_number_id, waba_id, portal_id, channel, sms_service, file_proxy, \
             line_id, calling_enabled, calling_status, sip_host, sip_port, srtp_key_exchange, calling_last_error, \
             sip_password, asterisk_target, created_at, updated_at, sip_status, call_icon_visibility, \
             callback_permission, sip_digest, calling_error_code, calling_error_details, calling_error_trace, \
             calling_error_at, throughput_mps) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
             $22, $23, $24, $25, $26, $27) RETURNING id",
        )
        .bind(&p.number)
        .bind(&p.phone_number_id)
        .bind(p.waba_id)
        .bind(p.portal_id)
        .bind(&p.channel)
        .bind(p.sms_service)
        .bind(p.file_proxy)
        .bind(&p.line_id)
        .bind(p.calling_enabled)
        .bind(&p.calling_status)
        .bind(&p.sip_host)
        .bind(p.sip_port)
        .bind(&p.srtp_key_exchange)
        .bind(&p.calling_last_error)
        .bind(p.sip_password.as_deref().map(|t| self.seal("phones.sip_password", t)))
        .bind(&p.asterisk_target)
        .bind(p.created_at)
        .bind(p.updated_at)
        .bind(&p.sip_status)
        .bind(&p.call_icon_visibility)
        .bind(&p.callback_permission)
        .bind(p.sip_digest)
        .bind(p.calling_error_code)
        .bind(&p.calling_error_details)
        .bind(&p.calling_error_trace)
        .bind(p.calling_error_at)
        .bind(p.throughput_mps)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Writes only the registry columns of a phone (WABA, portal, flags, line, Asterisk target). The calling
    /// columns belong to [`Store::update_phone_calling`], so an admin change made while an activation waits on
    /// Meta cannot put back a stale SIP password or calling status.
    pub async fn update_phone(&self, p: &Phone) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE phones SET waba_id = $2, portal_id = $3, sms_service = $4, file_proxy = $5, line_id = $6, \
             asterisk_target = $7, updated_at = $8, throughput_mps = $9 WHERE id = $1",
        )
        .bind(p.id)
        .bind(p.waba_id)
        .bind(p.portal_id)
        .bind(p.sms_service)
        .bind(p.file_proxy)
        .bind(&p.line_id)
        .bind(&p.asterisk_target)
        .bind(p.updated_at)
        .bind(p.throughput_mps)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes only the calling columns of a phone (activation), leaving its registry fields as they are.
    pub async fn update_phone_calling(&self, p: &Phone) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE phones SET calling_enabled = $2, calling_status = $3, sip_host = $4, sip_port = $5, \
             srtp_key_exchange = $6, calling_last_error = $7, sip_password = $8, sip_status = $9, \
             call_icon_visibility = $10, callback_permission = $11, sip_digest = $12, calling_error_code = $13, \
             calling_error_details = $14, calling_error_trace = $15, calling_error_at = $16, updated_at = $17 \
             WHERE id = $1",
        )
        .bind(p.id)
        .bind(p.calling_enabled)
        .bind(&p.calling_status)
        .bind(&p.sip_host)
        .bind(p.sip_port)
        .bind(&p.srtp_key_exchange)
        .bind(&p.calling_last_error)
        .bind(p.sip_password.as_deref().map(|t| self.seal("phones.sip_password", t)))
        .bind(&p.sip_status)
        .bind(&p.call_icon_visibility)
        .bind(&p.callback_permission)
        .bind(p.sip_digest)
        .bind(p.calling_error_code)
        .bind(&p.calling_error_details)
        .bind(&p.calling_error_trace)
        .bind(p.calling_error_at)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_phone(&self, id: i64) -> Result<Option<Phone>, StoreError> {
        let q = format!("SELECT {PHONE_COLS} FROM phones WHERE id = $1");
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| self.phone_from(&r)).transpose()
    }

    /// [`Store::get_phone`] of many phones in one query (a phone that is gone is missing from the map).
    pub async fn get_phones(&self, ids: &[i64]) -> Result<std::collections::HashMap<i64, Phone>, StoreError> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let q = format!("SELECT {PHONE_COLS} FROM phones WHERE id IN ({})", super::marks(1, chunk.len()));
            let mut query = sqlx::query(&q);
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(&self.pool).await? {
                let p = self.phone_from(&r)?;
                out.insert(p.id, p);
            }
        }
        Ok(out)
    }

    /// Of portals `ids`, those installed and active.
    pub async fn active_portals(&self, ids: &[i64]) -> Result<std::collections::HashSet<i64>, StoreError> {
        let mut out = std::collections::HashSet::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let q = format!("SELECT id, active FROM portals WHERE id IN ({})", super::marks(1, chunk.len()));
            let mut query = sqlx::query(&q);
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(&self.pool).await? {
                if super::get_bool(&r, "active")? {
                    out.insert(r.try_get("id")?);
                }
            }
        }
        Ok(out)
    }

    /// Looks a phone up by one unique column: `number` or `phone_number_id`.
    pub async fn find_phone_by(&self, column: PhoneKey, value: &str) -> Result<Option<Phone>, StoreError> {
        let col = match column {
            PhoneKey::Number => "number",
            PhoneKey::PhoneNumberId => "phone_number_id",
        };
        let q = format!("SELECT {PHONE_COLS} FROM phones WHERE {col} = $1");
        let row = sqlx::query(&q).bind(value).fetch_optional(&self.pool).await?;
        row.map(|r| self.phone_from(&r)).transpose()
    }

    pub async fn list_phones(&self) -> Result<Vec<Phone>, StoreError> {
        let q = format!("SELECT {PHONE_COLS} FROM phones ORDER BY id");
        let rows = sqlx::query(&q).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.phone_from(r)).collect()
    }

    /// Marks a phone archived (`Some(at)`) or in use again (`None`).
    pub async fn set_phone_archived(&self, id: i64, at: Option<i64>) -> Result<(), StoreError> {
        sqlx::query("UPDATE phones SET archived_at = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(at)
            .bind(super::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_phone(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM phones WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ids of the rows in `table` whose `column` equals `id` (who references this object).
    pub async fn referencing(&self, table: RefTable, id: i64) -> Result<Vec<i64>, StoreError> {
        let q = match table {
            RefTable::WabasOfApp => "SELECT id FROM wabas WHERE app_id = $1 ORDER BY id",
            RefTable::PhonesOfWaba => "SELECT id FROM phones WHERE waba_id = $1 ORDER BY id",
            RefTable::PhonesOfPortal => "SELECT id FROM phones WHERE portal_id = $1 ORDER BY id",
        };
        let rows = sqlx::query(q).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<i64, _>("id").map_err(StoreError::from)).collect()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum PhoneKey {
    Number,
    PhoneNumberId,
}

#[derive(Debug, Clone, Copy)]
pub enum RefTable {
    WabasOfApp,
    PhonesOfWaba,
    PhonesOfPortal,
}
