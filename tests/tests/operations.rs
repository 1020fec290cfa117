//! Operations under traffic: SIGHUP reloads (config, identity, policy)
//! while clients call drop no request, and SIGTERM drains in-flight
//! requests and loses no audit row of an answered call (DuckDB over the
//! Parquet the stopped agent left).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use mcp_interceptor_tests::{
    auditq,
    http::initialize,
    require_root,
    world::{World, messages, post_session, token},
};
use serde_json::{Value, json};

const THREADS: usize = 4;

/// One POST on a new connection; the JSON-RPC message answering `id`
/// (JSON or SSE), or `None` when the request failed.
fn post(
    w: &World,
    token: &str,
    sid: Option<&str>,
    body: &Value,
    id: Option<i64>,
) -> Option<(String, Value)> {
    // The connection fails once the stopping agent stops answering.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        post_session(&w.ns, token, sid, body, Duration::from_secs(5))
    }))
    .ok()?;
    let msg = match id {
        None => Value::Null,
        Some(id) => messages(&r).into_iter().find(|m| m["id"] == id)?,
    };
    Some((r.head, msg))
}

fn open_session(w: &World, token: &str) -> String {
    let (head, _) = post(w, token, None, &initialize(1), Some(1)).expect("initialize");
    let sid = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .expect("session id");
    post(
        w,
        token,
        Some(&sid),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        None,
    );
    sid
}

/// echo `text` in `sid`; its answer text, or `None`.
fn echo(w: &World, token: &str, sid: &str, id: i64, text: &str) -> Option<String> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": text}}});
    let (_, m) = post(w, token, Some(sid), &body, Some(id))?;
    m["result"]["content"][0]["text"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn reloads_under_traffic_drop_no_request() {
    require_root();
    let mut w = World::new("opsreload");
    let token = token(&w.issuer, "alice", &["dev"]);
    let pid = w.agent.proc().pid() as i32;
    let done = AtomicBool::new(false);
    let answered = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (w, token, done) = (&w, &token, &done);
                scope.spawn(move || {
                    let sid = open_session(w, token);
                    let mut n = 0;
                    let mut id = 10;
                    while !done.load(Ordering::Relaxed) || n < 20 {
                        let text = format!("t{t}-{n}");
                        let got = echo(w, token, &sid, id, &text);
                        assert_eq!(
                            got.as_deref(),
                            Some(text.as_str()),
                            "call {text} during reloads"
                        );
                        n += 1;
                        id += 1;
                    }
                    n
                })
            })
            .collect();
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(150));
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert!(answered >= THREADS * 20, "{answered}");
    let reloads = w.agent.log().matches("config reloaded").count();
    assert_eq!(reloads, 8, "every SIGHUP reloaded: {}", w.agent.log());
}

#[test]
fn graceful_stop_drains_and_loses_no_audit_row() {
    require_root();
    let mut w = World::new("opsstop");
    let token = token(&w.issuer, "alice", &["dev"]);
    let pid = w.agent.proc().pid() as i32;
    let answered: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (w, token) = (&w, &token);
                scope.spawn(move || {
                    let sid = open_session(w, token);
                    let mut ok = Vec::new();
                    // Until the stopping agent stops answering.
                    for n in 0..10_000 {
                        let text = format!("s{t}-{n}");
                        match echo(w, token, &sid, 10 + n, &text) {
                            Some(got) => {
                                assert_eq!(got, text);
                                ok.push(text);
                            }
                            None => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    w.agent.stop(15);
    assert!(
        answered.len() >= THREADS,
        "calls were answered before the stop: {}",
        answered.len()
    );
    assert!(w.agent.log().contains("agent stopped"), "{}", w.agent.log());

    // Every answered call is an audit row, after a clean stop.
    let rows = auditq::query(
        &w.agent.audit_dir(),
        "tool_calls_by_tool",
        &[
            ("tool", "echo"),
            ("from", "2000-01-01 00:00:00"),
            ("to", "2100-01-01 00:00:00"),
        ],
    );
    let stored: Vec<String> = rows.iter().map(|r| r[4].to_string()).collect();
    for text in &answered {
        assert!(
            stored
                .iter()
                .any(|a| a.contains(&format!("\\\"{text}\\\""))
                    || a.contains(&format!("\"{text}\""))),
            "answered call {text} has no audit row ({} rows for {} answers)",
            stored.len(),
            answered.len()
        );
    }
}
