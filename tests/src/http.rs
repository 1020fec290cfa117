//! Raw HTTP/1.1 from inside a namespace, for requests no well-behaved
//! client would send: malformed bodies, oversized ones, slow heads.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsFd,
    time::Duration,
};

use serde_json::Value;

use crate::NetNs;

/// Runs `f` on a thread that has entered `ns` (setns moves one thread), so
/// its sockets are the namespace's.
pub fn in_netns<T: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON-RPC error code of the body.
    pub fn code(&self) -> i64 {
        self.json()["error"]["code"].as_i64().unwrap_or(0)
    }

    /// The error's `data.reason`, which tells refusals sharing a code apart.
    pub fn reason(&self) -> String {
        let v = self.json();
        v["error"]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A POST of `body` to `path`, `Connection: close`, extra header lines
/// (`"Name: value"`) included.
pub fn post(path: &str, body: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends `request` (in pieces separated by `pause` when given) and reads the
/// response until the server closes. Bounded by `limit`.
pub fn exchange(
    addr: SocketAddr,
    pieces: &[&[u8]],
    pause: Duration,
    limit: Duration,
) -> RawResponse {
    let mut s = TcpStream::connect_timeout(&addr, limit).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        // The server may answer (and close) before we finish sending.
        if s.write_all(p).is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (text[..i].to_string(), buf[i + 4..].to_vec()),
        None => panic!("no HTTP response: {text:?}"),
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    RawResponse { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// One `Connection: close` POST of `body` to `path` at `addr`, sent from
/// inside `ns`, with extra header lines; the response read to the end.
pub fn post_in(
    ns: &NetNs,
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    headers: &[&str],
) -> RawResponse {
    let req = post(path, body, headers);
    in_netns(ns, move || {
        exchange(addr, &[&req], Duration::ZERO, Duration::from_secs(10))
    })
}

/// A JSON-RPC `initialize` request with id `id`, as a raw client sends it.
pub fn initialize(id: i64) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
}
