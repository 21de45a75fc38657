//! Rate limits: token buckets (GCRA, from `governor`) per connection, per user, per client
//! address, and growing delays after failed password logins of one username.
//!
//! Nothing here knows about frames or HTTP: a check returns `Err(RetryAfter)` and the caller
//! answers RATE_LIMITED with `retry_after_ms` (REST: 429 and `Retry-After`).
//!
//! - [`ConnectionLimiter`]: one per QUIC or WebSocket session; every request, and messages
//!   (send, recall, edit) on a tighter bucket.
//! - [`SharedLimiter`]: one per broker; REST requests per user (REST has no connection to
//!   hang a bucket on), login/register/refresh attempts per client address, and failure
//!   delays per username.
//!
//! A zero rate in the config means "unlimited", never a panic or a broker that refuses
//! everything. Time comes from a [`Clock`] so tests drive it with `FakeRelativeClock`
//! instead of sleeping.
//!
//! [`connections`]: how many connections (QUIC and WebSocket) the broker holds, in all
//! and per client address; its counter lives in the [`SharedLimiter`].

pub mod connections;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

/// The clock of the real broker: `std::time::Instant` (zero-sized, no calibration), named
/// rather than governor's `DefaultClock`, which changes with governor's features.
pub type SystemClock = MonotonicClock;

/// A username's failures are forgotten once it has gone this long past its last delay
/// (or its last failure, if it had no delay yet) without failing again, or
/// `login_delay_max_ms` if that is longer. Shorter, and an attacker who waits out one
/// delay would start again from free attempts; forever, and a user who mistyped last week
/// would be delayed today, and memory would grow with every username ever mistyped.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// No failure delay is longer than this, whatever the config says (a typo like an extra
/// zero must not lock an account out for years, nor overflow the clock).
pub const MAX_LOGIN_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Rate limits from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Messages (send, recall, edit) per second per connection; 0: unlimited.
    pub messages_per_sec: u32,
    /// Messages a connection may send at once after being idle; 0: same as the rate.
    pub messages_burst: u32,
    /// Requests of any kind per second per connection, and REST requests per second per
    /// user; 0: unlimited.
    pub requests_per_sec: u32,
    /// Requests at once after being idle; 0: same as the rate.
    pub requests_burst: u32,
    /// Login, register and refresh attempts per minute per client address (IPv6: per /64);
    /// also the burst. 0: unlimited.
    pub logins_per_ip_per_min: u32,
    /// Failed password logins of one username before delays start; 0 behaves as 1 (the
    /// first failure already delays the next attempt).
    pub login_failures_before_delay: u32,
    /// The first delay; it doubles with each further failure. 0: no delays.
    pub login_delay_base_ms: u64,
    /// The longest delay (itself at most [`MAX_LOGIN_DELAY`]). 0: no delays.
    pub login_delay_max_ms: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            messages_per_sec: 50,
            messages_burst: 100,
            requests_per_sec: 200,
            requests_burst: 400,
            logins_per_ip_per_min: 30,
            login_failures_before_delay: 3,
            login_delay_base_ms: 1_000,
            login_delay_max_ms: 300_000,
        }
    }
}

impl RateLimits {
    /// `rate` per second with `burst` (0: the rate); `None` when the rate is 0 (unlimited).
    fn per_second(rate: u32, burst: u32) -> Option<Quota> {
        let rate = NonZeroU32::new(rate)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Quota::per_second(rate).allow_burst(burst))
    }

    fn messages_quota(&self) -> Option<Quota> {
        Self::per_second(self.messages_per_sec, self.messages_burst)
    }

    fn requests_quota(&self) -> Option<Quota> {
        Self::per_second(self.requests_per_sec, self.requests_burst)
    }

    fn logins_quota(&self) -> Option<Quota> {
        NonZeroU32::new(self.logins_per_ip_per_min).map(Quota::per_minute)
    }

    /// The delay set by the `failures`-th consecutive failure: none before the threshold,
    /// then `base * 2^(failures - threshold)`, capped.
    fn login_delay(&self, failures: u32) -> Duration {
        let threshold = self.login_failures_before_delay.max(1);
        if failures < threshold {
            return Duration::ZERO;
        }
        let cap = Duration::from_millis(self.login_delay_max_ms).min(MAX_LOGIN_DELAY);
        let doubling = 1u64.checked_shl(failures - threshold).unwrap_or(u64::MAX);
        Duration::from_millis(self.login_delay_base_ms.saturating_mul(doubling)).min(cap)
    }

    fn delays_enabled(&self) -> bool {
        self.login_delay_base_ms > 0 && self.login_delay_max_ms > 0
    }
}

