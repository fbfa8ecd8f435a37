//! Configuration: built-in defaults, then a TOML file, then `WABRIDGE_*` environment variables, then flags.
//! Every key is documented in `docs/configuration.md`.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://path` (default) or `postgres://...`.
    pub database_url: String,
    /// Directory for the SQLite file, the generated master key and media.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: String,
    /// Base64 (or 64 hex digits) AES-256 key that seals secrets. When absent a key file is used.
    pub master_key: Option<String>,
    /// Key file used when `master_key` is absent; generated (mode 0600) on first start.
    pub master_key_file: Option<PathBuf>,
    /// Public base URL (`https://wabridge.example.com`) used in links we hand out.
    pub public_url: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    pub log_format: LogFormat,
    /// Body limit of admin API requests, in bytes.
    pub admin_body_limit: usize,
    /// Reverse proxies (CIDR prefixes or addresses) whose `X-Forwarded-For` names the client, for the console's
    /// per-client login limit. Empty (default): the client is the TCP peer.
    pub trusted_proxies: Vec<String>,
    /// Body limit of Meta webhook POSTs, in bytes (Meta sends up to 3 MB).
    pub webhook_body_limit: usize,
    /// Maximum database connections in the pool.
    pub database_max_connections: u32,
    /// Run the job workers in this process.
    pub workers_enabled: bool,
    /// Number of jobs run concurrently by this process.
    pub worker_concurrency: usize,
    /// How long a leased job belongs to this process before another may take it, in seconds.
    pub job_lease_seconds: u64,
    /// Attempts before a job is marked dead.
    pub job_max_attempts: i64,
    /// Processed inbox rows and finished jobs older than this are pruned.
    pub retention_days: u64,
    /// Raw events of apps with `keep_raw_events` are kept this long.
    pub debug_retention_days: u64,
    /// Group commit: the largest number of webhook requests committed in one transaction.
    pub intake_batch_max: usize,
    /// Base URL of Meta's Graph API (the sandbox's URL in tests and demos).
    pub graph_base_url: String,
    /// Graph API version used in every Graph URL, e.g. `v23.0`.
    pub graph_version: String,
    /// Run the SIP edge (TLS listener for Meta, UDP/TCP toward the PBX).
    pub sip_enabled: bool,
    /// TLS listener for Meta's calls.
    pub sip_listen: String,
    /// PEM certificate chain of the SIP host name (reloaded on SIGHUP).
    pub sip_cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub sip_key_file: PathBuf,
    /// Our SIP host name and port as configured at Meta (digest realm, Record-Route toward Meta).
    pub sip_public_host: String,
    /// UDP socket toward the PBX (also where the PBX sends to); empty disables UDP.
    pub sip_pbx_udp_listen: String,
    /// TCP listener toward the PBX; empty disables it.
    pub sip_pbx_tcp_listen: String,
    /// Our host:port as the PBX sees it (Record-Route/Via toward the PBX); default: the UDP address.
    pub sip_pbx_facing: Option<String>,
    /// Asterisk target for phones without their own: `udp|tcp|tls:host:port`.
    pub sip_default_target: Option<String>,
    /// Networks Meta's requests may come from (CIDR). Default: Meta's published prefixes.
    pub sip_trusted_networks: Vec<String>,
    /// Networks the PBX side (Asterisk) may send from (CIDR). Empty (default): the addresses of the
    /// configured Asterisk targets (per-phone `asterisk_target` and `sip_default_target`), names
    /// resolved at start and on SIGHUP.
    pub sip_pbx_networks: Vec<String>,
    /// CA file that Meta's certificate must chain to (tests, private CAs); default: public roots.
    pub sip_meta_ca_file: Option<PathBuf>,
    /// Connect here instead of resolving `wa.meta.vc` (tests only).
    pub sip_meta_address: Option<String>,
    /// RFC 3261 T1 in milliseconds (UDP retransmissions start at T1 and double).
    pub sip_timer_t1_ms: u64,
    /// RFC 3261 timer B/F: a request with no answer at all gets 408 after this many milliseconds.
    pub sip_timer_b_ms: u64,
    /// RFC 3261 timer C: a proxied INVITE still ringing after this many seconds (since the last
    /// provisional response) is cancelled downstream and answered 408 upstream.
    pub sip_timer_c_seconds: u64,
    /// Most TLS/TCP connections at once from one source address.
    pub sip_max_connections_per_source: usize,
    /// Idle TLS/TCP connections are closed after this many seconds.
    pub sip_idle_timeout_seconds: u64,
    /// TLS handshakes that take longer are abandoned.
    pub sip_tls_handshake_timeout_ms: u64,
    /// Bitrix24 app `client_id` (from the portal's developer resources or the vendor console).
    pub bitrix_client_id: String,
    /// Bitrix24 app `client_secret`; only ever sent to the OAuth server.
    pub bitrix_client_secret: Option<String>,
    /// Bitrix24 OAuth server (the sandbox's URL in tests and demos).
    pub bitrix_oauth_url: String,
    /// The connector id registered in every portal (lowercase letters, digits, `_`).
    pub bitrix_connector_id: String,
    /// Sustained REST calls per second per portal (Bitrix24 allows 2; 5 on Enterprise plans).
    pub bitrix_rate_per_sec: f64,
    /// Burst of REST calls per portal before pacing (Bitrix24 allows 50; 250 on Enterprise plans).
    pub bitrix_burst: u32,
    /// Signed media links handed to the CRM expire after this many seconds.
    pub media_url_ttl_seconds: u64,
    /// Media kept locally (phones without `file_proxy`) is removed after this many days.
    pub media_retention_days: u64,
    /// A Graph send that has not answered after this many milliseconds is abandoned (its state is unknown).
    pub send_timeout_ms: u64,
    /// A send whose outcome is unknown waits this long for a status webhook before it is tried again.
    pub send_reconcile_seconds: u64,
    /// Meta's pair rate: one message to the same customer per this many milliseconds...
    pub send_pair_interval_ms: u64,
    /// ...with bursts up to this many messages.
    pub send_pair_burst: u32,
    /// Graph send requests in flight at once per process (all numbers together).
    pub send_concurrency: usize,
    // HTTP limits (issue 11, "HTTP: bounded"); see docs/configuration.md, "HTTP limits".
    /// Most HTTP connections open at once; beyond it new connections are accepted and closed at once.
    pub http_max_connections: usize,
    /// A connection with no request in progress (new, or kept alive after a response) is closed after this long.
    pub http_idle_timeout_ms: u64,
    /// A request head must be complete this long after its first byte arrived.
    pub http_header_read_timeout_ms: u64,
    /// A request body must be complete this long after its head arrived; else 408.
    pub http_body_read_timeout_ms: u64,
    /// Bytes of webhook bodies held in memory at once (declared or read); at least `webhook_body_limit`.
    pub webhook_body_budget_bytes: usize,
    /// How long a webhook waits for room in the budget before it gets 503 with `Retry-After`.
    pub webhook_budget_wait_ms: u64,
    // Tenant event webhooks (docs/events.md).
    /// Event subscription URLs may name loopback, private and link-local addresses (off: refused, SSRF).
    pub events_allow_private_urls: bool,
    /// An event endpoint that has not answered after this many milliseconds has failed the attempt.
    pub events_timeout_ms: u64,
    /// A delivery is retried until this long after its first attempt (default 24 hours), then dead.
    pub events_retry_window_seconds: u64,
    /// An endpoint whose every attempt failed for this long is disabled, with the reason shown.
    pub events_disable_after_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://./data/wabridge.db".into(),
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:8080".into(),
            master_key: None,
            master_key_file: None,
            public_url: None,
            log: "info".into(),
            log_format: LogFormat::Text,
            admin_body_limit: 1024 * 1024,
            trusted_proxies: Vec::new(),
            webhook_body_limit: 3 * 1024 * 1024,
            database_max_connections: 16,
            workers_enabled: true,
            worker_concurrency: 8,
            job_lease_seconds: 60,
            job_max_attempts: 12,
            retention_days: 7,
            debug_retention_days: 30,
            intake_batch_max: 512,
            graph_base_url: "https://graph.facebook.com".into(),
            graph_version: "v23.0".into(),
            sip_enabled: false,
            sip_listen: "0.0.0.0:5061".into(),
            sip_cert_file: PathBuf::from("certs/sip-cert.pem"),
            sip_key_file: PathBuf::from("certs/sip-key.pem"),
            sip_public_host: "sip.example.com:5061".into(),
            sip_pbx_udp_listen: "0.0.0.0:5070".into(),
            sip_pbx_tcp_listen: String::new(),
            sip_pbx_facing: None,
            sip_default_target: None,
            sip_trusted_networks: crate::sip::acl::META_PREFIXES.iter().map(|s| s.to_string()).collect(),
            sip_pbx_networks: Vec::new(),
            sip_meta_ca_file: None,
            sip_meta_address: None,
            sip_timer_t1_ms: 500,
            sip_timer_b_ms: 32_000,
            sip_timer_c_seconds: 180,
            sip_max_connections_per_source: 200,
            sip_idle_timeout_seconds: 900,
            sip_tls_handshake_timeout_ms: 5_000,
            bitrix_client_id: String::new(),
            bitrix_client_secret: None,
            bitrix_oauth_url: "https://oauth.bitrix.info".into(),
            bitrix_connector_id: "wabridge_whatsapp".into(),
            bitrix_rate_per_sec: 2.0,
            bitrix_burst: 50,
            media_url_ttl_seconds: 24 * 3600,
            media_retention_days: 30,
            send_timeout_ms: 20_000,
            send_reconcile_seconds: 300,
            send_pair_interval_ms: 6_000,
            send_pair_burst: 45,
            send_concurrency: 64,
            http_max_connections: 2_048,
            http_idle_timeout_ms: 30_000,
            http_header_read_timeout_ms: 10_000,
            http_body_read_timeout_ms: 30_000,
            webhook_body_budget_bytes: 64 * 1024 * 1024,
            webhook_budget_wait_ms: 2_000,
            events_allow_private_urls: false,
            events_timeout_ms: 10_000,
            events_retry_window_seconds: 24 * 3600,
            events_disable_after_seconds: 5 * 24 * 3600,
        }
    }
}

