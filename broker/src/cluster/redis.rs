//! The cluster on Redis: presence hashes, one pub/sub channel per node, a broadcast
//! channel, and the catch-ups that make up for what pub/sub can lose (module docs of
//! [`cluster`](super)).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use ::redis::AsyncCommands as _;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use dashmap::DashMap;
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};

use super::envelope::Envelope;
use super::{Cluster, ClusterError, ClusterFuture, Outbound, presence};
use crate::router::{Router, SessionEvent};
use crate::service::MemberCache;
use crate::service::auth::now_ms;
use crate::store::Store;

/// Every node hears this one: membership changes and session closes.
const BROADCAST: &str = "quip:broadcast";
/// User ids whose presence changed: every node drops its cached route for them.
const PRESENCE: &str = "quip:presence";
/// Outbound items published per Redis round trip, at most.
const PUBLISH_BATCH: usize = 512;
/// Users whose presence is read per round trip, at most.
const LOOKUP_CHUNK: usize = 1000;
/// How long one Redis command may take before the node counts Redis as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RedisClusterOptions {
    /// `redis://host:port/db`
    pub url: String,
    pub node_id: String,
    /// A node's presence entries expire this long after its last refresh.
    pub presence_ttl: Duration,
    /// How long a looked-up route (the nodes a user is on) is trusted.
    pub route_cache: Duration,
}

/// The URL may hold a password: never printed.
impl std::fmt::Debug for RedisClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterOptions")
            .field("url", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("presence_ttl", &self.presence_ttl)
            .field("route_cache", &self.route_cache)
            .finish()
    }
}

/// Where one user was last seen connected: the other nodes with their devices.
#[derive(Debug)]
struct Route {
    nodes: Arc<[String]>,
    fetched: Instant,
}

#[derive(Debug)]
pub struct RedisCluster {
    options: RedisClusterOptions,
    conn: ConnectionManager,
    router: Arc<Router>,
    store: Arc<dyn Store>,
    members: OnceLock<Weak<MemberCache>>,
    outbound: mpsc::UnboundedSender<Outbound>,
    routes: DashMap<String, Route>,
    /// The node's subscription is up.
    subscribed: AtomicBool,
    /// Publish round trips that failed (their live deliveries were lost; receivers
    /// catch up when their subscription comes back, or on the next message).
    publish_failures: AtomicU64,
    /// Dropped with the cluster: stops its tasks.
    _stop: watch::Sender<()>,
}

