//! `compare`: the same pairs and group workloads against Quip (QUIC, `fsync` and `os`
//! durability), nats-server (core, and JetStream with file storage) and mosquitto (MQTT
//! QoS 1), each started here as a child process on free loopback ports with a scratch
//! directory, one after the other, so one table shows what each system does on this
//! machine with the same clients, window, payload and duration.
//!
//! Every system gets one connection per publisher and per subscriber, a window of
//! unacknowledged messages per publisher, payloads of the same bytes (a send time stamp,
//! then padding), and the same warm-up and measured seconds. What "acknowledged" means
//! differs as the systems do; `semantics` below (printed under the table) says it per
//! system. See `bench/README.md` for the commands.

mod mqtt;
mod nats;
mod quip;
mod report;
mod server;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;
use serde_json::json;

use crate::report::{Latency, print_table, rate};
use crate::workload::{Outcome, Spec, Workload};

/// The systems `compare` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum System {
    /// quip-broker with `--durability fsync`: SendAck once on disk.
    QuipFsync,
    /// quip-broker with `--durability os`: SendAck once in the store's memory.
    QuipOs,
    /// nats-server, core NATS (no persistence).
    Nats,
    /// nats-server, JetStream file-storage stream, default sync settings.
    JetstreamFile,
    /// nats-server, JetStream file storage with `sync_interval: always`.
    JetstreamFileSync,
    /// mosquitto, MQTT 3.1.1 QoS 1.
    Mosquitto,
}

impl System {
    const ALL: [System; 6] = [
        System::QuipFsync,
        System::QuipOs,
        System::Nats,
        System::JetstreamFile,
        System::JetstreamFileSync,
        System::Mosquitto,
    ];

    fn name(self) -> &'static str {
        match self {
            System::QuipFsync => "quip-fsync",
            System::QuipOs => "quip-os",
            System::Nats => "nats",
            System::JetstreamFile => "jetstream-file",
            System::JetstreamFileSync => "jetstream-file-sync",
            System::Mosquitto => "mosquitto",
        }
    }

    fn is_quip(self) -> bool {
        matches!(self, System::QuipFsync | System::QuipOs)
    }

    /// The Quip setups this system is compared with like for like: those that make the
    /// same durability promise when they acknowledge. When nats-server cannot fsync each
    /// message, JetStream's defaults stand in for the fsync comparison too.
    fn like_for_like(self, sync_unsupported: bool) -> Vec<System> {
        match self {
            System::QuipFsync | System::QuipOs => vec![],
            System::JetstreamFileSync => vec![System::QuipFsync],
            System::JetstreamFile if sync_unsupported => vec![System::QuipFsync, System::QuipOs],
            System::Nats | System::JetstreamFile | System::Mosquitto => vec![System::QuipOs],
        }
    }

    /// What an acknowledgement means for this system, for the notes under the table.
    fn semantics(self, mosquitto_nodelay: bool) -> String {
        match self {
            System::QuipFsync => {
                "ack = SendAck once the message is on disk (fsync, group commit)".to_owned()
            }
            System::QuipOs => {
                "ack = SendAck once the message is in the store's memory (sled; no fsync per message)"
                    .to_owned()
            }
            System::Nats => "no persistence; ack = a flush (PING/PONG round trip) after each \
                             window of publishes; plain subscriptions"
                .to_owned(),
            System::JetstreamFile => "ack = PubAck from a file-storage stream; JetStream's \
                                      default fsyncs every 2 min, not per message; \
                                      subscribers are ordered push consumers"
                .to_owned(),
            System::JetstreamFileSync => {
                "ack = PubAck with `sync_interval: always` (fsync per write); ordered push \
                 consumers"
                    .to_owned()
            }
            System::Mosquitto => format!(
                "ack = PUBACK (QoS 1, subscribers at QoS 1); Debian's default config: \
                 persistence on, saved every 30 min, not per message; TCP_NODELAY {} on \
                 the broker side",
                if mosquitto_nodelay {
                    "on (--mosquitto-nodelay)"
                } else {
                    "off (its default)"
                }
            ),
        }
    }
}

