//! Sessions are the server's: only a session the agent saw the server open
//! is bound (to its opener), a made-up `Mcp-Session-Id` is refused without
//! reaching the server or the session table, and a flood of them leaves
//! every binding in place. Legacy SSE POSTs are matched on the parsed
//! `sessionId`, so another caller cannot reach a stream by adding a
//! query parameter.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsFd,
    sync::mpsc,
    time::Duration,
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, everything,
    http::{RawResponse, exchange, in_netns, initialize, post_in},
    oidc::Issuer,
    peer::auth_log,
    require_root,
    world::{UPSTREAM, World, bearer, header, post_session, sections, token},
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn code(r: &RawResponse) -> i64 {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_i64())
        .unwrap_or(0)
}

/// Opens a session for `token` (initialize + initialized); its id.
fn open_session(w: &World, token: &str) -> String {
    let r = post_session(&w.ns, token, None, &initialize(1), LIMIT);
    assert_eq!(r.status, 200, "{r:?}");
    let sid = header(&r, "mcp-session-id").expect("a session").to_string();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post_session(&w.ns, token, Some(&sid), &note, LIMIT);
    assert!(r.status < 300, "{r:?}");
    sid
}

fn ping(w: &World, token: &str, sid: &str) -> RawResponse {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    post_session(&w.ns, token, Some(sid), &body, LIMIT)
}

/// `method` on /mcp in session `sid`, `Connection: close`.
fn in_session(w: &World, method: &str, token: &str, sid: &str) -> RawResponse {
    let req = format!(
        "{method} /mcp HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\nMcp-Session-Id: {sid}\r\n\
         MCP-Protocol-Version: 2025-06-18\r\nConnection: close\r\n\r\n"
    );
    in_netns(&w.ns, move || {
        exchange(addr(), &[req.as_bytes()], Duration::ZERO, LIMIT)
    })
}

#[test]
fn made_up_session_ids_are_refused_and_a_flood_unbinds_nothing() {
    require_root();
    let w = World::new("bsess");
    let alice = token(&w.issuer, "alice", &["dev"]);
    let bob = token(&w.issuer, "bob", &["dev"]);
    let sid = open_session(&w, &alice);
    assert_eq!(ping(&w, &alice, &sid).status, 200);
    let before = auth_log(&w.server).len();

    // Made-up ids, every method: refused by the agent (404, as the MCP spec
    // says for a session the server does not know), never sent on.
    for method in ["GET", "DELETE"] {
        let r = in_session(&w, method, &bob, "made-up-1");
        assert_eq!((r.status, code(&r)), (404, -32000), "{method}: {r:?}");
    }
    let r = ping(&w, &bob, "made-up-2");
    assert_eq!((r.status, code(&r)), (404, -32000), "{r:?}");

    // A flood of them from bob, on four connections at a time.
    const FLOOD: usize = 2000;
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (ns, bob) = (w.ns.path(), bob.clone());
            std::thread::spawn(move || {
                let f = std::fs::File::open(&ns).expect("open netns");
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                let mut statuses = Vec::new();
                for i in 0..FLOOD / 4 {
                    let req = format!(
                        "GET /mcp HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer {bob}\r\n\
                         Mcp-Session-Id: junk-{t}-{i}\r\nConnection: close\r\n\r\n"
                    );
                    statuses
                        .push(exchange(addr(), &[req.as_bytes()], Duration::ZERO, LIMIT).status);
                }
                statuses
            })
        })
        .collect();
    for h in workers {
        let statuses = h.join().unwrap();
        assert!(statuses.iter().all(|s| *s == 404), "{statuses:?}");
    }
    assert_eq!(
        auth_log(&w.server).len(),
        before,
        "no request with a made-up session reached the server"
    );

    // Two session ids, his and hers: which one a server reads differs.
    let his = open_session(&w, &bob);
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}).to_string();
    let both = [
        bearer(&bob),
        format!("Mcp-Session-Id: {his}"),
        format!("Mcp-Session-Id: {sid}"),
    ];
    let refs: Vec<&str> = both.iter().map(String::as_str).collect();
    let r = post_in(&w.ns, addr(), "/mcp", body.as_bytes(), &refs);
    assert_eq!((r.status, code(&r)), (400, -32006), "{r:?}");

    // Alice's binding is where it was: hers, and not bob's.
    assert_eq!(ping(&w, &alice, &sid).status, 200);
    let r = ping(&w, &bob, &sid);
    assert_eq!((r.status, code(&r)), (403, -32001), "{r:?}");
    w.agent.wait_events("the refusals' rows", |ev| {
        ev.iter()
            .filter(|e| e["error"]["code"] == -32000 && e["http_status"] == 404)
            .count()
            >= FLOOD + 3
    });
}

