//! A bounded single-consumer queue that holds memory only while it holds items.
//!
//! Every session has one queue per delivery lane, and a broker holds 100,000 mostly
//! idle sessions. `tokio::sync::mpsc` allocates a block of 32 slots when the channel
//! is created (2 KiB per lane for `LaneItem`, 8 KiB per QUIC session before anything
//! is sent), and `flume`/`async-channel` keep their high-water capacity forever. This
//! queue is a `VecDeque` behind a mutex: empty until the first item, and shrunk back
//! once a burst has drained. The lock is held for a push or a pop only; producers
//! never wait (`try_send`), which is what fan-out needs: a full queue means a slow
//! consumer, which the router closes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// A drained queue whose buffer grew past this many slots gives the buffer back.
const SHRINK_ABOVE: usize = 64;

/// A queue of at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            sender_alive: true,
            receiver_alive: true,
        }),
        capacity: capacity.max(1),
        ready: Notify::new(),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Wakes the receiver after a push onto an empty queue or when the sender goes.
    ready: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the deque inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    sender_alive: bool,
    receiver_alive: bool,
}

/// The producing end; shared by reference (`&self`) between fan-out threads.
#[derive(Debug)]
pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueSender<T> {
    /// Queues `item` unless the queue is full or its receiver is gone; then the item
    /// comes back.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        if !state.receiver_alive || state.items.len() >= self.shared.capacity {
            return Err(item);
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(item);
        drop(state);
        // A non-empty queue has not been seen empty by the receiver since its last
        // wake-up, so only the first item of a burst needs to wake it.
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.shared.lock().sender_alive = false;
        self.shared.ready.notify_one();
    }
}

/// The consuming end.
#[derive(Debug)]
pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueReceiver<T> {
    /// The next item, waiting for one; `None` once the sender is gone and the queue
    /// is drained.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.shared.lock();
                if let Some(item) = pop(&mut state) {
                    return Some(item);
                }
                if !state.sender_alive {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the
            // unlock above and this await is not missed.
            self.shared.ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        pop(&mut self.shared.lock())
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        // Free the queued items now rather than when the last sender goes.
        state.items = VecDeque::new();
    }
}

fn pop<T>(state: &mut State<T>) -> Option<T> {
    let item = state.items.pop_front();
    if state.items.is_empty() && state.items.capacity() > SHRINK_ABOVE {
        state.items = VecDeque::new();
    }
    item
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_until_the_sender_goes() {
        let (tx, mut rx) = bounded(8);
        for n in 0..5 {
            tx.try_send(n).unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(n) = rx.recv().await {
            got.push(n);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_full_queue_refuses_and_returns_the_item() {
        let (tx, mut rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(3));
        assert_eq!(rx.try_recv(), Some(1));
        tx.try_send(3).unwrap();
    }

    #[test]
    fn a_dropped_receiver_refuses_items() {
        let (tx, rx) = bounded(2);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(1));
    }

    #[test]
    fn nothing_is_allocated_until_used_and_a_drained_burst_is_given_back() {
        let (tx, mut rx) = bounded(10_000);
        assert_eq!(tx.shared.lock().items.capacity(), 0);
        for n in 0..1000 {
            tx.try_send(n).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(tx.shared.lock().items.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_push_from_another_thread() {
        let (tx, mut rx) = bounded(4);
        let pusher = std::thread::spawn(move || {
            for n in 0..1000 {
                while tx.try_send(n).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let mut expected = 0;
        while let Some(n) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no lost wake-up")
        {
            assert_eq!(n, expected);
            expected += 1;
        }
        assert_eq!(expected, 1000);
        pusher.join().unwrap();
    }
}