impl RedisCluster {
    /// Connects to Redis, subscribes this node's channels and starts the tasks that
    /// publish, listen and refresh presence. Fails if Redis cannot be reached now.
    pub async fn start(
        options: RedisClusterOptions,
        router: Arc<Router>,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Self>, ClusterError> {
        let client = ::redis::Client::open(options.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_min_delay(RECONNECT_MIN)
            .set_max_delay(RECONNECT_MAX);
        let conn = client.get_connection_manager_with_config(config).await?;
        let first = subscribe(&client, &options.node_id).await?;
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(());
        let cluster = Arc::new(RedisCluster {
            options,
            conn,
            router,
            store,
            members: OnceLock::new(),
            outbound,
            routes: DashMap::new(),
            subscribed: AtomicBool::new(true),
            publish_failures: AtomicU64::new(0),
            _stop: stop,
        });
        let weak = Arc::downgrade(&cluster);
        tokio::spawn(publish_loop(weak.clone(), outbound_rx));
        tokio::spawn(listen_loop(weak.clone(), client, first, stopped.clone()));
        tokio::spawn(refresh_loop(weak, stopped));
        tracing::info!(node = %cluster.options.node_id, "joined the cluster");
        Ok(cluster)
    }

    /// The member cache whose lists every node's membership changes invalidate.
    pub fn attach_members(&self, members: &Arc<MemberCache>) {
        let _ = self.members.set(Arc::downgrade(members));
    }

    pub fn publish_failures(&self) -> u64 {
        self.publish_failures.load(Ordering::Relaxed)
    }

    fn node_channel(node_id: &str) -> String {
        format!("quip:node:{node_id}")
    }

    /// Publishes a batch of outbound items: each once per node that has any of its
    /// recipients, in order (one connection, one pipeline: a node receives one
    /// conversation's deliveries in seq order).
    async fn publish(&self, batch: &[Outbound]) -> Result<(), ClusterError> {
        let mut missing = HashSet::new();
        for item in batch {
            if let Outbound::Deliver { recipients, .. } | Outbound::Push { recipients, .. } = item {
                for user in recipients.iter() {
                    if !self.route_is_fresh(user) {
                        missing.insert(user.as_str());
                    }
                }
            }
        }
        if !missing.is_empty() {
            self.load_routes(missing.into_iter().collect()).await?;
        }
        let mut pipe = ::redis::pipe();
        let mut published = 0;
        for item in batch {
            match item {
                Outbound::Deliver { recipients, .. } | Outbound::Push { recipients, .. } => {
                    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for user in recipients.iter() {
                        if let Some(route) = self.routes.get(user.as_str()) {
                            for node in route.nodes.iter() {
                                by_node.entry(node.clone()).or_default().push(user.clone());
                            }
                        }
                    }
                    for (node, users) in by_node {
                        let envelope = Envelope::of(item, users).to_bytes();
                        pipe.publish(Self::node_channel(&node), envelope).ignore();
                        published += 1;
                    }
                }
                Outbound::Close { .. } | Outbound::MembersChanged { .. } => {
                    pipe.publish(BROADCAST, Envelope::of(item, Vec::new()).to_bytes())
                        .ignore();
                    published += 1;
                }
            }
        }
        if published > 0 {
            let mut conn = self.conn.clone();
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    fn route_is_fresh(&self, user_id: &str) -> bool {
        self.routes
            .get(user_id)
            .is_some_and(|route| route.fetched.elapsed() < self.options.route_cache)
    }

    /// Reads where `users` are connected and caches it.
    async fn load_routes(&self, users: Vec<&str>) -> Result<(), ClusterError> {
        for chunk in users.chunks(LOOKUP_CHUNK) {
            let fetched = Instant::now();
            let found = self.presence_of(chunk).await?;
            for (user, nodes) in chunk.iter().zip(found) {
                let nodes: Arc<[String]> = nodes.into_iter().map(|(node, _)| node).collect();
                self.routes
                    .insert((*user).to_owned(), Route { nodes, fetched });
            }
        }
        Ok(())
    }

    /// For each user, the other nodes where they have devices, with how many.
    async fn presence_of(&self, users: &[&str]) -> Result<Vec<Vec<(String, u32)>>, ClusterError> {
        let mut pipe = ::redis::pipe();
        for user in users {
            pipe.hgetall(presence::key(user));
        }
        let mut conn = self.conn.clone();
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        let now = now_ms();
        Ok(all
            .iter()
            .map(|fields| presence::live_elsewhere(fields, &self.options.node_id, now))
            .collect())
    }

    /// Writes this node's presence entry for one user (none when `devices` is 0).
    async fn write_presence(&self, user_id: &str, devices: usize) -> Result<(), ClusterError> {
        let key = presence::key(user_id);
        let ttl = self.options.presence_ttl;
        let mut pipe = ::redis::pipe();
        if devices > 0 {
            let expires = now_ms() + ttl.as_millis() as u64;
            pipe.hset(
                &key,
                &self.options.node_id,
                presence::field_value(expires, devices),
            )
            .ignore()
            .pexpire(&key, ttl.as_millis() as i64)
            .ignore();
        } else {
            pipe.hdel(&key, &self.options.node_id).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Rewrites this node's presence entries for every local user (before they
    /// expire).
    async fn refresh_presence(&self) -> Result<(), ClusterError> {
        let users = self.router.local_users();
        let ttl = self.options.presence_ttl;
        for chunk in users.chunks(LOOKUP_CHUNK) {
            let expires = now_ms() + ttl.as_millis() as u64;
            let mut pipe = ::redis::pipe();
            for (user_id, devices) in chunk {
                let key = presence::key(user_id);
                pipe.hset(
                    &key,
                    &self.options.node_id,
                    presence::field_value(expires, *devices),
                )
                .ignore()
                .pexpire(&key, ttl.as_millis() as i64)
                .ignore();
            }
            let mut conn = self.conn.clone();
            pipe.query_async::<()>(&mut conn).await?;
        }
        // Forget routes nobody used for a while, so the cache does not grow forever.
        let stale = self.options.route_cache * 10;
        self.routes
            .retain(|_, route| route.fetched.elapsed() < stale);
        Ok(())
    }

    /// Acts on what another node published.
    fn receive(&self, channel: &str, payload: &[u8]) {
        if channel == PRESENCE {
            if let Ok(user_id) = std::str::from_utf8(payload) {
                self.routes.remove(user_id);
            }
            return;
        }
        let Some(outbound) = Envelope::decode_outbound(payload) else {
            tracing::warn!(channel, "unreadable message on a cluster channel");
            return;
        };
        match outbound {
            Outbound::Deliver {
                conv_id,
                seq,
                frame,
                recipients,
            } => {
                self.router
                    .deliver_here(&conv_id, seq, &frame, &recipients, None);
            }
            Outbound::Push {
                frame,
                recipients,
                how,
            } => {
                self.router.push_here(&frame, &recipients, 0, how);
            }
            Outbound::Close {
                user_id,
                device_id,
                code,
                reason,
            } => {
                self.router
                    .close_user_here(&user_id, device_id.as_deref(), code, &reason);
            }
            Outbound::MembersChanged { group_id } => {
                if let Some(members) = self.members.get().and_then(Weak::upgrade) {
                    members.invalidate_here(&group_id);
                }
            }
        }
    }

    /// The subscription came back after a gap in which published messages were
    /// lost: forget what may be stale and let every local session catch up.
    fn after_outage(self: &Arc<Self>) {
        self.routes.clear();
        let users: Vec<String> = self
            .router
            .local_users()
            .into_iter()
            .map(|(user, _)| user)
            .collect();
        tracing::info!(
            users = users.len(),
            "cluster link back: catching local sessions up"
        );
        let (store, router) = (self.store.clone(), self.router.clone());
        let node = self.options.node_id.clone();
        tokio::spawn(async move {
            for user in users {
                catch_up(&*store, &router, &user, &node).await;
            }
        });
    }
}

impl Cluster for RedisCluster {
    fn node_id(&self) -> &str {
        &self.options.node_id
    }

    fn forward(&self, outbound: Outbound) {
        // Only fails once the publish task is gone (shutdown).
        let _ = self.outbound.send(outbound);
    }

    fn on_session_event<'a>(&'a self, event: &'a SessionEvent) -> ClusterFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.write_presence(&event.user_id, event.devices).await {
                tracing::warn!(%error, user = %event.user_id, "cannot record presence in the cluster");
            }
            let arrived = event.opened && event.devices == 1;
            let left = !event.opened && event.devices == 0;
            if arrived || left {
                let mut conn = self.conn.clone();
                if let Err(error) = conn
                    .publish::<_, _, ()>(PRESENCE, event.user_id.as_str())
                    .await
                {
                    tracing::warn!(%error, "cannot announce a presence change to the cluster");
                }
            }
            if arrived {
                // Nodes that looked this user up before they arrived may have skipped
                // this node until their cached route expires: once it has, read what
                // such a delivery would have brought.
                let wait = self.options.route_cache + Duration::from_millis(50);
                let (store, router, user_id) = (
                    self.store.clone(),
                    self.router.clone(),
                    event.user_id.clone(),
                );
                let node = self.options.node_id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    catch_up(&*store, &router, &user_id, &node).await;
                });
            }
        })
    }

