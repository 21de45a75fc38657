//! Which brokers to load: an address plus its certificate, a `quip-broker` child
//! process started on free loopback ports with a temp data dir (`--spawn`), or a
//! cluster of them on Redis (`--spawn-cluster N`, see [`crate::cluster`]).
//!
//! A target is a list of nodes (one unless it is a cluster); scenarios pick a node
//! by index, taken modulo the node count, so the same placement works for one
//! broker and for N.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quip_sdk::{Client, ClientOptions, ReconnectPolicy, Trust};

use crate::cluster::{self, Redis};
use crate::temp_dir::TempDir;

/// How long a spawned broker may take to accept its first QUIC handshake.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Broker address (loopback only).
    #[arg(long, global = true, default_value = "127.0.0.1:4433")]
    pub addr: SocketAddr,
    /// The broker's certificate (PEM), e.g. <data-dir>/tls/cert.pem.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Start a `quip-broker` (next to this binary) on a free port with a temp data dir.
    #[arg(long, global = true)]
    pub spawn: bool,
    /// Start `redis-server` and N `quip-broker` nodes (node-1..node-N) sharing it and
    /// one JWT secret, each on free ports with a temp data dir. Clients are spread
    /// over the nodes so that messages cross nodes (pairs: sender on node i, receiver
    /// on node i+1; group: members round-robin).
    #[arg(
        long,
        global = true,
        value_name = "N",
        conflicts_with_all = ["spawn", "addr"],
        value_parser = clap::value_parser!(u16).range(1..),
    )]
    pub spawn_cluster: Option<u16>,
    /// Durability for --spawn (and every --spawn-cluster node): fsync or os.
    #[arg(long, global = true, default_value = "fsync")]
    pub durability: String,
    /// The broker's HTTP/WebSocket address (loopback only), for WebSocket clients.
    /// With --spawn a free loopback port is chosen.
    #[arg(long, global = true)]
    pub http_addr: Option<SocketAddr>,
    /// The broker's JWT secret, so the load test can mint access tokens itself instead
    /// of logging in thousands of times (argon2 is deliberately slow). With --spawn a
    /// random secret is generated and handed to the broker.
    #[arg(long, global = true, env = "QUIP_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Extra arguments for the spawned broker (repeatable; every node of a cluster
    /// gets them), e.g. `--broker-arg=--store-cache-mib=64`.
    #[arg(long = "broker-arg", global = true, allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// The pid of a broker we did not spawn (on this machine), to sample its memory
    /// from /proc during the run.
    #[arg(long, global = true, conflicts_with_all = ["spawn", "spawn_cluster"])]
    pub broker_pid: Option<u32>,
}

/// The brokers under load.
#[derive(Debug)]
pub struct Target {
    /// One broker, or a cluster's nodes in node-id order (never empty).
    nodes: Vec<Node>,
    pub durability: String,
    /// The brokers' JWT secret, when known (see [`TargetArgs::jwt_secret`]).
    pub jwt_secret: Option<String>,
    /// What is loaded, for the report: "broker at …", "spawned broker", "cluster of
    /// N nodes on Redis".
    pub description: String,
    /// `--broker-pid`: a local broker we did not start.
    broker_pid: Option<u32>,
    /// `--spawn-cluster`: the Redis the nodes share, stopped after them.
    redis: Option<Redis>,
}

/// One broker: where it listens, and its process when we started it.
#[derive(Debug)]
pub struct Node {
    /// `node-1`…, or `broker` outside a cluster (for messages).
    pub name: String,
    pub addr: SocketAddr,
    pub cert: PathBuf,
    /// HTTP/WebSocket address, when known.
    pub http_addr: Option<SocketAddr>,
    child: Mutex<Option<Child>>,
    _data_dir: Option<TempDir>,
}

impl Target {
    pub async fn resolve(args: &TargetArgs) -> anyhow::Result<Target> {
        if let Some(count) = args.spawn_cluster {
            return cluster::spawn(args, count).await;
        }
        if args.spawn {
            let secret = new_jwt_secret();
            let node = Node::start(args, "broker", &secret, &[])?;
            node.wait_ready().await?;
            return Ok(Target::spawned(
                vec![node],
                None,
                args,
                secret,
                "spawned broker".to_owned(),
            ));
        }
        for addr in std::iter::once(args.addr).chain(args.http_addr) {
            if !is_loopback(addr.ip()) {
                bail!("quip-loadtest only targets loopback addresses, not {addr}");
            }
        }
        let cert = args
            .cert
            .clone()
            .context("--cert is required unless --spawn or --spawn-cluster is given")?;
        Ok(Target {
            nodes: vec![Node {
                name: "broker".to_owned(),
                addr: args.addr,
                cert,
                http_addr: args.http_addr,
                child: Mutex::new(None),
                _data_dir: None,
            }],
            durability: args.durability.clone(),
            jwt_secret: args.jwt_secret.clone(),
            description: format!("broker at {}", args.addr),
            broker_pid: args.broker_pid,
            redis: None,
        })
    }

