//! Graceful shutdown, as in mini-redis: a broadcast signal everyone can wait on, plus
//! guards held by every connection task so the broker can wait until they are gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    trigger: Arc<watch::Sender<bool>>,
    /// Cloned into each task; the channel closes when the last clone is dropped.
    done: mpsc::Sender<()>,
}

/// Held by a task that shutdown should wait for.
#[derive(Debug, Clone)]
pub struct ShutdownGuard(#[allow(dead_code)] mpsc::Sender<()>);

/// The waiting side: resolves when every guard is dropped.
#[derive(Debug)]
pub struct Drained(mpsc::Receiver<()>);

impl Shutdown {
    pub fn new() -> (Shutdown, Drained) {
        let (trigger, signal) = watch::channel(false);
        let (done, drained) = mpsc::channel(1);
        (
            Shutdown {
                signal,
                trigger: Arc::new(trigger),
                done,
            },
            Drained(drained),
        )
    }

    pub fn trigger(&self) {
        self.trigger.send_replace(true);
    }

    /// Resolves once shutdown has been triggered.
    pub async fn signalled(&self) {
        let mut signal = self.signal.clone();
        // An error means the trigger is gone, which also means shutting down.
        let _ = signal.wait_for(|&down| down).await;
    }

    pub fn guard(&self) -> ShutdownGuard {
        ShutdownGuard(self.done.clone())
    }
}

impl Drained {
    /// Waits until every guard is dropped (the `Shutdown` handles must be dropped
    /// too), at most `grace`. Returns whether everything finished in time.
    pub async fn wait(mut self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.0.recv()).await.is_ok()
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
