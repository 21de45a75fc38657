//! Files over QUIC end to end: streamed uploads and downloads on streams of their
//! own, the size limit, cut-off uploads, who may read a file, media messages, image
//! thumbnails, ranges and content-addressed storage.

use crate::common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestBroker, WAIT, next_message};
use quip_protocol::ErrorCode;
use quip_sdk::{Client, SdkError, pb};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A picture with some structure (so the encoders have work to do).
fn picture(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

fn encoded(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    picture(width, height).write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// `<data_dir>/files`.
fn files_dir(broker: &TestBroker) -> PathBuf {
    broker.config.data_dir.join("files")
}

/// The stored contents (`files/<sha256>`), thumbnails left out.
fn blobs(broker: &TestBroker) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(files_dir(broker))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".thumb.jpg"))
        .collect();
    names.sort();
    names
}

/// Uploads in progress (`files/tmp`).
fn temp_files(broker: &TestBroker) -> Vec<PathBuf> {
    match std::fs::read_dir(files_dir(broker).join("tmp")) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until `check` holds; panics with `what` after [`WAIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn code(error: &SdkError) -> Option<ErrorCode> {
    error.code()
}

async fn upload_bytes(client: &Client, name: &str, mime: &str, bytes: &[u8]) -> pb::FileInfo {
    client
        .upload_reader(name, bytes.len() as u64, mime, bytes, |_, _| {})
        .await
        .expect("upload succeeds")
}

fn file_content(message: &pb::Message) -> &pb::FileContent {
    match &message.content {
        Some(pb::message::Content::File(file)) => file,
        other => panic!("not a file message: {other:?}"),
    }
}

#[tokio::test]
async fn a_file_streams_up_and_down_unchanged() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("data.bin");
    let bytes = random_bytes(3 * 1024 * 1024 + 17);
    std::fs::write(&source, &bytes).unwrap();
    let total = bytes.len() as u64;

    let mut sent = Vec::new();
    let info = alice
        .upload_file(&source, |done, of| sent.push((done, of)))
        .await
        .unwrap();
    assert_eq!(
        sent.last(),
        Some(&(total, total)),
        "progress reaches the total"
    );
    assert!(sent.windows(2).all(|w| w[0].0 < w[1].0), "progress grows");
    assert!(sent.len() > 10, "streamed in chunks: {} calls", sent.len());

    assert!(info.file_id.starts_with("file_"), "{}", info.file_id);
    assert_eq!(info.name, "data.bin");
    assert_eq!(info.size, total);
    assert_eq!(info.mime, "application/octet-stream");
    assert_eq!(info.sha256, sha256_hex(&bytes));
    assert_eq!(info.url, format!("/api/files/{}", info.file_id));
    assert_eq!(info.thumbnail_url, "");
    assert_eq!((info.width, info.height), (0, 0));
    assert!(info.uploaded_at_ms > 0);
    assert_eq!(blobs(&broker), vec![info.sha256.clone()]);
    assert!(temp_files(&broker).is_empty());
    assert_eq!(alice.file_info(&info.file_id).await.unwrap(), info);

    let dest = scratch.path().join("copy.bin");
    let mut received = Vec::new();
    let header = alice
        .download_file(&info.file_id, &dest, |done, of| received.push((done, of)))
        .await
        .unwrap();
    assert_eq!(header.file.as_ref(), Some(&info));
    assert_eq!(
        (header.offset, header.length, header.total_size),
        (0, total, total)
    );
    assert_eq!(received.last(), Some(&(total, total)));
    let copy = std::fs::read(&dest).unwrap();
    assert!(copy == bytes, "the download differs from the upload");
    // Only the source and the destination: the temporary file was renamed.
    let mut left: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["copy.bin", "data.bin"]);

    // Chat goes on next to a transfer (it has a stream of its own).
    let bob = broker.user("bob", "bob-phone").await;
    let bob_id = bob.user_id().unwrap();
    let (upload, ack) = tokio::join!(
        alice.upload_reader("again.bin", total, "", &bytes[..], |_, _| {}),
        alice.send_text(&bob_id, "meanwhile"),
    );
    assert_eq!(upload.unwrap().sha256, info.sha256);
    ack.unwrap();
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_leave_nothing() {
    let broker = TestBroker::start_with(|c| c.max_file_bytes = 100_000).await;
    let alice = broker.user("alice", "alice-phone").await;
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("big.bin");
    // Well beyond the stream's flow-control window, so the broker's refusal stops the
    // upload before the client has written everything.
    const BIG: u64 = 4_000_000;
    std::fs::write(&source, random_bytes(BIG as usize)).unwrap();

    // Declared too large: refused at once.
    let error = alice.upload_file(&source, |_, _| {}).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::FileTooLarge), "{error}");

    // Size not declared: refused once the limit is crossed while streaming, and the
    // broker stops reading.
    let file = tokio::fs::File::open(&source).await.unwrap();
    let mut sent = 0;
    let error = alice
        .upload_reader("big.bin", 0, "", file, |done, _| sent = done)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::FileTooLarge), "{error}");
    assert!(sent < BIG, "the upload was cut short ({sent} bytes sent)");

    eventually("the temporary files are gone", || {
        temp_files(&broker).is_empty()
    })
    .await;
    assert!(blobs(&broker).is_empty(), "{:?}", blobs(&broker));

    // The connection is fine, and so is a file within the limit.
    alice.ping().await.unwrap();
    let small = random_bytes(100_000);
    let info = upload_bytes(&alice, "small.bin", "", &small).await;
    assert_eq!(info.size, 100_000);
    assert_eq!(blobs(&broker), vec![sha256_hex(&small)]);
}

#[tokio::test]
async fn empty_and_misdeclared_uploads_are_refused() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;

    let error = alice
        .upload_reader("empty.txt", 0, "text/plain", &b""[..], |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::InvalidArgument), "{error}");

    let bytes = random_bytes(10_000);
    for declared in [5_000, 20_000] {
        let error = alice
            .upload_reader("liar.bin", declared, "", &bytes[..], |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(code(&error), Some(ErrorCode::InvalidArgument), "{error}");
    }
    eventually("the temporary files are gone", || {
        temp_files(&broker).is_empty()
    })
    .await;
    assert!(blobs(&broker).is_empty(), "{:?}", blobs(&broker));

    // A name with a path loses the path.
    let info = upload_bytes(&alice, "../../etc/pass\nwd", "", &bytes).await;
    assert_eq!(info.name, "passwd");
    let info = upload_bytes(&alice, "", "", &bytes).await;
    assert_eq!(info.name, "file");
}

/// A reader that yields `bytes` and then waits forever (the upload stalls midway).
fn stalling_reader(bytes: Vec<u8>) -> (impl tokio::io::AsyncRead + Unpin, impl Drop) {
    let (keep_open, never) = tokio::io::duplex(1);
    (Cursor::new(bytes).chain(never), keep_open)
}

#[tokio::test]
async fn a_cancelled_upload_leaves_nothing() {
    let broker = TestBroker::start().await;
    let alice = Arc::new(broker.user("alice", "alice-phone").await);
    let (reader, _keep_open) = stalling_reader(random_bytes(1_000_000));
    let sent = Arc::new(Mutex::new(0u64));
    let upload = tokio::spawn({
        let (alice, sent) = (alice.clone(), sent.clone());
        async move {
            // Size unknown: a truncated stream could otherwise pass for a whole file.
            alice
                .upload_reader("stalls.bin", 0, "", reader, |done, _| {
                    *sent.lock().unwrap() = done;
                })
                .await
        }
    });
    eventually("the upload is under way", || {
        *sent.lock().unwrap() == 1_000_000 && !temp_files(&broker).is_empty()
    })
    .await;
    // Dropping the upload's future resets its stream.
    upload.abort();
    assert!(upload.await.unwrap_err().is_cancelled());

    eventually("the temporary file is gone", || {
        temp_files(&broker).is_empty()
    })
    .await;
    assert!(blobs(&broker).is_empty(), "{:?}", blobs(&broker));
    alice.ping().await.unwrap();
}

#[tokio::test]
async fn an_upload_cut_off_by_a_closed_client_leaves_nothing() {
    let broker = TestBroker::start().await;
    let alice = Arc::new(broker.user("alice", "alice-phone").await);
    let (reader, _keep_open) = stalling_reader(random_bytes(500_000));
    let sent = Arc::new(Mutex::new(0u64));
    let upload = tokio::spawn({
        let (alice, sent) = (alice.clone(), sent.clone());
        async move {
            alice
                .upload_reader("cut.bin", 0, "", reader, |done, _| {
                    *sent.lock().unwrap() = done;
                })
                .await
        }
    });
    eventually("the upload is under way", || {
        *sent.lock().unwrap() == 500_000 && !temp_files(&broker).is_empty()
    })
    .await;
    alice.close().await;
    let error = tokio::time::timeout(WAIT, upload)
        .await
        .expect("the upload ends with the connection")
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, SdkError::ClientClosed), "{error:?}");

    eventually("the temporary file is gone", || {
        temp_files(&broker).is_empty()
    })
    .await;
    assert!(blobs(&broker).is_empty(), "{:?}", blobs(&broker));
}

#[tokio::test]
async fn only_the_uploader_and_the_conversation_may_read_a_file() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let bob = broker.user("bob", "bob-phone").await;
    let carol = broker.user("carol", "carol-phone").await;
    let bob_id = bob.user_id().unwrap();
    let bytes = random_bytes(200_000);
    let info = upload_bytes(&alice, "report.bin", "", &bytes).await;
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("stolen.bin");

    // Not sent anywhere yet: only alice can read it; bob and carol get NOT_FOUND, the
    // same as for an id that does not exist.
    for (who, file_id) in [
        (&bob, info.file_id.as_str()),
        (&carol, info.file_id.as_str()),
        (&bob, "file_0000000000000000000000000000dead"),
    ] {
        let error = who
            .download_file(file_id, &dest, |_, _| {})
            .await
            .unwrap_err();
        assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");
        let error = who.file_info(file_id).await.unwrap_err();
        assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");
        let error = who.download_range(file_id, 0, 10).await.unwrap_err();
        assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");
    }
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "a refused download leaves no file"
    );

    let ack = alice
        .send_file(&bob_id, pb::MessageKind::File, &info.file_id, 0)
        .await
        .unwrap();
    let message = next_message(&bob).await;
    assert_eq!(message.msg_id, ack.msg_id);
    assert_eq!(message.kind, pb::MessageKind::File as i32);
    let content = file_content(&message);
    assert_eq!(content.file_id, info.file_id);
    assert_eq!(content.name, "report.bin");
    assert_eq!(content.size, 200_000);
    assert_eq!(content.mime, "application/octet-stream");
    assert_eq!(content.url, info.url);

    // Now bob can; carol still cannot.
    let header = bob
        .download_file(&info.file_id, &dest, |_, _| {})
        .await
        .unwrap();
    assert_eq!(header.length, 200_000);
    assert!(std::fs::read(&dest).unwrap() == bytes);
    assert_eq!(bob.file_info(&info.file_id).await.unwrap(), info);
    let error = carol
        .download_file(&info.file_id, &scratch.path().join("c.bin"), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");
}

#[tokio::test]
async fn media_messages_carry_what_the_broker_knows_about_the_file() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let bob = broker.user("bob", "bob-phone").await;
    let bob_id = bob.user_id().unwrap();
    let png = encoded(640, 480, image::ImageFormat::Png);
    let info = upload_bytes(&alice, "photo.png", "image/png", &png).await;

    // The client's values for everything but the file id (and a voice or video's
    // duration) are ignored.
    let ack = alice
        .send(pb::SendRequest {
            to: bob_id.clone(),
            kind: pb::MessageKind::Image as i32,
            content: Some(pb::send_request::Content::File(pb::FileContent {
                file_id: info.file_id.clone(),
                name: "evil.exe".into(),
                size: 1,
                mime: "text/html".into(),
                url: "https://evil.invalid/x".into(),
                thumbnail_url: "https://evil.invalid/t".into(),
                width: 9999,
                height: 9999,
                duration_ms: 0,
            })),
            client_msg_id: String::new(),
        })
        .await
        .unwrap();
    let message = next_message(&bob).await;
    assert_eq!(message.kind, pb::MessageKind::Image as i32);
    let expected = pb::FileContent {
        file_id: info.file_id.clone(),
        name: "photo.png".into(),
        size: png.len() as u64,
        mime: "image/png".into(),
        url: format!("/api/files/{}", info.file_id),
        thumbnail_url: format!("/api/files/{}/thumbnail", info.file_id),
        width: 640,
        height: 480,
        duration_ms: 0,
    };
    assert_eq!(file_content(&message), &expected);
    // History holds the same.
    let page = bob.history(&ack.conv_id, 0, 0, 10).await.unwrap();
    let stored = page.messages.last().unwrap();
    assert_eq!(stored.msg_id, ack.msg_id);
    assert_eq!(file_content(stored), &expected);
    let thumbnail = bob.download_thumbnail(&info.file_id).await.unwrap();
    assert!(thumbnail.starts_with(&[0xFF, 0xD8]), "a JPEG");

    // A voice message keeps its duration (and, not being an image, the client's size).
    let voice = upload_bytes(&alice, "note.ogg", "audio/ogg", &random_bytes(5_000)).await;
    alice
        .send_file(&bob_id, pb::MessageKind::Voice, &voice.file_id, 4_250)
        .await
        .unwrap();
    let message = next_message(&bob).await;
    assert_eq!(message.kind, pb::MessageKind::Voice as i32);
    let content = file_content(&message);
    assert_eq!(content.file_id, voice.file_id);
    assert_eq!(content.duration_ms, 4_250);
    assert_eq!(content.size, 5_000);
    assert_eq!(content.thumbnail_url, "");
    let (_, bytes) = bob.download_range(&voice.file_id, 0, 0).await.unwrap();
    assert_eq!(bytes.len(), 5_000);
}

#[tokio::test]
async fn messages_may_only_carry_the_senders_own_files() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let bob = broker.user("bob", "bob-phone").await;
    let alice_id = alice.user_id().unwrap();
    let bob_id = bob.user_id().unwrap();
    let text = upload_bytes(&alice, "notes.txt", "text/plain", b"just some text\n").await;
    assert_eq!(text.mime, "text/plain");

    // Bob cannot send alice's file, not even back to her.
    let error = bob
        .send_file(&alice_id, pb::MessageKind::File, &text.file_id, 0)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::Forbidden), "{error}");
    // Not even once it was sent to him.
    alice
        .send_file(&bob_id, pb::MessageKind::File, &text.file_id, 0)
        .await
        .unwrap();
    next_message(&bob).await;
    let error = bob
        .send_file(&alice_id, pb::MessageKind::File, &text.file_id, 0)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::Forbidden), "{error}");

    let error = alice
        .send_file(
            &bob_id,
            pb::MessageKind::File,
            "file_0000000000000000000000000000beef",
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");

    // An IMAGE must be an image.
    let error = alice
        .send_file(&bob_id, pb::MessageKind::Image, &text.file_id, 0)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::InvalidArgument), "{error}");

    // Text is not a file kind: refused before anything is sent.
    let error = alice
        .send_file(&bob_id, pb::MessageKind::Text, &text.file_id, 0)
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::InvalidArgument(_)), "{error:?}");
    common::assert_no_message(&bob, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn images_get_their_size_and_a_thumbnail() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let cases = [
        (image::ImageFormat::Png, "image/png", 640, 480, (320, 240)),
        (image::ImageFormat::Jpeg, "image/jpeg", 200, 500, (128, 320)),
        // Already small: the thumbnail keeps the size.
        (image::ImageFormat::Png, "image/png", 100, 60, (100, 60)),
    ];
    for (format, mime, width, height, thumb_size) in cases {
        let bytes = encoded(width, height, format);
        // The client claims nothing useful; the content says what it is.
        let info = upload_bytes(&alice, "picture", "application/octet-stream", &bytes).await;
        assert_eq!(info.mime, mime, "{format:?}");
        assert_eq!((info.width, info.height), (width, height), "{format:?}");
        assert_eq!(
            info.thumbnail_url,
            format!("/api/files/{}/thumbnail", info.file_id)
        );
        assert!(
            files_dir(&broker)
                .join(format!("{}.thumb.jpg", info.sha256))
                .is_file()
        );

        let thumbnail = alice.download_thumbnail(&info.file_id).await.unwrap();
        let decoded =
            image::load_from_memory_with_format(&thumbnail, image::ImageFormat::Jpeg).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            thumb_size,
            "{format:?} {width}x{height}"
        );
        let (header, _) = alice.download_range(&info.file_id, 0, 0).await.unwrap();
        assert_eq!(header.total_size, bytes.len() as u64);
    }

    // A wrong claim does not make an image either.
    let info = upload_bytes(&alice, "fake.png", "image/png", b"not a picture at all").await;
    assert_eq!(info.mime, "text/plain");
    assert_eq!((info.width, info.height), (0, 0));
    assert_eq!(info.thumbnail_url, "");
    let error = alice.download_thumbnail(&info.file_id).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");
}

#[tokio::test]
async fn ranges_download_part_of_a_file() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let bytes = random_bytes(100_000);
    let info = upload_bytes(&alice, "range.bin", "", &bytes).await;

    let (header, part) = alice
        .download_range(&info.file_id, 1_000, 5_000)
        .await
        .unwrap();
    assert_eq!(
        (header.offset, header.length, header.total_size),
        (1_000, 5_000, 100_000)
    );
    assert_eq!(header.file.unwrap().file_id, info.file_id);
    assert!(part == bytes[1_000..6_000]);

    // To the end, and a length past the end is cut to it.
    for length in [0, 5_000] {
        let (header, tail) = alice
            .download_range(&info.file_id, 99_000, length)
            .await
            .unwrap();
        assert_eq!((header.offset, header.length), (99_000, 1_000));
        assert!(tail == bytes[99_000..]);
    }
    let (_, last) = alice
        .download_range(&info.file_id, 99_999, 1)
        .await
        .unwrap();
    assert_eq!(last, vec![bytes[99_999]]);

    let error = alice
        .download_range(&info.file_id, 200_000, 10)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::InvalidArgument), "{error}");
}

#[tokio::test]
async fn identical_content_is_stored_once() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let bob = broker.user("bob", "bob-phone").await;
    let bytes = random_bytes(300_000);
    let first = upload_bytes(&alice, "one.bin", "", &bytes).await;
    let second = upload_bytes(&alice, "two.bin", "", &bytes).await;
    let third = upload_bytes(&bob, "three.bin", "", &bytes).await;
    assert_ne!(first.file_id, second.file_id);
    assert_ne!(second.file_id, third.file_id);
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(first.sha256, third.sha256);
    assert_eq!(
        (second.name.as_str(), third.name.as_str()),
        ("two.bin", "three.bin")
    );
    assert_eq!(blobs(&broker), vec![first.sha256.clone()]);
    assert!(temp_files(&broker).is_empty());

    // Each upload stays its uploader's: bob's copy does not open alice's.
    let error = bob.file_info(&first.file_id).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::NotFound), "{error}");
    let (_, copy) = bob.download_range(&third.file_id, 0, 0).await.unwrap();
    assert!(copy == bytes);
}

#[tokio::test]
async fn several_transfers_run_at_once_on_one_connection() {
    let broker = TestBroker::start_with(|c| c.max_transfers_per_connection = 2).await;
    let alice = broker.user("alice", "alice-phone").await;
    let contents: Vec<Vec<u8>> = (0..6).map(|_| random_bytes(150_000)).collect();
    // More than the broker runs at once: the rest wait for a stream.
    let names: Vec<String> = (0..contents.len()).map(|i| format!("f{i}")).collect();
    let uploads = contents
        .iter()
        .zip(&names)
        .map(|(bytes, name)| alice.upload_reader(name, 0, "", &bytes[..], |_, _| {}));
    let infos = tokio::time::timeout(WAIT, futures_util::future::try_join_all(uploads))
        .await
        .expect("the uploads finish")
        .unwrap();
    let downloads = infos
        .iter()
        .map(|info| alice.download_range(&info.file_id, 0, 0));
    let copies = tokio::time::timeout(WAIT, futures_util::future::try_join_all(downloads))
        .await
        .expect("the downloads finish")
        .unwrap();
    for ((info, (_, copy)), bytes) in infos.iter().zip(copies).zip(&contents) {
        assert_eq!(info.sha256, sha256_hex(bytes));
        assert!(&copy == bytes);
    }
    assert_eq!(blobs(&broker).len(), 6);
}

#[tokio::test]
async fn transfers_need_a_login() {
    let broker = TestBroker::start().await;
    let client = broker.client("anonymous").await;
    let error = client
        .upload_reader("x", 1, "", &b"x"[..], |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::NotAuthenticated), "{error:?}");
    let error = client
        .download_range("file_0000000000000000000000000000dead", 0, 0)
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::NotAuthenticated), "{error:?}");
    assert!(Path::new(&files_dir(&broker)).is_dir());
}

#[tokio::test]
async fn a_transfer_is_not_carried_over_to_the_next_connection() {
    let mut broker = TestBroker::start().await;
    let alice = Arc::new(broker.user("alice", "alice-phone").await);
    let (reader, _keep_open) = stalling_reader(random_bytes(200_000));
    let sent = Arc::new(Mutex::new(0u64));
    let upload = tokio::spawn({
        let (alice, sent) = (alice.clone(), sent.clone());
        async move {
            alice
                .upload_reader("cut.bin", 0, "", reader, |done, _| {
                    *sent.lock().unwrap() = done;
                })
                .await
        }
    });
    eventually("the upload is under way", || {
        *sent.lock().unwrap() == 200_000 && !temp_files(&broker).is_empty()
    })
    .await;
    broker.restart().await;
    let error = tokio::time::timeout(WAIT, upload)
        .await
        .expect("the upload ends with the connection")
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, SdkError::Disconnected), "{error:?}");
    assert!(blobs(&broker).is_empty(), "{:?}", blobs(&broker));

    // A transfer started while the client reconnects waits for the new connection.
    let bytes = random_bytes(50_000);
    let info = upload_bytes(&alice, "after.bin", "", &bytes).await;
    let (_, copy) = alice.download_range(&info.file_id, 0, 0).await.unwrap();
    assert!(copy == bytes);
    assert!(temp_files(&broker).is_empty());
}
