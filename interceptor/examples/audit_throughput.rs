//! Audit writer throughput and size: `cargo run --release --example
//! audit_throughput [ROWS]`. Appends realistic tools/call rows (a ~2 KB
//! result) through the real writer for each fsync policy, then reports
//! rows/s on the request path and Parquet bytes per row. Numbers, not
//! assertions: speed targets live in the bench, never in tests.

use std::time::Instant;

use interceptor::{
    audit::{Audit, chain},
    config::{Audit as AuditConfig, Fsync},
    pipeline::{Direction, EventKind, ExchangeEvent, Transport},
};
use serde_json::json;

fn event(i: u64) -> ExchangeEvent {
    let result = json!({"content": [{"type": "text", "text": format!(
        "{{\"id\":\"c-{i}\",\"name\":\"Ada Lovelace\",\"email\":\"ada{i}@example.com\",\"orders\":[{}]}}",
        (0..12).map(|n| format!("{{\"order\":\"o-{n}\",\"total\":{}.99,\"status\":\"shipped\"}}", n * 7)).collect::<Vec<_>>().join(",")
    )}]});
    ExchangeEvent {
        kind: EventKind::Exchange,
        direction: Direction::ClientToServer,
        conn_id: i,
        client_addr: "10.1.2.3:50000".into(),
        orig_dst: "10.1.2.4:8080".into(),
        session_id: Some(format!("session-{}", i / 50)),
        transport: Transport::StreamableHttp,
        protocol_version: Some("2025-11-25".into()),
        client_name: Some("bench".into()),
        client_version: Some("1.0".into()),
        jsonrpc_id: Some(json!(i)),
        method: Some("tools/call".into()),
        target: Some("lookup_customer".into()),
        params: Some(json!({"name": "lookup_customer", "arguments": {"id": format!("c-{i}")}})),
        result: Some(result),
        error: None,
        http_method: "POST".into(),
        http_path: "/mcp".into(),
        http_status: Some(200),
        decided_by: None,
        rewritten: false,
        received_us: 1_700_000_000_000_000 + i as i64 * 1000,
        forwarded_us: None,
        first_byte_us: None,
        done_us: None,
        bytes_in: 180,
        bytes_out: 2100,
    }
}

fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    for fsync in [Fsync::None, Fsync::Interval, Fsync::Always] {
        let n = if fsync == Fsync::Always {
            rows.min(2_000)
        } else {
            rows
        };
        let tmp =
            std::env::temp_dir().join(format!("mcpi-audit-bench-{}-{fsync:?}", std::process::id()));
        let cfg = AuditConfig {
            dir: tmp.join("audit"),
            signing_key: tmp.join("key"),
            fsync,
            host: Some("bench".into()),
            ..AuditConfig::default()
        };
        let audit = Audit::start(&cfg, None).expect("start audit");
        let started = Instant::now();
        for i in 0..n {
            audit.append(audit.stamp().from_event(&event(i)));
        }
        let elapsed = started.elapsed();
        audit.shutdown();
        let bytes: u64 = chain::data_files(&cfg.dir.join("events"))
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "fsync={fsync:?}: {n} rows in {:.2}s = {:.0} rows/s on the request path ({:.1} us/row); Parquet {:.0} bytes/row",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / n as f64,
            bytes as f64 / n as f64
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
