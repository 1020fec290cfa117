//! `/metrics` and `/healthz` on the admin listener and the admin socket,
//! scraped after real traffic through the steered port: request counts by
//! method and decision, latency histograms, the audit, and the eBPF
//! steering counters.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    os::unix::net::UnixStream,
    time::Duration,
};

use mcp_interceptor_tests::{
    http::{RawResponse, exchange, in_netns},
    peer::call_with,
    require_root,
    world::{URL, World, token},
};
use serde_json::json;

const POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"], resource);
@id("echo")
permit (principal, action == Mcp::Action::"tools/call", resource) when { resource.name == "echo" };
"#;

fn get(w: &World, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    in_netns(&w.ns, move || {
        exchange(
            addr,
            &[req.as_bytes()],
            Duration::ZERO,
            Duration::from_secs(10),
        )
    })
}

/// The value of the sample whose name and labels start with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

#[test]
fn metrics_count_requests_decisions_audit_and_steering() {
    require_root();
    let w = World::with("metrics", "", |dir| {
        let p = dir.join("metrics.cedar");
        std::fs::write(&p, POLICY).unwrap();
        format!(
            "[policy]\nfiles = [\"{}\"]\n[admin]\nsocket = \"{}\"\nlisten = \"127.0.0.1:9464\"\n",
            p.display(),
            dir.join("admin.sock").display()
        )
    });
    let token = token(&w.issuer, "alice", &["dev"]);
    for i in 0..3 {
        let c = call_with(
            w.ns.name(),
            URL,
            "echo",
            json!({"text": format!("m{i}")}),
            &["--bearer", &token],
        );
        assert_eq!(c.text(), format!("m{i}"));
    }
    let denied = call_with(
        w.ns.name(),
        URL,
        "add",
        json!({"a": 1, "b": 2}),
        &["--bearer", &token],
    );
    assert!(!denied.ok(), "add is not permitted");

    let r = get(&w, "/metrics");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.contains("text/plain; version=0.0.4"), "{}", r.head);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let allowed = sample(
        &text,
        "mcp_interceptor_requests_total{method=\"tools/call\",kind=\"exchange\",decision=\"allow\"}",
    );
    assert_eq!(allowed, 3.0, "{text}");
    let refused = sample(
        &text,
        "mcp_interceptor_requests_total{method=\"tools/call\",kind=\"denied\",decision=\"deny\"}",
    );
    assert_eq!(refused, 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "mcp_interceptor_request_duration_seconds_count{method=\"tools/call\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "mcp_interceptor_request_duration_seconds_bucket{method=\"tools/call\",le=\"+Inf\"}"
        ),
        3.0
    );
    assert!(
        sample(&text, "mcp_interceptor_audit_rows_total") >= 8.0,
        "{text}"
    );
    assert_eq!(sample(&text, "mcp_interceptor_audit_healthy"), 1.0);
    assert_eq!(sample(&text, "mcp_interceptor_approvals_pending"), 0.0);
    // Every client run opens connections; all of them were steered.
    assert!(
        sample(&text, "mcp_interceptor_steer_steered_total{port=\"8080\"}") >= 4.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "mcp_interceptor_steer_dropped_total{port=\"8080\"}"),
        0.0
    );

    let h = get(&w, "/healthz");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["audit_writing"], true);
    // Everything else on the listener needs a token.
    assert_eq!(get(&w, "/v1/approvals").status, 401);

    // The admin socket serves the same.
    let mut s = UnixStream::connect(w.dir.path().join("admin.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("mcp_interceptor_up 1"), "{out}");
}
