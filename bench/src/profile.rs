//! `--profile`: the agent with everything on (identity, 100-policy Cedar,
//! masking, audit) under the bench's closed-loop load, sampled with call
//! graphs by `perf record -g -e cpu-clock` (a software clock: works where
//! the VM exposes no hardware counters). Writes to the output directory:
//! `profile.txt` (the top symbols by own time, then by shared object),
//! `profile.folded` (stacks folded one per line, for flame graph tools)
//! and keeps `perf.data` for `perf report -i`.

use std::{collections::HashMap, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use mcp_interceptor_tests::{NetNs, TempDir};

use crate::{
    Plan,
    load::{self, Mode},
    run,
    setups::{self, Servers, Setup},
};

/// perf, as Debian's linux-perf installs it.
const PERF: &str = "/usr/bin/perf";

pub fn run(ns: &NetNs, dir: &TempDir, servers: &Servers, plan: &Plan, out: &Path) -> Result<()> {
    let setup = Setup::Ebpf(setups::EVERYTHING);
    std::fs::create_dir_all(out)?;
    let running = run::start(setup, ns, dir, servers, plan.conns)?;
    let recorded = record(&running, servers, plan, out);
    running.stop();
    let (throughput, requests) = recorded?;
    let data = out.join("perf.data");
    let flat = report(&data, &["--sort", "dso,symbol", "--percent-limit", "0.5"])?;
    let dsos = report(&data, &["--sort", "dso", "--percent-limit", "0.5"])?;
    let text = format!(
        "{}: {throughput:.0} req/s, {requests} requests profiled ({} connections, closed loop)\n\
         \n== own time by symbol (perf report --no-children --sort dso,symbol) ==\n{flat}\
         \n== own time by shared object (--sort dso) ==\n{dsos}",
        setup.name(),
        plan.conns,
    );
    std::fs::write(out.join("profile.txt"), &text)?;
    let folded = fold(&data)?;
    std::fs::write(out.join("profile.folded"), folded)?;
    println!("{text}");
    println!(
        "written: {0}/profile.txt {0}/profile.folded {0}/perf.data",
        out.display()
    );
    Ok(())
}

/// Samples the agent while the load runs; (req/s, requests).
fn record(
    running: &setups::Running,
    servers: &Servers,
    plan: &Plan,
    out: &Path,
) -> Result<(f64, u64)> {
    let pid = running.pids[0].to_string();
    let mut perf = Command::new(PERF)
        .args([
            "record",
            "-g",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "-p",
            &pid,
            "-o",
        ])
        .arg(out.join("perf.data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("{PERF} (Debian linux-perf)"))?;
    let body = load::body(None);
    let o = load::run(
        running.target,
        &servers.token,
        &body,
        plan.conns,
        Mode::Closed,
        plan.closed,
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(perf.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = perf.wait().context("waiting for perf record")?;
    let o = o?;
    // perf exits non-zero on SIGINT on some versions; a missing file is
    // the failure that matters.
    if !out.join("perf.data").exists() {
        bail!("perf record wrote nothing ({status})");
    }
    Ok((o.throughput(), o.requests))
}

fn report(data: &Path, sort: &[&str]) -> Result<String> {
    let o = Command::new(PERF)
        .args(["report", "--stdio", "--no-children", "-g", "none"])
        .args(sort)
        .arg("-i")
        .arg(data)
        .output()
        .context("perf report")?;
    if !o.status.success() {
        bail!("perf report: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `perf script`'s stacks folded as `outer;...;inner count` lines, most
/// frequent first (the format flame graph tools read).
fn fold(data: &Path) -> Result<String> {
    let o = Command::new(PERF)
        .args(["script", "-F", "comm,ip,sym", "-i"])
        .arg(data)
        .output()
        .context("perf script")?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut counts: HashMap<String, u64> = HashMap::new();
    for sample in text.split("\n\n") {
        let mut lines = sample.lines().filter(|l| !l.trim().is_empty());
        let Some(comm) = lines.next().map(str::trim) else {
            continue;
        };
        // Frames come innermost first: "<ip> <symbol>".
        let mut frames: Vec<&str> = lines
            .map(|l| {
                let l = l.trim();
                l.split_once(' ').map_or(l, |(_, sym)| sym.trim())
            })
            .collect();
        frames.push(comm);
        frames.reverse();
        *counts.entry(frames.join(";")).or_default() += 1;
    }
    let mut lines: Vec<(String, u64)> = counts.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(lines
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}\n"))
        .collect())
}
