//! `quip-broker`: parse the configuration, start the broker, stop on SIGINT/SIGTERM.

use clap::Parser;
use quip_broker::config::{Cli, Command, Config, LogFormat};
use quip_broker::{Broker, shutdown};
use tracing_subscriber::EnvFilter;

/// See the dependency's comment in Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Loaded before logging starts, since the format is part of it; a config error
    // is printed by `main`'s error return.
    let config = Config::load(&cli)?;
    init_logging(config.log_format);
    match cli.command {
        Some(Command::PrintConfig) => {
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Some(Command::Admin { action }) => quip_broker::admin_cli::run(&config, action).await,
        Some(Command::Serve) | None => {
            raise_open_file_limit(config.max_connections);
            let broker = Broker::start(config).await?;
            println!(
                "quip broker on quic://{} (certificate SHA-256 {})",
                broker.quic_addr(),
                hex::encode(broker.cert_fingerprint())
            );
            shutdown::os_signal().await;
            tracing::info!("shutting down");
            broker.shutdown().await;
            Ok(())
        }
    }
}

/// Logs to stdout, filtered by `QUIP_LOG` (or `RUST_LOG`), as text for people or as
/// one JSON object per line for log collectors.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("QUIP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        // Event fields at the top level next to timestamp, level, target and message;
        // the connection's span (address, user, device) as "span".
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Every WebSocket connection is a file descriptor, and distributions default to a
/// soft limit of 1,024 (or a few thousand): raise it to the hard limit, as NATS and
/// nginx operators otherwise do by hand. QUIC connections share one socket.
fn raise_open_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < max_connections as u64 => tracing::info!(
            limit,
            max_connections,
            "open file limit is below max_connections: raise the hard limit (ulimit -Hn) \
             to serve that many WebSocket connections"
        ),
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
}
