//! One authenticated connection, from `HelloOk` until it is lost or closed.
//!
//! A session runs a few tasks, all ended together with the connection:
//! - the control stream writer (requests, cursor reports) and reader (responses);
//! - the lane acceptor and one reader per lane (deliveries, `SyncDone`);
//! - the cursor reporter (batched delivered cursors);
//! - the gap filler (history fetches for gaps that do not close by themselves);
//! - the datagram reader (typing and presence), unless datagrams are off.
//!
//! Pushes (`req_id` 0) arrive on the control stream (receipts, call and contact
//! events, and typing / presence when they do not go as datagrams) and become events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quip_protocol::pb::{self, ErrorCode};
use quip_protocol::{ClientFrame, ServerFrame, client_frame, encode_frame_bytes, server_frame};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::datagrams::datagram_loop;
use crate::error::{Result, SdkError};
use crate::events::Event;
use crate::framed::{FrameReader, write_loop};
use crate::handshake::Established;
use crate::shared::{Shared, shut_down};

/// Frames queued for the control stream writer.
const WRITE_QUEUE: usize = 256;

/// How often changed delivered cursors are reported.
const REPORT_INTERVAL: Duration = Duration::from_millis(200);

/// How often open gaps are checked against their grace period.
const GAP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Page size of gap-filling history fetches (the broker's maximum).
const GAP_FILL_PAGE: u32 = 200;

/// How long a graceful close waits for the final cursor report to be acknowledged.
const FINAL_REPORT_WAIT: Duration = Duration::from_secs(1);

/// How a session ended.
#[derive(Debug)]
pub(crate) struct SessionEnd {
    pub(crate) reason: String,
    /// How long the connection was up (a long one resets the reconnect backoff).
    pub(crate) lived: Duration,
    /// `close()` (or dropping the client) ended it: do not reconnect.
    pub(crate) closed_by_client: bool,
    /// The broker's close code, if the broker closed the connection.
    pub(crate) broker_code: Option<ErrorCode>,
}

/// Runs the session until the connection ends.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    established: Established,
    mut shutdown: watch::Receiver<bool>,
) -> SessionEnd {
    let max_frame_bytes = established.max_frame_bytes();
    let Established {
        link,
        send,
        reader,
        hello_ok,
        since,
    } = established;
    let connection = link.connection.clone();
    let span = tracing::info_span!(
        "quip_session",
        user = %hello_ok.user_id,
        device = %hello_ok.device_id,
        remote = %connection.remote_address(),
    );
    tracing::info!(parent: &span, lanes = hello_ok.lanes, "connected");

    // Order matters: `State(Connected)` is queued before any lane is read, so it
    // precedes the sync's messages; requests waiting from a previous connection are
    // resent before new ones can be written behind them.
    {
        let mut inbox = shared.inbox();
        inbox.connected(&hello_ok.user_id, &hello_ok.device_id, hello_ok.lanes);
    }
    shared.inbox_ready.notify_waiters();

    shared.set_connection(Some(connection.clone()));
    let (writer, frames) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    tasks.spawn(write_loop(send, frames).instrument(span.clone()));
    let resend = shared.outbox().install(writer.clone());
    if !resend.is_empty() {
        tracing::debug!(parent: &span, requests = resend.len(), "resending requests");
    }
    for frame in resend {
        if writer.send(frame).await.is_err() {
            break;
        }
    }
    tasks.spawn(control_loop(shared.clone(), reader).instrument(span.clone()));
    tasks.spawn(
        lanes_loop(shared.clone(), connection.clone(), max_frame_bytes).instrument(span.clone()),
    );
    tasks.spawn(report_loop(shared.clone(), writer.clone()).instrument(span.clone()));
    tasks.spawn(gap_loop(shared.clone()).instrument(span.clone()));
    if shared.options.datagrams {
        tasks.spawn(datagram_loop(shared.clone(), connection.clone()).instrument(span.clone()));
    }
    drop(writer);

    let mut closed_by_client = false;
    let reason = tokio::select! {
        error = connection.closed() => describe_close(&error),
        Some(result) = tasks.join_next() => {
            // A task only ends on its own when something is wrong: the connection is
            // going away (then its close says why), or the broker broke the protocol.
            if let Some(error) = connection.close_reason() {
                describe_close(&error)
            } else {
                let (code, reason) = match result {
                    Ok(Ok(())) => (0, "a session task ended".to_string()),
                    Ok(Err(SdkError::Frame(error))) => (error.code().close_code(), error.to_string()),
                    Ok(Err(error)) => (0, error.to_string()),
                    Err(join_error) => (
                        ErrorCode::Internal.close_code(),
                        format!("session task failed: {join_error}"),
                    ),
                };
                connection.close(code.into(), reason.as_bytes());
                reason
            }
        }
        _ = shut_down(&mut shutdown) => {
            closed_by_client = true;
            final_report(shared).await;
            link.close(0, "client closed").await;
            "closed by client".to_string()
        }
    };
    let broker_code = match connection.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) if !closed_by_client => {
            ErrorCode::from_close_code(close.error_code.into_inner())
        }
        _ => None,
    };
    tasks.shutdown().await;
    shared.set_connection(None);
    shared.outbox().uninstall();
    shared.inbox().disconnected();
    tracing::info!(parent: &span, %reason, "disconnected");
    SessionEnd {
        reason,
        lived: since.elapsed(),
        closed_by_client,
        broker_code,
    }
}

