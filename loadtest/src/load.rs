//! The load of one run: sender tasks and receiver tasks, and ending them in order.
//!
//! Every connected user gets a receiver task, senders included (group senders are
//! members and receive the others' messages): an unread connection would fill its
//! event buffer and stop being read, and the broker would close it as a slow
//! consumer. Receivers run until every sender has its last ACK, so the ACKs of a
//! connection that also receives keep flowing to the end.
//!
//! A tracked receiver ([`Load::receive_tracked`]) counts each message once by its
//! seq, however often it surfaces, and can be churned: asked to close its connection
//! (taking everything it had surfaced) and to carry on with a new one that resumes
//! as the same device.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::conn::{Conn, Incoming};
use crate::delivery::{Ledger, Seen};
use crate::metrics::Recorder;
use crate::sender::{self, SendPlan};

#[derive(Debug, Default)]
pub struct Load {
    senders: JoinSet<()>,
    receivers: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// Where senders enter the seqs of their acknowledged sends, if tracked.
    ledger: Option<Arc<Ledger>>,
}

/// A request to a tracked receiver to reconnect: it closes its connection, takes
/// what it had surfaced, answers on `closed`, then waits for the new connection on
/// `next` (`None`: there is none, and the receiver ends).
#[derive(Debug)]
pub struct Churn {
    pub closed: oneshot::Sender<()>,
    pub next: oneshot::Receiver<Option<Arc<Conn>>>,
}

impl Load {
    /// A load whose senders enter every acknowledged seq in `ledger`.
    pub fn tracked(ledger: Arc<Ledger>) -> Load {
        Load {
            ledger: Some(ledger),
            ..Load::default()
        }
    }

    /// Counts what `conn` receives (and its end-to-end latency) into `recorder`.
    pub fn receive(&mut self, conn: Arc<Conn>, recorder: Recorder) {
        let receiver = Receiver {
            recorder,
            seen: None,
        };
        self.receivers
            .spawn(receiver.run(conn, None, self.stop.subscribe()));
    }

    /// Like [`receive`](Self::receive), counting each load-test message once in
    /// `seen`; churned when asked on the returned channel.
    pub fn receive_tracked(
        &mut self,
        conn: Arc<Conn>,
        recorder: Recorder,
        seen: Arc<Seen>,
    ) -> mpsc::Sender<Churn> {
        let (churn, churns) = mpsc::channel(1);
        let receiver = Receiver {
            recorder,
            seen: Some(seen),
        };
        self.receivers
            .spawn(receiver.run(conn, Some(churns), self.stop.subscribe()));
        churn
    }

    /// Sends from `conn` to `to` (a user or group) as `plan` says.
    pub fn send(&mut self, conn: Arc<Conn>, to: String, plan: SendPlan, recorder: Recorder) {
        self.senders
            .spawn(sender::run(conn, to, plan, recorder, self.ledger.clone()));
    }

    /// Waits for the senders (they stop at their plan's end and wait for the sends
    /// in flight), then stops the receivers.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.finish_senders().await?;
        self.stop_receivers().await
    }

    /// Waits for the senders only; receivers keep receiving.
    pub async fn finish_senders(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.senders.join_next().await {
            done?;
        }
        Ok(())
    }

    /// Stops the receivers (after [`finish_senders`](Self::finish_senders)).
    pub async fn stop_receivers(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        while let Some(done) = self.receivers.join_next().await {
            done?;
        }
        Ok(())
    }
}

enum Step {
    Incoming(Option<Incoming>),
    Churn(Churn),
    Stop,
}

struct Receiver {
    recorder: Recorder,
    seen: Option<Arc<Seen>>,
}

impl Receiver {
    async fn run(
        self,
        mut conn: Arc<Conn>,
        mut churns: Option<mpsc::Receiver<Churn>>,
        mut stop: watch::Receiver<bool>,
    ) {
        // A connection made for a churn is this task's to close.
        let mut replaced = false;
        loop {
            let step = tokio::select! {
                incoming = conn.next() => Step::Incoming(incoming),
                churn = next_churn(&mut churns) => Step::Churn(churn),
                _ = stop.wait_for(|stop| *stop) => Step::Stop,
            };
            match step {
                Step::Churn(churn) => {
                    tokio::join!(conn.close(), self.drain(&conn));
                    let _ = churn.closed.send(());
                    match churn.next.await {
                        Ok(Some(next)) => {
                            conn = next;
                            replaced = true;
                        }
                        // The reconnect failed (and was recorded as an error).
                        _ => return,
                    }
                }
                Step::Stop | Step::Incoming(None) => break,
                Step::Incoming(Some(Incoming::Closed(reason))) => {
                    self.recorder.error(format!("connection closed: {reason}"));
                    break;
                }
                Step::Incoming(Some(incoming)) => self.take(incoming),
            }
        }
        if replaced {
            conn.close().await;
        }
    }

    fn take(&self, incoming: Incoming) {
        match incoming {
            Incoming::Message {
                sent_micros: Some(sent),
                seq,
            } => {
                if self.seen.as_ref().is_none_or(|seen| seen.first_time(seq)) {
                    self.recorder.delivered(Some(sent));
                }
            }
            Incoming::Message {
                sent_micros: None, ..
            }
            | Incoming::SyncDone
            | Incoming::Closed(_) => {}
            Incoming::Error(error) => self.recorder.error(error),
        }
    }

    /// Takes everything a closing connection still surfaces, up to its end.
    async fn drain(&self, conn: &Conn) {
        while let Some(incoming) = conn.next().await {
            if matches!(incoming, Incoming::Closed(_)) {
                break;
            }
            self.take(incoming);
        }
    }
}

/// The next churn request; never, without a channel or once it is closed.
async fn next_churn(churns: &mut Option<mpsc::Receiver<Churn>>) -> Churn {
    if let Some(churns) = churns {
        if let Some(churn) = churns.recv().await {
            return churn;
        }
    }
    std::future::pending().await
}
