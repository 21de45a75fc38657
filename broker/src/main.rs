//! `quip-broker`: parse the configuration, start the broker, stop on SIGINT/SIGTERM.

use clap::Parser;
use quip_broker::config::{Cli, Command, Config};
use quip_broker::{Broker, shutdown};
use tracing_subscriber::EnvFilter;

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
        Some(Command::Serve) | None => {
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
