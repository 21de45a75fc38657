//! Files over REST: uploads streamed into the broker as they arrive, downloads (the
//! whole file, a byte range, or an image's thumbnail) streamed out as they are read,
//! and a file's metadata. No file is ever held whole in memory here.
//!
//! The GET routes also take the access token as `?access_token=` (besides the usual
//! `Authorization: Bearer`), so a browser can point `<img src>`, `<video src>` or
//! `<a href download>` at them.

use std::sync::Arc;

use axum::body::Body as RawBody;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use quip_protocol::json::file_info_to_json;
use quip_protocol::{ErrorCode, client_frame, pb, server_frame};
use serde::Deserialize;

use super::{ApiError, ApiResult, AppState, Authed, Params, bearer_token, call, ok, unexpected};
use crate::{BridgeState, ByteStream, Identity};

/// Downloads change only with their `file_id` (the content is addressed by its hash),
/// so browsers may keep them; `private`: never in shared caches.
const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

/// The header naming an upload when `?name=` is absent (URL-encoded UTF-8).
const FILE_NAME_HEADER: &str = "x-file-name";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file's name (else the `X-File-Name` header; else "file").
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    access_token: String,
}

/// The caller of a GET file route: `Authorization: Bearer <token>`, or else
/// `?access_token=<token>`, checked like any other token.
#[derive(Debug)]
pub struct Reader(pub Identity);

impl FromRequestParts<Arc<BridgeState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<BridgeState>,
    ) -> Result<Self, ApiError> {
        let from_query;
        let token = match bearer_token(&parts.headers) {
            Ok(token) => token,
            Err(_) => {
                from_query = Query::<TokenQuery>::try_from_uri(&parts.uri)
                    .map(|Query(query)| query.access_token)
                    .unwrap_or_default();
                let token = from_query.trim();
                if token.is_empty() {
                    return Err(ApiError::new(
                        ErrorCode::Unauthenticated,
                        "missing Authorization: Bearer <token> (or ?access_token=<token>)",
                    ));
                }
                token
            }
        };
        Ok(Reader(state.backend.identify(token).await?))
    }
}

#[utoipa::path(post, path = "/api/files", params(UploadQuery,
        ("X-File-Name" = Option<String>, Header, description = "the file's name, URL-encoded, when `?name=` is absent"),
        ("Content-Type" = Option<String>, Header, description = "the client's idea of the type; the broker sniffs the content")),
    request_body(content = String, content_type = "application/octet-stream", description = "the file's raw bytes (not multipart), streamed; a Content-Length over `max_file_bytes` is refused before any byte is read"),
    responses((status = 200, description = "FileInfo: {file_id, file_name, file_size, mime_type, url, thumbnail_url, width, height, sha256, uploaded_at}"),
               (status = 400, description = "empty, or a size other than Content-Length arrived"),
               (status = 413, description = "over `max_file_bytes`: code 29 FILE_TOO_LARGE, nothing stored")),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): AppState,
    Authed(identity): Authed,
    Params(query): Params<UploadQuery>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult {
    let declared_size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let limit = state.config.max_file_bytes;
    if declared_size > limit {
        return Err(ApiError::new(
            ErrorCode::FileTooLarge,
            format!("the file is {declared_size} bytes; at most {limit} bytes"),
        ));
    }
    let name = match query.name.filter(|name| !name.is_empty()) {
        Some(name) => name,
        None => match headers.get(FILE_NAME_HEADER) {
            Some(value) => percent_decode(value.as_bytes()).ok_or_else(|| {
                super::invalid("X-File-Name must be URL-encoded UTF-8 (e.g. encodeURIComponent)")
            })?,
            None => String::new(),
        },
    };
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let stream: ByteStream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let upload = pb::FileUpload {
        name,
        declared_size,
        mime,
    };
    let info = state.backend.upload(&identity, upload, stream).await?;
    ok(file_info_to_json(&info))
}

