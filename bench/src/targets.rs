//! Issue 22's targets, each checked against this run's numbers: met, not
//! met, or not measured (a configuration left out by `MCPI_BENCH_ONLY`).
//! Reported, never asserted: the machine decides the numbers.

use serde::Serialize;

use crate::{
    report::Stages,
    run::{Results, Row, SweepPoint, names},
};

/// "Flat" cost per call across the sweep: CPU per call at the most
/// connections at most this many times CPU per call at one connection.
pub const FLAT: f64 = 1.25;

/// One target and how this run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured, and on which row.
    pub target: String,
    /// The bound, as the issue states it.
    pub goal: String,
    /// The measured value, with what it was compared against.
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

impl Target {
    /// "met", "not met" or "not measured".
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        }
    }
}

fn target(target: &str, goal: &str, m: Option<(String, bool)>) -> Target {
    let (measured, met) = match m {
        Some((v, ok)) => (v, Some(ok)),
        None => ("-".into(), None),
    };
    Target {
        target: target.into(),
        goal: goal.into(),
        measured,
        met,
    }
}

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name)
}

fn point<'a>(sweep: &'a [SweepPoint], name: &str, conns: usize) -> Option<&'a SweepPoint> {
    sweep.iter().find(|p| p.name == name && p.conns == conns)
}

/// `row`'s CPU per call against nginx's, within `bound` times.
fn cpu_vs(row: &Row, nginx: &Row, bound: f64) -> (String, bool) {
    let x = row.proxy_cpu_us / nginx.proxy_cpu_us;
    (
        format!(
            "{:.1} µs = {x:.2}x nginx's {:.1} µs",
            row.proxy_cpu_us, nginx.proxy_cpu_us
        ),
        x <= bound,
    )
}

/// Every target of the issue against `r` and the in-process stages.
pub fn evaluate(r: &Results, stages: &Stages) -> Vec<Target> {
    let (hop_name, all_name) = names();
    let (direct, nginx) = (find(&r.rows, "direct"), find(&r.rows, "nginx"));
    let (hop, all) = (find(&r.rows, &hop_name), find(&r.rows, &all_name));
    let mut t = vec![
        target(
            "everything on: proxy CPU per call vs nginx's (same run)",
            "≤ 2x",
            all.zip(nginx).map(|(a, n)| cpu_vs(a, n, 2.0)),
        ),
        target(
            "everything on: throughput vs nginx (closed loop)",
            "≥ 0.8",
            all.zip(nginx).map(|(a, n)| {
                let x = a.throughput / n.throughput;
                (
                    format!("{x:.2} ({:.0} vs {:.0} req/s)", a.throughput, n.throughput),
                    x >= 0.8,
                )
            }),
        ),
        target(
            "everything on: open-loop added p50 at half of direct's rate",
            "≤ 100 µs",
            all.zip(direct).map(|(a, d)| {
                let x = a.open_p50 - d.open_p50;
                (
                    format!("{x:.0} µs (at {:.0} req/s)", a.open_rate),
                    x <= 100.0,
                )
            }),
        ),
        target(
            "hop alone: proxy CPU per call vs nginx's",
            "≤ 1x",
            hop.zip(nginx).map(|(h, n)| cpu_vs(h, n, 1.0)),
        ),
    ];
    t.extend(one_connection(r, &hop_name));
    t.extend(in_process(stages));
    t.extend(memory_and_flatness(r, &all_name));
    t
}

/// The hop alone against direct at one connection, closed loop.
fn one_connection(r: &Results, hop: &str) -> Vec<Target> {
    let pair = point(&r.sweep, hop, 1).zip(point(&r.sweep, "direct", 1));
    let added = |q: fn(&SweepPoint) -> f64, bound: f64| {
        pair.map(|(h, d)| {
            let x = q(h) - q(d);
            (
                format!("{x:.0} µs ({:.0} vs direct's {:.0})", q(h), q(d)),
                x <= bound,
            )
        })
    };
    vec![
        target(
            "hop alone, one connection: added p50 (closed loop)",
            "≤ 50 µs",
            added(|p| p.p50, 50.0),
        ),
        target(
            "hop alone, one connection: added p99 (closed loop)",
            "≤ 150 µs",
            added(|p| p.p99, 150.0),
        ),
    ]
}

fn in_process(s: &Stages) -> Vec<Target> {
    let (p, a) = (&s.policy, &s.audit);
    let n = p.policies;
    vec![
        target(
            &format!("Cedar decision at {n} policies: p50"),
            "≤ 10 µs",
            Some((format!("{:.1} µs", p.p50_us), p.p50_us <= 10.0)),
        ),
        target(
            &format!("Cedar decision at {n} policies: p99"),
            "≤ 30 µs",
            Some((format!("{:.1} µs", p.p99_us), p.p99_us <= 30.0)),
        ),
        target(
            "audit: rows/s on the request path (default fsync)",
            "≥ 200,000",
            Some((
                format!("{:.0}", a.rows_per_sec),
                a.rows_per_sec >= 200_000.0,
            )),
        ),
        target(
            "audit: Parquet bytes per row",
            "≤ 150",
            Some((format!("{:.0}", a.bytes_per_row), a.bytes_per_row <= 150.0)),
        ),
    ]
}

/// Peak RSS at the sweep's most connections, and CPU per call there
/// against one connection, everything on.
fn memory_and_flatness(r: &Results, all: &str) -> Vec<Target> {
    let most = r
        .sweep
        .iter()
        .filter(|p| p.name == all)
        .max_by_key(|p| p.conns);
    let one = point(&r.sweep, all, 1);
    let conns = most.map_or(0, |p| p.conns);
    vec![
        target(
            &format!("everything on: peak RSS at {conns} open connections"),
            "≤ 64 MiB",
            most.map(|p| {
                (
                    format!("{:.1} MiB", p.proxy_peak_rss_mib),
                    p.proxy_peak_rss_mib <= 64.0,
                )
            }),
        ),
        target(
            &format!("everything on: CPU per call flat from 1 to {conns} connections"),
            &format!("at {conns} ≤ {FLAT}x at 1"),
            most.zip(one).map(|(m, o)| {
                let x = m.proxy_cpu_us / o.proxy_cpu_us;
                (
                    format!(
                        "{:.1} vs {:.1} µs = {x:.2}x",
                        m.proxy_cpu_us, o.proxy_cpu_us
                    ),
                    x <= FLAT,
                )
            }),
        ),
    ]
}
