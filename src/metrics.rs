//! Prometheus metrics of this service instance (no global state, so several instances can share a process).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub webhook_rejected: Family<ReasonLabels, Counter>,
    pub webhook_accepted: Counter,
    pub jobs_finished: Family<KindLabels, Counter>,
    pub jobs_running: Gauge,
    pub calls: Family<OutcomeLabels, Counter>,
    pub calls_active: Gauge,
    /// TLS/TCP connections the SIP edge closed right after accept, by reason (`untrusted`: outside
    /// `sip_trusted_networks`; `not_pbx`: outside `sip_pbx_networks`; `per_source_limit`).
    pub sip_connections_refused: Family<ReasonLabels, Counter>,
    /// Sends not finished yet, by state (read from the database at scrape time).
    pub sends_pending: Family<StateLabels, Gauge>,
    /// WABAs whose sends are paused because Meta refused the token (alert on > 0).
    pub wabas_sends_paused: Gauge,
    /// Sends sent again after no answer and no status webhook within the reconcile window (may be duplicates).
    pub sends_resent_unconfirmed: Counter,
    /// Inbound messages whose earlier delivery to the portal may have gone through, by what the portal said when
    /// asked before sending again (`already_there`, `not_there`, `could_not_tell`: sent again, may be twice).
    pub crm_deliveries_rechecked: Family<OutcomeLabels, Counter>,
    /// Errors Meta reported in webhooks (`value.errors`) in the last 24 hours, across all processes.
    pub meta_webhook_errors_last_day: Gauge,
    /// HTTP connections open now.
    pub http_connections_open: Gauge,
    /// HTTP connections closed at once because `http_max_connections` were open.
    pub http_connections_refused: Counter,
    /// HTTP connections closed by a timeout, by phase (`idle`, `header`).
    pub http_connections_timed_out: Family<PhaseLabels, Counter>,
    /// Bytes of webhook bodies held now (the budget in use).
    pub webhook_body_bytes_in_flight: Gauge,
    // Stats (issue 15): the message counts are read from the database at scrape time (all processes).
    /// Customers' messages received.
    pub messages_received: Counter,
    /// Messages Meta took from us (read marks left out).
    pub messages_sent: Counter,
    /// Template messages Meta took from us.
    pub templates_sent: Counter,
    /// Media uploaded through the tenant API (this process).
    pub media_uploaded: Counter,
    /// Errors by kind (`send_failed`, `event_delivery_dead`; all processes).
    pub errors: Family<KindOnlyLabels, Counter>,
    /// Tenant API calls by route template (this process).
    pub api_calls: Family<RouteLabels, Counter>,
    /// Seconds since this process started.
    pub uptime_seconds: Gauge,
    pub started: std::time::Instant,
    // Account health (issue 16): read from the database at scrape time (all processes); labels only over
    // registered WABAs, apps and phones, by Meta's ids (never phone numbers).
    /// When each WABA's access token expires (Unix seconds; 0: never), per the last answer of `debug_token`.
    pub token_expires_at_seconds: Family<WabaLabels, Gauge>,
    /// 1 when Meta says the WABA's token is valid, 0 when not.
    pub token_valid: Family<WabaLabels, Gauge>,
    /// When each WABA was last checked (Unix seconds), answered or not.
    pub health_checked_at_seconds: Family<WabaLabels, Gauge>,
    /// 1 for each phone's current `can_send_message` (AVAILABLE, LIMITED, BLOCKED), 0 for the others.
    pub phone_can_send: Family<PhoneStatusLabels, Gauge>,
    /// 1 for each phone's current quality rating (GREEN, YELLOW, RED, NA, UNKNOWN), 0 for the others.
    pub phone_quality: Family<PhoneRatingLabels, Gauge>,
    /// When the last webhook for each app arrived (Unix seconds).
    pub app_last_webhook_timestamp_seconds: Family<AppLabels, Gauge>,
    /// When the last webhook for each phone arrived (Unix seconds).
    pub phone_last_webhook_timestamp_seconds: Family<PhoneLabels, Gauge>,
    /// Jobs that gave up (all processes).
    pub jobs_dead: Gauge,
}

