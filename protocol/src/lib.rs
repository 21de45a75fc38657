//! Quip's wire contract, shared by the broker, the SDK and the browser bridge.
//!
//! Like `quinn-proto`, this crate does no I/O and reads no clock: everything here is a
//! pure function of its inputs, so it is tested without sockets.
//!
//! - [`pb`]: the protobuf schema (`proto/quip/v1/*.proto`), generated at build time.
//! - [`codec`]: varint-length-delimited frames with a size limit.
//! - [`ids`]: user, group, message and conversation ids and their rules.
//! - [`error`]: stable error codes and their names.
//! - [`json`]: the browser JSON format (SimpleIM-compatible) to and from protobuf.
//! - [`order`]: per-conversation in-order release, dedup and gap detection.

pub mod codec;
pub mod error;
pub mod ids;
pub mod json;
pub mod order;

/// Generated protobuf types, package `quip.v1`.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/quip.v1.rs"));
}

pub use codec::{FrameDecoder, FrameError, decode_datagram, encode_frame, encode_frame_bytes};
pub use error::ErrorCode;
pub use pb::{ClientFrame, ServerFrame, client_frame, server_frame};

/// The ALPN protocol id negotiated on every Quip QUIC connection.
pub const ALPN: &[u8] = b"quip/1";

/// Default limit on one encoded frame (1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Default number of delivery lanes per connection.
pub const DEFAULT_LANES: u32 = 4;

/// Upper bound on lanes a client may ask for.
pub const MAX_LANES: u32 = 64;

/// The lane that carries a conversation: stable for the life of a connection so that
/// one conversation is always in order, while different conversations do not block
/// each other behind a lost packet.
pub fn lane_for(conv_id: &str, lanes: u32) -> u32 {
    // FNV-1a: tiny, stable across processes and versions (unlike std's SipHash keys).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in conv_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % lanes.max(1)
}
