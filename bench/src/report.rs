//! The report: a markdown table and JSON under the output directory, and
//! SVG plots (latency CDF per configuration, throughput against
//! concurrency, CPU per call against policy-set size and result size), all
//! from one run, with issue 22's targets checked first.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context, Result};

use crate::{
    audit_rate::AuditRate,
    mask_rate::MaskRate,
    plots::{self, Labels},
    policy_time::PolicyTime,
    run::{Curve, CurvePoint, Results},
    targets::{FLAT, Target},
};

/// The in-process stage measurements.
pub struct Stages {
    pub audit: AuditRate,
    pub policy: PolicyTime,
    pub mask: MaskRate,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, kernel {}", kernel.trim())
}

/// The 1, 5 and 15 minute load averages as the run ends: other work on
/// the machine shows in absolute numbers, much less in ratios.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn targets_table(s: &mut String, targets: &[Target]) {
    let _ = writeln!(
        s,
        "Issue 22's targets (reported, not asserted; \"flat\": CPU per call at the sweep's most connections ≤ {FLAT}x at one):\n\n| target | goal | measured | |\n|---|---|---|---|"
    );
    for t in targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            t.target,
            t.goal,
            t.measured,
            t.verdict()
        );
    }
}

fn rows_table(s: &mut String, r: &Results) {
    let direct = r.rows.iter().find(|r| r.name == "direct");
    let nginx = r.rows.iter().find(|r| r.name == "nginx");
    let _ = writeln!(
        s,
        "\n| configuration | req/s | vs direct | vs nginx | p50 µs | p99 µs | open p50 / p99 / p99.9 µs | added p50 / p99 µs | proxy CPU µs/req | proxy RSS MiB | errors |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &r.rows {
        let vs = |b: Option<&crate::run::Row>| {
            b.map(|b| format!("{:.2}", row.throughput / b.throughput))
                .unwrap_or_default()
        };
        let added = direct
            .map(|d| {
                format!(
                    "{:.0} / {:.0}",
                    row.open_p50 - d.open_p50,
                    row.open_p99 - d.open_p99
                )
            })
            .unwrap_or_default();
        let (cpu, rss) = if row.name == "direct" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1}", row.proxy_cpu_us),
                format!("{:.1}", row.proxy_rss_mib),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {} | {cpu} | {rss} | {} |",
            row.name,
            row.throughput,
            vs(direct),
            vs(nginx),
            row.p50,
            row.p99,
            row.open_p50,
            row.open_p99,
            row.open_p999,
            added,
            row.errors
        );
    }
}

fn sweep_table(s: &mut String, r: &Results) {
    let _ = writeln!(
        s,
        "\nConcurrency (closed loop):\n\n| configuration | connections | req/s | p50 µs | p99 µs | proxy CPU µs/req | proxy RSS / peak MiB | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in &r.sweep {
        let (cpu, rss) = if p.name == "direct" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1}", p.proxy_cpu_us),
                format!("{:.1} / {:.1}", p.proxy_rss_mib, p.proxy_peak_rss_mib),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {cpu} | {rss} | {} |",
            p.name, p.conns, p.throughput, p.p50, p.p99, p.errors
        );
    }
}

fn curve_table(s: &mut String, r: &Results, curve: Curve) {
    let (title, x) = match curve {
        Curve::Policies => (
            "CPU per call against policy-set size (everything on)",
            "policies",
        ),
        Curve::ResultBytes => ("CPU per call against result size", "result bytes asked"),
    };
    let _ = writeln!(
        s,
        "\n{title}:\n\n| configuration | {x} | response bytes | req/s | p50 µs | p99 µs | proxy CPU µs/req | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in r.curves.iter().filter(|p| p.curve == curve) {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {} |",
            p.name, p.x, p.response_bytes, p.throughput, p.p50, p.p99, p.proxy_cpu_us, p.errors
        );
    }
}