    fn devices_elsewhere<'a>(
        &'a self,
        users: &'a [String],
    ) -> ClusterFuture<'a, Result<Vec<u32>, ClusterError>> {
        Box::pin(async move {
            let mut counts = Vec::with_capacity(users.len());
            for chunk in users.chunks(LOOKUP_CHUNK) {
                let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                for nodes in self.presence_of(&chunk).await? {
                    counts.push(nodes.iter().map(|(_, devices)| devices).sum());
                }
            }
            Ok(counts)
        })
    }

    fn is_connected(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    fn spans_nodes(&self) -> bool {
        true
    }
}

/// Tells the user's local sessions where each of their conversations ends, so their
/// lanes read what a lost live delivery did not bring. Holds no cluster reference:
/// the task may outlive it.
async fn catch_up(store: &dyn Store, router: &Router, user_id: &str, node: &str) {
    if router.sessions_of(user_id) == 0 {
        return;
    }
    let conversations = match store.user_conversations(user_id).await {
        Ok(conversations) => conversations,
        Err(error) => {
            tracing::warn!(%error, node, user = user_id, "catch-up: cannot list conversations");
            return;
        }
    };
    for conv_id in conversations {
        if router.sessions_of(user_id) == 0 {
            return;
        }
        match store.last_seq(&conv_id).await {
            Ok(0) => {}
            Ok(seq) => router.reached(user_id, &Arc::from(conv_id), seq),
            Err(error) => {
                tracing::warn!(%error, node, user = user_id, "catch-up: cannot read a conversation");
                return;
            }
        }
    }
}

