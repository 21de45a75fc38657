//! `resume`: a user is offline while X messages arrive for it; we time how long its
//! reconnect takes to surface all of them (from dialing to the last message).

use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use quip_sdk::{Event, pb};
use serde_json::{Value, json};

use crate::target::Target;

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

pub async fn run(target: &Target, args: &ResumeArgs) -> anyhow::Result<Value> {
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        let run_id: u32 = rand::random();
        let sender = super::new_user(target, "s", round, run_id).await?;
        let receiver = super::new_user(target, "r", round, run_id).await?;
        let receiver_id = receiver.user_id().unwrap_or_default();
        let token = receiver
            .tokens()
            .map(|t| t.access_token)
            .unwrap_or_default();
        receiver.close().await;

        let mut inflight = FuturesUnordered::new();
        for n in 0..args.missed {
            if inflight.len() >= args.window {
                inflight.next().await.transpose()?;
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
            inflight.push(sender.send(request));
        }
        while let Some(result) = inflight.next().await {
            result?;
        }

        // Reconnect as the same device with its access token, as the SDK does after a
        // dropped connection (it resumes from its stored cursor).
        let begin = Instant::now();
        let client = target.client(&format!("r-{round}")).await?;
        client.login_with_token(&token).await?;
        let logged_in = begin.elapsed();
        let mut got = 0;
        while got < args.missed {
            match client.next_event().await {
                Some(Event::Message(_)) => got += 1,
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
    let mut times: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r["resume_ms"].as_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(json!({
        "scenario": "resume",
        "missed": args.missed,
        "rounds": rounds,
        "median_resume_ms": times[times.len() / 2],
    }))
}
