//! Feeds arbitrary bytes to `FrameDecoder` as a control or lane stream would: as
//! `ClientFrame`s (what the broker reads) and as `ServerFrame`s (what the SDK reads),
//! whole and in chunks. It must never panic, and:
//!
//! - `Ok(Some)` consumes at least one byte; `Ok(None)` consumes nothing;
//! - chunked decoding gives exactly the frames and the error of whole-buffer decoding
//!   (the first input byte picks the chunk size);
//! - every decoded frame re-encodes to a frame that decodes back to the same value.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use quip_protocol::{ClientFrame, FrameDecoder, FrameError, ServerFrame, encode_frame};

/// Smaller than the 1 MiB default so that inputs can reach and cross the limit.
const MAX_FRAME_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(MAX_FRAME_BYTES);
    let chunk = data.first().map_or(1, |&b| usize::from(b).max(1));
    check::<ClientFrame>(decoder, data, chunk);
    check::<ServerFrame>(decoder, data, chunk);
});

/// What a stream decoded to: its frames, then the error that ended it, if any.
type Outcome<M> = (Vec<M>, Option<FrameError>);

fn check<M>(decoder: FrameDecoder, data: &[u8], chunk: usize)
where
    M: prost::Message + Default + PartialEq,
{
    let whole = decode_whole::<M>(decoder, data);
    let chunked = decode_chunked::<M>(decoder, data, chunk);
    assert!(
        whole == chunked,
        "chunked decoding disagrees with whole-buffer decoding"
    );

    // Re-encoding may be longer than the input (e.g. a negative enum value sent as a
    // 5-byte varint is written back as 10 bytes), so re-decode without a limit.
    let unlimited = FrameDecoder::new(usize::MAX);
    for frame in &whole.0 {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf);
        let again = unlimited.decode::<M>(&mut buf);
        assert!(
            matches!(&again, Ok(Some(f)) if f == frame),
            "a decoded frame did not survive re-encoding"
        );
        assert!(buf.is_empty());
    }
}

/// Decodes one step and checks the consumption rules.
fn step<M: prost::Message + Default>(
    decoder: FrameDecoder,
    buf: &mut BytesMut,
) -> Result<Option<M>, FrameError> {
    let before = buf.len();
    let result = decoder.decode::<M>(buf);
    match &result {
        Ok(Some(_)) => assert!(buf.len() < before, "a frame consumed no bytes"),
        Ok(None) => assert_eq!(buf.len(), before, "Ok(None) consumed bytes"),
        Err(_) => {}
    }
    result
}

fn decode_whole<M: prost::Message + Default>(decoder: FrameDecoder, data: &[u8]) -> Outcome<M> {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        match step::<M>(decoder, &mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn decode_chunked<M: prost::Message + Default>(
    decoder: FrameDecoder,
    data: &[u8],
    chunk: usize,
) -> Outcome<M> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match step::<M>(decoder, &mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}
