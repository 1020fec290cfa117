//! `cargo xtask bench`: every configuration measured in one run, in one
//! network namespace, against the same real MCP server (rmcp, JSON
//! responses, a ~2 KB customer record per call), reported as ratios
//! against a direct connection and an nginx hop. Every request carries
//! one OIDC bearer token from a local issuer; the agent configurations with
//! the identity stage verify it, the others pass it through; those with
//! the policy stage decide each call against 100 Cedar policies
//! (`policy_set`), whose decision time is also measured in-process.
//!
//! The agent's rows add one stage at a time to the MCP-aware hop alone
//! (identity, policy, masking, audit), up to everything on; the report
//! checks issue 22's targets (`targets`) and draws CPU per call against
//! policy-set size and result size.
//!
//! `--quick`: a short smoke run (CI checks that it completes; the numbers
//! mean nothing there). `--stages`: only the in-process policy and masking
//! measurements, no network (for working on those two stages).
//! `--profile`: the everything-on agent under load, sampled by `perf`
//! (`profile`).

mod audit_rate;
mod corpus;
mod load;
mod mask_rate;
mod plots;
mod policy_set;
mod policy_time;
mod procstat;
mod profile;
mod report;
mod run;
mod setups;
mod targets;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use mcp_interceptor_tests::{NetNs, TempDir, require_root};

// The in-process stage measurements (policy, masking, audit) run with the
// agent's own allocator, or they would time glibc malloc instead.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long and how wide each measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub closed: Duration,
    pub open: Duration,
    pub sweep: Duration,
    /// Each point of the policy-size and result-size curves.
    pub curve: Duration,
    pub conns: usize,
    pub sweep_conns: &'static [usize],
    /// Policy-set sizes of the CPU-per-call curve.
    pub policy_curve: &'static [usize],
    /// Result sizes (bytes) of the CPU-per-call curve.
    pub size_curve: &'static [usize],
    pub audit_rows: u64,
    pub policy_decisions: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            // Every path once, briefly: CI runs this on every change.
            Plan {
                closed: Duration::from_millis(500),
                open: Duration::from_millis(400),
                sweep: Duration::from_millis(300),
                curve: Duration::from_millis(300),
                conns: 4,
                sweep_conns: &[1, 10],
                policy_curve: &[10],
                size_curve: &[1 << 20],
                audit_rows: 2_000,
                policy_decisions: 1_000,
            }
        } else {
            Plan {
                closed: Duration::from_secs(8),
                open: Duration::from_secs(5),
                sweep: Duration::from_secs(4),
                curve: Duration::from_secs(4),
                conns: 16,
                sweep_conns: &[1, 100, 1000],
                policy_curve: &[10, 100, 1000],
                size_curve: &[1 << 10, 64 << 10, 1 << 20],
                audit_rows: 100_000,
                policy_decisions: 5_000,
            }
        }
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--stages") {
        return stages(quick);
    }
    let out: PathBuf = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    require_root();
    let plan = Plan::new(quick);
    let ns = NetNs::new("bench");
    let dir = TempDir::new("bench");
    // This process joins the namespace before it starts any thread, so the
    // load generator's sockets are there; helpers run via `ip netns exec`.
    let file = std::fs::File::open(ns.path()).context("open netns")?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;

    let servers = setups::servers(&ns, &dir)?;
    if std::env::args().any(|a| a == "--profile") {
        return profile::run(&ns, &dir, &servers, &plan, &out);
    }
    let started = std::time::Instant::now();
    // MCPI_BENCH_ONLY=<substring>: run only matching configurations (for
    // investigating one of them; the direct run always comes first).
    let only = std::env::var("MCPI_BENCH_ONLY").ok();
    let mut results = run::Results::default();
    for (setup, role) in setups::all(plan.policy_curve) {
        let name = setup.name();
        if let Some(o) = &only
            && !name.contains(o.as_str())
            && setup != setups::Setup::Direct
        {
            continue;
        }
        run::one(setup, role, &ns, &dir, &servers, &plan, &mut results)?;
    }
    let rows_override = std::env::var("MCPI_BENCH_AUDIT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok());
    let audit = audit_rate::measure(&dir, rows_override.unwrap_or(plan.audit_rows))?;
    eprintln!(
        "    bench process after the audit writer run: {}",
        procstat::memory(&[std::process::id()])
    );
    eprintln!("==> bench: policy decision time (in-process)");
    let policy = policy_time::measure(plan.policy_decisions)?;
    eprintln!("    {}", policy.summary());
    eprintln!("==> bench: masking throughput (in-process, one core)");
    let (mask_bytes, mask_rounds) = if quick { (1 << 20, 3) } else { (4 << 20, 10) };
    let mask = mask_rate::measure(mask_bytes, mask_rounds)?;
    eprintln!("    {}", mask.summary());
    let stage = report::Stages {
        audit,
        policy,
        mask,
    };
    let targets = targets::evaluate(&results, &stage);
    report::write(&out, quick, &results, &stage, &targets, started.elapsed())?;
    Ok(())
}

/// `--stages`: the policy and masking stages in-process, printed.
fn stages(quick: bool) -> Result<()> {
    let plan = Plan::new(quick);
    // MCPI_BENCH_ONLY=policy|masking: one of the two (for profiling).
    let only = std::env::var("MCPI_BENCH_ONLY").unwrap_or_default();
    if only != "masking" {
        let policy = policy_time::measure(plan.policy_decisions)?;
        println!("policy: {}", policy.summary());
    }
    if only == "policy" {
        return Ok(());
    }
    let (bytes, rounds) = if quick { (1 << 20, 3) } else { (4 << 20, 10) };
    println!("masking: {}", mask_rate::measure(bytes, rounds)?.summary());
    Ok(())
}
