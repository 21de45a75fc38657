//! Files behind media messages: streaming uploads into content-addressed storage,
//! typing by content, thumbnails, and reads checked against the conversations a file
//! was sent in.
//!
//! Uploads are hashed and written to a temporary file in `files/tmp` as their chunks
//! arrive; nothing holds a whole file in memory. Only a complete upload within the
//! limit is renamed to `files/<sha256>` (a second upload of the same content keeps the
//! first copy), so a cut-off or oversized upload leaves nothing behind: the temporary
//! file deletes itself when dropped. Metadata (name, type, uploader, image size) is a
//! `FileRecord` in the store, one per upload.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use quip_protocol::{ErrorCode, pb};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::auth::now_ms;
use super::{ChatService, ServiceError, ServiceResult};
use crate::store::{FileRecord, Store};

/// Bytes kept from the start of an upload for type sniffing.
const SNIFF_BYTES: usize = 8 * 1024;
/// Chunk size of downloads.
const READ_CHUNK: usize = 64 * 1024;
/// Largest image decoded for a thumbnail, per side and in pixels (40 MP, about 160 MB
/// decoded); bigger ones keep their dimensions but get no thumbnail. A small upload
/// can announce a huge picture, so this bounds what one upload can cost.
const MAX_DECODE_SIDE: u32 = 16_384;
const MAX_DECODE_PIXELS: u64 = 40_000_000;
/// Thumbnails made at once, broker-wide: each holds a decoded picture in memory.
const THUMBNAILERS: usize = 2;
/// Longest file name kept.
const MAX_NAME_BYTES: usize = 255;

/// A file's bytes as they stream.
pub type ByteStream = quip_bridge_ws::ByteStream;

#[derive(Debug, Clone)]
pub struct FileLimits {
    pub max_file_bytes: u64,
    /// Longest side of a thumbnail.
    pub thumbnail_max_px: u32,
}

/// Where the bytes of files live.
#[derive(Debug, Clone)]
pub struct FileDirs {
    /// `<sha256>` and `<sha256>.thumb.jpg`.
    pub dir: PathBuf,
    /// Uploads in progress: inside `dir` (same file system, so the final rename is
    /// atomic), one folder per node so that nodes sharing `dir` never clear each
    /// other's uploads.
    pub tmp: PathBuf,
    /// Why files are refused altogether, if they are: in a cluster whose nodes do not
    /// share `dir`, a file uploaded to one node could not be read from another.
    pub refused: Option<String>,
}

#[derive(Debug)]
pub struct FileService {
    store: Arc<dyn Store>,
    chat: Arc<ChatService>,
    /// `<sha256>` and `<sha256>.thumb.jpg`.
    dir: PathBuf,
    /// Uploads in progress (see [`FileDirs::tmp`]).
    tmp: PathBuf,
    refused: Option<String>,
    limits: FileLimits,
    thumbnailers: tokio::sync::Semaphore,
}

impl FileService {
    /// Creates the directories if needed and clears uploads a crash left half-written.
    pub fn open(
        dirs: FileDirs,
        store: Arc<dyn Store>,
        chat: Arc<ChatService>,
        limits: FileLimits,
    ) -> std::io::Result<Self> {
        let FileDirs { dir, tmp, refused } = dirs;
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(Self {
            store,
            chat,
            dir,
            tmp,
            refused,
            limits,
            thumbnailers: tokio::sync::Semaphore::new(THUMBNAILERS),
        })
    }

    /// UNAVAILABLE, with the reason, when this node refuses files.
    fn check_available(&self) -> ServiceResult<()> {
        match &self.refused {
            Some(reason) => Err(ServiceError::new(ErrorCode::Unavailable, reason.clone())),
            None => Ok(()),
        }
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.limits.max_file_bytes
    }

