//! Restarting the agent under traffic, and the evidence of where each
//! request went: the server's log of its peers, the agent's events and
//! audit rows, and when each client attempt ran.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{Agent, NetNs, Proc, auditq, bin};

use super::client::{Attempt, Held, Seen, hold};

/// The rmcp server on 127.0.0.1:8080, logging the peer of every request.
pub fn server(ns: &NetNs, dir: &Path) -> Proc {
    let args = ["server", "--listen", "127.0.0.1:8080"].map(String::from);
    let env = [("MCP_PEER_LOG".to_string(), "debug".to_string())];
    let mut p = Proc::spawn_env(
        "server",
        Some(ns.name()),
        &bin("mcp-peer"),
        &args,
        dir,
        &env,
    );
    p.wait_for_output("listening", Duration::from_secs(15));
    p
}

/// The peer of every request the server served (its debug line reads
/// `Some(<peer>): POST /mcp session=...`).
pub fn server_peers(server: &Proc) -> Vec<SocketAddr> {
    server
        .stderr()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("Some(")? + 5..];
            let (peer, after) = rest.split_once("): ")?;
            ["POST ", "GET ", "DELETE "]
                .iter()
                .any(|m| after.starts_with(m))
                .then(|| peer.parse().ok())?
        })
        .collect()
}

/// text → client address of every answered `tools/call` in the events.
pub fn recorded(agent: &Agent) -> HashMap<String, String> {
    agent
        .events()
        .iter()
        .filter(|e| e["kind"] == "exchange" && e["method"] == "tools/call")
        .filter_map(|e| {
            let text = e["params"]["arguments"]["text"].as_str()?.to_string();
            Some((text, e["client_addr"].as_str()?.to_string()))
        })
        .collect()
}

/// Texts of the echo calls in the audit's Parquet (DuckDB).
pub fn audited(agent: &Agent) -> Vec<String> {
    let rows = auditq::query(
        &agent.audit_dir(),
        "tool_calls_by_tool",
        &[
            ("tool", "echo"),
            ("from", "2000-01-01 00:00:00"),
            ("to", "2100-01-01 00:00:00"),
        ],
    );
    rows.iter()
        .filter_map(|r| {
            let args = r[4]
                .as_str()
                .map_or_else(|| r[4].to_string(), str::to_owned);
            let v: serde_json::Value = serde_json::from_str(&args).ok()?;
            v["text"].as_str().map(str::to_owned)
        })
        .collect()
}

/// One restart: when the signal went, the old agent was gone, the new one
/// said it was ready.
pub struct Restart {
    pub how: &'static str,
    pub signal: Instant,
    pub exited: Instant,
    pub ready: Instant,
    pub held: Vec<(Held, String, bool)>,
}

/// What the clients saw around one restart.
pub struct Window {
    pub first_refusal_ms: Option<f64>,
    pub drain_ms: f64,
    pub start_ms: f64,
    pub ready_to_answer_ms: f64,
    pub gap_ms: f64,
    pub refused: usize,
    pub cut: usize,
}

pub fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

pub fn window(r: &Restart, attempts: &[Attempt]) -> Window {
    // After the old agent is gone, an answer can only come from the new one.
    let recovered = attempts
        .iter()
        .filter(|a| a.start >= r.exited && matches!(a.seen, Seen::Answered { .. }))
        .map(|a| a.end)
        .min()
        .unwrap_or_else(|| panic!("{}: no answer after the restart", r.how));
    let during: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.start >= r.signal && a.start <= recovered)
        .collect();
    Window {
        first_refusal_ms: during
            .iter()
            .find(|a| a.seen == Seen::Refused)
            .map(|a| ms(r.signal, a.start)),
        drain_ms: ms(r.signal, r.exited),
        start_ms: ms(r.exited, r.ready),
        ready_to_answer_ms: ms(r.ready, recovered),
        gap_ms: ms(r.signal, recovered),
        refused: during.iter().filter(|a| a.seen == Seen::Refused).count(),
        cut: during
            .iter()
            .filter(|a| matches!(a.seen, Seen::Cut { .. }))
            .count(),
    }
}

/// Restarts the agent with `signal`, with one connection of each
/// [`Held`] kind open across it when `hold_open`; finishes those once the
/// new agent is ready.
pub fn restart(
    agent: &mut Agent,
    ns: &NetNs,
    sid: &str,
    signal: i32,
    how: &'static str,
    hold_open: bool,
) -> Restart {
    let tag: String = how.chars().filter(char::is_ascii_alphanumeric).collect();
    let conns = if hold_open {
        hold(ns, sid, &tag)
    } else {
        Vec::new()
    };
    let t_signal = Instant::now();
    agent.stop(signal);
    let exited = Instant::now();
    agent.restart();
    let ready = Instant::now();
    Restart {
        how,
        signal: t_signal,
        exited,
        ready,
        held: conns.into_iter().map(|c| c.finish()).collect(),
    }
}
