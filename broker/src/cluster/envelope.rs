//! What travels between nodes on their Redis channels: an [`Outbound`] with its frame
//! already encoded (the receiving node hands the same bytes to its sessions), in
//! protobuf like everything else. These never leave the cluster, so there is no
//! schema file.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use quip_protocol::ErrorCode;

use super::Outbound;
use crate::router::Push;

const DELIVER: u32 = 1;
const PUSH: u32 = 2;
const CLOSE: u32 = 3;
const MEMBERS_CHANGED: u32 = 4;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Envelope {
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// Deliver: the conversation; Close: the user; MembersChanged: the group.
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub frame: Bytes,
    /// The users on the receiving node this is for.
    #[prost(string, repeated, tag = "5")]
    pub recipients: Vec<String>,
    #[prost(bool, tag = "6")]
    pub reliable: bool,
    /// Close: one device only (empty: all).
    #[prost(string, tag = "7")]
    pub device_id: String,
    #[prost(int32, tag = "8")]
    pub code: i32,
    #[prost(string, tag = "9")]
    pub reason: String,
}

impl Envelope {
    /// `outbound` for the given recipients (the subset on one node).
    pub fn of(outbound: &Outbound, recipients: Vec<String>) -> Self {
        match outbound {
            Outbound::Deliver {
                conv_id,
                seq,
                frame,
                ..
            } => Envelope {
                kind: DELIVER,
                id: conv_id.to_string(),
                seq: *seq,
                frame: frame.clone(),
                recipients,
                ..Default::default()
            },
            Outbound::Push { frame, how, .. } => Envelope {
                kind: PUSH,
                frame: frame.clone(),
                recipients,
                reliable: *how == Push::Reliable,
                ..Default::default()
            },
            Outbound::Close {
                user_id,
                device_id,
                code,
                reason,
            } => Envelope {
                kind: CLOSE,
                id: user_id.clone(),
                device_id: device_id.clone().unwrap_or_default(),
                code: *code as i32,
                reason: reason.clone(),
                ..Default::default()
            },
            Outbound::MembersChanged { group_id } => Envelope {
                kind: MEMBERS_CHANGED,
                id: group_id.clone(),
                ..Default::default()
            },
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Back to what the receiving node acts on; `None` for bytes it cannot read
    /// (a newer node's kind, or garbage on the channel).
    pub fn decode_outbound(bytes: &[u8]) -> Option<Outbound> {
        let envelope = Envelope::decode(bytes).ok()?;
        let recipients: Arc<[String]> = Arc::from(envelope.recipients);
        Some(match envelope.kind {
            DELIVER => Outbound::Deliver {
                conv_id: Arc::from(envelope.id.as_str()),
                seq: envelope.seq,
                frame: envelope.frame,
                recipients,
            },
            PUSH => Outbound::Push {
                frame: envelope.frame,
                recipients,
                how: if envelope.reliable {
                    Push::Reliable
                } else {
                    Push::Ephemeral
                },
            },
            CLOSE => Outbound::Close {
                user_id: envelope.id,
                device_id: Some(envelope.device_id).filter(|d| !d.is_empty()),
                code: ErrorCode::try_from(envelope.code).unwrap_or(ErrorCode::Unauthenticated),
                reason: envelope.reason,
            },
            MEMBERS_CHANGED => Outbound::MembersChanged {
                group_id: envelope.id,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_trip() {
        let all = [
            Outbound::Deliver {
                conv_id: Arc::from("d:user_a:user_b"),
                seq: 7,
                frame: Bytes::from_static(b"frame"),
                recipients: Arc::from(vec!["user_b".to_owned()]),
            },
            Outbound::Push {
                frame: Bytes::from_static(b"typing"),
                recipients: Arc::from(vec!["user_a".to_owned()]),
                how: Push::Reliable,
            },
            Outbound::Close {
                user_id: "user_a".into(),
                device_id: Some("phone".into()),
                code: ErrorCode::LoggedOut,
                reason: "logged out".into(),
            },
            Outbound::MembersChanged {
                group_id: "group_1".into(),
            },
        ];
        for outbound in all {
            let recipients = match &outbound {
                Outbound::Deliver { recipients, .. } | Outbound::Push { recipients, .. } => {
                    recipients.to_vec()
                }
                _ => Vec::new(),
            };
            let bytes = Envelope::of(&outbound, recipients).to_bytes();
            let back = Envelope::decode_outbound(&bytes).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{outbound:?}"));
        }
        assert!(Envelope::decode_outbound(b"\xff\xff\xff").is_none());
    }
}
