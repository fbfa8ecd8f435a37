//! The `wabridge` command line: the service, migrations, and the registry for people on the server.
//! Registry commands work on the configured database directly and call the same code as the admin API.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, FlagOverrides, LogFormat};
use crate::registry::{self, AppInput, AppView, PhoneInput, PhoneView, PortalView, WabaInput, WabaView};
use crate::store::Store;

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
    /// Apply database migrations and exit.
    Migrate,
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
    /// Print the Asterisk configuration (pjsip.conf, extensions.conf) for the phones with calling enabled.
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

#[derive(Debug, Args)]
pub struct AppFields {
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Host name Meta posts webhooks to, e.g. wabridge.example.com.
    #[arg(long)]
    domain: Option<String>,
    /// App secret from Meta's dashboard; '-' reads it from standard input.
    #[arg(long)]
    app_secret: Option<String>,
    /// Default Graph API access token; '-' reads it from standard input.
    #[arg(long)]
    access_token: Option<String>,
    /// Keep raw webhook bodies longer, for debugging.
    #[arg(long)]
    keep_raw_events: Option<bool>,
    /// Check webhook signatures (default true; false only for local testing).
    #[arg(long)]
    verify_signatures: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register a Meta app; prints its verify token and webhook callback URLs.
    Add {
        /// Meta's app id (digits).
        #[arg(long)]
        meta_app_id: String,
        #[command(flatten)]
        fields: AppFields,
    },
    /// List apps.
    List,
    /// Show one app (its verify token masked).
    Show {
        id: i64,
        /// Show the verify token in full, to paste into Meta's dashboard.
        #[arg(long)]
        reveal_verify_token: bool,
    },
    /// Change an app.
    Update {
        id: i64,
        #[command(flatten)]
        fields: AppFields,
        /// Generate a new verify token.
        #[arg(long)]
        rotate_verify_token: bool,
    },
    /// Remove an app (refused while WABAs use it).
    Remove { id: i64 },
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
        #[arg(long)]
        name: Option<String>,
        /// Access token overriding the app's; '-' reads it from standard input.
        #[arg(long)]
        access_token: Option<String>,
    },
    /// List WABAs.
    List,
    /// Show one WABA.
    Show { id: i64 },
    /// Change a WABA.
    Update {
        id: i64,
        #[arg(long)]
        app: Option<i64>,
        #[arg(long)]
        name: Option<String>,
        /// New access token ('' clears it, '-' reads standard input).
        #[arg(long)]
        access_token: Option<String>,
    },
    /// Remove a WABA (refused while phones use it).
    Remove { id: i64 },
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
        /// Offer the number as the CRM's SMS provider.
        #[arg(long)]
        sms_service: bool,
        /// Stream media from Meta on demand instead of keeping local copies.
        #[arg(long)]
        file_proxy: bool,
        /// Asterisk target for calls: udp|tcp|tls:host:port.
        #[arg(long)]
        asterisk_target: Option<String>,
        /// Meta's throughput for the number, messages per second (default 80, up to 1000).
        #[arg(long)]
        throughput_mps: Option<i64>,
    },
    /// List phones.
    List,
    /// Show one phone.
    Show { id: i64 },
    /// Change a phone.
    Update {
        id: i64,
        #[arg(long)]
        waba: Option<i64>,
        /// Bind to this portal.
        #[arg(long, conflicts_with = "unbind_portal")]
        portal: Option<i64>,
        /// Unbind the portal.
        #[arg(long)]
        unbind_portal: bool,
        #[arg(long)]
        sms_service: Option<bool>,
        #[arg(long)]
        file_proxy: Option<bool>,
        #[arg(long)]
        asterisk_target: Option<String>,
        /// Meta's throughput for the number, messages per second (1-1000).
        #[arg(long)]
        throughput_mps: Option<i64>,
    },
    /// Remove a phone.
    Remove { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum PortalCmd {
    /// List portals.
    List,
    /// Show one portal.
    Show { id: i64 },
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
    },
    /// List keys (without the keys themselves).
    List,
    /// Revoke a key.
    Revoke { id: i64 },
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
    Show { id: i64 },
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

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn app_input(fields: AppFields) -> anyhow::Result<AppInput> {
    Ok(AppInput {
        meta_app_id: None,
        name: fields.name,
        domain: fields.domain,
        app_secret: secret_arg(fields.app_secret)?,
        access_token: secret_arg(fields.access_token)?,
        keep_raw_events: fields.keep_raw_events,
        verify_signatures: fields.verify_signatures,
        rotate_verify_token: None,
    })
}

/// Runs a registry command against the configured database.
pub async fn run_registry(command: Command, config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(config).await?;
    store.migrate().await?;
    let result = match command {
        Command::Calling(cmd) => calling_command(cmd, &store, config).await,
        Command::AsteriskConfig { edge_host, asterisk_port, with_secrets } => {
            asterisk_config(&store, config, edge_host, asterisk_port, with_secrets).await
        }
        Command::Messages(cmd) => crate::cli_events::messages(cmd, &store).await,
        Command::Contacts(cmd) => crate::cli_events::contacts(cmd, &store).await,
        Command::Conversations(cmd) => crate::cli_events::conversations(cmd, &store).await,
        Command::Events(cmd) => crate::cli_events::events(cmd, &store, config).await,
        command => registry_command(command, &store).await,
    };
    store.close().await;
    result
}

async fn registry_command(command: Command, store: &Store) -> anyhow::Result<()> {
    match command {
        Command::AdminToken(AdminTokenCmd::Rotate) => {
            let token = crate::admin_token::rotate(store).await?;
            println!("{}", crate::admin_token::announce(&token));
        }
        Command::App(cmd) => match cmd {
            AppCmd::Add { meta_app_id, fields } => {
                let mut input = app_input(fields)?;
                input.meta_app_id = Some(meta_app_id);
                let view = AppView::revealing_verify_token(&registry::create_app(store, &input).await?);
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
                println!("{:<6} {:<20} {:<32} NAME", "ID", "META APP ID", "DOMAIN");
                for a in store.list_apps().await? {
                    println!("{:<6} {:<20} {:<32} {}", a.id, a.meta_app_id, a.domain, a.name);
                }
            }
            AppCmd::Show { id, reveal_verify_token } => {
                let app = registry::get_app(store, id).await?;
                print_json(&if reveal_verify_token {
                    AppView::revealing_verify_token(&app)
                } else {
                    AppView::from(&app)
                })?
            }
            AppCmd::Update { id, fields, rotate_verify_token } => {
                let mut input = app_input(fields)?;
                input.rotate_verify_token = Some(rotate_verify_token);
                let app = registry::update_app(store, id, &input).await?;
                print_json(&if rotate_verify_token {
                    AppView::revealing_verify_token(&app)
                } else {
                    AppView::from(&app)
                })?
            }
            AppCmd::Remove { id } => {
                registry::delete_app(store, id).await?;
                println!("App {id} removed.");
            }
        },
        Command::Waba(cmd) => match cmd {
            WabaCmd::Add { waba_id, app, name, access_token } => {
                let input =
                    WabaInput { waba_id: Some(waba_id), app: Some(app), name, access_token: secret_arg(access_token)? };
                print_json(&WabaView::from(&registry::create_waba(store, &input).await?))?
            }
            WabaCmd::List => {
                println!("{:<6} {:<20} {:<6} NAME", "ID", "WABA ID", "APP");
                for w in store.list_wabas().await? {
                    println!("{:<6} {:<20} {:<6} {}", w.id, w.waba_id, w.app_id, w.name);
                }
            }
            WabaCmd::Show { id } => print_json(&WabaView::from(&registry::get_waba(store, id).await?))?,
            WabaCmd::Update { id, app, name, access_token } => {
                let input = WabaInput { waba_id: None, app, name, access_token: secret_arg(access_token)? };
                print_json(&WabaView::from(&registry::update_waba(store, id, &input).await?))?
            }
            WabaCmd::Remove { id } => {
                registry::delete_waba(store, id).await?;
                println!("WABA {id} removed.");
            }
        },
        Command::Phone(cmd) => match cmd {
            PhoneCmd::Add {
                number,
                phone_number_id,
                waba,
                portal,
                sms_service,
                file_proxy,
                asterisk_target,
                throughput_mps,
            } => {
                let input = PhoneInput {
                    number: Some(number),
                    phone_number_id: Some(phone_number_id),
                    waba: Some(waba),
                    portal: portal.map(Some),
                    sms_service: Some(sms_service),
                    file_proxy: Some(file_proxy),
                    asterisk_target: asterisk_target.map(Some),
                    throughput_mps,
                };
                print_json(&PhoneView::from(&registry::create_phone(store, &input).await?))?
            }
            PhoneCmd::List => {
                println!("{:<6} {:<18} {:<20} {:<6} {:<7} SMS", "ID", "NUMBER", "PHONE NUMBER ID", "WABA", "PORTAL");
                for p in store.list_phones().await? {
                    let portal = p.portal_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<6} {:<18} {:<20} {:<6} {:<7} {}",
                        p.id, p.number, p.phone_number_id, p.waba_id, portal, p.sms_service
                    );
                }
            }
            PhoneCmd::Show { id } => print_json(&PhoneView::from(&registry::get_phone(store, id).await?))?,
            PhoneCmd::Update {
                id,
                waba,
                portal,
                unbind_portal,
                sms_service,
                file_proxy,
                asterisk_target,
                throughput_mps,
            } => {
                let input = PhoneInput {
                    number: None,
                    phone_number_id: None,
                    waba,
                    portal: if unbind_portal { Some(None) } else { portal.map(Some) },
                    sms_service,
                    file_proxy,
                    asterisk_target: asterisk_target.map(|t| (!t.is_empty()).then_some(t)),
                    throughput_mps,
                };
                print_json(&PhoneView::from(&registry::update_phone(store, id, &input).await?))?
            }
            PhoneCmd::Remove { id } => {
                registry::delete_phone(store, id).await?;
                println!("Phone {id} removed.");
            }
        },
        Command::Portal(cmd) => match cmd {
            PortalCmd::List => {
                println!("{:<6} {:<34} {:<36} ACTIVE", "ID", "MEMBER ID", "DOMAIN");
                for p in store.list_portals().await? {
                    println!("{:<6} {:<34} {:<36} {}", p.id, p.member_id, p.domain, p.active);
                }
            }
            PortalCmd::Show { id } => print_json(&PortalView::from(&registry::get_portal(store, id).await?))?,
        },
        Command::ApiKey(cmd) => match cmd {
            ApiKeyCmd::Create { name, waba } => {
                if let Some(w) = waba {
                    registry::get_waba(store, w).await?;
                }
                let k = crate::apikeys::create(store, name.trim(), waba).await?;
                print_json(&k)?;
                eprintln!("Keep the key now: it is not shown again.");
            }
            ApiKeyCmd::List => {
                println!("{:<6} {:<10} {:<6} {:<8} NAME", "ID", "PREFIX", "WABA", "REVOKED");
                for k in crate::apikeys::list(store).await? {
                    let waba = k.waba.map(|w| w.to_string()).unwrap_or_else(|| "-".into());
                    println!("{:<6} {:<10} {:<6} {:<8} {}", k.id, k.prefix, waba, k.revoked, k.name);
                }
            }
            ApiKeyCmd::Revoke { id } => {
                if !crate::apikeys::revoke(store, id).await? {
                    anyhow::bail!("no active API key with id {id}");
                }
                println!("API key {id} revoked.");
            }
        },
        Command::Templates(cmd) => match cmd {
            TemplatesCmd::List { waba } => {
                registry::get_waba(store, waba).await?;
                println!("{:<32} {:<8} {:<10} PROBLEM", "NAME", "LANGUAGE", "STATUS");
                for t in crate::templates::list_views(store, waba).await? {
                    let problem = t.variant_problem.unwrap_or_default();
                    println!("{:<32} {:<8} {:<10} {}", t.name, t.language, t.status, problem);
                }
            }
            TemplatesCmd::Sync { waba } => {
                registry::get_waba(store, waba).await?;
                crate::templates::request_sync(store, waba).await?;
                println!("Template sync of WABA {waba} queued; the service's workers run it.");
            }
        },
        Command::Sends(cmd) => match cmd {
            SendsCmd::List { limit } => {
                println!("{:<8} {:<6} {:<6} {:<9} {:<10} ERROR", "ID", "PHONE", "ORIGIN", "STATE", "STATUS");
                for o in crate::outbound::list(store, None, limit.clamp(1, 1000)).await? {
                    let status = o.status.unwrap_or_else(|| "-".into());
                    let err = o.error_text.unwrap_or_default();
                    println!("{:<8} {:<6} {:<6} {:<9} {:<10} {}", o.id, o.phone_id, o.origin, o.state, status, err);
                }
            }
            SendsCmd::Show { id } => match crate::outbound::get(store, id).await? {
                Some(o) => print_json(&o)?,
                None => anyhow::bail!("no send with id {id}"),
            },
        },
        Command::Serve { .. }
        | Command::Migrate
        | Command::Messages(_)
        | Command::Contacts(_)
        | Command::Conversations(_)
        | Command::Events(_)
        | Command::Calling(_)
        | Command::Certs(_)
        | Command::AsteriskConfig { .. } => unreachable!("handled by the caller"),
    }
    Ok(())
}

