//! `cargo xtask bench`: every configuration measured in one run, in one
//! network namespace, against the same real MCP server (rmcp, JSON
//! responses, a ~2 KB customer record per call), reported as ratios
//! against a direct connection and an nginx hop. Every request carries
//! one OIDC bearer token from a local issuer; the agent configurations with
//! the identity stage verify it, the others pass it through; those with
//! the policy stage decide each call against ~100 Cedar policies
//! (`policy_set`), whose decision time is also measured in-process.
//!
//! `--quick`: a short smoke run (CI checks that it completes; the numbers
//! mean nothing there). `--stages`: only the in-process policy and masking
//! measurements, no network (for working on those two stages).

mod audit_rate;
mod corpus;
mod load;
mod mask_rate;
mod policy_set;
mod policy_time;
mod procstat;
mod report;
mod setups;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use mcp_interceptor_tests::{NetNs, TempDir, require_root};
use serde::Serialize;

use load::Mode;

// The in-process stage measurements (policy, masking, audit) run with the
// agent's own allocator, or they would time glibc malloc instead.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub closed: Duration,
    pub open: Duration,
    pub sweep: Duration,
    pub conns: usize,
    pub sweep_conns: &'static [usize],
    pub audit_rows: u64,
    pub policy_decisions: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                closed: Duration::from_millis(800),
                open: Duration::from_millis(800),
                sweep: Duration::from_millis(500),
                conns: 4,
                sweep_conns: &[1, 10],
                audit_rows: 2_000,
                policy_decisions: 1_000,
            }
        } else {
            Plan {
                closed: Duration::from_secs(8),
                open: Duration::from_secs(5),
                sweep: Duration::from_secs(4),
                conns: 16,
                sweep_conns: &[1, 100, 1000],
                audit_rows: 100_000,
                policy_decisions: 5_000,
            }
        }
    }
}

/// One configuration's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub throughput: f64,
    pub errors: u64,
    /// Closed loop, microseconds.
    pub p50: f64,
    pub p99: f64,
    /// Open loop at a fixed rate (coordinated-omission corrected), µs.
    pub open_rate: f64,
    pub open_p50: f64,
    pub open_p90: f64,
    pub open_p99: f64,
    pub open_p999: f64,
    /// CPU of the proxy process(es) per request, µs (closed loop).
    pub proxy_cpu_us: f64,
    /// CPU of the MCP server per request, µs.
    pub server_cpu_us: f64,
    pub proxy_rss_mib: f64,
    /// Mean response body, bytes (sanity: the same answer everywhere).
    pub response_bytes: f64,
    /// Latency CDF points (µs, fraction) from the open-loop run.
    pub cdf: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub name: String,
    pub conns: usize,
    pub throughput: f64,
    pub p99: f64,
    pub errors: u64,
    pub proxy_rss_mib: f64,
}

