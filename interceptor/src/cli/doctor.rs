//! `mcp-interceptor doctor`: print the checks of `interceptor::doctor`,
//! one per line (or as JSON), and a summary; exit 1 when any failed.

use std::process::ExitCode;

use clap::Args;
use interceptor::doctor::{self, Scope, Status};
use serde_json::json;

use super::{ConfigArg, JsonArg, exit};

/// The arguments of `doctor`.
#[derive(Args)]
#[command(after_help = exit::DOCTOR)]
pub struct DoctorArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Check what a start needs, before the first start (config, kernel,
    /// BTF, bpffs, free ports, writable state, issuer, S3), not the state
    /// only a running agent has (pins, registered sockets, counters).
    #[arg(long)]
    preflight: bool,
    #[command(flatten)]
    json: JsonArg,
}

/// Runs every check for the config and prints them.
pub fn run(a: &DoctorArgs) -> ExitCode {
    let scope = if a.preflight {
        Scope::Preflight
    } else {
        Scope::Running
    };
    let checks = doctor::run(&a.config.config, scope);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if a.json.json {
        let report = json!({
            "passed": failed == 0,
            "preflight": a.preflight,
            "config": a.config.config,
            "failed": failed,
            "checks": checks,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for c in &checks {
            println!("{c}");
        }
        if failed == 0 {
            println!("all {} checks passed", checks.len());
        } else {
            println!("{failed} of {} checks failed", checks.len());
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