#[utoipa::path(get, path = "/api/files/{file_id}",
    params(("file_id" = String, Path), ("access_token" = Option<String>, Query, description = "instead of the Authorization header"),
           ("Range" = Option<String>, Header, description = "`bytes=a-b`, `bytes=a-` or `bytes=-n` (one range; several: the whole file)")),
    responses((status = 200, description = "the file's bytes, with Content-Type, Content-Length, Accept-Ranges, Content-Disposition"),
               (status = 206, description = "the requested range, with Content-Range"),
               (status = 404, description = "no such file, or not yours to read"),
               (status = 416, description = "the range is beyond the end: Content-Range: bytes */<size>")),
    security(("bearer" = [])))]
pub async fn download(
    State(state): AppState,
    Reader(identity): Reader,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &identity, file_id, false, &headers).await
}

#[utoipa::path(get, path = "/api/files/{file_id}/thumbnail",
    params(("file_id" = String, Path), ("access_token" = Option<String>, Query, description = "instead of the Authorization header"),
           ("Range" = Option<String>, Header, description = "as for the file")),
    responses((status = 200, description = "the image's JPEG thumbnail"),
               (status = 206, description = "the requested range, with Content-Range"),
               (status = 404, description = "no such file, not yours to read, or not an image"),
               (status = 416, description = "the range is beyond the end")),
    security(("bearer" = [])))]
pub async fn thumbnail(
    State(state): AppState,
    Reader(identity): Reader,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &identity, file_id, true, &headers).await
}

#[utoipa::path(get, path = "/api/files/{file_id}/info",
    params(("file_id" = String, Path), ("access_token" = Option<String>, Query, description = "instead of the Authorization header")),
    responses((status = 200, description = "FileInfo: {file_id, file_name, file_size, mime_type, url, thumbnail_url, width, height, sha256, uploaded_at}"),
               (status = 404, description = "no such file, or not yours to read")),
    security(("bearer" = [])))]
pub async fn info(
    State(state): AppState,
    Reader(identity): Reader,
    Path(file_id): Path<String>,
) -> ApiResult {
    let request = client_frame::Body::FileInfo(pb::FileInfoRequest { file_id });
    match call(&state, &identity, request).await? {
        server_frame::Body::FileInfo(info) => ok(file_info_to_json(&info)),
        _ => Err(unexpected()),
    }
}

/// A single byte range of a `Range: bytes=…` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `a-b` (inclusive) or `a-`.
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// `(offset, length)` within a file of `total` bytes; `None` when no byte of the
    /// file is in the range.
    fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { first, last } => {
                if first >= total {
                    return None;
                }
                let end = last.map_or(total - 1, |last| last.min(total - 1));
                Some((first, end - first + 1))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || total == 0 {
                    return None;
                }
                let n = n.min(total);
                Some((total - n, n))
            }
        }
    }
}

