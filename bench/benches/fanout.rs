//! The router's encode-once fan-out: one `Deliver` frame, encoded once, handed to every
//! online session of every member of a group. Reports deliveries (sessions reached) per
//! second. Only `Router::deliver` is timed; emptying the lanes is not.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quip_bench::{GROUP_ID, NoopCloser, text_message, user_id};
use quip_broker::queue::QueueReceiver;
use quip_broker::router::{LaneItem, Router};
use quip_broker::service::chat::deliver_frame;
use quip_protocol::ids;

/// Lane queue length. Lanes are emptied after every delivery, so one slot would do;
/// `deliver` asserts that no session was closed as a slow consumer.
const LANE_QUEUE_LEN: usize = 4;

/// Online users, each with `devices` sessions of one lane, all in one group.
struct Group {
    router: Router,
    members: Vec<String>,
    lanes: Vec<QueueReceiver<LaneItem>>,
}

impl Group {
    fn new(users: usize, devices: usize) -> Self {
        let router = Router::new();
        let mut members = Vec::with_capacity(users);
        let mut lanes = Vec::with_capacity(users * devices);
        for user in 0..users {
            let user = user_id(user as u64 + 100);
            for device in 0..devices {
                let (_session, receivers) = router.register(
                    &user,
                    &format!("device-{device}"),
                    1,
                    LANE_QUEUE_LEN,
                    Box::new(NoopCloser),
                );
                lanes.extend(receivers);
            }
            members.push(user);
        }
        assert_eq!(router.session_count(), users * devices);
        Self {
            router,
            members,
            lanes,
        }
    }

    fn sessions(&self) -> usize {
        self.lanes.len()
    }

    /// Times `iters` deliveries of `frame` to every member, emptying the lanes after
    /// each one outside the timed section.
    fn time_deliveries(&mut self, iters: u64, conv: &Arc<str>, frame: &bytes::Bytes) -> Duration {
        let mut timed = Duration::ZERO;
        for seq in 1..=iters {
            let start = Instant::now();
            let delivered =
                self.router
                    .deliver_here(conv, seq, frame, black_box(&self.members), None);
            timed += start.elapsed();
            assert_eq!(delivered, self.sessions(), "a session was dropped");
            for lane in &mut self.lanes {
                while lane.try_recv().is_some() {}
            }
        }
        timed
    }
}

fn fanout(c: &mut Criterion) {
    let conv: Arc<str> = Arc::from(ids::group_conv_id(GROUP_ID));
    let frame = deliver_frame(&text_message(&conv, 1));

    let mut group = c.benchmark_group("fanout");
    for (users, devices) in [(1_000, 1), (10_000, 1), (1_000, 3)] {
        let mut members = Group::new(users, devices);
        group.throughput(Throughput::Elements(members.sessions() as u64));
        let plural = if devices == 1 { "" } else { "s" };
        let id = BenchmarkId::new(format!("{devices}_device{plural}_per_user"), users);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| members.time_deliveries(iters, &conv, &frame));
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
    targets = fanout
}
criterion_main!(benches);
