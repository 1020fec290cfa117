//! Test harness shared by the end-to-end tests and `cargo xtask demo`.
//!
//! Every scenario runs in network namespaces it creates (`NetNs`), with real
//! processes (`Proc`): the agent binary, the rmcp-based `mcp-peer` server
//! and client. Guards undo everything on drop, panics included: processes
//! are killed, pins removed, namespaces deleted. Nothing here talks to an
//! address outside those namespaces.

pub mod agent;
pub mod auditq;
pub mod bundle;
pub mod everything;
pub mod fleet;
pub mod http;
pub mod netns;
pub mod oidc;
pub mod peer;
pub mod pki;
pub mod proc;
pub mod s3;
pub mod sdk;
pub mod world;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

pub use agent::Agent;
pub use netns::{NetNs, Veth};
pub use proc::{Proc, run_in};

/// Where the workspace's dev binaries are: beside the running test or demo
/// executable (`target/debug` or `target/debug/deps`), or `$MCPI_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MCPI_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("target profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary, with a clear failure if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` (cargo xtask test does)",
        p.display()
    );
    p
}

/// A short name unique within this host for this run: `<tag><pid><n>`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails loudly (never skips) when the tests cannot do kernel work.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    assert!(
        uid.split_whitespace().nth(1) == Some("0"),
        "end-to-end tests need root (network namespaces, eBPF); run them via `cargo xtask test`"
    );
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("mcpi-{}", unique(tag)));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
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
