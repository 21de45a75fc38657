//! `--spawn-cluster N`: a `redis-server` on a free loopback port with a temp dir,
//! and N brokers joined to it (`--redis`, `--node-id node-1`…`node-N`) sharing one
//! JWT secret, each with its own data dir and ports (see [`Node::start`]).
//!
//! Everything stops when the [`Target`] is dropped: the brokers first, then Redis.

use std::io::ErrorKind;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::{self, Node, Target, TargetArgs};
use crate::temp_dir::TempDir;

/// How long Redis may take to answer its first PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Redis's own log (its stdout), kept for a failed start's error.
const LOG_FILE: &str = "redis.log";

/// Starts Redis and `count` brokers on it, and waits until every broker accepts a
/// QUIC handshake.
pub async fn spawn(args: &TargetArgs, count: u16) -> anyhow::Result<Target> {
    let redis = Redis::start().await?;
    let secret = target::new_jwt_secret();
    // Declared after `redis`: on an error the started nodes are dropped (stopped)
    // before it.
    let mut nodes = Vec::with_capacity(count.into());
    for id in 1..=count {
        let name = format!("node-{id}");
        let extra = [
            "--redis".to_owned(),
            redis.url.clone(),
            "--node-id".to_owned(),
            name.clone(),
        ];
        nodes.push(Node::start(args, &name, &secret, &extra)?);
    }
    futures_util::future::try_join_all(nodes.iter().map(Node::wait_ready)).await?;
    Ok(Target::spawned(
        nodes,
        Some(redis),
        args,
        secret,
        format!("cluster of {count} nodes on Redis"),
    ))
}

/// A `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct Redis {
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
    child: Mutex<Option<Child>>,
    dir: TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port, persisting (append-only file,
    /// fsync once a second, no snapshots) into a temp dir, and waits for its PONG.
    async fn start() -> anyhow::Result<Redis> {
        let dir = TempDir::new()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join(LOG_FILE))?;
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            // Out of the terminal's process group: on Ctrl-C we stop it ourselves,
            // after the brokers that use it.
            .process_group(0)
            .spawn()
            .map_err(|error| match error.kind() {
                ErrorKind::NotFound => anyhow!(
                    "--spawn-cluster needs redis-server, which is not on PATH \
                     (apt-get install redis-server)"
                ),
                _ => anyhow!(error).context("cannot start redis-server"),
            })?;
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            child: Mutex::new(Some(child)),
            dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !ping(port).await {
            if let Some(status) = redis.exit_status() {
                bail!(
                    "redis-server exited during startup ({status}):\n{}",
                    redis.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not answer PING on port {port} within \
                     {STARTUP_TIMEOUT:?}:\n{}",
                    redis.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref().map(Child::id)
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().ok()?;
        child.as_mut()?.try_wait().ok()?
    }

    /// The last lines of Redis's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether Redis on `port` answers PING (a raw RESP inline command: no client
/// library for one probe).
async fn ping(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        std::io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Ok(true))
    )
}
