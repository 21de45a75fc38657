//! The live progress bar on stderr: users registered during setup, then the phase,
//! elapsed time, msgs/s and p99 of the last second while load runs.
//!
//! stdout stays clean for the JSON result. indicatif draws nothing when stderr is not
//! a terminal (or `TERM` is dumb), and `--quiet` hides the bar everywhere.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::Phase;

/// How often the elapsed time is redrawn between the sampler's updates.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// A cheap handle (clones share the bar).
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

/// The last second as the progress bar shows it.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub phase: Phase,
    pub acked_per_sec: f64,
    pub delivered_per_sec: f64,
    pub ack_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        };
        Progress { bar }
    }

    /// Switches to counting `len` setup steps (users registered and connected).
    pub fn setup(&self, what: &str, len: u64) {
        self.bar.set_style(style(
            "{prefix:>8.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        ));
        self.bar.set_prefix(Phase::Setup.name());
        self.bar.set_message(what.to_owned());
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.reset_elapsed();
        self.bar.reset_eta();
        self.bar.enable_steady_tick(REDRAW_EVERY);
    }

    /// One setup step done.
    pub fn step(&self) {
        self.bar.inc(1);
    }

    /// Switches to the load view: a bar over `total` (warm-up plus measure), or just
    /// the elapsed time when the load has no fixed length (`None`).
    pub fn load(&self, phase: Phase, total: Option<Duration>) {
        self.bar.set_prefix(phase.name());
        self.bar.set_message("");
        self.bar.set_position(0);
        match total {
            Some(total) => {
                self.bar
                    .set_length(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
                self.bar.set_style(style(
                    "{prefix:>8.bold} [{bar:30.green/blue}] {elapsed:>4} {msg}",
                ));
            }
            None => {
                self.bar.unset_length();
                self.bar
                    .set_style(style("{prefix:>8.bold} {spinner} {elapsed:>4} {msg}"));
            }
        }
        self.bar.reset_elapsed();
    }

    /// The phase changed (warm-up to measure, measure to drain).
    pub fn phase(&self, phase: Phase) {
        self.bar.set_prefix(phase.name());
    }

    /// The sampler's view of the last second. Ignored during setup, which shows its
    /// own count instead.
    pub fn status(&self, status: Status) {
        if status.phase == Phase::Setup {
            return;
        }
        if let Some(length) = self.bar.length() {
            let elapsed = u64::try_from(self.bar.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.bar.set_position(elapsed.min(length));
        }
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
        self.bar.set_message(format!(
            "acked {}/s  delivered {}/s  p99 ack {}  e2e {}",
            si(status.acked_per_sec),
            si(status.delivered_per_sec),
            ms(status.ack_p99_ms),
            ms(status.e2e_p99_ms),
        ));
    }

    /// Removes the bar (before the result is printed).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("=> ")
}

/// 12345.0 → "12.3k": rates in a fixed, short width.
fn si(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.2}M", value / 1_000_000.0)
    } else if value >= 1_000.0 {
        format!("{:.1}k", value / 1_000.0)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_shown_short() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_500_000.0), "2.50M");
    }
}
