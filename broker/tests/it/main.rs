//! Every broker integration test in one binary: one link instead of one per file keeps
//! the build (and its disk use) small. Run one area with `cargo test -p quip-broker --test it chat::`.

#![allow(dead_code)]

mod admin;
mod auth;
mod authz;
mod bad_input;
mod bridge;
mod bridge_files;
mod bridge_realtime;
mod bridge_social;
mod chat;
mod cluster;
mod common;
mod connection_limits;
mod contacts;
mod crash;
mod delivery;
mod devices;
mod files;
mod groups;
mod observability;
mod rate_limits;
mod realtime;
mod store;
mod store_redis;
