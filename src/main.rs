use std::process::ExitCode;

use clap::Parser;
use wabridge::cli::{run_registry, Cli, Command, Out};
use wabridge::{service, Service};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let serving = matches!(cli.command, Command::Serve { .. });
    if !serving && std::env::var_os("WABRIDGE_LOG").is_none() {
        // Commands print their own output; keep the log to warnings unless asked.
        config.log = "warn".into();
    }
    wabridge::telemetry::init(&config);
    let out = Out { json: cli.json };
    let result = match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => migrate(config, out).await,
        Command::Healthcheck { url } => wabridge::cli::healthcheck(url, &config).await,
        Command::Demo { args } => wabridge::cli::demo(args),
        Command::Certs(cmd) => wabridge::cli::certs_command(cmd, out),
        command => run_registry(command, &config, out).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: wabridge::Config) -> anyhow::Result<()> {
    let svc = Service::start(config).await?;
    if let Some(token) = &svc.new_admin_token {
        println!("{}", wabridge::admin_token::announce(token));
    }
    println!("wabridge listening on {}", svc.url());
    if let Some(edge) = &svc.edge {
        println!("SIP edge listening on {} (TLS)", edge.tls_addr);
    }
    #[cfg(unix)]
    {
        // SIGHUP reloads the SIP certificate (established connections are not touched) and resolves the
        // Asterisk targets again (the default sip_pbx_networks).
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            let stop = service::shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = hup.recv() => match svc.edge.as_ref() {
                        Some(edge) => {
                            match edge.reload_certificate() {
                                Ok(()) => tracing::info!("SIP certificate reloaded"),
                                Err(e) => tracing::error!(error = %e, "SIP certificate reload failed; keeping the old one"),
                            }
                            edge.reload_pbx_networks().await;
                        }
                        None => tracing::info!("SIGHUP: nothing to reload (SIP edge off)"),
                    },
                }
            }
            tracing::info!("shutting down: finishing in-flight requests");
            return svc.stop().await;
        }
    }
    service::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    svc.stop().await
}

async fn migrate(config: wabridge::Config, out: Out) -> anyhow::Result<()> {
    let store = wabridge::store::Store::connect(&config).await?;
    store.migrate().await?;
    store.close().await;
    let label = config.database_label();
    out.done(&format!("migrations applied ({label})"), serde_json::json!({"migrated": label}))
}
