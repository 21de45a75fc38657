//! Reconnect timing: exponential backoff with jitter.
//!
//! After a broker restart every client reconnects at once; doubling delays spread
//! the retries out over time and the jitter breaks up the herd that would otherwise
//! retry in lock-step.

use std::time::Duration;

/// When and whether to reconnect after a lost connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt; each further attempt doubles it.
    pub initial: Duration,
    /// Upper bound on one delay.
    pub max: Duration,
    /// Relative jitter: each delay is multiplied by a random factor in
    /// `1 - jitter ..= 1 + jitter` (clamped to `0.0..=1.0`).
    pub jitter: f64,
    /// A connection that stayed up this long counts as healthy: the next loss starts
    /// again from `initial`.
    pub healthy_after: Duration,
    /// `false` turns reconnecting off: a lost connection ends the client.
    pub enabled: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter: 0.2,
            healthy_after: Duration::from_secs(10),
            enabled: true,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (1-based), before jitter:
    /// `initial * 2^(attempt-1)`, capped at `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// [`base_delay`](Self::base_delay) with jitter applied; `unit` is a random
    /// number in `-1.0..=1.0` (taken as an argument so this stays deterministic in
    /// tests).
    pub fn jittered_delay(&self, attempt: u32, unit: f64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * unit.clamp(-1.0, 1.0);
        self.base_delay(attempt).mul_f64(factor.max(0.0))
    }
}

/// The reconnect attempt counter of one client.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    /// Attempts since the last healthy connection.
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// The next attempt's number (1-based) and how long to wait before it.
    pub(crate) fn next_delay(&mut self) -> (u32, Duration) {
        self.attempt = self.attempt.saturating_add(1);
        let unit = rand::random_range(-1.0..=1.0);
        (self.attempt, self.policy.jittered_delay(self.attempt, unit))
    }

    /// Call when a connection ends: if it lived long enough to count as healthy, the
    /// next delay starts from `initial` again.
    pub(crate) fn connection_ended(&mut self, lived: Duration) {
        if lived >= self.policy.healthy_after {
            self.attempt = 0;
        }
    }

    pub(crate) fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = ReconnectPolicy::default();
        let secs: Vec<u64> = (1..=8)
            .map(|attempt| policy.base_delay(attempt).as_secs())
            .collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(policy.base_delay(u32::MAX), Duration::from_secs(30));
        assert_eq!(policy.base_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.jittered_delay(3, -1.0), Duration::from_millis(3200));
        assert_eq!(policy.jittered_delay(3, 1.0), Duration::from_millis(4800));
        assert_eq!(policy.jittered_delay(3, 0.0), Duration::from_secs(4));
        // Out-of-range randomness is clamped rather than trusted.
        assert_eq!(policy.jittered_delay(3, 7.0), Duration::from_millis(4800));
        let mut backoff = Backoff::new(policy);
        for expected in 1..=5u32 {
            let (attempt, delay) = backoff.next_delay();
            assert_eq!(attempt, expected);
            let base = backoff.policy().base_delay(attempt);
            assert!(delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2));
        }
    }

    #[test]
    fn a_healthy_connection_resets_the_attempts() {
        let mut backoff = Backoff::new(ReconnectPolicy {
            jitter: 0.0,
            ..ReconnectPolicy::default()
        });
        backoff.next_delay();
        backoff.next_delay();
        backoff.connection_ended(Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), (3, Duration::from_secs(4)));
        backoff.connection_ended(Duration::from_secs(10));
        assert_eq!(backoff.next_delay(), (1, Duration::from_secs(1)));
    }
}
