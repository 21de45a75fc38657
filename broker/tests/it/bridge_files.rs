//! Issue 9 through the browser bridge, against a real broker over real HTTP and real
//! WebSockets: streamed uploads and downloads, images with thumbnails, the upload
//! limit, byte ranges, who may read a file (and `?access_token=`), sending a file in a
//! message, and content-addressed storage.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use common::WAIT;
use common::web::{Socket, Web, next_where, send_and_answer, start};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOT_FOUND: i64 = 9;
const FORBIDDEN: i64 = 10;
const INVALID_ARGUMENT: i64 = 4;
const UNAUTHENTICATED: i64 = 3;
const FILE_TOO_LARGE: i64 = 29;

/// A download: status, headers, body.
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl Web {
    /// `POST /api/files` with the given query and headers; returns the status and the
    /// JSON answer.
    async fn upload_with(
        &self,
        token: &str,
        query: &str,
        headers: &[(&str, &str)],
        bytes: Vec<u8>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/files{query}", self.base))
            .bearer_auth(token)
            .body(bytes);
        for (name, value) in headers {
            request = request.header(HeaderName::from_bytes(name.as_bytes()).unwrap(), *value);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// An upload expected to succeed: returns the FileInfo JSON.
    async fn upload(&self, token: &str, name: &str, mime: &str, bytes: &[u8]) -> Value {
        let query = format!("?name={}", encode(name));
        let (status, reply) = self
            .upload_with(token, &query, &[("content-type", mime)], bytes.to_vec())
            .await;
        assert_eq!(
            (status, reply["code"].as_i64()),
            (200, Some(0)),
            "upload {name}: {reply}"
        );
        reply["data"].clone()
    }

    /// A GET of a file route, with the token as a header (or none) and optional extra
    /// headers.
    async fn fetch(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Got {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(HeaderName::from_bytes(name.as_bytes()).unwrap(), *value);
        }
        let mut response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // Read as it streams, chunk by chunk.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.expect("the body arrives") {
            body.extend_from_slice(&chunk);
        }
        Got {
            status,
            headers,
            body,
        }
    }

    /// A GET expected to be refused with this status and Quip error code.
    async fn fetch_refused(&self, path: &str, token: Option<&str>, status: u16, code: i64) {
        let got = self.fetch(path, token, &[]).await;
        let reply = got.json();
        assert_eq!(
            (got.status, reply["code"].as_i64()),
            (status, Some(code)),
            "GET {path}: {reply}"
        );
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Deterministic bytes that no type sniffer recognises.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .expect("encodes");
    out.into_inner()
}

/// The regular files in `<data_dir>/files` (blobs and thumbnails), sorted.
fn stored(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("files"))
        .expect("the files directory exists")
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Uploads in progress: `<data_dir>/files/tmp`, which must be empty when none is.
fn in_progress(dir: &Path) -> usize {
    match std::fs::read_dir(dir.join("files").join("tmp")) {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    }
}

/// Sends a media message over a socket; returns the answer (ACK 30 or error 50).
async fn send_file(
    socket: &mut Socket,
    type_code: i64,
    to: &str,
    message_id: &str,
    file_id: &str,
) -> Value {
    send_and_answer(
        socket,
        json!({"type": type_code, "to": to, "message_id": message_id, "content": {"file_id": file_id}}),
        message_id,
    )
    .await
}

/// An HTTP/1.1 upload with a chunked body (no `Content-Length`), over a raw socket:
/// returns the status and the JSON answer.
async fn chunked_upload(addr: SocketAddr, token: &str, body: &[u8]) -> (u16, Value) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST /api/files?name=chunked.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(500) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The broker may answer before it has read everything; what it answered counts.
    let _ = socket.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let (_, body) = text.split_once("\r\n\r\n").expect("headers end");
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {body:?}")),
    )
}