/// Values given as command-line flags; they win over everything else.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults < TOML file < `WABRIDGE_*` environment < flags.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig
            .merge(
                Env::prefixed("WABRIDGE_")
                    .filter(|key| known_keys().iter().any(|k| k.eq_ignore_ascii_case(key.as_str()))),
            )
            .merge(Serialized::defaults(flags));
        let config: Config = fig.extract().map_err(|e| ConfigError(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:") || self.is_postgres()) {
            return Err(ConfigError(format!(
                "database_url must start with sqlite: or postgres://, got {:?}",
                self.database_url.split(':').next().unwrap_or_default()
            )));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!("listen must be host:port, got {:?}", self.listen)));
        }
        if self.worker_concurrency == 0 || self.intake_batch_max == 0 || self.send_concurrency == 0 {
            return Err(ConfigError(
                "worker_concurrency, intake_batch_max and send_concurrency must be at least 1".into(),
            ));
        }
        if self.http_max_connections == 0
            || self.http_idle_timeout_ms == 0
            || self.http_header_read_timeout_ms == 0
            || self.http_body_read_timeout_ms == 0
        {
            return Err(ConfigError("http_max_connections and the http_*_timeout_ms keys must be at least 1".into()));
        }
        if self.webhook_body_budget_bytes < self.webhook_body_limit
            || self.webhook_body_budget_bytes > u32::MAX as usize
        {
            return Err(ConfigError(format!(
                "webhook_body_budget_bytes must be at least webhook_body_limit ({}) and at most 4 GiB, got {}",
                self.webhook_body_limit, self.webhook_body_budget_bytes
            )));
        }
        let proxies: Vec<&str> = self.trusted_proxies.iter().map(String::as_str).collect();
        if let Err(e) = crate::sip::acl::Acl::parse(&proxies) {
            return Err(ConfigError(format!("trusted_proxies: {e}")));
        }
        if self.events_timeout_ms == 0 {
            return Err(ConfigError("events_timeout_ms must be at least 1".into()));
        }
        if !url::Url::parse(&self.graph_base_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError(format!("graph_base_url must be an http(s) URL, got {:?}", self.graph_base_url)));
        }
        if !crate::meta::graph::is_version(&self.graph_version) {
            return Err(ConfigError(format!("graph_version must look like v23.0, got {:?}", self.graph_version)));
        }
        Ok(())
    }

    /// Human-readable description of the database, without credentials.
    pub fn database_label(&self) -> String {
        match url::Url::parse(&self.database_url) {
            Ok(u) if self.is_postgres() => {
                format!("postgres {}{}", u.host_str().unwrap_or(""), u.path())
            }
            _ => self.database_url.clone(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")
    }

    /// What is allowed but probably not meant, for the service to log as warnings when it starts.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let all_interfaces = |addr: &str| addr.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_unspecified());
        let defaults = Config::default();
        if self.sip_enabled
            && all_interfaces(&self.sip_listen)
            && (self.sip_cert_file == defaults.sip_cert_file || self.sip_key_file == defaults.sip_key_file)
        {
            out.push(format!(
                "sip_enabled with the default certificate files ({}, {}: 'wabridge certs dev' writes self-signed \
                 ones, which Meta refuses) and sip_listen {} on all interfaces: point sip_cert_file/sip_key_file \
                 at the public certificate of {}, or listen on 127.0.0.1 for local tests",
                self.sip_cert_file.display(),
                self.sip_key_file.display(),
                self.sip_listen,
                self.sip_public_host,
            ));
        }
        out
    }

    /// Why a Bitrix24 install cannot work for long with this configuration, if it cannot.
    pub fn bitrix_install_warning(&self) -> Option<String> {
        self.bitrix_client_id.trim().is_empty().then(|| {
            "bitrix_client_id is not set: the portal's access token (valid one hour) cannot be refreshed, so \
             deliveries to this portal stop within the hour; set bitrix_client_id and bitrix_client_secret from \
             the portal's app registration (docs/bitrix24.md) and restart"
                .to_string()
        })
    }

    /// Where the generated master key lives when `master_key` is not set.
    pub fn key_file(&self) -> PathBuf {
        self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }
}

