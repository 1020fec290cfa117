//! The official Python SDK's test peers (tests/peers/*_server.py, built on
//! `sdk_peer.py`): started the same way by every MCP 2026-07-28 test.

use std::{path::Path, time::Duration};

use crate::{NetNs, Proc, everything::repo, s3::venv_bin};

/// Starts `tests/peers/<script>` in `ns` on 127.0.0.1:8080 (`args` come
/// after, so they may name another host or port) and waits for its
/// `<name> server ready` line.
pub fn server(ns: &NetNs, script: &str, args: &[&str], dir: &Path) -> Proc {
    let mut argv = vec!["--port".to_string(), "8080".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let name = format!("{}-{}", script.trim_end_matches(".py"), ns.name());
    let mut p = Proc::spawn(
        &name,
        Some(ns.name()),
        &venv_bin("python"),
        &script_args(script, &argv),
        dir,
    );
    p.wait_for_output("server ready", Duration::from_secs(30));
    p
}

/// The Python command line of `tests/peers/<script>` with `args`.
pub fn script_args(script: &str, args: &[String]) -> Vec<String> {
    let path = repo().join("tests/peers").join(script);
    std::iter::once(path.display().to_string())
        .chain(args.iter().cloned())
        .collect()
}
