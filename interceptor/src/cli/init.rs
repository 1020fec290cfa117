//! `mcp-interceptor init`: probe this host's listening ports for MCP
//! servers and write a starter config (the probing and the config text are
//! `interceptor::init`).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Args;
use interceptor::config::{self, Config};

/// The arguments of `init`.
#[derive(Args)]
pub struct InitArgs {
    /// Where to write it; `-`: standard output.
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// The OIDC issuer callers' tokens come from (else anonymous
    /// callers are allowed until you add one).
    #[arg(long)]
    oidc_issuer: Option<String>,
    /// The audience tokens must name (with --oidc-issuer).
    #[arg(long, requires = "oidc_issuer")]
    audience: Option<String>,
    /// How long each probe may take.
    #[arg(long, default_value_t = 500)]
    probe_timeout_ms: u64,
}

/// Probes, says what it found on stderr, writes the config.
pub fn run(a: InitArgs) -> anyhow::Result<ExitCode> {
    // The agent's own listeners are not servers to protect.
    let skip: Vec<u16> = Config::default()
        .intercept
        .proxy_listen
        .iter()
        .map(|a| a.port())
        .collect();
    let found = interceptor::init::discover(&skip, Duration::from_millis(a.probe_timeout_ms));
    let text = interceptor::init::render(&found, a.oidc_issuer.as_deref(), a.audience.as_deref());
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
    if a.oidc_issuer.is_none() {
        eprintln!(
            "warning: no --oidc-issuer: the config allows anonymous callers until you add an identity source"
        );
    }
    if a.output.as_os_str() == "-" {
        print!("{text}");
    } else {
        write(&a.output, a.force, &text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `output`, refusing to replace a file without `force`.
fn write(output: &std::path::Path, force: bool, text: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        force || !output.exists(),
        "{} exists; use --force to replace it",
        output.display()
    );
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(output, text).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "wrote {}; check it with `mcp-interceptor check-config {}`",
        output.display(),
        output.display()
    );
    Ok(())
}