/// A figment error as one readable line per problem: the key, where it came from, and for an unknown key the
/// nearest known one (figment's own message lists every key, with doubled backticks and the profile prefix).
fn describe(err: figment::Error) -> String {
    use figment::error::Kind;
    let keys = known_keys();
    let mut lines = Vec::new();
    for e in err {
        let source = e
            .metadata
            .as_ref()
            .and_then(|m| m.source.as_ref())
            .map(|s| match s {
                figment::Source::File(path) => format!(" in {}", path.display()),
                other => format!(" in {other}"),
            })
            .unwrap_or_default();
        let key = e.path.join(".");
        let line = match &e.kind {
            Kind::UnknownField(found, _) => {
                let hint = nearest_key(found, &keys)
                    .map(|k| format!("; did you mean '{k}'?"))
                    .unwrap_or_else(|| "; every key is listed in docs/configuration.md".into());
                format!("unknown key '{found}'{source}{hint}")
            }
            Kind::InvalidType(actual, expected) => {
                format!("'{key}'{source}: expected {expected}, found {actual}")
            }
            Kind::InvalidValue(actual, expected) => {
                format!("'{key}'{source}: expected {expected}, found {actual}")
            }
            Kind::UnknownVariant(found, expected) => {
                format!("'{key}'{source}: unknown value '{found}', expected one of {}", expected.join(", "))
            }
            Kind::Message(m) => match key.is_empty() {
                true => format!("{m}{source}"),
                false => format!("'{key}'{source}: {m}"),
            },
            other => match key.is_empty() {
                true => format!("{other}{source}"),
                false => format!("'{key}'{source}: {other}"),
            },
        };
        lines.push(line);
    }
    lines.join("; ")
}

