//! The sled store: append throughput through the group-commit writer, with both
//! durabilities, and history range reads.
//!
//! Each store lives in its own temp dir under cargo's target tmp dir (on the same disk
//! as `target/`, not a possibly in-memory /tmp, so `fsync` means a real flush).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use quip_bench::{new_text, user_id};
use quip_broker::Durability;
use quip_broker::store::sled::SledOptions;
use quip_broker::store::{SledStore, Store};
use quip_protocol::ids;
use tempfile::TempDir;

/// Appends in flight per iteration: what many connections sending at once look like.
const APPENDS_PER_ITER: usize = 1_000;
/// Messages in the conversation the range reads page through.
const HISTORY_LEN: u64 = 10_000;

fn open(durability: Durability) -> (TempDir, Arc<SledStore>) {
    let dir = tempfile::Builder::new()
        .prefix("quip-bench-store-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let options = SledOptions {
        durability,
        ..SledOptions::default()
    };
    let store = SledStore::open(dir.path(), options).expect("open store");
    (dir, Arc::new(store))
}

/// Where a batch of appends goes.
#[derive(Debug, Clone, Copy)]
enum Spread {
    /// Each append in its own 1:1 conversation (many users chatting).
    DistinctConversations,
    /// All appends in one conversation (one busy chat: a single seq sequence).
    OneConversation,
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sender = user_id(1);
    let peers: Vec<String> = (0..APPENDS_PER_ITER as u64)
        .map(|i| user_id(1_000 + i))
        .collect();

    let mut group = c.benchmark_group("store/append_1000");
    group.throughput(Throughput::Elements(APPENDS_PER_ITER as u64));
    // An iteration takes milliseconds: equal-sized samples fit the measurement time,
    // where criterion's default linear sampling would need 210 iterations.
    group.sampling_mode(SamplingMode::Flat);
    for (durability, name) in [(Durability::Os, "os"), (Durability::Fsync, "fsync")] {
        for spread in [Spread::DistinctConversations, Spread::OneConversation] {
            let (_dir, store) = open(durability);
            let mut next_client_msg_id = 0u64;
            let id = match spread {
                Spread::DistinctConversations => BenchmarkId::new(name, "1000_convs"),
                Spread::OneConversation => BenchmarkId::new(name, "1_conv"),
            };
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let batch: Vec<_> = (0..APPENDS_PER_ITER)
                            .map(|i| {
                                next_client_msg_id += 1;
                                let peer = match spread {
                                    Spread::DistinctConversations => &peers[i],
                                    Spread::OneConversation => &peers[0],
                                };
                                new_text(&sender, peer, next_client_msg_id)
                            })
                            .collect();
                        let start = Instant::now();
                        runtime.block_on(async {
                            let acks: Vec<_> = batch
                                .into_iter()
                                .map(|message| {
                                    let store = store.clone();
                                    tokio::spawn(async move { store.append(message).await })
                                })
                                .collect();
                            for ack in acks {
                                let appended = ack.await.expect("append task").expect("append");
                                assert!(!appended.duplicate);
                            }
                        });
                        timed += start.elapsed();
                    }
                    timed
                });
            });
            // Dropping the store joins its writer before the next one starts.
            drop(store);
        }
    }
    group.finish();
}

fn range(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let (_dir, store) = open(Durability::Os);
    let (from, to) = (user_id(1), user_id(2));
    let conv = ids::single_conv_id(&from, &to);
    runtime.block_on(async {
        for chunk in 0..HISTORY_LEN / APPENDS_PER_ITER as u64 {
            let first = chunk * APPENDS_PER_ITER as u64;
            // Enqueued in call order, so seqs follow client_msg_ids.
            let acks: Vec<_> = (first..first + APPENDS_PER_ITER as u64)
                .map(|i| store.append(new_text(&from, &to, i)))
                .collect();
            for ack in acks {
                ack.await.expect("append");
            }
        }
        store.flush().await.expect("flush");
        assert_eq!(store.last_seq(&conv).await.expect("last seq"), HISTORY_LEN);
    });

    let mut group = c.benchmark_group("store/range_of_10000");
    for limit in [50u64, 200] {
        // The newest page: what a reconnecting device or an opened chat reads.
        let first = HISTORY_LEN - limit + 1;
        group.throughput(Throughput::Elements(limit));
        group.bench_function(BenchmarkId::from_parameter(limit), |b| {
            b.iter(|| {
                let page = runtime
                    .block_on(store.range(&conv, first, HISTORY_LEN, limit as usize))
                    .expect("range");
                assert_eq!(page.len() as u64, limit);
                page
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(quip_bench::SAMPLE_SIZE)
        .measurement_time(quip_bench::MEASUREMENT_TIME)
        .warm_up_time(quip_bench::WARM_UP_TIME);
    targets = appends, range
}
criterion_main!(benches);
