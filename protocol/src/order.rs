//! Per-conversation in-order release with dedup and gap detection.
//!
//! A device must surface a conversation's messages exactly once and in `seq` order
//! (design §4.3, §4.4), yet they reach it from several places that are not ordered with
//! each other: a delivery lane, the ACK of its own send on the control stream, a history
//! page fetched to fill a gap, and a resume after reconnecting that may repeat what was
//! already seen. [`Reorderer`] is the one place that turns those into a clean sequence:
//!
//! - `seq <= cursor` (already held) or already pending: [`Offer::Duplicate`].
//! - `seq == cursor + 1`: released together with every pending item it makes
//!   contiguous: [`Offer::Released`].
//! - `seq > cursor + 1`: held back until the gap closes: [`Offer::Buffered`] says which
//!   seqs are missing, so the caller can fetch them from history.
//! - more than `max_pending_per_conv` held back: [`Offer::Overflow`], the item is
//!   dropped (memory stays bounded) and the caller must fill from history.
//!
//! `seq` 0 never names a message (seqs start at 1), so it is always a
//! [`Offer::Duplicate`]: it is at or below every cursor.
//!
//! Pure: no I/O, no clock; the caller decides when a gap has lasted too long.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// What happened to an offered item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer<T> {
    /// Already held (at or below the cursor, or pending), or seq 0; the item was dropped.
    Duplicate,
    /// This item and any pending ones it made contiguous, in seq order. The cursor is
    /// now the seq of the last one.
    Released(Vec<T>),
    /// Held back: the seqs in `missing` must arrive first.
    Buffered { missing: Range<u64> },
    /// Too many items are already held back for this conversation; this one was
    /// dropped and must be fetched again (from history) once the gap is filled.
    Overflow,
}

/// One conversation's position.
#[derive(Debug)]
struct Conv<T> {
    /// Highest seq held in order.
    cursor: u64,
    /// Items above `cursor + 1`, waiting for the gap below them to close.
    pending: BTreeMap<u64, T>,
}

impl<T> Default for Conv<T> {
    fn default() -> Self {
        Self {
            cursor: 0,
            pending: BTreeMap::new(),
        }
    }
}

impl<T> Conv<T> {
    fn missing(&self) -> Option<Range<u64>> {
        self.pending
            .keys()
            .next()
            .map(|&first| self.cursor + 1..first)
    }

    /// Moves every pending item that is contiguous with the cursor out, in order.
    fn drain_contiguous(&mut self, released: &mut Vec<T>) {
        while let Some(entry) = self.pending.first_entry() {
            if Some(*entry.key()) != self.cursor.checked_add(1) {
                break;
            }
            self.cursor += 1;
            released.push(entry.remove());
        }
    }
}

/// In-order release per conversation, keyed by conversation id.
#[derive(Debug)]
pub struct Reorderer<T> {
    convs: HashMap<String, Conv<T>>,
    max_pending_per_conv: usize,
}

impl<T> Reorderer<T> {
    /// `max_pending_per_conv` bounds how many out-of-order items one conversation may
    /// hold while a gap is open (0 means "never buffer": every gap is an overflow).
    pub fn new(max_pending_per_conv: usize) -> Self {
        Self {
            convs: HashMap::new(),
            max_pending_per_conv,
        }
    }

    /// Moves a conversation's cursor forward to `seq` (never backwards), e.g. to seed
    /// it from cursors persisted by the application before the first offer. Pending
    /// items at or below `seq` are dropped as held. It releases nothing itself: if
    /// pending items become contiguous, take them with [`release_ready`](Self::release_ready).
    pub fn set_cursor(&mut self, conv_id: &str, seq: u64) {
        let conv = self.conv_mut(conv_id);
        if seq <= conv.cursor {
            return;
        }
        conv.cursor = seq;
        // At u64::MAX nothing can be pending above the cursor (and `seq + 1` overflows).
        conv.pending = match seq.checked_add(1) {
            Some(next) => conv.pending.split_off(&next),
            None => BTreeMap::new(),
        };
    }

    /// Releases the pending items that are contiguous with the cursor (only possible
    /// after [`set_cursor`](Self::set_cursor) jumped over a gap).
    pub fn release_ready(&mut self, conv_id: &str) -> Vec<T> {
        let mut released = Vec::new();
        if let Some(conv) = self.convs.get_mut(conv_id) {
            conv.drain_contiguous(&mut released);
        }
        released
    }