/// Runs the same IM-style workloads against Quip, nats-server and mosquitto, all on
/// loopback, and prints one table (plus `--json`).
#[derive(Debug, Parser)]
#[command(name = "compare")]
struct Args {
    /// Publisher/subscriber pairs (pairs workload).
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Unacknowledged messages in flight per publisher.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Payload bytes (at least the 20-byte time stamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds per system and workload.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the measured ones.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Subscribers of the group workload's one topic/subject/group.
    #[arg(long, default_value_t = 50)]
    members: usize,
    /// Publishers of the group workload.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Systems to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = System::ALL)]
    systems: Vec<System>,
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::Pairs, Workload::Group])]
    workloads: Vec<Workload>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Client UDP sockets (quinn endpoints) the Quip clients share, round-robin.
    #[arg(long, default_value_t = 4)]
    quip_endpoints: usize,
    /// Extra argument for quip-broker (repeatable), e.g. `--quip-arg=--store-cache-mib=64`.
    #[arg(long = "quip-arg", allow_hyphen_values = true)]
    quip_args: Vec<String>,
    /// Turn on mosquitto's `set_tcp_nodelay` (off in its default configuration).
    #[arg(long)]
    mosquitto_nodelay: bool,
    /// Where the servers' scratch directories go (must be on a real disk for fsync to
    /// mean anything). [default: the system temp dir]
    #[arg(long)]
    data_root: Option<PathBuf>,
}

/// How a system's run went.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
enum Status {
    Ran(Outcome),
    Skipped { reason: String },
    Failed { error: String },
}

#[derive(Debug, Serialize)]
struct Row {
    workload: Workload,
    system: System,
    #[serde(flatten)]
    status: Status,
    msgs_per_sec: Option<f64>,
    ratio_to_quip_fsync: Option<f64>,
    ratio_to_quip_os: Option<f64>,
    like_for_like: Vec<System>,
    server_rss_bytes: Option<u64>,
    note: String,
}

/// The servers' binaries and what was learnt about them.
#[derive(Debug, Default)]
struct Peers {
    nats: Option<PathBuf>,
    mosquitto: Option<PathBuf>,
    nats_sync: Option<nats::SyncSupport>,
    mosquitto_version: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.window == 0 || args.pairs == 0 || args.members == 0 || args.senders == 0 {
        bail!("--window, --pairs, --members and --senders must be at least 1");
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0) {
        bail!("--duration must be positive and --warmup not negative");
    }
    let spec = Spec {
        pairs: args.pairs,
        window: args.window,
        size: args.size.max(report::STAMP_LEN),
        warmup: args.warmup,
        duration: args.duration,
        members: args.members,
        senders: args.senders,
    };
    let data_root = args.data_root.clone().unwrap_or_else(std::env::temp_dir);
    let peers = prepare_peers(&args.systems, &data_root)?;
    let sync_unsupported = peers
        .nats_sync
        .as_ref()
        .is_some_and(|s| s.unsupported.is_some());