    /// A target of brokers we started (and `redis`, which they share).
    pub fn spawned(
        nodes: Vec<Node>,
        redis: Option<Redis>,
        args: &TargetArgs,
        jwt_secret: String,
        description: String,
    ) -> Target {
        Target {
            nodes,
            durability: args.durability.clone(),
            jwt_secret: Some(jwt_secret),
            description,
            broker_pid: None,
            redis,
        }
    }

    /// Node `index` modulo the node count: with one broker, always that one.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index % self.nodes.len()]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The first broker's pid when we spawned it, or `--broker-pid` (for scenarios
    /// that measure one broker; on a cluster, node-1).
    pub fn pid(&self) -> Option<u32> {
        self.broker_pid.or_else(|| self.nodes[0].pid())
    }

    /// Every broker's pid we know (for RSS sampling: a cluster's is the sum).
    pub fn pids(&self) -> Vec<u32> {
        match self.broker_pid {
            Some(pid) => vec![pid],
            None => self.nodes.iter().filter_map(Node::pid).collect(),
        }
    }

    /// The spawned Redis's pid, for a cluster.
    pub fn redis_pid(&self) -> Option<u32> {
        self.redis.as_ref().and_then(Redis::pid)
    }

    /// A client of node `node` (see [`Target::node`]) on its own socket.
    pub async fn client(&self, node: usize, device_id: &str) -> anyhow::Result<Client> {
        self.client_on(node, device_id, None).await
    }

    /// A client of node `node` on a shared `endpoint` (see
    /// [`ClientOptions::endpoint`]), or on its own socket with `None`.
    pub async fn client_on(
        &self,
        node: usize,
        device_id: &str,
        endpoint: Option<quip_sdk::quinn::Endpoint>,
    ) -> anyhow::Result<Client> {
        let node = self.node(node);
        let options = ClientOptions {
            endpoint,
            device_id: device_id.to_owned(),
            event_buffer: 65_536,
            reconnect: ReconnectPolicy {
                enabled: false,
                ..ReconnectPolicy::default()
            },
            request_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        };
        Ok(Client::connect_with(node.addr, Trust::CertFile(node.cert.clone()), options).await?)
    }

    /// Stops what we spawned: the brokers, then the Redis they share.
    pub fn stop(&self) {
        for node in &self.nodes {
            node.stop();
        }
        if let Some(redis) = &self.redis {
            redis.stop();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Node {
    /// Starts a `quip-broker` (next to this binary) on free loopback ports with a temp
    /// data dir, `jwt_secret`, the `--durability` and `--broker-arg`s of `args`, and
    /// `extra` arguments; see [`Node::wait_ready`]. `name` labels it in errors.
    pub fn start(
        args: &TargetArgs,
        name: &str,
        jwt_secret: &str,
        extra: &[String],
    ) -> anyhow::Result<Node> {
        let exe = std::env::current_exe()?
            .parent()
            .context("binary has a directory")?
            .join("quip-broker");
        let data_dir = TempDir::new()?;
        let addr = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        let http_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&exe)
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--quic-addr")
            .arg(addr.to_string())
            .arg("--http-addr")
            .arg(http_addr.to_string())
            .arg("--durability")
            .arg(&args.durability)
            .args(extra)
            .args(&args.broker_args)
            // Rate limits cap one connection (and logins from one address) at what a
            // person does; a load test drives a few connections as hard as it can.
            .env("QUIP_RATE_MESSAGES_PER_SEC", "0")
            .env("QUIP_RATE_REQUESTS_PER_SEC", "0")
            .env("QUIP_RATE_LOGINS_PER_IP_PER_MIN", "0")
            // Every simulated client comes from 127.0.0.1.
            .env("QUIP_MAX_CONNECTIONS_PER_IP", "0")
            .env("QUIP_LOG", "warn")
            .env("QUIP_JWT_SECRET", jwt_secret)
            // Cluster membership only from `extra`, never from our environment.
            .env_remove("QUIP_REDIS")
            .env_remove("QUIP_NODE_ID")
            .stdout(Stdio::null())
            // Out of the terminal's process group: Ctrl-C reaches only us, and we stop
            // the brokers before the Redis they use (see `main`).
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with -p quip-broker)",
                    exe.display()
                )
            })?;
        Ok(Node {
            name: name.to_owned(),
            addr,
            cert: data_dir.path().join("tls").join("cert.pem"),
            http_addr: Some(http_addr),
            child: Mutex::new(Some(child)),
            _data_dir: Some(data_dir),
        })
    }

    /// Waits until the broker we started accepts a QUIC handshake; fails at once if
    /// it exits (its stderr, e.g. an unknown argument, is ours).
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !self.cert.exists()
            || Client::connect(self.addr, Trust::CertFile(self.cert.clone()))
                .await
                .is_err()
        {
            if let Some(status) = self.exit_status() {
                bail!("{} exited during startup ({status})", self.name);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not accept a QUIC handshake within {STARTUP_TIMEOUT:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref().map(Child::id)
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().ok()?;
        child.as_mut()?.try_wait().ok()?
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A random JWT secret for brokers we start (every node of a cluster gets the same).
pub fn new_jwt_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