fn digits(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A `Range` header's single byte range. Anything else (another unit, several ranges,
/// a malformed one) is `None`: the header is ignored and the whole file served, as
/// RFC 9110 allows.
fn parse_range(value: &str) -> Option<ByteRange> {
    let value = value.trim();
    let (unit, spec) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return Some(ByteRange::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(ByteRange::From { first, last: None });
    }
    let last = digits(last)?;
    if last < first {
        return None;
    }
    Some(ByteRange::From {
        first,
        last: Some(last),
    })
}

/// A file or its thumbnail, whole (200) or a range of it (206 / 416).
async fn serve(
    state: &BridgeState,
    identity: &Identity,
    file_id: String,
    thumbnail: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let open = |offset: u64, length: u64| {
        state.backend.download(
            identity,
            pb::FileDownload {
                file_id: file_id.clone(),
                thumbnail,
                offset,
                length,
            },
        )
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let Some(range) = range else {
        let (head, bytes) = open(0, 0).await?;
        return Ok(file_response(StatusCode::OK, &head, thumbnail, bytes));
    };
    // `a-b` and `a-` map straight onto the request; the broker trims the length to
    // the end of the file.
    if let ByteRange::From { first, last } = range {
        let length = last.map_or(0, |last| (last - first).saturating_add(1));
        match open(first, length).await {
            Ok((head, bytes)) if head.length > 0 => {
                return Ok(file_response(
                    StatusCode::PARTIAL_CONTENT,
                    &head,
                    thumbnail,
                    bytes,
                ));
            }
            Ok(_) => {}
            // Beyond the end: answered with 416 below, once the size is known.
            Err(error) if error.error_code() == ErrorCode::InvalidArgument => {}
            Err(error) => return Err(error.into()),
        }
    }
    // A suffix, or a range the broker would not serve as asked: the size decides.
    let (head, bytes) = open(0, 0).await?;
    let total = head.total_size;
    match range.resolve(total) {
        None => Ok(unsatisfiable(total)),
        Some((0, length)) if length == total => Ok(file_response(
            StatusCode::PARTIAL_CONTENT,
            &head,
            thumbnail,
            bytes,
        )),
        Some((offset, length)) => {
            drop(bytes);
            let (head, bytes) = open(offset, length).await?;
            Ok(file_response(
                StatusCode::PARTIAL_CONTENT,
                &head,
                thumbnail,
                bytes,
            ))
        }
    }
}

/// 416 with the size, in the API's error format.
fn unsatisfiable(total: u64) -> Response {
    let mut response = ApiError::new(
        ErrorCode::InvalidArgument,
        format!("the range is not satisfiable: the file has {total} bytes"),
    )
    .into_response();
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes */{total}")).expect("ASCII"),
    );
    response
}

/// Types a browser shows without running anything of the file's: served inline.
/// Anything else (HTML, SVG, XML, scripts, a client-claimed type the content did not
/// confirm) is served as an attachment under a sandbox, so an uploaded page can never
/// run as the web client's origin.
fn is_passive(mime: &str) -> bool {
    let mime = mime.to_ascii_lowercase();
    if mime.contains("svg") || mime.contains("xml") {
        return false;
    }
    mime.starts_with("image/")
        || mime.starts_with("audio/")
        || mime.starts_with("video/")
        || mime == "text/plain"
        || mime == "application/pdf"
        || mime == "application/octet-stream"
}

/// The streamed answer of a download, with its headers.
fn file_response(
    status: StatusCode,
    head: &pb::FileHeader,
    thumbnail: bool,
    bytes: ByteStream,
) -> Response {
    let file = head.file.clone().unwrap_or_default();
    let mime = if thumbnail {
        "image/jpeg".to_owned()
    } else if file.mime.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        file.mime.clone()
    };
    let content_type = HeaderValue::from_str(&mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let name = if thumbnail {
        thumbnail_name(&file.name)
    } else {
        file.name.clone()
    };
    let passive = is_passive(&mime);
    let disposition = content_disposition(if passive { "inline" } else { "attachment" }, &name);

    let mut response = (status, RawBody::from_stream(bytes)).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, content_type);
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(head.length));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !passive {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
    }
    if !file.sha256.is_empty() {
        let tag = if thumbnail {
            format!("\"{}-thumb\"", file.sha256)
        } else {
            format!("\"{}\"", file.sha256)
        };
        if let Ok(value) = HeaderValue::from_str(&tag) {
            out.insert(header::ETAG, value);
        }
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let last = (head.offset + head.length).saturating_sub(1);
        let range = format!("bytes {}-{last}/{}", head.offset, head.total_size);
        out.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("ASCII"),
        );
    }
    out.insert(header::VARY, HeaderValue::from_static("Authorization"));
    response
}

/// `photo.png` → `photo.thumb.jpg`.
fn thumbnail_name(name: &str) -> String {
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ if name.is_empty() => "file",
        _ => name,
    };
    format!("{stem}.thumb.jpg")
}

