//! One configuration measured: started, checked, warmed, then its row
//! (closed and open loop), its concurrency sweep, its curve points, and
//! stopped.

use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use mcp_interceptor_tests::{NetNs, TempDir};
use serde::Serialize;

use crate::{
    Plan,
    load::{self, Mode, Outcome},
    procstat,
    setups::{self, Role, Running, Servers, Setup},
};

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

/// One closed-loop run of the concurrency sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub name: String,
    pub conns: usize,
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
    pub errors: u64,
    pub proxy_cpu_us: f64,
    /// After the run.
    pub proxy_rss_mib: f64,
    /// The proxy's peak RSS so far (VmHWM): the sweep runs from few to
    /// many connections, so after the largest it is that run's peak.
    pub proxy_peak_rss_mib: f64,
}

/// Which curve a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Curve {
    /// x: policies in the set.
    Policies,
    /// x: result bytes asked of the server.
    ResultBytes,
}

/// One closed-loop run of a CPU-per-call curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub curve: Curve,
    pub name: String,
    pub x: usize,
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
    pub proxy_cpu_us: f64,
    pub response_bytes: f64,
    pub errors: u64,
}

/// Everything the network runs produced.
#[derive(Debug, Default)]
pub struct Results {
    pub rows: Vec<Row>,
    pub sweep: Vec<SweepPoint>,
    pub curves: Vec<CurvePoint>,
    /// Half of direct's closed-loop throughput: every open-loop run's rate.
    pub open_rate: f64,
}

/// A closed or open run with the CPU the proxy and the server spent in it.
struct Sample {
    o: Outcome,
    proxy_cpu_us: f64,
    server_cpu_us: f64,
}

impl Sample {
    fn take(
        running: &Running,
        servers: &Servers,
        body: &Bytes,
        conns: usize,
        mode: Mode,
        d: Duration,
    ) -> Result<Self> {
        let (p0, s0) = (
            procstat::cpu_of(&running.pids),
            procstat::cpu_of(&servers.pids),
        );
        let o = load::run(running.target, &servers.token, body, conns, mode, d)?;
        let (p1, s1) = (
            procstat::cpu_of(&running.pids),
            procstat::cpu_of(&servers.pids),
        );
        let n = o.requests.max(1) as f64;
        Ok(Sample {
            proxy_cpu_us: (p1 - p0) * 1e6 / n,
            server_cpu_us: (s1 - s0) * 1e6 / n,
            o,
        })
    }

    fn curve(&self, curve: Curve, name: &str, x: usize) -> CurvePoint {
        let n = self.o.requests.max(1) as f64;
        CurvePoint {
            curve,
            name: name.into(),
            x,
            throughput: self.o.throughput(),
            p50: self.o.pct(0.5),
            p99: self.o.pct(0.99),
            proxy_cpu_us: self.proxy_cpu_us,
            response_bytes: self.o.response_bytes as f64 / n,
            errors: self.o.errors,
        }
    }
}

/// Starts `setup` and refuses it unless the bench's call is answered and
/// the warm-up (connections, pools, page cache, the issuer's keys) gets
/// through.
pub fn start(
    setup: Setup,
    ns: &NetNs,
    dir: &TempDir,
    servers: &Servers,
    conns: usize,
) -> Result<Running> {
    let name = setup.name();
    let running = setup.start(ns, dir, servers)?;
    let body = load::body(None);
    // A refused token or a policy that denies the bench's call would
    // otherwise pass as a fast configuration (or one with zero
    // throughput).
    if let Err(e) = load::probe(running.target, &servers.token, &body) {
        running.stop();
        bail!("{name}: the bench's call is not answered: {e:#}");
    }
    let warm = load::run(
        running.target,
        &servers.token,
        &body,
        conns,
        Mode::Closed,
        Duration::from_millis(300),
    )?;
    if warm.requests == 0 {
        running.stop();
        bail!("{name}: no request succeeded in the warm-up");
    }
    Ok(running)
}

