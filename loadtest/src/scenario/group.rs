//! `group`: one group of M online members, K of whom send group texts, closed loop or
//! at a fixed rate. Every message fans out to the M − 1 other members, so the
//! deliveries per second (the fan-out rate) is the figure to watch.

use std::sync::Arc;

use anyhow::{Context, bail};
use quip_sdk::pb;
use serde_json::{Value, json};

use crate::conn::{Conn, Transport};
use crate::load::Load;
use crate::metrics::Summary;
use crate::report::merged;
use crate::run::Run;
use crate::scenario::load_args::LoadArgs;
use crate::sender::SendPlan;
use crate::users::{self, PASSWORD, UserSpec};

/// Users per create or invite request: the broker's `GroupLimits::max_batch_users`
/// (`broker/src/service/groups.rs`); larger groups are invited in batches.
const MAX_USERS_PER_REQUEST: usize = 500;

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// Online members (the owner included).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Members that send (the first K, the owner first).
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Which kind of client the members use.
    #[arg(long, value_enum, default_value_t = Transport::Quic)]
    pub transport: Transport,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub async fn run(run: &Run, args: &GroupArgs) -> anyhow::Result<Value> {
    let phases = args.load.phases()?;
    check_sizes(args.members, args.senders)?;
    let specs = specs(args.members, |_| args.transport);
    let members = users::connect_all(run, &specs).await?;
    let group_id = form(run, &members).await?;
    let schedule = run.start_load(phases);
    let mut load = Load::default();
    let plan = args.load.plan(&schedule);
    start(
        run,
        &mut load,
        &members,
        &group_id,
        args.senders,
        plan,
        |conn| conn.transport().name().to_owned(),
    );
    run.follow(&schedule).await;
    load.finish().await?;
    users::close_all(&members).await;
    let summary = run.metrics.summary(|_| true, args.load.duration);
    Ok(merged([
        json!({
            "scenario": "group",
            "transport": args.transport.name(),
            "members": args.members,
            "senders": args.senders,
        }),
        args.load.to_json(),
        summary.to_json(),
        fan_out(&summary),
    ]))
}

/// A group needs someone to receive, and senders among its members.
pub fn check_sizes(members: usize, senders: usize) -> anyhow::Result<()> {
    if members < 2 {
        bail!("--members must be at least 2");
    }
    if senders == 0 || senders > members {
        bail!("--senders must be between 1 and --members ({members})");
    }
    Ok(())
}

/// The fan-out figures: deliveries per second (every member's copy counts) and
/// deliveries per acknowledged message. Both count what happened during the
/// measure phase, so the ratio is M − 1 when delivery keeps up with the senders;
/// it is above that when a backlog from the warm-up is delivered during the
/// measurement, and below when a backlog builds up (end-to-end latency then grows).
pub fn fan_out(summary: &Summary) -> Value {
    let per_message = if summary.acked > 0 {
        summary.delivered as f64 / summary.acked as f64
    } else {
        0.0
    };
    json!({
        "deliveries_per_sec": summary.delivered_per_sec,
        "fan_out": (per_message * 100.0).round() / 100.0,
    })
}

/// The members of a group of `count`; `transport(i)` gives member `i`'s. Member `i`
/// is on node `i` (modulo the node count): round-robin over a cluster.
pub fn specs(count: usize, transport: impl Fn(usize) -> Transport) -> Vec<UserSpec> {
    (0..count)
        .map(|index| UserSpec {
            prefix: "gm",
            index,
            transport: transport(index),
            node: index,
        })
        .collect()
}

/// Creates the group, owned by the first member, with every member in it. The
/// owner logs in on a separate QUIC device for this (its load connection may be a
/// WebSocket, which has no group operations), so its load connection is untouched.
pub async fn form(run: &Run, members: &[Arc<Conn>]) -> anyhow::Result<String> {
    let owner = members.first().context("a group needs members")?;
    let admin = run.quic_client(0, "group-admin").await?;
    admin.login(owner.username(), PASSWORD).await?;
    let others: Vec<String> = members[1..]
        .iter()
        .map(|member| member.user_id().to_owned())
        .collect();
    let mut batches = others.chunks(MAX_USERS_PER_REQUEST);
    let created = admin
        .create_group(
            &format!("loadtest {:08x}", run.id),
            "quip-loadtest group",
            batches.next().unwrap_or_default(),
            pb::JoinMode::InviteOnly,
        )
        .await
        .context("creating the group")?;
    let group_id = created.group.context("no group in the answer")?.group_id;
    for batch in batches {
        admin
            .invite(&group_id, batch)
            .await
            .context("inviting members")?;
    }
    admin.close().await;
    Ok(group_id)
}

/// Every member receives; the first `senders` also send to the group. Each
/// connection records into the series `series` names for it.
pub fn start(
    run: &Run,
    load: &mut Load,
    members: &[Arc<Conn>],
    group_id: &str,
    senders: usize,
    plan: SendPlan,
    series: impl Fn(&Conn) -> String,
) {
    for (index, member) in members.iter().enumerate() {
        let recorder = run.metrics.recorder(&series(member));
        load.receive(member.clone(), recorder.clone());
        if index < senders {
            load.send(member.clone(), group_id.to_owned(), plan, recorder);
        }
    }
}
