//! `quip-loadtest`: drives a Quip broker with many real clients, QUIC (the SDK) and
//! WebSocket (the browser JSON protocol), and reports throughput, ACK and end-to-end
//! latency percentiles (HDR histograms), and the broker's memory. Targets loopback
//! brokers only.
//!
//! ```text
//! # 50 QUIC pairs, closed loop (32 sends in flight each), on a broker it starts:
//! quip-loadtest --spawn --durability fsync pairs --pairs 50 --window 32 --duration 10
//! # Open loop: 200 msgs/s per sender, latency from the scheduled send time:
//! quip-loadtest --spawn pairs --pairs 50 --rate 200 --transport ws
//! # One group of 200 online members, 2 of them sending; the fan-out rate:
//! quip-loadtest --spawn --durability os group --members 200 --senders 2 --window 32
//! # QUIC and WebSocket clients together (pairs across transports, plus a group):
//! quip-loadtest --spawn mixed --pairs 10 --members 50 --senders 2
//! # A soak: 30 minutes of it with one receiver reconnecting every 10 s (delivery
//! # accounted per message: `delivery.missing`, `delivery.duplicates`; memory trend
//! # and errors per minute in `soak`):
//! quip-loadtest --spawn --durability fsync mixed --pairs 20 --members 40 --rate 20 \
//!     --duration 1800 --warmup 60 --churn-every 10 --json soak.json --html soak.html
//! # A cluster of 2 nodes on a Redis it starts; each pair's users on different nodes:
//! quip-loadtest --spawn-cluster 2 --durability os pairs --pairs 10 --window 32 --duration 10
//! # A running broker (its RSS sampled through --broker-pid), with an HTML report:
//! quip-loadtest --addr 127.0.0.1:4433 --cert data/tls/cert.pem --http-addr 127.0.0.1:8080 \
//!     --broker-pid "$(pidof quip-broker)" --json out.json --html out.html pairs
//! # Catch-up after missing 10,000 messages:
//! quip-loadtest --addr 127.0.0.1:4433 --cert data/tls/cert.pem resume --missed 10000
//! # Hold 100,000 idle QUIC connections (tokens minted with the spawned broker's JWT
//! # secret) and report the broker's memory per connection; WebSockets likewise:
//! quip-loadtest --spawn --durability os idle --connections 100000 --hold 30
//! quip-loadtest --spawn --durability os idle --transport ws --connections 9000
//! # Fill a store with 10 M messages once, then time 5 broker starts on it:
//! quip-loadtest startup --messages 10000000 --rounds 5 --data-dir /var/tmp/quip-startup
//! ```
//!
//! Message scenarios take `--window`, `--rate`, `--size`, `--duration` and
//! `--warmup`. The result (stdout, and `--json FILE`) has the scenario's figures, a
//! one-second `timeline` (rates, p50/p99 of ACK and end-to-end latency, broker RSS)
//! and the `errors` seen; `--html FILE` renders it with SVG plots. A progress bar
//! shows the phase, msgs/s and p99 on stderr when it is a terminal (`--quiet` hides
//! it). `--durability` is passed to a spawned broker (every node of a spawned
//! cluster) and otherwise only recorded. Spawned brokers and Redis are stopped when
//! the run ends, fails or is interrupted (Ctrl-C, SIGTERM).

mod chart;
mod churn;
mod cluster;
mod conn;
mod delivery;
mod endpoints;
mod html;
mod limits;
mod load;
mod metrics;
mod mint;
mod payload;
mod progress;
mod report;
mod run;
mod sampler;
mod scenario;
mod sender;
mod target;
mod temp_dir;
mod users;
mod ws_client;

use std::path::PathBuf;

use anyhow::{Context, bail};
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
    /// Write a self-contained HTML report with SVG plots to this file.
    #[arg(long, global = true)]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// UDP sockets the QUIC clients share (one per client would measure the load
    /// generator's socket handling rather than the broker).
    #[arg(long, global = true, default_value_t = 4)]
    endpoints: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N users in 1:1 pairs, each sender keeping a window of sends in flight or
    /// sending at a fixed rate.
    Pairs(scenario::pairs::PairsArgs),
    /// One group of M online members, K of them sending: the fan-out rate.
    Group(scenario::group::GroupArgs),
    /// Pairs and a group at once, half the clients on QUIC and half on WebSocket.
    Mixed(scenario::mixed::MixedArgs),
    /// A user misses X messages, reconnects, and we time the catch-up.
    Resume(scenario::resume::ResumeArgs),
    /// Hold C idle connections (QUIC or WebSocket) and measure the broker's memory.
    Idle(scenario::idle::IdleArgs),
    /// Fill a store with millions of messages (once), then time broker starts on it
    /// until the first QUIC handshake. Starts its own brokers (ignores --spawn,
    /// --spawn-cluster and --addr).
    Startup(scenario::startup::StartupArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        // stdout is for the JSON result only.
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Before the broker is spawned: it inherits the limit.
    limits::raise_nofile();
    // Interrupted, the run's future is dropped, and with it the target: spawned
    // brokers and Redis are stopped and their temp dirs removed (they are not in our
    // process group, so Ctrl-C does not reach them directly).
    tokio::select! {
        result = run_cli(&cli) => result,
        signal = interrupted() => bail!("interrupted by {signal}"),
    }
}

/// Waits for Ctrl-C or SIGTERM and names it; never returns if neither handler can be
/// installed.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    tokio::select! {
        Ok(()) = tokio::signal::ctrl_c() => "Ctrl-C",
        Some(()) = async { terminate.as_mut()?.recv().await } => "SIGTERM",
        else => std::future::pending().await,
    }
}

async fn run_cli(cli: &Cli) -> anyhow::Result<()> {
    if let Scenario::Startup(args) = &cli.scenario {
        let text = serde_json::to_string_pretty(&scenario::startup::run(args).await?)?;
        println!("{text}");
        if let Some(path) = &cli.json {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let target = target::Target::resolve(&cli.target).await?;
    let run = run::Run::new(target, progress::Progress::new(cli.quiet), cli.endpoints)?;
    let sampler =
        sampler::Sampler::start(run.metrics.clone(), run.target.pids(), run.progress.clone());
    let result = match &cli.scenario {
        Scenario::Pairs(args) => scenario::pairs::run(&run, args).await,
        Scenario::Group(args) => scenario::group::run(&run, args).await,
        Scenario::Mixed(args) => scenario::mixed::run(&run, args).await,
        Scenario::Resume(args) => scenario::resume::run(&run, args).await,
        Scenario::Idle(args) => scenario::idle::run(&run, args).await,
        Scenario::Startup(_) => unreachable!("handled before a target is resolved"),
    };
    let timeline = sampler.finish().await;
    run.progress.finish();
    let result = report::with_broker_info(result?, &run.target);
    let command: Vec<String> = std::env::args().collect();
    let result = report::with_run_info(result, &timeline, run.metrics.errors_json(), &command);
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    if let Some(path) = &cli.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.html {
        std::fs::write(path, html::render(&result, &command))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    run.target.stop();
    Ok(())
}