/// A legacy SSE stream held open from inside `ns` by `token`; yields the
/// message endpoint its `endpoint` event named. Dropping the sender ends it.
fn legacy_stream(ns: &NetNs, token: &str) -> (String, mpsc::Sender<()>) {
    let (path, token) = (ns.path(), token.to_string());
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let mut s = TcpStream::connect_timeout(&addr(), LIMIT).expect("connect");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let req = format!(
            "GET /sse HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
        let mut endpoint = false;
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("event: endpoint") {
                endpoint = true;
            } else if endpoint && let Some(d) = line.strip_prefix("data:") {
                tx.send(d.trim().to_string()).unwrap();
                break;
            }
        }
        let _ = stop_rx.recv();
        drop(s);
    });
    let target = rx.recv_timeout(LIMIT).expect("an endpoint event");
    (target, stop_tx)
}

#[test]
fn legacy_sse_posts_are_matched_on_the_parsed_session_id() {
    require_root();
    let (ns, dir) = (NetNs::new("blegacy"), TempDir::new("blegacy"));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let _server = everything::server(ns.name(), "sse", 8080, dir.path());
    let cred = dir.path().join("upstream-credential");
    std::fs::write(&cred, format!("{UPSTREAM}\n")).unwrap();
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\n",
        "",
        &sections(&issuer, &cred, ""),
        Vec::new(),
    );
    let alice = token(&issuer, "alice", &["dev"]);
    let bob = token(&issuer, "bob", &["dev"]);
    let (target, _stream) = legacy_stream(&ns, &alice);
    let (path, query) = target.split_once('?').expect("a query");
    let sid = query
        .split('&')
        .find_map(|p| p.strip_prefix("sessionId="))
        .expect("sessionId");
    let post = |target: &str, token: &str| {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}).to_string();
        post_in(&ns, addr(), target, body.as_bytes(), &[&bearer(token)])
    };

    // Bob names alice's session in spellings the server reads as hers.
    for t in [
        format!("{path}?sessionId={sid}&x=1"),
        format!("{path}?x=1&sessionId={sid}"),
        format!("{}?sessionId={sid}", path.to_uppercase()),
        format!("{path}/?sessionId={sid}"),
        target.clone(),
    ] {
        let r = post(&t, &bob);
        assert_eq!((r.status, code(&r)), (403, -32001), "{t}: {r:?}");
    }
    // Queries with no single reading, and sessions the server never opened.
    for (t, status, c) in [
        (
            format!("{path}?sessionId={sid}&sessionId={sid}"),
            400,
            -32006,
        ),
        (format!("{path}?sessionid={sid}"), 400, -32006),
        (format!("{path}?sessionId={sid}%26x%3d1"), 400, -32006),
        (format!("{path}?sessionId=not-a-session"), 404, -32000),
    ] {
        let r = post(&t, &alice);
        assert_eq!((r.status, code(&r)), (status, c), "{t}: {r:?}");
    }
    // Alice's own POSTs, extra parameter and all, are hers.
    let r = post(&format!("{path}?sessionId={sid}&x=1"), &alice);
    assert_eq!(r.status, 202, "{r:?}");
    let events = agent.wait_events("alice's ping and the refusals", |ev| {
        ev.iter()
            .any(|e| e["method"] == "ping" && e["caller"]["subject"] == "alice")
            && ev.iter().filter(|e| e["error"]["code"] == -32001).count() >= 5
    });
    let pings: Vec<&Value> = events.iter().filter(|e| e["method"] == "ping").collect();
    assert!(
        pings.iter().all(|e| e["caller"]["subject"] == "alice"),
        "no ping of bob's reached the stream: {pings:?}"
    );
}