#[tokio::test]
async fn uploads_stream_through_and_download_byte_for_byte() {
    // The JSON body limit is far below the file: uploads are not subject to it.
    let broker = start(|c| c.http_max_body_bytes = 16 * 1024).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bytes = noise(300 * 1024 + 7, 1);

    let info = web
        .upload(
            &alice.token,
            "report final.bin",
            "application/octet-stream",
            &bytes,
        )
        .await;
    let file_id = info["file_id"].as_str().unwrap().to_owned();
    assert!(file_id.starts_with("file_"), "{info}");
    assert_eq!(info["file_name"], "report final.bin");
    assert_eq!(info["file_size"], bytes.len());
    assert_eq!(info["mime_type"], "application/octet-stream");
    assert_eq!(info["url"], format!("/api/files/{file_id}"));
    assert_eq!(info["thumbnail_url"], "", "not an image: {info}");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(info["sha256"], sha256_hex(&bytes));
    assert!(info["uploaded_at"].as_u64().unwrap() > 0, "{info}");

    // The download: the same bytes, with the headers a browser needs.
    let got = web
        .fetch(&format!("/api/files/{file_id}"), Some(&alice.token), &[])
        .await;
    assert_eq!(got.status, 200);
    assert!(
        got.body == bytes,
        "the same {} bytes come back",
        bytes.len()
    );
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert_eq!(got.header("content-length"), bytes.len().to_string());
    assert_eq!(got.header("accept-ranges"), "bytes");
    let disposition = got.header("content-disposition");
    assert!(disposition.starts_with("inline;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''report%20final.bin"),
        "{disposition}"
    );
    let cache = got.header("cache-control");
    assert!(cache.starts_with("private, max-age="), "{cache}");
    assert_eq!(got.header("x-content-type-options"), "nosniff");

    // The metadata alone, identical to the upload's answer.
    let got = web
        .fetch(
            &format!("/api/files/{file_id}/info"),
            Some(&alice.token),
            &[],
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"], info);

    // The name can come URL-encoded in X-File-Name instead.
    let (status, reply) = web
        .upload_with(
            &alice.token,
            "",
            &[
                ("x-file-name", "na%C3%AFve%20plan.txt"),
                ("content-type", "text/plain"),
            ],
            b"plain words\n".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["file_name"], "naïve plan.txt");
    let got = web
        .fetch(
            reply["data"]["url"].as_str().unwrap(),
            Some(&alice.token),
            &[],
        )
        .await;
    assert_eq!(got.body, b"plain words\n");
    assert!(
        got.header("content-disposition")
            .contains("filename*=UTF-8''na%C3%AFve%20plan.txt"),
        "{:?}",
        got.headers
    );

    // A page claimed as HTML is kept as HTML but never rendered as the web client's
    // origin: an attachment, sandboxed.
    let (status, reply) = web
        .upload_with(
            &alice.token,
            "?name=page.html",
            &[("content-type", "text/html; charset=utf-8")],
            b"<script>alert(1)</script>".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let got = web
        .fetch(
            reply["data"]["url"].as_str().unwrap(),
            Some(&alice.token),
            &[],
        )
        .await;
    assert_eq!(got.status, 200);
    assert!(
        got.header("content-disposition").starts_with("attachment;"),
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("content-security-policy"), "sandbox");
    assert_eq!(got.header("x-content-type-options"), "nosniff");

    // No token, or a bad one: 401, for uploads and downloads alike.
    let (status, reply) = web
        .call(Method::POST, "/api/files?name=x", None, None)
        .await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (401, Some(UNAUTHENTICATED))
    );
    web.fetch_refused(&format!("/api/files/{file_id}"), None, 401, UNAUTHENTICATED)
        .await;
    let got = web
        .fetch(
            &format!("/api/files/{file_id}?access_token=nonsense"),
            None,
            &[],
        )
        .await;
    assert_eq!(got.status, 401, "{}", got.json());
    // An empty upload is refused.
    let (status, reply) = web
        .upload_with(&alice.token, "?name=e", &[], Vec::new())
        .await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (400, Some(INVALID_ARGUMENT)),
        "{reply}"
    );
    assert_eq!(in_progress(broker.dir.path()), 0);
}