/// A readable reason for a lost connection.
fn describe_close(error: &quinn::ConnectionError) -> String {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            let name = ErrorCode::from_close_code(code).map_or("unknown", ErrorCode::name);
            format!(
                "closed by the broker: {name} ({code}) {}",
                String::from_utf8_lossy(&close.reason)
            )
        }
        other => other.to_string(),
    }
}

/// Reads responses from the control stream and hands them to their requests.
async fn control_loop(shared: Arc<Shared>, mut reader: FrameReader) -> Result<()> {
    while let Some(frame) = reader.next().await? {
        handle_control_frame(&shared, frame);
    }
    Err(SdkError::UnexpectedResponse(
        "the broker finished the control stream",
    ))
}

fn handle_control_frame(shared: &Shared, frame: ServerFrame) {
    let ServerFrame { req_id, body } = frame;
    let Some(body) = body else {
        tracing::debug!(req_id, "empty frame on the control stream");
        return;
    };
    match body {
        server_frame::Body::Ack(ack) => {
            // Hold our own seq before anyone can see the next one as a gap, even if
            // the caller of `send` has already given up waiting.
            shared.offer_own(&ack.conv_id, ack.seq);
            shared.complete(req_id, server_frame::Body::Ack(ack));
        }
        // Not expected on the control stream, but harmless to honor.
        server_frame::Body::Deliver(pb::Deliver {
            message: Some(message),
        }) => shared.offer_message(message),
        server_frame::Body::SyncDone(_) => shared.sync_done(),
        server_frame::Body::ResumeFrom(resume) => shared.resume_from(&resume.conv_id, resume.seq),
        // Pushes: never responses, whatever their req_id.
        server_frame::Body::Typing(notice) => shared.push_typing(notice),
        server_frame::Body::Presence(presence) => shared.push_presence(presence),
        server_frame::Body::Receipt(receipt) => shared.push_reliable(Event::Receipt(receipt)),
        server_frame::Body::CallEvent(call) => shared.push_reliable(Event::Call(call)),
        server_frame::Body::ContactEvent(contact) => {
            shared.push_reliable(Event::Contact(contact));
        }
        server_frame::Body::Error(error) if req_id == 0 => {
            tracing::warn!(%error, "broker error");
        }
        body if req_id != 0 => shared.complete(req_id, body),
        other => tracing::debug!(?other, "unsolicited frame on the control stream"),
    }
}

/// Accepts the broker's lanes and reads each until the connection ends. A lane
/// failing (bad bytes) ends the session.
async fn lanes_loop(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    max_frame_bytes: usize,
) -> Result<()> {
    let mut lanes: JoinSet<Result<()>> = JoinSet::new();
    loop {
        tokio::select! {
            accepted = connection.accept_uni() => {
                let recv = accepted?;
                let lane = recv.id();
                tracing::debug!(%lane, "lane opened");
                let reader = FrameReader::new(recv, max_frame_bytes);
                lanes.spawn(lane_loop(shared.clone(), reader).in_current_span());
            }
            Some(result) = lanes.join_next() => {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(join_error) => {
                        return Err(SdkError::UnexpectedResponse(if join_error.is_panic() {
                            "lane reader panicked"
                        } else {
                            "lane reader cancelled"
                        }));
                    }
                }
            }
        }
    }
}

