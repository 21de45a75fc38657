//! Connection admission: how many connections the broker holds in all and per client
//! address, QUIC and WebSocket together, and how many QUIC handshakes are in progress.
//!
//! A connection takes a [`ConnectionSlot`] before any work is done for it (before the
//! QUIC handshake, before the WebSocket upgrade) and holds it until it ends: dropping
//! the slot gives it back. Refusals are `TOO_MANY_CONNECTIONS` (QUIC: the application
//! close code; WebSocket: HTTP 429 with the JSON error).
//!
//! The limits are passed to each [`ConnectionCounter::try_acquire`] (they come from
//! the config), so the counter itself is built once with no configuration. Addresses
//! are counted by the same key as login limits: IPv4 as is, IPv6 per /64. Only
//! addresses holding a connection have an entry, so memory follows the connections.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use quip_protocol::{ErrorCode, pb};

use super::address_key;
use crate::config::Config;

/// The connection limits of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections in all (QUIC and WebSocket).
    pub max_total: usize,
    /// Connections from one client address (IPv6: per /64); 0 = no limit.
    pub max_per_address: u32,
}

impl ConnectionLimits {
    pub fn of(config: &Config) -> Self {
        Self {
            max_total: config.max_connections,
            max_per_address: config.max_connections_per_ip,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The broker holds `max_connections` already.
    Total,
    /// The client's address holds `max_connections_per_ip` already.
    PerAddress,
}

impl Refused {
    /// The reason given to the client (QUIC close reason, JSON error message).
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "the broker is at its connection limit",
            Refused::PerAddress => "too many connections from this address",
        }
    }

    /// The error the client gets: always TOO_MANY_CONNECTIONS.
    pub fn to_pb(self) -> pb::Error {
        pb::Error::new(ErrorCode::TooManyConnections, self.reason())
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: AtomicUsize,
    per_address: DashMap<IpAddr, u32>,
    handshakes: AtomicUsize,
    retries: AtomicU64,
    refused: AtomicU64,
}

/// The connections of one broker, shared by the QUIC accept loop and the WebSocket
/// bridge. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounter {
    counts: Arc<Counts>,
}

impl ConnectionCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a slot for a connection from `ip`, or says which limit refuses it (and
    /// counts the refusal).
    pub fn try_acquire(
        &self,
        ip: IpAddr,
        limits: ConnectionLimits,
    ) -> Result<ConnectionSlot, Refused> {
        let counts = &self.counts;
        let taken = counts
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits.max_total).then_some(n + 1)
            });
        if taken.is_err() {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        // From here on, dropping `slot` gives back what it holds.
        let mut slot = ConnectionSlot {
            counts: counts.clone(),
            address: None,
        };
        if limits.max_per_address > 0 {
            let key = address_key(ip);
            let mut held = counts.per_address.entry(key).or_insert(0);
            if *held >= limits.max_per_address {
                drop(held);
                counts.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerAddress);
            }
            *held += 1;
            slot.address = Some(key);
        }
        Ok(slot)
    }

    /// Connections held, QUIC and WebSocket.
    pub fn total(&self) -> usize {
        self.counts.total.load(Ordering::Acquire)
    }

    /// Connections held by `ip`'s address key (only counted while the per-address limit
    /// is on).
    pub fn from_address(&self, ip: IpAddr) -> u32 {
        self.counts
            .per_address
            .get(&address_key(ip))
            .map_or(0, |n| *n)
    }

    /// Addresses holding at least one connection (memory check for tests).
    pub fn addresses(&self) -> usize {
        self.counts.per_address.len()
    }

    /// Connections refused so far, either limit.
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }

    /// Marks a QUIC handshake as in progress until the guard is dropped.
    pub fn handshake(&self) -> HandshakeGuard {
        self.counts.handshakes.fetch_add(1, Ordering::AcqRel);
        HandshakeGuard {
            counts: self.counts.clone(),
        }
    }

    /// QUIC handshakes in progress.
    pub fn handshakes(&self) -> usize {
        self.counts.handshakes.load(Ordering::Acquire)
    }

    /// Counts a QUIC Retry sent (address validation).
    pub fn retry_sent(&self) {
        self.counts.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// QUIC Retry packets sent so far.
    pub fn retries(&self) -> u64 {
        self.counts.retries.load(Ordering::Relaxed)
    }
}

/// A connection's place in the counts; dropping it frees the place.
#[must_use = "the slot is freed when dropped"]
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: Arc<Counts>,
    /// The address key counted, when the per-address limit is on.
    address: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(key) = self.address {
            if let Entry::Occupied(mut held) = self.counts.per_address.entry(key) {
                if *held.get() <= 1 {
                    held.remove();
                } else {
                    *held.get_mut() -= 1;
                }
            }
        }
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A QUIC handshake in progress; dropping it ends it.
#[must_use = "the handshake is counted until this is dropped"]
#[derive(Debug)]
pub struct HandshakeGuard {
    counts: Arc<Counts>,
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.counts.handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(max_total: usize, max_per_address: u32) -> ConnectionLimits {
        ConnectionLimits {
            max_total,
            max_per_address,
        }
    }

