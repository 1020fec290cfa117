//! `mcp-interceptor check-config`: validate a config the way the agent
//! would load it, and print it with every default filled in.

use std::{path::Path, process::ExitCode};

use anyhow::Context;
use interceptor::{config::Config, mask::Masker, policy::Policies, proxy, steer};

/// Loads and checks `file` and everything it names; prints the effective
/// config.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(file)?;
    // The files the agent reads at start and reload, read now, so a
    // bad certificate or key fails here and not at 3 a.m.
    if proxy::tls::server(&cfg.tls)?.is_some() {
        println!("# tls: {}", proxy::tls::plaintext_policy(&cfg.tls));
    }
    proxy::upstream_for(&cfg)?;
    // Every mask profile compiles (a bad custom regex fails here,
    // not at start); the key only matters for masking, not here.
    let masker = Masker::new(&cfg.mask, [0; 32])?;
    if !cfg.policy.files.is_empty() {
        let p = Policies::load(&cfg.policy.files)?;
        p.check_mask_profiles(|name| masker.has_profile(name))?;
        println!(
            "# policy: {} policies valid against the schema, version {}",
            p.count, p.version
        );
    }
    uncovered_listeners(&cfg);
    println!("# {} is valid; effective configuration:", file.display());
    print!("{}", toml::to_string(&cfg).context("printing the config")?);
    Ok(ExitCode::SUCCESS)
}

/// Server sockets steering would not cover, as warnings on stderr (read
/// in `intercept.netns` when it can be entered).
fn uncovered_listeners(cfg: &Config) {
    if let Some(ns) = &cfg.intercept.netns
        && let Err(e) = steer::netns::enter(ns)
    {
        eprintln!(
            "# note: listeners not checked, cannot enter {}: {e}",
            ns.display()
        );
        return;
    }
    let all = match steer::listeners::read() {
        Ok(l) => l,
        Err(e) => return eprintln!("# note: listeners not checked: {e}"),
    };
    for w in steer::listeners::wider(&cfg.intercept, &all) {
        eprintln!("# warning: {w}");
    }
    for (port, on) in steer::listeners::shared_ports(&cfg.intercept, &all) {
        let socks: Vec<String> = on
            .iter()
            .map(|l| format!("{} (uid {})", l.addr, l.uid))
            .collect();
        eprintln!(
            "# warning: a second listener on steered port {port}: {}; set the rule's `upstream`",
            socks.join(", ")
        );
    }
}