#[tokio::test]
async fn images_get_their_size_and_a_jpeg_thumbnail() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;

    // A PNG, announced as nothing in particular: the content decides.
    let png = picture(640, 480, image::ImageFormat::Png);
    let info = web
        .upload(&alice.token, "cat.png", "application/octet-stream", &png)
        .await;
    let file_id = info["file_id"].as_str().unwrap();
    assert_eq!(info["mime_type"], "image/png", "{info}");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(
        info["thumbnail_url"],
        format!("/api/files/{file_id}/thumbnail")
    );

    let got = web
        .fetch(
            info["thumbnail_url"].as_str().unwrap(),
            Some(&alice.token),
            &[],
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "image/jpeg");
    assert_eq!(got.header("content-length"), got.body.len().to_string());
    assert_eq!(&got.body[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    let thumb = image::load_from_memory(&got.body).expect("the thumbnail decodes");
    assert_eq!(
        (thumb.width(), thumb.height()),
        (320, 240),
        "longest side 320"
    );
    // The original is served as itself, inline.
    let got = web
        .fetch(info["url"].as_str().unwrap(), Some(&alice.token), &[])
        .await;
    assert_eq!(got.header("content-type"), "image/png");
    assert!(got.body == png);
    assert!(got.header("content-disposition").starts_with("inline;"));

    // A JPEG, announced wrongly as a PNG.
    let jpeg = picture(200, 100, image::ImageFormat::Jpeg);
    let info = web
        .upload(&alice.token, "dog.jpg", "image/png", &jpeg)
        .await;
    assert_eq!(info["mime_type"], "image/jpeg", "{info}");
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(200), Some(100))
    );
    let got = web
        .fetch(
            info["thumbnail_url"].as_str().unwrap(),
            Some(&alice.token),
            &[],
        )
        .await;
    assert_eq!(
        (got.status, got.header("content-type")),
        (200, "image/jpeg")
    );
    let thumb = image::load_from_memory(&got.body).expect("the thumbnail decodes");
    assert!(thumb.width() <= 320 && thumb.height() <= 320);
    assert_eq!(
        thumb.width(),
        2 * thumb.height(),
        "the aspect ratio is kept"
    );

    // Something else has no thumbnail.
    let info = web
        .upload(&alice.token, "notes.bin", "", &noise(1000, 2))
        .await;
    web.fetch_refused(
        &format!("/api/files/{}/thumbnail", info["file_id"].as_str().unwrap()),
        Some(&alice.token),
        404,
        NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn over_the_limit_uploads_are_refused_and_store_nothing() {
    let broker = start(|c| c.max_file_bytes = 1000).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let small = noise(1000, 3);
    web.upload(&alice.token, "small.bin", "", &small).await;
    let before = stored(broker.dir.path());
    assert_eq!(before, vec![sha256_hex(&small)]);

    // Refused from its Content-Length, before any byte is read.
    let (status, reply) = web
        .upload_with(&alice.token, "?name=big.bin", &[], noise(1001, 4))
        .await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (413, Some(FILE_TOO_LARGE)),
        "{reply}"
    );
    assert_eq!(reply["error"], "FILE_TOO_LARGE");
    let (status, reply) = web
        .upload_with(&alice.token, "?name=big.bin", &[], noise(200_000, 5))
        .await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (413, Some(FILE_TOO_LARGE)),
        "{reply}"
    );

    // Without a Content-Length: cut off while streaming.
    let (status, reply) = chunked_upload(web.addr, &alice.token, &noise(3000, 6)).await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (413, Some(FILE_TOO_LARGE)),
        "{reply}"
    );
    // A chunked upload within the limit is fine.
    let fits = noise(900, 7);
    let (status, reply) = chunked_upload(web.addr, &alice.token, &fits).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["data"]["file_size"], 900);

    let mut expected = vec![sha256_hex(&small), sha256_hex(&fits)];
    expected.sort();
    assert_eq!(
        stored(broker.dir.path()),
        expected,
        "nothing of the refused uploads"
    );
    assert_eq!(in_progress(broker.dir.path()), 0);
}

#[tokio::test]
async fn byte_ranges_are_served_with_206_and_416() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bytes = noise(10_000, 8);
    let info = web.upload(&alice.token, "r.bin", "", &bytes).await;
    let path = info["url"].as_str().unwrap();

    let cases: &[(&str, usize, usize)] = &[
        ("bytes=0-99", 0, 100),
        ("bytes=9990-", 9990, 10),
        ("bytes=-25", 9975, 25),
        ("bytes=9000-20000", 9000, 1000),
        ("bytes=1234-1234", 1234, 1),
        ("bytes=-20000", 0, 10_000),
        ("bytes=0-", 0, 10_000),
    ];
    for &(range, offset, length) in cases {
        let got = web
            .fetch(path, Some(&alice.token), &[("range", range)])
            .await;
        assert_eq!(got.status, 206, "{range}");
        assert_eq!(
            got.header("content-range"),
            format!("bytes {offset}-{}/10000", offset + length - 1),
            "{range}"
        );
        assert_eq!(got.header("content-length"), length.to_string(), "{range}");
        assert_eq!(got.header("accept-ranges"), "bytes");
        assert!(
            got.body == bytes[offset..offset + length],
            "{range}: the right bytes"
        );
    }

    for range in ["bytes=10000-", "bytes=20000-30000", "bytes=-0"] {
        let got = web
            .fetch(path, Some(&alice.token), &[("range", range)])
            .await;
        assert_eq!(got.status, 416, "{range}");
        assert_eq!(got.header("content-range"), "bytes */10000", "{range}");
        assert_ne!(got.json()["code"], 0);
    }

    // Several ranges, or a malformed one: the whole file.
    for range in ["bytes=0-9,20-29", "bytes=50-10", "pages=1-2"] {
        let got = web
            .fetch(path, Some(&alice.token), &[("range", range)])
            .await;
        assert_eq!(got.status, 200, "{range}");
        assert!(got.headers.get("content-range").is_none(), "{range}");
        assert!(got.body == bytes, "{range}: the whole file");
    }

    // Ranges of a thumbnail work the same way.
    let png = picture(64, 64, image::ImageFormat::Png);
    let info = web.upload(&alice.token, "p.png", "", &png).await;
    let thumbnail = info["thumbnail_url"].as_str().unwrap();
    let whole = web.fetch(thumbnail, Some(&alice.token), &[]).await.body;
    let got = web
        .fetch(thumbnail, Some(&alice.token), &[("range", "bytes=2-")])
        .await;
    assert_eq!(got.status, 206);
    assert_eq!(
        got.header("content-range"),
        format!("bytes 2-{}/{}", whole.len() - 1, whole.len())
    );
    assert!(got.body == whole[2..]);
}

