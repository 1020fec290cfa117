//! `mcp-interceptor status` and `detach`: the steering state pinned in
//! bpffs, read or removed without the agent.

use std::process::ExitCode;

use clap::Args;
use interceptor::{config::Config, steer};
use serde_json::json;

use super::{ConfigArg, JsonArg, error_message, exit};

/// The arguments of `status`.
#[derive(Args)]
#[command(after_help = exit::STATUS)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print JSON (status always does; accepted like every reporting
    /// command's --json).
    #[arg(long)]
    json: bool,
}

/// The arguments of `detach`.
#[derive(Args)]
#[command(after_help = exit::PLAIN)]
pub struct DetachArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    json: JsonArg,
}

/// Prints the pinned steering state (rules, sockets, counters) as JSON;
/// when nothing is pinned, JSON that says so, and exit 1.
pub fn status(a: &StatusArgs) -> anyhow::Result<ExitCode> {
    // JSON either way: scripts parse status, with or without the flag.
    let _ = a.json;
    let cfg = Config::load(&a.config.config)?;
    let pin_dir = &cfg.intercept.pin_dir;
    match steer::pins::read(pin_dir) {
        Ok(state) => {
            let mut v = serde_json::to_value(&state)?;
            v["attached"] = json!(true);
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let why = error_message(&e.into());
            let v = json!({ "attached": false, "pin_dir": pin_dir, "error": why });
            println!("{}", serde_json::to_string_pretty(&v)?);
            eprintln!(
                "mcp-interceptor: nothing pinned under {}: {why}",
                pin_dir.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Removes the pinned program and maps; prints what went.
pub fn detach(a: &DetachArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&a.config.config)?;
    let pin_dir = &cfg.intercept.pin_dir;
    let removed = steer::detach(pin_dir)?;
    if a.json.json {
        let v = json!({ "pin_dir": pin_dir, "removed": removed });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if removed.is_empty() {
        println!("nothing pinned under {}", pin_dir.display());
    }
    for p in removed {
        println!("removed {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
