//! `quip-loadtest`: drives a Quip broker with many real QUIC clients and reports
//! throughput and latency percentiles. Targets loopback brokers only.
//!
//! ```text
//! quip-loadtest --spawn --durability fsync pairs --pairs 50 --window 32 --duration 10
//! quip-loadtest --addr 127.0.0.1:4433 --cert data/tls/cert.pem resume --missed 10000
//! ```

mod report;
mod scenario;
mod target;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "quip-loadtest",
    version,
    about = "Load tests for the Quip broker (loopback only)"
)]
struct Cli {
    #[command(flatten)]
    target: target::TargetArgs,
    /// Write the result as JSON to this file (it is always printed too).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N users in 1:1 pairs, each sender keeping a window of sends in flight.
    Pairs(scenario::pairs::PairsArgs),
    /// A user misses X messages, reconnects, and we time the catch-up.
    Resume(scenario::resume::ResumeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let target = target::Target::resolve(&cli.target).await?;
    let result = match &cli.scenario {
        Scenario::Pairs(args) => scenario::pairs::run(&target, args).await?,
        Scenario::Resume(args) => scenario::resume::run(&target, args).await?,
    };
    let result = report::with_broker_info(result, &target);
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    if let Some(path) = &cli.json {
        std::fs::write(path, &text)?;
    }
    target.stop();
    Ok(())
}
