//! `mixed`: pairs and a group at once, half the clients on QUIC and half on
//! WebSocket, so every message crosses transports: in half the pairs a QUIC sender
//! writes to a WebSocket receiver, in the other half the reverse; group members
//! alternate QUIC and WebSocket, and so do its senders.
//!
//! Each client records into the series `<part>.<transport>` (`pairs.quic`,
//! `group.ws`, …). A transport's figures therefore combine the ACKs of the senders
//! on it with the deliveries (and end-to-end latency) of the receivers on it.

use serde_json::{Value, json};

use crate::conn::{Conn, Transport};
use crate::load::Load;
use crate::metrics::Metrics;
use crate::report::merged;
use crate::run::Run;
use crate::scenario::load_args::LoadArgs;
use crate::scenario::{group, pairs};
use crate::users;

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
    #[command(flatten)]
    pub load: LoadArgs,
}

const PARTS: [&str; 2] = ["pairs", "group"];
const TRANSPORTS: [Transport; 2] = [Transport::Quic, Transport::Ws];

pub async fn run(run: &Run, args: &MixedArgs) -> anyhow::Result<Value> {
    let phases = args.load.phases()?;
    group::check_sizes(args.members, args.senders)?;
    let alternate = |index: usize| TRANSPORTS[index % 2];
    let mut specs = pairs::specs(args.pairs, |i| (alternate(i), alternate(i + 1)));
    specs.extend(group::specs(args.members, alternate));
    let mut conns = users::connect_all(run, &specs).await?;
    let members = conns.split_off(args.pairs * 2);
    let group_id = group::form(run, &members).await?;

    let schedule = run.start_load(phases);
    let plan = args.load.plan(&schedule);
    let mut load = Load::default();
    let series =
        |part: &'static str| move |conn: &Conn| format!("{part}.{}", conn.transport().name());
    pairs::start(run, &mut load, &conns, plan, series("pairs"));
    group::start(
        run,
        &mut load,
        &members,
        &group_id,
        args.senders,
        plan,
        series("group"),
    );
    run.follow(&schedule).await;
    load.finish().await?;
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
            "series": series_json(&run.metrics, seconds),
        }),
    ]))
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
