//! The composition root: opens the store, builds the services, binds QUIC, and runs
//! until shut down. Tests start one of these on 127.0.0.1 port 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::bridge::BrokerBackend;
use crate::cluster::{Cluster, ClusterError, LocalCluster, RedisCluster, RedisClusterOptions};
use crate::config::Config;
use crate::context::BrokerContext;
use crate::limits::{RateLimits, SharedLimiter};
use crate::metrics::{Metrics, StoreWriterMetrics};
use crate::quic::{self, tls::TlsIdentity};
use crate::router::Router;
use crate::service::{
    AccountService, AdminService, AuthService, CallLimits, CallService, ChatLimits, ChatService,
    ContactService, CredentialRules, FileDirs, FileLimits, FileService, GroupLimits, GroupService,
    MemberCache, PresenceService, ReceiptService, TokenIssuer,
};
use crate::shutdown::{Drained, Shutdown};
use crate::store::{RedisOptions, RedisStore, SledStore, Store, StoreError, sled::SledOptions};

/// How often expired dedup records are swept.
const DEDUP_SWEEP_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("node id: {0}")]
    NodeId(std::io::Error),
    #[error("JWT secret: {0}")]
    Secret(String),
    /// `production` is set but the configuration relies on something generated.
    #[error("production mode refuses to start: {0}")]
    Production(String),
    #[error(transparent)]
    Tls(#[from] quic::tls::TlsError),
    #[error(transparent)]
    Quic(#[from] quic::QuicError),
    #[error("cannot bind HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    quic_addr: SocketAddr,
    fingerprint: [u8; 32],
    cert_der: Vec<u8>,
    ctx: Arc<BrokerContext>,
    endpoint: quinn::Endpoint,
    shutdown: Shutdown,
    drained: Drained,
    accept: tokio::task::JoinHandle<()>,
    http_addr: Option<SocketAddr>,
    http: Option<tokio::task::JoinHandle<()>>,
    /// The task following session events for presence and calls.
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Broker {
    /// Opens the store in `config.data_dir`, binds QUIC and starts accepting.
    pub async fn start(config: Config) -> Result<Broker, StartError> {
        check_production(&config)?;
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let secret = jwt_secret(&config)?;
        // Mutable until it is shared: the cluster's counter is attached below.
        let mut metrics = Metrics::new();
        let store = open_store(&config, metrics.store_writer()).await?;
        let identity = TlsIdentity::load_or_generate(
            config.cert.as_deref(),
            config.key.as_deref(),
            &data_dir,
        )?;
        if identity.self_signed {
            tracing::warn!(
                fingerprint = %identity.fingerprint_hex(),
                "serving a self-signed certificate: clients must pin this SHA-256 fingerprint \
                 (use --cert/--key with a real certificate in production)"
            );
        } else {
            tracing::info!(fingerprint = %identity.fingerprint_hex(), "serving the configured certificate");
        }

        let router = Arc::new(Router::new());
        let members = Arc::new(MemberCache::new(store.clone()));
        let cluster = join_cluster(&config, &router, &store, &members, &mut metrics).await?;
        let auth = AuthService::new(
            store.clone(),
            TokenIssuer::new(
                &secret,
                config.access_token_ttl_secs,
                config.refresh_token_ttl_secs,
            ),
            CredentialRules {
                username_min_len: config.username_min_len,
                username_max_len: config.username_max_len,
                password_min_len: config.password_min_len,
                password_max_len: config.password_max_len,
            },
            &config.admin_usernames,
        );
        let chat = Arc::new(ChatService::new(
            store.clone(),
            router.clone(),
            members,
            ChatLimits {
                max_text_bytes: config.max_text_bytes,
                history_default_limit: config.history_default_limit,
                history_max_limit: config.history_max_limit,
                conversations_max_limit: config.conversations_max_limit,
                max_mentions: 100,
                max_reports: 1000,
                typing_expires_ms: config.typing_expires_ms,
                recall_window_ms: config.recall_window_ms,
                edit_window_ms: config.edit_window_ms,
            },
        ));
        let groups = Arc::new(GroupService::new(
            store.clone(),
            chat.clone(),
            GroupLimits {
                max_members: config.max_group_members,
                ..GroupLimits::default()
            },
        ));
        let presence = Arc::new(PresenceService::new(
            store.clone(),
            router.clone(),
            cluster.clone(),
            config.max_presence_query as usize,
        ));
        let receipts = ReceiptService::new(
            store.clone(),
            router.clone(),
            chat.clone(),
            config.max_receipt_seqs as usize,
        );
        let calls = CallService::new(
            router.clone(),
            cluster.clone(),
            store.clone(),
            chat.clone(),
            CallLimits {
                ring_timeout: Duration::from_millis(config.call_ring_timeout_ms),
                reconnect_grace: Duration::from_millis(config.call_reconnect_grace_ms),
                max_signal_bytes: config.call_max_signal_bytes,
                ice_servers: config.ice_servers.clone(),
                turn_secret: config.turn_secret.clone(),
                turn_credential_ttl_secs: config.turn_credential_ttl_secs,
            },
        );
        let contacts = ContactService::new(
            store.clone(),
            router.clone(),
            presence.clone(),
            config.contact_request_max_bytes,
        );
        let account = Arc::new(AccountService::new(store.clone(), router.clone()));
        let admin = AdminService::new(
            store.clone(),
            router.clone(),
            account.clone(),
            groups.clone(),
            calls.clone(),
        );
        let rate_limits = RateLimits {
            messages_per_sec: config.rate_messages_per_sec,
            messages_burst: config.rate_messages_burst,
            requests_per_sec: config.rate_requests_per_sec,
            requests_burst: config.rate_requests_burst,
            logins_per_ip_per_min: config.rate_logins_per_ip_per_min,
            login_failures_before_delay: config.login_failures_before_delay,
            login_delay_base_ms: config.login_delay_base_ms,
            login_delay_max_ms: config.login_delay_max_ms,
        };
        let files = FileService::open(
            file_dirs(&config, &*cluster),
            store.clone(),
            chat.clone(),
            FileLimits {
                max_file_bytes: config.max_file_bytes,
                thumbnail_max_px: config.thumbnail_max_px,
            },
        )
        .map_err(|error| {
            StartError::Store(StoreError::Unavailable(format!(
                "cannot open the files directory: {error}"
            )))
        })?;
        let session_events = router.session_events();
        let ctx = Arc::new(BrokerContext {
            config,
            store,
            router,
            cluster,
            auth,
            chat,
            groups,
            presence,
            receipts,
            calls,
            contacts,
            account,
            admin,
            files,
            limits: SharedLimiter::new(&rate_limits),
            rate_limits,
            metrics,
        });
        tokio::spawn(sample_stats(Arc::downgrade(&ctx)));
        let follower = session_events
            .map(|events| tokio::spawn(follow_sessions(Arc::downgrade(&ctx), events)));
        let endpoint = quic::bind(&ctx, &identity)?;
        let quic_addr = endpoint
            .local_addr()
            .map_err(|source| quic::QuicError::Bind {
                addr: ctx.config.quic_addr,
                source,
            })?;
        let (shutdown, drained) = Shutdown::new();
        let (http_addr, http) = match ctx.config.http_addr {
            Some(addr) => {
                let (bound, task) =
                    serve_http(addr, &ctx, quic_addr.port(), shutdown.clone()).await?;
                (Some(bound), Some(task))
            }
            None => (None, None),
        };
        let accept = tokio::spawn(quic::accept_loop(
            endpoint.clone(),
            ctx.clone(),
            shutdown.clone(),
        ));
        if let Some(http_addr) = http_addr {
            tracing::info!(%http_addr, "browser bridge listening (REST, /ws, web client)");
        }
        tracing::info!(
            %quic_addr,
            durability = ?ctx.config.durability,
            data_dir = %data_dir.display(),
            node = ctx.cluster.node_id(),
            cluster = ctx.cluster.spans_nodes(),
            "quip broker listening"
        );
        Ok(Broker {
            quic_addr,
            fingerprint: identity.fingerprint,
            cert_der: identity.chain[0].to_vec(),
            ctx,
            endpoint,
            shutdown,
            drained,
            accept,
            http_addr,
            http,
            follower,
        })
    }

    /// Where the browser bridge listens, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// SHA-256 of the served certificate, for clients that pin it.
    pub fn cert_fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn context(&self) -> &Arc<BrokerContext> {
        &self.ctx
    }

    /// Stops accepting, closes every connection with SHUTTING_DOWN, waits (bounded)
    /// for connection tasks, and flushes the store.
    pub async fn shutdown(self) {
        let grace = Duration::from_millis(self.ctx.config.shutdown_grace_ms);
        self.shutdown.trigger();
        let _ = self.accept.await;
        // Every session, QUIC or WebSocket, is told why it ends.
        self.ctx.router.close_all(
            quip_protocol::ErrorCode::ShuttingDown,
            "broker shutting down",
        );
        quic::close_all(&self.endpoint);
        if let Some(http) = self.http {
            // Stopped accepting on the signal; WebSockets end with their sessions.
            let _ = tokio::time::timeout(grace, http).await;
        }
        drop(self.shutdown);
        if !self.drained.wait(grace).await {
            tracing::warn!("some connections did not finish within the shutdown grace period");
        }
        // Let presence record the last sessions' ends, then stop following.
        self.ctx.router.end_session_events();
        if let Some(follower) = self.follower {
            let _ = tokio::time::timeout(grace, follower).await;
        }
        if let Err(error) = self.ctx.store.flush().await {
            tracing::error!(%error, "final store flush failed");
        }
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
        // Last reference in the normal case: closes the store and joins its threads,
        // so the data dir can be opened again right away.
        drop(self.ctx);
        tracing::info!("quip broker stopped");
    }
}

/// The store: Redis in cluster mode, else the embedded sled store in the data dir.
async fn open_store(
    config: &Config,
    metrics: &Arc<StoreWriterMetrics>,
) -> Result<Arc<dyn Store>, StartError> {
    if let Some(url) = &config.redis {
        let store = RedisStore::connect(RedisOptions {
            url: url.clone(),
            dedup_window_ms: config.dedup_window_secs * 1000,
        })
        .await?;
        return Ok(Arc::new(store));
    }
    let sled = Arc::new(SledStore::open(
        &config.data_dir.join("store"),
        SledOptions {
            durability: config.durability,
            dedup_window_ms: config.dedup_window_secs * 1000,
            max_batch: config.store_max_batch,
            queue_len: config.store_queue_len,
            cache_bytes: config.store_cache_mib << 20,
            metrics: Some(metrics.clone()),
        },
    )?);
    spawn_dedup_sweep(&sled);
    Ok(sled)
}

/// The other nodes: joined through Redis in cluster mode (the router and the member
/// cache then reach them too), else nobody.
async fn join_cluster(
    config: &Config,
    router: &Arc<Router>,
    store: &Arc<dyn Store>,
    members: &Arc<MemberCache>,
    metrics: &mut Metrics,
) -> Result<Arc<dyn Cluster>, StartError> {
    let Some(url) = &config.redis else {
        return Ok(Arc::new(LocalCluster));
    };
    let redis = RedisCluster::start(
        RedisClusterOptions {
            url: url.clone(),
            node_id: config.node_id().map_err(StartError::NodeId)?,
            presence_ttl: Duration::from_millis(config.cluster_presence_ttl_ms),
            route_cache: Duration::from_millis(config.cluster_route_cache_ms),
        },
        router.clone(),
        store.clone(),
    )
    .await?;
    redis.attach_members(members);
    let weak = Arc::downgrade(&redis);
    metrics.watch_cluster_publish_failures(move || {
        weak.upgrade().map_or(0, |redis| redis.publish_failures())
    });
    let cluster: Arc<dyn Cluster> = redis;
    router.join_cluster(Arc::downgrade(&cluster));
    members.join_cluster(Arc::downgrade(&cluster));
    Ok(cluster)
}

/// Where file bytes go, and whether this node may take files at all.
fn file_dirs(config: &Config, cluster: &dyn Cluster) -> FileDirs {
    let dir = config
        .files_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("files"));
    if !cluster.spans_nodes() {
        return FileDirs {
            tmp: dir.join("tmp"),
            dir,
            refused: None,
        };
    }
    FileDirs {
        tmp: dir.join("tmp").join(cluster.node_id()),
        refused: (!config.files_dir_shared).then(|| {
            "files are kept on each node's disk: a cluster needs files_dir on a file system \
             every node shares, declared with files_dir_shared = true"
                .to_owned()
        }),
        dir,
    }
}

/// Binds the browser bridge and serves it until shutdown.
async fn serve_http(
    addr: SocketAddr,
    ctx: &Arc<BrokerContext>,
    quic_port: u16,
    shutdown: Shutdown,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Http { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Http { addr, source })?;
    let config = &ctx.config;
    let bridge = quip_bridge_ws::BridgeConfig {
        ws_max_message_bytes: config.ws_max_message_bytes,
        ws_idle_timeout: Duration::from_millis(config.ws_idle_timeout_ms),
        // Ping often enough that a live browser's pong always lands within the timeout.
        ws_ping_interval: Duration::from_millis((config.ws_idle_timeout_ms / 3).clamp(100, 30_000)),
        allowed_origins: config.allowed_origins.clone(),
        max_body_bytes: config.http_max_body_bytes,
        max_file_bytes: config.max_file_bytes,
        quic_port,
    };
    let app = quip_bridge_ws::router(Arc::new(BrokerBackend::new(ctx.clone())), bridge);
    let task = tokio::spawn(async move {
        let stop = async move { shutdown.signalled().await };
        // The client's address reaches handlers (per-address login limits).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%error, "HTTP server failed");
        }
    });
    Ok((bound, task))
}

