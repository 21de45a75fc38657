//! Reconnect churn: every so often one tracked receiver drops its connection and
//! connects again as the same device, which resumes from its delivered position
//! (QUIC: the cursors the SDK reports; WebSocket: the type-32 reports of
//! [`crate::ws_client`]). Receivers take turns, round robin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;
use crate::load::Churn;
use crate::mint::Minter;
use crate::report::{Percentiles, histogram};
use crate::run::Run;
use crate::users::{self, UserSpec};

/// Attempts per reconnect, and the pause between them.
const ATTEMPTS: usize = 3;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A receiver that can be churned.
#[derive(Debug)]
pub struct Target {
    pub spec: UserSpec,
    /// Its current connection (for its ids and token).
    pub conn: Arc<Conn>,
    pub requests: mpsc::Sender<Churn>,
}

/// What the churn did.
#[derive(Debug)]
pub struct Outcome {
    pub every_s: f64,
    pub targets: usize,
    /// Completed reconnects.
    pub events: u64,
    pub failed: u64,
    /// From asking the receiver to close to the new connection being logged in.
    pub reconnect: Percentiles,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "every_s": self.every_s,
            "targets": self.targets,
            "events": self.events,
            "failed": self.failed,
            "reconnect_latency": self.reconnect,
        })
    }
}

/// Churns one of `targets` every `every` until `stop_at` (the first one `every`
/// after now); `every` zero: never.
pub async fn run(
    run: &Run,
    mut targets: Vec<Target>,
    every: Duration,
    stop_at: Instant,
) -> Outcome {
    let mut times = histogram();
    let (mut events, mut failed) = (0, 0);
    let count = targets.len();
    if !every.is_zero() && count > 0 {
        let mut due = Instant::now() + every;
        let mut turn = 0;
        while due < stop_at {
            tokio::time::sleep_until(due.into()).await;
            due += every;
            let target = &mut targets[turn % count];
            turn += 1;
            let begin = Instant::now();
            match churn(run, target).await {
                Ok(()) => {
                    events += 1;
                    let micros = u64::try_from(begin.elapsed().as_micros()).unwrap_or(u64::MAX);
                    times.saturating_record(micros.max(1));
                }
                Err(error) => {
                    failed += 1;
                    run.metrics.error(format!("churn: {error:#}"));
                }
            }
            // A slow reconnect delays the next churn rather than stacking them.
            due = due.max(Instant::now());
        }
    }
    Outcome {
        every_s: every.as_secs_f64(),
        targets: count,
        events,
        failed,
        reconnect: Percentiles::of(&times),
    }
}

/// Closes `target`'s connection (through its receiver) and hands it a new one.
async fn churn(run: &Run, target: &mut Target) -> anyhow::Result<()> {
    let (closed, was_closed) = oneshot::channel();
    let (give, next) = oneshot::channel();
    target
        .requests
        .send(Churn { closed, next })
        .await
        .map_err(|_| anyhow::anyhow!("the receiver of {} has ended", target.conn.username()))?;
    was_closed
        .await
        .map_err(|_| anyhow::anyhow!("the receiver of {} has ended", target.conn.username()))?;
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_AFTER).await;
        }
        let token = match &run.target.jwt_secret {
            // A fresh token: the registration's expires after the broker's access TTL.
            Some(secret) => {
                let device_id = format!("{}-{}", target.spec.prefix, target.spec.index);
                Minter::new(secret).access_token(target.conn.user_id(), &device_id)?
            }
            None => target.conn.access_token().to_owned(),
        };
        match users::reconnect(run, &target.spec, &target.conn, &token).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                target.conn = conn.clone();
                // The receiver ended only if the run is over; nothing to hand over then.
                let _ = give.send(Some(conn));
                return Ok(());
            }
            Err(error) => last_error = Some(error),
        }
    }
    let _ = give.send(None);
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
        .map_err(|error| error.context(format!("reconnecting {}", target.conn.username())))
}
