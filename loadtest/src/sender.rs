//! One sender's loop: closed loop (as fast as ACKs come back, with a window of sends
//! in flight) or open loop (sends due at a fixed rate, the window only capping how
//! many may be outstanding).
//!
//! In open loop, latency is measured from when a send was *due*, not from when it
//! went out. A stalled broker then shows up as the latency the users of a
//! fixed-rate workload would see, instead of the load generator politely waiting
//! and hiding the stall ("coordinated omission"). The body's timestamp is the due
//! time too, so end-to-end latency is measured the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::conn::Conn;
use crate::delivery::Ledger;
use crate::metrics::Recorder;
use crate::payload;
use crate::report::now_micros;

#[derive(Debug, Clone, Copy)]
pub struct SendPlan {
    /// Sends in flight at most.
    pub window: usize,
    /// Sends per second; 0 for closed loop.
    pub rate: f64,
    /// Body size in bytes (at least the 20-digit timestamp).
    pub size: usize,
    /// No send starts at or after this.
    pub stop_at: Instant,
}

/// Sends to `to` until `plan.stop_at`, then waits for the sends still in flight.
/// With a `ledger`, every acknowledged send's seq is entered in it.
pub async fn run(
    conn: Arc<Conn>,
    to: String,
    plan: SendPlan,
    recorder: Recorder,
    ledger: Option<Arc<Ledger>>,
) {
    let window = plan.window.max(1);
    let interval = (plan.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / plan.rate));
    let clock = Clock::now();
    // Senders start at a random point of their first interval, so that many
    // fixed-rate senders do not fire in lockstep.
    let mut next_due = interval.map(|i| clock.instant + i.mul_f64(rand::random::<f64>()));
    let mut inflight = FuturesUnordered::new();
    let mut sequence = 0u64;
    let (conn, to) = (&conn, to.as_str());
    loop {
        let now = Instant::now();
        while inflight.len() < window {
            let due = next_due.unwrap_or(now);
            if due > now || due >= plan.stop_at {
                break;
            }
            sequence += 1;
            let text = payload::body(clock.micros_at(due), plan.size);
            recorder.sent();
            inflight.push(async move {
                let result = conn.send_text(to, text, format!("lt{sequence}")).await;
                (result, due)
            });
            if let (Some(due), Some(interval)) = (next_due.as_mut(), interval) {
                *due += interval;
            }
        }
        let more_due = next_due.unwrap_or(now) < plan.stop_at;
        if inflight.is_empty() {
            match next_due {
                Some(due) if more_due => tokio::time::sleep_until(due.into()).await,
                _ => break,
            }
            continue;
        }
        // Wake for the next due send only if the window has room for it.
        let wake = next_due.filter(|_| more_due && inflight.len() < window);
        tokio::select! {
            Some((result, due)) = inflight.next() => match result {
                Ok(stored) => {
                    recorder.acked(due.elapsed());
                    if let Some(ledger) = &ledger {
                        ledger.acked(to, stored.seq);
                    }
                }
                Err(error) => recorder.failed(format!("send failed: {error:#}")),
            },
            () = sleep_until(wake) => {}
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Maps monotonic instants to wall-clock microseconds (what receivers compare
/// against), anchored once so a send's timestamp is exactly its due time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    instant: Instant,
    micros: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            micros: now_micros(),
        }
    }

    fn micros_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.instant).as_micros();
        self.micros
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}