fn cdf(o: &load::Outcome) -> Vec<(f64, f64)> {
    [
        0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0,
    ]
    .iter()
    .map(|q| (o.pct(*q), *q))
    .collect()
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
        return profile(&ns, &dir, &servers, &plan, &out);
    }
    let mut rows = Vec::new();
    let mut sweep = Vec::new();
    let mut open_rate = 0.0;
    // MCPI_BENCH_ONLY=<substring>: run only matching configurations (for
    // investigating one of them; the direct run always comes first).
    let only = std::env::var("MCPI_BENCH_ONLY").ok();
    for setup in setups::ALL {
        if let Some(o) = &only
            && !setup.name().contains(o.as_str())
            && setup.name() != "direct"
        {
            continue;
        }
        eprintln!("==> bench: {}", setup.name());
        let running = setup.start(&ns, &dir, &servers)?;
        let target: SocketAddr = running.target;
        let bearer = servers.token.as_str();
        // A refused token or a policy that denies the bench's call would
        // otherwise pass as a fast configuration (or one with zero
        // throughput).
        if let Err(e) = load::probe(target, bearer) {
            running.stop();
            bail!("{}: the bench's call is not answered: {e:#}", setup.name());
        }
        // Warm up: connections, pools, page cache, the issuer's keys.
        let warm = load::run(
            target,
            bearer,
            plan.conns,
            Mode::Closed,
            Duration::from_millis(300),
        )?;
        if warm.requests == 0 {
            // Refused tokens or an unreachable issuer would otherwise pass
            // as a configuration with zero throughput.
            running.stop();
            bail!("{}: no request succeeded in the warm-up", setup.name());
        }
        let (p0, s0) = (
            procstat::cpu_of(&running.pids),
            procstat::cpu_of(&servers.pids),
        );
        let closed = load::run(target, bearer, plan.conns, Mode::Closed, plan.closed)?;
        let (p1, s1) = (
            procstat::cpu_of(&running.pids),
            procstat::cpu_of(&servers.pids),
        );
        if open_rate == 0.0 {
            // Half of what the direct path sustains: every configuration
            // should keep up, so latency is compared, not saturation.
            open_rate = (closed.throughput() * 0.5).max(50.0);
        }
        let open = load::run(target, bearer, plan.conns, Mode::Open(open_rate), plan.open)?;
        if !running.pids.is_empty() {
            eprintln!("    memory: {}", procstat::memory(&running.pids));
        }
        let n = closed.requests.max(1) as f64;
        rows.push(Row {
            name: setup.name().into(),
            throughput: closed.throughput(),
            errors: closed.errors + open.errors,
            p50: closed.pct(0.5),
            p99: closed.pct(0.99),
            open_rate,
            open_p50: open.pct(0.5),
            open_p90: open.pct(0.9),
            open_p99: open.pct(0.99),
            open_p999: open.pct(0.999),
            proxy_cpu_us: (p1 - p0) * 1e6 / n,
            server_cpu_us: (s1 - s0) * 1e6 / n,
            proxy_rss_mib: procstat::rss_mib(&running.pids),
            response_bytes: closed.response_bytes as f64 / n,
            cdf: cdf(&open),
        });
        if setup.in_sweep() {
            for &c in plan.sweep_conns {
                let o = load::run(target, bearer, c, Mode::Closed, plan.sweep)?;
                sweep.push(SweepPoint {
                    name: setup.name().into(),
                    conns: c,
                    throughput: o.throughput(),
                    p99: o.pct(0.99),
                    errors: o.errors,
                    proxy_rss_mib: procstat::rss_mib(&running.pids),
                });
            }
        }
        running.stop();
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
    eprintln!(
        "    {} policies: p50 {:.1} µs, p99 {:.1} µs (target p50 <= {:.0} µs: {})",
        policy.policies,
        policy.p50_us,
        policy.p99_us,
        policy.target_p50_us,
        if policy.target_met { "met" } else { "not met" }
    );
    eprintln!("==> bench: masking throughput (in-process, one core)");
    let (mask_bytes, mask_rounds) = if quick { (1 << 20, 3) } else { (4 << 20, 10) };
    let mask = mask_rate::measure(mask_bytes, mask_rounds)?;
    eprintln!("    {}", mask.summary());
    report::write(&out, quick, &rows, &sweep, &audit, &policy, &mask)?;
    Ok(())
}

/// `--profile`: the agent with every stage on (identity, policy, audit), under
/// closed-loop load, sampled by `perf record -e cpu-clock` (software clock:
/// works where the VM exposes no hardware counters); the flat profile goes
/// to `<out>/profile.txt`.
fn profile(
    ns: &NetNs,
    dir: &TempDir,
    servers: &setups::Servers,
    plan: &Plan,
    out: &std::path::Path,
) -> Result<()> {
    let setup = setups::Setup::AgentEbpfAll;
    let running = setup.start(ns, dir, servers)?;
    let pid = running.pids[0].to_string();
    let data = dir.path().join("perf.data");
    let mut perf = std::process::Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "4000", "-p", &pid, "-o"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("perf (Debian linux-perf)")?;
    let o = load::run(
        running.target,
        &servers.token,
        plan.conns,
        Mode::Closed,
        plan.closed,
    )?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(perf.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = perf.wait();
    let report = std::process::Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "0.7",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("perf report")?;
    std::fs::create_dir_all(out)?;
    let text = format!(
        "{}: {:.0} req/s, {} requests profiled\n\n{}",
        setup.name(),
        o.throughput(),
        o.requests,
        String::from_utf8_lossy(&report.stdout)
    );
    std::fs::write(out.join("profile.txt"), &text)?;
    println!("{text}");
    running.stop();
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
