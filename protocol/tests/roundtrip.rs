//! Property tests: every frame type survives `encode_frame` -> `FrameDecoder::decode`
//! unchanged, the decoder consumes exactly that frame's bytes, and frames written back
//! to back come out in order.
//!
//! The strategies build every `ClientFrame` and `ServerFrame` body variant and every
//! nested oneof (Hello auth, send and message content, optional tokens, a system
//! message's call summary, an edit's or amendment's text, the group, contact, account
//! and admin operations and results, a friend's presence, new contact settings, an
//! admin's user detail), and the `StreamRequest` and `StreamResponse` frames that open
//! a file transfer stream (upload or download; error, stored file or download header,
//! with or without its file), each followed by the raw bytes of the transfer. Struct
//! literals name every field and the variant names below match exhaustively, so a
//! field or a variant added to the schema fails to compile here until it is covered.

use std::fmt::Debug;

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use quip_protocol::pb::{
    self, account_request, account_response, admin_request, admin_response, contact_request,
    contact_response, group_request, group_response, hello, message, send_request, stream_request,
    stream_response,
};
use quip_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME_BYTES, ErrorCode, FrameDecoder, ServerFrame, client_frame,
    encode_frame, encode_frame_bytes, server_frame,
};

// ---------------------------------------------------------------------------------
// Scalars
//
// Every strategy is boxed: unboxed, the nested value trees of a whole frame are large
// enough to overflow a test thread's stack in a debug build.
// ---------------------------------------------------------------------------------

/// Strings as they occur on the wire and as an attacker might send them: empty,
/// id-like ASCII, printable unicode (CJK, emoji, combining marks) and any scalar value
/// at all, including NUL and other control characters.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        1 => Just(String::new()),
        3 => "[A-Za-z0-9_.:-]{1,24}",
        3 => "\\PC{0,16}",
        3 => vec(any::<char>(), 0..16).prop_map(String::from_iter),
    ]
    .boxed()
}

/// u64s with the edges (0 is the proto3 default and is not written at all) weighted in.
fn num() -> BoxedStrategy<u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => Just(u64::MAX),
        2 => 1..=u64::from(u32::MAX),
        4 => any::<u64>(),
    ]
    .boxed()
}

fn num32() -> BoxedStrategy<u32> {
    prop_oneof![
        1 => Just(0u32),
        1 => Just(u32::MAX),
        4 => any::<u32>(),
    ]
    .boxed()
}

/// Doubles of every kind but NaN: NaN is never equal to itself, so a decoded frame
/// holding one could not compare equal to the original even though its bits survive.
fn float() -> BoxedStrategy<f64> {
    use prop::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        1 => Just(0.0),
        4 => POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE,
    ]
    .boxed()
}

/// An enum field: mostly values the schema defines (`is_known`, so codes appended
/// later are picked up without touching this file), sometimes any i32, because enums
/// are open in proto3 and unknown or negative values must survive too.
fn enum_value(is_known: fn(i32) -> bool) -> BoxedStrategy<i32> {
    let known: Vec<i32> = (0..1024).filter(|&v| is_known(v)).collect();
    prop_oneof![3 => prop::sample::select(known), 1 => any::<i32>()].boxed()
}

fn kind() -> BoxedStrategy<i32> {
    enum_value(|v| pb::MessageKind::try_from(v).is_ok())
}

fn strings() -> BoxedStrategy<Vec<String>> {
    vec(text(), 0..4).boxed()
}

// ---------------------------------------------------------------------------------
// message.proto
// ---------------------------------------------------------------------------------

fn text_content() -> BoxedStrategy<pb::TextContent> {
    (text(), strings(), any::<bool>())
        .prop_map(|(text, mention_user_ids, mention_all)| pb::TextContent {
            text,
            mention_user_ids,
            mention_all,
        })
        .boxed()
}

fn file_content() -> BoxedStrategy<pb::FileContent> {
    (
        (text(), text(), num(), text(), text(), text()),
        (num32(), num32(), num32()),
    )
        .prop_map(
            |((file_id, name, size, mime, url, thumbnail_url), (width, height, duration_ms))| {
                pb::FileContent {
                    file_id,
                    name,
                    size,
                    mime,
                    url,
                    thumbnail_url,
                    width,
                    height,
                    duration_ms,
                }
            },
        )
        .boxed()
}

fn custom_content() -> BoxedStrategy<pb::CustomContent> {
    text().prop_map(|json| pb::CustomContent { json }).boxed()
}

fn system_content() -> BoxedStrategy<pb::SystemContent> {
    (text(), strings(), text(), prop::option::of(call_summary()))
        .prop_map(|(event, user_ids, text, call)| pb::SystemContent {
            event,
            user_ids,
            text,
            call,
        })
        .boxed()
}

fn amendment() -> BoxedStrategy<pb::Amendment> {
    (num(), text(), prop::option::of(text_content()))
        .prop_map(|(target_seq, target_msg_id, text)| pb::Amendment {
            target_seq,
            target_msg_id,
            text,
        })
        .boxed()
}

fn message_content() -> BoxedStrategy<Option<message::Content>> {
    prop_oneof![
        1 => Just(None),
        2 => text_content().prop_map(|c| Some(message::Content::Text(c))),
        2 => file_content().prop_map(|c| Some(message::Content::File(c))),
        2 => custom_content().prop_map(|c| Some(message::Content::Custom(c))),
        2 => system_content().prop_map(|c| Some(message::Content::System(c))),
        2 => amendment().prop_map(|c| Some(message::Content::Amendment(c))),
    ]
    .boxed()
}

