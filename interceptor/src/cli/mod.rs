//! The command line: the command tree, and one file per command that
//! parses its arguments, calls the library and prints. What a command
//! computes (the doctor's checks, init's probes, policy decisions) lives
//! in the library; these files only ask and print.

mod admin;
mod approvals;
mod audit;
mod check_config;
mod completions;
mod doctor;
mod grants;
mod init;
mod policy;
mod report;
mod run;
mod steering;
mod tools;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use interceptor::config;

/// `mcp-interceptor`: the agent and the operator's tools around it.
#[derive(Parser)]
#[command(
    name = "mcp-interceptor",
    version,
    about = "Transparent security boundary for MCP servers"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent: steer the configured ports and proxy them.
    Run {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Write a starter config for the MCP servers listening on this host
    /// (each listening port is probed with an MCP `initialize`).
    Init(init::InitArgs),
    /// Validate a config file and print it with every default filled in.
    CheckConfig { file: PathBuf },
    /// Check the host and the running agent; exit 1 if anything fails.
    Doctor {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the pinned steering state (rules, sockets, counters) as JSON.
    Status {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Remove the pinned program and maps: steering stops for good.
    Detach {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Read and check the audit trail.
    Audit {
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// Ask the policy: explain one decision, or test a table of cases.
    Policy {
        #[command(subcommand)]
        cmd: policy::PolicyCmd,
    },
    /// Tool pinning: list what was pinned, review and re-pin changes.
    Tools {
        #[command(subcommand)]
        cmd: tools::ToolsCmd,
    },
    /// Human approval of held calls: list, show, approve, deny.
    Approvals {
        #[command(subcommand)]
        cmd: approvals::ApprovalsCmd,
    },
    /// Just-in-time grants: add, list, revoke.
    Grants {
        #[command(subcommand)]
        cmd: grants::GrantsCmd,
    },
    /// Evidence reports from the audit files (NIST SP 800-53).
    Report {
        #[command(subcommand)]
        cmd: report::ReportCmd,
    },
    /// Print the shell completion script for bash, zsh or fish.
    Completions {
        /// The shell: bash, zsh or fish (elvish and powershell work too).
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// Runs the command; its exit code, or the error that stopped it.
    pub fn dispatch(self) -> anyhow::Result<ExitCode> {
        match self.cmd {
            Cmd::Run { config } => run::run(config),
            Cmd::Init(args) => init::run(args),
            Cmd::CheckConfig { file } => check_config::run(&file),
            Cmd::Doctor { config } => Ok(doctor::run(&config)),
            Cmd::Status { config } => steering::status(&config),
            Cmd::Detach { config } => steering::detach(&config),
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