    /// Highest seq held in order for the conversation; 0 if it is unknown.
    pub fn cursor(&self, conv_id: &str) -> u64 {
        self.convs.get(conv_id).map_or(0, |conv| conv.cursor)
    }

    /// Every conversation with a non-zero cursor: what a device sends in `Hello` to
    /// resume. Order is unspecified.
    pub fn cursors(&self) -> impl Iterator<Item = (&str, u64)> {
        self.convs
            .iter()
            .filter(|(_, conv)| conv.cursor > 0)
            .map(|(id, conv)| (id.as_str(), conv.cursor))
    }

    /// Offers the item with this seq; see the module docs for the outcomes.
    pub fn offer(&mut self, conv_id: &str, seq: u64, item: T) -> Offer<T> {
        let max_pending = self.max_pending_per_conv;
        let conv = self.conv_mut(conv_id);
        if seq <= conv.cursor || conv.pending.contains_key(&seq) {
            return Offer::Duplicate;
        }
        if seq == conv.cursor + 1 {
            conv.cursor = seq;
            let mut released = vec![item];
            conv.drain_contiguous(&mut released);
            return Offer::Released(released);
        }
        if conv.pending.len() >= max_pending {
            return Offer::Overflow;
        }
        conv.pending.insert(seq, item);
        Offer::Buffered {
            missing: conv.missing().expect("an item was just made pending"),
        }
    }

    /// The seqs a conversation is waiting for, if anything is held back: from just
    /// above the cursor up to (excluding) the lowest pending seq.
    pub fn missing(&self, conv_id: &str) -> Option<Range<u64>> {
        self.convs.get(conv_id).and_then(Conv::missing)
    }

    /// How many items are held back for the conversation.
    pub fn pending_len(&self, conv_id: &str) -> usize {
        self.convs.get(conv_id).map_or(0, |conv| conv.pending.len())
    }

    /// Conversations that currently hold items back behind a gap.
    pub fn gaps(&self) -> impl Iterator<Item = (&str, Range<u64>)> {
        self.convs
            .iter()
            .filter_map(|(id, conv)| conv.missing().map(|range| (id.as_str(), range)))
    }

