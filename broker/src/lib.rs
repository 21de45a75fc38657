//! The Quip broker as a library: `quip-broker`'s `main.rs` only parses the config and
//! calls [`Broker::start`]. Tests do the same with a temp data dir on port 0.
//!
//! - [`config`]: one `Config` from defaults, a TOML file, `QUIP_*` env and flags.
//! - [`store`]: `trait Store`: the embedded sled implementation (group commit) and
//!   the Redis one (cluster mode).
//! - [`cluster`]: `trait Cluster`: the single node, or nodes joined by Redis
//!   (presence, cross-node routing).
//! - [`service`]: transport-free handlers (auth, chat).
//! - [`router`]: online sessions and fan-out with a slow-consumer policy; [`queue`]:
//!   the lane queues, which cost no memory while empty.
//! - [`quic`]: the quinn endpoint and control stream; [`lane`]: delivery lanes.
//! - [`dispatch`]: requests, for every transport; [`bridge`]: the browser bridge's backend.
//! - [`metrics`]: what `GET /metrics` shows.
//! - [`shutdown`], [`server`]: lifecycle.

pub mod admin_cli;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod context;
pub mod dispatch;
pub mod lane;
pub mod limits;
pub mod metrics;
pub mod queue;
pub mod quic;
pub mod router;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;

pub use config::Config;
pub use server::{Broker, StartError};
pub use store::Durability;
