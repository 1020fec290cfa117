//! Faults of the agent's peers, end to end: an MCP server that is slow or
//! never answers (504 / -32005, then the next call works), and an OIDC
//! issuer that goes down (cached keys trusted for a bounded time, then
//! fail closed with 503 / -32007, recovery when it returns). Each failure
//! leaves a log line, an event and an audit row.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use interceptor::audit::replay::{Step, read_all};
use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    http::{RawResponse, exchange, in_netns, initialize, post},
    oidc::Issuer,
    peer::{self, call},
    require_root, wait_for,
    world::{CLIENT, World, bearer, header, now, post_mcp},
};
use serde_json::{Value, json};

/// The agent's response timeout in these tests; the slow tool sleeps well
/// past it, so an answer before the tool's end can only be the agent's.
const TIMEOUT_MS: u64 = 1000;
const SLOW_MS: u64 = 5000;
const URL: &str = "http://127.0.0.1:8080/mcp";

fn tables() -> String {
    format!(
        "[[intercept.ports]]\nport = 8080\n[http]\nupstream_response_timeout_ms = {TIMEOUT_MS}\n"
    )
}

fn addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

/// The rmcp server in its stateless form: every answer is one JSON body,
/// so the response head waits for the tool.
fn server_json(ns: &NetNs, dir: &TempDir) -> Proc {
    peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--json-response"],
    )
}

fn tool_call(id: i64, name: &str, arguments: Value) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": name, "arguments": arguments}});
    post("/mcp", body.to_string().as_bytes(), &[])
}

/// One raw request from inside `ns`, timed.
fn timed(ns: &NetNs, req: Vec<u8>) -> (RawResponse, Duration) {
    in_netns(ns, move || {
        let t = Instant::now();
        let r = exchange(addr(), &[&req], Duration::ZERO, Duration::from_secs(15));
        (r, t.elapsed())
    })
}

/// The recorded event that says `method` went unanswered.
fn unanswered(agent: &Agent, method: &str) -> Value {
    let events = agent.wait_events("the unanswered request", |ev| {
        ev.iter()
            .any(|e| e["kind"] == "unanswered" && e["method"] == method)
    });
    events
        .into_iter()
        .find(|e| e["kind"] == "unanswered" && e["method"] == method)
        .unwrap()
}

/// The first audit row (Parquet or WAL, as `audit replay` reads them) of
/// `kind` that `pred` accepts.
fn audit_row(agent: &Agent, kind: &str, pred: impl Fn(&Step) -> bool) -> Step {
    wait_for("the audit row", Duration::from_secs(10), || {
        read_all(&agent.audit_dir())
            .ok()?
            .into_iter()
            .find(|s| s.kind == kind && pred(s))
    })
}

fn method_is(method: &str) -> impl Fn(&Step) -> bool {
    move |s| s.message.method.as_deref() == Some(method)
}

fn assert_timed_out_by_agent(took: Duration) {
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS - 100)
            && took < Duration::from_millis(SLOW_MS - 500),
        "the agent answers at its timeout ({TIMEOUT_MS} ms), not when the tool ends: {took:?}"
    );
}

#[test]
fn slow_tool_with_a_json_answer_gets_504_and_the_next_call_works() {
    require_root();
    let (ns, dir) = (NetNs::new("fslowj"), TempDir::new("fslowj"));
    let _server = server_json(&ns, &dir);
    let agent = Agent::start(&ns, dir.path(), "", &tables());

    let (slow, took) = timed(&ns, tool_call(7, "sleep", json!({"ms": SLOW_MS})));
    assert_eq!((slow.status, slow.code()), (504, -32005), "{slow:?}");
    assert_eq!(slow.json()["id"], 7, "the error answers the call by id");
    let message = slow.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("no response within 1s")
            && message.contains("http.upstream_response_timeout_ms"),
        "{message}"
    );
    assert_timed_out_by_agent(took);

    // The next calls work: one slow but within the limit, one quick.
    let (within, _) = timed(&ns, tool_call(8, "sleep", json!({"ms": 300})));
    assert_eq!(within.status, 200, "{within:?}");
    assert_eq!(
        within.json()["result"]["content"][0]["text"],
        "slept 300 ms"
    );
    let (echo, _) = timed(&ns, tool_call(9, "echo", json!({"text": "after"})));
    assert_eq!(echo.json()["result"]["content"][0]["text"], "after");

    let ev = unanswered(&agent, "tools/call");
    assert_eq!(
        (&ev["target"], &ev["http_status"], &ev["error"]["code"]),
        (&json!("sleep"), &json!(504), &json!(-32005)),
        "{ev}"
    );
    let row = audit_row(&agent, "unanswered", method_is("tools/call"));
    assert_eq!(
        (
            row.message.target.as_deref(),
            row.http_status,
            row.error_code
        ),
        (Some("sleep"), Some(504), Some(-32005)),
        "{row:?}"
    );
    let log = agent.log();
    assert!(
        log.contains("upstream failed") && log.contains("sent no response within 1s"),
        "{log}"
    );
}