/// Reads one lane. Before each frame it waits for room in the event queue, so an
/// application that stops taking events stops the reading, and QUIC flow control
/// pushes back to the broker.
async fn lane_loop(shared: Arc<Shared>, mut reader: FrameReader) -> Result<()> {
    loop {
        shared.wait_for_space().await;
        let Some(frame) = reader.next().await? else {
            return Ok(());
        };
        match frame.body {
            Some(server_frame::Body::Deliver(pb::Deliver {
                message: Some(message),
            })) => shared.offer_message(message),
            Some(server_frame::Body::ResumeFrom(resume)) => {
                tracing::debug!(
                    conv_id = resume.conv_id,
                    seq = resume.seq,
                    "resuming from the broker's cursor"
                );
                shared.resume_from(&resume.conv_id, resume.seq);
            }
            Some(server_frame::Body::SyncDone(done)) => {
                tracing::debug!(lane = done.lane, messages = done.messages, "lane synced");
                shared.sync_done();
            }
            // Pushes belong on the control stream or in datagrams; honored anyway.
            Some(server_frame::Body::Typing(notice)) => shared.push_typing(notice),
            Some(server_frame::Body::Presence(presence)) => shared.push_presence(presence),
            Some(server_frame::Body::Receipt(receipt)) => {
                shared.push_reliable(Event::Receipt(receipt));
            }
            Some(server_frame::Body::CallEvent(call)) => shared.push_reliable(Event::Call(call)),
            Some(server_frame::Body::ContactEvent(contact)) => {
                shared.push_reliable(Event::Contact(contact));
            }
            other => tracing::debug!(?other, "unexpected frame on a lane"),
        }
    }
}

/// Reports delivered cursors [`REPORT_INTERVAL`] after the application took messages,
/// or sooner after many. Sleeps while nothing is taken (no timer on an idle client).
/// Fire and forget: the `ReportOk` is not waited for, and a lost report is harmless
/// because `Hello` carries the cursors on reconnect.
async fn report_loop(shared: Arc<Shared>, writer: mpsc::Sender<Bytes>) -> Result<()> {
    loop {
        shared.taken.notified().await;
        tokio::select! {
            () = tokio::time::sleep(REPORT_INTERVAL) => {}
            () = shared.report_due.notified() => {}
        }
        let reports = shared.inbox().take_cursor_reports();
        if reports.is_empty() {
            continue;
        }
        let frame = encode_frame_bytes(&ClientFrame {
            req_id: shared.next_req_id(),
            body: Some(client_frame::Body::Report(pb::ReportCursors { reports })),
        });
        if writer.send(frame).await.is_err() {
            return Ok(());
        }
    }
}

/// On a graceful close, reports the final delivered cursors and waits briefly for
/// the broker to store them, so another process with this device id resumes exactly.
async fn final_report(shared: &Shared) {
    let reports = shared.inbox().take_cursor_reports();
    if reports.is_empty() {
        return;
    }
    let report = shared.request(
        client_frame::Body::Report(pb::ReportCursors { reports }),
        false,
    );
    match tokio::time::timeout(FINAL_REPORT_WAIT, report).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::debug!(%error, "final cursor report failed"),
        Err(_) => tracing::debug!("final cursor report not acknowledged in time"),
    }
}

/// Starts history fetches for gaps that stayed open past their grace period.
/// Polls only while a gap is open or a fetch runs; otherwise it sleeps until a gap
/// opens.
async fn gap_loop(shared: Arc<Shared>) -> Result<()> {
    let mut fills = JoinSet::new();
    loop {
        if fills.is_empty() && !shared.inbox().has_open_gaps() {
            shared.gap_open.notified().await;
        }
        tokio::select! {
            () = tokio::time::sleep(GAP_CHECK_INTERVAL) => {}
            Some(_) = fills.join_next() => continue,
        }
        let due = shared.inbox().due_gap_fills(Instant::now());
        for conv_id in due {
            fills.spawn(fill_gap(shared.clone(), conv_id).in_current_span());
        }
    }
}

/// Fetches a conversation's history after its cursor, page by page, offering every
/// message to the reorderer, until the broker has nothing more.
async fn fill_gap(shared: Arc<Shared>, conv_id: String) {
    tracing::debug!(conv_id, "filling gap from history");
    let mut complete = false;
    loop {
        let cursor = shared.inbox().cursor(&conv_id);
        let request = client_frame::Body::History(pb::HistoryRequest {
            conv_id: conv_id.clone(),
            before_seq: 0,
            after_seq: Some(cursor),
            limit: GAP_FILL_PAGE,
        });
        let page = match shared.request(request, true).await {
            Ok(server_frame::Body::History(page)) => page,
            Ok(_) => {
                tracing::warn!(conv_id, "history answered with another frame");
                break;
            }
            Err(error) => {
                tracing::warn!(conv_id, %error, "history fetch for a gap failed");
                break;
            }
        };
        let (has_more, empty) = (page.has_more, page.messages.is_empty());
        for message in page.messages {
            shared.offer_message(message);
        }
        let progressed = shared.inbox().cursor(&conv_id) > cursor;
        if !has_more || empty {
            complete = true;
            break;
        }
        if !progressed {
            tracing::warn!(conv_id, cursor, "history did not advance the cursor");
            break;
        }
    }
    shared
        .inbox()
        .fill_finished(&conv_id, complete, Instant::now(), shared.options.gap_grace);
}
