//! The audit writer on its own: rows per second through `append` (the part
//! on the request path) and Parquet bytes per row, with the default fsync
//! policy, for realistic tools/call rows (a ~2 KB customer record).

use std::{net::SocketAddr, time::Instant};

use anyhow::Result;
use interceptor::{
    audit::{Audit, chain},
    config::Audit as AuditConfig,
    conn::ConnInfo,
    identity::{AuthMethod, Caller},
    pipeline::{Direction, EventKind, ExchangeEvent, Transport},
};
use mcp_interceptor_tests::TempDir;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Serialize)]
pub struct AuditRate {
    pub rows: u64,
    pub rows_per_sec: f64,
    pub us_per_row: f64,
    pub bytes_per_row: f64,
}

fn event(i: u64, caller: &std::sync::Arc<Caller>) -> ExchangeEvent {
    let result = json!({"content": [{"type": "text", "text": format!(
        "{{\"id\":\"c-{i}\",\"name\":\"Ada Lovelace\",\"email\":\"ada{i}@example.com\",\"orders\":[{}]}}",
        (0..12).map(|n| format!("{{\"order\":\"o-{n}\",\"total\":{}.99,\"status\":\"shipped\"}}", n * 7)).collect::<Vec<_>>().join(",")
    )}]});
    let conn = ConnInfo {
        id: i,
        client: SocketAddr::from(([10, 1, 2, 3], 50000)),
        orig_dst: SocketAddr::from(([10, 1, 2, 4], 8080)),
        tls: None,
        process: None,
    };
    ExchangeEvent {
        // A TLS client, as in production: the row carries its three columns.
        tls: Some(interceptor::conn::Negotiated {
            version: "TLSv1.3",
            cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
            alpn: Some("http/1.1".into()),
        }),
        caller: Some(caller.clone()),
        session_id: Some(format!("session-{}", i / 50)),
        protocol_version: Some("2025-11-25".into()),
        client_name: Some("bench".into()),
        client_version: Some("1.0".into()),
        jsonrpc_id: Some(json!(i)),
        method: Some("tools/call".into()),
        target: Some("lookup_customer".into()),
        params: Some(json!({"name": "lookup_customer", "arguments": {"id": format!("c-{i}")}})),
        result: Some(result),
        http_method: "POST".into(),
        http_path: "/mcp".into(),
        http_status: Some(200),
        received_us: 1_700_000_000_000_000 + i as i64 * 1000,
        bytes_in: 180,
        bytes_out: 2100,
        ..ExchangeEvent::new(
            EventKind::Exchange,
            Direction::ClientToServer,
            &conn,
            Transport::StreamableHttp,
        )
    }
}

pub fn measure(dir: &TempDir, rows: u64) -> Result<AuditRate> {
    let base = dir.path().join("audit-rate");
    let cfg = AuditConfig {
        dir: base.join("audit"),
        signing_key: base.join("key"),
        host: Some("bench".into()),
        ..AuditConfig::default()
    };
    let audit = Audit::start(&cfg, None)?;
    // Rows carry an OIDC identity, as a production agent's do.
    let caller = std::sync::Arc::new(Caller {
        subject: "alice@example.com".into(),
        issuer: Some("https://idp.example.com/realms/corp".into()),
        method: AuthMethod::Oidc,
        groups: vec!["dev".into(), "oncall".into()],
        scopes: vec!["mcp:tools".into()],
        token_id: Some("6f1c2d7e-5b1a-4c8e-9a57-0d3c2b1a9f00".into()),
        client_id: Some("claude-desktop".into()),
        cert: None,
        process: None,
    });
    let events: Vec<ExchangeEvent> = (0..rows).map(|i| event(i, &caller)).collect();
    let started = Instant::now();
    for e in &events {
        audit.append(audit.stamp().from_event(e));
    }
    let elapsed = started.elapsed().as_secs_f64();
    audit.shutdown();
    let bytes: u64 = chain::data_files(&cfg.dir.join("events"))
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    Ok(AuditRate {
        rows,
        rows_per_sec: rows as f64 / elapsed,
        us_per_row: elapsed * 1e6 / rows as f64,
        bytes_per_row: bytes as f64 / rows as f64,
    })
}
