//! `quip-broker`: parse the configuration, start the broker, stop on SIGINT/SIGTERM.

use clap::Parser;
use quip_broker::config::{Cli, Command, Config};
use quip_broker::{Broker, shutdown};
use tracing_subscriber::EnvFilter;

/// See the dependency's comment in Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("QUIP_LOG")
                .or_else(|_| EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::load(&cli)?;
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
