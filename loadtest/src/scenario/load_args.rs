//! The options every message-sending scenario shares: how hard to send, what, and
//! for how long.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::run::{Phases, Schedule};
use crate::sender::SendPlan;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Sends in flight per sender (also the cap with --rate).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Messages per second per sender, sent on schedule whether or not earlier ones
    /// were answered; latency counts from the scheduled time. 0: as fast as the
    /// window allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Message body size in bytes (at least the 20-digit timestamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured seconds before.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
}

impl LoadArgs {
    /// Checks the numbers, before any (slow) setup.
    pub fn phases(&self) -> anyhow::Result<Phases> {
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!("--rate must be a number ≥ 0, not {}", self.rate);
        }
        let duration = seconds("--duration", self.duration)?;
        if duration.is_zero() {
            bail!("--duration must be more than 0");
        }
        Ok(Phases {
            warmup: seconds("--warmup", self.warmup)?,
            duration,
        })
    }

    pub fn plan(&self, schedule: &Schedule) -> SendPlan {
        SendPlan {
            window: self.window,
            rate: self.rate,
            size: self.size,
            stop_at: schedule.stop_at,
        }
    }

    /// The options as result fields; `seconds` is the measured time rates are over.
    pub fn to_json(&self) -> Value {
        json!({
            "window": self.window,
            "rate": self.rate,
            "size": self.size,
            "warmup": self.warmup,
            "seconds": self.duration,
        })
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{flag} must be a number of seconds ≥ 0, not {value}"))
}
