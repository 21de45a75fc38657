//! The load of one run: sender tasks and receiver tasks, and ending them in order.
//!
//! Every connected user gets a receiver task, senders included (group senders are
//! members and receive the others' messages): an unread connection would fill its
//! event buffer and stop being read, and the broker would close it as a slow
//! consumer. Receivers run until every sender has its last ACK, so the ACKs of a
//! connection that also receives keep flowing to the end.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conn::{Conn, Incoming};
use crate::metrics::Recorder;
use crate::sender::{self, SendPlan};

#[derive(Debug, Default)]
pub struct Load {
    senders: JoinSet<()>,
    receivers: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Load {
    /// Counts what `conn` receives (and its end-to-end latency) into `recorder`.
    pub fn receive(&mut self, conn: Arc<Conn>, recorder: Recorder) {
        self.receivers
            .spawn(receive(conn, recorder, self.stop.subscribe()));
    }

    /// Sends from `conn` to `to` (a user or group) as `plan` says.
    pub fn send(&mut self, conn: Arc<Conn>, to: String, plan: SendPlan, recorder: Recorder) {
        self.senders.spawn(sender::run(conn, to, plan, recorder));
    }

    /// Waits for the senders (they stop at their plan's end and wait for the sends
    /// in flight), then stops the receivers.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        while let Some(done) = self.senders.join_next().await {
            done?;
        }
        self.stop.send_replace(true);
        while let Some(done) = self.receivers.join_next().await {
            done?;
        }
        Ok(())
    }
}

async fn receive(conn: Arc<Conn>, recorder: Recorder, mut stop: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            incoming = conn.next() => incoming,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match incoming {
            Some(Incoming::Message {
                sent_micros: Some(sent),
            }) => recorder.delivered(Some(sent)),
            Some(Incoming::Message { sent_micros: None } | Incoming::SyncDone) => {}
            Some(Incoming::Error(error)) => recorder.error(error),
            Some(Incoming::Closed(reason)) => {
                recorder.error(format!("connection closed: {reason}"));
                break;
            }
            None => break,
        }
    }
}