/// rmcp answers a session's POST with an SSE stream whose 200 head comes
/// at once: the timeout then bounds the wait for the answer itself.
#[test]
fn slow_tool_on_an_sse_answer_gets_a_timeout_error_and_the_next_call_works() {
    require_root();
    let (ns, dir) = (NetNs::new("fslows"), TempDir::new("fslows"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", &tables());

    let t = Instant::now();
    let slow = call(ns.name(), URL, "sleep", json!({"ms": SLOW_MS}));
    let took = t.elapsed();
    assert!(!slow.ok(), "the call fails: {:?}", slow.output);
    let err = slow.stderr();
    assert!(
        err.contains("-32005") && err.contains("http.upstream_response_timeout_ms"),
        "{err}"
    );
    // initialize and tools/list come first; each takes milliseconds.
    assert_timed_out_by_agent(took);

    let within = call(ns.name(), URL, "sleep", json!({"ms": 300}));
    assert_eq!(within.text(), "slept 300 ms");
    assert_eq!(
        call(ns.name(), URL, "echo", json!({"text": "after"})).text(),
        "after"
    );

    let ev = unanswered(&agent, "tools/call");
    assert_eq!(
        (&ev["target"], &ev["error"]["code"]),
        (&json!("sleep"), &json!(-32005)),
        "{ev}"
    );
    let session = ev["session_id"]
        .as_str()
        .expect("in the session")
        .to_string();
    let row = audit_row(&agent, "unanswered", method_is("tools/call"));
    assert_eq!(
        (row.session_id.as_deref(), row.error_code),
        (Some(session.as_str()), Some(-32005)),
        "{row:?}"
    );
    assert!(
        agent.log().contains("upstream answer timed out"),
        "{}",
        agent.log()
    );
}

/// Sampling (and elicitation) wait for the client, perhaps for a human:
/// the server is silent then, but not at fault, so the call is not cut.
#[test]
fn a_server_waiting_on_the_client_is_not_timed_out() {
    require_root();
    let (ns, dir) = (NetNs::new("fwait"), TempDir::new("fwait"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", &tables());
    let delay = (2 * TIMEOUT_MS).to_string();
    let args = ["--sampling-reply", "four", "--sampling-delay-ms", &delay];
    let t = Instant::now();
    let asked = peer::call_with(ns.name(), URL, "ask_llm", json!({"prompt": "2+2?"}), &args);
    assert_eq!(asked.text(), "sampled: four");
    assert!(t.elapsed() >= Duration::from_millis(2 * TIMEOUT_MS));
    assert!(
        agent.events().iter().all(|e| e["kind"] != "unanswered"),
        "{:#?}",
        agent.events()
    );
}

/// A TCP listener inside a namespace that accepts connections, reads what
/// arrives and never answers; each complete request head is reported.
struct BlackHole {
    heads: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    fn start(ns: &NetNs, at: SocketAddr) -> Self {
        // A socket stays in the namespace it was made in.
        let listener = in_netns(ns, move || TcpListener::bind(at).expect("bind black hole"));
        listener.set_nonblocking(true).unwrap();
        let (tx, heads) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<(TcpStream, Vec<u8>, bool)> = Vec::new();
            let until = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                if let Ok((s, _)) = listener.accept() {
                    s.set_nonblocking(true).unwrap();
                    conns.push((s, Vec::new(), false));
                }
                for (s, buf, told) in &mut conns {
                    let mut chunk = [0u8; 4096];
                    if let Ok(n) = s.read(&mut chunk) {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    if !*told && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        *told = true;
                        let _ = tx.send(String::from_utf8_lossy(buf).into_owned());
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            heads,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn upstream_that_never_answers_the_request_head_gets_504() {
    require_root();
    let (ns, dir) = (NetNs::new("fhole"), TempDir::new("fhole"));
    let hole = BlackHole::start(&ns, addr());
    let agent = Agent::start(&ns, dir.path(), "", &tables());

    let req = post("/mcp", initialize(3).to_string().as_bytes(), &[]);
    let (resp, took) = timed(&ns, req);
    assert_eq!((resp.status, resp.code()), (504, -32005), "{resp:?}");
    assert_eq!(resp.json()["id"], 3);
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS - 100) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let head = hole
        .heads
        .recv_timeout(Duration::from_secs(5))
        .expect("the request reached the silent server");
    assert!(head.starts_with("POST /mcp HTTP/1.1\r\n"), "{head}");

    let ev = unanswered(&agent, "initialize");
    assert_eq!(
        (&ev["http_status"], &ev["error"]["code"]),
        (&json!(504), &json!(-32005)),
        "{ev}"
    );
    let row = audit_row(&agent, "unanswered", method_is("initialize"));
    assert_eq!((row.http_status, row.error_code), (Some(504), Some(-32005)));
    assert!(agent.log().contains("upstream failed"), "{}", agent.log());

    // A real server in its place: the next request works (no connection
    // to the silent one was kept for reuse).
    drop(hole);
    let _server = server_json(&ns, &dir);
    let (ok, _) = timed(&ns, post("/mcp", initialize(4).to_string().as_bytes(), &[]));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["result"]["serverInfo"]["name"], "mcp-peer");
}

const ISSUER_PORT: u16 = 9400;
const MAX_AGE: u64 = 2;
const MAX_STALE: u64 = 3;

/// A token of the issuer's current key for alice; `jti` keeps two tokens
/// minted in the same second apart (the agent caches verified tokens by
/// their text).
fn alice(issuer: &Issuer, jti: &str) -> String {
    issuer.mint(
        json!({"iss": issuer.url, "aud": CLIENT, "sub": "alice", "groups": ["dev"],
               "jti": jti, "iat": now(), "exp": now() + 600}),
        Value::Null,
        "key",
    )
}

fn status(w: &World, token: &str) -> RawResponse {
    post_mcp(&w.ns, initialize(1), &[bearer(token)])
}

fn issuer_reachable(ns: &NetNs) -> bool {
    let at = SocketAddr::from(([127, 0, 0, 1], ISSUER_PORT));
    in_netns(ns, move || {
        TcpStream::connect_timeout(&at, Duration::from_secs(1)).is_ok()
    })
}

#[test]
fn issuer_down_keys_trusted_until_stale_then_fail_closed_then_recover() {
    require_root();
    let extra = format!("jwks_max_age_seconds = {MAX_AGE}\njwks_max_stale_seconds = {MAX_STALE}\n");
    let mut w = World::with("fidp", &extra, |_| String::new());
    let (cached, fresh) = (alice(&w.issuer, "cached"), alice(&w.issuer, "fresh"));
    assert_eq!(status(&w, &cached).status, 200, "issuer up");

    w.issuer.proc().stop(9, Duration::from_secs(10));
    let down = Instant::now();
    assert!(!issuer_reachable(&w.ns), "the issuer is down");

    // Keys fetched at most MAX_AGE before the stop stay trusted at least
    // MAX_STALE after it: a token verified before, and one never seen
    // (checked against the cached keys now).
    for (what, token) in [("cached", &cached), ("fresh", &fresh)] {
        let r = status(&w, token);
        assert!(
            r.status == 200,
            "{what} token {:?} after the stop: {r:?}",
            down.elapsed()
        );
    }
    assert!(down.elapsed() < Duration::from_secs(MAX_STALE));

    // Then the keys are stale: every token is refused, the cached one too.
    let refused = wait_for("the keys to go stale", Duration::from_secs(15), || {
        let r = status(&w, &cached);
        (r.status != 200).then_some(r)
    });
    let stale_after = down.elapsed();
    assert!(
        stale_after >= Duration::from_secs(MAX_STALE - 1)
            && stale_after < Duration::from_secs(MAX_AGE + MAX_STALE + 3),
        "keys refused {stale_after:?} after the issuer went down"
    );
    assert_eq!(
        (refused.status, refused.code()),
        (503, -32007),
        "{refused:?}"
    );
    assert_eq!(header(&refused, "retry-after"), Some("5"));
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&w.issuer.url)
            && message.contains("stale")
            && message.contains("unreachable")
            && message.contains("jwks_max_stale_seconds"),
        "{message}"
    );
    assert_eq!(status(&w, &fresh).status, 503, "no token passes");
    let log = w.agent.log();
    assert!(
        log.contains("issuer keys are stale and the issuer is unreachable")
            && log.contains("request refused: no identity"),
        "{log}"
    );
    let events = w.agent.wait_events("the refusal", |ev| {
        ev.iter().any(|e| e["http_status"] == 503)
    });
    let ev = events.iter().find(|e| e["http_status"] == 503).unwrap();
    assert_eq!(
        (&ev["kind"], &ev["decided_by"], &ev["error"]["code"]),
        (&json!("rejected"), &json!("identity"), &json!(-32007)),
        "{ev}"
    );
    let row = audit_row(&w.agent, "rejected", |s| s.http_status == Some(503));
    assert_eq!((row.http_status, row.error_code), (Some(503), Some(-32007)));
    assert!(row.error.unwrap_or_default().contains("stale"));

    // Back on the same port (with a new signing key): its tokens pass again
    // without an agent restart; the old key, no longer listed, stays out.
    w.issuer = Issuer::start(&w.ns, ISSUER_PORT, w.dir.path());
    let back = Instant::now();
    let new = alice(&w.issuer, "new");
    wait_for(
        "the agent to trust the issuer again",
        Duration::from_secs(10),
        || (status(&w, &new).status == 200).then_some(()),
    );
    let recovered = back.elapsed();
    assert!(recovered < Duration::from_secs(5), "{recovered:?}");
    let old = status(&w, &cached);
    assert_eq!((old.status, old.code()), (401, -32001), "{old:?}");
    assert!(
        w.agent.log().contains("issuer reachable again"),
        "{}",
        w.agent.log()
    );
    eprintln!(
        "keys refused {stale_after:?} after the stop; trusted again {recovered:?} after the restart"
    );
}
