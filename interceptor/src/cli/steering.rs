//! `mcp-interceptor status` and `detach`: the steering state pinned in
//! bpffs, read or removed without the agent.

use std::{path::Path, process::ExitCode};

use interceptor::{config::Config, steer};

/// Prints the pinned steering state (rules, sockets, counters) as JSON.
pub fn status(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let state = steer::pins::read(&cfg.intercept.pin_dir)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(ExitCode::SUCCESS)
}

/// Removes the pinned program and maps; prints what went.
pub fn detach(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let removed = steer::detach(&cfg.intercept.pin_dir)?;
    if removed.is_empty() {
        println!("nothing pinned under {}", cfg.intercept.pin_dir.display());
    }
    for p in removed {
        println!("removed {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
