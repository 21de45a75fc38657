//! Which broker to load: an address plus its certificate, or a `quip-broker` child
//! process started on a free loopback port with a temp data dir.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quip_sdk::{Client, ClientOptions, ReconnectPolicy, Trust};

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
    /// Durability for --spawn: fsync or os.
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
    /// Extra arguments for the spawned broker (repeatable), e.g.
    /// `--broker-arg=--store-cache-mib=64`.
    #[arg(long = "broker-arg", global = true, allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// The pid of a broker we did not spawn (on this machine), to sample its memory
    /// from /proc during the run.
    #[arg(long, global = true, conflicts_with = "spawn")]
    pub broker_pid: Option<u32>,
}

#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub durability: String,
    /// HTTP/WebSocket address, when known.
    pub http_addr: Option<SocketAddr>,
    /// The broker's JWT secret, when known (see [`TargetArgs::jwt_secret`]).
    pub jwt_secret: Option<String>,
    /// `--broker-pid`: a local broker we did not start.
    broker_pid: Option<u32>,
    child: Mutex<Option<Child>>,
    _data_dir: Option<TempDir>,
}

impl Target {
    pub async fn resolve(args: &TargetArgs) -> anyhow::Result<Target> {
        if args.spawn {
            return Self::spawn(args).await;
        }
        for addr in std::iter::once(args.addr).chain(args.http_addr) {
            if !is_loopback(addr.ip()) {
                bail!("quip-loadtest only targets loopback addresses, not {addr}");
            }
        }
        let cert = args
            .cert
            .clone()
            .context("--cert is required unless --spawn is given")?;
        Ok(Target {
            addr: args.addr,
            cert,
            durability: args.durability.clone(),
            http_addr: args.http_addr,
            jwt_secret: args.jwt_secret.clone(),
            broker_pid: args.broker_pid,
            child: Mutex::new(None),
            _data_dir: None,
        })
    }

    async fn spawn(args: &TargetArgs) -> anyhow::Result<Target> {
        let durability = args.durability.as_str();
        let exe = std::env::current_exe()?
            .parent()
            .context("binary has a directory")?
            .join("quip-broker");
        let data_dir = TempDir::new()?;
        let addr = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        let http_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let jwt_secret = format!("{:032x}", rand::random::<u128>());
        let child = Command::new(&exe)
            .arg("--data-dir")
            .arg(&data_dir.0)
            .arg("--quic-addr")
            .arg(addr.to_string())
            .arg("--http-addr")
            .arg(http_addr.to_string())
            .arg("--durability")
            .arg(durability)
            .args(&args.broker_args)
            // Rate limits cap one connection (and logins from one address) at what a
            // person does; a load test drives a few connections as hard as it can.
            .env("QUIP_RATE_MESSAGES_PER_SEC", "0")
            .env("QUIP_RATE_REQUESTS_PER_SEC", "0")
            .env("QUIP_RATE_LOGINS_PER_IP_PER_MIN", "0")
            .env("QUIP_LOG", "warn")
            .env("QUIP_JWT_SECRET", &jwt_secret)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with -p quip-broker)",
                    exe.display()
                )
            })?;
        let target = Target {
            addr,
            cert: data_dir.0.join("tls").join("cert.pem"),
            durability: durability.to_owned(),
            http_addr: Some(http_addr),
            jwt_secret: Some(jwt_secret),
            broker_pid: None,
            child: Mutex::new(Some(child)),
            _data_dir: Some(data_dir),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !target.cert.exists()
            || Client::connect(addr, Trust::CertFile(target.cert.clone()))
                .await
                .is_err()
        {
            if Instant::now() > deadline {
                bail!("spawned broker did not come up");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(target)
    }

    /// The broker's pid when we spawned it, or `--broker-pid` (for RSS sampling).
    pub fn pid(&self) -> Option<u32> {
        self.broker_pid
            .or_else(|| self.child.lock().ok()?.as_ref().map(Child::id))
    }

    pub async fn client(&self, device_id: &str) -> anyhow::Result<Client> {
        self.client_on(device_id, None).await
    }

    /// A client on a shared `endpoint` (see [`ClientOptions::endpoint`]), or on its
    /// own socket with `None`.
    pub async fn client_on(
        &self,
        device_id: &str,
        endpoint: Option<quip_sdk::quinn::Endpoint>,
    ) -> anyhow::Result<Client> {
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
        Ok(Client::connect_with(self.addr, Trust::CertFile(self.cert.clone()), options).await?)
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// A temp dir removed on drop (kept tiny to avoid a dependency for one use).
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("quip-loadtest-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
