//! `pairs`: N senders each talking to their own receiver, as fast as ACKs allow with
//! a window of sends in flight, for a duration after a warm-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use quip_sdk::{Event, pb};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::report::{Percentiles, histogram, now_micros};
use crate::target::Target;

#[derive(Debug, clap::Args)]
pub struct PairsArgs {
    /// Number of sender/receiver pairs.
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Message body size in bytes (at least the timestamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured seconds before.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
}

pub async fn run(target: &Target, args: &PairsArgs) -> anyhow::Result<Value> {
    let run_id: u32 = rand::random();
    let mut pairs = Vec::new();
    for i in 0..args.pairs {
        let sender = super::new_user(target, "s", i, run_id).await?;
        let receiver = super::new_user(target, "r", i, run_id).await?;
        pairs.push((sender, receiver));
    }
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(args.duration);
    let measuring = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let ack_latency = Arc::new(Mutex::new(histogram()));
    let e2e_latency = Arc::new(Mutex::new(histogram()));
    let padding = "x".repeat(args.size.saturating_sub(21));

    let mut tasks = Vec::new();
    for (sender, receiver) in pairs {
        let to = receiver.user_id().unwrap_or_default();
        let (measuring_r, delivered, e2e) =
            (measuring.clone(), delivered.clone(), e2e_latency.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            loop {
                let event = tokio::time::timeout_at(stop_at.into(), receiver.next_event()).await;
                let Ok(Some(event)) = event else { break };
                if let Event::Message(message) = event {
                    if measuring_r.load(Ordering::Relaxed) {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        if let Some(sent) = sent_micros(&message) {
                            let _ = local.record(now_micros().saturating_sub(sent).max(1));
                        }
                    }
                }
            }
            let _ = e2e.lock().await.add(&local);
        }));
        let (measuring_s, acked, ack_hist, padding) = (
            measuring.clone(),
            acked.clone(),
            ack_latency.clone(),
            padding.clone(),
        );
        let window = args.window.max(1);
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            let mut inflight = FuturesUnordered::new();
            let mut n = 0u64;
            loop {
                while inflight.len() < window && Instant::now() < stop_at {
                    n += 1;
                    let body = format!("{:020}{padding}", now_micros());
                    let request = pb::SendRequest {
                        to: to.clone(),
                        kind: pb::MessageKind::Text as i32,
                        content: Some(pb::send_request::Content::Text(pb::TextContent {
                            text: body,
                            ..Default::default()
                        })),
                        client_msg_id: format!("lt-{n}"),
                    };
                    let sender = &sender;
                    inflight.push(async move {
                        let begin = Instant::now();
                        (sender.send(request).await, begin.elapsed())
                    });
                }
                let Some((result, took)) = inflight.next().await else {
                    break;
                };
                if result.is_ok() && measuring_s.load(Ordering::Relaxed) {
                    acked.fetch_add(1, Ordering::Relaxed);
                    let _ = local.record(took.as_micros().max(1) as u64);
                }
            }
            let _ = ack_hist.lock().await.add(&local);
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep_until(stop_at.into()).await;
    measuring.store(false, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let seconds = args.duration;
    let acked = acked.load(Ordering::Relaxed);
    let delivered = delivered.load(Ordering::Relaxed);
    Ok(json!({
        "scenario": "pairs",
        "pairs": args.pairs,
        "window": args.window,
        "size": args.size,
        "seconds": seconds,
        "acked": acked,
        "delivered": delivered,
        "acked_per_sec": (acked as f64 / seconds).round(),
        "delivered_per_sec": (delivered as f64 / seconds).round(),
        "ack_latency": Percentiles::of(&*ack_latency.lock().await),
        "end_to_end_latency": Percentiles::of(&*e2e_latency.lock().await),
    }))
}

/// The send timestamp at the start of a load-test body.
fn sent_micros(message: &pb::Message) -> Option<u64> {
    match &message.content {
        Some(pb::message::Content::Text(text)) => text.text.get(..20)?.parse().ok(),
        _ => None,
    }
}
