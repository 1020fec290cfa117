//! The samples, the minute-by-minute curve and the growth verdict.

use std::fmt::Write as _;

use super::{Counts, GROWTH_MIB, GROWTH_PCT, Opts, VERDICT_MIN_MINUTES};

/// One row of rss.csv.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub secs: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub fds: usize,
    pub calls: u64,
    pub errors: u64,
    pub sessions: u64,
}

pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn row(s: &Sample) -> String {
    format!(
        "{:>5.1} min  RSS {:>7.1} MiB  calls {:>8}  errors {:>5}  sessions {:>6}  fds {:>4}",
        s.secs / 60.0,
        s.rss_kib as f64 / 1024.0,
        s.calls,
        s.errors,
        s.sessions,
        s.fds
    )
}

pub struct Growth {
    from_mib: f64,
    to_mib: f64,
    per_hour_mib: f64,
    pub leaking: bool,
}

/// RSS from the 25% mark to the end, each the mean of up to three
/// samples, so one allocator swing does not decide.
pub fn growth(samples: &[Sample]) -> Option<Growth> {
    if samples.len() < 8 {
        return None;
    }
    let mean =
        |s: &[Sample]| s.iter().map(|x| x.rss_kib as f64).sum::<f64>() / s.len() as f64 / 1024.0;
    let q = samples.len() / 4;
    let from_mib = mean(&samples[q.saturating_sub(1)..=q + 1]);
    let to_mib = mean(&samples[samples.len() - 3..]);
    let hours = (samples[samples.len() - 2].secs - samples[q].secs) / 3600.0;
    let grew = to_mib - from_mib;
    Some(Growth {
        from_mib,
        to_mib,
        per_hour_mib: grew / hours.max(1e-9),
        leaking: grew > GROWTH_MIB && grew > from_mib * GROWTH_PCT / 100.0,
    })
}

pub fn report(o: &Opts, samples: &[Sample], c: &Counts, verify: &str) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "\nsoak: {} min at {} calls/s, {} clients; agent RSS per minute:",
        o.minutes, o.rate, o.clients
    );
    let _ = writeln!(
        r,
        "  minute  RSS MiB  HWM MiB   fds     calls  errors  sessions"
    );
    for s in samples
        .iter()
        .filter(|s| ((s.secs / 10.0).round() as u64).is_multiple_of(6))
    {
        let _ = writeln!(
            r,
            "  {:>6.0}  {:>7.1}  {:>7.1}  {:>4}  {:>8}  {:>6}  {:>8}",
            s.secs / 60.0,
            s.rss_kib as f64 / 1024.0,
            s.hwm_kib as f64 / 1024.0,
            s.fds,
            s.calls,
            s.errors,
            s.sessions
        );
    }
    if let Ok(l) = c.last_error.lock()
        && !l.is_empty()
    {
        let _ = writeln!(r, "last client error: {l}");
    }
    let _ = writeln!(r, "audit: {verify}");
    match growth(samples) {
        None => {
            let _ = writeln!(r, "verdict: too few samples for a trend");
        }
        Some(g) => {
            let short = if o.minutes < VERDICT_MIN_MINUTES {
                " (short run: indicative only)"
            } else {
                ""
            };
            let _ = writeln!(
                r,
                "verdict: {}{short}: RSS {:.1} MiB at the 25% mark, {:.1} MiB at the end \
                 ({:+.1} MiB, {:+.1} MiB/hour)",
                if g.leaking { "GROWING" } else { "stable" },
                g.from_mib,
                g.to_mib,
                g.to_mib - g.from_mib,
                g.per_hour_mib
            );
        }
    }
    r
}