    /// Stores an upload of `user_id` streamed from `body`.
    pub async fn upload<S>(
        &self,
        user_id: &str,
        upload: pb::FileUpload,
        mut body: S,
    ) -> ServiceResult<pb::FileInfo>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
    {
        self.check_available()?;
        let too_large = || {
            ServiceError::new(
                ErrorCode::FileTooLarge,
                format!("files are limited to {} bytes", self.limits.max_file_bytes),
            )
        };
        if upload.declared_size > self.limits.max_file_bytes {
            return Err(too_large());
        }
        let name = clean_name(&upload.name);
        let io = |error: std::io::Error| {
            tracing::warn!(%error, "file storage failed");
            ServiceError::new(ErrorCode::Unavailable, "cannot store the file; retry")
        };
        let temp = tempfile::NamedTempFile::new_in(&self.tmp).map_err(io)?;
        let mut out = tokio::fs::File::from_std(temp.reopen().map_err(io)?);
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| {
                ServiceError::new(
                    ErrorCode::InvalidArgument,
                    format!("the upload was cut off: {error}"),
                )
            })?;
            size += chunk.len() as u64;
            if size > self.limits.max_file_bytes {
                return Err(too_large());
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
        }
        if size == 0 {
            return Err(ServiceError::invalid("the file is empty"));
        }
        if upload.declared_size != 0 && upload.declared_size != size {
            return Err(ServiceError::invalid(format!(
                "{size} bytes arrived, {} were announced",
                upload.declared_size
            )));
        }
        out.sync_all().await.map_err(io)?;
        drop(out);
        let sha256 = hex::encode(hasher.finalize());
        let mime = sniff_mime(&head, &upload.mime);
        let path = self.dir.join(&sha256);
        if path.exists() {
            // The same content is stored already; this copy deletes itself.
            drop(temp);
        } else {
            temp.persist(&path).map_err(|error| io(error.error))?;
        }
        let (width, height, has_thumbnail) = if mime.starts_with("image/") {
            self.image_facts(&path, &sha256).await
        } else {
            (0, 0, false)
        };
        let record = FileRecord {
            file_id: format!("file_{:032x}", rand::random::<u128>()),
            sha256,
            name,
            size,
            mime,
            uploader: user_id.to_owned(),
            uploaded_at_ms: now_ms(),
            width,
            height,
            has_thumbnail,
        };
        self.store.put_file(record.clone()).await?;
        tracing::info!(file_id = %record.file_id, size, mime = %record.mime, "file stored");
        Ok(file_info(&record))
    }

    /// An image's size, and whether its thumbnail exists (made now if needed).
    async fn image_facts(&self, path: &Path, sha256: &str) -> (u32, u32, bool) {
        let (path, thumb) = (
            path.to_owned(),
            self.dir.join(format!("{sha256}.thumb.jpg")),
        );
        let max_px = self.limits.thumbnail_max_px;
        let tmp = self.tmp.clone();
        let Ok(_permit) = self.thumbnailers.acquire().await else {
            return (0, 0, false);
        };
        let made =
            tokio::task::spawn_blocking(move || make_thumbnail(&path, &thumb, &tmp, max_px)).await;
        match made {
            Ok(Ok((width, height, thumbnail))) => (width, height, thumbnail),
            Ok(Err(error)) => {
                tracing::info!(%error, "not an image we can read; stored without a thumbnail");
                (0, 0, false)
            }
            Err(_) => (0, 0, false),
        }
    }

    /// A file's record, if `user_id` may read it: they uploaded it, or it was sent in a
    /// conversation they can read. Anyone else gets NOT_FOUND, as for a missing file,
    /// so file ids cannot be probed.
    pub async fn readable(&self, user_id: &str, file_id: &str) -> ServiceResult<FileRecord> {
        self.check_available()?;
        let not_found = || ServiceError::new(ErrorCode::NotFound, "no such file");
        let record = self.store.file(file_id).await?.ok_or_else(not_found)?;
        if record.uploader == user_id {
            return Ok(record);
        }
        for conv_id in self.store.file_conversations(file_id).await? {
            if self.chat.access(user_id, &conv_id).await.is_ok() {
                return Ok(record);
            }
        }
        Err(not_found())
    }

    pub async fn info(&self, user_id: &str, file_id: &str) -> ServiceResult<pb::FileInfo> {
        Ok(file_info(&self.readable(user_id, file_id).await?))
    }

    /// Opens a file (or its thumbnail, or a range of it) for reading by `user_id`.
    pub async fn download(
        &self,
        user_id: &str,
        request: &pb::FileDownload,
    ) -> ServiceResult<(pb::FileHeader, ByteStream)> {
        let record = self.readable(user_id, &request.file_id).await?;
        let path = if request.thumbnail {
            if !record.has_thumbnail {
                return Err(ServiceError::new(
                    ErrorCode::NotFound,
                    "this file has no thumbnail",
                ));
            }
            self.dir.join(format!("{}.thumb.jpg", record.sha256))
        } else {
            self.dir.join(&record.sha256)
        };
        let missing = |error: std::io::Error| {
            tracing::error!(%error, path = %path.display(), "a stored file is missing");
            ServiceError::new(ErrorCode::Internal, "the file's content is missing")
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(missing)?;
        let total = file.metadata().await.map_err(missing)?.len();
        if request.offset > 0 && request.offset >= total {
            return Err(ServiceError::invalid(format!(
                "offset {} is past the end ({total} bytes)",
                request.offset
            )));
        }
        let available = total - request.offset;
        let length = match request.length {
            0 => available,
            n => n.min(available),
        };
        file.seek(SeekFrom::Start(request.offset))
            .await
            .map_err(missing)?;
        let mut info = file_info(&record);
        if request.thumbnail {
            info.mime = "image/jpeg".into();
        }
        let header = pb::FileHeader {
            file: Some(info),
            offset: request.offset,
            length,
            total_size: total,
        };
        Ok((header, read_stream(file, length)))
    }
}