fn chat_message() -> BoxedStrategy<pb::Message> {
    (
        (text(), text(), num(), text(), text(), text(), kind()),
        message_content(),
        (text(), num(), num(), any::<bool>(), text(), text()),
    )
        .prop_map(
            |(
                (msg_id, conv_id, seq, from, to, group_id, kind),
                content,
                (client_msg_id, sent_at_ms, edited_at_ms, recalled, from_device, recalled_by),
            )| pb::Message {
                msg_id,
                conv_id,
                seq,
                from,
                to,
                group_id,
                kind,
                content,
                client_msg_id,
                sent_at_ms,
                edited_at_ms,
                recalled,
                from_device,
                recalled_by,
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------
// auth.proto
// ---------------------------------------------------------------------------------

fn cursor() -> BoxedStrategy<pb::Cursor> {
    (text(), num())
        .prop_map(|(conv_id, seq)| pb::Cursor { conv_id, seq })
        .boxed()
}

fn hello_auth() -> BoxedStrategy<Option<hello::Auth>> {
    prop_oneof![
        1 => Just(None),
        2 => text().prop_map(|t| Some(hello::Auth::AccessToken(t))),
        2 => (text(), text()).prop_map(|(username, password)| {
            Some(hello::Auth::Password(pb::PasswordAuth { username, password }))
        }),
        2 => (text(), text(), text()).prop_map(|(username, password, nickname)| {
            Some(hello::Auth::Register(pb::RegisterAuth {
                username,
                password,
                nickname,
            }))
        }),
        2 => text().prop_map(|t| Some(hello::Auth::RefreshToken(t))),
    ]
    .boxed()
}

fn hello_frame() -> BoxedStrategy<pb::Hello> {
    (hello_auth(), text(), text(), num32(), vec(cursor(), 0..6))
        .prop_map(
            |(auth, device_id, client_version, lanes, cursors)| pb::Hello {
                auth,
                device_id,
                client_version,
                lanes,
                cursors,
            },
        )
        .boxed()
}

fn tokens() -> BoxedStrategy<pb::Tokens> {
    (text(), num(), text(), num())
        .prop_map(
            |(access_token, access_expires_at_ms, refresh_token, refresh_expires_at_ms)| {
                pb::Tokens {
                    access_token,
                    access_expires_at_ms,
                    refresh_token,
                    refresh_expires_at_ms,
                }
            },
        )
        .boxed()
}

fn hello_ok() -> BoxedStrategy<pb::HelloOk> {
    (
        (text(), text(), text(), text()),
        prop::option::of(tokens()),
        (num32(), num32(), num(), text()),
    )
        .prop_map(
            |(
                (user_id, username, nickname, device_id),
                tokens,
                (lanes, max_frame_bytes, server_time_ms, role),
            )| pb::HelloOk {
                user_id,
                username,
                nickname,
                device_id,
                tokens,
                lanes,
                max_frame_bytes,
                server_time_ms,
                role,
            },
        )
        .boxed()
}

fn refresh_request() -> BoxedStrategy<pb::RefreshRequest> {
    text()
        .prop_map(|refresh_token| pb::RefreshRequest { refresh_token })
        .boxed()
}

// ---------------------------------------------------------------------------------
// chat.proto
// ---------------------------------------------------------------------------------

fn send_content() -> BoxedStrategy<Option<send_request::Content>> {
    prop_oneof![
        1 => Just(None),
        2 => text_content().prop_map(|c| Some(send_request::Content::Text(c))),
        2 => file_content().prop_map(|c| Some(send_request::Content::File(c))),
        2 => custom_content().prop_map(|c| Some(send_request::Content::Custom(c))),
    ]
    .boxed()
}

fn send_request() -> BoxedStrategy<pb::SendRequest> {
    (text(), kind(), send_content(), text())
        .prop_map(|(to, kind, content, client_msg_id)| pb::SendRequest {
            to,
            kind,
            content,
            client_msg_id,
        })
        .boxed()
}

fn send_ack() -> BoxedStrategy<pb::SendAck> {
    (text(), text(), text(), num(), num(), any::<bool>())
        .prop_map(
            |(client_msg_id, msg_id, conv_id, seq, sent_at_ms, duplicate)| pb::SendAck {
                client_msg_id,
                msg_id,
                conv_id,
                seq,
                sent_at_ms,
                duplicate,
            },
        )
        .boxed()
}

fn deliver() -> BoxedStrategy<pb::Deliver> {
    prop_oneof![
        // A Deliver always carries a message in practice; an empty one must still decode.
        1 => Just(pb::Deliver { message: None }),
        8 => chat_message().prop_map(|m| pb::Deliver { message: Some(m) }),
    ]
    .boxed()
}

fn sync_done() -> BoxedStrategy<pb::SyncDone> {
    (num32(), num())
        .prop_map(|(lane, messages)| pb::SyncDone { lane, messages })
        .boxed()
}

fn resume_from() -> BoxedStrategy<pb::ResumeFrom> {
    (text(), num())
        .prop_map(|(conv_id, seq)| pb::ResumeFrom { conv_id, seq })
        .boxed()
}

fn history_request() -> BoxedStrategy<pb::HistoryRequest> {
    (text(), num(), num(), num32())
        .prop_map(
            |(conv_id, before_seq, after_seq, limit)| pb::HistoryRequest {
                conv_id,
                before_seq,
                after_seq: (after_seq % 2 == 0).then_some(after_seq / 2),
                limit,
            },
        )
        .boxed()
}

fn history_page() -> BoxedStrategy<pb::HistoryPage> {
    (text(), vec(chat_message(), 0..5), any::<bool>())
        .prop_map(|(conv_id, messages, has_more)| pb::HistoryPage {
            conv_id,
            messages,
            has_more,
        })
        .boxed()
}

fn conversations_request() -> BoxedStrategy<pb::ConversationsRequest> {
    (text(), num32())
        .prop_map(|(page_token, limit)| pb::ConversationsRequest { page_token, limit })
        .boxed()
}

fn conversation_summary() -> BoxedStrategy<pb::ConversationSummary> {
    (
        text(),
        text(),
        prop::option::of(chat_message()),
        num(),
        num(),
        num(),
        any::<bool>(),
    )
        .prop_map(
            |(conv_id, peer_id, last_message, last_seq, read_seq, unread, mentioned)| {
                pb::ConversationSummary {
                    conv_id,
                    peer_id,
                    last_message,
                    last_seq,
                    read_seq,
                    unread,
                    mentioned,
                }
            },
        )
        .boxed()
}

fn conversation_list() -> BoxedStrategy<pb::ConversationList> {
    (vec(conversation_summary(), 0..4), text())
        .prop_map(|(conversations, next_page_token)| pb::ConversationList {
            conversations,
            next_page_token,
        })
        .boxed()
}

fn report_cursors() -> BoxedStrategy<pb::ReportCursors> {
    vec(
        (text(), num(), num()).prop_map(|(conv_id, delivered_seq, read_seq)| pb::CursorReport {
            conv_id,
            delivered_seq,
            read_seq,
        }),
        0..6,
    )
    .prop_map(|reports| pb::ReportCursors { reports })
    .boxed()
}

fn ping() -> BoxedStrategy<pb::Ping> {
    num()
        .prop_map(|client_time_ms| pb::Ping { client_time_ms })
        .boxed()
}

fn typing_kind() -> BoxedStrategy<i32> {
    enum_value(|v| pb::TypingKind::try_from(v).is_ok())
}

fn typing() -> BoxedStrategy<pb::Typing> {
    (text(), typing_kind())
        .prop_map(|(conv_id, kind)| pb::Typing { conv_id, kind })
        .boxed()
}

fn typing_notice() -> BoxedStrategy<pb::TypingNotice> {
    (text(), text(), typing_kind(), any::<u32>())
        .prop_map(|(conv_id, from, kind, expires_in_ms)| pb::TypingNotice {
            conv_id,
            from,
            kind,
            expires_in_ms,
        })
        .boxed()
}

fn lookup_user() -> BoxedStrategy<pb::LookupUser> {
    prop_oneof![
        1 => Just(pb::LookupUser { key: None }),
        2 => text().prop_map(|id| pb::LookupUser { key: Some(pb::lookup_user::Key::UserId(id)) }),
        2 => text().prop_map(|name| pb::LookupUser { key: Some(pb::lookup_user::Key::Username(name)) }),
    ]
    .boxed()
}

fn user_info() -> BoxedStrategy<pb::UserInfo> {
    (text(), text(), text())
        .prop_map(|(user_id, username, nickname)| pb::UserInfo {
            user_id,
            username,
            nickname,
        })
        .boxed()
}

fn pong() -> BoxedStrategy<pb::Pong> {
    (num(), num())
        .prop_map(|(client_time_ms, server_time_ms)| pb::Pong {
            client_time_ms,
            server_time_ms,
        })
        .boxed()
}

fn recall_request() -> BoxedStrategy<pb::RecallRequest> {
    (text(), num(), text())
        .prop_map(|(conv_id, seq, client_msg_id)| pb::RecallRequest {
            conv_id,
            seq,
            client_msg_id,
        })
        .boxed()
}

fn edit_request() -> BoxedStrategy<pb::EditRequest> {
    (text(), num(), prop::option::of(text_content()), text())
        .prop_map(|(conv_id, seq, text, client_msg_id)| pb::EditRequest {
            conv_id,
            seq,
            text,
            client_msg_id,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------
// error.proto
// ---------------------------------------------------------------------------------

fn error_frame() -> BoxedStrategy<pb::Error> {
    (
        enum_value(|v| ErrorCode::try_from(v).is_ok()),
        text(),
        num(),
    )
        .prop_map(|(code, message, retry_after_ms)| pb::Error {
            code,
            message,
            retry_after_ms,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------
// group.proto
// ---------------------------------------------------------------------------------

fn group_role() -> BoxedStrategy<i32> {
    enum_value(|v| pb::GroupRole::try_from(v).is_ok())
}

fn join_mode() -> BoxedStrategy<i32> {
    enum_value(|v| pb::JoinMode::try_from(v).is_ok())
}

fn group_info() -> BoxedStrategy<pb::GroupInfo> {
    (
        (text(), text(), text(), text(), text(), text()),
        (join_mode(), num32(), num32(), any::<bool>()),
        (num(), any::<bool>(), group_role()),
    )
        .prop_map(
            |(
                (group_id, conv_id, name, description, avatar_url, owner_id),
                (join_mode, member_count, max_members, mute_all),
                (created_at_ms, dissolved, my_role),
            )| pb::GroupInfo {
                group_id,
                conv_id,
                name,
                description,
                avatar_url,
                owner_id,
                join_mode,
                member_count,
                max_members,
                mute_all,
                created_at_ms,
                dissolved,
                my_role,
            },
        )
        .boxed()
}

fn group_member() -> BoxedStrategy<pb::GroupMember> {
    (text(), group_role(), num(), num(), text())
        .prop_map(
            |(user_id, role, joined_at_ms, muted_until_ms, nickname)| pb::GroupMember {
                user_id,
                role,
                joined_at_ms,
                muted_until_ms,
                nickname,
            },
        )
        .boxed()
}

fn join_request_info() -> BoxedStrategy<pb::JoinRequestInfo> {
    (text(), text(), text(), num())
        .prop_map(
            |(group_id, user_id, message, requested_at_ms)| pb::JoinRequestInfo {
                group_id,
                user_id,
                message,
                requested_at_ms,
            },
        )
        .boxed()
}

fn create_group() -> BoxedStrategy<pb::CreateGroup> {
    (text(), text(), text(), strings(), join_mode())
        .prop_map(
            |(name, description, avatar_url, member_ids, join_mode)| pb::CreateGroup {
                name,
                description,
                avatar_url,
                member_ids,
                join_mode,
            },
        )
        .boxed()
}

fn list_members() -> BoxedStrategy<pb::ListMembers> {
    (text(), text(), num32())
        .prop_map(|(group_id, after_user_id, limit)| pb::ListMembers {
            group_id,
            after_user_id,
            limit,
        })
        .boxed()
}

fn join_group() -> BoxedStrategy<pb::JoinGroup> {
    (text(), text())
        .prop_map(|(group_id, message)| pb::JoinGroup { group_id, message })
        .boxed()
}

fn invite_members() -> BoxedStrategy<pb::InviteMembers> {
    (text(), strings())
        .prop_map(|(group_id, user_ids)| pb::InviteMembers { group_id, user_ids })
        .boxed()
}

fn kick_member() -> BoxedStrategy<pb::KickMember> {
    (text(), text())
        .prop_map(|(group_id, user_id)| pb::KickMember { group_id, user_id })
        .boxed()
}

fn transfer_ownership() -> BoxedStrategy<pb::TransferOwnership> {
    (text(), text())
        .prop_map(|(group_id, new_owner_id)| pb::TransferOwnership {
            group_id,
            new_owner_id,
        })
        .boxed()
}

/// `optional string` fields: unset must stay unset, and set-but-empty must stay set
/// (that is the distinction `optional` exists for), so `text()` includes "".
fn update_group() -> BoxedStrategy<pb::UpdateGroup> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        join_mode(),
    )
        .prop_map(
            |(group_id, name, description, avatar_url, join_mode)| pb::UpdateGroup {
                group_id,
                name,
                description,
                avatar_url,
                join_mode,
            },
        )
        .boxed()
}

fn set_member_role() -> BoxedStrategy<pb::SetMemberRole> {
    (text(), text(), group_role())
        .prop_map(|(group_id, user_id, role)| pb::SetMemberRole {
            group_id,
            user_id,
            role,
        })
        .boxed()
}

fn mute_member() -> BoxedStrategy<pb::MuteMember> {
    (text(), text(), num())
        .prop_map(|(group_id, user_id, until_ms)| pb::MuteMember {
            group_id,
            user_id,
            until_ms,
        })
        .boxed()
}

fn set_mute_all() -> BoxedStrategy<pb::SetMuteAll> {
    (text(), any::<bool>())
        .prop_map(|(group_id, mute_all)| pb::SetMuteAll { group_id, mute_all })
        .boxed()
}

fn decide_join_request() -> BoxedStrategy<pb::DecideJoinRequest> {
    (text(), text(), any::<bool>())
        .prop_map(|(group_id, user_id, accept)| pb::DecideJoinRequest {
            group_id,
            user_id,
            accept,
        })
        .boxed()
}

fn group_request() -> BoxedStrategy<pb::GroupRequest> {
    use group_request::Op;
    prop_oneof![
        1 => Just(None),
        2 => create_group().prop_map(|o| Some(Op::Create(o))),
        1 => Just(Some(Op::ListMine(pb::ListMyGroups {}))),
        1 => text().prop_map(|group_id| Some(Op::Get(pb::GetGroup { group_id }))),
        2 => list_members().prop_map(|o| Some(Op::Members(o))),
        2 => join_group().prop_map(|o| Some(Op::Join(o))),
        1 => text().prop_map(|group_id| Some(Op::Leave(pb::LeaveGroup { group_id }))),
        2 => invite_members().prop_map(|o| Some(Op::Invite(o))),
        2 => kick_member().prop_map(|o| Some(Op::Kick(o))),
        1 => text().prop_map(|group_id| Some(Op::Dissolve(pb::DissolveGroup { group_id }))),
        2 => transfer_ownership().prop_map(|o| Some(Op::Transfer(o))),
        4 => update_group().prop_map(|o| Some(Op::Update(o))),
        2 => set_member_role().prop_map(|o| Some(Op::SetRole(o))),
        2 => mute_member().prop_map(|o| Some(Op::Mute(o))),
        2 => set_mute_all().prop_map(|o| Some(Op::MuteAll(o))),
        1 => text().prop_map(|group_id| {
            Some(Op::JoinRequests(pb::ListJoinRequests { group_id }))
        }),
        2 => decide_join_request().prop_map(|o| Some(Op::Decide(o))),
    ]
    .prop_map(|op| pb::GroupRequest { op })
    .boxed()
}

fn group_changed() -> BoxedStrategy<pb::GroupChanged> {
    (prop::option::of(group_info()), num(), any::<bool>())
        .prop_map(|(group, seq, pending_approval)| pb::GroupChanged {
            group,
            seq,
            pending_approval,
        })
        .boxed()
}

fn member_page() -> BoxedStrategy<pb::MemberPage> {
    (vec(group_member(), 0..5), text())
        .prop_map(|(members, next_after_user_id)| pb::MemberPage {
            members,
            next_after_user_id,
        })
        .boxed()
}

fn group_response() -> BoxedStrategy<pb::GroupResponse> {
    use group_response::Result;
    prop_oneof![
        1 => Just(None),
        3 => group_changed().prop_map(|r| Some(Result::Changed(r))),
        2 => group_info().prop_map(|r| Some(Result::Info(r))),
        2 => vec(group_info(), 0..4)
            .prop_map(|groups| Some(Result::List(pb::GroupList { groups }))),
        2 => member_page().prop_map(|r| Some(Result::Members(r))),
        2 => vec(join_request_info(), 0..4)
            .prop_map(|requests| Some(Result::JoinRequests(pb::JoinRequestList { requests }))),
    ]
    .prop_map(|result| pb::GroupResponse { result })
    .boxed()
}

// ---------------------------------------------------------------------------------
// presence.proto
// ---------------------------------------------------------------------------------

fn presence() -> BoxedStrategy<pb::Presence> {
    (text(), any::<bool>(), num(), num32(), num())
        .prop_map(
            |(user_id, online, last_seen_ms, devices, version)| pb::Presence {
                user_id,
                online,
                last_seen_ms,
                devices,
                version,
            },
        )
        .boxed()
}

fn presence_request() -> BoxedStrategy<pb::PresenceRequest> {
    strings()
        .prop_map(|user_ids| pb::PresenceRequest { user_ids })
        .boxed()
}

fn presence_list() -> BoxedStrategy<pb::PresenceList> {
    vec(presence(), 0..5)
        .prop_map(|presences| pb::PresenceList { presences })
        .boxed()
}

fn group_presence_request() -> BoxedStrategy<pb::GroupPresenceRequest> {
    (text(), num32())
        .prop_map(|(group_id, limit)| pb::GroupPresenceRequest { group_id, limit })
        .boxed()
}

fn group_presence() -> BoxedStrategy<pb::GroupPresence> {
    (text(), num32(), num32(), strings())
        .prop_map(
            |(group_id, member_count, online_count, online_user_ids)| pb::GroupPresence {
                group_id,
                member_count,
                online_count,
                online_user_ids,
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------
// receipt.proto
// ---------------------------------------------------------------------------------

fn receipt() -> BoxedStrategy<pb::Receipt> {
    (text(), text(), num(), num())
        .prop_map(|(conv_id, user_id, read_seq, delivered_seq)| pb::Receipt {
            conv_id,
            user_id,
            read_seq,
            delivered_seq,
        })
        .boxed()
}

fn receipts_request() -> BoxedStrategy<pb::ReceiptsRequest> {
    (text(), vec(num(), 0..6))
        .prop_map(|(conv_id, seqs)| pb::ReceiptsRequest { conv_id, seqs })
        .boxed()
}

fn receipt_count() -> BoxedStrategy<pb::ReceiptCount> {
    (num(), num32(), num32(), num32())
        .prop_map(|(seq, read, delivered, recipients)| pb::ReceiptCount {
            seq,
            read,
            delivered,
            recipients,
        })
        .boxed()
}

fn receipt_counts() -> BoxedStrategy<pb::ReceiptCounts> {
    (text(), vec(receipt_count(), 0..5))
        .prop_map(|(conv_id, counts)| pb::ReceiptCounts { conv_id, counts })
        .boxed()
}

fn readers_request() -> BoxedStrategy<pb::ReadersRequest> {
    (text(), num(), text(), num32())
        .prop_map(|(conv_id, seq, after_user_id, limit)| pb::ReadersRequest {
            conv_id,
            seq,
            after_user_id,
            limit,
        })
        .boxed()
}

fn readers() -> BoxedStrategy<pb::Readers> {
    (text(), num(), strings(), text())
        .prop_map(|(conv_id, seq, user_ids, next_after_user_id)| pb::Readers {
            conv_id,
            seq,
            user_ids,
            next_after_user_id,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------
// call.proto
// ---------------------------------------------------------------------------------

fn call_media() -> BoxedStrategy<i32> {
    enum_value(|v| pb::CallMedia::try_from(v).is_ok())
}

fn call_action() -> BoxedStrategy<i32> {
    enum_value(|v| pb::CallAction::try_from(v).is_ok())
}

fn call_end_reason() -> BoxedStrategy<i32> {
    enum_value(|v| pb::CallEndReason::try_from(v).is_ok())
}

fn ice_server() -> BoxedStrategy<pb::IceServer> {
    (strings(), text(), text())
        .prop_map(|(urls, username, credential)| pb::IceServer {
            urls,
            username,
            credential,
        })
        .boxed()
}

fn ice_servers() -> BoxedStrategy<Vec<pb::IceServer>> {
    vec(ice_server(), 0..4).boxed()
}

fn call_request() -> BoxedStrategy<pb::CallRequest> {
    (text(), call_action(), text(), call_media(), text(), text())
        .prop_map(
            |(call_id, action, to, media, sdp, candidate)| pb::CallRequest {
                call_id,
                action,
                to,
                media,
                sdp,
                candidate,
            },
        )
        .boxed()
}

fn call_ok() -> BoxedStrategy<pb::CallOk> {
    (text(), ice_servers(), call_end_reason())
        .prop_map(|(call_id, ice_servers, ended)| pb::CallOk {
            call_id,
            ice_servers,
            ended,
        })
        .boxed()
}

fn call_event() -> BoxedStrategy<pb::CallEvent> {
    (
        (text(), call_action(), text(), text(), call_media()),
        (text(), text(), call_end_reason(), num()),
        (ice_servers(), text()),
    )
        .prop_map(
            |(
                (call_id, action, from, from_device, media),
                (sdp, candidate, reason, duration_ms),
                (ice_servers, peer),
            )| pb::CallEvent {
                call_id,
                action,
                from,
                from_device,
                media,
                sdp,
                candidate,
                reason,
                duration_ms,
                ice_servers,
                peer,
            },
        )
        .boxed()
}

fn call_summary() -> BoxedStrategy<pb::CallSummary> {
    (
        text(),
        call_media(),
        text(),
        text(),
        call_end_reason(),
        num(),
    )
        .prop_map(
            |(call_id, media, caller, callee, reason, duration_ms)| pb::CallSummary {
                call_id,
                media,
                caller,
                callee,
                reason,
                duration_ms,
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------
// contact.proto
// ---------------------------------------------------------------------------------

fn contact_request_info() -> BoxedStrategy<pb::ContactRequestInfo> {
    (text(), text(), text(), num(), text(), text())
        .prop_map(
            |(from_user_id, to_user_id, message, requested_at_ms, username, nickname)| {
                pb::ContactRequestInfo {
                    from_user_id,
                    to_user_id,
                    message,
                    requested_at_ms,
                    username,
                    nickname,
                }
            },
        )
        .boxed()
}

fn friend() -> BoxedStrategy<pb::Friend> {
    (
        text(),
        text(),
        text(),
        num(),
        prop::option::of(presence()),
        any::<bool>(),
    )
        .prop_map(
            |(user_id, username, nickname, since_ms, presence, blocked)| pb::Friend {
                user_id,
                username,
                nickname,
                since_ms,
                presence,
                blocked,
            },
        )
        .boxed()
}

fn blocked_user() -> BoxedStrategy<pb::BlockedUser> {
    (text(), text(), text(), num())
        .prop_map(
            |(user_id, username, nickname, blocked_at_ms)| pb::BlockedUser {
                user_id,
                username,
                nickname,
                blocked_at_ms,
            },
        )
        .boxed()
}

fn contact_settings() -> BoxedStrategy<pb::ContactSettings> {
    any::<bool>()
        .prop_map(|friends_only_dm| pb::ContactSettings { friends_only_dm })
        .boxed()
}

fn send_contact_request() -> BoxedStrategy<pb::SendContactRequest> {
    (text(), text())
        .prop_map(|(user_id, message)| pb::SendContactRequest { user_id, message })
        .boxed()
}

fn decide_contact_request() -> BoxedStrategy<pb::DecideContactRequest> {
    (text(), any::<bool>())
        .prop_map(|(user_id, accept)| pb::DecideContactRequest { user_id, accept })
        .boxed()
}

fn contact_request() -> BoxedStrategy<pb::ContactRequest> {
    use contact_request::Op;
    prop_oneof![
        1 => Just(None),
        2 => send_contact_request().prop_map(|o| Some(Op::SendRequest(o))),
        1 => Just(Some(Op::ListRequests(pb::ListContactRequests {}))),
        2 => decide_contact_request().prop_map(|o| Some(Op::Decide(o))),
        1 => text().prop_map(|user_id| Some(Op::Cancel(pb::CancelContactRequest { user_id }))),
        1 => text().prop_map(|user_id| Some(Op::DeleteFriend(pb::DeleteFriend { user_id }))),
        1 => Just(Some(Op::ListFriends(pb::ListFriends {}))),
        1 => text().prop_map(|user_id| Some(Op::Block(pb::BlockUser { user_id }))),
        1 => text().prop_map(|user_id| Some(Op::Unblock(pb::UnblockUser { user_id }))),
        1 => Just(Some(Op::ListBlocked(pb::ListBlocked {}))),
        1 => Just(Some(Op::GetSettings(pb::GetContactSettings {}))),
        3 => prop::option::of(contact_settings())
            .prop_map(|settings| Some(Op::SetSettings(pb::SetContactSettings { settings }))),
    ]
    .prop_map(|op| pb::ContactRequest { op })
    .boxed()
}

fn contact_request_lists() -> BoxedStrategy<pb::ContactRequestLists> {
    (
        vec(contact_request_info(), 0..4),
        vec(contact_request_info(), 0..4),
    )
        .prop_map(|(incoming, outgoing)| pb::ContactRequestLists { incoming, outgoing })
        .boxed()
}

fn contact_response() -> BoxedStrategy<pb::ContactResponse> {
    use contact_response::Result;
    prop_oneof![
        1 => Just(None),
        2 => any::<bool>()
            .prop_map(|now_friends| Some(Result::Done(pb::ContactDone { now_friends }))),
        3 => contact_request_lists().prop_map(|r| Some(Result::Requests(r))),
        3 => vec(friend(), 0..4)
            .prop_map(|friends| Some(Result::Friends(pb::FriendList { friends }))),
        2 => vec(blocked_user(), 0..4)
            .prop_map(|blocked| Some(Result::Blocked(pb::BlockedList { blocked }))),
        2 => contact_settings().prop_map(|r| Some(Result::Settings(r))),
    ]
    .prop_map(|result| pb::ContactResponse { result })
    .boxed()
}

fn contact_event() -> BoxedStrategy<pb::ContactEvent> {
    (
        enum_value(|v| pb::ContactEventKind::try_from(v).is_ok()),
        text(),
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(kind, user_id, message, username, nickname)| pb::ContactEvent {
                kind,
                user_id,
                message,
                username,
                nickname,
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------
// account.proto
// ---------------------------------------------------------------------------------

fn device_info() -> BoxedStrategy<pb::DeviceInfo> {
    (
        (text(), text(), num(), num()),
        (any::<bool>(), any::<bool>(), text()),
    )
        .prop_map(
            |(
                (device_id, client_version, first_seen_ms, last_seen_ms),
                (online, current, transport),
            )| pb::DeviceInfo {
                device_id,
                client_version,
                first_seen_ms,
                last_seen_ms,
                online,
                current,
                transport,
            },
        )
        .boxed()
}

fn account_request() -> BoxedStrategy<pb::AccountRequest> {
    use account_request::Op;
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Op::ListDevices(pb::ListDevices {}))),
        2 => text().prop_map(|device_id| Some(Op::LogoutDevice(pb::LogoutDevice { device_id }))),
        2 => any::<bool>().prop_map(|keep_current| {
            Some(Op::LogoutEverywhere(pb::LogoutEverywhere { keep_current }))
        }),
    ]
    .prop_map(|op| pb::AccountRequest { op })
    .boxed()
}

fn account_response() -> BoxedStrategy<pb::AccountResponse> {
    use account_response::Result;
    prop_oneof![
        1 => Just(None),
        3 => vec(device_info(), 0..4)
            .prop_map(|devices| Some(Result::Devices(pb::DeviceList { devices }))),
        2 => num32().prop_map(|sessions| Some(Result::LoggedOut(pb::LoggedOut { sessions }))),
    ]
    .prop_map(|result| pb::AccountResponse { result })
    .boxed()
}

// ---------------------------------------------------------------------------------
// admin.proto
// ---------------------------------------------------------------------------------

fn admin_user() -> BoxedStrategy<pb::AdminUser> {
    (
        (text(), text(), text(), text()),
        (any::<bool>(), num(), any::<bool>()),
        (num32(), num()),
    )
        .prop_map(
            |(
                (user_id, username, nickname, role),
                (disabled, created_at_ms, online),
                (sessions, last_seen_ms),
            )| pb::AdminUser {
                user_id,
                username,
                nickname,
                role,
                disabled,
                created_at_ms,
                online,
                sessions,
                last_seen_ms,
            },
        )
        .boxed()
}

fn list_users() -> BoxedStrategy<pb::ListUsers> {
    (text(), text(), num32())
        .prop_map(|(query, after_user_id, limit)| pb::ListUsers {
            query,
            after_user_id,
            limit,
        })
        .boxed()
}

fn set_user_disabled() -> BoxedStrategy<pb::SetUserDisabled> {
    (text(), any::<bool>())
        .prop_map(|(user_id, disabled)| pb::SetUserDisabled { user_id, disabled })
        .boxed()
}

fn reset_password() -> BoxedStrategy<pb::ResetPassword> {
    (text(), text())
        .prop_map(|(user_id, new_password)| pb::ResetPassword {
            user_id,
            new_password,
        })
        .boxed()
}

fn set_user_role() -> BoxedStrategy<pb::SetUserRole> {
    (text(), text())
        .prop_map(|(user_id, role)| pb::SetUserRole { user_id, role })
        .boxed()
}

fn list_all_groups() -> BoxedStrategy<pb::ListAllGroups> {
    (text(), text(), num32())
        .prop_map(|(query, after_group_id, limit)| pb::ListAllGroups {
            query,
            after_group_id,
            limit,
        })
        .boxed()
}

fn admin_request() -> BoxedStrategy<pb::AdminRequest> {
    use admin_request::Op;
    prop_oneof![
        1 => Just(None),
        2 => list_users().prop_map(|o| Some(Op::ListUsers(o))),
        1 => text().prop_map(|user_id| Some(Op::GetUser(pb::GetUser { user_id }))),
        2 => set_user_disabled().prop_map(|o| Some(Op::SetDisabled(o))),
        2 => reset_password().prop_map(|o| Some(Op::ResetPassword(o))),
        2 => set_user_role().prop_map(|o| Some(Op::SetRole(o))),
        2 => list_all_groups().prop_map(|o| Some(Op::ListGroups(o))),
        1 => text().prop_map(|group_id| {
            Some(Op::DissolveGroup(pb::AdminDissolveGroup { group_id }))
        }),
        1 => Just(Some(Op::Stats(pb::GetServerStats {}))),
    ]
    .prop_map(|op| pb::AdminRequest { op })
    .boxed()
}

fn user_page() -> BoxedStrategy<pb::UserPage> {
    (vec(admin_user(), 0..4), text())
        .prop_map(|(users, next_after_user_id)| pb::UserPage {
            users,
            next_after_user_id,
        })
        .boxed()
}

fn user_detail() -> BoxedStrategy<pb::UserDetail> {
    (
        prop::option::of(admin_user()),
        vec(device_info(), 0..4),
        num32(),
    )
        .prop_map(|(user, devices, groups)| pb::UserDetail {
            user,
            devices,
            groups,
        })
        .boxed()
}

fn admin_group_page() -> BoxedStrategy<pb::AdminGroupPage> {
    (vec(group_info(), 0..4), text())
        .prop_map(|(groups, next_after_group_id)| pb::AdminGroupPage {
            groups,
            next_after_group_id,
        })
        .boxed()
}

fn server_stats() -> BoxedStrategy<pb::ServerStats> {
    (
        (num(), num(), num()),
        (float(), num(), num()),
        (num(), num(), num()),
    )
        .prop_map(
            |(
                (quic_sessions, websocket_sessions, users_online),
                (messages_per_second, messages_since_start, store_bytes),
                (uptime_ms, active_calls, slow_consumer_closes),
            )| pb::ServerStats {
                quic_sessions,
                websocket_sessions,
                users_online,
                messages_per_second,
                messages_since_start,
                store_bytes,
                uptime_ms,
                active_calls,
                slow_consumer_closes,
            },
        )
        .boxed()
}

fn admin_response() -> BoxedStrategy<pb::AdminResponse> {
    use admin_response::Result;
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Result::Done(pb::AdminDone {}))),
        3 => user_page().prop_map(|r| Some(Result::Users(r))),
        3 => user_detail().prop_map(|r| Some(Result::User(r))),
        3 => admin_group_page().prop_map(|r| Some(Result::Groups(r))),
        2 => server_stats().prop_map(|r| Some(Result::Stats(r))),
    ]
    .prop_map(|result| pb::AdminResponse { result })
    .boxed()
}

// ---------------------------------------------------------------------------------
// file.proto
// ---------------------------------------------------------------------------------

fn file_upload() -> BoxedStrategy<pb::FileUpload> {
    (text(), num(), text())
        .prop_map(|(name, declared_size, mime)| pb::FileUpload {
            name,
            declared_size,
            mime,
        })
        .boxed()
}

fn file_download() -> BoxedStrategy<pb::FileDownload> {
    (text(), any::<bool>(), num(), num())
        .prop_map(|(file_id, thumbnail, offset, length)| pb::FileDownload {
            file_id,
            thumbnail,
            offset,
            length,
        })
        .boxed()
}

/// The frame a client writes first on a transfer stream of its own.
fn stream_request() -> BoxedStrategy<pb::StreamRequest> {
    use stream_request::Request;
    prop_oneof![
        1 => Just(None),
        3 => file_upload().prop_map(|r| Some(Request::Upload(r))),
        3 => file_download().prop_map(|r| Some(Request::Download(r))),
    ]
    .prop_map(|request| pb::StreamRequest { request })
    .boxed()
}

fn file_info() -> BoxedStrategy<pb::FileInfo> {
    (
        (text(), text(), num(), text(), text(), text()),
        (num32(), num32(), text(), num()),
    )
        .prop_map(
            |(
                (file_id, name, size, mime, url, thumbnail_url),
                (width, height, sha256, uploaded_at_ms),
            )| pb::FileInfo {
                file_id,
                name,
                size,
                mime,
                url,
                thumbnail_url,
                width,
                height,
                sha256,
                uploaded_at_ms,
            },
        )
        .boxed()
}

fn file_header() -> BoxedStrategy<pb::FileHeader> {
    (prop::option::of(file_info()), num(), num(), num())
        .prop_map(|(file, offset, length, total_size)| pb::FileHeader {
            file,
            offset,
            length,
            total_size,
        })
        .boxed()
}

/// The frame the broker writes first on a transfer stream.
fn stream_response() -> BoxedStrategy<pb::StreamResponse> {
    use stream_response::Response;
    prop_oneof![
        1 => Just(None),
        2 => error_frame().prop_map(|r| Some(Response::Error(r))),
        3 => file_info().prop_map(|r| Some(Response::Uploaded(r))),
        3 => file_header().prop_map(|r| Some(Response::Download(r))),
    ]
    .prop_map(|response| pb::StreamResponse { response })
    .boxed()
}

fn file_info_request() -> BoxedStrategy<pb::FileInfoRequest> {
    text()
        .prop_map(|file_id| pb::FileInfoRequest { file_id })
        .boxed()
}

// ---------------------------------------------------------------------------------
// frame.proto
// ---------------------------------------------------------------------------------

fn client_body() -> BoxedStrategy<Option<client_frame::Body>> {
    use client_frame::Body;
    prop_oneof![
        1 => Just(None),
        4 => hello_frame().prop_map(|b| Some(Body::Hello(b))),
        4 => send_request().prop_map(|b| Some(Body::Send(b))),
        2 => refresh_request().prop_map(|b| Some(Body::Refresh(b))),
        2 => history_request().prop_map(|b| Some(Body::History(b))),
        2 => conversations_request().prop_map(|b| Some(Body::Conversations(b))),
        2 => report_cursors().prop_map(|b| Some(Body::Report(b))),
        2 => ping().prop_map(|b| Some(Body::Ping(b))),
        2 => lookup_user().prop_map(|b| Some(Body::LookupUser(b))),
        2 => typing().prop_map(|b| Some(Body::Typing(b))),
        8 => group_request().prop_map(|b| Some(Body::Group(b))),
        2 => presence_request().prop_map(|b| Some(Body::Presence(b))),
        2 => group_presence_request().prop_map(|b| Some(Body::GroupPresence(b))),
        2 => receipts_request().prop_map(|b| Some(Body::Receipts(b))),
        2 => readers_request().prop_map(|b| Some(Body::Readers(b))),
        2 => call_request().prop_map(|b| Some(Body::Call(b))),
        2 => recall_request().prop_map(|b| Some(Body::Recall(b))),
        3 => edit_request().prop_map(|b| Some(Body::Edit(b))),
        8 => contact_request().prop_map(|b| Some(Body::Contact(b))),
        4 => account_request().prop_map(|b| Some(Body::Account(b))),
        6 => admin_request().prop_map(|b| Some(Body::Admin(b))),
        2 => file_info_request().prop_map(|b| Some(Body::FileInfo(b))),
    ]
    .boxed()
}

fn client_frame() -> BoxedStrategy<ClientFrame> {
    (num(), client_body())
        .prop_map(|(req_id, body)| ClientFrame { req_id, body })
        .boxed()
}

fn server_body() -> BoxedStrategy<Option<server_frame::Body>> {
    use server_frame::Body;
    prop_oneof![
        1 => Just(None),
        2 => error_frame().prop_map(|b| Some(Body::Error(b))),
        3 => hello_ok().prop_map(|b| Some(Body::HelloOk(b))),
        2 => send_ack().prop_map(|b| Some(Body::Ack(b))),
        2 => tokens().prop_map(|b| Some(Body::Tokens(b))),
        3 => history_page().prop_map(|b| Some(Body::History(b))),
        3 => conversation_list().prop_map(|b| Some(Body::Conversations(b))),
        1 => Just(Some(Body::ReportOk(pb::ReportOk {}))),
        2 => pong().prop_map(|b| Some(Body::Pong(b))),
        2 => user_info().prop_map(|b| Some(Body::User(b))),
        2 => typing_notice().prop_map(|b| Some(Body::Typing(b))),
        5 => deliver().prop_map(|b| Some(Body::Deliver(b))),
        2 => sync_done().prop_map(|b| Some(Body::SyncDone(b))),
        2 => resume_from().prop_map(|b| Some(Body::ResumeFrom(b))),
        8 => group_response().prop_map(|b| Some(Body::Group(b))),
        2 => presence().prop_map(|b| Some(Body::Presence(b))),
        3 => presence_list().prop_map(|b| Some(Body::Presences(b))),
        2 => group_presence().prop_map(|b| Some(Body::GroupPresence(b))),
        2 => receipt().prop_map(|b| Some(Body::Receipt(b))),
        3 => receipt_counts().prop_map(|b| Some(Body::ReceiptCounts(b))),
        2 => readers().prop_map(|b| Some(Body::Readers(b))),
        3 => call_event().prop_map(|b| Some(Body::CallEvent(b))),
        3 => call_ok().prop_map(|b| Some(Body::CallOk(b))),
        8 => contact_response().prop_map(|b| Some(Body::Contact(b))),
        2 => contact_event().prop_map(|b| Some(Body::ContactEvent(b))),
        4 => account_response().prop_map(|b| Some(Body::Account(b))),
        8 => admin_response().prop_map(|b| Some(Body::Admin(b))),
        3 => file_info().prop_map(|b| Some(Body::FileInfo(b))),
    ]
    .boxed()
}

fn server_frame() -> BoxedStrategy<ServerFrame> {
    (num(), server_body())
        .prop_map(|(req_id, body)| ServerFrame { req_id, body })
        .boxed()
}

// ---------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------

/// Encodes `frame`, appends `trailer`, decodes: the same value comes back and exactly
/// `trailer` is left in the buffer.
fn check_round_trip<M>(frame: &M, trailer: &[u8]) -> Result<(), TestCaseError>
where
    M: prost::Message + Default + PartialEq + Debug,
{
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf);
    let body_len = frame.encoded_len();
    prop_assert_eq!(buf.len(), prost::length_delimiter_len(body_len) + body_len);
    prop_assert_eq!(&buf[..], &encode_frame_bytes(frame)[..]);

    buf.extend_from_slice(trailer);
    let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    let decoded = decoder.decode::<M>(&mut buf)?;
    prop_assert_eq!(decoded.as_ref(), Some(frame));
    prop_assert_eq!(&buf[..], trailer);
    Ok(())
}

/// Encodes `frames` back to back into one buffer and decodes them all in order.
fn check_concatenated<M>(frames: &[M]) -> Result<(), TestCaseError>
where
    M: prost::Message + Default + PartialEq + Debug,
{
    let mut buf = BytesMut::new();
    for frame in frames {
        encode_frame(frame, &mut buf);
    }
    let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    for (i, expected) in frames.iter().enumerate() {
        let decoded = decoder.decode::<M>(&mut buf)?;
        prop_assert_eq!(decoded.as_ref(), Some(expected), "frame {}", i);
    }
    prop_assert_eq!(decoder.decode::<M>(&mut buf)?, None);
    prop_assert!(buf.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_frame_round_trips(frame in client_frame(), trailer in vec(any::<u8>(), 0..8)) {
        check_round_trip(&frame, &trailer)?;
    }

    #[test]
    fn server_frame_round_trips(frame in server_frame(), trailer in vec(any::<u8>(), 0..8)) {
        check_round_trip(&frame, &trailer)?;
    }

    #[test]
    fn concatenated_client_frames_decode_in_order(frames in vec(client_frame(), 0..10)) {
        check_concatenated(&frames)?;
    }

    #[test]
    fn concatenated_server_frames_decode_in_order(frames in vec(server_frame(), 0..10)) {
        check_concatenated(&frames)?;
    }

    // A transfer stream carries one StreamRequest or StreamResponse frame and then the
    // raw bytes of the file, which the trailer stands for.
    #[test]
    fn stream_request_round_trips(frame in stream_request(), bytes in vec(any::<u8>(), 0..64)) {
        check_round_trip(&frame, &bytes)?;
    }

    #[test]
    fn stream_response_round_trips(frame in stream_response(), bytes in vec(any::<u8>(), 0..64)) {
        check_round_trip(&frame, &bytes)?;
    }

    #[test]
    fn concatenated_stream_requests_decode_in_order(frames in vec(stream_request(), 0..10)) {
        check_concatenated(&frames)?;
    }

    #[test]
    fn concatenated_stream_responses_decode_in_order(frames in vec(stream_response(), 0..10)) {
        check_concatenated(&frames)?;
    }
}

// ---------------------------------------------------------------------------------
// The strategies reach every variant
// ---------------------------------------------------------------------------------

/// Names of the variants a client frame exercises, outermost first.
fn client_variants(frame: &ClientFrame) -> Vec<&'static str> {
    use client_frame::Body;
    match &frame.body {
        None => vec!["client:none"],
        Some(Body::Hello(h)) => {
            let auth = match &h.auth {
                None => "hello:no-auth",
                Some(hello::Auth::AccessToken(_)) => "hello:access_token",
                Some(hello::Auth::Password(_)) => "hello:password",
                Some(hello::Auth::Register(_)) => "hello:register",
                Some(hello::Auth::RefreshToken(_)) => "hello:refresh_token",
            };
            let cursors = if h.cursors.is_empty() {
                "hello:no-cursors"
            } else {
                "hello:cursors"
            };
            vec!["client:hello", auth, cursors]
        }
        Some(Body::Send(s)) => {
            let content = match &s.content {
                None => "send:no-content",
                Some(send_request::Content::Text(_)) => "send:text",
                Some(send_request::Content::File(_)) => "send:file",
                Some(send_request::Content::Custom(_)) => "send:custom",
            };
            vec!["client:send", content]
        }
        Some(Body::Refresh(_)) => vec!["client:refresh"],
        Some(Body::History(_)) => vec!["client:history"],
        Some(Body::Conversations(_)) => vec!["client:conversations"],
        Some(Body::Report(_)) => vec!["client:report"],
        Some(Body::Ping(_)) => vec!["client:ping"],
        Some(Body::LookupUser(_)) => vec!["client:lookup_user"],
        Some(Body::Typing(_)) => vec!["client:typing"],
        Some(Body::Group(g)) => {
            let mut names = vec!["client:group"];
            names.extend(group_request_variants(g));
            names
        }
        Some(Body::Presence(_)) => vec!["client:presence"],
        Some(Body::GroupPresence(_)) => vec!["client:group_presence"],
        Some(Body::Receipts(_)) => vec!["client:receipts"],
        Some(Body::Readers(_)) => vec!["client:readers"],
        Some(Body::Call(_)) => vec!["client:call"],
        Some(Body::Recall(_)) => vec!["client:recall"],
        Some(Body::Edit(e)) => {
            let text = if e.text.is_some() {
                "edit:text"
            } else {
                "edit:no-text"
            };
            vec!["client:edit", text]
        }
        Some(Body::Contact(c)) => {
            let mut names = vec!["client:contact"];
            names.extend(contact_request_variants(c));
            names
        }
        Some(Body::Account(a)) => {
            let mut names = vec!["client:account"];
            names.extend(account_request_variants(a));
            names
        }
        Some(Body::Admin(a)) => {
            let mut names = vec!["client:admin"];
            names.extend(admin_request_variants(a));
            names
        }
        Some(Body::FileInfo(_)) => vec!["client:file_info"],
    }
}

/// Names of the group operation a request carries and, for `UpdateGroup`, which of its
/// optional fields are set.
fn group_request_variants(request: &pb::GroupRequest) -> Vec<&'static str> {
    use group_request::Op;
    let op = match &request.op {
        None => "group:none",
        Some(Op::Create(_)) => "group:create",
        Some(Op::ListMine(_)) => "group:list_mine",
        Some(Op::Get(_)) => "group:get",
        Some(Op::Members(_)) => "group:members",
        Some(Op::Join(_)) => "group:join",
        Some(Op::Leave(_)) => "group:leave",
        Some(Op::Invite(_)) => "group:invite",
        Some(Op::Kick(_)) => "group:kick",
        Some(Op::Dissolve(_)) => "group:dissolve",
        Some(Op::Transfer(_)) => "group:transfer",
        Some(Op::Update(u)) => {
            let name = if u.name.is_some() {
                "update:name"
            } else {
                "update:no-name"
            };
            let description = if u.description.is_some() {
                "update:description"
            } else {
                "update:no-description"
            };
            let avatar_url = if u.avatar_url.is_some() {
                "update:avatar_url"
            } else {
                "update:no-avatar_url"
            };
            return vec!["group:update", name, description, avatar_url];
        }
        Some(Op::SetRole(_)) => "group:set_role",
        Some(Op::Mute(_)) => "group:mute",
        Some(Op::MuteAll(_)) => "group:mute_all",
        Some(Op::JoinRequests(_)) => "group:join_requests",
        Some(Op::Decide(_)) => "group:decide",
    };
    vec![op]
}

/// Names of the result a group response carries, and what it contains.
fn group_response_variants(response: &pb::GroupResponse) -> Vec<&'static str> {
    use group_response::Result;
    match &response.result {
        None => vec!["group_result:none"],
        Some(Result::Changed(c)) => {
            let group = if c.group.is_some() {
                "changed:group"
            } else {
                "changed:no-group"
            };
            vec!["group_result:changed", group]
        }
        Some(Result::Info(_)) => vec!["group_result:info"],
        Some(Result::List(l)) => {
            let mut names = vec!["group_result:list"];
            if !l.groups.is_empty() {
                names.push("list:groups");
            }
            names
        }
        Some(Result::Members(page)) => {
            let mut names = vec!["group_result:members"];
            if !page.members.is_empty() {
                names.push("members:members");
            }
            names
        }
        Some(Result::JoinRequests(list)) => {
            let mut names = vec!["group_result:join_requests"];
            if !list.requests.is_empty() {
                names.push("join_requests:requests");
            }
            names
        }
    }
}

/// Names of the contact operation a request carries and, for `SetContactSettings`,
/// whether its settings are set.
fn contact_request_variants(request: &pb::ContactRequest) -> Vec<&'static str> {
    use contact_request::Op;
    let op = match &request.op {
        None => "contact:none",
        Some(Op::SendRequest(_)) => "contact:send_request",
        Some(Op::ListRequests(_)) => "contact:list_requests",
        Some(Op::Decide(_)) => "contact:decide",
        Some(Op::Cancel(_)) => "contact:cancel",
        Some(Op::DeleteFriend(_)) => "contact:delete_friend",
        Some(Op::ListFriends(_)) => "contact:list_friends",
        Some(Op::Block(_)) => "contact:block",
        Some(Op::Unblock(_)) => "contact:unblock",
        Some(Op::ListBlocked(_)) => "contact:list_blocked",
        Some(Op::GetSettings(_)) => "contact:get_settings",
        Some(Op::SetSettings(s)) => {
            let settings = if s.settings.is_some() {
                "set_settings:settings"
            } else {
                "set_settings:no-settings"
            };
            return vec!["contact:set_settings", settings];
        }
    };
    vec![op]
}

/// Names of the result a contact response carries, and what it contains.
fn contact_response_variants(response: &pb::ContactResponse) -> Vec<&'static str> {
    use contact_response::Result;
    match &response.result {
        None => vec!["contact_result:none"],
        Some(Result::Done(_)) => vec!["contact_result:done"],
        Some(Result::Requests(lists)) => {
            let mut names = vec!["contact_result:requests"];
            if !lists.incoming.is_empty() {
                names.push("requests:incoming");
            }
            if !lists.outgoing.is_empty() {
                names.push("requests:outgoing");
            }
            names
        }
        Some(Result::Friends(list)) => {
            let mut names = vec!["contact_result:friends"];
            for friend in &list.friends {
                names.push(if friend.presence.is_some() {
                    "friend:presence"
                } else {
                    "friend:no-presence"
                });
            }
            names
        }
        Some(Result::Blocked(list)) => {
            let mut names = vec!["contact_result:blocked"];
            if !list.blocked.is_empty() {
                names.push("blocked:blocked");
            }
            names
        }
        Some(Result::Settings(_)) => vec!["contact_result:settings"],
    }
}

/// Names of the account operation a request carries.
fn account_request_variants(request: &pb::AccountRequest) -> Vec<&'static str> {
    use account_request::Op;
    let op = match &request.op {
        None => "account:none",
        Some(Op::ListDevices(_)) => "account:list_devices",
        Some(Op::LogoutDevice(_)) => "account:logout_device",
        Some(Op::LogoutEverywhere(_)) => "account:logout_everywhere",
    };
    vec![op]
}

/// Names of the result an account response carries, and what it contains.
fn account_response_variants(response: &pb::AccountResponse) -> Vec<&'static str> {
    use account_response::Result;
    match &response.result {
        None => vec!["account_result:none"],
        Some(Result::Devices(list)) => {
            let mut names = vec!["account_result:devices"];
            if !list.devices.is_empty() {
                names.push("devices:devices");
            }
            names
        }
        Some(Result::LoggedOut(_)) => vec!["account_result:logged_out"],
    }
}

/// Names of the admin operation a request carries.
fn admin_request_variants(request: &pb::AdminRequest) -> Vec<&'static str> {
    use admin_request::Op;
    let op = match &request.op {
        None => "admin:none",
        Some(Op::ListUsers(_)) => "admin:list_users",
        Some(Op::GetUser(_)) => "admin:get_user",
        Some(Op::SetDisabled(_)) => "admin:set_disabled",
        Some(Op::ResetPassword(_)) => "admin:reset_password",
        Some(Op::SetRole(_)) => "admin:set_role",
        Some(Op::ListGroups(_)) => "admin:list_groups",
        Some(Op::DissolveGroup(_)) => "admin:dissolve_group",
        Some(Op::Stats(_)) => "admin:stats",
    };
    vec![op]
}

/// Names of the result an admin response carries, and what it contains.
fn admin_response_variants(response: &pb::AdminResponse) -> Vec<&'static str> {
    use admin_response::Result;
    match &response.result {
        None => vec!["admin_result:none"],
        Some(Result::Done(_)) => vec!["admin_result:done"],
        Some(Result::Users(page)) => {
            let mut names = vec!["admin_result:users"];
            if !page.users.is_empty() {
                names.push("users:users");
            }
            names
        }
        Some(Result::User(detail)) => {
            let user = if detail.user.is_some() {
                "user:user"
            } else {
                "user:no-user"
            };
            let mut names = vec!["admin_result:user", user];
            if !detail.devices.is_empty() {
                names.push("user:devices");
            }
            names
        }
        Some(Result::Groups(page)) => {
            let mut names = vec!["admin_result:groups"];
            if !page.groups.is_empty() {
                names.push("groups:groups");
            }
            names
        }
        Some(Result::Stats(_)) => vec!["admin_result:stats"],
    }
}

/// Names of a message's content variant and, for system and amendment content, whether
/// its optional nested message is set.
fn message_variants(message: &pb::Message) -> Vec<&'static str> {
    match &message.content {
        None => vec!["message:no-content"],
        Some(message::Content::Text(_)) => vec!["message:text"],
        Some(message::Content::File(_)) => vec!["message:file"],
        Some(message::Content::Custom(_)) => vec!["message:custom"],
        Some(message::Content::System(s)) => {
            let call = if s.call.is_some() {
                "system:call"
            } else {
                "system:no-call"
            };
            vec!["message:system", call]
        }
        Some(message::Content::Amendment(a)) => {
            let text = if a.text.is_some() {
                "amendment:text"
            } else {
                "amendment:no-text"
            };
            vec!["message:amendment", text]
        }
    }
}

/// Names of the variants a server frame exercises, outermost first.
fn server_variants(frame: &ServerFrame) -> Vec<&'static str> {
    use server_frame::Body;
    match &frame.body {
        None => vec!["server:none"],
        Some(Body::Error(_)) => vec!["server:error"],
        Some(Body::HelloOk(ok)) => {
            let tokens = if ok.tokens.is_some() {
                "hello_ok:tokens"
            } else {
                "hello_ok:no-tokens"
            };
            vec!["server:hello_ok", tokens]
        }
        Some(Body::Ack(_)) => vec!["server:ack"],
        Some(Body::Tokens(_)) => vec!["server:tokens"],
        Some(Body::History(page)) => {
            let mut names = vec!["server:history"];
            if !page.messages.is_empty() {
                names.push("history:messages");
            }
            names
        }
        Some(Body::Conversations(_)) => vec!["server:conversations"],
        Some(Body::ReportOk(_)) => vec!["server:report_ok"],
        Some(Body::Pong(_)) => vec!["server:pong"],
        Some(Body::User(_)) => vec!["server:user"],
        Some(Body::Typing(_)) => vec!["server:typing"],
        Some(Body::Deliver(d)) => match &d.message {
            None => vec!["server:deliver", "deliver:empty"],
            Some(m) => {
                let mut names = vec!["server:deliver"];
                names.extend(message_variants(m));
                names
            }
        },
        Some(Body::SyncDone(_)) => vec!["server:sync_done"],
        Some(Body::ResumeFrom(_)) => vec!["server:resume_from"],
        Some(Body::Group(g)) => {
            let mut names = vec!["server:group"];
            names.extend(group_response_variants(g));
            names
        }
        Some(Body::Presence(_)) => vec!["server:presence"],
        Some(Body::Presences(list)) => {
            let mut names = vec!["server:presences"];
            if !list.presences.is_empty() {
                names.push("presences:presences");
            }
            names
        }
        Some(Body::GroupPresence(_)) => vec!["server:group_presence"],
        Some(Body::Receipt(_)) => vec!["server:receipt"],
        Some(Body::ReceiptCounts(counts)) => {
            let mut names = vec!["server:receipt_counts"];
            if !counts.counts.is_empty() {
                names.push("receipt_counts:counts");
            }
            names
        }
        Some(Body::Readers(_)) => vec!["server:readers"],
        Some(Body::CallEvent(event)) => {
            let mut names = vec!["server:call_event"];
            if !event.ice_servers.is_empty() {
                names.push("call_event:ice_servers");
            }
            names
        }
        Some(Body::CallOk(ok)) => {
            let mut names = vec!["server:call_ok"];
            if !ok.ice_servers.is_empty() {
                names.push("call_ok:ice_servers");
            }
            names
        }
        Some(Body::Contact(c)) => {
            let mut names = vec!["server:contact"];
            names.extend(contact_response_variants(c));
            names
        }
        Some(Body::ContactEvent(_)) => vec!["server:contact_event"],
        Some(Body::Account(a)) => {
            let mut names = vec!["server:account"];
            names.extend(account_response_variants(a));
            names
        }
        Some(Body::Admin(a)) => {
            let mut names = vec!["server:admin"];
            names.extend(admin_response_variants(a));
            names
        }
        Some(Body::FileInfo(_)) => vec!["server:file_info"],
    }
}

/// Names of the request a transfer stream's first client frame carries.
fn stream_request_variants(frame: &pb::StreamRequest) -> Vec<&'static str> {
    use stream_request::Request;
    let request = match &frame.request {
        None => "stream_request:none",
        Some(Request::Upload(_)) => "stream_request:upload",
        Some(Request::Download(_)) => "stream_request:download",
    };
    vec![request]
}

/// Names of the response a transfer stream's first broker frame carries and, for a
/// download header, whether its file is set.
fn stream_response_variants(frame: &pb::StreamResponse) -> Vec<&'static str> {
    use stream_response::Response;
    match &frame.response {
        None => vec!["stream_response:none"],
        Some(Response::Error(_)) => vec!["stream_response:error"],
        Some(Response::Uploaded(_)) => vec!["stream_response:uploaded"],
        Some(Response::Download(header)) => {
            let file = if header.file.is_some() {
                "download:file"
            } else {
                "download:no-file"
            };
            vec!["stream_response:download", file]
        }
    }
}

