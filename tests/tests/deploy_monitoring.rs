//! deploy/monitoring: the Prometheus alert rules pass `promtool check
//! rules` and their own `promtool test rules` cases; every Grafana dashboard
//! query is valid PromQL (checked by promtool as a recording rule); and the
//! dashboard and the rules name only metrics a running agent serves.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use mcp_interceptor_tests::{
    TempDir,
    everything::repo,
    require_root,
    world::{World, echo, token},
};
use serde_json::Value;

fn monitoring() -> PathBuf {
    repo().join("deploy/monitoring")
}

/// `promtool ARGS` in `dir`; (success, stdout and stderr).
fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = monitoring();
    let (ok, out) = promtool(&dir, &["check", "rules", "alerts.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&dir, &["test", "rules", "alerts.test.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

/// The `expr:` of every rule in alerts.yml: one line, or a `>-`/`|` block
/// (the lines indented deeper than the key).
fn alert_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !rest.starts_with(['>', '|']) {
            out.push(rest.to_string());
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|b| b.trim().is_empty() || b.len() - b.trim_start().len() > indent)
            .map(|b| b.trim())
            .collect();
        out.push(block.join(" "));
    }
    out
}

/// Every PromQL query of the dashboard, Grafana's variables replaced by
/// values a query may hold; and the metrics its variable queries name.
fn dashboard_queries(d: &Value) -> (Vec<String>, Vec<String>) {
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().expect("every target has an expr");
            exprs.push(
                e.replace("$__rate_interval", "5m")
                    .replace("$instance", ".*"),
            );
        }
    }
    let variables = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["definition"].as_str())
        .map(|q| {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|q| q.split(',').next())
                .unwrap_or_else(|| panic!("a label_values(METRIC, LABEL) variable: {q}"));
            inner.trim().to_string()
        })
        .collect();
    (exprs, variables)
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions, keywords, or inside label matchers, ranges, strings or
/// grouping clauses.
fn metric_names(expr: &str) -> Vec<String> {
    // Aggregations too: `sum by (x) (...)` puts the clause before the call.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let (mut out, mut i) = (Vec::new(), 0);
    let skip_to = |from: usize, close: char| {
        chars[from..]
            .iter()
            .position(|&c| c == close)
            .map_or(chars.len(), |p| from + p + 1)
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            '"' | '\'' => i = skip_to(i + 1, c),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let call = chars.get(j) == Some(&'(');
                if GROUPING.contains(&word.as_str()) {
                    // `by (a, b)` names labels; a bare `group_left` nothing.
                    if call {
                        i = skip_to(j + 1, ')');
                    }
                } else if !call && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    out.push(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number (1e3 included): skip its letters too.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Metric names a scrape exposes: each `# TYPE` family, and for a
/// histogram its `_bucket`, `_sum` and `_count` series.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut w = rest.split_whitespace();
        let (Some(name), Some(kind)) = (w.next(), w.next()) else {
            continue;
        };
        out.insert(name.to_string());
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{s}"));
            }
        }
    }
    out
}

/// GET /metrics on the agent's admin socket.
fn scrape(socket: &Path) -> String {
    let mut s = UnixStream::connect(socket).expect("the admin socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("the scrape");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

#[test]
fn the_dashboard_and_alerts_name_only_metrics_the_agent_serves() {
    require_root();
    let d: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let (exprs, variables) = dashboard_queries(&d);
    assert!(exprs.len() >= 15, "{exprs:?}");

    // Each dashboard query is PromQL promtool accepts.
    let tmp = TempDir::new("dashq");
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: dashboard:q{i}\n        expr: '{}'\n",
                e.replace('\'', "''")
            )
        })
        .collect();
    std::fs::write(
        tmp.path().join("dashboard.yml"),
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let (ok, out) = promtool(tmp.path(), &["check", "rules", "dashboard.yml"]);
    assert!(ok, "dashboard queries promtool refuses:\n{out}");

    // A running agent (eBPF steering, audit, one call) and what it serves.
    let w = World::new("monitoring");
    let t = token(&w.issuer, "alice", &["dev"]);
    echo(&w.ns, &t, "hello");
    let served = exposed(&scrape(&w.agent.admin_socket()));
    assert!(
        served.contains("mcp_interceptor_steer_steered_total"),
        "{served:?}"
    );

    let alerts = std::fs::read_to_string(monitoring().join("alerts.yml")).unwrap();
    let alert_exprs = alert_exprs(&alerts);
    assert!(alert_exprs.len() >= 10, "{alert_exprs:?}");
    let mut unknown = BTreeSet::new();
    let mut used = BTreeSet::new();
    for e in exprs.iter().chain(&alert_exprs) {
        for m in metric_names(e) {
            // `up` is Prometheus's own, per scrape target.
            if m != "up" && !served.contains(&m) {
                unknown.insert(format!("{m} (in {e})"));
            }
            used.insert(m);
        }
    }
    for v in &variables {
        if !served.contains(v) {
            unknown.insert(format!("{v} (a dashboard variable)"));
        }
    }
    assert!(
        unknown.is_empty(),
        "not served by the agent: {unknown:#?}\nserved: {served:#?}"
    );
    // Every family the agent serves is on the dashboard or in a rule (a
    // histogram through its buckets).
    let unused: Vec<&String> = served
        .iter()
        .filter(|m| !["_bucket", "_sum", "_count"].iter().any(|s| m.ends_with(s)))
        .filter(|m| {
            !used.contains(*m) && !used.contains(&format!("{m}_bucket")) && !variables.contains(*m)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "served but neither on the dashboard nor in a rule: {unused:?}"
    );
}

#[test]
fn metric_names_are_read_as_promql_reads_them() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (method, le) (rate(a_bucket{instance=~\"x|y\", le!=\"1\"}[5m]))) \
         / on(instance) group_left b + 1e3 > bool 0 and c offset 5m or vector(1)",
    );
    assert_eq!(names, ["a_bucket", "b", "c"]);
    assert_eq!(
        alert_exprs(
            "  - alert: X\n    expr: >-\n      a\n      > 1\n    for: 1m\n  - alert: Y\n    expr: b == 0\n"
        ),
        ["a > 1", "b == 0"]
    );
}