#[tokio::test]
async fn a_file_is_private_until_sent_then_its_recipient_can_read_it() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let carol = web.account("carol").await;
    // A PDF by its magic bytes.
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend(noise(50_000, 9));
    let info = web
        .upload(&alice.token, "plans.pdf", "application/pdf", &bytes)
        .await;
    let file_id = info["file_id"].as_str().unwrap().to_owned();
    let url = format!("/api/files/{file_id}");

    // Nobody but Alice can read it yet, and to them it does not exist.
    for path in [
        url.clone(),
        format!("{url}/info"),
        format!("{url}/thumbnail"),
    ] {
        web.fetch_refused(&path, Some(&bob.token), 404, NOT_FOUND)
            .await;
    }
    web.fetch_refused(
        "/api/files/file_doesnotexist",
        Some(&bob.token),
        404,
        NOT_FOUND,
    )
    .await;
    // Nor can anyone else send it.
    let mut bob_ws = web.synced_socket(&bob).await;
    let refused = send_file(&mut bob_ws, 7, &carol.user_id, "bob-1", &file_id).await;
    assert_eq!(refused["type"], 50, "{refused}");
    assert!(
        [NOT_FOUND, FORBIDDEN].contains(&refused["code"].as_i64().unwrap()),
        "{refused}"
    );

    // Alice sends it to Bob as a file message.
    let mut alice_ws = web.synced_socket(&alice).await;
    let ack = send_file(&mut alice_ws, 7, &bob.user_id, "alice-1", &file_id).await;
    assert_eq!(ack["type"], 30, "{ack}");
    let delivered = next_where(&mut bob_ws, "the file message", |v| v["type"] == 7).await;
    let content = &delivered["content"];
    assert_eq!(content["file_id"], file_id.as_str(), "{delivered}");
    assert_eq!(content["file_name"], "plans.pdf");
    assert_eq!(content["file_size"], bytes.len());
    assert_eq!(content["file_type"], "file");
    assert_eq!(content["url"], url.as_str());

    // Now Bob can read it (with the token in the URL, as an <a href> would), Carol
    // still cannot.
    let got = web
        .fetch(&format!("{url}?access_token={}", bob.token), None, &[])
        .await;
    assert_eq!(got.status, 200);
    assert!(got.body == bytes);
    let got = web
        .fetch(&format!("{url}/info?access_token={}", bob.token), None, &[])
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"]["file_id"], file_id.as_str());
    web.fetch_refused(&url, Some(&carol.token), 404, NOT_FOUND)
        .await;
    web.fetch_refused(
        &format!("{url}?access_token={}", carol.token),
        None,
        404,
        NOT_FOUND,
    )
    .await;

    // History carries the content the broker filled in.
    let got = web
        .fetch(
            &format!("/api/messages/private/{}", alice.user_id),
            Some(&bob.token),
            &[],
        )
        .await;
    let messages = got.json()["data"]["messages"].clone();
    let sent = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == 7)
        .unwrap_or_else(|| panic!("the file message is in the history: {messages}"));
    assert_eq!(sent["content"]["mime_type"], "application/pdf");

    // An image message must carry an image.
    let refused = send_file(&mut alice_ws, 4, &bob.user_id, "alice-2", &file_id).await;
    assert_eq!(
        (refused["type"].as_i64(), refused["code"].as_i64()),
        (Some(50), Some(INVALID_ARGUMENT)),
        "{refused}"
    );
}

#[tokio::test]
async fn identical_content_is_stored_once() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let bytes = noise(20_000, 10);
    let first = web.upload(&alice.token, "one.bin", "", &bytes).await;
    let second = web.upload(&bob.token, "two.bin", "", &bytes).await;
    assert_ne!(first["file_id"], second["file_id"]);
    assert_eq!(first["sha256"], second["sha256"]);
    assert_eq!(first["sha256"], sha256_hex(&bytes));
    assert_eq!(second["file_name"], "two.bin");
    assert_eq!(
        stored(broker.dir.path()),
        vec![sha256_hex(&bytes)],
        "one blob"
    );

    // Each upload is its uploader's: Bob's id is his, Alice's hers.
    let got = web
        .fetch(second["url"].as_str().unwrap(), Some(&bob.token), &[])
        .await;
    assert!(got.status == 200 && got.body == bytes);
    web.fetch_refused(
        first["url"].as_str().unwrap(),
        Some(&bob.token),
        404,
        NOT_FOUND,
    )
    .await;
}
