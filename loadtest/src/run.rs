//! One load-test run's shared context: the broker, the measurements, the progress
//! bar, the shared client endpoints, and the warm-up/measure schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use quip_sdk::Client;

use crate::endpoints::EndpointPool;
use crate::metrics::{Metrics, Phase};
use crate::progress::Progress;
use crate::target::Target;

#[derive(Debug)]
pub struct Run {
    pub target: Target,
    pub metrics: Arc<Metrics>,
    pub progress: Progress,
    /// Random per run, so usernames never collide with an earlier run's on the same
    /// broker.
    pub id: u32,
    endpoints: EndpointPool,
}

/// How long each load phase lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub warmup: Duration,
    pub duration: Duration,
}

/// When the load's phases change.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub measure_from: Instant,
    pub stop_at: Instant,
}

impl Run {
    /// `endpoints`: how many UDP sockets the QUIC clients share.
    pub fn new(target: Target, progress: Progress, endpoints: usize) -> anyhow::Result<Run> {
        let endpoints = EndpointPool::new(endpoints, target.node(0).addr)
            .context("binding client endpoints")?;
        Ok(Run {
            target,
            metrics: Metrics::new(),
            progress,
            id: rand::random(),
            endpoints,
        })
    }

    /// A QUIC client of node `node` (see [`Target::node`]) on one of the shared
    /// endpoints.
    pub async fn quic_client(&self, node: usize, device_id: &str) -> anyhow::Result<Client> {
        self.target
            .client_on(node, device_id, Some(self.endpoints.next()))
            .await
    }

    /// Starts the load: `phases.warmup` unmeasured, then `phases.duration` measured.
    pub fn start_load(&self, phases: Phases) -> Schedule {
        let now = Instant::now();
        let phase = if phases.warmup.is_zero() {
            Phase::Measure
        } else {
            Phase::Warmup
        };
        self.metrics.set_phase(phase);
        self.progress
            .load(phase, Some(phases.warmup + phases.duration));
        Schedule {
            measure_from: now + phases.warmup,
            stop_at: now + phases.warmup + phases.duration,
        }
    }

    /// Waits out the schedule, switching to measure and then to drain on time.
    pub async fn follow(&self, schedule: &Schedule) {
        tokio::time::sleep_until(schedule.measure_from.into()).await;
        self.enter(Phase::Measure);
        tokio::time::sleep_until(schedule.stop_at.into()).await;
        self.enter(Phase::Drain);
    }

    pub fn enter(&self, phase: Phase) {
        self.metrics.set_phase(phase);
        self.progress.phase(phase);
    }
}