/// Draws `samples` values from `strategy` with a fixed seed and collects the variant
/// names `names` reports for them.
fn seen_variants<S: Strategy>(
    strategy: S,
    samples: usize,
    names: impl Fn(&S::Value) -> Vec<&'static str>,
) -> std::collections::BTreeSet<&'static str> {
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..samples {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        seen.extend(names(&value));
    }
    seen
}

#[test]
fn client_strategy_reaches_every_variant() {
    let seen = seen_variants(client_frame(), 2000, client_variants);
    for expected in [
        "client:none",
        "client:hello",
        "hello:no-auth",
        "hello:access_token",
        "hello:password",
        "hello:register",
        "hello:refresh_token",
        "hello:no-cursors",
        "hello:cursors",
        "client:send",
        "send:no-content",
        "send:text",
        "send:file",
        "send:custom",
        "client:refresh",
        "client:history",
        "client:conversations",
        "client:report",
        "client:ping",
        "client:lookup_user",
        "client:typing",
        "client:group",
        "group:none",
        "group:create",
        "group:list_mine",
        "group:get",
        "group:members",
        "group:join",
        "group:leave",
        "group:invite",
        "group:kick",
        "group:dissolve",
        "group:transfer",
        "group:update",
        "update:name",
        "update:no-name",
        "update:description",
        "update:no-description",
        "update:avatar_url",
        "update:no-avatar_url",
        "group:set_role",
        "group:mute",
        "group:mute_all",
        "group:join_requests",
        "group:decide",
        "client:presence",
        "client:group_presence",
        "client:receipts",
        "client:readers",
        "client:call",
        "client:recall",
        "client:edit",
        "edit:text",
        "edit:no-text",
        "client:contact",
        "contact:none",
        "contact:send_request",
        "contact:list_requests",
        "contact:decide",
        "contact:cancel",
        "contact:delete_friend",
        "contact:list_friends",
        "contact:block",
        "contact:unblock",
        "contact:list_blocked",
        "contact:get_settings",
        "contact:set_settings",
        "set_settings:settings",
        "set_settings:no-settings",
        "client:account",
        "account:none",
        "account:list_devices",
        "account:logout_device",
        "account:logout_everywhere",
        "client:admin",
        "admin:none",
        "admin:list_users",
        "admin:get_user",
        "admin:set_disabled",
        "admin:reset_password",
        "admin:set_role",
        "admin:list_groups",
        "admin:dissolve_group",
        "admin:stats",
        "client:file_info",
    ] {
        assert!(
            seen.contains(expected),
            "never generated {expected}; saw {seen:?}"
        );
    }
}