/// `wabridge certs dev`: needs no database.
pub fn certs_command(cmd: CertsCmd) -> anyhow::Result<()> {
    match cmd {
        CertsCmd::Dev { host, dir } => {
            let (cert, key) = crate::edge::tls::write_dev_pair(&host, &dir)?;
            println!("Wrote a self-signed certificate for {host}:");
            println!("  certificate: {}", cert.display());
            println!("  key:         {} (mode 0600)", key.display());
            println!("For local use only: Meta accepts only certificates from public CAs.");
        }
    }
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
    let phones = store
        .list_phones()
        .await?
        .into_iter()
        .filter(|p| p.calling_enabled)
        .map(|p| AsteriskPhone {
            number: p.number.clone(),
            sip_password: p.sip_password.clone().filter(|_| with_secrets),
        })
        .collect::<Vec<_>>();
    if phones.is_empty() {
        anyhow::bail!("no phone has calling enabled; run 'wabridge calling enable' first");
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

async fn calling_command(cmd: CallingCmd, store: &Store, config: &Config) -> anyhow::Result<()> {
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
            print_json(&crate::registry::CallingView::from(&p))?;
            if let Some(e) = &p.calling_last_error {
                anyhow::bail!("calling enabled, but: {e}");
            }
        }
        CallingCmd::Disable { phone } => {
            let input = CallingInput { enabled: false, ..Default::default() };
            let p = service::apply(store, &graph, phone, &input).await?;
            print_json(&crate::registry::CallingView::from(&p))?;
        }
        CallingCmd::Status { phone } => {
            let status = service::status(store, &graph, phone).await?;
            print_json(&status)?;
            if let Some(e) = &status.meta_error {
                let code = e.code.map(|c| format!(" with error {c}")).unwrap_or_default();
                let why = e.explanation.as_deref().map(|x| format!(" — {x}")).unwrap_or_default();
                anyhow::bail!("could not read Meta's settings{code}: {}{why}", e.message);
            }
        }
    }
    Ok(())
}
