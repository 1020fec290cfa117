//! Prometheus metrics (text format 0.0.4) for `/metrics` on the admin
//! socket and listener: requests by method, kind and decision, latency
//! histograms, the audit's health, WAL size and upload backlog, pending
//! approvals, and the eBPF steering counters read from the pinned map.
//!
//! Counting is a `record` phase (it sees every event once, after the
//! decision) into `prometheus-client` families; the rest is read when
//! scraped (a registry built per scrape around those families), so a
//! scrape costs nothing between scrapes.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};

use crate::{
    approval::{Approvals, Status},
    audit::Audit,
    pipeline::{EventKind, ExchangeEvent, Phase},
};

/// The `Content-Type` of what [`Metrics::render`] writes: Prometheus text
/// 0.0.4 (not OpenMetrics), which every Prometheus version scrapes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Latency bucket bounds, seconds (a held call can take minutes).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// (method, kind, decision) of a request count.
type RequestLabels = [(&'static str, String); 3];
/// The method of a latency histogram.
type MethodLabel = [(&'static str, String); 1];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

/// What the pipeline counted; shared across config reloads.
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    /// Latency of exchanges that got an answer, by method.
    latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    /// Policy bundles refused, by reason.
    bundles_refused: Labelled<Counter>,
    /// The version of the policy bundle in force (0: none).
    bundle_version: Gauge,
}

/// Every reason a policy bundle is refused for (`BundleError::reason`,
/// then the watcher's own): each series exists at 0 from the start, so an
/// alert on `increase()` sees the first refusal.
const BUNDLE_REFUSALS: [&str; 10] = [
    "malformed",
    "unsigned",
    "unknown_signer",
    "bad_signature",
    "digest",
    "not_newer",
    "key",
    "settings",
    "policy",
    "fetch",
];

impl Default for Metrics {
    fn default() -> Self {
        let bundles_refused: Labelled<Counter> = Family::default();
        for reason in BUNDLE_REFUSALS {
            drop(bundles_refused.get_or_create(&[("reason", reason.to_string())]));
        }
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bundles_refused,
            bundle_version: Gauge::default(),
        }
    }
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
        let m = &self.0;
        m.requests
            .get_or_create(&[
                ("method", method.clone()),
                ("kind", kind),
                ("decision", decision.to_string()),
            ])
            .inc();
        if ev.kind == EventKind::Exchange
            && let Some(done) = ev.done_us
        {
            let secs = (done - ev.received_us).max(0) as f64 / 1e6;
            m.latency.get_or_create(&[("method", method)]).observe(secs);
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
    /// The audit log, for WAL and upload gauges (none when auditing is off).
    pub audit: Option<Audit>,
    /// The approval queue, for pending-count gauges.
    pub approvals: std::sync::Arc<Approvals>,
    /// The bpffs pin directory, for steering counters (none when not steering).
    pub pin_dir: Option<PathBuf>,
    /// The proxy's connections in flight (the `http.max_connections` count).
    pub connections: crate::proxy::Drain,
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

/// Registers `metric` under its exposed name: the crate appends `_total` to
/// counters and a period to help texts itself, so both are taken off here
/// and the text scraped stays what dashboards know.
fn add(reg: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    let name = name.strip_suffix("_total").unwrap_or(name);
    reg.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

impl Metrics {
    /// The Prometheus text (0.0.4) of one scrape: what the pipeline counted
    /// plus what `src` holds now.
    pub fn render(&self, src: &Sources) -> String {
        let mut reg = Registry::default();
        add(
            &mut reg,
            "mcp_interceptor_up",
            "1 while the agent serves.",
            ConstGauge::new(1i64),
        );
        add(
            &mut reg,
            "mcp_interceptor_connections_active",
            "Client connections being served (limit: http.max_connections).",
            ConstGauge::new(src.connections.active() as u64),
        );
        add(
            &mut reg,
            "mcp_interceptor_connections_refused_total",
            "Client connections refused with 503 at http.max_connections.",
            ConstCounter::new(crate::proxy::refused_over_limit()),
        );
        self.register_counted(&mut reg);
        if let Some(a) = &src.audit {
            scrape_audit(&mut reg, a);
        }
        let pending = src.approvals.count(Status::Pending).unwrap_or(0);
        add(
            &mut reg,
            "mcp_interceptor_approvals_pending",
            "Approval requests waiting for approvers.",
            ConstGauge::new(pending),
        );
        if let Some(state) = src
            .pin_dir
            .as_deref()
            .and_then(|d| crate::steer::pins::read(d).ok())
        {
            scrape_steer(&mut reg, &state);
        }
        if let Some(c) = crate::steer::process::counts() {
            scrape_capture(&mut reg, &c);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &reg);
        out
    }

    /// Counts a refused policy bundle (`reason`: `BundleError::reason`).
    pub fn bundle_refused(&self, reason: &str) {
        self.bundles_refused
            .get_or_create(&[("reason", reason.to_string())])
            .inc();
    }

    /// Records the version of the policy bundle now in force.
    pub fn bundle_installed(&self, version: u64) {
        self.bundle_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// What the pipeline counted: messages and their durations.
    fn register_counted(&self, reg: &mut Registry) {
        add(
            reg,
            "mcp_interceptor_policy_bundles_refused_total",
            "Policy bundles refused, by reason (unsigned, bad_signature, unknown_signer, not_newer, malformed, digest, key, settings, policy, fetch).",
            self.bundles_refused.clone(),
        );
        add(
            reg,
            "mcp_interceptor_policy_bundle_version",
            "Version of the signed policy bundle in force (0: none).",
            self.bundle_version.clone(),
        );
        add(
            reg,
            "mcp_interceptor_requests_total",
            "MCP messages by method, event kind and policy decision.",
            self.requests.clone(),
        );
        add(
            reg,
            "mcp_interceptor_request_duration_seconds",
            "Time from request received to answer complete, by method.",
            self.latency.clone(),
        );
    }
}

/// The audit's counters, and its WAL and outbox as they are on disk now.
fn scrape_audit(reg: &mut Registry, a: &Audit) {
    let (rows, failures) = a.stats();
    let (wal_bytes, wal_files, _) = dir_stats(&a.dir().join("wal"));
    let (_, backlog, lag) = dir_stats(&a.dir().join("outbox"));
    // (counter, else gauge; name; help; value), in the order exposed.
    let metrics = [
        (
            true,
            "rows_total",
            "Audit rows acknowledged (in the WAL).",
            rows,
        ),
        (
            true,
            "write_failures_total",
            "Audit writes that failed.",
            failures,
        ),
        (
            false,
            "healthy",
            "1 while audit rows are being written.",
            u64::from(a.healthy()),
        ),
        (
            false,
            "wal_bytes",
            "Bytes in WAL segments not yet converted to Parquet.",
            wal_bytes,
        ),
        (false, "wal_segments", "WAL segments on disk.", wal_files),
        (
            false,
            "upload_backlog_files",
            "Audit files waiting for the S3 upload.",
            backlog,
        ),
    ];
    for (counter, name, help, n) in metrics {
        let name = &audit_metric(name);
        if counter {
            add(reg, name, help, ConstCounter::new(n));
        } else {
            add(reg, name, help, ConstGauge::new(n));
        }
    }
    add(
        reg,
        &audit_metric("upload_lag_seconds"),
        "Age of the oldest file waiting for upload (0: none).",
        ConstGauge::new(lag),
    );
}

/// `mcp_interceptor_audit_<name>`: the audit's metrics share the prefix.
fn audit_metric(name: &str) -> String {
    format!("mcp_interceptor_audit_{name}")
}

type Labelled<M> = Family<[(&'static str, String); 1], M>;

/// A family of one label, filled from `(label value, value)` pairs.
fn labelled<M: Default>(
    label: &'static str,
    items: impl IntoIterator<Item = (String, u64)>,
    set: fn(&M, u64),
) -> Labelled<M> {
    let f = Labelled::<M>::default();
    for (v, n) in items {
        set(&f.get_or_create(&[(label, v)]), n);
    }
    f
}

fn inc_by(c: &Counter, n: u64) {
    c.inc_by(n);
}

fn set(g: &Gauge, n: u64) {
    g.set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// The eBPF steering counters and map usage from the pinned state.
fn scrape_steer(reg: &mut Registry, state: &crate::steer::pins::State) {
    type Get = fn(&crate::steer::pins::Counters) -> u64;
    let counters: [(&str, &str, Get); 4] = [
        ("steered", "New connections handed to the agent.", |c| {
            c.steered
        }),
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
    ];
    for (name, help, get) in counters {
        let per_port = state.counters.iter().map(|c| (c.port.to_string(), get(c)));
        let family = labelled::<Counter>("port", per_port, inc_by);
        add(
            reg,
            &format!("mcp_interceptor_steer_{name}_total"),
            help,
            family,
        );
    }
    type Use = fn(&crate::steer::capacity::Usage) -> u32;
    let maps: [(&str, &str, Use); 2] = [
        (
            "mcp_interceptor_steer_map_entries",
            "Entries in use in each fixed-size eBPF map.",
            |u| u.entries,
        ),
        (
            "mcp_interceptor_steer_map_capacity",
            "Entries each fixed-size eBPF map holds (max_entries).",
            |u| u.capacity,
        ),
    ];
    for (metric, help, get) in maps {
        let per_map = state
            .maps
            .iter()
            .map(|u| (u.map.to_string(), u64::from(get(u))));
        add(reg, metric, help, labelled::<Gauge>("map", per_map, set));
    }
    if let Some(e) = state.errors {
        let kinds = [
            ("assign_refused".to_string(), e.assign_refused),
            ("counters_full".to_string(), e.counters_full),
        ];
        add(
            reg,
            "mcp_interceptor_steer_errors_total",
            "Failures the steering program counted: assign_refused (connection dropped), counters_full (outcome not counted).",
            labelled::<Counter>("kind", kinds, inc_by),
        );
    }
}

/// The process capture's counts (issue 23), beside the steering counters.
fn scrape_capture(reg: &mut Registry, c: &crate::steer::process::CaptureCounts) {
    let kinds = [
        ("recorded", c.recorded),
        ("map_full", c.map_full),
        ("read_failed", c.read_failed),
        ("removed_on_close", c.removed),
        ("taken_by_proxy", c.taken),
    ]
    .map(|(k, n)| (k.to_string(), n));
    add(
        reg,
        "mcp_interceptor_process_capture_total",
        "Local connections the kernel recorded the opener of: recorded, map_full (not recorded: the caller carries no process facts), read_failed (a fact left zero), removed_on_close, taken_by_proxy.",
        labelled::<Counter>("kind", kinds, inc_by),
    );
}

#[cfg(test)]
mod tests {
    use super::{method_label as label, *};

    /// The exposed names, HELP lines, labels and bucket bounds are those of
    /// the hand-written renderer this replaced (dashboards query them).
    #[test]
    fn exposition_keeps_the_names_dashboards_know() {
        let m = Metrics::default();
        let labels = [
            ("method", "tools/call".to_string()),
            ("kind", "exchange".to_string()),
            ("decision", "allow".to_string()),
        ];
        m.requests.get_or_create(&labels).inc();
        m.requests.get_or_create(&labels).inc();
        let method = [("method", "tools/call".to_string())];
        m.latency.get_or_create(&method).observe(0.003);
        let mut reg = Registry::default();
        m.register_counted(&mut reg);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &reg).unwrap();
        for want in [
            "# HELP mcp_interceptor_requests_total MCP messages by method, event kind and policy decision.\n",
            "# TYPE mcp_interceptor_requests_total counter\n",
            "mcp_interceptor_requests_total{method=\"tools/call\",kind=\"exchange\",decision=\"allow\"} 2\n",
            "# TYPE mcp_interceptor_request_duration_seconds histogram\n",
            "mcp_interceptor_request_duration_seconds_bucket{method=\"tools/call\",le=\"0.0025\"} 0\n",
            "mcp_interceptor_request_duration_seconds_bucket{method=\"tools/call\",le=\"0.005\"} 1\n",
            "mcp_interceptor_request_duration_seconds_bucket{method=\"tools/call\",le=\"300\"} 1\n",
            "mcp_interceptor_request_duration_seconds_bucket{method=\"tools/call\",le=\"+Inf\"} 1\n",
            "mcp_interceptor_request_duration_seconds_count{method=\"tools/call\"} 1\n",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains(".."), "{text}");
    }

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
