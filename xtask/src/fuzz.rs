//! `cargo xtask fuzz [--seconds N] [--smoke] [TARGET...]`: builds the
//! cargo-fuzz targets in fuzz/ (nightly, AddressSanitizer, optimized) and
//! runs each for N seconds (default 600), one after another, then prints
//! per target the executions, exec/s, coverage (libFuzzer's `cov`/`ft`),
//! corpus size and whether it crashed.
//!
//! `--smoke` (what `cargo xtask test` runs): `SMOKE_SECONDS` per target of
//! an unoptimized build without a sanitizer, in target/fuzz-smoke. A cold
//! ASan build of every dependency takes most of 20 minutes on 2 cores and
//! buys nothing in a 10 s run: the smoke proves the targets build, the
//! seeds pass and nothing shallow panics (debug assertions and overflow
//! checks on); campaigns keep ASan.
//!
//! Corpus: the committed seeds are fuzz/corpus/<target>; what a run finds
//! goes to target/fuzz/corpus/<target> (libFuzzer writes to the first
//! directory it is given), which later runs start from. The build lives in
//! target/fuzz, shared by every run. Crashes land in fuzz/artifacts/<target>
//! (git-ignored), with cargo-fuzz's instructions to reproduce them.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{root, run_in};

pub const TARGETS: &[&str] = &["jsonrpc", "sse", "http_head", "jwt", "cedar_input", "mask"];

/// Seconds per target in `cargo xtask test`.
const SMOKE_SECONDS: u64 = 10;
const DEFAULT_SECONDS: u64 = 600;

/// How the targets are built.
#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    /// Optimized, AddressSanitizer: for campaigns.
    Campaign,
    /// Unoptimized, no sanitizer: quick to build, for CI.
    Smoke,
}

impl Flavour {
    fn target_dir(self) -> &'static str {
        match self {
            Flavour::Campaign => "target/fuzz",
            Flavour::Smoke => "target/fuzz-smoke",
        }
    }

    /// `cargo fuzz build|run` flags; both must agree or `run` rebuilds.
    fn flags(self) -> &'static [&'static str] {
        match self {
            Flavour::Campaign => &["--target-dir", "target/fuzz"],
            Flavour::Smoke => &[
                "--dev",
                "--sanitizer",
                "none",
                "--target-dir",
                "target/fuzz-smoke",
            ],
        }
    }
}

/// `cargo xtask fuzz [--seconds N] [--smoke] [TARGET...]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut flavour = Flavour::Campaign;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--smoke" {
            flavour = Flavour::Smoke;
            seconds = SMOKE_SECONDS;
            continue;
        }
        let value = match a.strip_prefix("--seconds") {
            Some("") => it.next().map(String::as_str),
            Some(v) if v.starts_with('=') => Some(&v[1..]),
            Some(_) => None,
            None if a.starts_with('-') => bail!("cargo xtask fuzz: unknown option {a:?}"),
            None => {
                if !TARGETS.contains(&a.as_str()) {
                    bail!("no fuzz target {a:?} (targets: {})", TARGETS.join(", "));
                }
                targets.push(a.as_str());
                continue;
            }
        };
        seconds = value
            .and_then(|v| v.parse().ok())
            .filter(|&s| s > 0)
            .with_context(|| format!("{a}: expected --seconds N (N > 0)"))?;
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    campaign(&targets, seconds, flavour)
}

/// Every target for a short time (`cargo xtask test`).
pub fn smoke() -> Result<()> {
    campaign(TARGETS, SMOKE_SECONDS, Flavour::Smoke)
}

/// What one run reported.
#[derive(Default)]
struct Report {
    execs: Option<u64>,
    exec_per_sec: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
    crashed: bool,
    artifact: Option<String>,
}

