//! Masking never fails open on what a broken or hostile server streams:
//! after an oversized or non-UTF-8 SSE event nothing more of the stream
//! reaches the client, an unfinished last event is dropped, comments are
//! masked, and a server message the agent cannot judge (SSE text, a batch
//! with a bad member, a non-UTF-8 JSON body, an answer whose id `"4"`
//! matches the waiting `4` only loosely) is never forwarded: the waiting
//! request gets -32005 and an `unanswered` row saying why.
//!
//! A POST's requests answered with a body that is neither JSON nor SSE
//! (text, HTML, no content type, `text/plain; x="text/event-stream"`,
//! which the TypeScript SDK reads as SSE) get -32005 with a 502, masking
//! on or off: a client may read what the agent cannot.
//!
//! The server is a raw socket in the test's namespace that answers each
//! POST with fixed bytes in one write, so a whole stream sits in the
//! agent's buffer at once (the case a well-behaved SDK server rarely
//! produces). The same server off the steered port shows what the client
//! would get without the agent.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq,
    http::{RawResponse, exchange, in_netns, post_in},
    require_root,
};
use serde_json::{Value, json};

const BIG: &str = "big.leak@example.org";
const AFTER: &str = "after.big@example.org";
const UTF8: &str = "after.utf8@example.org";
const TEXT: &str = "plain.text@example.org";
const COMMENT: &str = "in.comment@example.org";
const FIELD: &str = "in.event.id@example.org";
const TAIL: &str = "unfinished.tail@example.org";
const BATCH: &str = "bad.batch@example.org";
const RAW_JSON: &str = "not.utf8@example.org";
const PINNED: &str = "pin.leak@example.org";
const TWIN: &str = "twin.id@example.org";
const ALL: [&str; 11] = [
    BIG, AFTER, UTF8, TEXT, COMMENT, FIELD, TAIL, BATCH, RAW_JSON, PINNED, TWIN,
];
const PLAIN: &str = "plain.body@example.org";
const CARD: &str = "4111 1111 1111 1111";
const HTML: &str = "html.page@example.org";
const UNTYPED: &str = "untyped.body@example.org";
const BIG_PLAIN: &str = "big.plain@example.org";
const BINARY: &str = "binary.plain@example.org";
const SNEAKY: &str = "sneaky.type@example.org";
const GET_SECRET: &str = "get.stream@example.org";

/// `max_message` of the agent: the oversized event is twice this.
const LIMIT: usize = 4096;

fn sse_event(data: &str) -> String {
    format!("event: message\ndata: {data}\n\n")
}