    fn conv_mut(&mut self, conv_id: &str) -> &mut Conv<T> {
        // Look up first so the common case (known conversation) does not allocate.
        if !self.convs.contains_key(conv_id) {
            self.convs.insert(conv_id.to_owned(), Conv::default());
        }
        self.convs.get_mut(conv_id).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn released(offer: Offer<u64>) -> Vec<u64> {
        match offer {
            Offer::Released(items) => items,
            other => panic!("expected Released, got {other:?}"),
        }
    }

    #[test]
    fn in_order_items_are_released_one_by_one() {
        let mut r = Reorderer::new(8);
        assert_eq!(r.cursor("c"), 0);
        assert_eq!(released(r.offer("c", 1, 1)), vec![1]);
        assert_eq!(released(r.offer("c", 2, 2)), vec![2]);
        assert_eq!(r.cursor("c"), 2);
        assert_eq!(r.missing("c"), None);
    }

    #[test]
    fn a_gap_buffers_until_it_closes() {
        let mut r = Reorderer::new(8);
        r.offer("c", 1, 1);
        assert_eq!(r.offer("c", 4, 4), Offer::Buffered { missing: 2..4 });
        assert_eq!(r.offer("c", 3, 3), Offer::Buffered { missing: 2..3 });
        assert_eq!(r.missing("c"), Some(2..3));
        assert_eq!(r.gaps().collect::<Vec<_>>(), vec![("c", 2..3)]);
        assert_eq!(released(r.offer("c", 2, 2)), vec![2, 3, 4]);
        assert_eq!(r.cursor("c"), 4);
        assert_eq!(r.missing("c"), None);
        assert_eq!(r.gaps().count(), 0);
    }

    #[test]
    fn duplicates_and_seq_zero_are_dropped() {
        let mut r = Reorderer::new(8);
        assert_eq!(r.offer("c", 0, 0), Offer::Duplicate);
        r.offer("c", 1, 1);
        assert_eq!(r.offer("c", 1, 1), Offer::Duplicate);
        r.offer("c", 3, 3);
        assert_eq!(r.offer("c", 3, 3), Offer::Duplicate);
        assert_eq!(r.pending_len("c"), 1);
    }

    #[test]
    fn conversations_are_independent() {
        let mut r = Reorderer::new(8);
        r.offer("a", 1, 1);
        assert_eq!(r.offer("b", 2, 2), Offer::Buffered { missing: 1..2 });
        assert_eq!(released(r.offer("a", 2, 2)), vec![2]);
        let mut cursors: Vec<_> = r.cursors().collect();
        cursors.sort();
        // "b" has a cursor of 0 and is not worth resuming from.
        assert_eq!(cursors, vec![("a", 2)]);
    }

    #[test]
    fn overflow_drops_the_item_and_keeps_memory_bounded() {
        let mut r = Reorderer::new(2);
        assert!(matches!(r.offer("c", 3, 3), Offer::Buffered { .. }));
        assert!(matches!(r.offer("c", 4, 4), Offer::Buffered { .. }));
        assert_eq!(r.offer("c", 5, 5), Offer::Overflow);
        assert_eq!(r.pending_len("c"), 2);
        // The next in-order item is still accepted, and releases what is contiguous.
        assert_eq!(released(r.offer("c", 1, 1)), vec![1]);
        assert_eq!(released(r.offer("c", 2, 2)), vec![2, 3, 4]);
        // 5 was dropped: it must come again (from history).
        assert_eq!(released(r.offer("c", 5, 5)), vec![5]);
    }

    #[test]
    fn zero_pending_means_every_gap_overflows() {
        let mut r = Reorderer::new(0);
        assert_eq!(r.offer("c", 2, 2), Offer::Overflow);
        assert_eq!(released(r.offer("c", 1, 1)), vec![1]);
    }

    #[test]
    fn set_cursor_only_moves_forward_and_drops_held_pending() {
        let mut r = Reorderer::new(8);
        r.set_cursor("c", 5);
        assert_eq!(r.cursor("c"), 5);
        r.set_cursor("c", 3);
        assert_eq!(r.cursor("c"), 5);
        assert_eq!(r.offer("c", 5, 5), Offer::Duplicate);
        r.offer("c", 7, 7);
        r.offer("c", 9, 9);
        r.offer("c", 10, 10);
        r.set_cursor("c", 8);
        assert_eq!(r.pending_len("c"), 2);
        assert_eq!(r.release_ready("c"), vec![9, 10]);
        assert_eq!(r.cursor("c"), 10);
        assert_eq!(r.release_ready("c"), Vec::<u64>::new());
        assert_eq!(r.release_ready("unknown"), Vec::<u64>::new());
    }

    proptest! {
        /// Whatever the arrival order, and however often each seq is repeated, exactly
        /// 1..=n comes out, in order, once each.
        #[test]
        fn any_permutation_with_duplicates_releases_exactly_one_to_n(
            (n, arrivals) in (1u64..200).prop_flat_map(|n| {
                let seqs: Vec<u64> = (1..=n).collect();
                let dups = proptest::collection::vec(1..=n, 0..(n as usize * 2));
                (Just(n), (Just(seqs), dups)
                    .prop_map(|(mut seqs, dups)| { seqs.extend(dups); seqs })
                    .prop_shuffle())
            })
        ) {
            let mut r = Reorderer::new(usize::MAX);
            let mut out = Vec::new();
            for seq in arrivals {
                match r.offer("c", seq, seq) {
                    Offer::Released(items) => out.extend(items),
                    Offer::Buffered { missing } => {
                        prop_assert!(missing.start == r.cursor("c") + 1);
                        prop_assert!(!missing.is_empty());
                    }
                    Offer::Duplicate => {}
                    Offer::Overflow => prop_assert!(false, "unbounded reorderer overflowed"),
                }
            }
            prop_assert_eq!(out, (1..=n).collect::<Vec<_>>());
            prop_assert_eq!(r.cursor("c"), n);
            prop_assert_eq!(r.missing("c"), None);
        }

        /// With a small buffer, re-offering whatever overflowed (as a history fetch
        /// would) still yields 1..=n in order.
        #[test]
        fn overflowed_items_refetched_still_release_in_order(
            seqs in Just((1u64..=60).collect::<Vec<_>>()).prop_shuffle(),
            max_pending in 0usize..8,
        ) {
            let mut r = Reorderer::new(max_pending);
            let mut out = Vec::new();
            for seq in seqs {
                if let Offer::Released(items) = r.offer("c", seq, seq) {
                    out.extend(items);
                }
            }
            // "History": everything after the cursor, ascending, offered again.
            let cursor = r.cursor("c");
            for seq in cursor + 1..=60 {
                if let Offer::Released(items) = r.offer("c", seq, seq) {
                    out.extend(items);
                }
            }
            prop_assert_eq!(out, (1..=60).collect::<Vec<_>>());
        }
    }
}