fn campaign(targets: &[&str], seconds: u64, flavour: Flavour) -> Result<()> {
    tools()?;
    let root = root();
    let started = Instant::now();
    run_in(&root, fuzz_cmd().arg("build").args(flavour.flags()))?;
    let build = started.elapsed();
    eprintln!("==> fuzz build took {build:.0?}");
    let mut reports = Vec::new();
    for t in targets {
        let r = run_target(&root, t, seconds, flavour)?;
        reports.push((*t, r));
    }
    eprintln!(
        "\n{:<12} {:>11} {:>8} {:>6} {:>7} {:>15}  result ({seconds} s each, build {build:.0?})",
        "target", "execs", "exec/s", "cov", "ft", "corpus"
    );
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    for (t, r) in &reports {
        let result = match (&r.crashed, &r.artifact) {
            (false, _) => "ok".to_string(),
            (true, Some(a)) => format!("CRASHED: {a}"),
            (true, None) => "CRASHED (see the log above)".to_string(),
        };
        eprintln!(
            "{t:<12} {:>11} {:>8} {:>6} {:>7} {:>15}  {result}",
            show(r.execs),
            show(r.exec_per_sec),
            show(r.cov),
            show(r.ft),
            r.corpus.as_deref().unwrap_or("?"),
        );
    }
    let crashed: Vec<&str> = reports
        .iter()
        .filter(|(_, r)| r.crashed)
        .map(|(t, _)| *t)
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (inputs in fuzz/artifacts; logs in {}/logs)",
            crashed.join(", "),
            flavour.target_dir()
        );
    }
    Ok(())
}

/// Nightly and cargo-fuzz, installed once.
fn tools() -> Result<()> {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        run_in(
            &root(),
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]),
        )?;
    }
    if !ok(Command::new("cargo").args(["fuzz", "--version"])) {
        run_in(
            &root(),
            Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    Ok(())
}

/// `cargo fuzz` on nightly (the sanitizer flags need it).
fn fuzz_cmd() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "fuzz"]);
    c
}

fn run_target(root: &Path, target: &str, seconds: u64, flavour: Flavour) -> Result<Report> {
    // Absolute: cargo-fuzz may run the target in another directory. The
    // corpus a run finds is shared by both flavours.
    let found = root.join("target/fuzz/corpus").join(target);
    let seeds = root.join("fuzz/corpus").join(target);
    let logs = root.join(flavour.target_dir()).join("logs");
    fs::create_dir_all(&found)?;
    fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = fuzz_cmd();
    cmd.current_dir(root)
        .args(["run", target])
        .args(flavour.flags())
        .args([&found, &seeds])
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
            // An input this slow is a finding (a request that ties up the
            // agent), reported like a crash.
            "-timeout=30",
        ])
        .stderr(Stdio::piped());
    eprintln!(
        "==> fuzzing {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let mut child = cmd.spawn().context("starting cargo fuzz run")?;
    let stderr = child.stderr.take().context("fuzzer stderr")?;
    let mut report = Report::default();
    let mut crash_output = false;
    // Lossy: a crash report may quote the input's bytes.
    for line in BufReader::new(stderr).split(b'\n') {
        let line = line.context("reading fuzzer output")?;
        let line = String::from_utf8_lossy(&line);
        writeln!(log, "{line}")?;
        parse_line(&line, &mut report);
        crash_output |= line.contains("ERROR: libFuzzer")
            || line.contains("ERROR: AddressSanitizer")
            || line.contains("panicked at");
        // New units, new functions and the recommended dictionary are
        // many lines that say little; the rest is shown.
        let noisy = (line.starts_with('#')
            && matches!(line.split_whitespace().nth(1), Some("NEW" | "REDUCE")))
            || line.trim_start().starts_with("NEW_FUNC")
            || (line.starts_with('"') && line.contains("# Uses:"));
        if !noisy {
            eprintln!("{line}");
        }
    }
    let status = child.wait()?;
    report.crashed = !status.success() || crash_output;
    Ok(report)
}

/// Picks the numbers out of libFuzzer's status and final-stats lines.
fn parse_line(line: &str, r: &mut Report) {
    let field = |name: &str| -> Option<&str> {
        let mut words = line.split_whitespace();
        words.find(|w| *w == name)?;
        words.next()
    };
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    if line.starts_with('#') && line.contains("cov:") {
        // `#123 pulse  cov: 10 ft: 20 corp: 5/1Kb ... exec/s: 100 rss: 40Mb`
        r.execs = line[1..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok());
        r.cov = number("cov:").or(r.cov);
        r.ft = number("ft:").or(r.ft);
        r.corpus = field("corp:").map(str::to_owned).or(r.corpus.take());
        r.exec_per_sec = number("exec/s:").or(r.exec_per_sec);
    } else if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
        r.execs = v.trim().parse().ok().or(r.execs);
    } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
        r.exec_per_sec = v.trim().parse().ok().or(r.exec_per_sec);
    } else if let Some(p) = line.split("Test unit written to ").nth(1) {
        r.artifact = Some(p.trim().to_string());
    }
}