/// The content of a media message, as stored: the client names a file it uploaded
/// (and, for sound and video, its duration); everything else comes from the record.
pub async fn attach(
    store: &dyn Store,
    sender: &str,
    kind: pb::MessageKind,
    content: &pb::FileContent,
) -> ServiceResult<pb::FileContent> {
    let record = store
        .file(&content.file_id)
        .await?
        .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such file"))?;
    if record.uploader != sender {
        return Err(ServiceError::new(
            ErrorCode::Forbidden,
            "you can only send files you uploaded",
        ));
    }
    if kind == pb::MessageKind::Image && !record.mime.starts_with("image/") {
        return Err(ServiceError::invalid(format!(
            "an IMAGE message needs an image, not {}",
            record.mime
        )));
    }
    let info = file_info(&record);
    let is_image = record.mime.starts_with("image/");
    Ok(pb::FileContent {
        file_id: record.file_id,
        name: record.name,
        size: record.size,
        mime: record.mime,
        url: info.url,
        thumbnail_url: info.thumbnail_url,
        width: if is_image {
            record.width
        } else {
            content.width
        },
        height: if is_image {
            record.height
        } else {
            content.height
        },
        duration_ms: content.duration_ms,
    })
}

/// The wire view of a record, with the bridge's URLs.
pub fn file_info(record: &FileRecord) -> pb::FileInfo {
    pb::FileInfo {
        file_id: record.file_id.clone(),
        name: record.name.clone(),
        size: record.size,
        mime: record.mime.clone(),
        url: format!("/api/files/{}", record.file_id),
        thumbnail_url: if record.has_thumbnail {
            format!("/api/files/{}/thumbnail", record.file_id)
        } else {
            String::new()
        },
        width: record.width,
        height: record.height,
        sha256: record.sha256.clone(),
        uploaded_at_ms: record.uploaded_at_ms,
    }
}

/// `length` bytes of `file` from its current position, in chunks.
fn read_stream(file: tokio::fs::File, length: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (file.take(length), false),
        |(mut file, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; READ_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, false)))
                }
                Err(error) => Some((Err(error), (file, true))),
            }
        },
    ))
}

/// A file name safe to show and to put in a header: no path, no control characters,
/// at most 255 bytes (cut at a character boundary).
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let trimmed = clean.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        return "file".into();
    }
    clean = trimmed.to_owned();
    if clean.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

/// The type the content says it is; the client's word only when the content says
/// nothing (and it is a plausible type), else `application/octet-stream`.
fn sniff_mime(head: &[u8], claimed: &str) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let plausible = claimed.len() <= 100
        && claimed.contains('/')
        && claimed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/.+-_".contains(c));
    // A claim of an image (or other binary type the sniffer knows) that the sniffer
    // did not confirm is not believed; text types are (they have no magic bytes).
    if plausible && (claimed.starts_with("text/") || claimed == "application/json") {
        claimed.to_owned()
    } else if looks_like_text(head) {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

/// UTF-8 text, allowing the sample to end inside a character (it is cut at 8 KiB).
fn looks_like_text(head: &[u8]) -> bool {
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(error) => error.error_len().is_none(),
    }
}

/// Reads an image's dimensions and writes its JPEG thumbnail (if not there yet),
/// through a temporary file of its own so that two uploads of the same picture at
/// once cannot interleave their writes.
fn make_thumbnail(
    path: &Path,
    thumb: &Path,
    tmp: &Path,
    max_px: u32,
) -> image::ImageResult<(u32, u32, bool)> {
    let reader = image::ImageReader::open(path)?.with_guessed_format()?;
    let (width, height) = reader.into_dimensions()?;
    if width > MAX_DECODE_SIDE
        || height > MAX_DECODE_SIDE
        || u64::from(width) * u64::from(height) > MAX_DECODE_PIXELS
    {
        return Ok((width, height, false));
    }
    if !thumb.exists() {
        let image = image::ImageReader::open(path)?
            .with_guessed_format()?
            .decode()?;
        // Never enlarged: a small picture is its own thumbnail (as a JPEG).
        let small = if width > max_px || height > max_px {
            image.thumbnail(max_px, max_px)
        } else {
            image
        }
        .to_rgb8();
        let part = tempfile::Builder::new()
            .suffix(".jpg")
            .tempfile_in(tmp)
            .map_err(image::ImageError::IoError)?;
        small.save_with_format(part.path(), image::ImageFormat::Jpeg)?;
        if let Err(error) = part.persist(thumb) {
            // Another upload of the same picture got there first: that is fine.
            if !thumb.exists() {
                return Err(image::ImageError::IoError(error.error));
            }
        }
    }
    Ok((width, height, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\a\\photo.png"), "photo.png");
        assert_eq!(clean_name("a\nb\u{7}.txt"), "ab.txt");
        assert_eq!(clean_name("  "), "file");
        assert_eq!(clean_name(".."), "file");
        assert!(clean_name(&"é".repeat(200)).len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn types_come_from_the_content() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        assert_eq!(sniff_mime(&png, "text/plain"), "image/png");
        assert_eq!(sniff_mime(b"hello", "image/png"), "text/plain");
        assert_eq!(
            sniff_mime(b"{\"a\":1}", "application/json"),
            "application/json"
        );
        assert_eq!(
            sniff_mime(&[0xff, 0x00, 0x13], "x"),
            "application/octet-stream"
        );
    }
}
