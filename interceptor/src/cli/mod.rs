//! The command line: the command tree, and one file per command that
//! parses its arguments, calls the library and prints. What a command
//! computes (the doctor's checks, init's probes, policy decisions) lives
//! in the library; these files only ask and print.
//!
//! Every command takes the same spellings: `-c/--config FILE` (default
//! `/etc/mcp-interceptor/config.toml`) where it reads the config,
//! `--dir DIR` where it reads audit files, `--json` where it reports, and
//! an EXIT STATUS section in its help (`tests.rs` walks the tree and keeps
//! all of that true).

mod admin;
mod approvals;
mod audit;
mod check_config;
mod completions;
mod doctor;
mod exit;
mod grants;
mod init;
mod policy;
mod publish;
mod report;
mod run;
mod steering;
mod tools;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use interceptor::config;

/// `mcp-interceptor`: the agent and the operator's tools around it.
#[derive(Parser)]
#[command(
    name = "mcp-interceptor",
    version,
    about = "Transparent security boundary for MCP servers",
    after_help = exit::ROOT
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `-c/--config`: the one spelling and default of the config file.
#[derive(Args, Clone)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, short, value_name = "FILE", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

/// `--json`: machine-readable output instead of text.
#[derive(Args, Clone, Copy)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent: steer the configured ports and proxy them.
    #[command(after_help = exit::RUN)]
    Run(ConfigArg),
    /// Write a starter config for the MCP servers listening on this host
    /// (each listening port is probed with an MCP `initialize`).
    Init(init::InitArgs),
    /// Validate a config file and print it with every default filled in.
    CheckConfig(check_config::CheckArgs),
    /// Check the host and the running agent (or, with --preflight, what a
    /// first start needs); exit 1 if anything fails.
    Doctor(doctor::DoctorArgs),
    /// Print the pinned steering state (rules, sockets, counters) as JSON.
    Status(steering::StatusArgs),
    /// Remove the pinned program and maps: steering stops for good.
    Detach(steering::DetachArgs),
    /// Read and check the audit trail.
    #[command(after_help = exit::PARENT)]
    Audit {
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// Ask the policy: explain one decision, or test a table of cases.
    #[command(after_help = exit::PARENT)]
    Policy {
        #[command(subcommand)]
        cmd: policy::PolicyCmd,
    },
    /// Tool pinning: list what was pinned, review and re-pin changes.
    #[command(after_help = exit::PARENT)]
    Tools {
        #[command(subcommand)]
        cmd: tools::ToolsCmd,
    },
    /// Human approval of held calls: list, show, approve, deny.
    #[command(after_help = exit::PARENT)]
    Approvals {
        #[command(subcommand)]
        cmd: approvals::ApprovalsCmd,
    },
    /// Just-in-time grants: add, list, revoke.
    #[command(after_help = exit::PARENT)]
    Grants {
        #[command(subcommand)]
        cmd: grants::GrantsCmd,
    },
    /// Evidence reports from the audit files (NIST SP 800-53).
    #[command(after_help = exit::PARENT)]
    Report {
        #[command(subcommand)]
        cmd: report::ReportCmd,
    },
    /// Print the shell completion script for bash, zsh or fish.
    #[command(after_help = exit::PLAIN)]
    Completions {
        /// The shell: bash, zsh or fish (elvish and powershell work too).
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// Runs the command; its exit code, or the error that stopped it.
    pub fn dispatch(self) -> anyhow::Result<ExitCode> {
        match self.cmd {
            Cmd::Run(c) => run::run(c.config),
            Cmd::Init(args) => init::run(args),
            Cmd::CheckConfig(args) => check_config::run(&args),
            Cmd::Doctor(args) => Ok(doctor::run(&args)),
            Cmd::Status(args) => steering::status(&args),
            Cmd::Detach(args) => steering::detach(&args),
            Cmd::Audit { cmd } => audit::run(cmd),
            Cmd::Policy { cmd } => policy::run(cmd),
            Cmd::Tools { cmd } => tools::run(cmd),
            Cmd::Approvals { cmd } => approvals::run(cmd),
            Cmd::Grants { cmd } => grants::run(cmd),
            Cmd::Report { cmd } => report::run(cmd),
            Cmd::Completions { shell } => completions::run(shell),
        }
    }
}

/// The error that stopped a command, each cause said once (see
/// `interceptor::error::one_line`).
pub fn error_message(e: &anyhow::Error) -> String {
    interceptor::error::one_line(e.as_ref())
}

#[cfg(test)]
mod tests;
