//! One `Config` for the whole broker. Sources, later ones winning:
//! built-in defaults < TOML file (`--config`) < `QUIP_*` environment < command-line flags.
//!
//! Every limit the broker enforces is a field here with a sane default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::store::Durability;

#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store, the generated TLS certificate and the JWT key live.
    pub data_dir: PathBuf,
    /// UDP address of the QUIC endpoint.
    pub quic_addr: SocketAddr,
    /// TCP address of the browser bridge (REST, WebSocket, web client); none disables it.
    pub http_addr: Option<SocketAddr>,
    /// Browser origins allowed to open WebSockets (e.g. "https://chat.example.com");
    /// empty allows any.
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message; bigger ones close the socket with 1009.
    pub ws_max_message_bytes: usize,
    /// A WebSocket silent for this long is closed (the server pings every 30 s).
    pub ws_idle_timeout_ms: u64,
    /// Largest REST request body.
    pub http_max_body_bytes: usize,
    /// PEM certificate chain; without it a self-signed certificate is generated in
    /// the data dir and reused.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// `fsync`: ACK once on disk (group commit). `os`: ACK once in the store's memory.
    pub durability: Durability,

    /// File holding the HMAC secret for access tokens; generated in the data dir when
    /// neither this nor `jwt_secret` is set.
    pub jwt_secret_file: Option<PathBuf>,
    /// The HMAC secret itself (prefer the file or `QUIP_JWT_SECRET`); never logged.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<String>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,

    /// Largest frame accepted on any stream.
    pub max_frame_bytes: usize,
    /// Largest text message body.
    pub max_text_bytes: usize,
    /// Delivery lanes when the client does not ask for a number.
    pub default_lanes: u32,
    /// Most lanes a client may ask for.
    pub max_lanes: u32,
    /// Outbound queue of one lane of one session; a full queue closes the session
    /// with SLOW_CONSUMER (it resumes from its cursor, nothing is lost).
    pub lane_queue_len: usize,
    /// Messages read from the store per step of a catch-up.
    pub sync_batch: usize,
    /// Time a new connection has to open its control stream and send Hello.
    pub hello_timeout_ms: u64,
    /// A connection silent for this long is closed (clients keep it alive with QUIC
    /// keep-alives).
    pub idle_timeout_ms: u64,
    /// Concurrent connections; more are refused.
    pub max_connections: usize,
    /// Most connections (QUIC and WebSocket together) from one client address (IPv6:
    /// per /64); 0 = no limit. Beyond it new connections are refused.
    pub max_connections_per_ip: u32,
    /// Above this many QUIC handshakes in progress, new clients must first prove their
    /// address with a Retry round trip (spoofed floods then cost no handshake state);
    /// 0 = always.
    pub quic_retry_above_handshakes: usize,
    /// QUIC flow control, sized for many connections: bytes a client may send on one
    /// stream before the broker reads them, on the whole connection, and bytes the
    /// broker buffers per connection unacknowledged.
    pub quic_stream_receive_window: u64,
    pub quic_receive_window: u64,
    pub quic_send_window: u64,
    /// Log lines as `text` (for people) or `json` (one object per line, for
    /// collectors).
    pub log_format: LogFormat,
    /// Production mode: refuses to start without a configured certificate (no
    /// self-signed one) and without an explicit JWT secret.
    pub production: bool,
    /// Receive and send buffer of the QUIC UDP socket (the kernel caps it at
    /// `net.core.rmem_max` / `wmem_max`). Tens of thousands of clients handshaking or
    /// keeping alive at once overflow a default 208 KiB buffer, and dropped packets
    /// become retransmits and timeouts.
    pub udp_buffer_bytes: usize,
    /// Requests being processed at once on one connection; more wait (backpressure).
    pub max_inflight_per_connection: usize,
    pub username_min_len: usize,
    pub username_max_len: usize,
    pub password_min_len: usize,
    pub password_max_len: usize,
    pub history_default_limit: u32,
    pub history_max_limit: u32,
    pub conversations_max_limit: u32,
    /// How long `(sender, client_msg_id)` stays deduplicated.
    pub dedup_window_secs: u64,

    /// Cluster mode: the Redis all nodes share (`redis://host:port/db`). It then holds
    /// every message, account and group instead of the embedded store, and carries
    /// presence and deliveries between nodes. None: a single node on sled.
    #[serde(skip_serializing)]
    pub redis: Option<String>,
    /// This node's id in the cluster. Default: generated once and kept in
    /// `<data_dir>/node-id`, so a restarted node keeps its id.
    pub node_id: Option<String>,
    /// A node's presence entries expire this long after its last refresh (it
    /// refreshes every third of it): how long a dead node is still thought to hold
    /// its users.
    pub cluster_presence_ttl_ms: u64,
    /// How long a node trusts where it last saw a user connected before asking Redis
    /// again (presence changes drop it sooner).
    pub cluster_route_cache_ms: u64,
    /// Where file bytes live. Default: `<data_dir>/files`.
    pub files_dir: Option<PathBuf>,
    /// Declares `files_dir` shared by every node of the cluster (a network file
    /// system). Without it, cluster nodes refuse files with UNAVAILABLE rather than
    /// store a file that other nodes could not serve.
    pub files_dir_shared: bool,
    /// Most appends applied and flushed as one batch.
    pub store_max_batch: usize,
    /// Appends that may be queued for the store writer.
    pub store_queue_len: usize,
    pub store_cache_mib: u64,
    /// Time given to connections to close on shutdown.
    pub shutdown_grace_ms: u64,
    /// Largest group; joins and invites beyond it get GROUP_FULL.
    pub max_group_members: u32,

    /// Offer QUIC datagrams for typing and presence; off, they go on the control
    /// stream (a peer without datagram support gets that anyway).
    pub datagrams: bool,
    /// Pushes (receipts, call events, typing and presence that do not go as
    /// datagrams) waiting for one session's control stream. When full, typing and
    /// presence are dropped and anything else closes the session with SLOW_CONSUMER.
    pub control_queue_len: usize,
    /// How long a typing indicator shows without a new notice.
    pub typing_expires_ms: u32,
    /// Most users in one presence query, and most online members listed for a group.
    pub max_presence_query: u32,
    /// Most seqs in one receipt-count query, and most readers per page.
    pub max_receipt_seqs: u32,
    /// How long after sending its sender may recall a message.
    pub recall_window_ms: u64,
    /// How long after sending its sender may edit a message.
    pub edit_window_ms: u64,
    /// A call nobody answers ends as missed after this long.
    pub call_ring_timeout_ms: u64,
    /// A device that drops out of a call may reconnect within this long before the
    /// call ends as disconnected.
    pub call_reconnect_grace_ms: u64,
    /// Largest SDP or ICE candidate relayed in call signalling.
    pub call_max_signal_bytes: usize,
    /// STUN/TURN server URLs handed to both sides of every call
    /// (e.g. "stun:stun.example.com:3478", "turn:turn.example.com:3478?transport=udp").
    pub ice_servers: Vec<String>,
    /// Shared secret of a TURN server using time-limited credentials (coturn's
    /// `use-auth-secret`): each call gets a username and HMAC-SHA1 password valid for
    /// `turn_credential_ttl_secs`. Without it, `turn:` URLs get no credentials.
    #[serde(skip_serializing)]
    pub turn_secret: Option<String>,
    pub turn_credential_ttl_secs: u64,

    /// Usernames that get the admin role when they register or log in (the first
    /// admin; `quip-broker admin create` is the other way).
    pub admin_usernames: Vec<String>,
    /// Longest friend-request message, in bytes.
    pub contact_request_max_bytes: usize,
    /// Sends (and recalls, edits) per second per connection, and the burst allowed
    /// above it; 0 disables the limit.
    pub rate_messages_per_sec: u32,
    pub rate_messages_burst: u32,
    /// Requests of any kind per second per connection (REST: per user), and burst.
    pub rate_requests_per_sec: u32,
    pub rate_requests_burst: u32,
    /// Login, registration and refresh attempts per minute from one IP address.
    pub rate_logins_per_ip_per_min: u32,
    /// Failed password logins of one username before each further attempt must
    /// wait; the wait starts at `login_delay_base_ms` and doubles per failure up to
    /// `login_delay_max_ms`. A successful login resets it.
    pub login_failures_before_delay: u32,
    pub login_delay_base_ms: u64,
    pub login_delay_max_ms: u64,

    /// Largest upload; bigger ones get FILE_TOO_LARGE (checked while streaming).
    pub max_file_bytes: u64,
    /// Longest side of an image thumbnail, in pixels.
    pub thumbnail_max_px: u32,
    /// File transfers (QUIC streams) one connection may run at once.
    pub max_transfers_per_connection: u32,
}

