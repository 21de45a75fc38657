//! Decodes arbitrary bytes as a client's request the two ways the broker reads one
//! outside the stream decoder (which `frame_decoder` covers): a protobuf
//! `ClientFrame` body, and a QUIC datagram (`decode_datagram`: one whole frame in the
//! stream encoding). Every frame that decodes then goes through the protocol crate's
//! checks before a service would see it (`quip_protocol_fuzz::check_client_frame`:
//! the id rules on every string, the conversation id parser, lane choice, and
//! re-encoding as a stream frame and as a datagram). It must never panic, and a
//! datagram must decode exactly when the stream decoder finds one frame that fills it.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use quip_protocol::{ClientFrame, FrameDecoder, decode_datagram};
use quip_protocol_fuzz::check_client_frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ClientFrame::decode(data) {
        check_client_frame(&frame);
    }

    let datagram = decode_datagram::<ClientFrame>(data);
    // A datagram cannot hold more than itself, so its length is the stream limit.
    let mut buf = BytesMut::from(data);
    let stream = FrameDecoder::new(data.len()).decode::<ClientFrame>(&mut buf);
    match (&datagram, &stream) {
        (Ok(d), Ok(Some(s))) => {
            assert_eq!(d, s, "datagram and stream decoding disagree");
            assert!(buf.is_empty(), "a datagram decoded with bytes left over");
        }
        (Ok(_), _) => panic!("a datagram decoded where the stream decoder found no frame"),
        (Err(_), Ok(Some(_))) => assert!(
            !buf.is_empty(),
            "a whole single frame was refused as a datagram"
        ),
        (Err(_), _) => {}
    }
    if let Ok(frame) = &datagram {
        check_client_frame(frame);
    }
});