/// `inline; filename="ascii fallback"; filename*=UTF-8''percent-encoded` (RFC 6266,
/// RFC 5987).
fn content_disposition(kind: &str, name: &str) -> String {
    let name = if name.is_empty() { "file" } else { name };
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        rfc5987_encode(name)
    )
}

/// Percent-encodes everything but RFC 5987's `attr-char`.
fn rfc5987_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `%XX` escapes decoded (nothing else: `+` stays `+`); `None` if an escape is
/// malformed or the result is not UTF-8.
fn percent_decode(bytes: &[u8]) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = hex(*bytes.get(i + 1)?)?;
            let low = hex(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges_are_parsed_and_anything_else_ignored() {
        use ByteRange::*;
        assert_eq!(
            parse_range("bytes=0-99"),
            Some(From {
                first: 0,
                last: Some(99)
            })
        );
        assert_eq!(
            parse_range("bytes=100-"),
            Some(From {
                first: 100,
                last: None
            })
        );
        assert_eq!(parse_range("bytes=-500"), Some(Suffix(500)));
        assert_eq!(
            parse_range(" Bytes = 5 - 7 "),
            Some(From {
                first: 5,
                last: Some(7)
            })
        );
        for ignored in [
            "bytes=0-1,5-6",
            "bytes=9-3",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "items=0-1",
            "bytes 0-1",
            "",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored:?}");
        }
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        use ByteRange::*;
        let from = |first, last| From { first, last };
        assert_eq!(from(0, Some(99)).resolve(1000), Some((0, 100)));
        assert_eq!(from(900, Some(5000)).resolve(1000), Some((900, 100)));
        assert_eq!(from(10, None).resolve(1000), Some((10, 990)));
        assert_eq!(from(999, None).resolve(1000), Some((999, 1)));
        assert_eq!(from(1000, None).resolve(1000), None);
        assert_eq!(from(0, Some(u64::MAX)).resolve(10), Some((0, 10)));
        assert_eq!(Suffix(100).resolve(1000), Some((900, 100)));
        assert_eq!(Suffix(5000).resolve(1000), Some((0, 1000)));
        assert_eq!(Suffix(0).resolve(1000), None);
        assert_eq!(Suffix(1).resolve(0), None);
    }

    #[test]
    fn file_names_are_percent_coded_both_ways() {
        assert_eq!(
            percent_decode(b"na%C3%AFve%20plan.txt").unwrap(),
            "naïve plan.txt"
        );
        assert_eq!(percent_decode(b"a+b").unwrap(), "a+b");
        assert_eq!(percent_decode(b"50%"), None);
        assert_eq!(percent_decode(b"%zz"), None);
        assert_eq!(percent_decode(b"%FF"), None);
        assert_eq!(
            content_disposition("inline", "naïve \"plan\".txt"),
            "inline; filename=\"na_ve _plan_.txt\"; filename*=UTF-8''na%C3%AFve%20%22plan%22.txt"
        );
        assert_eq!(
            content_disposition("attachment", ""),
            "attachment; filename=\"file\"; filename*=UTF-8''file"
        );
        assert_eq!(thumbnail_name("photo.png"), "photo.thumb.jpg");
        assert_eq!(thumbnail_name(".png"), ".png.thumb.jpg");
        assert_eq!(thumbnail_name("noext"), "noext.thumb.jpg");
        assert_eq!(thumbnail_name(""), "file.thumb.jpg");
    }

    #[test]
    fn only_passive_types_are_served_inline() {
        for passive in [
            "image/png",
            "image/jpeg",
            "video/mp4",
            "audio/ogg",
            "text/plain",
            "application/pdf",
        ] {
            assert!(is_passive(passive), "{passive}");
        }
        for active in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/zip",
        ] {
            assert!(!is_passive(active), "{active}");
        }
    }
}