/// Every field but the secrets, which show only whether they are set: the JWT secret,
/// the TURN secret and the Redis URL (it may carry a password). The pattern names
/// every field, so a new one does not compile until it is listed here: decide then
/// whether it is a secret (and give it `#[serde(skip_serializing)]` for `print-config`).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            data_dir,
            quic_addr,
            http_addr,
            allowed_origins,
            ws_max_message_bytes,
            ws_idle_timeout_ms,
            http_max_body_bytes,
            cert,
            key,
            durability,
            jwt_secret_file,
            jwt_secret,
            access_token_ttl_secs,
            refresh_token_ttl_secs,
            max_frame_bytes,
            max_text_bytes,
            default_lanes,
            max_lanes,
            lane_queue_len,
            sync_batch,
            hello_timeout_ms,
            idle_timeout_ms,
            max_connections,
            max_connections_per_ip,
            quic_retry_above_handshakes,
            quic_stream_receive_window,
            quic_receive_window,
            quic_send_window,
            log_format,
            production,
            udp_buffer_bytes,
            max_inflight_per_connection,
            username_min_len,
            username_max_len,
            password_min_len,
            password_max_len,
            history_default_limit,
            history_max_limit,
            conversations_max_limit,
            dedup_window_secs,
            redis,
            node_id,
            cluster_presence_ttl_ms,
            cluster_route_cache_ms,
            files_dir,
            files_dir_shared,
            store_max_batch,
            store_queue_len,
            store_cache_mib,
            shutdown_grace_ms,
            max_group_members,
            datagrams,
            control_queue_len,
            typing_expires_ms,
            max_presence_query,
            max_receipt_seqs,
            recall_window_ms,
            edit_window_ms,
            call_ring_timeout_ms,
            call_reconnect_grace_ms,
            call_max_signal_bytes,
            ice_servers,
            turn_secret,
            turn_credential_ttl_secs,
            admin_usernames,
            contact_request_max_bytes,
            rate_messages_per_sec,
            rate_messages_burst,
            rate_requests_per_sec,
            rate_requests_burst,
            rate_logins_per_ip_per_min,
            login_failures_before_delay,
            login_delay_base_ms,
            login_delay_max_ms,
            max_file_bytes,
            thumbnail_max_px,
            max_transfers_per_connection,
        } = self;
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("data_dir", data_dir)
            .field("quic_addr", quic_addr)
            .field("http_addr", http_addr)
            .field("allowed_origins", allowed_origins)
            .field("ws_max_message_bytes", ws_max_message_bytes)
            .field("ws_idle_timeout_ms", ws_idle_timeout_ms)
            .field("http_max_body_bytes", http_max_body_bytes)
            .field("cert", cert)
            .field("key", key)
            .field("durability", durability)
            .field("jwt_secret_file", jwt_secret_file)
            .field("jwt_secret", &redacted(jwt_secret))
            .field("access_token_ttl_secs", access_token_ttl_secs)
            .field("refresh_token_ttl_secs", refresh_token_ttl_secs)
            .field("max_frame_bytes", max_frame_bytes)
            .field("max_text_bytes", max_text_bytes)
            .field("default_lanes", default_lanes)
            .field("max_lanes", max_lanes)
            .field("lane_queue_len", lane_queue_len)
            .field("sync_batch", sync_batch)
            .field("hello_timeout_ms", hello_timeout_ms)
            .field("idle_timeout_ms", idle_timeout_ms)
            .field("max_connections", max_connections)
            .field("max_connections_per_ip", max_connections_per_ip)
            .field("quic_retry_above_handshakes", quic_retry_above_handshakes)
            .field("quic_stream_receive_window", quic_stream_receive_window)
            .field("quic_receive_window", quic_receive_window)
            .field("quic_send_window", quic_send_window)
            .field("log_format", log_format)
            .field("production", production)
            .field("udp_buffer_bytes", udp_buffer_bytes)
            .field("max_inflight_per_connection", max_inflight_per_connection)
            .field("username_min_len", username_min_len)
            .field("username_max_len", username_max_len)
            .field("password_min_len", password_min_len)
            .field("password_max_len", password_max_len)
            .field("history_default_limit", history_default_limit)
            .field("history_max_limit", history_max_limit)
            .field("conversations_max_limit", conversations_max_limit)
            .field("dedup_window_secs", dedup_window_secs)
            .field("redis", &redacted(redis))
            .field("node_id", node_id)
            .field("cluster_presence_ttl_ms", cluster_presence_ttl_ms)
            .field("cluster_route_cache_ms", cluster_route_cache_ms)
            .field("files_dir", files_dir)
            .field("files_dir_shared", files_dir_shared)
            .field("store_max_batch", store_max_batch)
            .field("store_queue_len", store_queue_len)
            .field("store_cache_mib", store_cache_mib)
            .field("shutdown_grace_ms", shutdown_grace_ms)
            .field("max_group_members", max_group_members)
            .field("datagrams", datagrams)
            .field("control_queue_len", control_queue_len)
            .field("typing_expires_ms", typing_expires_ms)
            .field("max_presence_query", max_presence_query)
            .field("max_receipt_seqs", max_receipt_seqs)
            .field("recall_window_ms", recall_window_ms)
            .field("edit_window_ms", edit_window_ms)
            .field("call_ring_timeout_ms", call_ring_timeout_ms)
            .field("call_reconnect_grace_ms", call_reconnect_grace_ms)
            .field("call_max_signal_bytes", call_max_signal_bytes)
            .field("ice_servers", ice_servers)
            .field("turn_secret", &redacted(turn_secret))
            .field("turn_credential_ttl_secs", turn_credential_ttl_secs)
            .field("admin_usernames", admin_usernames)
            .field("contact_request_max_bytes", contact_request_max_bytes)
            .field("rate_messages_per_sec", rate_messages_per_sec)
            .field("rate_messages_burst", rate_messages_burst)
            .field("rate_requests_per_sec", rate_requests_per_sec)
            .field("rate_requests_burst", rate_requests_burst)
            .field("rate_logins_per_ip_per_min", rate_logins_per_ip_per_min)
            .field("login_failures_before_delay", login_failures_before_delay)
            .field("login_delay_base_ms", login_delay_base_ms)
            .field("login_delay_max_ms", login_delay_max_ms)
            .field("max_file_bytes", max_file_bytes)
            .field("thumbnail_max_px", thumbnail_max_px)
            .field("max_transfers_per_connection", max_transfers_per_connection)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            quic_addr: "0.0.0.0:4433".parse().expect("valid literal"),
            http_addr: Some("0.0.0.0:8080".parse().expect("valid literal")),
            allowed_origins: Vec::new(),
            ws_max_message_bytes: 64 * 1024,
            ws_idle_timeout_ms: 75_000,
            http_max_body_bytes: 1 << 20,
            cert: None,
            key: None,
            durability: Durability::Fsync,
            jwt_secret_file: None,
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            max_frame_bytes: quip_protocol::DEFAULT_MAX_FRAME_BYTES,
            max_text_bytes: 16 * 1024,
            default_lanes: quip_protocol::DEFAULT_LANES,
            max_lanes: 16,
            lane_queue_len: 1024,
            sync_batch: 256,
            hello_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_connections: 200_000,
            max_connections_per_ip: 256,
            quic_retry_above_handshakes: 256,
            quic_stream_receive_window: 1 << 20,
            quic_receive_window: 4 << 20,
            quic_send_window: 4 << 20,
            log_format: LogFormat::Text,
            production: false,
            udp_buffer_bytes: 8 << 20,
            max_inflight_per_connection: 256,
            username_min_len: 3,
            username_max_len: 32,
            password_min_len: 8,
            password_max_len: 128,
            history_default_limit: 50,
            history_max_limit: 200,
            conversations_max_limit: 200,
            dedup_window_secs: 24 * 3600,
            redis: None,
            node_id: None,
            cluster_presence_ttl_ms: 30_000,
            cluster_route_cache_ms: 1_000,
            files_dir: None,
            files_dir_shared: false,
            store_max_batch: 1024,
            store_queue_len: 16 * 1024,
            store_cache_mib: 256,
            shutdown_grace_ms: 5_000,
            max_group_members: 10_000,
            datagrams: true,
            control_queue_len: 1024,
            typing_expires_ms: 5_000,
            max_presence_query: 200,
            max_receipt_seqs: 200,
            recall_window_ms: 2 * 60 * 1000,
            edit_window_ms: 24 * 3600 * 1000,
            call_ring_timeout_ms: 45_000,
            call_reconnect_grace_ms: 15_000,
            call_max_signal_bytes: 64 * 1024,
            ice_servers: Vec::new(),
            turn_secret: None,
            turn_credential_ttl_secs: 24 * 3600,
            admin_usernames: Vec::new(),
            contact_request_max_bytes: 256,
            rate_messages_per_sec: 50,
            rate_messages_burst: 100,
            rate_requests_per_sec: 200,
            rate_requests_burst: 400,
            rate_logins_per_ip_per_min: 30,
            login_failures_before_delay: 3,
            login_delay_base_ms: 1_000,
            login_delay_max_ms: 300_000,
            max_file_bytes: 100 << 20,
            thumbnail_max_px: 320,
            max_transfers_per_connection: 8,
        }
    }
}