/// Production mode refuses to start on anything the broker would generate for itself:
/// a self-signed certificate (clients would have to pin it) or a JWT secret (other
/// nodes could not verify its tokens, and losing the data dir logs everyone out).
fn check_production(config: &Config) -> Result<(), StartError> {
    if !config.production {
        return Ok(());
    }
    let mut missing = Vec::new();
    if config.cert.is_none() || config.key.is_none() {
        missing.push("a certificate and key (--cert and --key), not a self-signed one");
    }
    if config.jwt_secret.is_none() && config.jwt_secret_file.is_none() {
        missing.push("a JWT secret (QUIP_JWT_SECRET or jwt_secret_file), not a generated one");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StartError::Production(format!(
            "configure {}",
            missing.join(" and ")
        )))
    }
}

/// The HMAC secret: from config, else from `jwt_secret_file`, else generated once in
/// `<data_dir>/jwt.key`. Never logged.
fn jwt_secret(config: &Config) -> Result<Vec<u8>, StartError> {
    if let Some(secret) = &config.jwt_secret {
        return check_secret(secret.as_bytes().to_vec());
    }
    let path = config
        .jwt_secret_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("jwt.key"));
    if !path.exists() && config.jwt_secret_file.is_none() {
        let secret = hex::encode(rand::random::<[u8; 32]>());
        quic::tls::write_private(&path, secret.as_bytes())
            .map_err(|e| StartError::Secret(format!("cannot write {}: {e}", path.display())))?;
    }
    read_secret(&path)
}