/// Too fast: try again after this long (always >= 1 ms, in whole milliseconds, so
/// `retry_after_ms` is never 0 and never promises less than the wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Rounds `wait` up to whole milliseconds, at least 1.
    pub fn new(wait: Duration) -> Self {
        let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
        Self(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
    }

    /// For `Error.retry_after_ms` (saturating, at least 1).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// For the HTTP `Retry-After` header: whole seconds, rounded up, at least 1.
    pub fn as_header_secs(self) -> u64 {
        self.as_millis().div_ceil(1000)
    }

    fn from_not_until<C: Clock>(refusal: &NotUntil<C::Instant>, clock: &C) -> Self {
        Self::new(refusal.wait_time_from(clock.now()))
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited, retry after {} ms", self.as_millis())
    }
}

/// Which limit refused a request: the label of `quip_rate_limited_total` (see
/// `metrics.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A connection's requests of any kind.
    Request,
    /// A connection's sends, recalls and edits.
    Message,
    /// A user's REST requests.
    RestRequest,
    /// Logins, registrations and refreshes from one client address.
    LoginAddress,
    /// A username's delay after failed passwords.
    LoginDelay,
}

impl LimitKind {
    pub const ALL: [LimitKind; 5] = [
        LimitKind::Request,
        LimitKind::Message,
        LimitKind::RestRequest,
        LimitKind::LoginAddress,
        LimitKind::LoginDelay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Request => "request",
            LimitKind::Message => "message",
            LimitKind::RestRequest => "rest_request",
            LimitKind::LoginAddress => "login_address",
            LimitKind::LoginDelay => "login_delay",
        }
    }
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Checks one cell of an optional (None: unlimited) direct limiter.
fn check_direct<C: Clock>(limiter: Option<&Direct<C>>) -> Result<(), RetryAfter> {
    match limiter {
        None => Ok(()),
        Some(l) => l
            .check()
            .map_err(|refusal| RetryAfter::from_not_until(&refusal, l.clock())),
    }
}

/// Checks one cell of `key` in an optional (None: unlimited) keyed limiter.
fn check_keyed<K, C>(limiter: Option<&Keyed<K, C>>, key: &K) -> Result<(), RetryAfter>
where
    K: std::hash::Hash + Eq + Clone,
    C: Clock,
{
    match limiter {
        None => Ok(()),
        Some(l) => l
            .check_key(key)
            .map_err(|refusal| RetryAfter::from_not_until(&refusal, l.clock())),
    }
}

/// The limits of one connection (QUIC or WebSocket session). Small: one per connection
/// (two optional buckets of a few words each; with [`SystemClock`], no clock state).
pub struct ConnectionLimiter<C: Clock = SystemClock> {
    requests: Option<Direct<C>>,
    messages: Option<Direct<C>>,
}

impl ConnectionLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self::with_clock(limits, &SystemClock::default())
    }
}

impl<C: Clock + Clone> ConnectionLimiter<C> {
    /// With a given clock (tests: a `FakeRelativeClock`, whose clones share one time).
    pub fn with_clock(limits: &RateLimits, clock: &C) -> Self {
        Self {
            requests: limits
                .requests_quota()
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            messages: limits
                .messages_quota()
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
        }
    }
}

impl<C: Clock> ConnectionLimiter<C> {
    /// Every request on the connection, messages included (call this first, then
    /// [`message`](Self::message) for sends, recalls and edits).
    pub fn request(&self) -> Result<(), RetryAfter> {
        check_direct(self.requests.as_ref())
    }

    /// A send, recall or edit: the costly requests (stored, fanned out, pushed).
    pub fn message(&self) -> Result<(), RetryAfter> {
        check_direct(self.messages.as_ref())
    }
}

impl<C: Clock> fmt::Debug for ConnectionLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("requests_limited", &self.requests.is_some())
            .field("messages_limited", &self.messages.is_some())
            .finish()
    }
}

