//! `mixed`: pairs and a group at once, half the clients on QUIC and half on
//! WebSocket, so every message crosses transports: in half the pairs a QUIC sender
//! writes to a WebSocket receiver, in the other half the reverse; group members
//! alternate QUIC and WebSocket, and so do its senders.
//!
//! Each client records into the series `<part>.<transport>` (`pairs.quic`,
//! `group.ws`, …). A transport's figures therefore combine the ACKs of the senders
//! on it with the deliveries (and end-to-end latency) of the receivers on it.
//!
//! Delivery is accounted per message: every pair receiver and every group member
//! that does not send counts each message once by its seq, and the result's
//! `delivery` says how many acknowledged messages never reached them (`missing`,
//! after the receivers are given up to [`SETTLE`] to catch up once sending stops)
//! and how many surfaced twice (`duplicates`, replays after a resume). With
//! `--churn-every S`, one of those receivers (round robin, both transports, both
//! parts) disconnects every S seconds and reconnects as the same device, which
//! resumes where it left off (see [`crate::churn`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::churn;
use crate::conn::{Conn, Transport};
use crate::delivery::Ledger;
use crate::load::Load;
use crate::metrics::Metrics;
use crate::report::merged;
use crate::run::Run;
use crate::scenario::load_args::LoadArgs;
use crate::scenario::{group, pairs};
use crate::users::{self, UserSpec};

/// How long receivers may take, after the last ACK, to surface what is missing.
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct MixedArgs {
    /// Sender/receiver pairs (alternately QUIC → WebSocket and WebSocket → QUIC).
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Online group members (alternately QUIC and WebSocket).
    #[arg(long, default_value_t = 20)]
    pub members: usize,
    /// Group members that send (the first K).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// Reconnect churn: every this many seconds (warm-up included), one receiving
    /// client (a pair receiver or a group member that does not send, in turn)
    /// disconnects and reconnects, resuming as the same device. 0: off.
    #[arg(long, default_value_t = 0.0)]
    pub churn_every: f64,
    #[command(flatten)]
    pub load: LoadArgs,
}

const PARTS: [&str; 2] = ["pairs", "group"];
const TRANSPORTS: [Transport; 2] = [Transport::Quic, Transport::Ws];

pub async fn run(run: &Run, args: &MixedArgs) -> anyhow::Result<Value> {
    let phases = args.load.phases()?;
    group::check_sizes(args.members, args.senders)?;
    let churn_every = Duration::try_from_secs_f64(args.churn_every).with_context(|| {
        format!(
            "--churn-every must be a number of seconds ≥ 0, not {}",
            args.churn_every
        )
    })?;
    let alternate = |index: usize| TRANSPORTS[index % 2];
    let mut specs = pairs::specs(args.pairs, |i| (alternate(i), alternate(i + 1)));
    specs.extend(group::specs(args.members, alternate));
    let mut conns = users::connect_all(run, &specs).await?;
    let members = conns.split_off(args.pairs * 2);
    let member_specs = specs.split_off(args.pairs * 2);
    let group_id = group::form(run, &members).await?;

    let schedule = run.start_load(phases);
    let plan = args.load.plan(&schedule);
    let ledger = Ledger::new();
    let mut load = Load::tracked(ledger.clone());
    let series = |part: &str, conn: &Conn| format!("{part}.{}", conn.transport().name());
    // Pairs: each sender sends to its receiver, which is tracked.
    let mut pair_targets = Vec::new();
    for (pair, pair_specs) in conns.chunks_exact(2).zip(specs.chunks_exact(2)) {
        let (sender, receiver) = (&pair[0], &pair[1]);
        let sender_recorder = run.metrics.recorder(&series("pairs", sender));
        load.receive(sender.clone(), sender_recorder.clone());
        let seen = ledger.receiver(receiver.user_id());
        let recorder = run.metrics.recorder(&series("pairs", receiver));
        let requests = load.receive_tracked(receiver.clone(), recorder, seen);
        pair_targets.push(target(pair_specs[1], receiver, requests));
        let to = receiver.user_id().to_owned();
        load.send(sender.clone(), to, plan, sender_recorder);
    }
    // The group: the first K members send (and receive untracked), the rest are
    // tracked receivers.
    let mut group_targets = Vec::new();
    for (index, (member, spec)) in members.iter().zip(&member_specs).enumerate() {
        let recorder = run.metrics.recorder(&series("group", member));
        if index < args.senders {
            load.receive(member.clone(), recorder.clone());
            load.send(member.clone(), group_id.clone(), plan, recorder);
        } else {
            let seen = ledger.receiver(&group_id);
            let requests = load.receive_tracked(member.clone(), recorder, seen);
            group_targets.push(target(*spec, member, requests));
        }
    }
    let targets = interleave(pair_targets, group_targets);
    let (_, churned) = tokio::join!(
        run.follow(&schedule),
        churn::run(run, targets, churn_every, schedule.stop_at),
    );
    load.finish_senders().await?;
    let settle_started = Instant::now();
    while ledger.tally().missing > 0 && settle_started.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settle = settle_started.elapsed();
    load.stop_receivers().await?;
    let delivery = ledger.tally();
    users::close_all(&conns).await;
    users::close_all(&members).await;

    let seconds = args.load.duration;
    let summary = |include: &dyn Fn(&str) -> bool| run.metrics.summary(include, seconds);
    let group_summary = summary(&|name| name.starts_with("group."));
    let by_transport: serde_json::Map<String, Value> = TRANSPORTS
        .iter()
        .map(|t| {
            let suffix = format!(".{}", t.name());
            (
                t.name().to_owned(),
                summary(&|name| name.ends_with(&suffix)).to_json(),
            )
        })
        .collect();
    Ok(merged([
        json!({
            "scenario": "mixed",
            "transport": "mixed",
            "pairs": args.pairs,
            "members": args.members,
            "senders": args.senders,
        }),
        args.load.to_json(),
        summary(&|_| true).to_json(),
        json!({
            "parts": {
                "pairs": summary(&|name| name.starts_with("pairs.")).to_json(),
                "group": merged([group_summary.to_json(), group::fan_out(&group_summary)]),
            },
            "by_transport": by_transport,
            "churn": churned.to_json(),
            "delivery": merged([
                delivery.to_json(),
                json!({"settle_ms": (settle.as_secs_f64() * 1000.0).round()}),
            ]),
            "series": series_json(&run.metrics, seconds),
        }),
    ]))
}

fn target(
    spec: UserSpec,
    conn: &Arc<Conn>,
    requests: tokio::sync::mpsc::Sender<crate::load::Churn>,
) -> churn::Target {
    churn::Target {
        spec,
        conn: conn.clone(),
        requests,
    }
}

/// `a` and `b` alternately, then the rest of the longer.
fn interleave<T>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Every `<part>.<transport>` series on its own.
fn series_json(metrics: &Metrics, seconds: f64) -> Value {
    let mut all = serde_json::Map::new();
    for part in PARTS {
        for transport in TRANSPORTS {
            let name = format!("{part}.{}", transport.name());
            let summary = metrics.summary(|n| n == name, seconds);
            all.insert(name, summary.to_json());
        }
    }
    Value::Object(all)
}