    let mut rows = Vec::new();
    for &workload in &args.workloads {
        for &system in &args.systems {
            eprintln!("{} / {} ...", workload.name(), system.name());
            let row = run_row(system, workload, &spec, &args, &peers, &data_root).await;
            match &row.status {
                Status::Ran(outcome) => eprintln!(
                    "{} / {}: {} msgs/s, e2e p50 {:.2} ms p99 {:.2} ms",
                    workload.name(),
                    system.name(),
                    rate(outcome.msgs_per_sec(workload)),
                    outcome.e2e.p50_ms,
                    outcome.e2e.p99_ms
                ),
                Status::Skipped { reason } => eprintln!("  skipped: {reason}"),
                Status::Failed { error } => eprintln!("  failed: {error:#}"),
            }
            rows.push(row);
            // Let the previous server's sockets and page cache settle.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    fill_ratios(&mut rows, sync_unsupported);
    print_results(&rows, &spec, &args, &peers);

    if let Some(path) = &args.json {
        let document = json!({
            "tool": "compare",
            "spec": spec,
            "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "versions": {
                "quip": env!("CARGO_PKG_VERSION"),
                "nats_server": peers.nats_sync.as_ref().map(|s| s.version.clone()),
                "mosquitto": peers.mosquitto_version,
            },
            "semantics": System::ALL
                .iter()
                .map(|s| (s.name(), s.semantics(args.mosquitto_nodelay)))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "quip_client_endpoints": args.quip_endpoints,
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&document)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

/// Finds (installing if missing) the peer servers the chosen systems need, and asks
/// nats-server whether it can fsync every write.
fn prepare_peers(systems: &[System], data_root: &Path) -> anyhow::Result<Peers> {
    let mut peers = Peers::default();
    let wants_nats = systems.iter().any(|s| {
        matches!(
            s,
            System::Nats | System::JetstreamFile | System::JetstreamFileSync
        )
    });
    if wants_nats {
        let binary = server::ensure_installed("nats-server", "nats-server")?;
        peers.nats_sync = Some(nats::probe_sync(&binary, data_root)?);
        peers.nats = Some(binary);
    }
    if systems.contains(&System::Mosquitto) {
        let binary = server::ensure_installed("mosquitto", "mosquitto")?;
        peers.mosquitto_version = server::first_output_line(&binary, &["-h"]);
        peers.mosquitto = Some(binary);
    }
    Ok(peers)
}

/// Runs one system on one workload with a fresh server, and never fails: a failure
/// becomes the row's status, so the other systems still run.
async fn run_row(
    system: System,
    workload: Workload,
    spec: &Spec,
    args: &Args,
    peers: &Peers,
    data_root: &Path,
) -> Row {
    let mut row = Row {
        workload,
        system,
        status: Status::Skipped {
            reason: String::new(),
        },
        msgs_per_sec: None,
        ratio_to_quip_fsync: None,
        ratio_to_quip_os: None,
        like_for_like: vec![],
        server_rss_bytes: None,
        note: String::new(),
    };
    if system == System::JetstreamFileSync
        && let Some(reason) = peers.nats_sync.as_ref().and_then(|s| s.unsupported.clone())
    {
        row.status = Status::Skipped { reason };
        return row;
    }
    // Setup (registrations, consumers) plus the run, with room to spare; a hung system
    // must not hang the whole comparison.
    let limit = Duration::from_secs_f64(spec.warmup + spec.duration) + Duration::from_secs(180);
    let result = tokio::time::timeout(
        limit,
        run_system(system, workload, spec, args, peers, data_root),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {limit:?}")));
    match result {
        Ok((outcome, rss)) => {
            row.msgs_per_sec = Some(outcome.msgs_per_sec(workload));
            row.server_rss_bytes = rss;
            row.note = note_for(&outcome, workload, spec);
            row.status = Status::Ran(outcome);
        }
        Err(e) => {
            row.status = Status::Failed {
                error: format!("{e:#}"),
            }
        }
    }
    row
}

async fn run_system(
    system: System,
    workload: Workload,
    spec: &Spec,
    args: &Args,
    peers: &Peers,
    data_root: &Path,
) -> anyhow::Result<(Outcome, Option<u64>)> {
    let need = |path: &Option<PathBuf>| path.clone().context("server binary not prepared");
    match system {
        System::QuipFsync | System::QuipOs => {
            let durability = if system == System::QuipFsync {
                "fsync"
            } else {
                "os"
            };
            let quip =
                quip::Quip::start(durability, data_root, args.quip_endpoints, &args.quip_args)
                    .await?;
            let outcome = quip.run(workload, spec).await?;
            Ok((outcome, quip.pid().and_then(rss_bytes)))
        }
        System::Nats | System::JetstreamFile | System::JetstreamFileSync => {
            let flavor = match system {
                System::Nats => nats::Flavor::Core,
                _ => nats::Flavor::JetStream {
                    sync_always: system == System::JetstreamFileSync,
                },
            };
            let server = nats::Nats::start(&need(&peers.nats)?, flavor, data_root).await?;
            let outcome = server.run(workload, spec).await?;
            Ok((outcome, server.pid().and_then(rss_bytes)))
        }
        System::Mosquitto => {
            let server =
                mqtt::Mosquitto::start(&need(&peers.mosquitto)?, data_root, args.mosquitto_nodelay)
                    .await?;
            let outcome = server.run(workload, spec).await?;
            Ok((outcome, server.pid().and_then(rss_bytes)))
        }
    }
}

/// Errors, and for the group any shortfall of deliveries against acked × members
/// (a broker that drops messages for slow subscribers shows here).
fn note_for(outcome: &Outcome, workload: Workload, spec: &Spec) -> String {
    let mut notes = Vec::new();
    let expected = match workload {
        Workload::Pairs => outcome.acked,
        Workload::Group => outcome.acked * spec.members as u64,
    };
    if expected > 0 {
        let share = outcome.delivered as f64 / expected as f64;
        // Below 95%: more than the measurement window's edges explain.
        if share < 0.95 {
            notes.push(format!(
                "delivered {:.0}% of acked{}",
                share * 100.0,
                if workload == Workload::Group {
                    " x members"
                } else {
                    ""
                }
            ));
        }
    }
    if outcome.errors > 0 {
        notes.push(format!(
            "{} errors, first: {}",
            outcome.errors,
            outcome.first_error.as_deref().unwrap_or("?")
        ));
    }
    notes.join("; ")
}

/// Each row's msgs/s divided by quip-fsync's and quip-os's on the same workload.
fn fill_ratios(rows: &mut [Row], sync_unsupported: bool) {
    let quip_rate = |rows: &[Row], workload: Workload, system: System| {
        rows.iter()
            .find(|r| r.workload == workload && r.system == system)
            .and_then(|r| r.msgs_per_sec)
            .filter(|rate| *rate > 0.0)
    };
    let rates: Vec<(Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                quip_rate(rows, r.workload, System::QuipFsync),
                quip_rate(rows, r.workload, System::QuipOs),
            )
        })
        .collect();
    for (row, (fsync, os)) in rows.iter_mut().zip(rates) {
        if let Some(mine) = row.msgs_per_sec {
            if row.system != System::QuipFsync {
                row.ratio_to_quip_fsync = fsync.map(|q| mine / q);
            }
            if row.system != System::QuipOs {
                row.ratio_to_quip_os = os.map(|q| mine / q);
            }
        }
        row.like_for_like = row.system.like_for_like(sync_unsupported);
    }
}

fn print_results(rows: &[Row], spec: &Spec, args: &Args, peers: &Peers) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "compare: pairs={} members={} senders={} window={} size={} B warmup={} s duration={} s, \
         {cores} cores, every server and client on this machine (loopback)",
        spec.pairs, spec.members, spec.senders, spec.window, spec.size, spec.warmup, spec.duration
    );
    println!(
        "msgs/s = acked msgs/s (pairs) or deliveries/s to all subscribers (group); \
         latency = payload time stamp to subscriber"
    );
    println!(
        "/quip-fsync, /quip-os = this row's msgs/s divided by Quip's on the same workload \
         (below 1: Quip is faster); * marks the like-for-like pairing: quip-fsync with \
         jetstream-file-sync (fsync per message), quip-os with nats, jetstream-file and \
         mosquitto (no fsync per message){}",
        if peers
            .nats_sync
            .as_ref()
            .is_some_and(|s| s.unsupported.is_some())
        {
            ", and quip-fsync with jetstream-file too while nats-server cannot fsync per \
             message"
        } else {
            ""
        }
    );
    println!();
    let header = [
        "workload",
        "system",
        "msgs/s",
        "acked/s",
        "delivered/s",
        "p50 ms",
        "p99 ms",
        "/quip-fsync",
        "/quip-os",
        "note",
    ];
    let ratio = |value: Option<f64>, starred: bool| {
        value.map_or_else(
            || "-".to_owned(),
            |v| format!("{v:.2}{}", if starred { "*" } else { " " }),
        )
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.workload.name().to_owned(), row.system.name().to_owned()];
            match &row.status {
                Status::Ran(outcome) => {
                    let latency: &Latency = &outcome.e2e;
                    cells.extend([
                        rate(outcome.msgs_per_sec(row.workload)),
                        rate(outcome.acked_per_sec()),
                        rate(outcome.delivered_per_sec()),
                        format!("{:.2}", latency.p50_ms),
                        format!("{:.2}", latency.p99_ms),
                        ratio(
                            row.ratio_to_quip_fsync,
                            row.like_for_like.contains(&System::QuipFsync),
                        ),
                        ratio(
                            row.ratio_to_quip_os,
                            row.like_for_like.contains(&System::QuipOs),
                        ),
                        row.note.clone(),
                    ]);
                }
                Status::Skipped { reason } => {
                    cells.extend(std::iter::repeat_n("n/a".to_owned(), 7));
                    cells.push(format!("skipped: {reason}"));
                }
                Status::Failed { error } => {
                    cells.extend(std::iter::repeat_n("-".to_owned(), 7));
                    cells.push(format!("FAILED: {}", error.lines().next().unwrap_or("")));
                }
            }
            cells
        })
        .collect();
    print_table(&header, &table);
    println!();
    let mut shown: Vec<System> = Vec::new();
    for row in rows {
        if !shown.contains(&row.system) {
            shown.push(row.system);
            println!(
                "  {:<20} {}",
                row.system.name(),
                row.system.semantics(args.mosquitto_nodelay)
            );
        }
    }
    if let Some(sync) = &peers.nats_sync {
        println!("  nats-server {}", sync.version);
    }
    if let Some(version) = &peers.mosquitto_version {
        println!("  {version}");
    }
    if rows.iter().any(|r| r.system.is_quip()) {
        println!(
            "  Quip clients share {} client UDP sockets (quinn endpoints), round-robin",
            args.quip_endpoints.max(1)
        );
    }
}

/// Resident set size of a process, from /proc (Linux).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
