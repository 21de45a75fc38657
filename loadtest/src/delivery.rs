//! Delivery accounting that survives reconnects: which seqs were acknowledged per
//! destination, and which each tracked receiver has seen. A message surfaced again
//! after a resume (the broker replays from the device's last reported position) is a
//! duplicate and not counted twice; one acknowledged but never surfaced is missing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

/// A set of seqs (dense from 1 in a conversation): a bitmap.
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; false when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let new = self.words[word] & mask == 0;
        self.words[word] |= mask;
        self.len += u64::from(new);
        new
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// How many of `self` are not in `other`.
    pub fn count_not_in(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let theirs = other.words.get(i).copied().unwrap_or(0);
                u64::from((word & !theirs).count_ones())
            })
            .sum()
    }
}

/// The ledger of one run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Destination (a user id or group id) → acknowledged seqs.
    acked: Mutex<HashMap<String, SeqSet>>,
    receivers: Mutex<Vec<Arc<Seen>>>,
}

/// What one tracked receiver has seen of its destination's conversation.
#[derive(Debug)]
pub struct Seen {
    destination: String,
    seqs: Mutex<SeqSet>,
    duplicates: AtomicU64,
}

impl Seen {
    /// Records a load-test message; false when this receiver had seen it already.
    pub fn first_time(&self, seq: u64) -> bool {
        let new = lock(&self.seqs).insert(seq);
        if !new {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

/// The ledger's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub receivers: u64,
    /// Acknowledged messages times the tracked receivers they were for.
    pub expected: u64,
    /// Distinct load-test messages the tracked receivers surfaced.
    pub seen: u64,
    /// Acknowledged but not (yet) surfaced.
    pub missing: u64,
    /// Surfaced again after having been seen (replays after a resume).
    pub duplicates: u64,
    /// Surfaced but never acknowledged (e.g. stored, but the ACK was lost).
    pub unacknowledged: u64,
}

impl Tally {
    pub fn to_json(self) -> Value {
        json!({
            "tracked_receivers": self.receivers,
            "expected": self.expected,
            "delivered_unique": self.seen,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "unacknowledged": self.unacknowledged,
        })
    }
}

impl Ledger {
    pub fn new() -> Arc<Ledger> {
        Arc::default()
    }

    /// A send to `destination` was stored as `seq`.
    pub fn acked(&self, destination: &str, seq: u64) {
        let mut acked = lock(&self.acked);
        match acked.get_mut(destination) {
            Some(set) => {
                set.insert(seq);
            }
            None => {
                let mut set = SeqSet::default();
                set.insert(seq);
                acked.insert(destination.to_owned(), set);
            }
        }
    }

    /// Tracks a receiver of every message sent to `destination` (its own user id, or
    /// its group's id).
    pub fn receiver(&self, destination: &str) -> Arc<Seen> {
        let seen = Arc::new(Seen {
            destination: destination.to_owned(),
            seqs: Mutex::new(SeqSet::default()),
            duplicates: AtomicU64::new(0),
        });
        lock(&self.receivers).push(seen.clone());
        seen
    }

    pub fn tally(&self) -> Tally {
        let acked = lock(&self.acked);
        let empty = SeqSet::default();
        let mut tally = Tally {
            receivers: 0,
            expected: 0,
            seen: 0,
            missing: 0,
            duplicates: 0,
            unacknowledged: 0,
        };
        for receiver in lock(&self.receivers).iter() {
            let expected = acked.get(&receiver.destination).unwrap_or(&empty);
            let seqs = lock(&receiver.seqs);
            tally.receivers += 1;
            tally.expected += expected.len();
            tally.seen += seqs.len();
            tally.missing += expected.count_not_in(&seqs);
            tally.unacknowledged += seqs.count_not_in(expected);
            tally.duplicates += receiver.duplicates.load(Ordering::Relaxed);
        }
        tally
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_duplicates_and_gaps_are_missing() {
        let ledger = Ledger::new();
        let alice = ledger.receiver("user_a");
        for seq in 1..=100 {
            ledger.acked("user_a", seq);
        }
        ledger.acked("user_b", 1);
        for seq in 1..=90 {
            assert!(alice.first_time(seq));
        }
        // A resume replays 81..=90 and goes on to 95.
        for seq in 81..=95 {
            alice.first_time(seq);
        }
        alice.first_time(200);
        let tally = ledger.tally();
        assert_eq!(tally.expected, 100);
        assert_eq!(tally.seen, 96);
        assert_eq!(tally.duplicates, 10);
        assert_eq!(tally.missing, 5);
        assert_eq!(tally.unacknowledged, 1);
    }
}