    #[test]
    fn per_address_limit_refuses_then_frees_on_drop() {
        let counter = ConnectionCounter::new();
        let l = limits(100, 3);
        let a = ip("192.0.2.1");
        let mut held: Vec<_> = (0..3).map(|_| counter.try_acquire(a, l).unwrap()).collect();
        assert_eq!(counter.try_acquire(a, l).unwrap_err(), Refused::PerAddress);
        // Another address is not affected; the mapped form of `a` is `a`.
        let other = counter.try_acquire(ip("192.0.2.2"), l).unwrap();
        assert_eq!(
            counter.try_acquire(ip("::ffff:192.0.2.1"), l).unwrap_err(),
            Refused::PerAddress
        );
        assert_eq!((counter.total(), counter.from_address(a)), (4, 3));
        assert_eq!(counter.refused(), 2);
        held.pop();
        assert_eq!(counter.from_address(a), 2);
        held.push(counter.try_acquire(a, l).unwrap());
        drop(held);
        drop(other);
        assert_eq!((counter.total(), counter.addresses()), (0, 0));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let counter = ConnectionCounter::new();
        let l = limits(100, 2);
        let _a = counter.try_acquire(ip("2001:db8:1:2::1"), l).unwrap();
        let _b = counter.try_acquire(ip("2001:db8:1:2:ffff::9"), l).unwrap();
        assert_eq!(
            counter.try_acquire(ip("2001:db8:1:2::3"), l).unwrap_err(),
            Refused::PerAddress
        );
        let _c = counter.try_acquire(ip("2001:db8:1:3::1"), l).unwrap();
        assert_eq!(counter.addresses(), 2);
    }

    #[test]
    fn total_limit_spans_addresses_and_zero_per_address_is_off() {
        let counter = ConnectionCounter::new();
        let l = limits(3, 0);
        let held: Vec<_> = (0..3)
            .map(|_| counter.try_acquire(ip("192.0.2.1"), l).unwrap())
            .collect();
        assert_eq!(
            counter.try_acquire(ip("198.51.100.7"), l).unwrap_err(),
            Refused::Total
        );
        // Unlimited per address: nothing is tracked per address.
        assert_eq!(counter.addresses(), 0);
        drop(held);
        assert_eq!(counter.total(), 0);
        let _one = counter.try_acquire(ip("198.51.100.7"), l).unwrap();
    }

    #[test]
    fn a_per_address_refusal_gives_back_its_total_place() {
        let counter = ConnectionCounter::new();
        let l = limits(2, 1);
        let _a = counter.try_acquire(ip("192.0.2.1"), l).unwrap();
        for _ in 0..10 {
            assert_eq!(
                counter.try_acquire(ip("192.0.2.1"), l).unwrap_err(),
                Refused::PerAddress
            );
        }
        assert_eq!(counter.total(), 1);
        let _b = counter.try_acquire(ip("192.0.2.2"), l).unwrap();
        assert_eq!(
            counter.try_acquire(ip("192.0.2.3"), l).unwrap_err(),
            Refused::Total
        );
        assert_eq!(counter.addresses(), 2);
    }

    #[test]
    fn slots_are_shared_across_threads() {
        let counter = ConnectionCounter::new();
        let l = limits(1_000, 25);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let counter = counter.clone();
                scope.spawn(move || {
                    for _ in 0..200 {
                        let held: Vec<_> = (0..10)
                            .filter_map(|_| counter.try_acquire(ip("192.0.2.1"), l).ok())
                            .collect();
                        assert!(counter.from_address(ip("192.0.2.1")) <= 25, "thread {t}");
                        drop(held);
                    }
                });
            }
        });
        assert_eq!((counter.total(), counter.addresses()), (0, 0));
    }

    #[test]
    fn handshakes_and_retries_are_counted() {
        let counter = ConnectionCounter::new();
        let first = counter.handshake();
        let second = counter.handshake();
        assert_eq!(counter.handshakes(), 2);
        drop(first);
        assert_eq!(counter.handshakes(), 1);
        drop(second);
        assert_eq!(counter.handshakes(), 0);
        counter.retry_sent();
        assert_eq!(counter.retries(), 1);
    }

    #[test]
    fn refusals_are_too_many_connections() {
        for refused in [Refused::Total, Refused::PerAddress] {
            let error = refused.to_pb();
            assert_eq!(error.error_code(), ErrorCode::TooManyConnections);
            assert!(!error.message.is_empty());
        }
    }
}