fn read_secret(path: &Path) -> Result<Vec<u8>, StartError> {
    let raw = std::fs::read(path)
        .map_err(|e| StartError::Secret(format!("cannot read {}: {e}", path.display())))?;
    check_secret(raw.trim_ascii().to_vec())
}

fn check_secret(secret: Vec<u8>) -> Result<Vec<u8>, StartError> {
    if secret.len() < 32 {
        return Err(StartError::Secret("must be at least 32 bytes".into()));
    }
    Ok(secret)
}

fn spawn_dedup_sweep(store: &Arc<SledStore>) {
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DEDUP_SWEEP_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(store) = store.upgrade() else { return };
            match tokio::task::spawn_blocking(move || store.sweep_expired_dedup()).await {
                Ok(Ok(removed)) => tracing::debug!(removed, "swept expired dedup records"),
                Ok(Err(error)) => tracing::warn!(%error, "dedup sweep failed"),
                Err(_) => return,
            }
        }
    });
}

/// Presence and calls follow devices through the router's session events, in order,
/// on this one task. It ends when the router (and so the broker) is gone.
/// Holds the context weakly: the broker's shutdown drops the last strong reference,
/// which closes the store.
async fn follow_sessions(
    ctx: std::sync::Weak<BrokerContext>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<crate::router::SessionEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(ctx) = ctx.upgrade() else {
            return;
        };
        // First the cluster's view (presence asks it whether the user is elsewhere).
        ctx.cluster.on_session_event(&event).await;
        ctx.calls.on_session_event(&event);
        ctx.presence.on_session_event(&event).await;
        ctx.account.on_session_event(&event).await;
    }
}

