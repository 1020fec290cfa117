//! Prometheus metrics (text format 0.0.4) for `/metrics` on the admin
//! socket and listener: requests by method, kind and decision, latency
//! histograms, the audit's health, WAL size and upload backlog, pending
//! approvals, and the eBPF steering counters read from the pinned map.
//!
//! Counting is a `record` phase (it sees every event once, after the
//! decision); the rest is read when scraped, so a scrape costs nothing
//! between scrapes.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use crate::{
    approval::{Approvals, Status},
    audit::Audit,
    pipeline::{EventKind, ExchangeEvent, Phase},
};

/// Latency bucket bounds, seconds (a held call can take minutes).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (c, le) in self.counts.iter_mut().zip(BUCKETS) {
            if secs <= *le {
                *c += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Counts {
    /// (method, kind, decision) → requests.
    requests: BTreeMap<(String, String, String), u64>,
    /// method → latency of exchanges that got an answer.
    latency: BTreeMap<String, Histogram>,
}

/// What the pipeline counted; shared across config reloads.
#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
}

/// The `record` phase that feeds [`Metrics`].
pub struct MetricsPhase(pub std::sync::Arc<Metrics>);

impl Phase for MetricsPhase {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn record(&self, ev: &ExchangeEvent) {
        let kind = serde_json::to_value(ev.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let decision = match (&ev.decision, ev.kind) {
            (_, EventKind::Denied) => "deny",
            (Some(d), _) => d.effect.as_str(),
            (None, EventKind::Rejected) if ev.decided_by.is_some() => "deny",
            (None, _) => "none",
        };
        let method = ev.method.as_deref().map_or("-", method_label).to_string();
        let mut c = self.0.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.requests
            .entry((method.clone(), kind, decision.to_string()))
            .or_default() += 1;
        if ev.kind == EventKind::Exchange
            && let Some(done) = ev.done_us
        {
            let secs = (done - ev.received_us).max(0) as f64 / 1e6;
            c.latency.entry(method).or_default().observe(secs);
        }
    }
}

/// Methods MCP defines besides the client requests policy knows: the
/// label set stays bounded whatever names clients and servers send.
const OTHER_METHODS: &[&str] = &[
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/roots/list_changed",
];

/// The metrics label for a method: itself if MCP defines it, else
/// "other" (a client inventing method names must not grow `/metrics`).
fn method_label(method: &str) -> &str {
    if crate::policy::ACTIONS.contains(&method) || OTHER_METHODS.contains(&method) {
        method
    } else {
        "other"
    }
}

/// Where the scrape reads the rest from.
pub struct Sources {
    pub audit: Option<Audit>,
    pub approvals: std::sync::Arc<Approvals>,
    pub pin_dir: Option<PathBuf>,
    /// The proxy's connections in flight (the `http.max_connections` count).
    pub connections: crate::proxy::Drain,
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Size in bytes and count of the files directly in `dir`, and the age in
/// seconds of the oldest.
fn dir_stats(dir: &Path) -> (u64, u64, f64) {
    let (mut bytes, mut files, mut oldest) = (0, 0, None::<SystemTime>);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() || e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            bytes += m.len();
            files += 1;
            if let Ok(t) = m.modified() {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
    }
    let age = oldest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    (bytes, files, age)
}

impl Metrics {
    pub fn render(&self, src: &Sources) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "mcp_interceptor_up",
            "gauge",
            "1 while the agent serves.",
        );
        out.push_str("mcp_interceptor_up 1\n");
        header(
            &mut out,
            "mcp_interceptor_connections_active",
            "gauge",
            "Client connections being served (limit: http.max_connections).",
        );
        let active = src.connections.active();
        let _ = writeln!(out, "mcp_interceptor_connections_active {active}");
        header(
            &mut out,
            "mcp_interceptor_connections_refused_total",
            "counter",
            "Client connections refused with 503 at http.max_connections.",
        );
        let refused = crate::proxy::refused_over_limit();
        let _ = writeln!(out, "mcp_interceptor_connections_refused_total {refused}");
        {
            let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            header(
                &mut out,
                "mcp_interceptor_requests_total",
                "counter",
                "MCP messages by method, event kind and policy decision.",
            );
            for ((m, k, d), n) in &c.requests {
                let _ = writeln!(
                    out,
                    "mcp_interceptor_requests_total{{method=\"{}\",kind=\"{}\",decision=\"{}\"}} {n}",
                    label(m),
                    label(k),
                    label(d)
                );
            }
            let name = "mcp_interceptor_request_duration_seconds";
            header(
                &mut out,
                name,
                "histogram",
                "Time from request received to answer complete, by method.",
            );
            for (m, h) in &c.latency {
                let m = label(m);
                for (n, le) in h.counts.iter().zip(BUCKETS) {
                    let _ = writeln!(out, "{name}_bucket{{method=\"{m}\",le=\"{le}\"}} {n}");
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{method=\"{m}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{{method=\"{m}\"}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{method=\"{m}\"}} {}", h.count);
            }
        }
        if let Some(a) = &src.audit {
            let (rows, failures) = a.stats();
            header(
                &mut out,
                "mcp_interceptor_audit_rows_total",
                "counter",
                "Audit rows acknowledged (in the WAL).",
            );
            let _ = writeln!(out, "mcp_interceptor_audit_rows_total {rows}");
            header(
                &mut out,
                "mcp_interceptor_audit_write_failures_total",
                "counter",
                "Audit writes that failed.",
            );
            let _ = writeln!(out, "mcp_interceptor_audit_write_failures_total {failures}");
            header(
                &mut out,
                "mcp_interceptor_audit_healthy",
                "gauge",
                "1 while audit rows are being written.",
            );
            let _ = writeln!(
                out,
                "mcp_interceptor_audit_healthy {}",
                u8::from(a.healthy())
            );
            let (wal_bytes, wal_files, _) = dir_stats(&a.dir().join("wal"));
            header(
                &mut out,
                "mcp_interceptor_audit_wal_bytes",
                "gauge",
                "Bytes in WAL segments not yet converted to Parquet.",
            );
            let _ = writeln!(out, "mcp_interceptor_audit_wal_bytes {wal_bytes}");
            header(
                &mut out,
                "mcp_interceptor_audit_wal_segments",
                "gauge",
                "WAL segments on disk.",
            );
            let _ = writeln!(out, "mcp_interceptor_audit_wal_segments {wal_files}");
            let (_, backlog, lag) = dir_stats(&a.dir().join("outbox"));
            header(
                &mut out,
                "mcp_interceptor_audit_upload_backlog_files",
                "gauge",
                "Audit files waiting for the S3 upload.",
            );
            let _ = writeln!(out, "mcp_interceptor_audit_upload_backlog_files {backlog}");
            header(
                &mut out,
                "mcp_interceptor_audit_upload_lag_seconds",
                "gauge",
                "Age of the oldest file waiting for upload (0: none).",
            );
            let _ = writeln!(out, "mcp_interceptor_audit_upload_lag_seconds {lag:.3}");
        }
        let pending = src.approvals.count(Status::Pending).unwrap_or(0);
        header(
            &mut out,
            "mcp_interceptor_approvals_pending",
            "gauge",
            "Approval requests waiting for approvers.",
        );
        let _ = writeln!(out, "mcp_interceptor_approvals_pending {pending}");
        if let Some(state) = src
            .pin_dir
            .as_deref()
            .and_then(|d| crate::steer::pins::read(d).ok())
        {
            for (name, help, get) in [
                (
                    "steered",
                    "New connections handed to the agent.",
                    (|c: &crate::steer::pins::Counters| c.steered) as fn(&_) -> u64,
                ),
                (
                    "dropped",
                    "Connections refused while the agent was down (fail closed).",
                    |c| c.dropped,
                ),
                (
                    "bypassed",
                    "The agent's own upstream connections, passed through unsteered.",
                    |c| c.bypassed,
                ),
                (
                    "failed_open",
                    "Connections let through while the agent was down (fail open).",
                    |c| c.failed_open,
                ),
            ] {
                let metric = format!("mcp_interceptor_steer_{name}_total");
                header(&mut out, &metric, "counter", help);
                for c in &state.counters {
                    let _ = writeln!(out, "{metric}{{port=\"{}\"}} {}", c.port, get(c));
                }
            }
            for (metric, help, get) in [
                (
                    "mcp_interceptor_steer_map_entries",
                    "Entries in use in each fixed-size eBPF map.",
                    (|u: &crate::steer::capacity::Usage| u.entries) as fn(&_) -> u32,
                ),
                (
                    "mcp_interceptor_steer_map_capacity",
                    "Entries each fixed-size eBPF map holds (max_entries).",
                    |u| u.capacity,
                ),
            ] {
                header(&mut out, metric, "gauge", help);
                for u in &state.maps {
                    let _ = writeln!(out, "{metric}{{map=\"{}\"}} {}", u.map, get(u));
                }
            }
            if let Some(e) = state.errors {
                let metric = "mcp_interceptor_steer_errors_total";
                header(
                    &mut out,
                    metric,
                    "counter",
                    "Failures the steering program counted: assign_refused (connection dropped), counters_full (outcome not counted).",
                );
                for (kind, n) in [
                    ("assign_refused", e.assign_refused),
                    ("counters_full", e.counters_full),
                ] {
                    let _ = writeln!(out, "{metric}{{kind=\"{kind}\"}} {n}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::method_label as label;

    #[test]
    fn method_labels_are_bounded_to_what_mcp_defines() {
        for m in [
            "tools/call",
            "initialize",
            "sampling/createMessage",
            "notifications/progress",
        ] {
            assert_eq!(label(m), m);
        }
        for m in ["x-vendor/op", "tools/call\u{0}", "TOOLS/CALL", ""] {
            assert_eq!(label(m), "other", "{m:?}");
        }
    }
}
