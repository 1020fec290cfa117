//! What the agent shows people, and what it asks servers for (issue 27),
//! end to end through the steered port: caller-chosen method names, tool
//! names and URIs holding terminal escapes reach `audit tail`, `audit
//! replay` and the agent's log only escaped; a client that accepts gzip
//! against a server that compresses still gets a judged, masked answer.

use std::{net::SocketAddr, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, bin,
    everything::repo,
    http::{initialize, post_in},
    peer, require_root,
    s3::venv_bin,
    wait_for,
};
use serde_json::{Value, json};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const SIGTERM: i32 = 15;

fn addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

/// Characters that must never reach an operator's terminal raw: C0 (but
/// the line breaks of the output itself), DEL, C1, bidi controls.
fn raw_controls(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| c != '\n' && interceptor::escape::is_unsafe(c))
        .collect()
}

/// JSON-RPC requests whose method, tool name or URI would clear the
/// screen, set the window title, rewrite the line or reverse it.
fn hostile_calls() -> Vec<Value> {
    vec![
        json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call\u{1b}[2J\u{1b}[H", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call",
               "params": {"name": "wipe\u{1b}[1A\u{1b}[2K\rallowed\u{202e}", "arguments": {}}}),
        json!({"jsonrpc": "2.0", "id": 13, "method": "resources/read",
               "params": {"uri": "file:///srv/x\u{1b}]0;pwned\u{7}\u{9b}31m\n"}}),
    ]
}

#[test]
fn caller_escape_sequences_reach_tail_replay_and_logs_only_escaped() {
    require_root();
    let (ns, dir) = (NetNs::new("outesc"), TempDir::new("outesc"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT);
    let audit = agent.audit_dir().display().to_string();
    let tail = Proc::spawn(
        "tail",
        None,
        &bin("mcp-interceptor"),
        &["audit", "tail", "--dir", &audit].map(String::from),
        dir.path(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let init = post_in(
        &ns,
        addr(),
        "/mcp",
        initialize(1).to_string().as_bytes(),
        &[],
    );
    assert_eq!(init.status, 200, "{init:?}");
    let sid = init
        .head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no session: {}", init.head));
    let header = format!("Mcp-Session-Id: {sid}");
    for call in hostile_calls() {
        post_in(&ns, addr(), "/mcp", call.to_string().as_bytes(), &[&header]);
    }
    // Each call leaves a row naming its method or target; all three shown.
    let shown = wait_for("the hostile rows in tail", Duration::from_secs(10), || {
        let out = tail.stdout();
        ["[2J", "allowed", "pwned"]
            .iter()
            .all(|n| out.contains(n))
            .then_some(out)
    });
    assert_eq!(raw_controls(&shown), Vec::<char>::new(), "tail:\n{shown}");
    for escaped in [
        "tools/call\\x1b[2J\\x1b[H",
        "wipe\\x1b[1A\\x1b[2K\\x0dallowed\\u{202e}",
        "x\\x1b]0;pwned\\x07\\u{9b}31m\\x0a",
    ] {
        assert!(shown.contains(escaped), "{escaped} not in tail:\n{shown}");
    }
    drop(tail);

    let replayed = agent.audit_cli(&["replay", "--session", &sid, "--dir", &audit]);
    let text = String::from_utf8_lossy(&replayed.stdout).into_owned();
    assert!(replayed.status.success(), "{text}");
    assert!(text.contains("tools/call\\x1b[2J"), "replay:\n{text}");
    assert_eq!(raw_controls(&text), Vec::<char>::new(), "replay:\n{text}");
    // JSON stays JSON: the exact names, escaped only as JSON escapes them.
    let json = agent.audit_cli(&["replay", "--session", &sid, "--dir", &audit, "--json"]);
    let methods: Vec<String> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["method"].as_str().map(String::from))
        .collect();
    assert!(
        methods.iter().any(|m| m == "tools/call\u{1b}[2J\u{1b}[H"),
        "{methods:?}"
    );
    // The agent's own text log: caller text in fields and messages alike.
    let log = agent.log();
    assert_eq!(raw_controls(&log), Vec::<char>::new(), "log:\n{log}");
    // The Markdown report over the same trail (rows in signed files).
    agent.stop(SIGTERM);
    let out = dir.path().join("report");
    let run = agent.cli(&[
        "report",
        "nist",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--dir",
        &audit,
        "--out",
        &out.display().to_string(),
    ]);
    // Written whole; exit 3 since anonymous callers leave IA-2 not met.
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    let md = std::fs::read_to_string(out.join("nist-report.md")).unwrap();
    assert!(
        md.contains("wipe\\\\x1b\\[1A"),
        "the hostile tool's row:\n{md}"
    );
    assert_eq!(raw_controls(&md), Vec::<char>::new(), "report:\n{md}");
}

/// The Python server with `--compress mode`, and an agent in front of it.
fn compressing(tag: &str, mode: &str) -> (NetNs, TempDir, Proc, Agent) {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let script = repo().join("tests/peers/judged_server.py");
    let args = [&script.display().to_string(), "--compress", mode].map(String::from);
    let mut server = Proc::spawn(
        &format!("gzip-{tag}"),
        Some(ns.name()),
        &venv_bin("python"),
        &args,
        dir.path(),
    );
    server.wait_for_output("judged server ready", Duration::from_secs(30));
    let agent = Agent::start(&ns, dir.path(), "", PORT);
    (ns, dir, server, agent)
}

const EMAIL: &str = "ada.lovelace@example.org";

fn echo_email() -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"contact": EMAIL}}})
    .to_string()
    .into_bytes()
}

#[test]
fn a_client_accepting_gzip_gets_a_judged_masked_answer_from_a_compressing_server() {
    require_root();
    let (ns, _dir, server, _agent) = compressing("gzipok", "accepted");
    let r = post_in(
        &ns,
        addr(),
        "/mcp",
        &echo_email(),
        &["Accept-Encoding: gzip, br"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(!text.is_empty(), "no result: {v}");
    assert!(
        !r.body.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes()),
        "{v}"
    );
    assert!(text.contains("[EMAIL"), "masked: {text}");
    // The server was asked for identity, not what the client accepts.
    let seen: Vec<String> = server
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("accept-encoding "))
        .map(String::from)
        .collect();
    assert_eq!(seen, ["identity"], "{seen:?}");
}

#[test]
fn an_answer_compressed_against_the_agents_ask_is_refused_clearly() {
    require_root();
    let (ns, _dir, _server, _agent) = compressing("gzipno", "always");
    let r = post_in(
        &ns,
        addr(),
        "/mcp",
        &echo_email(),
        &["Accept-Encoding: gzip"],
    );
    assert_eq!(r.status, 502, "{r:?}");
    let v = r.json();
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("Content-Encoding \"gzip\"") && msg.contains("asked for identity"),
        "{v}"
    );
    assert_eq!(
        v["error"]["data"]["reason"], "unjudged_server_message",
        "{v}"
    );
}
