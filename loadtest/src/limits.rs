//! Process limits a run with many connections needs.

use rlimit::Resource;

/// Open files we ask for: every TCP connection is a descriptor on each side (the
/// `idle` scenario holds 100,000), and Linux's default `fs.nr_open` allows this much.
const WANTED_NOFILE: u64 = 1_048_576;

/// Raises RLIMIT_NOFILE (soft and hard) to [`WANTED_NOFILE`], or, without the
/// privilege to raise the hard limit, the soft limit to the hard one. Called at the
/// start of `main`, before a broker is spawned, because a child inherits the limits
/// it was started with and the broker needs a descriptor per WebSocket too.
pub fn raise_nofile() {
    match rlimit::setrlimit(Resource::NOFILE, WANTED_NOFILE, WANTED_NOFILE) {
        Ok(()) => tracing::info!(limit = WANTED_NOFILE, "raised the open files limit"),
        Err(error) => {
            let raised = rlimit::getrlimit(Resource::NOFILE).and_then(|(_, hard)| {
                rlimit::setrlimit(Resource::NOFILE, hard, hard)?;
                Ok(hard)
            });
            match raised {
                Ok(hard) => tracing::warn!(
                    %error,
                    limit = hard,
                    "cannot raise the open files limit to {WANTED_NOFILE}; using the hard limit"
                ),
                Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
            }
        }
    }
}

/// The soft RLIMIT_NOFILE now in force (0 if it cannot be read).
pub fn nofile() -> u64 {
    rlimit::getrlimit(Resource::NOFILE).map_or(0, |(soft, _)| soft)
}