#[test]
fn server_strategy_reaches_every_variant() {
    let seen = seen_variants(server_frame(), 2000, server_variants);
    for expected in [
        "server:none",
        "server:error",
        "server:hello_ok",
        "hello_ok:tokens",
        "hello_ok:no-tokens",
        "server:ack",
        "server:tokens",
        "server:history",
        "history:messages",
        "server:conversations",
        "server:report_ok",
        "server:pong",
        "server:user",
        "server:typing",
        "server:deliver",
        "deliver:empty",
        "message:no-content",
        "message:text",
        "message:file",
        "message:custom",
        "message:system",
        "system:call",
        "system:no-call",
        "message:amendment",
        "amendment:text",
        "amendment:no-text",
        "server:sync_done",
        "server:resume_from",
        "server:group",
        "group_result:none",
        "group_result:changed",
        "changed:group",
        "changed:no-group",
        "group_result:info",
        "group_result:list",
        "list:groups",
        "group_result:members",
        "members:members",
        "group_result:join_requests",
        "join_requests:requests",
        "server:presence",
        "server:presences",
        "presences:presences",
        "server:group_presence",
        "server:receipt",
        "server:receipt_counts",
        "receipt_counts:counts",
        "server:readers",
        "server:call_event",
        "call_event:ice_servers",
        "server:call_ok",
        "call_ok:ice_servers",
        "server:contact",
        "contact_result:none",
        "contact_result:done",
        "contact_result:requests",
        "requests:incoming",
        "requests:outgoing",
        "contact_result:friends",
        "friend:presence",
        "friend:no-presence",
        "contact_result:blocked",
        "blocked:blocked",
        "contact_result:settings",
        "server:contact_event",
        "server:account",
        "account_result:none",
        "account_result:devices",
        "devices:devices",
        "account_result:logged_out",
        "server:admin",
        "admin_result:none",
        "admin_result:done",
        "admin_result:users",
        "users:users",
        "admin_result:user",
        "user:user",
        "user:no-user",
        "user:devices",
        "admin_result:groups",
        "groups:groups",
        "admin_result:stats",
        "server:file_info",
    ] {
        assert!(
            seen.contains(expected),
            "never generated {expected}; saw {seen:?}"
        );
    }
}

