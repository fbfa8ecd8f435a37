//! The `wabridge` command line: the service, migrations, and the registry for people on the server.
//! Registry commands work on the configured database directly and call the same code as the admin API. They
//! open an existing database only ([`Open::Existing`]): run in the wrong directory they say where they looked
//! instead of creating a new, empty database there. `serve` and `migrate` create it.

pub mod health;
pub mod output;

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::{Config, FlagOverrides, LogFormat};
use crate::registry::{self, AppInput, AppView, PhoneInput, PhoneView, PortalView, WabaInput, WabaView};
use crate::store::{Open, Store};
pub use output::Out;

#[derive(Debug, Parser)]
#[command(name = "wabridge", version, about = "WhatsApp Business bridge to CRM contact centres and the PBX")]
pub struct Cli {
    /// TOML configuration file (also WABRIDGE_CONFIG).
    #[arg(long, global = true, env = "WABRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://path or postgres://... (overrides file and environment).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Data directory for the SQLite file, key file and media.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Print JSON instead of readable text and tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP API, webhooks, workers) until SIGINT/SIGTERM.
    Serve {
        /// Listen address, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create the database if needed, apply its migrations and exit (`serve` does this too).
    Migrate,
    /// Run the demo: wabridge with the Meta and Bitrix24 emulators, playing a scripted story (runs
    /// `wabridge-demo` from beside this binary; from a clone: cargo run -p wabridge-demo).
    Demo {
        /// Arguments passed to wabridge-demo (e.g. --listen 127.0.0.1:8090).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Ask the running service's GET /healthz (exit 0 when it answers 200); used by the container's HEALTHCHECK.
    Healthcheck {
        /// URL to ask (default: /healthz on the configured listen address, 127.0.0.1 for 0.0.0.0).
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage the admin API token.
    #[command(subcommand)]
    AdminToken(AdminTokenCmd),
    /// Meta apps (app id, secret, domain, verify token).
    #[command(subcommand)]
    App(AppCmd),
    /// WhatsApp Business Accounts.
    #[command(subcommand)]
    Waba(WabaCmd),
    /// Phone numbers.
    #[command(subcommand)]
    Phone(PhoneCmd),
    /// CRM portals (installed by the portal's app; listed here).
    #[command(subcommand)]
    Portal(PortalCmd),
    /// WhatsApp calling of a phone at Meta: enable with SIP, disable, compare with Meta.
    #[command(subcommand)]
    Calling(CallingCmd),
    /// API keys for the tenant API (/api/v1/notifications).
    #[command(subcommand)]
    ApiKey(ApiKeyCmd),
    /// Account health: per WABA the access token's expiry, validity and permissions; per phone whether Meta lets
    /// it send, its quality rating and messaging limit tier (`health check` asks Meta now).
    Health(health::HealthArgs),
    /// Message templates synced from Meta, per WABA.
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// Messages sent (or being sent) to WhatsApp.
    #[command(subcommand)]
    Sends(SendsCmd),
    /// Message history: customers' messages and ours, newest first.
    #[command(subcommand)]
    Messages(crate::cli_events::MessagesCmd),
    /// Customers who wrote to our numbers.
    #[command(subcommand)]
    Contacts(crate::cli_events::ContactsCmd),
    /// Conversations: a customer and one of our numbers.
    #[command(subcommand)]
    Conversations(crate::cli_events::ConversationsCmd),
    /// Event webhooks to tenants: subscriptions, deliveries, redrive.
    #[command(subcommand)]
    Events(crate::cli_events::EventsCmd),
    /// TLS certificates for the SIP edge.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Print the Asterisk configuration (pjsip.conf, extensions.conf) for the phones whose calling Meta enabled.
    AsteriskConfig {
        /// Address Asterisk uses to reach the edge (default: the host of sip_pbx_facing / sip_pbx_udp_listen).
        #[arg(long)]
        edge_host: Option<String>,
        /// Port Asterisk listens on for the edge.
        #[arg(long, default_value_t = 5060)]
        asterisk_port: u16,
        /// Include Meta's SIP passwords instead of placeholders (the output is then a secret).
        #[arg(long)]
        with_secrets: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Write a self-signed certificate and key for local use (Meta refuses self-signed certificates: a real
    /// deployment points sip_cert_file/sip_key_file at its public certificate).
    Dev {
        /// Host name the certificate is for, e.g. sip.example.com.
        #[arg(long)]
        host: String,
        /// Directory to write sip-cert.pem and sip-key.pem into.
        #[arg(long, default_value = "certs")]
        dir: std::path::PathBuf,
        /// Replace an existing pair in that directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CallingCmd {
    /// Enable calling with SIP at Meta and store Meta's SIP password (sealed).
    Enable {
        /// wabridge id of the phone.
        #[arg(long)]
        phone: i64,
        /// Host name Meta sends calls to over TLS (its certificate must cover it), e.g. sip.example.com.
        #[arg(long)]
        sip_host: Option<String>,
        /// TLS port Meta connects to (default 5061).
        #[arg(long)]
        sip_port: Option<i64>,
        /// SRTP key exchange: SDES (default, what Asterisk expects) or DTLS.
        #[arg(long)]
        srtp: Option<String>,
        /// Call buttons: DEFAULT or DISABLE_ALL (default: leave Meta's setting).
        #[arg(long)]
        call_icon_visibility: Option<String>,
        /// Ask users for call permission after a call: ENABLED or DISABLED (default: leave Meta's setting).
        #[arg(long)]
        callback_permission: Option<String>,
        /// Challenge Meta's INVITEs with digest (default: on once Meta's SIP password is known).
        #[arg(long)]
        digest: Option<bool>,
    },
    /// Disable calling and SIP at Meta.
    Disable {
        /// wabridge id of the phone.
        #[arg(long)]
        phone: i64,
    },
    /// Compare what wabridge expects with what Meta reports now; fails when Meta cannot be asked.
    Status {
        /// wabridge id of the phone.
        #[arg(long)]
        phone: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminTokenCmd {
    /// Replace the admin token and print the new one; the old one stops working at once.
    Rotate,
}

/// App settings shared by `app add` and `app update`.
#[derive(Debug, Args)]
pub struct AppOptions {
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Default Graph API access token; '-' reads it from standard input.
    #[arg(long)]
    access_token: Option<String>,
    /// Keep raw webhook bodies longer, for debugging (alone: true; or true/false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    keep_raw_events: Option<bool>,
    /// Check webhook signatures (default true; false only for local testing).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    verify_signatures: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register a Meta app; prints its verify token and webhook callback URLs.
    Add {
        /// Meta's app id (digits).
        #[arg(long)]
        meta_app_id: String,
        /// Host name Meta posts webhooks to, e.g. wabridge.example.com.
        #[arg(long)]
        domain: String,
        /// App secret from Meta's dashboard (App settings > Basic); '-' reads it from standard input.
        #[arg(long)]
        app_secret: String,
        #[command(flatten)]
        options: AppOptions,
    },
    /// List apps.
    List,
    /// Show one app (its verify token masked).
    Show {
        /// wabridge id of the app.
        id: i64,
        /// Show the verify token in full, to paste into Meta's dashboard.
        #[arg(long)]
        reveal_verify_token: bool,
    },
    /// Change an app.
    Update {
        /// wabridge id of the app.
        id: i64,
        /// Host name Meta posts webhooks to.
        #[arg(long)]
        domain: Option<String>,
        /// New app secret; '-' reads it from standard input.
        #[arg(long)]
        app_secret: Option<String>,
        #[command(flatten)]
        options: AppOptions,
        /// Generate a new verify token.
        #[arg(long)]
        rotate_verify_token: bool,
    },
    /// Remove an app (refused while WABAs use it).
    Remove {
        /// wabridge id of the app.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum WabaCmd {
    /// Register a WABA under an app.
    Add {
        /// Meta's WABA id (digits).
        #[arg(long)]
        waba_id: String,
        /// wabridge id of the app.
        #[arg(long)]
        app: i64,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Access token overriding the app's; '-' reads it from standard input.
        #[arg(long)]
        access_token: Option<String>,
    },
    /// List WABAs.
    List,
    /// Show one WABA.
    Show {
        /// wabridge id of the WABA.
        id: i64,
    },
    /// Change a WABA.
    Update {
        /// wabridge id of the WABA.
        id: i64,
        /// Move it under this app (wabridge id).
        #[arg(long)]
        app: Option<i64>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// New access token ('' clears it, '-' reads standard input).
        #[arg(long)]
        access_token: Option<String>,
    },
    /// Remove a WABA (refused while phones use it).
    Remove {
        /// wabridge id of the WABA.
        id: i64,
    },
}

/// Phone settings taken alike by `phone add` and `phone update` (one definition, so the two cannot drift).
#[derive(Debug, Args)]
pub struct PhoneSwitches {
    /// Offer the number as the CRM's SMS provider (alone: true; or true/false; off unless set on add).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    sms_service: Option<bool>,
    /// Stream media from Meta on demand instead of keeping local copies (alone: true; or true/false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    file_proxy: Option<bool>,
    /// Asterisk target for calls: udp|tcp|tls:host:port ('' removes it on update).
    #[arg(long)]
    asterisk_target: Option<String>,
    /// Meta's throughput for the number, messages per second (1-1000; 80 unless set on add).
    #[arg(long)]
    throughput_mps: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum PhoneCmd {
    /// Register a phone number.
    Add {
        /// International number, e.g. +5511930001234.
        #[arg(long)]
        number: String,
        /// Meta's phone number id (digits).
        #[arg(long)]
        phone_number_id: String,
        /// wabridge id of the WABA.
        #[arg(long)]
        waba: i64,
        /// wabridge id of the CRM portal to bind.
        #[arg(long)]
        portal: Option<i64>,
        #[command(flatten)]
        switches: PhoneSwitches,
    },
    /// List phones (archived ones only with --archived).
    List {
        /// Include archived phones.
        #[arg(long)]
        archived: bool,
    },
    /// Show one phone.
    Show {
        /// wabridge id of the phone.
        id: i64,
    },
    /// Change a phone.
    Update {
        /// wabridge id of the phone.
        id: i64,
        /// Move it under this WABA (wabridge id).
        #[arg(long)]
        waba: Option<i64>,
        /// Bind to this portal.
        #[arg(long, conflicts_with = "unbind_portal")]
        portal: Option<i64>,
        /// Unbind the portal.
        #[arg(long)]
        unbind_portal: bool,
        #[command(flatten)]
        switches: PhoneSwitches,
    },
    /// Remove a phone that has no history (one with messages, sends or calls is archived instead).
    Remove {
        /// wabridge id of the phone.
        id: i64,
    },
    /// Archive a phone: unbind it from its portal, switch off its SMS service, keep its history.
    Archive {
        /// wabridge id of the phone.
        id: i64,
    },
    /// Bring an archived phone back (still unbound: bind it with 'phone update ID --portal P').
    Restore {
        /// wabridge id of the phone.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PortalCmd {
    /// List portals.
    List,
    /// Show one portal.
    Show {
        /// wabridge id of the portal.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create a key (printed once; only its hash is stored).
    Create {
        /// Who uses the key (tenant, integration).
        #[arg(long)]
        name: String,
        /// Limit the key to this WABA (wabridge id).
        #[arg(long)]
        waba: Option<i64>,
        /// Limit the key to this phone (wabridge id or E.164 number); repeat for more.
        #[arg(long = "phone")]
        phones: Vec<String>,
    },
    /// List keys (without the keys themselves).
    List,
    /// Revoke a key.
    Revoke {
        /// wabridge id of the key (see 'api-key list').
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCmd {
    /// List a WABA's synced templates; variants whose parameters disagree are flagged.
    List {
        /// wabridge id of the WABA.
        #[arg(long)]
        waba: i64,
    },
    /// Queue a sync of a WABA's templates from Meta (run by the service's workers).
    Sync {
        /// wabridge id of the WABA.
        #[arg(long)]
        waba: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum SendsCmd {
    /// The latest sends, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One send, with its request, state, status and error.
    Show {
        /// wabridge id of the send.
        id: i64,
    },
}

impl Cli {
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let listen = match &self.command {
            Command::Serve { listen } => listen.clone(),
            _ => None,
        };
        let flags = FlagOverrides {
            database_url: self.database_url.clone(),
            listen,
            log_format: self.log_format,
            data_dir: self.data_dir.clone(),
        };
        Config::load(self.config.as_deref(), &flags)
    }
}

fn secret_arg(v: Option<String>) -> anyhow::Result<Option<String>> {
    match v.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(Some(s.trim().to_string()))
        }
        _ => Ok(v),
    }
}

fn app_input(domain: Option<String>, app_secret: Option<String>, options: AppOptions) -> anyhow::Result<AppInput> {
    Ok(AppInput {
        meta_app_id: None,
        name: options.name,
        domain,
        app_secret: secret_arg(app_secret)?,
        access_token: secret_arg(options.access_token)?,
        keep_raw_events: options.keep_raw_events,
        verify_signatures: options.verify_signatures,
        rotate_verify_token: None,
    })
}

const APP_COLUMNS: &[(&str, &str)] =
    &[("ID", "id"), ("META APP ID", "meta_app_id"), ("DOMAIN", "domain"), ("NAME", "name")];
const WABA_COLUMNS: &[(&str, &str)] = &[("ID", "id"), ("WABA ID", "waba_id"), ("APP", "app"), ("NAME", "name")];
const PHONE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NUMBER", "number"),
    ("PHONE NUMBER ID", "phone_number_id"),
    ("WABA", "waba"),
    ("PORTAL", "portal"),
    ("LINE", "connector.status"),
    ("SMS", "sms_service"),
    ("CALLING", "calling.status"),
    ("ARCHIVED", "archived_at"),
];
const PORTAL_COLUMNS: &[(&str, &str)] =
    &[("ID", "id"), ("MEMBER ID", "member_id"), ("DOMAIN", "domain"), ("ACTIVE", "active")];
const API_KEY_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PREFIX", "prefix"),
    ("WABA", "waba"),
    ("PHONES", "phones"),
    ("REVOKED", "revoked"),
    ("NAME", "name"),
];
const TEMPLATE_COLUMNS: &[(&str, &str)] =
    &[("NAME", "name"), ("LANGUAGE", "language"), ("STATUS", "status"), ("PROBLEM", "variant_problem")];
const SEND_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PHONE", "phone_id"),
    ("ORIGIN", "origin"),
    ("STATE", "state"),
    ("STATUS", "status"),
    ("ERROR", "error_text"),
];

/// Runs a registry command against the configured database, which must exist already.
pub async fn run_registry(command: Command, config: &Config, out: Out) -> anyhow::Result<()> {
    let store = Store::connect_with(config, Open::Existing).await?;
    store.migrate().await?;
    let result = match command {
        Command::Calling(cmd) => calling_command(cmd, &store, config, out).await,
        Command::Health(args) => health::run(args, &store, config, out).await,
        Command::AsteriskConfig { edge_host, asterisk_port, with_secrets } => {
            asterisk_config(&store, config, edge_host, asterisk_port, with_secrets).await
        }
        Command::Messages(cmd) => crate::cli_events::messages(cmd, &store, out.json).await,
        Command::Contacts(cmd) => crate::cli_events::contacts(cmd, &store, out.json).await,
        Command::Conversations(cmd) => crate::cli_events::conversations(cmd, &store, out.json).await,
        Command::Events(cmd) => crate::cli_events::events(cmd, &store, config, out.json).await,
        command => registry_command(command, &store, out).await,
    };
    store.close().await;
    result
}

async fn registry_command(command: Command, store: &Store, out: Out) -> anyhow::Result<()> {
    match command {
        Command::AdminToken(AdminTokenCmd::Rotate) => {
            let token = crate::admin_token::rotate(store).await?;
            out.done(&crate::admin_token::announce(&token), json!({"admin_token": token}))?;
        }
        Command::App(cmd) => match cmd {
            AppCmd::Add { meta_app_id, domain, app_secret, options } => {
                let mut input = app_input(Some(domain), Some(app_secret), options)?;
                input.meta_app_id = Some(meta_app_id);
                let view = AppView::revealing_verify_token(&registry::create_app(store, &input).await?);
                if out.json {
                    return out.record(&view);
                }
                println!("App {} registered (wabridge id {}).", view.meta_app_id, view.id);
                println!("In Meta's dashboard (WhatsApp > Configuration > Webhook) enter:");
                println!("  Callback URL:  {}", view.webhook_urls.by_app_id);
                println!(
                    "                 (or {} when this app is the only one on the host)",
                    view.webhook_urls.by_domain
                );
                println!("  Verify token:  {}", view.verify_token);
                for w in &view.warnings {
                    println!("WARNING: {w}");
                }
            }
            AppCmd::List => {
                let apps = store.list_apps().await?;
                out.table(&apps.iter().map(AppView::from).collect::<Vec<_>>(), APP_COLUMNS)?
            }
            AppCmd::Show { id, reveal_verify_token } => {
                let app = registry::get_app(store, id).await?;
                out.record(&if reveal_verify_token {
                    AppView::revealing_verify_token(&app)
                } else {
                    AppView::from(&app)
                })?
            }
            AppCmd::Update { id, domain, app_secret, options, rotate_verify_token } => {
                let mut input = app_input(domain, app_secret, options)?;
                input.rotate_verify_token = Some(rotate_verify_token);
                let app = registry::update_app(store, id, &input).await?;
                out.record(&if rotate_verify_token {
                    AppView::revealing_verify_token(&app)
                } else {
                    AppView::from(&app)
                })?
            }
            AppCmd::Remove { id } => {
                registry::delete_app(store, id).await?;
                out.done(&format!("App {id} removed."), json!({"removed": "app", "id": id}))?;
            }
        },
        Command::Waba(cmd) => match cmd {
            WabaCmd::Add { waba_id, app, name, access_token } => {
                let input =
                    WabaInput { waba_id: Some(waba_id), app: Some(app), name, access_token: secret_arg(access_token)? };
                out.record(&WabaView::from(&registry::create_waba(store, &input).await?))?
            }
            WabaCmd::List => {
                let wabas = store.list_wabas().await?;
                out.table(&wabas.iter().map(WabaView::from).collect::<Vec<_>>(), WABA_COLUMNS)?
            }
            WabaCmd::Show { id } => out.record(&WabaView::from(&registry::get_waba(store, id).await?))?,
            WabaCmd::Update { id, app, name, access_token } => {
                let input = WabaInput { waba_id: None, app, name, access_token: secret_arg(access_token)? };
                out.record(&WabaView::from(&registry::update_waba(store, id, &input).await?))?
            }
            WabaCmd::Remove { id } => {
                registry::delete_waba(store, id).await?;
                out.done(&format!("WABA {id} removed."), json!({"removed": "waba", "id": id}))?;
            }
        },
        Command::Phone(cmd) => match cmd {
            PhoneCmd::Add { number, phone_number_id, waba, portal, switches } => {
                let input = PhoneInput {
                    number: Some(number),
                    phone_number_id: Some(phone_number_id),
                    waba: Some(waba),
                    portal: portal.map(Some),
                    sms_service: Some(switches.sms_service.unwrap_or(false)),
                    file_proxy: Some(switches.file_proxy.unwrap_or(false)),
                    asterisk_target: switches.asterisk_target.map(Some),
                    throughput_mps: switches.throughput_mps,
                };
                out.record(&PhoneView::from(&registry::create_phone(store, &input).await?))?
            }
            PhoneCmd::List { archived } => {
                let phones = store.list_phones().await?;
                let views: Vec<_> =
                    phones.iter().filter(|p| archived || p.archived_at.is_none()).map(PhoneView::from).collect();
                out.table(&views, PHONE_COLUMNS)?
            }
            PhoneCmd::Show { id } => out.record(&PhoneView::from(&registry::get_phone(store, id).await?))?,
            PhoneCmd::Update { id, waba, portal, unbind_portal, switches } => {
                let input = PhoneInput {
                    number: None,
                    phone_number_id: None,
                    waba,
                    portal: if unbind_portal { Some(None) } else { portal.map(Some) },
                    sms_service: switches.sms_service,
                    file_proxy: switches.file_proxy,
                    asterisk_target: switches.asterisk_target.map(|t| (!t.is_empty()).then_some(t)),
                    throughput_mps: switches.throughput_mps,
                };
                out.record(&PhoneView::from(&registry::update_phone(store, id, &input).await?))?
            }
            PhoneCmd::Remove { id } => {
                registry::delete_phone(store, id).await?;
                out.done(&format!("Phone {id} removed."), json!({"removed": "phone", "id": id}))?;
            }
            PhoneCmd::Archive { id } => {
                let view = PhoneView::from(&registry::archive_phone(store, id).await?);
                if out.json {
                    return out.record(&view);
                }
                println!("Phone {id} ({}) archived: unbound, no SMS service, its history kept.", view.number);
                println!("'wabridge phone list --archived' shows it; 'wabridge phone restore {id}' brings it back.");
            }
            PhoneCmd::Restore { id } => {
                let view = PhoneView::from(&registry::restore_phone(store, id).await?);
                if out.json {
                    return out.record(&view);
                }
                println!(
                    "Phone {id} ({}) restored; bind it with 'wabridge phone update {id} --portal P'.",
                    view.number
                );
            }
        },
        Command::Portal(cmd) => match cmd {
            PortalCmd::List => {
                let portals = store.list_portals().await?;
                out.table(&portals.iter().map(PortalView::from).collect::<Vec<_>>(), PORTAL_COLUMNS)?
            }
            PortalCmd::Show { id } => out.record(&PortalView::from(&registry::get_portal(store, id).await?))?,
        },
        Command::ApiKey(cmd) => match cmd {
            ApiKeyCmd::Create { name, waba, phones } => {
                if let Some(w) = waba {
                    registry::get_waba(store, w).await?;
                }
                let refs: Vec<_> = phones.iter().map(|p| crate::apikeys::PhoneRef::parse(p)).collect();
                let phones = crate::apikeys::resolve_phones(store, waba, &refs)
                    .await?
                    .map_err(|(field, why)| anyhow::anyhow!("--phone ({field}): {why}"))?;
                let k = crate::apikeys::create(store, name.trim(), waba, &phones).await?;
                out.record(&k)?;
                eprintln!("Keep the key now: it is not shown again.");
            }
            ApiKeyCmd::List => out.table(&crate::apikeys::list(store).await?, API_KEY_COLUMNS)?,
            ApiKeyCmd::Revoke { id } => {
                if !crate::apikeys::revoke(store, id).await? {
                    anyhow::bail!("no active API key with id {id}");
                }
                out.done(&format!("API key {id} revoked."), json!({"revoked": "api_key", "id": id}))?;
            }
        },
        Command::Templates(cmd) => match cmd {
            TemplatesCmd::List { waba } => {
                registry::get_waba(store, waba).await?;
                out.table(&crate::templates::list_views(store, waba).await?, TEMPLATE_COLUMNS)?
            }
            TemplatesCmd::Sync { waba } => {
                registry::get_waba(store, waba).await?;
                crate::templates::request_sync(store, waba).await?;
                out.done(
                    &format!("Template sync of WABA {waba} queued; the service's workers run it."),
                    json!({"queued": "templates.sync", "waba": waba}),
                )?;
            }
        },
        Command::Sends(cmd) => match cmd {
            SendsCmd::List { limit } => {
                out.table(&crate::outbound::list(store, None, limit.clamp(1, 1000)).await?, SEND_COLUMNS)?
            }
            SendsCmd::Show { id } => match crate::outbound::get(store, id).await? {
                Some(o) => out.record(&o)?,
                None => anyhow::bail!("no send with id {id}"),
            },
        },
        Command::Serve { .. }
        | Command::Migrate
        | Command::Healthcheck { .. }
        | Command::Demo { .. }
        | Command::Messages(_)
        | Command::Contacts(_)
        | Command::Conversations(_)
        | Command::Events(_)
        | Command::Calling(_)
        | Command::Health(_)
        | Command::Certs(_)
        | Command::AsteriskConfig { .. } => unreachable!("handled by the caller"),
    }
    Ok(())
}

/// Why `host` cannot be a certificate's host name (a URL, a port, a path), if it cannot.
fn check_cert_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if let Ok(u) = url::Url::parse(host) {
        if let Some(h) = u.host_str().filter(|_| host.contains("://")) {
            return Err(format!("--host takes a host name, not a URL: use --host {h}"));
        }
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("--host takes a host name such as sip.example.com (no scheme, port or path), got {host:?}"))
    }
}

/// `wabridge certs dev`: needs no database.
pub fn certs_command(cmd: CertsCmd, out: Out) -> anyhow::Result<()> {
    match cmd {
        CertsCmd::Dev { host, dir, force } => {
            check_cert_host(&host).map_err(anyhow::Error::msg)?;
            if !force {
                for f in ["sip-cert.pem", "sip-key.pem"] {
                    let path = dir.join(f);
                    if path.exists() {
                        anyhow::bail!("{} exists already; pass --force to replace the pair", path.display());
                    }
                }
            }
            let (cert, key) = crate::edge::tls::write_dev_pair(&host, &dir)?;
            if out.json {
                return out.record(&json!({"host": host, "certificate": cert, "key": key}));
            }
            println!("Wrote a self-signed certificate for {host}:");
            println!("  certificate: {}", cert.display());
            println!("  key:         {} (mode 0600)", key.display());
            println!("For local use only: Meta accepts only certificates from public CAs.");
        }
    }
    Ok(())
}

/// `wabridge demo`: the demo is its own program (`crates/demo`), so that the product never carries the
/// emulators; this runs it when it was built or installed beside `wabridge`.
pub fn demo(args: Vec<String>) -> anyhow::Result<()> {
    let beside = std::env::current_exe()?.with_file_name(format!("wabridge-demo{}", std::env::consts::EXE_SUFFIX));
    if !beside.exists() {
        anyhow::bail!(
            "the demo is a separate program, not found at {}; from a clone run: cargo run -p wabridge-demo",
            beside.display()
        );
    }
    let status = std::process::Command::new(&beside).args(args).status()?;
    if !status.success() {
        anyhow::bail!("wabridge-demo stopped: {status}");
    }
    Ok(())
}

/// The URL `wabridge healthcheck` asks by default: /healthz on the listen address, over loopback when the
/// service listens on all interfaces.
pub fn health_url(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr =
                if a.is_ipv6() { std::net::Ipv6Addr::LOCALHOST.into() } else { std::net::Ipv4Addr::LOCALHOST.into() };
            format!("http://{}/healthz", std::net::SocketAddr::new(ip, a.port()))
        }
        _ => format!("http://{listen}/healthz"),
    }
}

/// `wabridge healthcheck`: GET /healthz of the running service, 3 s at most.
pub async fn healthcheck(url: Option<String>, config: &Config) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| health_url(&config.listen));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
    let answer = client.get(&url).send().await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    if !answer.status().is_success() {
        anyhow::bail!("{url} answered {}", answer.status());
    }
    println!("ok ({url})");
    Ok(())
}
async fn asterisk_config(
    store: &Store,
    config: &Config,
    edge_host: Option<String>,
    asterisk_port: u16,
    with_secrets: bool,
) -> anyhow::Result<()> {
    use crate::edge::asterisk::{render, AsteriskPhone, AsteriskSetup};
    let facing = config.sip_pbx_facing.clone().unwrap_or_else(|| config.sip_pbx_udp_listen.clone());
    let (host, port) = match facing.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse::<u16>().unwrap_or(5070)),
        None => (facing.clone(), 5070),
    };
    let edge_host = edge_host.unwrap_or(host);
    if edge_host == "0.0.0.0" || edge_host.is_empty() {
        anyhow::bail!("the edge listens on all interfaces; say which address Asterisk reaches it on with --edge-host");
    }
    let transport = if config.sip_pbx_udp_listen.trim().is_empty() { "tcp" } else { "udp" };
    let all = store.list_phones().await?;
    for p in all.iter().filter(|p| p.calling_enabled && !p.calling_active()) {
        eprintln!(
            "note: phone {} is left out: calling was requested but Meta has not enabled it{}",
            p.id,
            p.calling_last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    let phones = all
        .into_iter()
        .filter(|p| p.calling_active() && p.archived_at.is_none())
        .map(|p| AsteriskPhone {
            number: p.number.clone(),
            sip_password: p.sip_password.clone().filter(|_| with_secrets),
        })
        .collect::<Vec<_>>();
    if phones.is_empty() {
        anyhow::bail!("no phone has calling enabled at Meta; run 'wabridge calling enable --phone ID' first");
    }
    let sip_host = config.sip_public_host.split(':').next().unwrap_or_default().to_string();
    let (pjsip, extensions) = render(&AsteriskSetup {
        edge_host,
        edge_port: port,
        transport: transport.into(),
        sip_host,
        asterisk_port,
        phones,
    });
    println!("{pjsip}\n{extensions}");
    Ok(())
}

async fn calling_command(cmd: CallingCmd, store: &Store, config: &Config, out: Out) -> anyhow::Result<()> {
    use crate::calling::{service, CallingInput};
    let graph = crate::meta::graph::Client::from_config(config);
    match cmd {
        CallingCmd::Enable { phone, sip_host, sip_port, srtp, call_icon_visibility, callback_permission, digest } => {
            let input = CallingInput {
                enabled: true,
                sip_host,
                sip_port,
                srtp_key_exchange: srtp,
                call_icon_visibility,
                callback_permission,
                digest,
            };
            let p = service::apply(store, &graph, phone, &input).await?;
            out.record(&crate::registry::CallingView::from(&p))?;
            if let Some(e) = &p.calling_last_error {
                anyhow::bail!("calling enabled, but: {e}");
            }
        }
        CallingCmd::Disable { phone } => {
            let input = CallingInput { enabled: false, ..Default::default() };
            let p = service::apply(store, &graph, phone, &input).await?;
            out.record(&crate::registry::CallingView::from(&p))?;
        }
        CallingCmd::Status { phone } => {
            let status = service::status(store, &graph, phone).await?;
            out.record(&status)?;
            if let Some(e) = &status.meta_error {
                let code = e.code.map(|c| format!(" with error {c}")).unwrap_or_default();
                let why = e.explanation.as_deref().map(|x| format!(" — {x}")).unwrap_or_default();
                anyhow::bail!("could not read Meta's settings{code}: {}{why}", e.message);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and every argument (flags and positional ids) has a description in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn certificate_hosts() {
        assert!(check_cert_host("sip.example.com").is_ok());
        assert!(check_cert_host("127.0.0.1").is_ok());
        assert!(check_cert_host("::1").is_ok());
        assert_eq!(
            check_cert_host("https://sip.example.com/x").unwrap_err(),
            "--host takes a host name, not a URL: use --host sip.example.com"
        );
        for bad in ["sip.example.com:5061", "sip example", "", "-x.example.com", "a..b"] {
            assert!(check_cert_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_health_url_follows_the_listen_address() {
        assert_eq!(health_url("0.0.0.0:8080"), "http://127.0.0.1:8080/healthz");
        assert_eq!(health_url("[::]:8080"), "http://[::1]:8080/healthz");
        assert_eq!(health_url("127.0.0.1:9000"), "http://127.0.0.1:9000/healthz");
    }
}
