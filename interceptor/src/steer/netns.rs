//! Entering the configured network namespace.
//!
//! `setns` moves only the calling thread, and sockets belong to the
//! namespace of the thread that creates them, so the agent calls [`enter`]
//! from `main` before it starts any other thread (the tokio runtime).

use std::path::Path;

use nix::sched::{CloneFlags, setns};

use super::SteerError;

/// Moves this thread into the network namespace at `path`.
pub fn enter(path: &Path) -> Result<(), SteerError> {
    let file = std::fs::File::open(path).map_err(|source| SteerError::Io {
        what: "opening network namespace",
        path: path.to_path_buf(),
        source,
    })?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|source| SteerError::Netns {
        path: path.to_path_buf(),
        source,
    })
}