/// Consecutive failed logins of one username.
#[derive(Debug, Clone, Copy)]
struct Failures<I> {
    count: u32,
    /// No attempt before this; also where [`FAILURE_MEMORY`] starts counting.
    until: I,
}

/// Per-key limits shared by the whole broker: REST requests per user, logins per IP,
/// failed logins per username.
pub struct SharedLimiter<C: Clock = SystemClock> {
    limits: RateLimits,
    clock: C,
    users: Option<Keyed<String, C>>,
    logins: Option<Keyed<IpAddr, C>>,
    /// Lowercased username → its failures. Only usernames that failed recently.
    failures: DashMap<String, Failures<C::Instant>>,
    /// Refusals so far, by [`LimitKind`] (index: its place in `LimitKind::ALL`).
    refusals: [AtomicU64; LimitKind::ALL.len()],
    /// Connections held, in all and per address (limits come from the config).
    connections: connections::ConnectionCounter,
}

impl SharedLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self::with_clock(limits, SystemClock::default())
    }
}

impl<C: Clock + Clone> SharedLimiter<C> {
    /// With a given clock (tests: a `FakeRelativeClock`, whose clones share one time).
    pub fn with_clock(limits: &RateLimits, clock: C) -> Self {
        Self {
            users: limits
                .requests_quota()
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            logins: limits
                .logins_quota()
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            failures: DashMap::new(),
            refusals: Default::default(),
            connections: connections::ConnectionCounter::new(),
            limits: limits.clone(),
            clock,
        }
    }
}

impl<C: Clock> SharedLimiter<C> {
    /// The broker's connection counter (QUIC and WebSocket).
    pub fn connections(&self) -> &connections::ConnectionCounter {
        &self.connections
    }

    /// A REST request of `user_id` (over the connection-less API, the user is the bucket).
    pub fn user_request(&self, user_id: &str) -> Result<(), RetryAfter> {
        // Unlimited: skip the key's allocation.
        if self.users.is_none() {
            return Ok(());
        }
        check_keyed(self.users.as_ref(), &user_id.to_owned())
            .inspect_err(|_| self.count_refusal(LimitKind::RestRequest))
    }

    /// Before checking a password: refuses when the IP is over its rate or the username is
    /// in a failure delay. Also for register and refresh (pass an empty username: no
    /// username delay applies). The username delay is checked first, so a refused attempt
    /// does not also spend the address's budget.
    pub fn login_attempt(&self, ip: IpAddr, username: &str) -> Result<(), RetryAfter> {
        if !username.is_empty() && self.limits.delays_enabled() {
            let key = username_key(username);
            if let Some(f) = self.failures.get(&key) {
                let now = self.clock.now();
                if f.until > now {
                    self.count_refusal(LimitKind::LoginDelay);
                    return Err(RetryAfter::new(f.until.duration_since(now).into()));
                }
            }
        }
        check_keyed(self.logins.as_ref(), &address_key(ip))
            .inspect_err(|_| self.count_refusal(LimitKind::LoginAddress))
    }

