//! Writes the seed corpora in `seeds/<target>/`: a handful of valid inputs per target,
//! built with the real encoders so they stay valid as the schema grows. Run from
//! `fuzz/` with `cargo run --example gen_seeds` (stable is enough); the files are
//! small and committed, unlike the corpora the fuzzers grow in `corpus/`.

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use prost::Message;
use quip_protocol::pb::{self, client_frame::Body};
use quip_protocol::{ClientFrame, encode_frame};

const ALICE: &str = "user_00000000000000a1";
const BOB: &str = "user_00000000000000b2";
const GROUP: &str = "group_00000000000000c3";
const SINGLE: &str = "single:user_00000000000000a1:user_00000000000000b2";
const GROUP_CONV: &str = "group:group_00000000000000c3";

fn frames() -> Vec<(&'static str, ClientFrame)> {
    let text = |text: &str| pb::TextContent {
        text: text.into(),
        mention_user_ids: vec![BOB.into()],
        mention_all: false,
    };
    let bodies: Vec<(&str, Body)> = vec![
        (
            "hello_password",
            Body::Hello(pb::Hello {
                auth: Some(pb::hello::Auth::Password(pb::PasswordAuth {
                    username: "alice".into(),
                    password: "correct horse".into(),
                })),
                device_id: "phone-1".into(),
                client_version: "quip-sdk/0.1".into(),
                lanes: 4,
                cursors: vec![
                    pb::Cursor {
                        conv_id: SINGLE.into(),
                        seq: 7,
                    },
                    pb::Cursor {
                        conv_id: GROUP_CONV.into(),
                        seq: 2,
                    },
                ],
            }),
        ),
        (
            "hello_register",
            Body::Hello(pb::Hello {
                auth: Some(pb::hello::Auth::Register(pb::RegisterAuth {
                    username: "bob".into(),
                    password: "hunter22".into(),
                    nickname: "Bob".into(),
                })),
                device_id: "laptop".into(),
                lanes: 0,
                ..Default::default()
            }),
        ),
        (
            "send_text",
            Body::Send(pb::SendRequest {
                to: BOB.into(),
                kind: pb::MessageKind::Text as i32,
                content: Some(pb::send_request::Content::Text(text("hi bob"))),
                client_msg_id: "c-1".into(),
            }),
        ),
        (
            "send_file",
            Body::Send(pb::SendRequest {
                to: GROUP.into(),
                kind: pb::MessageKind::Image as i32,
                content: Some(pb::send_request::Content::File(pb::FileContent {
                    file_id: "file_0123".into(),
                    name: "cat.png".into(),
                    size: 1234,
                    width: 64,
                    height: 48,
                    ..Default::default()
                })),
                client_msg_id: "c-2".into(),
            }),
        ),
        (
            "history",
            Body::History(pb::HistoryRequest {
                conv_id: SINGLE.into(),
                before_seq: 10,
                after_seq: None,
                limit: 50,
            }),
        ),
        (
            "report",
            Body::Report(pb::ReportCursors {
                reports: vec![pb::CursorReport {
                    conv_id: GROUP_CONV.into(),
                    delivered_seq: 5,
                    read_seq: 4,
                }],
            }),
        ),
        (
            "typing",
            Body::Typing(pb::Typing {
                conv_id: SINGLE.into(),
                kind: pb::TypingKind::Typing as i32,
            }),
        ),
        (
            "presence",
            Body::Presence(pb::PresenceRequest {
                user_ids: vec![ALICE.into(), BOB.into()],
            }),
        ),
        (
            "group_invite",
            Body::Group(pb::GroupRequest {
                op: Some(pb::group_request::Op::Invite(pb::InviteMembers {
                    group_id: GROUP.into(),
                    user_ids: vec![BOB.into()],
                })),
            }),
        ),
        (
            "readers",
            Body::Readers(pb::ReadersRequest {
                conv_id: GROUP_CONV.into(),
                seq: 3,
                after_user_id: ALICE.into(),
                limit: 20,
            }),
        ),
        (
            "call_ice",
            Body::Call(pb::CallRequest {
                call_id: "call_1".into(),
                action: pb::CallAction::Ice as i32,
                candidate:
                    r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}"#
                        .into(),
                ..Default::default()
            }),
        ),
        (
            "recall",
            Body::Recall(pb::RecallRequest {
                conv_id: SINGLE.into(),
                seq: 3,
                client_msg_id: "r-1".into(),
            }),
        ),
        (
            "edit",
            Body::Edit(pb::EditRequest {
                conv_id: GROUP_CONV.into(),
                seq: 2,
                text: Some(text("fixed")),
                client_msg_id: "e-1".into(),
            }),
        ),
        (
            "file_info",
            Body::FileInfo(pb::FileInfoRequest {
                file_id: "file_0123".into(),
            }),
        ),
        ("ping", Body::Ping(pb::Ping { client_time_ms: 42 })),
    ];
    bodies
        .into_iter()
        .zip(1u64..)
        .map(|((name, body), req_id)| {
            (
                name,
                ClientFrame {
                    req_id,
                    body: Some(body),
                },
            )
        })
        .collect()
}

