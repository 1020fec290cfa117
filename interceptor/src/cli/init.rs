//! `mcp-interceptor init`: probe this host's listening ports for MCP
//! servers and write a starter config (the probing and the config text are
//! `interceptor::init`).
//!
//! It never lets callers in silently: it needs `--oidc-issuer` (callers
//! with a token) or `--allow-anonymous` (anyone, said loudly), and the
//! policy directory it names starts with the starter policy only, so no
//! tool is callable until the operator permits it.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use interceptor::{
    config::{self, Config},
    init::{Callers, STARTER_POLICY},
};

use super::exit;

/// The arguments of `init`.
#[derive(Args)]
#[command(
    after_help = exit::INIT,
    group = clap::ArgGroup::new("callers").required(true).args(["oidc_issuer", "allow_anonymous"])
)]
pub struct InitArgs {
    /// Where to write the config; `-`: standard output.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = config::DEFAULT_PATH,
        visible_alias = "output",
        short_alias = 'o'
    )]
    config: PathBuf,
    /// Replace an existing config file.
    #[arg(long)]
    force: bool,
    /// The OIDC issuer callers' tokens come from (anonymous callers are
    /// refused). One of --oidc-issuer and --allow-anonymous is required.
    #[arg(long, value_name = "URL")]
    oidc_issuer: Option<String>,
    /// The audience tokens must name (with --oidc-issuer).
    #[arg(long, requires = "oidc_issuer", default_value = "mcp")]
    audience: String,
    /// Serve callers without credentials (allow_anonymous = true), for a
    /// trial without an issuer; policies still decide what they may do.
    #[arg(long)]
    allow_anonymous: bool,
    /// The policy directory the config names; created with a starter
    /// policy when absent or empty (opening sessions, calling nothing).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/mcp-interceptor/policy"
    )]
    policy_dir: PathBuf,
    /// How long each probe may take, in milliseconds.
    #[arg(long, default_value_t = 500)]
    probe_timeout_ms: u64,
}

/// Probes, says what it found on stderr, writes the config (and the
/// starter policy).
pub fn run(a: InitArgs) -> anyhow::Result<ExitCode> {
    // The agent's own listeners are not servers to protect.
    let skip: Vec<u16> = Config::default()
        .intercept
        .proxy_listen
        .iter()
        .map(|a| a.port())
        .collect();
    let found = interceptor::init::discover(&skip, Duration::from_millis(a.probe_timeout_ms));
    let callers = match &a.oidc_issuer {
        Some(issuer) => Callers::Oidc {
            issuer: issuer.clone(),
            audience: a.audience.clone(),
        },
        None => Callers::Anonymous,
    };
    let text = interceptor::init::render(&found, &callers, &a.policy_dir);
    for f in &found {
        eprintln!(
            "found an MCP server on port {} ({})",
            f.port,
            f.paths.join(", ")
        );
    }
    if found.is_empty() {
        eprintln!(
            "no MCP server answered on this host; the config has a commented rule to fill in"
        );
    }
    if callers == Callers::Anonymous {
        eprintln!(
            "warning: --allow-anonymous: callers without credentials are served; add an identity source before production"
        );
    }
    if a.config.as_os_str() == "-" {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    write(&a.config, a.force, &text)?;
    starter_policy(&a.policy_dir)?;
    eprintln!(
        "next: write a policy in {}, then `mcp-interceptor check-config -c {}` and \
         `mcp-interceptor doctor --preflight -c {}`",
        a.policy_dir.display(),
        a.config.display(),
        a.config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `output`, refusing to replace a file without `force`.
fn write(output: &Path, force: bool, text: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        force || !output.exists(),
        "{} exists; use --force to replace it",
        output.display()
    );
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(output, text).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// Puts the starter policy in `dir` unless it already holds policies.
fn starter_policy(dir: &Path) -> anyhow::Result<()> {
    let has_policies = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "cedar"))
        })
        .unwrap_or(false);
    if has_policies {
        eprintln!("kept the policies in {}", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("starter.cedar");
    std::fs::write(&file, STARTER_POLICY).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "wrote {}: sessions open, no tool is callable until a policy permits it",
        file.display()
    );
    Ok(())
}
