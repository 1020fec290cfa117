//! `mcp-interceptor doctor`: print the checks of `interceptor::doctor`,
//! one per line, and a summary; exit 1 when any failed.

use std::{path::Path, process::ExitCode};

use interceptor::doctor::{self, Status};

/// Runs every check for the config at `config` and prints them.
pub fn run(config: &Path) -> ExitCode {
    let checks = doctor::run(config);
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed == 0 {
        println!("all {} checks passed", checks.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} checks failed", checks.len());
        ExitCode::FAILURE
    }
}
