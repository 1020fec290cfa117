//! Raw HTTP from a chosen loopback source address (one per caller: the
//! agent counts anonymous callers by address).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use mcp_interceptor_tests::{NetNs, http::in_netns};
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};

const SERVER: &str = "127.0.0.1:8080";

/// A response head, what was read of the body, and the open connection
/// (an SSE stream stays open while this lives).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    _sock: TcpStream,
}

impl Answer {
    /// The JSON-RPC error code of a JSON body.
    pub fn code(&self) -> i64 {
        serde_json::from_slice::<Value>(&self.body)
            .map_or(0, |v| v["error"]["code"].as_i64().unwrap_or(0))
    }

    /// The error's `data.reason` (refusals sharing a code differ here).
    pub fn reason(&self) -> String {
        serde_json::from_slice::<Value>(&self.body).map_or(String::new(), |v| {
            v["error"]["data"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends `req` from `source` and reads the head; then the body up to its
/// Content-Length (an SSE stream's body is left unread).
fn send(ns: &NetNs, source: &str, req: String) -> Answer {
    let source: SocketAddr = format!("{source}:0").parse().expect("source");
    in_netns(ns, move || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.bind(&source.into()).expect("bind source");
        let to: SocketAddr = SERVER.parse().expect("addr");
        s.connect_timeout(&to.into(), Duration::from_secs(5))
            .expect("connect");
        let mut sock: TcpStream = s.into();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        sock.write_all(req.as_bytes()).expect("send");
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match sock.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => panic!("no response head: {:?}", String::from_utf8_lossy(&buf)),
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut a = Answer {
            status,
            head,
            body: Vec::new(),
            _sock: sock,
        };
        if let Some(n) = a.header("content-length").and_then(|n| n.parse().ok()) {
            let mut body = vec![0u8; n];
            a._sock.read_exact(&mut body).expect("body");
            a.body = body;
        }
        a
    })
}

fn post(ns: &NetNs, source: &str, sid: Option<&str>, body: &Value) -> Answer {
    let body = body.to_string();
    let sid = sid.map_or(String::new(), |s| format!("Mcp-Session-Id: {s}\r\n"));
    send(
        ns,
        source,
        format!(
            "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{sid}\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A new session of the caller at `source`: initialize, initialized.
fn session(ns: &NetNs, source: &str) -> String {
    let init = mcp_interceptor_tests::http::initialize(1);
    let a = post(ns, source, None, &init);
    assert_eq!(a.status, 200, "initialize: {}", a.head);
    let sid = a.header("mcp-session-id").expect("session id");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let a = post(ns, source, Some(&sid), &note);
    assert!(a.status < 300, "initialized: {}", a.head);
    sid
}

/// A GET stream on a new session of the caller at `source`.
pub fn open_stream(ns: &NetNs, source: &str) -> Answer {
    let sid = session(ns, source);
    send(
        ns,
        source,
        format!(
            "GET /mcp HTTP/1.1\r\nHost: mcp.test\r\nAccept: text/event-stream\r\n\
             Mcp-Session-Id: {sid}\r\nMcp-Protocol-Version: 2025-06-18\r\n\
             Connection: close\r\n\r\n"
        ),
    )
}

/// `echo` called by the caller at `source`; the text it answered.
pub fn echo(ns: &NetNs, source: &str, text: &str) -> String {
    let sid = session(ns, source);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}});
    let mut a = post(ns, source, Some(&sid), &call);
    assert_eq!(a.status, 200, "{}", a.head);
    if a.body.is_empty() {
        // An SSE answer: read to the end (Connection: close).
        let _ = a._sock.read_to_end(&mut a.body);
    }
    let body = String::from_utf8_lossy(&a.body).into_owned();
    // A JSON body, or the SSE event that carries the answer.
    let v: Value = serde_json::from_str(&body)
        .ok()
        .or_else(|| {
            body.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v.get("result").is_some())
        })
        .unwrap_or_else(|| panic!("no answer in {body}"));
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {v}"))
        .to_string()
}