pub fn markdown(
    quick: bool,
    r: &Results,
    st: &Stages,
    targets: &[Target],
    took: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured {} on {}{}; load average {} (1/5/15 min) as the run ended; the run took {:.0} s.\n",
        date(),
        machine(),
        if quick {
            " (--quick smoke run: numbers are not meaningful)"
        } else {
            ""
        },
        load_average(),
        took.as_secs_f64()
    );
    targets_table(&mut s, targets);
    let _ = writeln!(
        s,
        "\nClosed loop: {} keep-alive connections as fast as answers come. Open loop: {:.0} requests/s (half of direct's closed-loop rate), latency from when each request was due. One MCP `tools/call` per request (a ~2 KB customer record), each with the same `Authorization: Bearer` RS256 JWT: the configurations with OIDC identity verify it (and refuse requests without one), the others pass it through; those with policy decide each call against the bench's Cedar set (`bench/policy`, `bench/src/policy_set.rs`); masking is the standard profile on the result; audit has the default fsync policy. The eBPF rows add one stage at a time to the MCP-aware hop alone. CPU is the proxy's own (utime+stime) per request.",
        crate::Plan::new(quick).conns,
        r.open_rate,
    );
    rows_table(&mut s, r);
    sweep_table(&mut s, r);
    curve_table(&mut s, r, Curve::Policies);
    curve_table(&mut s, r, Curve::ResultBytes);
    let a = &st.audit;
    let _ = writeln!(
        s,
        "\nAudit writer (default fsync policy, {} realistic rows): {:.0} rows/s on the request path ({:.1} µs/row), {:.0} Parquet bytes/row.",
        a.rows, a.rows_per_sec, a.us_per_row, a.bytes_per_row
    );
    let _ = writeln!(s, "\n{}", st.policy.summary());
    let _ = writeln!(s, "\n{}", st.mask.summary());
    s
}

/// (configuration, points) of one curve, for a plot.
fn series(points: &[CurvePoint], curve: Curve) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in points.iter().filter(|p| p.curve == curve) {
        let xy = (p.x as f64, p.proxy_cpu_us);
        match out.iter_mut().find(|(n, _)| *n == p.name) {
            Some((_, v)) => v.push(xy),
            None => out.push((p.name.clone(), vec![xy])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn plots(out: &Path, r: &Results) -> Result<()> {
    plots::cdf(&out.join("latency-cdf.svg"), &r.rows).context("latency plot")?;
    let mut sweep: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in &r.sweep {
        let xy = (p.conns as f64, p.throughput);
        match sweep.iter_mut().find(|(n, _)| *n == p.name) {
            Some((_, v)) => v.push(xy),
            None => sweep.push((p.name.clone(), vec![xy])),
        }
    }
    let labels = |caption, x| Labels {
        caption,
        x,
        y: "proxy CPU µs per call",
    };
    plots::lines(
        &out.join("throughput-concurrency.svg"),
        &Labels {
            caption: "Throughput against concurrent connections",
            x: "connections (log)",
            y: "requests/s",
        },
        &sweep,
    )
    .context("throughput plot")?;
    plots::lines(
        &out.join("cpu-policies.svg"),
        &labels("CPU per call against policy-set size", "policies (log)"),
        &series(&r.curves, Curve::Policies),
    )
    .context("policy curve plot")?;
    plots::lines(
        &out.join("cpu-result-size.svg"),
        &labels("CPU per call against result size", "result bytes (log)"),
        &series(&r.curves, Curve::ResultBytes),
    )
    .context("result size plot")
}

pub fn write(
    out: &Path,
    quick: bool,
    r: &Results,
    st: &Stages,
    targets: &[Target],
    took: Duration,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = markdown(quick, r, st, targets, took);
    std::fs::write(out.join("report.md"), &md)?;
    let json = serde_json::json!({
        "machine": machine(), "date": date(), "load_average": load_average(),
        "seconds": took.as_secs_f64(), "quick": quick, "targets": targets,
        "configurations": r.rows, "concurrency": r.sweep, "curves": r.curves,
        "audit": st.audit, "policy": st.policy, "mask": st.mask,
    });
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&json)?)?;
    plots(out, r)?;
    println!("{md}");
    println!(
        "written: {0}/report.md {0}/report.json {0}/latency-cdf.svg {0}/throughput-concurrency.svg {0}/cpu-policies.svg {0}/cpu-result-size.svg",
        out.display()
    );
    Ok(())
}
