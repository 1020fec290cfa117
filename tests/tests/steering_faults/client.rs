//! A raw MCP client that hammers the steered port with new connections and
//! records what each attempt saw, and connections held open across a
//! restart. Plain sockets, so a refused connect, a reset and an answer are
//! told apart exactly (an SDK client would retry and hide them).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{NetNs, http::in_netns};
use serde_json::{Value, json};

pub const ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);

fn addr() -> SocketAddr {
    SocketAddr::from(ADDR)
}

/// What one attempt saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// 200 carrying the echo of this attempt's text, from local port `port`.
    Answered { port: u16 },
    /// connect() refused: the kernel answered the SYN with a reset.
    Refused,
    /// Connected, then reset or closed before a complete answer, after
    /// `bytes` of one.
    Cut { bytes: usize, why: String },
    /// 404 -32000: the agent does not know the session (a restarted agent
    /// binds only sessions it saw the server open); the client opens a
    /// new one, as the MCP spec says.
    SessionGone,
    /// Anything else (a timeout, another status): never expected.
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub text: String,
    pub start: Instant,
    pub end: Instant,
    pub seen: Seen,
}

/// One POST of `body` in session `sid`.
pub fn request(sid: Option<&str>, body: &Value, close: bool) -> Vec<u8> {
    let body = body.to_string();
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    if let Some(s) = sid {
        head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

pub fn echo_body(id: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": text}}})
}

/// Whether `answer` carries the echo of `text`.
pub fn echoes(answer: &[u8], text: &str) -> bool {
    let a = String::from_utf8_lossy(answer);
    a.starts_with("HTTP/1.1 200") && a.contains(&format!("\"text\":\"{text}\""))
}

/// Opens an MCP session through the agent (anonymous caller); its id.
pub fn open_session(ns: &NetNs) -> String {
    in_netns(ns, || new_session().expect("open a session"))
}

/// Opens a session from a thread already in the namespace; `Err` says why
/// not (the agent may be restarting).
fn new_session() -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "faults", "version": "1"}}});
    let answer = exchange(&request(None, &init, true)).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let sid = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .ok_or_else(|| format!("no session id in {text}"))?;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    exchange(&request(Some(&sid), &note, true)).map_err(|e| e.to_string())?;
    Ok(sid)
}

/// Connects, sends `req`, reads to the end. `Err` keeps the connect error.
fn exchange(req: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut s = TcpStream::connect_timeout(&addr(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(req)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(buf)
}

fn attempt(sid: &str, id: u64, text: &str) -> Seen {
    let mut s = match TcpStream::connect_timeout(&addr(), Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Seen::Refused,
        // The handshake completed into a stopping agent's listener backlog
        // and the backlog was reset before `connect_timeout` looked: a
        // connection the agent never took, cut before a byte was sent.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            return Seen::Cut {
                bytes: 0,
                why: format!("connect: {e}"),
            };
        }
        Err(e) => return Seen::Other(format!("connect: {e}")),
    };
    let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if let Err(e) = s.write_all(&request(Some(sid), &echo_body(id, text), true)) {
        return Seen::Cut {
            bytes: 0,
            why: format!("write: {e}"),
        };
    }
    let mut buf = Vec::new();
    let cut = |bytes: usize, why: String| Seen::Cut { bytes, why };
    match s.read_to_end(&mut buf) {
        Ok(_) if echoes(&buf, text) => Seen::Answered { port },
        Ok(_) if session_gone(&buf) => Seen::SessionGone,
        Ok(n) if !complete(&buf) => cut(n, "closed before the answer was complete".into()),
        Ok(_) => Seen::Other(String::from_utf8_lossy(&buf).into_owned()),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            cut(buf.len(), format!("read: {e}"))
        }
        Err(e) => Seen::Other(format!("read: {e} after {} bytes", buf.len())),
    }
}

/// Whether `answer` is the agent's 404 for a session it does not know.
fn session_gone(answer: &[u8]) -> bool {
    let a = String::from_utf8_lossy(answer);
    a.starts_with("HTTP/1.1 404") && a.contains("-32000")
}