#[test]
fn stream_request_strategy_reaches_every_variant() {
    let seen = seen_variants(stream_request(), 500, stream_request_variants);
    for expected in [
        "stream_request:none",
        "stream_request:upload",
        "stream_request:download",
    ] {
        assert!(
            seen.contains(expected),
            "never generated {expected}; saw {seen:?}"
        );
    }
}

#[test]
fn stream_response_strategy_reaches_every_variant() {
    let seen = seen_variants(stream_response(), 500, stream_response_variants);
    for expected in [
        "stream_response:none",
        "stream_response:error",
        "stream_response:uploaded",
        "stream_response:download",
        "download:file",
        "download:no-file",
    ] {
        assert!(
            seen.contains(expected),
            "never generated {expected}; saw {seen:?}"
        );
    }
}

/// One hand-built frame of each kind with every field set, so a failure here points at
/// the codec rather than at a strategy.
#[test]
fn hand_built_frames_round_trip() {
    let message = pb::Message {
        msg_id: "msg_0000000000010000002a".into(),
        conv_id: "single:user_a:user_b".into(),
        seq: u64::MAX,
        from: "user_a".into(),
        to: "user_b".into(),
        group_id: String::new(),
        kind: pb::MessageKind::Text as i32,
        content: Some(message::Content::Text(pb::TextContent {
            text: "héllo 你好 👋\u{0}".into(),
            mention_user_ids: vec!["user_b".into()],
            mention_all: true,
        })),
        client_msg_id: "c-1".into(),
        sent_at_ms: 1_700_000_000_000,
        edited_at_ms: 1,
        recalled: true,
        from_device: "phone".into(),
        recalled_by: "user_a".into(),
    };
    let client = ClientFrame {
        req_id: 7,
        body: Some(client_frame::Body::Hello(pb::Hello {
            auth: Some(hello::Auth::Register(pb::RegisterAuth {
                username: "älice".into(),
                password: "p@ss".into(),
                nickname: "Alice 🐇".into(),
            })),
            device_id: "laptop-1".into(),
            client_version: "0.1.0".into(),
            lanes: 4,
            cursors: vec![pb::Cursor {
                conv_id: "group:group_x".into(),
                seq: 42,
            }],
        })),
    };
    let server = ServerFrame {
        req_id: 0,
        body: Some(server_frame::Body::Deliver(pb::Deliver {
            message: Some(message),
        })),
    };
    check_round_trip(&client, b"").unwrap();
    check_round_trip(&server, &[0xff, 0x00]).unwrap();
    check_concatenated(&[server.clone(), ServerFrame::default(), server]).unwrap();

    // `optional` fields: a field set to "" must come back set, not unset.
    let update = ClientFrame {
        req_id: 9,
        body: Some(client_frame::Body::Group(pb::GroupRequest {
            op: Some(group_request::Op::Update(pb::UpdateGroup {
                group_id: "group_x".into(),
                name: Some(String::new()),
                description: None,
                avatar_url: Some("https://example.com/ä.png".into()),
                join_mode: pb::JoinMode::Approval as i32,
            })),
        })),
    };
    let changed = ServerFrame {
        req_id: 9,
        body: Some(server_frame::Body::Group(pb::GroupResponse {
            result: Some(group_response::Result::Changed(pb::GroupChanged {
                group: Some(pb::GroupInfo {
                    group_id: "group_x".into(),
                    conv_id: "group:group_x".into(),
                    name: String::new(),
                    description: "描述 🐇".into(),
                    avatar_url: "https://example.com/ä.png".into(),
                    owner_id: "user_a".into(),
                    join_mode: pb::JoinMode::Approval as i32,
                    member_count: 2,
                    max_members: u32::MAX,
                    mute_all: true,
                    created_at_ms: 1_700_000_000_000,
                    dissolved: true,
                    my_role: pb::GroupRole::Owner as i32,
                }),
                seq: u64::MAX,
                pending_approval: true,
            })),
        })),
    };
    check_round_trip(&update, b"\x00").unwrap();
    check_round_trip(&changed, b"").unwrap();
    check_concatenated(&[update.clone(), ClientFrame::default(), update]).unwrap();

    // Nested messages added with recall, edit and calls: an amendment carrying the
    // edited text, a system message carrying a call summary, and call signalling.
    let edited = pb::TextContent {
        text: "edited ✏️".into(),
        mention_user_ids: vec!["user_b".into()],
        mention_all: false,
    };
    let amendment = pb::Message {
        msg_id: "msg_0000000000010000002b".into(),
        conv_id: "single:user_a:user_b".into(),
        seq: 43,
        from: "user_a".into(),
        to: "user_b".into(),
        group_id: String::new(),
        kind: pb::MessageKind::Edit as i32,
        content: Some(message::Content::Amendment(pb::Amendment {
            target_seq: 42,
            target_msg_id: "msg_0000000000010000002a".into(),
            text: Some(edited.clone()),
        })),
        client_msg_id: "c-2".into(),
        sent_at_ms: 1_700_000_000_001,
        edited_at_ms: 0,
        recalled: false,
        from_device: "phone".into(),
        recalled_by: String::new(),
    };
    let call_summary = pb::Message {
        kind: pb::MessageKind::System as i32,
        content: Some(message::Content::System(pb::SystemContent {
            event: "call".into(),
            user_ids: vec!["user_a".into(), "user_b".into()],
            text: "Video call, 1:02".into(),
            call: Some(pb::CallSummary {
                call_id: "call_1".into(),
                media: pb::CallMedia::Video as i32,
                caller: "user_a".into(),
                callee: "user_b".into(),
                reason: pb::CallEndReason::Completed as i32,
                duration_ms: 62_000,
            }),
        })),
        seq: 44,
        ..amendment.clone()
    };
    let edit = ClientFrame {
        req_id: 11,
        body: Some(client_frame::Body::Edit(pb::EditRequest {
            conv_id: "single:user_a:user_b".into(),
            seq: 42,
            text: Some(edited),
            client_msg_id: "c-2".into(),
        })),
    };
    let call_event = ServerFrame {
        req_id: 0,
        body: Some(server_frame::Body::CallEvent(pb::CallEvent {
            call_id: "call_1".into(),
            action: pb::CallAction::Invite as i32,
            from: "user_a".into(),
            from_device: "laptop-1".into(),
            media: pb::CallMedia::Video as i32,
            sdp: "v=0\r\n".into(),
            candidate: "{\"candidate\":\"\"}".into(),
            reason: pb::CallEndReason::Unspecified as i32,
            duration_ms: 0,
            ice_servers: vec![pb::IceServer {
                urls: vec!["turn:turn.example.com:3478".into()],
                username: "1700000000:user_b".into(),
                credential: "s3cr3t".into(),
            }],
            peer: "user_a".into(),
        })),
    };
    let deliveries: Vec<ServerFrame> = [amendment, call_summary]
        .into_iter()
        .map(|m| ServerFrame {
            req_id: 0,
            body: Some(server_frame::Body::Deliver(pb::Deliver {
                message: Some(m),
            })),
        })
        .collect();
    check_round_trip(&edit, b"").unwrap();
    check_round_trip(&call_event, b"\x01").unwrap();
    for frame in &deliveries {
        check_round_trip(frame, b"").unwrap();
    }
    check_concatenated(&[deliveries[0].clone(), call_event, deliveries[1].clone()]).unwrap();

    // Contacts, devices and the back office. Settings that are all defaults still
    // arrive set (an empty nested message is written), and a rate survives as a double.
    let hello_ok = ServerFrame {
        req_id: 1,
        body: Some(server_frame::Body::HelloOk(pb::HelloOk {
            user_id: "user_a".into(),
            username: "alice".into(),
            nickname: "Alice 🐇".into(),
            device_id: "laptop-1".into(),
            tokens: None,
            lanes: 4,
            max_frame_bytes: 1 << 20,
            server_time_ms: 1_700_000_000_000,
            role: "admin".into(),
        })),
    };
    let set_settings = ClientFrame {
        req_id: 12,
        body: Some(client_frame::Body::Contact(pb::ContactRequest {
            op: Some(contact_request::Op::SetSettings(pb::SetContactSettings {
                settings: Some(pb::ContactSettings {
                    friends_only_dm: false,
                }),
            })),
        })),
    };
    let friends = ServerFrame {
        req_id: 13,
        body: Some(server_frame::Body::Contact(pb::ContactResponse {
            result: Some(contact_response::Result::Friends(pb::FriendList {
                friends: vec![pb::Friend {
                    user_id: "user_b".into(),
                    username: "bob".into(),
                    nickname: "Bøb".into(),
                    since_ms: 1_700_000_000_000,
                    presence: Some(pb::Presence {
                        user_id: "user_b".into(),
                        online: true,
                        last_seen_ms: 0,
                        devices: 2,
                        version: 7,
                    }),
                    blocked: true,
                }],
            })),
        })),
    };
    let contact_event = ServerFrame {
        req_id: 0,
        body: Some(server_frame::Body::ContactEvent(pb::ContactEvent {
            kind: pb::ContactEventKind::RequestReceived as i32,
            user_id: "user_b".into(),
            message: "hi, it's Bob 👋".into(),
            username: "bob".into(),
            nickname: "Bøb".into(),
        })),
    };
    let device = pb::DeviceInfo {
        device_id: "laptop-1".into(),
        client_version: "0.1.0".into(),
        first_seen_ms: 1_600_000_000_000,
        last_seen_ms: 0,
        online: true,
        current: true,
        transport: "quic".into(),
    };
    let devices = ServerFrame {
        req_id: 14,
        body: Some(server_frame::Body::Account(pb::AccountResponse {
            result: Some(account_response::Result::Devices(pb::DeviceList {
                devices: vec![device.clone()],
            })),
        })),
    };
    let user_detail = ServerFrame {
        req_id: 15,
        body: Some(server_frame::Body::Admin(pb::AdminResponse {
            result: Some(admin_response::Result::User(pb::UserDetail {
                user: Some(pb::AdminUser {
                    user_id: "user_b".into(),
                    username: "bob".into(),
                    nickname: "Bøb".into(),
                    role: "user".into(),
                    disabled: true,
                    created_at_ms: 1_600_000_000_000,
                    online: true,
                    sessions: 1,
                    last_seen_ms: 0,
                }),
                devices: vec![device],
                groups: 3,
            })),
        })),
    };
    let stats = ServerFrame {
        req_id: 16,
        body: Some(server_frame::Body::Admin(pb::AdminResponse {
            result: Some(admin_response::Result::Stats(pb::ServerStats {
                quic_sessions: 10,
                websocket_sessions: 5,
                users_online: 12,
                messages_per_second: 12.5,
                messages_since_start: u64::MAX,
                store_bytes: 1 << 30,
                uptime_ms: 86_400_000,
                active_calls: 1,
                slow_consumer_closes: 2,
            })),
        })),
    };
    let logout = ClientFrame {
        req_id: 17,
        body: Some(client_frame::Body::Account(pb::AccountRequest {
            op: Some(account_request::Op::LogoutEverywhere(
                pb::LogoutEverywhere { keep_current: true },
            )),
        })),
    };
    let list_users = ClientFrame {
        req_id: 18,
        body: Some(client_frame::Body::Admin(pb::AdminRequest {
            op: Some(admin_request::Op::ListUsers(pb::ListUsers {
                query: "ä".into(),
                after_user_id: "user_a".into(),
                limit: 200,
            })),
        })),
    };
    for frame in [&set_settings, &logout, &list_users] {
        check_round_trip(frame, b"").unwrap();
    }
    for frame in [
        &hello_ok,
        &friends,
        &contact_event,
        &devices,
        &user_detail,
        &stats,
    ] {
        check_round_trip(frame, b"\x02").unwrap();
    }
    check_concatenated(&[set_settings, logout, list_users]).unwrap();
    check_concatenated(&[
        hello_ok,
        friends,
        contact_event,
        devices,
        user_detail,
        stats,
    ])
    .unwrap();

    // Files: metadata on the control stream, and the frames that open a transfer stream,
    // each followed there by the raw bytes of the file (the trailer).
    let file = pb::FileInfo {
        file_id: "file_9f86d081884c7d65".into(),
        name: "Fotó 你好 🐇.png".into(),
        size: 1 << 40,
        mime: "image/png".into(),
        url: "https://example.com/files/file_9f86d081884c7d65".into(),
        thumbnail_url: "https://example.com/files/file_9f86d081884c7d65?thumbnail=1".into(),
        width: 4032,
        height: u32::MAX,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        uploaded_at_ms: 1_700_000_000_000,
    };
    let file_info_request = ClientFrame {
        req_id: 19,
        body: Some(client_frame::Body::FileInfo(pb::FileInfoRequest {
            file_id: file.file_id.clone(),
        })),
    };
    let file_info = ServerFrame {
        req_id: 19,
        body: Some(server_frame::Body::FileInfo(file.clone())),
    };
    check_round_trip(&file_info_request, b"").unwrap();
    check_round_trip(&file_info, b"\x03").unwrap();

    let upload = pb::StreamRequest {
        request: Some(stream_request::Request::Upload(pb::FileUpload {
            name: "Fotó 你好 🐇.png".into(),
            declared_size: 8,
            mime: "image/png".into(),
        })),
    };
    let download = pb::StreamRequest {
        request: Some(stream_request::Request::Download(pb::FileDownload {
            file_id: file.file_id.clone(),
            thumbnail: true,
            offset: 4,
            length: u64::MAX,
        })),
    };
    let too_large = pb::StreamResponse {
        response: Some(stream_response::Response::Error(pb::Error {
            code: ErrorCode::FileTooLarge as i32,
            message: "over 100 MiB ✗".into(),
            retry_after_ms: 0,
        })),
    };
    let uploaded = pb::StreamResponse {
        response: Some(stream_response::Response::Uploaded(file.clone())),
    };
    let header = pb::StreamResponse {
        response: Some(stream_response::Response::Download(pb::FileHeader {
            file: Some(file),
            offset: 4,
            length: 4,
            total_size: 8,
        })),
    };
    let png = b"\x89PNG\r\n\x1a\n";
    check_round_trip(&upload, png).unwrap();
    check_round_trip(&download, b"").unwrap();
    check_round_trip(&too_large, b"").unwrap();
    check_round_trip(&uploaded, b"").unwrap();
    check_round_trip(&header, &png[4..]).unwrap();
    check_concatenated(&[upload, pb::StreamRequest::default(), download]).unwrap();
    check_concatenated(&[too_large, uploaded, pb::StreamResponse::default(), header]).unwrap();
}