/// Measures one configuration into `res`.
pub fn one(
    setup: Setup,
    role: Role,
    ns: &NetNs,
    dir: &TempDir,
    servers: &Servers,
    plan: &Plan,
    res: &mut Results,
) -> Result<()> {
    let name = setup.name();
    eprintln!("==> bench: {name}");
    let running = start(setup, ns, dir, servers, plan.conns)?;
    let body = load::body(None);
    let d = match role {
        Role::Row => plan.closed,
        Role::PolicyCurve => plan.curve,
    };
    let closed = Sample::take(&running, servers, &body, plan.conns, Mode::Closed, d);
    let closed = match closed {
        Ok(c) => c,
        Err(e) => {
            running.stop();
            return Err(e);
        }
    };
    let policies = match setup {
        Setup::Ebpf(s) if s.identity && s.masking && s.audit => s.policies,
        _ => None,
    };
    if let Some(n) = policies {
        res.curves.push(closed.curve(Curve::Policies, &name, n));
    }
    let at = At {
        setup,
        running: &running,
        servers,
        plan,
    };
    let measured = match role {
        Role::Row => row(&at, &name, closed, res),
        Role::PolicyCurve => Ok(()),
    }
    .and_then(|()| sweep(&at, res))
    .and_then(|()| sizes(&at, res));
    running.stop();
    measured
}

/// A configuration running, and how to load it.
struct At<'a> {
    setup: Setup,
    running: &'a Running,
    servers: &'a Servers,
    plan: &'a Plan,
}

fn row(at: &At<'_>, name: &str, closed: Sample, res: &mut Results) -> Result<()> {
    let (running, servers, plan) = (at.running, at.servers, at.plan);
    if res.open_rate == 0.0 {
        // Half of what the direct path sustains: every configuration
        // should keep up, so latency is compared, not saturation.
        res.open_rate = (closed.o.throughput() * 0.5).max(50.0);
    }
    let body = load::body(None);
    let open = load::run(
        running.target,
        &servers.token,
        &body,
        plan.conns,
        Mode::Open(res.open_rate),
        plan.open,
    )?;
    if !running.pids.is_empty() {
        eprintln!("    memory: {}", procstat::memory(&running.pids));
    }
    let c = &closed.o;
    let n = c.requests.max(1) as f64;
    res.rows.push(Row {
        name: name.into(),
        throughput: c.throughput(),
        errors: c.errors + open.errors,
        p50: c.pct(0.5),
        p99: c.pct(0.99),
        open_rate: res.open_rate,
        open_p50: open.pct(0.5),
        open_p90: open.pct(0.9),
        open_p99: open.pct(0.99),
        open_p999: open.pct(0.999),
        proxy_cpu_us: closed.proxy_cpu_us,
        server_cpu_us: closed.server_cpu_us,
        proxy_rss_mib: procstat::rss_mib(&running.pids),
        response_bytes: c.response_bytes as f64 / n,
        cdf: cdf(&open),
    });
    Ok(())
}

fn cdf(o: &Outcome) -> Vec<(f64, f64)> {
    [
        0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0,
    ]
    .iter()
    .map(|q| (o.pct(*q), *q))
    .collect()
}

fn sweep(at: &At<'_>, res: &mut Results) -> Result<()> {
    let (setup, running, servers, plan) = (at.setup, at.running, at.servers, at.plan);
    if !setup.in_sweep() {
        return Ok(());
    }
    let body = load::body(None);
    for &c in plan.sweep_conns {
        let s = Sample::take(running, servers, &body, c, Mode::Closed, plan.sweep)?;
        res.sweep.push(SweepPoint {
            name: setup.name(),
            conns: c,
            throughput: s.o.throughput(),
            p50: s.o.pct(0.5),
            p99: s.o.pct(0.99),
            errors: s.o.errors,
            proxy_cpu_us: s.proxy_cpu_us,
            proxy_rss_mib: procstat::rss_mib(&running.pids),
            proxy_peak_rss_mib: procstat::peak_rss_mib(&running.pids),
        });
    }
    Ok(())
}

fn sizes(at: &At<'_>, res: &mut Results) -> Result<()> {
    let (setup, running, servers, plan) = (at.setup, at.running, at.servers, at.plan);
    if !setup.in_sizes() {
        return Ok(());
    }
    for &bytes in plan.size_curve {
        let body = load::body(Some(bytes));
        let s = Sample::take(
            running,
            servers,
            &body,
            plan.conns,
            Mode::Closed,
            plan.curve,
        )?;
        if s.o.requests == 0 {
            bail!("{}: no {bytes}-byte result was answered", setup.name());
        }
        res.curves
            .push(s.curve(Curve::ResultBytes, &setup.name(), bytes));
    }
    Ok(())
}

/// The configurations whose names the targets read.
pub fn names() -> (String, String) {
    (
        Setup::Ebpf(setups::HOP).name(),
        Setup::Ebpf(setups::EVERYTHING).name(),
    )
}