/// A registered WABA, by Meta's WABA id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WabaLabels {
    pub waba: String,
}

/// A registered app, by Meta's app id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

/// A registered phone, by Meta's phone number id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhoneLabels {
    pub phone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhoneStatusLabels {
    pub phone: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhoneRatingLabels {
    pub phone: String,
    pub rating: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOnlyLabels {
    pub kind: String,
}

impl Metrics {
    /// Raises a counter that mirrors a count kept elsewhere (the database) to `total`; it never goes down.
    pub fn raise_to(counter: &Counter, total: i64) {
        let total = total.max(0) as u64;
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("wabridge");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route, method and status", http_requests.clone());
        let http_latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_request_duration_seconds", "HTTP request latency by route", http_latency.clone());
        let webhook_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "webhook_rejected",
            "Webhook requests refused before anything was stored, by reason",
            webhook_rejected.clone(),
        );
        let webhook_accepted = Counter::default();
        registry.register("webhook_accepted", "Webhook requests committed to the inbox", webhook_accepted.clone());
        let jobs_finished = Family::<KindLabels, Counter>::default();
        registry.register("jobs_finished", "Job attempts by kind and outcome", jobs_finished.clone());
        let jobs_running = Gauge::default();
        registry.register("jobs_running", "Jobs running in this process now", jobs_running.clone());
        let calls = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "calls",
            "Calls through the SIP edge by outcome (answered, busy, declined, cancelled, not_found, no_answer, failed, refused)",
            calls.clone(),
        );
        let calls_active = Gauge::default();
        registry.register("calls_active", "Answered calls through the SIP edge not yet hung up", calls_active.clone());
        let sip_connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sip_connections_refused",
            "TLS/TCP connections the SIP edge closed before any handshake or read, by reason (untrusted, not_pbx, per_source_limit)",
            sip_connections_refused.clone(),
        );
        let sends_pending = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sends_pending",
            "Sends to WhatsApp not finished, by state (queued, unknown), across all processes",
            sends_pending.clone(),
        );
        let meta_webhook_errors_last_day = Gauge::default();
        registry.register(
            "meta_webhook_errors_last_day",
            "Errors Meta reported in messages webhooks (value.errors) in the last 24 hours, across all processes \
             (GET /admin/api/v1/webhook-errors lists them)",
            meta_webhook_errors_last_day.clone(),
        );
        let sends_resent_unconfirmed = Counter::default();
        registry.register(
            "sends_resent_unconfirmed",
            "Sends sent again after no answer and no status webhook within send_reconcile_seconds (the customer may \
             get them twice)",
            sends_resent_unconfirmed.clone(),
        );
        let crm_deliveries_rechecked = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "crm_deliveries_rechecked",
            "Inbound messages whose earlier delivery to the CRM may have gone through (a crash or a lost answer), by \
             what the portal said when asked before sending again (already_there, not_there, could_not_tell: sent \
             again, the operator may see it twice)",
            crm_deliveries_rechecked.clone(),
        );
        let wabas_sends_paused = Gauge::default();
        registry.register(
            "wabas_sends_paused",
            "WABAs whose sends are paused because Meta refused the access token (alert when above 0)",
            wabas_sends_paused.clone(),
        );
        let http_connections_open = Gauge::default();
        registry.register("http_connections_open", "HTTP connections open now", http_connections_open.clone());
        let http_connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once because http_max_connections were open",
            http_connections_refused.clone(),
        );
        let http_connections_timed_out = Family::<PhaseLabels, Counter>::default();
        registry.register(
            "http_connections_timed_out",
            "HTTP connections closed by a timeout, by phase (idle: no request; header: request head too slow)",
            http_connections_timed_out.clone(),
        );
        let webhook_body_bytes_in_flight = Gauge::default();
        registry.register(
            "webhook_body_bytes_in_flight",
            "Bytes of webhook bodies held in memory now (taken from webhook_body_budget_bytes)",
            webhook_body_bytes_in_flight.clone(),
        );
        let messages_received = Counter::default();
        registry.register(
            "messages_received",
            "Customers' messages received, across all processes",
            messages_received.clone(),
        );
        let messages_sent = Counter::default();
        registry.register(
            "messages_sent",
            "Messages Meta took from wabridge (read marks left out), across all processes",
            messages_sent.clone(),
        );
        let templates_sent = Counter::default();
        registry.register(
            "templates_sent",
            "Template messages Meta took from wabridge, across all processes",
            templates_sent.clone(),
        );
        let media_uploaded = Counter::default();
        registry.register("media_uploaded", "Media uploaded through the tenant API", media_uploaded.clone());
        let errors = Family::<KindOnlyLabels, Counter>::default();
        registry.register(
            "errors",
            "Errors by kind: send_failed (sends given up on), event_delivery_dead (event deliveries given up on), \
             across all processes",
            errors.clone(),
        );
        let api_calls = Family::<RouteLabels, Counter>::default();
        registry.register("api_calls", "Tenant API (/api/v1) calls by route", api_calls.clone());
        let uptime_seconds = Gauge::default();
        registry.register("uptime_seconds", "Seconds since this process started", uptime_seconds.clone());
        let token_expires_at_seconds = Family::<WabaLabels, Gauge>::default();
        registry.register(
            "token_expires_at_seconds",
            "When the WABA's access token expires, Unix seconds (0: never), per Meta's debug_token at the last check",
            token_expires_at_seconds.clone(),
        );
        let token_valid = Family::<WabaLabels, Gauge>::default();
        registry.register(
            "token_valid",
            "1 when Meta said at the last check that the WABA's access token is valid, 0 when not",
            token_valid.clone(),
        );
        let health_checked_at_seconds = Family::<WabaLabels, Gauge>::default();
        registry.register(
            "health_checked_at_seconds",
            "When the WABA's token and phones were last checked with Meta (Unix seconds), answered or not",
            health_checked_at_seconds.clone(),
        );
        let phone_can_send = Family::<PhoneStatusLabels, Gauge>::default();
        registry.register(
            "phone_can_send",
            "1 for the phone's health_status.can_send_message at the last check (AVAILABLE, LIMITED, BLOCKED), 0 for \
             the others",
            phone_can_send.clone(),
        );
        let phone_quality = Family::<PhoneRatingLabels, Gauge>::default();
        registry.register(
            "phone_quality",
            "1 for the phone's quality rating at the last check (GREEN, YELLOW, RED, NA, UNKNOWN), 0 for the others",
            phone_quality.clone(),
        );
        let app_last_webhook_timestamp_seconds = Family::<AppLabels, Gauge>::default();
        registry.register(
            "app_last_webhook_timestamp_seconds",
            "When the last webhook for the app arrived (Unix seconds, to the minute)",
            app_last_webhook_timestamp_seconds.clone(),
        );
        let phone_last_webhook_timestamp_seconds = Family::<PhoneLabels, Gauge>::default();
        registry.register(
            "phone_last_webhook_timestamp_seconds",
            "When the last webhook for the phone arrived (Unix seconds, to the minute)",
            phone_last_webhook_timestamp_seconds.clone(),
        );
        let jobs_dead = Gauge::default();
        registry.register(
            "jobs_dead",
            "Jobs that gave up, across all processes (alert when above 0)",
            jobs_dead.clone(),
        );
        Arc::new(Metrics {
            token_expires_at_seconds,
            token_valid,
            health_checked_at_seconds,
            phone_can_send,
            phone_quality,
            app_last_webhook_timestamp_seconds,
            phone_last_webhook_timestamp_seconds,
            jobs_dead,
            messages_received,
            messages_sent,
            templates_sent,
            media_uploaded,
            errors,
            api_calls,
            uptime_seconds,
            started: std::time::Instant::now(),
            registry,
            http_connections_open,
            http_connections_refused,
            http_connections_timed_out,
            webhook_body_bytes_in_flight,
            sends_pending,
            wabas_sends_paused,
            sends_resent_unconfirmed,
            crm_deliveries_rechecked,
            meta_webhook_errors_last_day,
            http_requests,
            http_latency,
            webhook_rejected,
            webhook_accepted,
            jobs_finished,
            jobs_running,
            calls,
            calls_active,
            sip_connections_refused,
        })
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