/// Command line and environment. Every option is optional so that only what was given
/// overrides the file and the defaults.
#[derive(Debug, Parser)]
#[command(
    name = "quip-broker",
    version,
    about = "Quip: realtime IM broker over QUIC"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file (same keys as the long options, with underscores).
    #[arg(long, env = "QUIP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (store, generated certificate, JWT key). [default: ./data]
    #[arg(long, env = "QUIP_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// QUIC (UDP) listen address. [default: 0.0.0.0:4433]
    #[arg(long, env = "QUIP_QUIC_ADDR")]
    pub quic_addr: Option<SocketAddr>,
    /// HTTP listen address of the browser bridge (REST, WebSocket, web client).
    /// [default: 0.0.0.0:8080]
    #[arg(long, env = "QUIP_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Do not serve HTTP (browsers) at all.
    #[arg(long, env = "QUIP_NO_HTTP")]
    pub no_http: bool,
    /// Origin allowed to open WebSockets; repeat for several (default: any).
    #[arg(
        long = "allowed-origin",
        env = "QUIP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message in bytes. [default: 65536]
    #[arg(long, env = "QUIP_WS_MAX_MESSAGE_BYTES")]
    pub ws_max_message_bytes: Option<usize>,
    /// WebSocket idle timeout in milliseconds. [default: 75000]
    #[arg(long, env = "QUIP_WS_IDLE_TIMEOUT_MS")]
    pub ws_idle_timeout_ms: Option<u64>,
    /// Largest REST request body in bytes. [default: 1048576]
    #[arg(long, env = "QUIP_HTTP_MAX_BODY_BYTES")]
    pub http_max_body_bytes: Option<usize>,
    /// PEM certificate chain (default: self-signed, generated in the data dir).
    #[arg(long, env = "QUIP_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, env = "QUIP_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// When a message is acknowledged: on disk (fsync, group commit) or in memory (os).
    /// [default: fsync]
    #[arg(long, env = "QUIP_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// File with the JWT HMAC secret. [default: <data-dir>/jwt.key, generated]
    #[arg(long, env = "QUIP_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Access token lifetime in seconds. [default: 900]
    #[arg(long, env = "QUIP_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// Refresh token lifetime in seconds. [default: 2592000]
    #[arg(long, env = "QUIP_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,
    /// Largest frame in bytes; bigger ones get FRAME_TOO_LARGE. [default: 1048576]
    #[arg(long, env = "QUIP_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Largest text message in bytes. [default: 16384]
    #[arg(long, env = "QUIP_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Delivery lanes per connection when the client does not choose. [default: 4]
    #[arg(long, env = "QUIP_DEFAULT_LANES")]
    pub default_lanes: Option<u32>,
    /// Most lanes a client may ask for. [default: 16]
    #[arg(long, env = "QUIP_MAX_LANES")]
    pub max_lanes: Option<u32>,
    /// Outbound queue per lane; when full the session is closed with SLOW_CONSUMER.
    /// [default: 1024]
    #[arg(long, env = "QUIP_LANE_QUEUE_LEN")]
    pub lane_queue_len: Option<usize>,
    /// Milliseconds to open the control stream and send Hello. [default: 10000]
    #[arg(long, env = "QUIP_HELLO_TIMEOUT_MS")]
    pub hello_timeout_ms: Option<u64>,
    /// Idle timeout in milliseconds. [default: 30000]
    #[arg(long, env = "QUIP_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Maximum concurrent connections. [default: 200000]
    #[arg(long, env = "QUIP_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most connections from one client address (IPv6: /64); 0 = no limit. [default:
    /// 256]
    #[arg(long, env = "QUIP_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,
    /// QUIC Retry (address validation) above this many handshakes in progress; 0 =
    /// always. [default: 256]
    #[arg(long, env = "QUIP_QUIC_RETRY_ABOVE_HANDSHAKES")]
    pub quic_retry_above_handshakes: Option<usize>,
    /// QUIC per-stream receive window in bytes. [default: 1048576]
    #[arg(long, env = "QUIP_QUIC_STREAM_RECEIVE_WINDOW")]
    pub quic_stream_receive_window: Option<u64>,
    /// QUIC per-connection receive window in bytes. [default: 4194304]
    #[arg(long, env = "QUIP_QUIC_RECEIVE_WINDOW")]
    pub quic_receive_window: Option<u64>,
    /// QUIC per-connection send window in bytes. [default: 4194304]
    #[arg(long, env = "QUIP_QUIC_SEND_WINDOW")]
    pub quic_send_window: Option<u64>,
    /// Log format: text or json. [default: text]
    #[arg(long, env = "QUIP_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Production mode: refuse a self-signed certificate and a generated JWT secret.
    #[arg(long, env = "QUIP_PRODUCTION")]
    pub production: bool,
    /// QUIC UDP socket receive/send buffer in bytes (capped by the kernel's
    /// net.core.rmem_max/wmem_max). [default: 8388608]
    #[arg(long, env = "QUIP_UDP_BUFFER_BYTES")]
    pub udp_buffer_bytes: Option<usize>,
    /// Dedup window for client_msg_id, in seconds. [default: 86400]
    #[arg(long, env = "QUIP_DEDUP_WINDOW_SECS")]
    pub dedup_window_secs: Option<u64>,
    /// Cluster mode: the Redis every node shares, e.g. redis://127.0.0.1:6379/0
    /// (prefer QUIP_REDIS when it holds a password).
    #[arg(long, env = "QUIP_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// This node's id in the cluster. [default: generated once, kept in
    /// <data_dir>/node-id]
    #[arg(long, env = "QUIP_NODE_ID")]
    pub node_id: Option<String>,
    /// Presence entries of a node expire this long after its last refresh. [default:
    /// 30000]
    #[arg(long, env = "QUIP_CLUSTER_PRESENCE_TTL_MS")]
    pub cluster_presence_ttl_ms: Option<u64>,
    /// How long a looked-up route to a user's nodes is trusted. [default: 1000]
    #[arg(long, env = "QUIP_CLUSTER_ROUTE_CACHE_MS")]
    pub cluster_route_cache_ms: Option<u64>,
    /// Where file bytes live. [default: <data_dir>/files]
    #[arg(long, env = "QUIP_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// files_dir is shared by every node of the cluster (allows files in cluster mode).
    #[arg(long, env = "QUIP_FILES_DIR_SHARED")]
    pub files_dir_shared: bool,
    /// Minimum password length. [default: 8]
    #[arg(long, env = "QUIP_PASSWORD_MIN_LEN")]
    pub password_min_len: Option<usize>,
    /// Store page cache in MiB. [default: 256]
    #[arg(long, env = "QUIP_STORE_CACHE_MIB")]
    pub store_cache_mib: Option<u64>,
    /// Messages read from the store per step of a catch-up. [default: 256]
    #[arg(long, env = "QUIP_SYNC_BATCH")]
    pub sync_batch: Option<usize>,
    /// Requests processed at once per connection. [default: 256]
    #[arg(long, env = "QUIP_MAX_INFLIGHT_PER_CONNECTION")]
    pub max_inflight_per_connection: Option<usize>,
    /// Shortest username. [default: 3]
    #[arg(long, env = "QUIP_USERNAME_MIN_LEN")]
    pub username_min_len: Option<usize>,
    /// Longest username. [default: 32]
    #[arg(long, env = "QUIP_USERNAME_MAX_LEN")]
    pub username_max_len: Option<usize>,
    /// Longest password in bytes. [default: 128]
    #[arg(long, env = "QUIP_PASSWORD_MAX_LEN")]
    pub password_max_len: Option<usize>,
    /// History page size when the request gives none. [default: 50]
    #[arg(long, env = "QUIP_HISTORY_DEFAULT_LIMIT")]
    pub history_default_limit: Option<u32>,
    /// Largest history page; bigger requests are clamped. [default: 200]
    #[arg(long, env = "QUIP_HISTORY_MAX_LIMIT")]
    pub history_max_limit: Option<u32>,
    /// Largest conversation-list page. [default: 200]
    #[arg(long, env = "QUIP_CONVERSATIONS_MAX_LIMIT")]
    pub conversations_max_limit: Option<u32>,
    /// Most appends applied and flushed as one batch. [default: 1024]
    #[arg(long, env = "QUIP_STORE_MAX_BATCH")]
    pub store_max_batch: Option<usize>,
    /// Appends that may wait for the store writer. [default: 16384]
    #[arg(long, env = "QUIP_STORE_QUEUE_LEN")]
    pub store_queue_len: Option<usize>,
    /// Milliseconds given to connections to close on shutdown. [default: 5000]
    #[arg(long, env = "QUIP_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Largest group; more members get GROUP_FULL. [default: 10000]
    #[arg(long, env = "QUIP_MAX_GROUP_MEMBERS")]
    pub max_group_members: Option<u32>,
    /// Offer QUIC datagrams for typing and presence (false: control stream only).
    /// [default: true]
    #[arg(long, env = "QUIP_DATAGRAMS")]
    pub datagrams: Option<bool>,
    /// Pushes waiting for one session's control stream. [default: 1024]
    #[arg(long, env = "QUIP_CONTROL_QUEUE_LEN")]
    pub control_queue_len: Option<usize>,
    /// How long a typing indicator shows, in milliseconds. [default: 5000]
    #[arg(long, env = "QUIP_TYPING_EXPIRES_MS")]
    pub typing_expires_ms: Option<u32>,
    /// Most users per presence query. [default: 200]
    #[arg(long, env = "QUIP_MAX_PRESENCE_QUERY")]
    pub max_presence_query: Option<u32>,
    /// Most seqs per receipt-count query. [default: 200]
    #[arg(long, env = "QUIP_MAX_RECEIPT_SEQS")]
    pub max_receipt_seqs: Option<u32>,
    /// Recall window in milliseconds. [default: 120000]
    #[arg(long, env = "QUIP_RECALL_WINDOW_MS")]
    pub recall_window_ms: Option<u64>,
    /// Edit window in milliseconds. [default: 86400000]
    #[arg(long, env = "QUIP_EDIT_WINDOW_MS")]
    pub edit_window_ms: Option<u64>,
    /// Ring timeout of a call in milliseconds. [default: 45000]
    #[arg(long, env = "QUIP_CALL_RING_TIMEOUT_MS")]
    pub call_ring_timeout_ms: Option<u64>,
    /// How long a call waits for a dropped device, in milliseconds. [default: 15000]
    #[arg(long, env = "QUIP_CALL_RECONNECT_GRACE_MS")]
    pub call_reconnect_grace_ms: Option<u64>,
    /// Largest SDP or ICE candidate in bytes. [default: 65536]
    #[arg(long, env = "QUIP_CALL_MAX_SIGNAL_BYTES")]
    pub call_max_signal_bytes: Option<usize>,
    /// STUN/TURN server URL for calls; repeat or comma-separate for several.
    #[arg(long = "ice-server", env = "QUIP_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,
    /// TURN shared secret for time-limited credentials (prefer QUIP_TURN_SECRET).
    #[arg(long, env = "QUIP_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials in seconds. [default: 86400]
    #[arg(long, env = "QUIP_TURN_CREDENTIAL_TTL_SECS")]
    pub turn_credential_ttl_secs: Option<u64>,
    /// Username that gets the admin role when it registers or logs in; repeat or
    /// comma-separate for several.
    #[arg(
        long = "admin-username",
        env = "QUIP_ADMIN_USERNAMES",
        value_delimiter = ','
    )]
    pub admin_usernames: Vec<String>,
    /// Longest friend-request message in bytes. [default: 256]
    #[arg(long, env = "QUIP_CONTACT_REQUEST_MAX_BYTES")]
    pub contact_request_max_bytes: Option<usize>,
    /// Sends per second per connection; 0: unlimited. [default: 50]
    #[arg(long, env = "QUIP_RATE_MESSAGES_PER_SEC")]
    pub rate_messages_per_sec: Option<u32>,
    /// Sends allowed in a burst above that rate. [default: 100]
    #[arg(long, env = "QUIP_RATE_MESSAGES_BURST")]
    pub rate_messages_burst: Option<u32>,
    /// Requests per second per connection (REST: per user); 0: unlimited. [default: 200]
    #[arg(long, env = "QUIP_RATE_REQUESTS_PER_SEC")]
    pub rate_requests_per_sec: Option<u32>,
    /// Requests allowed in a burst above that rate. [default: 400]
    #[arg(long, env = "QUIP_RATE_REQUESTS_BURST")]
    pub rate_requests_burst: Option<u32>,
    /// Login/registration/refresh attempts per minute per IP; 0: unlimited. [default: 30]
    #[arg(long, env = "QUIP_RATE_LOGINS_PER_IP_PER_MIN")]
    pub rate_logins_per_ip_per_min: Option<u32>,
    /// Failed logins of a username before attempts must wait. [default: 3]
    #[arg(long, env = "QUIP_LOGIN_FAILURES_BEFORE_DELAY")]
    pub login_failures_before_delay: Option<u32>,
    /// First wait after too many failed logins, in ms (doubles). [default: 1000]
    #[arg(long, env = "QUIP_LOGIN_DELAY_BASE_MS")]
    pub login_delay_base_ms: Option<u64>,
    /// Longest wait between failed logins, in ms. [default: 300000]
    #[arg(long, env = "QUIP_LOGIN_DELAY_MAX_MS")]
    pub login_delay_max_ms: Option<u64>,
    /// Largest upload in bytes. [default: 104857600]
    #[arg(long, env = "QUIP_MAX_FILE_BYTES")]
    pub max_file_bytes: Option<u64>,
    /// Longest side of image thumbnails in pixels. [default: 320]
    #[arg(long, env = "QUIP_THUMBNAIL_MAX_PX")]
    pub thumbnail_max_px: Option<u32>,
    /// File transfers at once per QUIC connection. [default: 8]
    #[arg(long, env = "QUIP_MAX_TRANSFERS_PER_CONNECTION")]
    pub max_transfers_per_connection: Option<u32>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the broker (the default).
    Serve,
    /// Print the effective configuration as TOML and exit.
    PrintConfig,
    /// Manage administrators in the data dir (run while the broker is stopped).
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a user with the admin role.
    Create {
        #[arg(long)]
        username: String,
        /// The password (prefer the QUIP_ADMIN_PASSWORD environment variable: command
        /// lines are visible to other users of the machine).
        #[arg(long, env = "QUIP_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "")]
        nickname: String,
    },
    /// Give an existing user the admin role.
    Grant {
        #[arg(long)]
        username: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Builds the configuration from defaults, the file named by `cli.config`, and the
    /// environment and flags clap already merged into `cli`.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! apply {
            ($($field:ident),*) => {$(
                if let Some(value) = &cli.$field {
                    config.$field = value.clone().into();
                }
            )*};
        }
        apply!(
            data_dir,
            quic_addr,
            cert,
            key,
            durability,
            jwt_secret_file,
            access_token_ttl_secs,
            refresh_token_ttl_secs,
            max_frame_bytes,
            max_text_bytes,
            default_lanes,
            max_lanes,
            lane_queue_len,
            hello_timeout_ms,
            idle_timeout_ms,
            max_connections,
            max_connections_per_ip,
            quic_retry_above_handshakes,
            quic_stream_receive_window,
            quic_receive_window,
            quic_send_window,
            log_format,
            udp_buffer_bytes,
            dedup_window_secs,
            cluster_presence_ttl_ms,
            cluster_route_cache_ms,
            password_min_len,
            store_cache_mib,
            sync_batch,
            max_inflight_per_connection,
            username_min_len,
            username_max_len,
            password_max_len,
            history_default_limit,
            history_max_limit,
            conversations_max_limit,
            store_max_batch,
            store_queue_len,
            shutdown_grace_ms,
            max_group_members,
            ws_max_message_bytes,
            ws_idle_timeout_ms,
            http_max_body_bytes,
            datagrams,
            control_queue_len,
            typing_expires_ms,
            max_presence_query,
            max_receipt_seqs,
            recall_window_ms,
            edit_window_ms,
            call_ring_timeout_ms,
            call_reconnect_grace_ms,
            call_max_signal_bytes,
            turn_credential_ttl_secs,
            contact_request_max_bytes,
            rate_messages_per_sec,
            rate_messages_burst,
            rate_requests_per_sec,
            rate_requests_burst,
            rate_logins_per_ip_per_min,
            login_failures_before_delay,
            login_delay_base_ms,
            login_delay_max_ms,
            max_file_bytes,
            thumbnail_max_px,
            max_transfers_per_connection
        );
        if !cli.admin_usernames.is_empty() {
            config.admin_usernames = cli.admin_usernames.clone();
        }
        if !cli.ice_servers.is_empty() {
            config.ice_servers = cli.ice_servers.clone();
        }
        if let Some(secret) = &cli.turn_secret {
            config.turn_secret = Some(secret.clone());
        }
        if let Some(redis) = &cli.redis {
            config.redis = Some(redis.clone());
        }
        if let Some(node_id) = &cli.node_id {
            config.node_id = Some(node_id.clone());
        }
        if let Some(dir) = &cli.files_dir {
            config.files_dir = Some(dir.clone());
        }
        if cli.files_dir_shared {
            config.files_dir_shared = true;
        }
        if cli.production {
            config.production = true;
        }
        if let Some(addr) = cli.http_addr {
            config.http_addr = Some(addr);
        }
        if cli.no_http {
            config.http_addr = None;
        }
        if !cli.allowed_origins.is_empty() {
            config.allowed_origins = cli.allowed_origins.clone();
        }
        if let Ok(secret) = std::env::var("QUIP_JWT_SECRET") {
            config.jwt_secret = Some(secret);
        }
        config.validate()?;
        Ok(config)
    }

    /// The node's id: as configured, else the one kept in `<data_dir>/node-id`
    /// (generated and written there the first time).
    pub fn node_id(&self) -> std::io::Result<String> {
        if let Some(node_id) = &self.node_id {
            return Ok(node_id.clone());
        }
        let path = self.data_dir.join("node-id");
        match std::fs::read_to_string(&path) {
            Ok(kept) if valid_node_id(kept.trim()) => Ok(kept.trim().to_owned()),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a valid node id", path.display()),
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let node_id = format!("node-{:08x}", rand::random::<u32>());
                std::fs::write(&path, &node_id)?;
                Ok(node_id)
            }
            Err(error) => Err(error),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Rejects combinations that cannot work, with a message naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_owned()));
        if self.cert.is_some() != self.key.is_some() {
            return invalid("cert and key must be given together");
        }
        if self.max_frame_bytes < 1024 {
            return invalid("max_frame_bytes must be at least 1024");
        }
        if self.max_text_bytes + 1024 > self.max_frame_bytes {
            return invalid("max_text_bytes must leave 1 KiB of room below max_frame_bytes");
        }
        if self.default_lanes == 0 || self.default_lanes > self.max_lanes {
            return invalid("default_lanes must be between 1 and max_lanes");
        }
        if self.max_lanes > quip_protocol::MAX_LANES {
            return invalid("max_lanes is above the protocol's maximum of 64");
        }
        if [
            self.lane_queue_len,
            self.sync_batch,
            self.max_connections,
            self.max_inflight_per_connection,
            self.store_max_batch,
            self.store_queue_len,
            self.control_queue_len,
            self.max_presence_query as usize,
            self.max_receipt_seqs as usize,
            self.call_max_signal_bytes,
        ]
        .contains(&0)
        {
            return invalid(
                "lane_queue_len, sync_batch, max_connections, max_inflight_per_connection, \
                 store_max_batch, store_queue_len, control_queue_len, max_presence_query, \
                 max_receipt_seqs and call_max_signal_bytes must be positive",
            );
        }
        if self.history_default_limit == 0 || self.history_default_limit > self.history_max_limit {
            return invalid("history_default_limit must be between 1 and history_max_limit");
        }
        if self.password_min_len == 0 || self.password_min_len > self.password_max_len {
            return invalid("password_min_len must be between 1 and password_max_len");
        }
        if self.username_min_len == 0 || self.username_min_len > self.username_max_len {
            return invalid("username_min_len must be between 1 and username_max_len");
        }
        if self.max_group_members < 2 {
            return invalid("max_group_members must be at least 2");
        }
        if self.max_file_bytes == 0 || self.thumbnail_max_px == 0 {
            return invalid("max_file_bytes and thumbnail_max_px must be positive");
        }
        if self.max_transfers_per_connection > 1000 {
            return invalid("max_transfers_per_connection is at most 1000");
        }
        if self.typing_expires_ms == 0 || self.call_ring_timeout_ms == 0 {
            return invalid("typing_expires_ms and call_ring_timeout_ms must be positive");
        }
        if let Some(bad) = self.ice_servers.iter().find(|url| {
            !["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        }) {
            return Err(ConfigError::Invalid(format!(
                "ice_servers: {bad:?} is not a stun:, stuns:, turn: or turns: URL"
            )));
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return invalid("token lifetimes must be positive");
        }
        if let Some(url) = &self.redis
            && !url.starts_with("redis://")
            && !url.starts_with("redis+unix://")
            && !url.starts_with("unix://")
        {
            return invalid("redis must be a redis:// or unix:// URL");
        }
        if let Some(node_id) = &self.node_id
            && !valid_node_id(node_id)
        {
            return invalid("node_id must be 1 to 64 letters, digits, '-', '_' or '.'");
        }
        if self.cluster_presence_ttl_ms < 300 {
            return invalid("cluster_presence_ttl_ms must be at least 300");
        }
        Ok(())
    }

    /// A configuration for tests: loopback, port 0, the given data dir, and no rate
    /// limits (tests drive one connection much harder than a person does; the rate
    /// limit tests set their own).
    pub fn for_tests(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_owned(),
            quic_addr: "127.0.0.1:0".parse().expect("valid literal"),
            http_addr: Some("127.0.0.1:0".parse().expect("valid literal")),
            jwt_secret: Some("test-secret-test-secret-test-secret".into()),
            ..Config::default().without_rate_limits()
        }
    }

    /// The same configuration with every rate limit off (load tests and benchmarks,
    /// which drive a few connections as hard as they can from one address).
    pub fn without_rate_limits(self) -> Config {
        Config {
            rate_messages_per_sec: 0,
            rate_requests_per_sec: 0,
            rate_logins_per_ip_per_min: 0,
            login_delay_base_ms: 0,
            ..self
        }
    }
}

/// How log lines are written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Node ids name Redis channels and presence fields: keep them plain.
fn valid_node_id(node_id: &str) -> bool {
    (1..=64).contains(&node_id.len())
        && node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quip.toml");
        std::fs::write(
            &path,
            "durability = \"os\"\nmax_frame_bytes = 65536\ndefault_lanes = 2\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "quip-broker",
            "--config",
            path.to_str().unwrap(),
            "--default-lanes",
            "8",
        ]);
        let config = Config::load(&cli).unwrap();
        assert_eq!(config.durability, Durability::Os);
        assert_eq!(config.max_frame_bytes, 65536);
        assert_eq!(config.default_lanes, 8);
        assert_eq!(config.history_max_limit, 200);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quip.toml");
        std::fs::write(&path, "max_frame_byts = 1\n").unwrap();
        assert!(matches!(
            Config::from_file(&path),
            Err(ConfigError::Parse { .. })
        ));
        let config = Config {
            default_lanes: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