    /// Counts a refusal. The shared limits count their own; connections' limiters
    /// (one per connection) are counted here by whoever checked them.
    pub fn count_refusal(&self, kind: LimitKind) {
        self.refusals[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far, by kind (for `GET /metrics`).
    pub fn refusals(&self) -> [(LimitKind, u64); LimitKind::ALL.len()] {
        LimitKind::ALL.map(|kind| (kind, self.refusals[kind as usize].load(Ordering::Relaxed)))
    }

    /// Counts a failed password login of `username`; from the N-th consecutive failure
    /// (`login_failures_before_delay`) on, the next attempt must wait
    /// `base * 2^(failures - N)`, capped at `login_delay_max_ms`. Failures older than
    /// [`FAILURE_MEMORY`] are forgotten first.
    pub fn login_failed(&self, username: &str) {
        if !self.limits.delays_enabled() {
            return;
        }
        let now = self.clock.now();
        let memory = self.failure_memory();
        let mut entry = self
            .failures
            .entry(username_key(username))
            .or_insert(Failures {
                count: 0,
                until: now,
            });
        if now.duration_since(entry.until) >= memory {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        let delay = self.limits.login_delay(entry.count);
        let until = now + Nanos::from(delay);
        // Concurrent attempts: a later failure never shortens a delay already set.
        if until > entry.until {
            entry.until = until;
        }
    }

    /// A successful login clears the username's failures.
    pub fn login_succeeded(&self, username: &str) {
        if !self.failures.is_empty() {
            self.failures.remove(&username_key(username));
        }
    }

    /// Drops state that no longer limits anyone (call every minute or so) so memory stays
    /// bounded: buckets that have refilled completely, and failures past their memory.
    pub fn sweep(&self) {
        if let Some(users) = &self.users {
            users.retain_recent();
            users.shrink_to_fit();
        }
        if let Some(logins) = &self.logins {
            logins.retain_recent();
            logins.shrink_to_fit();
        }
        let now = self.clock.now();
        let memory = self.failure_memory();
        self.failures
            .retain(|_, f| now.duration_since(f.until) < memory);
        self.failures.shrink_to_fit();
    }

    /// Keys held: (users, addresses, usernames with failures). For tests and metrics.
    pub fn tracked(&self) -> (usize, usize, usize) {
        (
            self.users.as_ref().map_or(0, |l| l.len()),
            self.logins.as_ref().map_or(0, |l| l.len()),
            self.failures.len(),
        )
    }

    fn failure_memory(&self) -> Nanos {
        let max = Duration::from_millis(self.limits.login_delay_max_ms).min(MAX_LOGIN_DELAY);
        Nanos::from(FAILURE_MEMORY.max(max))
    }
}

impl<C: Clock> fmt::Debug for SharedLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (users, addresses, usernames) = self.tracked();
        f.debug_struct("SharedLimiter")
            .field("limits", &self.limits)
            .field("users", &users)
            .field("addresses", &addresses)
            .field("failing_usernames", &usernames)
            .field("connections", &self.connections.total())
            .finish()
    }
}

/// Usernames are case-insensitive.
fn username_key(username: &str) -> String {
    username.to_lowercase()
}

/// The bucket of a client address: IPv4 (also when mapped into IPv6) as is; IPv6 by its
/// /64, since one client usually holds a whole /64 and could otherwise rotate addresses
/// within it to get a fresh bucket per attempt.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits() -> RateLimits {
        RateLimits {
            messages_per_sec: 2,
            messages_burst: 3,
            requests_per_sec: 10,
            requests_burst: 5,
            logins_per_ip_per_min: 4,
            login_failures_before_delay: 3,
            login_delay_base_ms: 1_000,
            login_delay_max_ms: 5_000,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_match_the_contract() {
        let d = RateLimits::default();
        assert_eq!((d.messages_per_sec, d.messages_burst), (50, 100));
        assert_eq!((d.requests_per_sec, d.requests_burst), (200, 400));
        assert_eq!(d.logins_per_ip_per_min, 30);
        assert_eq!(d.login_failures_before_delay, 3);
        assert_eq!(
            (d.login_delay_base_ms, d.login_delay_max_ms),
            (1_000, 300_000)
        );
    }

    #[test]
    fn message_burst_then_refusal_then_refill() {
        let clock = FakeRelativeClock::default();
        let c = ConnectionLimiter::with_clock(&limits(), &clock);
        for _ in 0..3 {
            c.message().unwrap();
        }
        let RetryAfter(wait) = c.message().unwrap_err();
        // 2/s: one cell every 500 ms.
        assert_eq!(wait, ms(500));
        clock.advance(ms(499));
        assert_eq!(c.message().unwrap_err(), RetryAfter(ms(1)));
        clock.advance(ms(1));
        c.message().unwrap();
        assert!(c.message().is_err());
        // Idle long enough, the whole burst is back.
        clock.advance(Duration::from_secs(10));
        for _ in 0..3 {
            c.message().unwrap();
        }
        assert!(c.message().is_err());
    }

    #[test]
    fn requests_and_messages_are_separate_buckets() {
        let clock = FakeRelativeClock::default();
        let c = ConnectionLimiter::with_clock(&limits(), &clock);
        for _ in 0..3 {
            c.message().unwrap();
        }
        assert!(c.message().is_err());
        for _ in 0..5 {
            c.request().unwrap();
        }
        let RetryAfter(wait) = c.request().unwrap_err();
        assert_eq!(wait, ms(100));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let clock = FakeRelativeClock::default();
        let zero = RateLimits {
            messages_per_sec: 0,
            messages_burst: 0,
            requests_per_sec: 0,
            requests_burst: 7,
            logins_per_ip_per_min: 0,
            login_failures_before_delay: 0,
            login_delay_base_ms: 0,
            login_delay_max_ms: 0,
        };
        let c = ConnectionLimiter::with_clock(&zero, &clock);
        let s = SharedLimiter::with_clock(&zero, clock.clone());
        for _ in 0..10_000 {
            c.request().unwrap();
            c.message().unwrap();
            s.user_request("u1").unwrap();
            s.login_attempt(ip("192.0.2.1"), "alice").unwrap();
            s.login_failed("alice");
        }
        assert_eq!(s.tracked(), (0, 0, 0));
        // The real-clock constructors too.
        let c = ConnectionLimiter::new(&zero);
        let s = SharedLimiter::new(&zero);
        for _ in 0..1_000 {
            c.message().unwrap();
            s.login_attempt(ip("::1"), "bob").unwrap();
        }
    }

    #[test]
    fn zero_burst_means_the_rate_and_huge_values_do_not_panic() {
        let clock = FakeRelativeClock::default();
        let l = RateLimits {
            messages_per_sec: 4,
            messages_burst: 0,
            requests_per_sec: u32::MAX,
            requests_burst: u32::MAX,
            logins_per_ip_per_min: u32::MAX,
            login_failures_before_delay: u32::MAX,
            login_delay_base_ms: u64::MAX,
            login_delay_max_ms: u64::MAX,
        };
        let c = ConnectionLimiter::with_clock(&l, &clock);
        for _ in 0..4 {
            c.message().unwrap();
        }
        assert_eq!(c.message().unwrap_err(), RetryAfter(ms(250)));
        for _ in 0..1_000 {
            c.request().unwrap();
        }
        let s = SharedLimiter::with_clock(&l, clock.clone());
        for _ in 0..100 {
            s.login_failed("x");
        }
        s.login_attempt(ip("192.0.2.1"), "x").unwrap();
        // Huge base and max: the delay is capped at a day.
        let huge = RateLimits {
            login_failures_before_delay: 1,
            ..l
        };
        let s = SharedLimiter::with_clock(&huge, clock.clone());
        for _ in 0..200 {
            s.login_failed("x");
        }
        let RetryAfter(wait) = s.login_attempt(ip("192.0.2.1"), "x").unwrap_err();
        assert_eq!(wait, MAX_LOGIN_DELAY);
    }

    #[test]
    fn rest_requests_are_per_user() {
        let clock = FakeRelativeClock::default();
        let s = SharedLimiter::with_clock(&limits(), clock.clone());
        for _ in 0..5 {
            s.user_request("u1").unwrap();
        }
        assert_eq!(s.user_request("u1").unwrap_err(), RetryAfter(ms(100)));
        s.user_request("u2").unwrap();
        clock.advance(ms(100));
        s.user_request("u1").unwrap();
    }

    #[test]
    fn logins_are_limited_per_address() {
        let clock = FakeRelativeClock::default();
        let s = SharedLimiter::with_clock(&limits(), clock.clone());
        let a = ip("192.0.2.1");
        for i in 0..4 {
            s.login_attempt(a, &format!("user{i}")).unwrap();
        }
        // 4 per minute: one every 15 s.
        assert_eq!(
            s.login_attempt(a, "someone").unwrap_err(),
            RetryAfter(Duration::from_secs(15))
        );
        // Register/refresh (no username) share the budget.
        assert!(s.login_attempt(a, "").is_err());
        // Another address is untouched; the same v4 address mapped into v6 is not.
        s.login_attempt(ip("192.0.2.2"), "user0").unwrap();
        assert!(s.login_attempt(ip("::ffff:192.0.2.1"), "user0").is_err());
        clock.advance(Duration::from_secs(15));
        s.login_attempt(a, "someone").unwrap();
        assert!(s.login_attempt(a, "someone").is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let clock = FakeRelativeClock::default();
        let s = SharedLimiter::with_clock(&limits(), clock.clone());
        for i in 1..=4 {
            s.login_attempt(ip(&format!("2001:db8:1:2::{i}")), "u")
                .unwrap();
        }
        assert!(s.login_attempt(ip("2001:db8:1:2:ffff::9"), "u").is_err());
        s.login_attempt(ip("2001:db8:1:3::1"), "u").unwrap();
    }

    #[test]
    fn failure_delays_grow_cap_and_clear_on_success() {
        let clock = FakeRelativeClock::default();
        let s = SharedLimiter::with_clock(&limits(), clock.clone());
        let a = ip("192.0.2.1");
        let attempt = || s.login_attempt(a, "Alice");
        // Two failures: no delay yet.
        for _ in 0..2 {
            s.login_failed("alice");
            attempt().unwrap();
            clock.advance(Duration::from_secs(15));
        }
        // Third: 1 s, then 2 s, 4 s, then capped at 5 s.
        for expected in [1_000, 2_000, 4_000, 5_000, 5_000] {
            s.login_failed("ALICE");
            assert_eq!(attempt().unwrap_err(), RetryAfter(ms(expected)));
            clock.advance(ms(expected - 1));
            assert_eq!(attempt().unwrap_err(), RetryAfter(ms(1)));
            clock.advance(ms(1));
            // The delay is over; (keep well under the per-address rate).
            clock.advance(Duration::from_secs(15));
            attempt().unwrap();
        }
        // Other usernames are not delayed.
        s.login_failed("alice");
        s.login_attempt(ip("192.0.2.9"), "bob").unwrap();
        assert!(attempt().is_err());
        // Success clears everything: the next failure is a free one again.
        s.login_succeeded("aLiCe");
        attempt().unwrap();
        s.login_failed("alice");
        clock.advance(Duration::from_secs(15));
        attempt().unwrap();
    }

    #[test]
    fn failures_are_forgotten_after_a_while() {
        let clock = FakeRelativeClock::default();
        let s = SharedLimiter::with_clock(&limits(), clock.clone());
        for _ in 0..2 {
            s.login_failed("carol");
        }
        clock.advance(FAILURE_MEMORY);
        // Without a sweep: the old failures do not count towards the threshold.
        s.login_failed("carol");
        s.login_attempt(ip("192.0.2.1"), "carol").unwrap();
        s.login_failed("carol");
        s.login_failed("carol");
        assert!(s.login_attempt(ip("192.0.2.1"), "carol").is_err());
    }

    #[test]
    fn sweep_forgets_idle_keys() {
        let clock = FakeRelativeClock::default();
        let s = SharedLimiter::with_clock(&limits(), clock.clone());
        s.user_request("u1").unwrap();
        s.user_request("u2").unwrap();
        s.login_attempt(ip("192.0.2.1"), "dave").unwrap();
        s.login_attempt(ip("2001:db8::1"), "dave").unwrap();
        for _ in 0..5 {
            s.login_failed("dave");
        }
        s.login_failed("erin");
        assert_eq!(s.tracked(), (2, 2, 2));
        // Still limiting: nothing goes.
        s.sweep();
        assert_eq!(s.tracked(), (2, 2, 2));
        // Buckets refilled (logins: a minute at most).
        clock.advance(Duration::from_secs(60));
        s.sweep();
        assert_eq!(s.tracked(), (0, 0, 2));
        // Failures past their memory.
        clock.advance(FAILURE_MEMORY);
        s.sweep();
        assert_eq!(s.tracked(), (0, 0, 0));
        // And a forgotten username starts from scratch.
        s.login_failed("dave");
        s.login_attempt(ip("192.0.2.1"), "dave").unwrap();
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(RetryAfter::new(Duration::ZERO).0, ms(1));
        assert_eq!(RetryAfter::new(Duration::from_nanos(1)).0, ms(1));
        assert_eq!(RetryAfter::new(Duration::from_micros(1_500)).0, ms(2));
        assert_eq!(RetryAfter::new(ms(7)).as_millis(), 7);
        assert_eq!(RetryAfter::new(ms(1)).as_header_secs(), 1);
        assert_eq!(RetryAfter::new(ms(1_000)).as_header_secs(), 1);
        assert_eq!(RetryAfter::new(ms(1_001)).as_header_secs(), 2);
        assert_eq!(RetryAfter::new(Duration::MAX).as_millis(), u64::MAX);
    }

    #[test]
    fn connection_limiter_is_small() {
        assert!(std::mem::size_of::<ConnectionLimiter>() <= 128);
    }
}
