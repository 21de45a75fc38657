//! A small pool of client QUIC endpoints (UDP sockets) shared by many clients.
//!
//! Without it every SDK client binds its own socket and runs its own endpoint
//! driver task: with thousands of clients that is thousands of sockets and tasks
//! competing for two cores, which measures the load generator instead of the broker.
//! A handful of endpoints keeps the work per packet the same while spreading it over
//! a few driver tasks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use quip_sdk::quinn;

#[derive(Debug)]
pub struct EndpointPool {
    endpoints: Vec<quinn::Endpoint>,
    next: AtomicUsize,
}

impl EndpointPool {
    /// `size` endpoints (at least one) bound to ephemeral loopback ports of the
    /// broker's address family. Needs a tokio runtime.
    pub fn new(size: usize, broker: SocketAddr) -> std::io::Result<EndpointPool> {
        let local = match broker.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let endpoints = (0..size.max(1))
            .map(|_| quinn::Endpoint::client(SocketAddr::new(local, 0)))
            .collect::<std::io::Result<_>>()?;
        Ok(EndpointPool {
            endpoints,
            next: AtomicUsize::new(0),
        })
    }

    /// The next endpoint, round-robin.
    pub fn next(&self) -> quinn::Endpoint {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints[i].clone()
    }
}
