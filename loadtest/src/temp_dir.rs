//! A temp dir removed on drop (kept tiny to avoid a dependency for a few uses): a
//! spawned broker's data dir, the Redis of a spawned cluster.

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> std::io::Result<TempDir> {
        let path =
            std::env::temp_dir().join(format!("quip-loadtest-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
