//! Files behind IMAGE, VOICE, VIDEO and FILE messages: uploading, downloading, and
//! sending a message that carries an uploaded file.
//!
//! # Transfers
//!
//! Every upload and download runs on a QUIC bidirectional stream of its own on the
//! current connection, so the control stream stays free for chat: the client writes
//! one `StreamRequest` frame (then, for an upload, the file's bytes) and finishes its
//! side; the broker answers one `StreamResponse` frame (then, for a download, the
//! bytes). Files are streamed in chunks of 64 KiB and never held whole in memory,
//! except by [`download_range`](Client::download_range) and
//! [`download_thumbnail`](Client::download_thumbnail), which are meant for small
//! pieces. The broker runs a limited number of transfers per connection at once
//! (`max_transfers_per_connection`); more wait for their turn.
//!
//! The broker decides the MIME type from the content (the client's type counts only
//! when the content says nothing), enforces its `max_file_bytes` while the bytes
//! arrive (`FILE_TOO_LARGE`, nothing stored) and, for images, records width and
//! height and makes a JPEG thumbnail.
//!
//! # Not resent
//!
//! A transfer belongs to one connection. If that connection drops, the transfer
//! fails with [`SdkError::Disconnected`] ([`SdkError::ClientClosed`] after
//! [`close`](Client::close)); the application starts it again if it wants to. A
//! transfer started while the client is between connections waits for the next one
//! (for at most `request_timeout`, then `Disconnected`). An upload that is cut off, cancelled (its future
//! dropped) or refused leaves nothing on the broker. A download to a file writes to a
//! temporary file next to the destination and renames it into place only once every
//! byte arrived; otherwise the temporary file is removed.
//!
//! # Sending
//!
//! Upload first, then [`send_file`](Client::send_file) the `file_id`: the broker
//! fills the message's name, size, MIME type, URLs and (for images) dimensions from
//! its record. Whoever can read the conversation may then download the file; anyone
//! else gets `NOT_FOUND`, as for an id that does not exist.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use quip_protocol::pb::{self, stream_request, stream_response};
use quip_protocol::{FrameDecoder, client_frame, encode_frame_bytes, server_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::error::{Result, SdkError};
use crate::framed::read_one;

/// Bytes read from the source (or taken from the stream) at a time.
const CHUNK: usize = 64 * 1024;

/// Reset code of an upload abandoned by the client (cancelled, or its source failed).
const CANCELLED: u32 = 0;

/// Memory reserved up front for an in-memory download, whatever its header says.
const MAX_PREALLOC: u64 = 1024 * 1024;

impl Client {
    /// Uploads the file at `path`, streaming it in chunks; its name is the path's
    /// last component and its declared size the file's current length. `progress` is
    /// called after each chunk with the bytes sent so far and the total.
    ///
    /// Refused with `FILE_TOO_LARGE` over the broker's `max_file_bytes`, and with
    /// `INVALID_ARGUMENT` for an empty file or one that changed size while being
    /// read. See the [module docs](self) for what happens when the connection drops.
    pub async fn upload_file(
        &self,
        path: &Path,
        progress: impl FnMut(u64, u64),
    ) -> Result<pb::FileInfo> {
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.upload_reader(&name, size, mime_for_path(path), file, progress)
            .await
    }

    /// Uploads what `reader` yields until its end, streaming it in chunks.
    /// `declared_size` is the size the broker should expect (0: unknown); a different
    /// non-zero size fails with `INVALID_ARGUMENT`. `mime` is the client's idea of
    /// the type, used only when the content does not tell. `progress` is called after
    /// each chunk with the bytes sent so far and `declared_size`.
    ///
    /// If `reader` fails, the upload is abandoned (the broker stores nothing) and the
    /// I/O error returned.
    pub async fn upload_reader<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        declared_size: u64,
        mime: &str,
        mut reader: R,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<pb::FileInfo> {
        let request = stream_request::Request::Upload(pb::FileUpload {
            name: name.to_string(),
            declared_size,
            mime: mime.to_string(),
        });
        let upload = async {
            let mut transfer = self.open_transfer(request).await?;
            // Resolves when the broker stops reading or the connection is lost,
            // which must end the upload even while `reader` has nothing to give.
            let interrupted = transfer.send.stopped();
            tokio::pin!(interrupted);
            let mut chunk = vec![0; CHUNK];
            let mut sent = 0u64;
            while !transfer.stopped {
                let n = tokio::select! {
                    read = reader.read(&mut chunk) => read?,
                    outcome = &mut interrupted => match outcome {
                        Ok(_) => {
                            transfer.stopped = true;
                            break;
                        }
                        Err(quinn::StoppedError::ConnectionLost(error)) => {
                            return Err(error.into());
                        }
                        Err(quinn::StoppedError::ZeroRttRejected) => {
                            return Err(SdkError::UnexpectedResponse("0-RTT rejected"));
                        }
                    },
                };
                if n == 0 {
                    transfer.finish();
                    break;
                }
                if transfer.write(&chunk[..n]).await? {
                    sent += n as u64;
                    progress(sent, declared_size);
                }
            }
            // A stopped upload was refused: the broker's answer says why.
            match transfer.response(self.max_frame_bytes()).await? {
                stream_response::Response::Uploaded(info) => Ok(info),
                _ => Err(SdkError::UnexpectedResponse(
                    "expected StreamResponse.uploaded",
                )),
            }
        };
        upload.await.map_err(|error| self.transfer_error(error))
    }

    /// Downloads a whole file to `dest`, streaming it: the bytes go to a temporary
    /// file in the same directory, renamed to `dest` (replacing any file there) once
    /// complete. `progress` is called after each chunk with the bytes received so far
    /// and the total. Returns the header (the file's [`FileInfo`](pb::FileInfo)
    /// among it).
    ///
    /// `NOT_FOUND` for a file that does not exist or that this user may not read.
    pub async fn download_file(
        &self,
        file_id: &str,
        dest: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<pb::FileHeader> {
        let download = async {
            let (header, mut body) = self
                .open_download(pb::FileDownload {
                    file_id: file_id.to_string(),
                    ..pb::FileDownload::default()
                })
                .await?;
            let mut part = PartFile::create(dest).await?;
            let mut received = 0u64;
            while let Some(chunk) = body.next().await? {
                part.file.write_all(&chunk).await?;
                received += chunk.len() as u64;
                progress(received, header.length);
            }
            part.commit(dest).await?;
            Ok(header)
        };
        download.await.map_err(|error| self.transfer_error(error))
    }

    /// Downloads `length` bytes of a file from `offset` (`length` 0: to the end) into
    /// memory; meant for small ranges. The header says which range arrived (the
    /// broker clamps `length` to the end of the file). An `offset` beyond the end
    /// fails with `INVALID_ARGUMENT`.
    pub async fn download_range(
        &self,
        file_id: &str,
        offset: u64,
        length: u64,
    ) -> Result<(pb::FileHeader, Vec<u8>)> {
        self.download_to_memory(pb::FileDownload {
            file_id: file_id.to_string(),
            thumbnail: false,
            offset,
            length,
        })
        .await
    }

    /// The JPEG thumbnail of an image; `NOT_FOUND` if the file has none (or does not
    /// exist, or this user may not read it).
    pub async fn download_thumbnail(&self, file_id: &str) -> Result<Vec<u8>> {
        let (_, bytes) = self
            .download_to_memory(pb::FileDownload {
                file_id: file_id.to_string(),
                thumbnail: true,
                ..pb::FileDownload::default()
            })
            .await?;
        Ok(bytes)
    }

    /// A file's metadata, under the same rules as a download (`NOT_FOUND` for files
    /// this user may not read). Asked on the control stream, and asked again on the
    /// next connection if this one drops.
    pub async fn file_info(&self, file_id: &str) -> Result<pb::FileInfo> {
        let body = client_frame::Body::FileInfo(pb::FileInfoRequest {
            file_id: file_id.to_string(),
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::FileInfo(info) => Ok(info),
            _ => Err(SdkError::UnexpectedResponse("expected FileInfo")),
        }
    }

    /// Sends an uploaded file as a message of `kind` (`Image`, `Voice`, `Video` or
    /// `File`) to a user or group. Only the uploader may send a file; the broker fills
    /// the content from its record (an `Image` must be an image). `duration_ms` is for
    /// voice and video (0 otherwise). Like [`send`](Self::send), resent after a
    /// reconnect under the same `client_msg_id`.
    pub async fn send_file(
        &self,
        to: &str,
        kind: pb::MessageKind,
        file_id: &str,
        duration_ms: u32,
    ) -> Result<pb::SendAck> {
        if !is_media_kind(kind) {
            return Err(SdkError::InvalidArgument(format!(
                "a file is sent as IMAGE, VOICE, VIDEO or FILE, not {}",
                kind.as_str_name()
            )));
        }
        self.send(pb::SendRequest {
            to: to.to_string(),
            kind: kind as i32,
            content: Some(pb::send_request::Content::File(pb::FileContent {
                file_id: file_id.to_string(),
                duration_ms,
                ..pb::FileContent::default()
            })),
            client_msg_id: String::new(),
        })
        .await
    }

    async fn download_to_memory(
        &self,
        request: pb::FileDownload,
    ) -> Result<(pb::FileHeader, Vec<u8>)> {
        let download = async {
            let (header, mut body) = self.open_download(request).await?;
            let mut bytes = Vec::with_capacity(header.length.min(MAX_PREALLOC) as usize);
            while let Some(chunk) = body.next().await? {
                bytes.extend_from_slice(&chunk);
            }
            Ok((header, bytes))
        };
        download.await.map_err(|error| self.transfer_error(error))
    }

    /// Opens a download stream and reads its header; the body follows.
    async fn open_download(&self, request: pb::FileDownload) -> Result<(pb::FileHeader, Body)> {
        let mut transfer = self
            .open_transfer(stream_request::Request::Download(request))
            .await?;
        transfer.finish();
        let response = tokio::time::timeout(
            self.shared.options.request_timeout,
            transfer.response(self.max_frame_bytes()),
        )
        .await
        .map_err(|_| SdkError::Timeout)??;
        match response {
            stream_response::Response::Download(header) => {
                let remaining = header.length;
                Ok((
                    header,
                    Body {
                        transfer,
                        remaining,
                    },
                ))
            }
            _ => Err(SdkError::UnexpectedResponse(
                "expected StreamResponse.download",
            )),
        }
    }

    /// Opens a transfer stream on the current connection and writes its request.
    async fn open_transfer(&self, request: stream_request::Request) -> Result<Transfer> {
        let connection = self.shared.live_connection().await?;
        let (send, recv) = connection.open_bi().await?;
        let mut transfer = Transfer {
            send,
            recv,
            buf: BytesMut::new(),
            finished: false,
            stopped: false,
        };
        let frame = encode_frame_bytes(&pb::StreamRequest {
            request: Some(request),
        });
        transfer.write(&frame).await?;
        Ok(transfer)
    }

    fn max_frame_bytes(&self) -> usize {
        self.shared
            .max_frame_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A transfer that failed because its connection went away fails with
    /// `Disconnected` (or `ClientClosed`): it is not resumed on the next connection.
    fn transfer_error(&self, error: SdkError) -> SdkError {
        let connection_gone = matches!(
            error,
            SdkError::Write(quinn::WriteError::ConnectionLost(_))
                | SdkError::Read(quinn::ReadError::ConnectionLost(_))
                | SdkError::Connection(_)
                | SdkError::ClosedByBroker { .. }
        );
        if !connection_gone {
            return error;
        }
        if self.shared.is_shut_down() {
            return SdkError::ClientClosed;
        }
        tracing::debug!(%error, "file transfer lost its connection");
        SdkError::Disconnected
    }
}

/// One transfer stream. Dropped before its send side was finished (a cancelled
/// upload, a failed source), it resets that side, so the broker discards the upload
/// rather than storing a truncated file (quinn would otherwise finish it on drop).
#[derive(Debug)]
struct Transfer {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Bytes read from `recv` and not yet consumed.
    buf: BytesMut,
    finished: bool,
    /// The broker stopped reading (a refused upload): its answer explains.
    stopped: bool,
}

impl Transfer {
    /// Writes `data`; `false` if the broker has stopped reading.
    async fn write(&mut self, data: &[u8]) -> Result<bool> {
        if self.stopped {
            return Ok(false);
        }
        match self.send.write_all(data).await {
            Ok(()) => Ok(true),
            Err(quinn::WriteError::Stopped(code)) => {
                tracing::debug!(%code, "the broker stopped reading the transfer");
                self.stopped = true;
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Ends the send side cleanly: everything was written.
    fn finish(&mut self) {
        // Fails only if already finished or reset, which changes nothing here.
        let _ = self.send.finish();
        self.finished = true;
    }

    /// The broker's `StreamResponse`; its error as `SdkError::Server`.
    async fn response(&mut self, max_frame_bytes: usize) -> Result<stream_response::Response> {
        let decoder = FrameDecoder::new(max_frame_bytes);
        let response = read_one::<pb::StreamResponse>(&mut self.recv, &mut self.buf, decoder)
            .await?
            .ok_or(SdkError::UnexpectedResponse(
                "transfer stream ended without a response",
            ))?;
        match response.response {
            Some(stream_response::Response::Error(error)) => Err(SdkError::Server(error)),
            Some(response) => Ok(response),
            None => Err(SdkError::UnexpectedResponse("empty StreamResponse")),
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.send.reset(quinn::VarInt::from_u32(CANCELLED));
        }
    }
}

/// The bytes of a download after its header: exactly `header.length` of them.
#[derive(Debug)]
struct Body {
    transfer: Transfer,
    remaining: u64,
}

impl Body {
    /// The next piece; `None` once every announced byte arrived and the stream ended.
    async fn next(&mut self) -> Result<Option<Bytes>> {
        let chunk = if self.transfer.buf.is_empty() {
            self.transfer
                .recv
                .read_chunk(CHUNK, true)
                .await?
                .map(|chunk| chunk.bytes)
        } else {
            Some(self.transfer.buf.split().freeze())
        };
        match chunk {
            Some(chunk) if chunk.len() as u64 > self.remaining => Err(
                SdkError::UnexpectedResponse("download longer than its header says"),
            ),
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Ok(Some(chunk))
            }
            None if self.remaining == 0 => Ok(None),
            None => Err(SdkError::UnexpectedResponse(
                "download ended before all its bytes arrived",
            )),
        }
    }
}

/// A download's temporary file next to its destination; removed when dropped unless
/// committed.
#[derive(Debug)]
struct PartFile {
    path: PathBuf,
    file: tokio::fs::File,
    committed: bool,
}

impl PartFile {
    async fn create(dest: &Path) -> Result<PartFile> {
        let Some(name) = dest.file_name() else {
            return Err(SdkError::InvalidArgument(format!(
                "download destination {} names no file",
                dest.display()
            )));
        };
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let path = dir.join(format!(
            ".{}.{:016x}.part",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(PartFile {
            path,
            file,
            committed: false,
        })
    }

    /// Flushes the file to disk and renames it to `dest`.
    async fn commit(mut self, dest: &Path) -> Result<()> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        tokio::fs::rename(&self.path, dest).await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn is_media_kind(kind: pb::MessageKind) -> bool {
    matches!(
        kind,
        pb::MessageKind::Image
            | pb::MessageKind::Voice
            | pb::MessageKind::Video
            | pb::MessageKind::File
    )
}

/// The client's guess at a file's type from its extension. The broker sniffs the
/// content and uses this only when the content does not tell (plain text, mostly).
fn mime_for_path(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_media_kinds_carry_files() {
        for kind in [
            pb::MessageKind::Image,
            pb::MessageKind::Voice,
            pb::MessageKind::Video,
            pb::MessageKind::File,
        ] {
            assert!(is_media_kind(kind), "{kind:?}");
        }
        for kind in [
            pb::MessageKind::Text,
            pb::MessageKind::System,
            pb::MessageKind::Custom,
            pb::MessageKind::Unspecified,
        ] {
            assert!(!is_media_kind(kind), "{kind:?}");
        }
    }

    #[test]
    fn extensions_give_a_hint_and_unknown_ones_none() {
        assert_eq!(mime_for_path(Path::new("/tmp/notes.TXT")), "text/plain");
        assert_eq!(mime_for_path(Path::new("a/b/photo.jpeg")), "image/jpeg");
        assert_eq!(
            mime_for_path(Path::new("archive.tar.xyz")),
            "application/octet-stream"
        );
        assert_eq!(
            mime_for_path(Path::new("README")),
            "application/octet-stream"
        );
    }

    #[tokio::test]
    async fn part_files_vanish_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let part = PartFile::create(&dest).await.unwrap();
        let part_path = part.path.clone();
        assert!(part_path.exists());
        assert_eq!(part_path.parent(), Some(dir.path()));
        drop(part);
        assert!(!part_path.exists());

        let mut part = PartFile::create(&dest).await.unwrap();
        part.file.write_all(b"hello").await.unwrap();
        part.commit(&dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the destination remains");
    }

    #[tokio::test]
    async fn a_destination_without_a_file_name_is_refused() {
        assert!(matches!(
            PartFile::create(Path::new("/")).await,
            Err(SdkError::InvalidArgument(_))
        ));
    }
}