/// Whether `buf` holds a whole HTTP/1.1 response (head and body).
fn complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..end].to_ascii_lowercase();
    let body = &buf[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_none_or(|len| body.len() >= len)
}

/// Threads that each open a new connection per request, `pause` apart,
/// until told to stop. Bounded by the caller's timeline.
pub struct Hammer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Attempt>>>,
}

impl Hammer {
    pub fn start(ns: &NetNs, sid: &str, tag: &str, threads: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let (path, stop, mut sid) = (ns.path(), stop.clone(), sid.to_string());
                let tag = format!("{tag}{t}");
                std::thread::spawn(move || {
                    let f = std::fs::File::open(&path).expect("open netns");
                    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("setns");
                    let mut out = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let text = format!("{tag}-{n}");
                        let start = Instant::now();
                        // JSON-RPC ids are unique per session: the session is shared.
                        let seen = attempt(&sid, (t as u64 + 1) * 1_000_000 + n, &text);
                        if seen == Seen::SessionGone
                            && let Ok(s) = new_session()
                        {
                            sid = s;
                        }
                        out.push(Attempt {
                            text,
                            start,
                            end: Instant::now(),
                            seen,
                        });
                        std::thread::sleep(pause);
                    }
                    out
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops the threads; every attempt, in start order.
    pub fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Attempt> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("hammer thread"))
            .collect();
        all.sort_by_key(|a| a.start);
        all
    }
}

/// How a connection held across a restart was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// One request answered on it, then idle (keep-alive).
    Idle,
    /// Connected, nothing sent.
    Silent,
    /// Half a request head sent.
    Partial,
}

pub struct HeldConn {
    pub kind: Held,
    stream: TcpStream,
    /// What is still to be sent to complete a request.
    rest: Vec<u8>,
    text: String,
}

/// Opens one connection of each kind, all steered to the running agent.
pub fn hold(ns: &NetNs, sid: &str, tag: &str) -> Vec<HeldConn> {
    let (sid, tag) = (sid.to_string(), tag.to_string());
    in_netns(ns, move || {
        [Held::Idle, Held::Silent, Held::Partial]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                let mut stream =
                    TcpStream::connect_timeout(&addr(), Duration::from_secs(3)).expect("hold");
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let text = format!("held-{tag}-{kind:?}");
                let req = request(Some(&sid), &echo_body(90 + i as u64, &text), false);
                let rest = match kind {
                    Held::Idle => {
                        let warm = format!("{text}-warm");
                        let first = request(Some(&sid), &echo_body(80 + i as u64, &warm), false);
                        stream.write_all(&first).unwrap();
                        let answer = read_one(&mut stream);
                        assert!(echoes(&answer, &warm), "keep-alive answer: {answer:?}");
                        req
                    }
                    Held::Silent => req,
                    Held::Partial => {
                        stream.write_all(&req[..20]).unwrap();
                        req[20..].to_vec()
                    }
                };
                HeldConn {
                    kind,
                    stream,
                    rest,
                    text,
                }
            })
            .collect()
    })
}

impl HeldConn {
    /// Completes the request and reads to the end: what came back (bytes
    /// or the error) and whether it was the server's answer.
    pub fn finish(mut self) -> (Held, String, bool) {
        let _ = self.stream.write_all(&self.rest);
        let mut buf = Vec::new();
        let got = match self.stream.read_to_end(&mut buf) {
            Ok(_) if buf.is_empty() => "closed (EOF)".to_string(),
            Ok(_) => String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            Err(e) => format!("{e} after {} bytes", buf.len()),
        };
        (self.kind, got, echoes(&buf, &self.text))
    }
}

/// Reads exactly one HTTP/1.1 response (Content-Length or chunked).
fn read_one(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !complete(&buf) {
        let n = s.read(&mut chunk).expect("read response");
        assert!(n > 0, "closed mid-response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}