/// Feeds the admin stats' messages-per-second, once a second, and sweeps the rate
/// limiters once a minute, while the broker lives.
async fn sample_stats(ctx: std::sync::Weak<BrokerContext>) {
    let mut ticks: u64 = 0;
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every_second.tick().await;
        let Some(ctx) = ctx.upgrade() else {
            return;
        };
        ctx.admin.sample();
        ticks += 1;
        if ticks % 60 == 0 {
            // Forget limits nobody is near any more, so their maps stay small.
            ctx.limits.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_needs_a_real_certificate_and_a_configured_secret() {
        let dir = Path::new("/nonexistent");
        let generated = Config {
            production: true,
            jwt_secret: None,
            ..Config::for_tests(dir)
        };
        let Err(StartError::Production(why)) = check_production(&generated) else {
            panic!("production mode accepted generated credentials");
        };
        assert!(
            why.contains("--cert") && why.contains("JWT secret"),
            "{why}"
        );

        let configured = Config {
            production: true,
            cert: Some("cert.pem".into()),
            key: Some("key.pem".into()),
            jwt_secret_file: Some("jwt.key".into()),
            ..generated.clone()
        };
        check_production(&configured).unwrap();
        let no_key = Config {
            key: None,
            ..configured.clone()
        };
        assert!(check_production(&no_key).is_err());
        // Outside production mode, generating both is the point.
        check_production(&Config {
            production: false,
            ..generated
        })
        .unwrap();
    }
}
