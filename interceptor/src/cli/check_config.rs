//! `mcp-interceptor check-config`: validate a config the way the agent
//! would load it, and print it with every default filled in. With
//! `--offline`, only what holds off the host (for CI): the file itself,
//! its values, the mask profiles, and the policy files when present.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Args;
use interceptor::{config::Config, mask::Masker, policy::Policies, proxy, steer};
use serde_json::json;

use super::{ConfigArg, JsonArg, error_message, exit};

/// The arguments of `check-config`.
#[derive(Args)]
#[command(after_help = exit::CHECK_CONFIG)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The config file, as an argument (the older spelling of --config).
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// Validate off the host (CI): do not read the TLS files, the upstream
    /// CA or the host's listeners; check policy files only when present.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    json: JsonArg,
}

/// What the checks found besides validity.
#[derive(Default)]
struct Findings {
    /// Facts worth printing (`# tls: ...`, `# policy: ...`).
    notes: Vec<String>,
    /// Things that work but deserve a look (stderr).
    warnings: Vec<String>,
}

/// Loads and checks the file and everything it names; prints the
/// effective config (as TOML, or in a JSON report).
pub fn run(a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let file = a.file.as_ref().unwrap_or(&a.config.config);
    let checked = check(file, a.offline);
    if !a.json.json {
        let (cfg, found) = checked?;
        for n in &found.notes {
            println!("# {n}");
        }
        for w in &found.warnings {
            eprintln!("# warning: {w}");
        }
        println!("# {} is valid; effective configuration:", file.display());
        print!("{}", toml::to_string(&cfg).context("printing the config")?);
        return Ok(ExitCode::SUCCESS);
    }
    let (report, code) = match checked {
        Ok((cfg, found)) => (
            json!({
                "valid": true, "file": file, "offline": a.offline,
                "notes": found.notes, "warnings": found.warnings, "config": cfg,
            }),
            ExitCode::SUCCESS,
        ),
        Err(e) => {
            let error = error_message(&e);
            eprintln!("mcp-interceptor: {error}");
            let report =
                json!({ "valid": false, "file": file, "offline": a.offline, "error": error });
            (report, ExitCode::FAILURE)
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(code)
}

/// The config at `file`, checked as the agent would at start (`offline`:
/// only what does not need this host).
fn check(file: &Path, offline: bool) -> anyhow::Result<(Config, Findings)> {
    let cfg = Config::load(file)?;
    let mut found = Findings::default();
    if offline {
        found
            .notes
            .push("offline: TLS files, upstream CA and listeners not checked".into());
    } else {
        // The files the agent reads at start and reload, read now, so a
        // bad certificate or key fails here and not at 3 a.m.
        if proxy::tls::server(&cfg.tls)?.is_some() {
            found
                .notes
                .push(format!("tls: {}", proxy::tls::plaintext_policy(&cfg.tls)));
        }
        proxy::upstream_for(&cfg)?;
    }
    // Every mask profile compiles (a bad custom regex fails here,
    // not at start); the key only matters for masking, not here.
    let masker = Masker::new(&cfg.mask, [0; 32])?;
    let absent: Vec<String> = cfg
        .policy
        .files
        .iter()
        .filter(|f| !f.exists())
        .map(|f| f.display().to_string())
        .collect();
    if offline && !absent.is_empty() {
        found.notes.push(format!(
            "policy not checked offline: {} absent (check it with `policy test`)",
            absent.join(", ")
        ));
    } else if !cfg.policy.files.is_empty() {
        let p = Policies::load(&cfg.policy.files)?;
        p.check_mask_profiles(|name| masker.has_profile(name))?;
        found.notes.push(format!(
            "policy: {} policies valid against the schema, version {}",
            p.count, p.version
        ));
    }
    if !offline {
        found.warnings.extend(uncovered_listeners(&cfg));
    }
    Ok((cfg, found))
}

/// Server sockets steering would not cover, as warnings (read in
/// `intercept.netns` when it can be entered).
fn uncovered_listeners(cfg: &Config) -> Vec<String> {
    if let Some(ns) = &cfg.intercept.netns
        && let Err(e) = steer::netns::enter(ns)
    {
        return vec![format!(
            "listeners not checked, cannot enter {}: {e}",
            ns.display()
        )];
    }
    let all = match steer::listeners::read() {
        Ok(l) => l,
        Err(e) => return vec![format!("listeners not checked: {e}")],
    };
    let mut out: Vec<String> = steer::listeners::wider(&cfg.intercept, &all)
        .iter()
        .map(ToString::to_string)
        .collect();
    for (port, on) in steer::listeners::shared_ports(&cfg.intercept, &all) {
        let socks: Vec<String> = on
            .iter()
            .map(|l| format!("{} (uid {})", l.addr, l.uid))
            .collect();
        out.push(format!(
            "a second listener on steered port {port}: {}; set the rule's `upstream`",
            socks.join(", ")
        ));
    }
    out
}
