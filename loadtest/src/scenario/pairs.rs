//! `pairs`: N senders each talking to their own receiver, closed loop (a window of
//! sends in flight, as fast as ACKs allow) or open loop (`--rate`), for a duration
//! after a warm-up. Receivers count deliveries and end-to-end latency from the
//! timestamp at the start of each body.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::conn::{Conn, Transport};
use crate::load::Load;
use crate::report::merged;
use crate::run::Run;
use crate::scenario::load_args::LoadArgs;
use crate::sender::SendPlan;
use crate::users::{self, UserSpec};

#[derive(Debug, clap::Args)]
pub struct PairsArgs {
    /// Number of sender/receiver pairs.
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// Which kind of client the pairs use.
    #[arg(long, value_enum, default_value_t = Transport::Quic)]
    pub transport: Transport,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub async fn run(run: &Run, args: &PairsArgs) -> anyhow::Result<Value> {
    let phases = args.load.phases()?;
    let specs = specs(args.pairs, |_| (args.transport, args.transport));
    let conns = users::connect_all(run, &specs).await?;
    let schedule = run.start_load(phases);
    let mut load = Load::default();
    start(run, &mut load, &conns, args.load.plan(&schedule), |conn| {
        conn.transport().name().to_owned()
    });
    run.follow(&schedule).await;
    load.finish().await?;
    users::close_all(&conns).await;
    let summary = run.metrics.summary(|_| true, args.load.duration);
    Ok(merged([
        json!({
            "scenario": "pairs",
            "transport": args.transport.name(),
            "pairs": args.pairs,
        }),
        args.load.to_json(),
        summary.to_json(),
    ]))
}

/// The users of `count` pairs, sender then receiver; `transports(i)` gives pair
/// `i`'s sender and receiver transports. Pair `i`'s sender is on node `i` and its
/// receiver on node `i + 1` (modulo the node count), so on a cluster every message
/// crosses nodes.
pub fn specs(count: usize, transports: impl Fn(usize) -> (Transport, Transport)) -> Vec<UserSpec> {
    (0..count)
        .flat_map(|index| {
            let (sender, receiver) = transports(index);
            [
                UserSpec {
                    prefix: "ps",
                    index,
                    transport: sender,
                    node: index,
                },
                UserSpec {
                    prefix: "pr",
                    index,
                    transport: receiver,
                    node: index + 1,
                },
            ]
        })
        .collect()
}

/// Starts every pair of `conns` (as [`specs`] orders them): each sender sends to its
/// receiver; each connection records into the series `series` names for it.
pub fn start(
    run: &Run,
    load: &mut Load,
    conns: &[Arc<Conn>],
    plan: SendPlan,
    series: impl Fn(&Conn) -> String,
) {
    for pair in conns.chunks_exact(2) {
        let (sender, receiver) = (&pair[0], &pair[1]);
        let sender_recorder = run.metrics.recorder(&series(sender));
        load.receive(sender.clone(), sender_recorder.clone());
        load.receive(receiver.clone(), run.metrics.recorder(&series(receiver)));
        load.send(
            sender.clone(),
            receiver.user_id().to_owned(),
            plan,
            sender_recorder,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_cluster_the_two_users_of_a_pair_sit_on_different_nodes() {
        let quic = |_| (Transport::Quic, Transport::Quic);
        for nodes in 2..=4 {
            for pair in specs(10, quic).chunks_exact(2) {
                let (sender, receiver) = (pair[0], pair[1]);
                assert_eq!(sender.node % nodes, sender.index % nodes);
                assert_eq!(receiver.node % nodes, (sender.index + 1) % nodes);
                assert_ne!(sender.node % nodes, receiver.node % nodes);
            }
        }
    }
}
