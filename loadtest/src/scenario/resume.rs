//! `resume`: a user is offline while X messages arrive for it; we time how long its
//! reconnect takes to surface all of them (from dialing to the last message).
//!
//! The whole run is measured (there is no warm-up): the timeline shows the fill's
//! ACK rate and then the catch-up's delivery rate.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use quip_sdk::{Event, pb};
use serde_json::{Value, json};

use crate::metrics::Phase;
use crate::report::{Percentiles, histogram};
use crate::run::Run;

/// Where the sender and the receiver connect (see [`crate::target::Target::node`]).
const SENDER_NODE: usize = 0;
const RECEIVER_NODE: usize = 1;

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// Messages the offline user misses.
    #[arg(long, default_value_t = 10_000)]
    pub missed: usize,
    /// Sends in flight while filling.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Repetitions (each with fresh users); the result reports each and the median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

pub async fn run(run: &Run, args: &ResumeArgs) -> anyhow::Result<Value> {
    let target = &run.target;
    let recorder = run.metrics.recorder("quic");
    // Per message: from starting the reconnect to the message being surfaced.
    let mut catch_up = histogram();
    let mut rounds = Vec::new();
    let started = Instant::now();
    run.progress.load(Phase::Measure, None);
    run.enter(Phase::Measure);
    for round in 0..args.rounds.max(1) {
        // On a cluster the two are on different nodes, so the catch-up crosses nodes.
        let sender = super::new_user(target, SENDER_NODE, "s", round, run.id).await?;
        let receiver = super::new_user(target, RECEIVER_NODE, "r", round, run.id).await?;
        let receiver_id = receiver.user_id().unwrap_or_default();
        let token = receiver
            .tokens()
            .map(|t| t.access_token)
            .unwrap_or_default();
        receiver.close().await;

        let mut inflight = FuturesUnordered::new();
        for n in 0..args.missed {
            if inflight.len() >= args.window.max(1) {
                record_ack(&recorder, inflight.next().await)?;
            }
            let request = pb::SendRequest {
                to: receiver_id.clone(),
                kind: pb::MessageKind::Text as i32,
                content: Some(pb::send_request::Content::Text(pb::TextContent {
                    text: format!("missed {n}"),
                    ..Default::default()
                })),
                client_msg_id: format!("m{n}"),
            };
            let sender = &sender;
            inflight.push(async move {
                let begin = Instant::now();
                (sender.send(request).await, begin.elapsed())
            });
        }
        while let Some(done) = inflight.next().await {
            record_ack(&recorder, Some(done))?;
        }

        // Reconnect as the same device with its access token, as the SDK does after a
        // dropped connection (it resumes from its stored cursor).
        let begin = Instant::now();
        let client = target.client(RECEIVER_NODE, &format!("r-{round}")).await?;
        client.login_with_token(&token).await?;
        let logged_in = begin.elapsed();
        let mut got = 0;
        while got < args.missed {
            match client.next_event().await {
                Some(Event::Message(_)) => {
                    got += 1;
                    recorder.delivered(None);
                    catch_up.saturating_record(micros(begin.elapsed()));
                }
                Some(_) => {}
                None => anyhow::bail!("event stream ended after {got} messages"),
            }
        }
        let total = begin.elapsed();
        rounds.push(json!({
            "missed": args.missed,
            "login_ms": logged_in.as_secs_f64() * 1000.0,
            "resume_ms": total.as_secs_f64() * 1000.0,
        }));
        client.close().await;
        sender.close().await;
    }
    run.enter(Phase::Drain);
    let mut times: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r["resume_ms"].as_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    let summary = run
        .metrics
        .summary(|_| true, started.elapsed().as_secs_f64());
    Ok(json!({
        "scenario": "resume",
        "transport": "quic",
        "missed": args.missed,
        "rounds": rounds,
        "median_resume_ms": times[times.len() / 2],
        "acked": summary.acked,
        "ack_latency": summary.ack_latency,
        "catch_up_latency": Percentiles::of(&catch_up),
    }))
}

type Sent = (quip_sdk::Result<pb::SendAck>, Duration);

/// Records a fill send's outcome; a failed fill makes the round meaningless.
fn record_ack(recorder: &crate::metrics::Recorder, done: Option<Sent>) -> anyhow::Result<()> {
    if let Some((result, took)) = done {
        if let Err(error) = result {
            recorder.failed(format!("send failed: {error}"));
            return Err(error.into());
        }
        recorder.acked(took);
    }
    Ok(())
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
