//! Write-behind for cursors (delivered and read marks).
//!
//! Every send raises its sender's read mark, and every delivered report raises a
//! device's cursor. Written straight to sled, each raise is a compare-and-swap that
//! copies a tree node: measured at about 10% of the broker's CPU in a 1:1 load test.
//! Cursors only ever grow, so raises coalesce: this buffer keeps the highest value per
//! key in memory and a background thread writes them every [`FLUSH_EVERY`]. Readers
//! see the buffered value at once (`max` of buffer and tree).
//!
//! What a crash can cost: the raises of the last interval. A delivered cursor that
//! goes back makes the device receive a few messages again, which at-least-once
//! delivery already allows (the SDK drops what it has seen); a read mark that goes
//! back shows a few read messages as unread. Neither loses a message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use dashmap::DashMap;

use super::StoreError;

/// How long a raise may stay in memory only.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct CursorBuffer {
    pending: DashMap<Vec<u8>, u64>,
    tree: sled::Tree,
    stopping: AtomicBool,
    /// Wakes the flusher early when the store closes.
    wake: (Mutex<()>, Condvar),
}

impl CursorBuffer {
    /// Starts the buffer and its flusher thread over `tree`.
    pub fn start(tree: sled::Tree) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        let buffer = Arc::new(Self {
            pending: DashMap::new(),
            tree,
            stopping: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let flusher = buffer.clone();
        let thread = std::thread::Builder::new()
            .name("quip-cursors".into())
            .spawn(move || flusher.run())?;
        Ok((buffer, thread))
    }

    /// Raises `key` to at least `value` (0 is a no-op).
    pub fn raise(&self, key: Vec<u8>, value: u64) {
        if value == 0 {
            return;
        }
        self.pending
            .entry(key)
            .and_modify(|pending| *pending = (*pending).max(value))
            .or_insert(value);
    }

    /// Raises `key` to `value` and says whether that moved it (false when it already
    /// stood there or higher). Two concurrent raises may both say true; callers use
    /// it to push receipts, which carry the value and are idempotent.
    pub fn raise_reporting(&self, key: Vec<u8>, value: u64) -> Result<bool, StoreError> {
        if value == 0 || self.get(&key)? >= value {
            return Ok(false);
        }
        self.raise(key, value);
        Ok(true)
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<u64, StoreError> {
        // The buffer first: `write_out` writes the tree before it drops the buffered
        // value, so reading in this order never misses a raise.
        let pending = self.pending.get(key).map_or(0, |v| *v);
        let stored = read_u64(self.tree.get(key)?);
        Ok(stored.max(pending))
    }

    /// Every key under `prefix` with its current value, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        // The buffer first, for the reason given in `get`. It holds at most one
        // write-out interval of raises, so walking it is cheap.
        let mut merged = std::collections::BTreeMap::new();
        for entry in self.pending.iter() {
            if entry.key().starts_with(prefix) {
                merged.insert(entry.key().clone(), *entry.value());
            }
        }
        for entry in self.tree.scan_prefix(prefix) {
            let (key, value) = entry?;
            let value = read_u64(Some(value));
            let merged_value = merged.entry(key.to_vec()).or_insert(0);
            *merged_value = (*merged_value).max(value);
        }
        Ok(merged.into_iter().collect())
    }

    /// Writes every buffered raise to the tree (not flushed to disk: sled's periodic
    /// flush and the store's own flushes do that).
    pub fn write_out(&self) -> Result<(), StoreError> {
        let keys: Vec<Vec<u8>> = self.pending.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some(value) = self.pending.get(&key).map(|v| *v) else {
                continue;
            };
            self.tree.fetch_and_update(&key, |old| {
                let old = read_u64(old.map(sled::IVec::from));
                Some(old.max(value).to_be_bytes().to_vec())
            })?;
            // Drop the entry only if nothing raised it further meanwhile: until the
            // tree has the value, readers must keep seeing it here.
            self.pending.remove_if(&key, |_, pending| *pending <= value);
        }
        Ok(())
    }

    /// Stops the flusher thread; the caller joins it, then calls
    /// [`write_out`](Self::write_out) a last time on its own thread. (sled frees
    /// replaced nodes through epoch-based reclamation; garbage left in an exiting
    /// thread's bag can keep the database's file lock held for a while, and a store
    /// reopened in the same process would find it locked.)
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _guard = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.1.notify_all();
    }

    fn run(&self) {
        loop {
            let stopping = {
                let guard = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
                if !self.stopping.load(Ordering::SeqCst) {
                    let _ = self
                        .wake
                        .1
                        .wait_timeout(guard, FLUSH_EVERY)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                self.stopping.load(Ordering::SeqCst)
            };
            if stopping {
                break;
            }
            if let Err(error) = self.write_out() {
                tracing::error!(%error, "writing cursors failed; retrying");
            }
        }
    }
}

pub fn read_u64(raw: Option<sled::IVec>) -> u64 {
    raw.and_then(|raw| <[u8; 8]>::try_from(raw.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("cursors").unwrap();
        (dir, tree)
    }

    #[test]
    fn raises_are_visible_at_once_and_only_ever_grow() {
        let (_dir, tree) = tree();
        let (buffer, thread) = CursorBuffer::start(tree.clone()).unwrap();
        buffer.raise(b"k".to_vec(), 5);
        buffer.raise(b"k".to_vec(), 3);
        assert_eq!(buffer.get(b"k").unwrap(), 5);
        buffer.write_out().unwrap();
        assert_eq!(read_u64(tree.get(b"k").unwrap()), 5);
        buffer.raise(b"k".to_vec(), 4);
        buffer.write_out().unwrap();
        assert_eq!(buffer.get(b"k").unwrap(), 5);
        buffer.stop();
        thread.join().unwrap();
    }

    #[test]
    fn scans_merge_the_buffer_with_the_tree() {
        let (_dir, tree) = tree();
        tree.insert(b"p/a", &7u64.to_be_bytes()).unwrap();
        tree.insert(b"p/b", &1u64.to_be_bytes()).unwrap();
        let (buffer, thread) = CursorBuffer::start(tree).unwrap();
        buffer.raise(b"p/b".to_vec(), 9);
        buffer.raise(b"p/c".to_vec(), 2);
        buffer.raise(b"q/a".to_vec(), 2);
        let got = buffer.scan_prefix(b"p/").unwrap();
        assert_eq!(
            got,
            vec![
                (b"p/a".to_vec(), 7),
                (b"p/b".to_vec(), 9),
                (b"p/c".to_vec(), 2)
            ]
        );
        buffer.stop();
        thread.join().unwrap();
    }

    #[test]
    fn the_last_write_out_after_stopping_writes_everything() {
        let (_dir, tree) = tree();
        let (buffer, thread) = CursorBuffer::start(tree.clone()).unwrap();
        buffer.raise(b"k".to_vec(), 11);
        buffer.stop();
        thread.join().unwrap();
        buffer.write_out().unwrap();
        assert_eq!(read_u64(tree.get(b"k").unwrap()), 11);
    }
}
