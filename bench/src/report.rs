//! The report: a markdown table and JSON under the output directory, and
//! two SVG plots (latency CDF per configuration, throughput against
//! concurrency), all from one run.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::{Row, SweepPoint, audit_rate::AuditRate, mask_rate::MaskRate, policy_time::PolicyTime};

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

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn markdown(
    quick: bool,
    rows: &[Row],
    sweep: &[SweepPoint],
    audit: &AuditRate,
    policy: &PolicyTime,
    mask: &MaskRate,
) -> String {
    let direct = rows.iter().find(|r| r.name == "direct");
    let nginx = rows.iter().find(|r| r.name == "nginx");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured {} on {}{}.\n",
        date(),
        machine(),
        if quick {
            " (--quick smoke run: numbers are not meaningful)"
        } else {
            ""
        }
    );
    if let Some(r) = rows.first() {
        let _ = writeln!(
            s,
            "Closed loop: {} keep-alive connections as fast as answers come. Open loop: {:.0} requests/s, latency from when each request was due. One MCP `tools/call` per request (a ~2 KB customer record), each with the same `Authorization: Bearer` RS256 JWT: the configurations with OIDC identity verify it (and refuse requests without one), the others pass it through; those with policy decide each call against the bench's Cedar set of {} policies (`bench/policy`, `bench/src/policy_set.rs`). CPU is the proxy's own (utime+stime) per request.\n",
            crate::Plan::new(quick).conns,
            r.open_rate,
            policy.policies
        );
    }
    let _ = writeln!(
        s,
        "| configuration | req/s | vs direct | vs nginx | p50 µs | p99 µs | open p50 / p99 / p99.9 µs | added p50 / p99 µs | proxy CPU µs/req | proxy RSS MiB | errors |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let vs = |b: Option<&Row>| {
            b.map(|b| format!("{:.2}", r.throughput / b.throughput))
                .unwrap_or_default()
        };
        let added = direct
            .map(|d| {
                format!(
                    "{:.0} / {:.0}",
                    r.open_p50 - d.open_p50,
                    r.open_p99 - d.open_p99
                )
            })
            .unwrap_or_default();
        let (cpu, rss) = if r.name == "direct" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1}", r.proxy_cpu_us),
                format!("{:.1}", r.proxy_rss_mib),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {} | {cpu} | {rss} | {} |",
            r.name,
            r.throughput,
            vs(direct),
            vs(nginx),
            r.p50,
            r.p99,
            r.open_p50,
            r.open_p99,
            r.open_p999,
            added,
            r.errors
        );
    }
    let _ = writeln!(
        s,
        "\nConcurrency (closed loop):\n\n| configuration | connections | req/s | p99 µs | proxy RSS MiB | errors |\n|---|---:|---:|---:|---:|---:|"
    );
    for p in sweep {
        let rss = if p.name == "direct" {
            "-".to_string()
        } else {
            format!("{:.1}", p.proxy_rss_mib)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {rss} | {} |",
            p.name, p.conns, p.throughput, p.p99, p.errors
        );
    }
    let _ = writeln!(
        s,
        "\nAudit writer (default fsync policy, {} realistic rows): {:.0} rows/s on the request path ({:.1} µs/row), {:.0} Parquet bytes/row.",
        audit.rows, audit.rows_per_sec, audit.us_per_row, audit.bytes_per_row
    );
    let _ = writeln!(s, "\n{}", policy.summary());
    let _ = writeln!(s, "\n{}", mask.summary());
    s
}

pub fn write(
    out: &Path,
    quick: bool,
    rows: &[Row],
    sweep: &[SweepPoint],
    audit: &AuditRate,
    policy: &PolicyTime,
    mask: &MaskRate,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = markdown(quick, rows, sweep, audit, policy, mask);
    std::fs::write(out.join("report.md"), &md)?;
    let json = serde_json::json!({ "machine": machine(), "date": date(), "quick": quick, "configurations": rows, "concurrency": sweep, "audit": audit, "policy": policy, "mask": mask });
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&json)?)?;
    cdf_plot(&out.join("latency-cdf.svg"), rows).context("latency plot")?;
    sweep_plot(&out.join("throughput-concurrency.svg"), sweep).context("throughput plot")?;
    println!("{md}");
    println!(
        "written: {0}/report.md {0}/report.json {0}/latency-cdf.svg {0}/throughput-concurrency.svg",
        out.display()
    );
    Ok(())
}

fn cdf_plot(path: &Path, rows: &[Row]) -> Result<()> {
    let max = rows
        .iter()
        .flat_map(|r| r.cdf.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency CDF, open loop (coordinated-omission corrected)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((1f64..max * 1.1).log_scale(), 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log)")
        .y_desc("fraction of requests")
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.cdf.iter().map(|(x, y)| (x.max(1.0), *y)),
                color.stroke_width(2),
            ))?
            .label(r.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn sweep_plot(path: &Path, sweep: &[SweepPoint]) -> Result<()> {
    let max_c = sweep.iter().map(|p| p.conns).max().unwrap_or(1) as f64;
    let max_t = sweep.iter().map(|p| p.throughput).fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput against concurrent connections",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..max_c * 1.2).log_scale(), 0f64..max_t * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("connections (log)")
        .y_desc("requests/s")
        .draw()?;
    let mut names: Vec<&str> = sweep.iter().map(|p| p.name.as_str()).collect();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = sweep
            .iter()
            .filter(|p| p.name == *name)
            .map(|p| (p.conns as f64, p.throughput))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
