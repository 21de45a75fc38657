//! The body of a load-test message: the send timestamp (epoch microseconds, 20
//! digits) followed by padding up to the requested size. Carrying the timestamp in
//! the text lets a receiver, on any transport, compute end-to-end latency without
//! any per-message state shared with the sender.

/// Width of the timestamp field: enough for any `u64`.
const STAMP_DIGITS: usize = 20;

/// A body of `size` bytes (at least the timestamp) stamped with `sent_micros`.
pub fn body(sent_micros: u64, size: usize) -> String {
    let mut body = format!("{sent_micros:0STAMP_DIGITS$}");
    body.extend(std::iter::repeat_n('x', size.saturating_sub(STAMP_DIGITS)));
    body
}

/// The send timestamp at the start of a load-test body; `None` for other texts
/// (e.g. the SYSTEM messages a group change posts).
pub fn sent_micros(text: &str) -> Option<u64> {
    let stamp = text.get(..STAMP_DIGITS)?;
    if !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_round_trips_its_timestamp_and_has_the_requested_size() {
        let text = body(1_700_000_000_123_456, 64);
        assert_eq!(text.len(), 64);
        assert_eq!(sent_micros(&text), Some(1_700_000_000_123_456));
        assert_eq!(body(7, 0).len(), STAMP_DIGITS);
    }

    #[test]
    fn other_texts_carry_no_timestamp() {
        assert_eq!(sent_micros("alice joined the group"), None);
        assert_eq!(sent_micros("12345"), None);
        assert_eq!(sent_micros("+0000000000000000001"), None);
    }
}
