//! `mcp-interceptor`: parse the command line, hand off to its command
//! (`cli/`), print the error that stopped it.

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Logging is set up by `run` from the config it loads (`[log]`); the
    // other commands print to stdout and stderr.
    match cli::Cli::parse().dispatch() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-interceptor: {}", cli::error_message(&e));
            ExitCode::FAILURE
        }
    }
}
