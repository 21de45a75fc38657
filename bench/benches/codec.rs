//! The frame codec on the two frames that dominate traffic: the `Deliver` of a
//! 100-byte text (server to client, once per recipient session, but encoded once per
//! message) and the `SendRequest` that produced it (client to server). Reports bytes
//! per second; the frame size is in the group name, so ns/frame = size / throughput.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use quip_bench::{GROUP_ID, deliver_server_frame, send_client_frame, text_message};
use quip_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME_BYTES, FrameDecoder, ServerFrame, encode_frame,
    encode_frame_bytes, ids,
};

fn codec(c: &mut Criterion) {
    let conv = ids::group_conv_id(GROUP_ID);
    let deliver = deliver_server_frame(text_message(&conv, 4_242));
    bench_frame::<ServerFrame>(c, "deliver", &deliver);
    bench_frame::<ClientFrame>(c, "send_request", &send_client_frame(4_242));
}

/// encode_frame into a reused buffer (the lane writers' case), encode_frame_bytes into a
/// fresh one (fan-out's encode-once), and FrameDecoder::decode of one whole frame.
fn bench_frame<M>(c: &mut Criterion, name: &str, frame: &M)
where
    M: prost::Message + Default + PartialEq,
{
    let encoded = encode_frame_bytes(frame);
    let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut check = BytesMut::from(&encoded[..]);
    assert!(decoder.decode::<M>(&mut check).unwrap().as_ref() == Some(frame));

    let mut group = c.benchmark_group(format!("codec/{name}_{}B", encoded.len()));
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    let mut buf = BytesMut::with_capacity(encoded.len());
    group.bench_function("encode_frame", |b| {
        b.iter(|| {
            buf.clear();
            encode_frame(black_box(frame), &mut buf);
            black_box(buf.len())
        });
    });
    group.bench_function("encode_frame_bytes", |b| {
        b.iter(|| encode_frame_bytes(black_box(frame)));
    });
    group.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&encoded[..]),
            |mut input| decoder.decode::<M>(&mut input).unwrap().unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(quip_bench::SAMPLE_SIZE)
        .measurement_time(quip_bench::MEASUREMENT_TIME)
        .warm_up_time(quip_bench::WARM_UP_TIME);
    targets = codec
}
criterion_main!(benches);