fn response(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// What the server sends for a call of `tool` with JSON-RPC id `id`:
/// (content type, body).
fn reply(tool: &str, id: &Value) -> (&'static str, Vec<u8>) {
    let text = |t: &str| json!({"content": [{"type": "text", "text": t}]});
    let sse = |s: String| ("text/event-stream", s.into_bytes());
    match tool {
        // A small event, one over the limit (complete, in the same chunk),
        // then one more: none of the last two may reach the client.
        "oversized" => {
            let padded = format!("{BIG} {}", "x".repeat(2 * LIMIT));
            sse(sse_event(
                &json!({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "data": "starting"}})
                .to_string(),
            ) + &sse_event(&response(id, text(&padded)))
                + &sse_event(&response(id, text(AFTER))))
        }
        // An event that is not UTF-8, then a message that would be masked
        // had it been read: the stream is cut at the bad event.
        "utf8" => {
            let mut b = b"event: message\ndata: \xff\xfe\n\n".to_vec();
            b.extend_from_slice(sse_event(&response(id, text(UTF8))).as_bytes());
            ("text/event-stream", b)
        }
        // Text and a comment that are no JSON-RPC message, an event id
        // that is an address, then the answer.
        "text" => sse(format!(
            ": keep-alive for {COMMENT}\n\n\
             data: contact {TEXT} for access\n\n\
             id: {FIELD}\ndata: {}\n\n",
            response(id, text("done"))
        )),
        // The answer, then an event the stream ends in the middle of.
        "unfinished" => sse(sse_event(&response(id, text("whole")))
            + &format!(
                "data: {}",
                json!({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": "info", "data": TAIL}})
            )),
        // The answer under the id `"N"` for `N`: the TypeScript SDK pairs
        // it by `Number(id)`, the Python SDK by `int(id)`.
        "twin-id" => sse(sse_event(&response(&json!(id.to_string()), text(TWIN)))),
        // JSON, but no JSON-RPC: a batch with one bad member.
        "batch" => (
            "application/json",
            json!([
                {"jsonrpc": "2.0", "id": id, "result": text("ok")},
                {"note": format!("escalate to {BATCH}")}
            ])
            .to_string()
            .into_bytes(),
        ),
        // Bodies that are neither JSON nor SSE ("" sends no content type).
        "plain" => (
            "text/plain",
            format!("contact {PLAIN}, card {CARD}").into_bytes(),
        ),
        "html" => ("text/html", format!("<p>{HTML}</p>").into_bytes()),
        "untyped" => ("", format!("owner: {UNTYPED}").into_bytes()),
        // Read as SSE by a client that looks for the type anywhere.
        "sneaky-type" => (
            "text/plain; x=\"text/event-stream\"",
            sse_event(&response(id, text(SNEAKY))).into_bytes(),
        ),
        "big-plain" => (
            "text/plain",
            format!("{BIG_PLAIN} {}", "x".repeat(2 * LIMIT)).into_bytes(),
        ),
        "binary-plain" => {
            let mut b = b"\xff\xfe ".to_vec();
            b.extend_from_slice(BINARY.as_bytes());
            ("text/plain; charset=utf-8", b)
        }
        // A JSON body that is not UTF-8: it cannot be masked.
        _ => {
            let mut b = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":\"").into_bytes();
            b.extend_from_slice(b"\xff");
            b.extend_from_slice(RAW_JSON.as_bytes());
            b.extend_from_slice(b"\"}");
            ("application/json", b)
        }
    }
}

/// The raw server: bound in `ns` on `addr`, stopped and joined on drop.
struct Hostile {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hostile(ns: &NetNs, addr: SocketAddr) -> Hostile {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = ns.path();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind(addr).expect("bind the raw server");
        listener.set_nonblocking(true).expect("nonblocking");
        ready_tx.send(()).expect("ready");
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => serve(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the raw server bound");
    Hostile {
        stop,
        thread: Some(thread),
    }
}

/// Reads one POST (head, then its body: Content-Length or chunked),
/// answers, closes.
fn serve(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let rest = &buf[end + 4..];
            let len: Option<usize> = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok());
            if head.starts_with("get ") {
                break br#"{"method":"GET"}"#.to_vec();
            }
            let done = match len {
                Some(n) => rest.len() >= n,
                None => rest.ends_with(b"0\r\n\r\n"),
            };
            if done {
                // The one JSON object in the body (a chunked body is one
                // chunk of it between size lines).
                let from = rest.iter().position(|&b| b == b'{').unwrap_or(0);
                let to = rest.iter().rposition(|&b| b == b'}').map_or(0, |i| i + 1);
                break rest[from..to.max(from)].to_vec();
            }
        }
        match s.read(&mut chunk) {
            Ok(n) if n > 0 && Instant::now() < deadline => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let tool = req["params"]["name"].as_str().unwrap_or_default();
    let (ctype, payload) = if req["method"] == "GET" {
        // A GET stream under a type the TypeScript SDK does not check,
        // carrying a sampling request.
        let ask = json!({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage",
            "params": {"maxTokens": 5, "messages": [{"role": "user",
                "content": {"type": "text", "text": format!("mail {GET_SECRET}")}}]}});
        ("text/plain", sse_event(&ask.to_string()).into_bytes())
    } else if req["method"] == "tools/list" {
        // A tool whose name is an address: tool pinning writes its
        // `tool_pinned` audit row outside the masking stage.
        let tools = json!({"tools": [{"name": PINNED, "inputSchema": {"type": "object"}}]});
        ("application/json", response(&req["id"], tools).into_bytes())
    } else {
        reply(tool, &req["id"])
    };
    let ctype = match ctype {
        "" => String::new(),
        t => format!("Content-Type: {t}\r\n"),
    };
    let mut out =
        format!("HTTP/1.1 200 OK\r\n{ctype}Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
            .into_bytes();
    out.extend_from_slice(&payload);
    // One write: the whole stream arrives in as few frames as it can.
    let _ = s.write_all(&out);
    let _ = s.flush();
}

fn call(ns: &NetNs, addr: SocketAddr, id: i64, tool: &str) -> RawResponse {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}});
    post_in(ns, addr, "/mcp", body.to_string().as_bytes(), &[])
}

