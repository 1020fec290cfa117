//! `mcp-interceptor run`: the agent itself.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use interceptor::{agent, config::Config, steer, telemetry};

/// Loads the config, sets up logging from it, and runs the agent until it
/// stops.
pub fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&config)?;
    telemetry::init(&cfg.log);
    // Before any thread exists: setns moves only the calling thread.
    if let Some(ns) = &cfg.intercept.netns {
        steer::netns::enter(ns)?;
    }
    raise_fd_limit(cfg.http.max_connections);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(agent::run(config, cfg)).inspect_err(|e| {
        tracing::error!(error = %e, "agent failed");
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft open-file limit to the hard one, as nginx's
/// `worker_rlimit_nofile` does: each client connection holds a descriptor,
/// and another for its upstream while a request is in flight, so the
/// usual soft limit of 1024 would cap the agent near 500 clients. Warns
/// when `http.max_connections` cannot fit: the limit would then show as
/// failed accepts and upstream connects instead of counted 503s.
fn raise_fd_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
                soft
            }
        }
    } else {
        soft
    };
    tracing::info!(nofile = limit, was = soft, "open-file limit");
    // Upstream connections (in ebpf mode at most the bypass range, 324 by
    // default), listeners, audit files, the admin socket: besides the
    // clients, a few hundred.
    let needed = max_connections as u64 + 2048;
    if limit < needed {
        tracing::warn!(
            nofile = limit,
            max_connections,
            needed,
            "http.max_connections needs more descriptors than the open-file limit allows: \
             lower it, or raise LimitNOFILE (systemd) / ulimit -n"
        );
    }
}