async fn subscribe(
    client: &::redis::Client,
    node_id: &str,
) -> Result<::redis::aio::PubSub, ClusterError> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub
            .subscribe(&[
                RedisCluster::node_channel(node_id),
                PRESENCE.to_owned(),
                BROADCAST.to_owned(),
            ])
            .await?;
        Ok::<_, ::redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, attempt).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Unavailable(
            "timed out subscribing to the node's channels".into(),
        )),
    }
}

/// Publishes what the router forwards, a batch per round trip, until the cluster is
/// dropped.
async fn publish_loop(cluster: Weak<RedisCluster>, mut items: mpsc::UnboundedReceiver<Outbound>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while items.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if let Err(error) = cluster.publish(&batch).await {
            cluster.publish_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, items = batch.len(), "cannot publish to the cluster; receivers catch up");
        }
        batch.clear();
    }
}

/// Listens on the node's channels; resubscribes with backoff when the connection
/// drops, and then catches every local session up.
async fn listen_loop(
    cluster: Weak<RedisCluster>,
    client: ::redis::Client,
    first: ::redis::aio::PubSub,
    mut stopped: watch::Receiver<()>,
) {
    let mut next = Some(first);
    let mut backoff = RECONNECT_MIN;
    let node_id = match cluster.upgrade() {
        Some(cluster) => cluster.options.node_id.clone(),
        None => return,
    };
    loop {
        let pubsub = match next.take() {
            Some(pubsub) => pubsub,
            None => match subscribe(&client, &node_id).await {
                Ok(pubsub) => {
                    let Some(cluster) = cluster.upgrade() else {
                        return;
                    };
                    cluster.subscribed.store(true, Ordering::Relaxed);
                    cluster.after_outage();
                    backoff = RECONNECT_MIN;
                    pubsub
                }
                Err(error) => {
                    tracing::debug!(%error, "cluster subscription still down");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => return,
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Some(cluster) = cluster.upgrade() else { return };
                    cluster.receive(message.get_channel_name(), message.get_payload_bytes());
                }
                _ = stopped.changed() => return,
            }
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        cluster.subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("cluster subscription lost; reconnecting");
    }
}

/// Refreshes this node's presence entries every third of their TTL.
async fn refresh_loop(cluster: Weak<RedisCluster>, mut stopped: watch::Receiver<()>) {
    let every = match cluster.upgrade() {
        Some(cluster) => (cluster.options.presence_ttl / 3).max(Duration::from_millis(100)),
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if let Err(error) = cluster.refresh_presence().await {
            tracing::warn!(%error, "cannot refresh presence in the cluster");
        }
    }
}
