//! Starting the servers under test: free loopback ports, a scratch directory per run,
//! the child process (killed when dropped, so no server outlives its run), and
//! installing a missing server from Debian's packages.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where every server listens. Benchmarks only ever target this machine (design §10).
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long a server may take to accept its first connection.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Refuses anything but a loopback address.
pub fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("benchmarks only target loopback addresses, not {addr}");
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; the listener is
/// closed again so the server can bind it).
pub fn free_tcp_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind((LOOPBACK, 0))?.local_addr()?)
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_addr() -> anyhow::Result<SocketAddr> {
    Ok(UdpSocket::bind((LOOPBACK, 0))?.local_addr()?)
}

/// A directory of its own for one server run, removed on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(root: &Path, name: &str) -> anyhow::Result<ScratchDir> {
        let path = root.join(format!(
            "quip-compare-{name}-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server child process with its output in `<dir>/server.log`. Dropping it kills the
/// process and then removes its directory.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    // Declared last: dropped after the process is gone.
    dir: ScratchDir,
}

impl Server {
    /// Starts `command` (stdout and stderr to the log file in `dir`).
    pub fn spawn(name: &str, mut command: Command, dir: ScratchDir) -> anyhow::Result<Server> {
        let log = dir.path().join("server.log");
        let out = File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Server {
            name: name.to_owned(),
            child: Some(child),
            log,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An error if the process has already exited, with the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited ({status}) before it was ready; its log ends with:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the server's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until the server accepts TCP connections on `addr`.
    pub async fn wait_for_tcp(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not accept on {addr} within {START_TIMEOUT:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of an executable named `name` on `PATH` or in the sbin directories, where
/// Debian puts daemons (`/usr/sbin/nats-server`, `/usr/sbin/mosquitto`) and which a
/// non-login shell's `PATH` may lack.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/sbin",
                "/usr/bin",
                "/usr/local/sbin",
                "/usr/local/bin",
                "/sbin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The path of `binary`, installing Debian's `package` first when it is missing
/// (`apt-get install -y`, then once more after `apt-get update` if that failed: a fresh
/// machine may have no package lists yet).
pub fn ensure_installed(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = find_binary(binary) {
        return Ok(path);
    }
    eprintln!("{binary} is missing: installing Debian's {package} package");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let installed = install().is_ok_and(|s| s.success()) || {
        let _ = Command::new("apt-get").arg("update").status();
        install().is_ok_and(|s| s.success())
    };
    if !installed {
        bail!("could not install {package} with apt-get (run as root, or install it yourself)");
    }
    find_binary(binary).with_context(|| format!("{package} is installed but {binary} is not found"))
}

/// The first line a command prints (stdout, else stderr), for version strings.
pub fn first_output_line(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|line| line.trim().to_owned())
}