const BROWSER_JSON: &[(&str, &str)] = &[
    (
        "single_text",
        r#"{"type":1,"to":"user_00000000000000b2","message_id":"local-1","content":{"text":"hi","at_user_ids":["user_00000000000000b2"],"at_all":false}}"#,
    ),
    (
        "group_text",
        r#"{"type":2,"group_id":"group_00000000000000c3","client_msg_id":"c1","content":"plain text"}"#,
    ),
    (
        "image",
        r#"{"type":4,"to":"user_00000000000000b2","message_id":"m-img","content":{"file_id":"file_1","file_name":"cat.png","file_size":1234,"width":64,"height":48}}"#,
    ),
    (
        "custom",
        r#"{"type":8,"to":"group_00000000000000c3","message_id":"m-c","content":{"json":{"card":{"title":"t","n":[1,2.5,-3]}}}}"#,
    ),
    (
        "recall",
        r#"{"type":35,"conversation_id":"single:user_00000000000000a1:user_00000000000000b2","seq":3,"message_id":"r1"}"#,
    ),
    (
        "edit",
        r#"{"type":36,"conversation_id":"group:group_00000000000000c3","seq":2,"content":{"text":"fixed","at_all":true}}"#,
    ),
    (
        "call_invite",
        r#"{"type":60,"action":"invite","to":"user_00000000000000b2","media":"video","message_id":"call-m1"}"#,
    ),
    (
        "call_ice",
        r#"{"type":60,"action":"ice","call_id":"call_1","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    ),
    (
        "call_offer",
        r#"{"type":60,"action":"offer","call_id":"call_1","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#,
    ),
    (
        "read_receipt",
        r#"{"type":31,"conversation_id":"group:group_00000000000000c3","seq":9}"#,
    ),
    ("heartbeat", r#"{"type":99,"content":{}}"#),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let frames = frames();

    // client_frame: each body bare, and each as a datagram (length-prefixed).
    let dir = seeds.join("client_frame");
    for (name, frame) in &frames {
        write(&dir, &format!("{name}.pb"), &frame.encode_to_vec());
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf);
        write(&dir, &format!("{name}.dgram"), &buf);
    }

    // frame_decoder: streams of frames (a control stream's opening, one request,
    // everything at once), each led by a byte that picks the chunk size.
    let dir = seeds.join("frame_decoder");
    let stream = |chunk: u8, picks: &[&str]| {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[chunk]);
        for (name, frame) in &frames {
            if picks.is_empty() || picks.contains(name) {
                encode_frame(frame, &mut buf);
            }
        }
        buf
    };
    write(
        &dir,
        "hello_send",
        &stream(7, &["hello_password", "send_text"]),
    );
    write(&dir, "one_edit", &stream(1, &["edit"]));
    write(&dir, "all_frames", &stream(64, &[]));
    write(
        &dir,
        "typing_report",
        &stream(3, &["typing", "report", "ping"]),
    );

    let dir = seeds.join("browser_json");
    for (name, text) in BROWSER_JSON {
        write(&dir, &format!("{name}.json"), text.as_bytes());
    }
    println!("seeds written to {}", seeds.display());
}
