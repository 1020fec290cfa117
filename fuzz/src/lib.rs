//! Helpers shared by the fuzz targets (see fuzz/README.md).

mod split;

pub use split::{Split, split};

/// A current-thread runtime with time paused: timers fire as soon as the
/// runtime is idle, so the agent's timeouts run their code without making
/// an input slow.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime")
}