/// The hostile server on the steered port (behind an agent with
/// `max_message = LIMIT`) and on a direct port, for the raw control.
const STEERED: &str = "127.0.0.1:8080";
const DIRECT: &str = "127.0.0.1:9090";

fn steered_and_direct(ns: &NetNs, dir: &TempDir) -> ([Hostile; 2], Agent) {
    let servers = [STEERED, DIRECT].map(|a| hostile(ns, a.parse().unwrap()));
    let agent = Agent::start(
        ns,
        dir.path(),
        "",
        &format!("[[intercept.ports]]\nport = 8080\n[http]\nmax_message = {LIMIT}\n"),
    );
    (servers, agent)
}

#[test]
fn what_a_hostile_stream_carries_never_reaches_the_client_raw() {
    require_root();
    let (ns, dir) = (NetNs::new("maskst"), TempDir::new("maskst"));
    let (steered, direct) = (STEERED.parse().unwrap(), DIRECT.parse().unwrap());
    let (_servers, agent) = steered_and_direct(&ns, &dir);
    let tools = [
        ("oversized", &[BIG, AFTER][..]),
        ("utf8", &[UTF8]),
        ("text", &[TEXT, COMMENT, FIELD]),
        ("unfinished", &[TAIL]),
        ("batch", &[BATCH]),
        ("raw-json", &[RAW_JSON]),
        ("twin-id", &[TWIN]),
    ];
    // Without the agent each of these reaches the client as sent.
    for (i, (tool, secrets)) in tools.iter().enumerate() {
        let r = call(&ns, direct, i as i64 + 1, tool);
        for s in *secrets {
            assert!(
                r.body.windows(s.len()).any(|w| w == s.as_bytes()),
                "{tool}: the server sends {s}"
            );
        }
    }

    let list = json!({"jsonrpc": "2.0", "id": 99, "method": "tools/list"});
    let listed = post_in(&ns, steered, "/mcp", list.to_string().as_bytes(), &[]);
    assert_eq!(listed.json()["result"]["tools"][0]["name"], "[EMAIL]");

    let through: Vec<(String, RawResponse)> = tools
        .iter()
        .enumerate()
        .map(|(i, (tool, _))| (tool.to_string(), call(&ns, steered, i as i64 + 1, tool)))
        .collect();
    for (tool, r) in &through {
        for s in ALL {
            assert!(
                !r.body.windows(s.len()).any(|w| w == s.as_bytes()),
                "{tool}: {s} reached the client raw: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    let body = |t: &str| {
        let r = &through.iter().find(|(n, _)| n == t).unwrap().1;
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };

    // Cut streams: the client is told, per request, and the stream ends.
    let (status, b) = body("oversized");
    assert_eq!(status, 200);
    assert!(b.contains("-32005") && b.contains("exceeded"), "{b}");
    assert!(!b.contains("\"result\""), "no answer after the cut: {b}");
    let (_, b) = body("utf8");
    assert!(b.contains("-32005") && b.contains("not valid UTF-8"), "{b}");
    assert!(!b.contains("\"result\""), "no answer after the cut: {b}");

    // Text that is no message: not forwarded, even masked; the call it
    // may have answered gets the agent's error, and the answer that
    // follows (its request settled) answers no one and is dropped too.
    let (_, b) = body("text");
    assert!(b.contains("-32005") && b.contains("cannot judge"), "{b}");
    assert!(!b.contains("contact"), "{b}");
    assert!(!b.contains("\"text\":\"done\""), "{b}");
    assert!(
        !b.contains("keep-alive for"),
        "the comment is not passed on: {b}"
    );

    // An id that matches only loosely: the agent's error under the
    // request's own id, nothing of the server's message.
    let (_, b) = body("twin-id");
    assert!(
        b.contains("\"id\":7") && b.contains("matches a waiting request only loosely"),
        "{b}"
    );
    assert_eq!(b.matches("data:").count(), 1, "{b}");

    // The answer arrives; the unfinished event does not.
    let (_, b) = body("unfinished");
    assert!(b.contains("\"text\":\"whole\""), "{b}");
    assert_eq!(b.matches("data:").count(), 1, "{b}");

    // JSON that is no JSON-RPC message, or not UTF-8: nothing of it, the
    // agent's error for the waiting call instead.
    for t in ["batch", "raw-json"] {
        let (status, b) = body(t);
        assert_eq!(status, 200, "{t}: {b}");
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b}"));
        assert_eq!(v["error"]["code"], -32005, "{t}: {b}");
        assert_eq!(
            v["error"]["data"]["reason"], "unjudged_server_message",
            "{t}: {b}"
        );
        assert!(v["id"].is_i64(), "{t}: {b}");
    }

    let log = agent.log();
    assert!(log.contains("upstream SSE stream cut"), "{log}");
    assert!(log.contains("server message not judged: dropped"), "{log}");
    // The requests whose streams were cut, or whose answers were not
    // judged, are recorded as unanswered.
    let events = agent.wait_events("the cut calls", |ev| {
        ev.iter().filter(|e| e["kind"] == "unanswered").count() >= 6
    });
    let code = |t: &str| {
        events
            .iter()
            .find(|e| e["kind"] == "unanswered" && e["target"] == t)
            .map(|e| e["error"]["code"].clone())
    };
    assert_eq!(code("oversized"), Some(json!(-32005)));
    assert_eq!(code("utf8"), Some(json!(-32005)));
    assert_eq!(code("raw-json"), Some(json!(-32005)));
    assert_eq!(code("text"), Some(json!(-32005)));
    assert_eq!(code("batch"), Some(json!(-32005)));
    assert_eq!(code("twin-id"), Some(json!(-32005)));

    // The audit (DuckDB over every string column) has none of them, the
    // pinned tool's lifecycle row included.
    let mut agent = agent;
    agent.stop(15);
    let search = |needle: &str| {
        auditq::query(
            &agent.audit_dir(),
            "search_values",
            &[
                ("needle", needle),
                ("from", "2000-01-01 00:00:00"),
                ("to", "2100-01-01 00:00:00"),
            ],
        )
    };
    for s in ALL {
        let rows = search(s);
        assert!(rows.is_empty(), "{s} is stored raw: {rows:?}");
    }
    let pinned = search("tool [EMAIL] pinned on first sight");
    assert_eq!(pinned.len(), 1, "the masked tool_pinned row: {pinned:?}");
}

/// The bodies of the `plain` ... `sneaky-type` tools, with the secret
/// each carries.
const BODIES: [(&str, &[&str]); 6] = [
    ("plain", &[PLAIN, CARD]),
    ("html", &[HTML]),
    ("untyped", &[UNTYPED]),
    ("big-plain", &[BIG_PLAIN]),
    ("binary-plain", &[BINARY]),
    ("sneaky-type", &[SNEAKY]),
];

fn has(r: &RawResponse, s: &str) -> bool {
    r.body.windows(s.len()).any(|w| w == s.as_bytes())
}

/// Each of `BODIES` through `steered`: refused with -32005 and a 502,
/// nothing of the server's body passed on, each call `unanswered`.
fn all_refused(ns: &NetNs, steered: SocketAddr, agent: &Agent) {
    let through: Vec<RawResponse> = BODIES
        .iter()
        .enumerate()
        .map(|(i, (tool, _))| call(ns, steered, i as i64 + 1, tool))
        .collect();
    for ((tool, _), r) in BODIES.iter().zip(&through) {
        for (_, secrets) in BODIES {
            for s in secrets {
                assert!(
                    !has(r, s),
                    "{tool}: {s} reached the client: {}",
                    String::from_utf8_lossy(&r.body)
                );
            }
        }
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!((r.status, r.code()), (502, -32005), "{tool}: {text}");
        assert!(text.contains("not an MCP answer"), "{tool}: {text}");
        assert!(
            r.head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{tool}: {}",
            r.head
        );
    }
    let events = agent.wait_events("the six calls", |ev| {
        ev.iter().filter(|e| e["kind"] == "unanswered").count() >= BODIES.len()
    });
    for (tool, _) in BODIES {
        let row = events
            .iter()
            .find(|e| e["kind"] == "unanswered" && e["target"] == tool)
            .unwrap_or_else(|| panic!("no row for {tool}: {events:?}"));
        assert_eq!(row["error"]["code"], -32005, "{row}");
        assert_eq!(
            row["error"]["data"]["reason"], "unjudged_server_message",
            "{row}"
        );
    }
}

/// A GET stream the server opens under another type than SSE: refused
/// (502, -32005) with a `rejected` row; nothing of it passes.
fn get_refused(ns: &NetNs, steered: SocketAddr, agent: &Agent) {
    let r = get(ns, steered);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!((r.status, r.code()), (502, -32005), "{text}");
    assert!(!text.contains("sampling") && !has(&r, GET_SECRET), "{text}");
    agent.wait_events("the refused stream", |ev| {
        ev.iter().any(|e| {
            e["kind"] == "rejected"
                && e["http_method"] == "GET"
                && e["error"]["data"]["reason"] == "unjudged_server_message"
        })
    });
}

fn get(ns: &NetNs, addr: SocketAddr) -> RawResponse {
    let req = b"GET /mcp HTTP/1.1\r\nHost: mcp.test\r\nAccept: text/event-stream\r\n\
                Connection: close\r\n\r\n";
    in_netns(ns, move || {
        exchange(addr, &[req], Duration::ZERO, Duration::from_secs(10))
    })
}

#[test]
fn a_body_that_is_neither_json_nor_sse_is_refused() {
    require_root();
    let (ns, dir) = (NetNs::new("maskbd"), TempDir::new("maskbd"));
    let (steered, direct) = (STEERED.parse().unwrap(), DIRECT.parse().unwrap());
    let (_servers, agent) = steered_and_direct(&ns, &dir);
    // Without the agent each secret reaches the client as sent, under the
    // content type it was sent with.
    for (i, (tool, secrets)) in BODIES.iter().enumerate() {
        let r = call(&ns, direct, i as i64 + 1, tool);
        assert_eq!(r.status, 200, "{tool}: {}", r.head);
        for s in *secrets {
            assert!(has(&r, s), "{tool}: the server sends {s}");
        }
    }
    let r = call(&ns, direct, 1, "untyped");
    assert!(
        !r.head.to_ascii_lowercase().contains("content-type"),
        "{}",
        r.head
    );
    let r = get(&ns, direct);
    assert!(has(&r, "sampling/createMessage") && has(&r, GET_SECRET));
    all_refused(&ns, steered, &agent);
    get_refused(&ns, steered, &agent);
}

#[test]
fn with_masking_off_a_body_that_is_neither_json_nor_sse_is_still_refused() {
    require_root();
    let (ns, dir) = (NetNs::new("maskbo"), TempDir::new("maskbo"));
    let steered: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let _server = hostile(&ns, steered);
    let agent = Agent::start(
        &ns,
        dir.path(),
        "",
        &format!(
            "[[intercept.ports]]\nport = 8080\n[http]\nmax_message = {LIMIT}\n\
             [mask]\nenabled = false\n"
        ),
    );
    // Not a question of masking: the client may read as an answer what
    // the agent cannot judge.
    all_refused(&ns, steered, &agent);
    get_refused(&ns, steered, &agent);
}