/// The known key closest to `found` by edit distance, when it is close enough to be a typo.
fn nearest_key<'a>(found: &str, keys: &'a [String]) -> Option<&'a str> {
    keys.iter()
        .map(|k| (strsim::damerau_levenshtein(&found.to_ascii_lowercase(), k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// The configuration keys, derived from the struct so the environment filter never drifts from it.
fn known_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let c = Config::default();
        assert_eq!(c.database_url, "sqlite://./data/wabridge.db");
        assert_eq!(c.listen, "127.0.0.1:8080");
        c.validate().unwrap();
    }

    #[test]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("w.toml", "listen = \"127.0.0.1:9000\"\nlog = \"debug\"\nretention_days = 3\n")?;
            jail.set_env("WABRIDGE_LOG", "warn");
            jail.set_env("WABRIDGE_RETENTION_DAYS", "5");
            jail.set_env("WABRIDGE_SOMETHING_ELSE", "ignored, not a config key");
            let flags = FlagOverrides { listen: Some("127.0.0.1:9100".into()), ..Default::default() };
            let c = Config::load(Some(Path::new("w.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:9100");
            assert_eq!(c.log, "warn");
            assert_eq!(c.retention_days, 5);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("w.toml", "lisen = \"x\"\n")?;
            let err = Config::load(Some(Path::new("w.toml")), &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.contains("unknown key 'lisen' in ") && err.contains("w.toml"), "{err}");
            assert!(err.ends_with("did you mean 'listen'?"), "the nearest key: {err}");
            assert!(!err.contains("``") && !err.contains("default.") && !err.contains("database_url"), "{err}");
            jail.create_file("y.toml", "sip_enable = true\n")?;
            let err = Config::load(Some(Path::new("y.toml")), &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.contains("did you mean 'sip_enabled'?"), "{err}");
            jail.create_file("z.toml", "retention_days = \"many\"\n")?;
            let err = Config::load(Some(Path::new("z.toml")), &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.starts_with("configuration: 'retention_days' in ") && err.contains("found string"), "{err}");
            assert!(!err.contains("default."), "{err}");
            jail.create_file("q.toml", "zzzzzzzzzzzz = 1\n")?;
            let err = Config::load(Some(Path::new("q.toml")), &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.contains("docs/configuration.md") && !err.contains("did you mean"), "no wild guess: {err}");
            jail.create_file("v.toml", "database_url = \"mysql://x\"\n")?;
            let err = Config::load(Some(Path::new("v.toml")), &FlagOverrides::default()).unwrap_err();
            assert!(err.to_string().contains("database_url"), "{err}");
            jail.create_file("p.toml", "trusted_proxies = [\"10.0.0.0/8\", \"proxy.example.com\"]\n")?;
            let err = Config::load(Some(Path::new("p.toml")), &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.contains("trusted_proxies") && err.contains("proxy.example.com"), "{err}");
            jail.create_file("r.toml", "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n")?;
            let c = Config::load(Some(Path::new("r.toml")), &FlagOverrides::default()).expect("loads");
            assert_eq!(c.trusted_proxies.len(), 2);
            Ok(())
        });
    }

    #[test]
    fn warnings_for_what_is_allowed_but_not_meant() {
        assert!(Config::default().warnings().is_empty(), "the SIP edge is off by default");
        let sip = Config { sip_enabled: true, ..Config::default() };
        let w = sip.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("certs/sip-cert.pem") && w[0].contains("0.0.0.0:5061"), "{w:?}");
        let local = Config { sip_listen: "127.0.0.1:5061".into(), ..sip.clone() };
        assert!(local.warnings().is_empty(), "loopback only: nothing reaches it from outside");
        let real = Config {
            sip_cert_file: "/etc/wabridge/sip-cert.pem".into(),
            sip_key_file: "/etc/wabridge/sip-key.pem".into(),
            ..sip
        };
        assert!(real.warnings().is_empty(), "a certificate of its own");

        let w = Config::default().bitrix_install_warning().expect("client id unset");
        assert!(w.contains("bitrix_client_id"), "{w}");
        assert!(Config { bitrix_client_id: "app.123".into(), ..Config::default() }.bitrix_install_warning().is_none());
    }

    #[test]
    fn http_limits_are_validated() {
        let c = Config { webhook_body_budget_bytes: 1024, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("webhook_body_budget_bytes"));
        let c = Config { http_header_read_timeout_ms: 0, ..Config::default() };
        assert!(c.validate().is_err());
        let c = Config { http_max_connections: 0, ..Config::default() };
        assert!(c.validate().is_err());
    }
}
