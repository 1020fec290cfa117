//! A client certificate is judged for as long as its connection lives, not
//! only at the handshake: one that expires, or is revoked by a reloaded
//! CRL, stops authorizing the very next request on a kept-alive
//! connection; TLS sessions are never resumed past a certificate check;
//! connections end at `tls.max_connection_age_seconds`; and
//! `client_auth = "required"` leaves no plaintext way in.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    http::{in_netns, initialize, post_in},
    oidc::Issuer,
    peer,
    pki::{ClientCert, Pki},
    require_root,
    world::{CLIENT, token},
};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio_rustls::rustls;

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const LIMIT: Duration = Duration::from_secs(10);
/// How long the expiring certificates live after they are made.
const LIFETIME: Duration = Duration::from_secs(6);

fn agent_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// mTLS against the test CA (and its CRL when `crl`), `extra` keys in
/// `[tls]`; idle connections are kept long enough to outlive a
/// certificate.
fn sections(pki: &Pki, server: &(PathBuf, PathBuf), crl: bool, extra: &str) -> String {
    let crl = if crl {
        format!("client_crl = [\"{}\"]\n", pki.crl_pem.display())
    } else {
        String::new()
    };
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = [\"{}\"]\n{crl}{extra}\n\
         [identity]\nallow_anonymous = false\n[http]\nheader_read_timeout_ms = 30000\n",
        server.0.display(),
        server.1.display(),
        pki.ca_pem.display(),
    )
}

/// One HTTP answer.
struct Reply {
    status: u16,
    /// The head, lowercased.
    head: String,
    body: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

impl Reply {
    fn error(&self) -> (i64, String) {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_default();
        (
            v["error"]["code"].as_i64().unwrap_or(0),
            v["error"]["message"].as_str().unwrap_or_default().into(),
        )
    }
}

/// A kept-alive TLS connection to the agent, one request at a time.
struct Conn {
    tls: rustls::ClientConnection,
    tcp: TcpStream,
}

impl Conn {
    /// Connects from inside `ns` and completes the handshake (as far as a
    /// TLS 1.3 client can tell: the server judges its certificate after).
    fn open(ns: &NetNs, cfg: &Arc<rustls::ClientConfig>) -> Result<Self, String> {
        let mut tcp = in_netns(ns, || {
            let s = TcpStream::connect_timeout(&agent_addr(), LIMIT).expect("connect");
            s.set_read_timeout(Some(LIMIT)).expect("read timeout");
            s.set_write_timeout(Some(LIMIT)).expect("write timeout");
            s
        });
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let mut tls = rustls::ClientConnection::new(cfg.clone(), name).expect("client session");
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(Self { tls, tcp })
    }

    fn resumed(&self) -> bool {
        self.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// `initialize` on this connection, without `Connection: close`.
    fn call(&mut self, id: i64) -> Result<Reply, String> {
        self.send(&initialize(id))
    }

    /// POSTs `message` on this connection, without `Connection: close`.
    fn send(&mut self, message: &Value) -> Result<Reply, String> {
        let body = message.to_string();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = rustls::Stream::new(&mut self.tls, &mut self.tcp);
        s.write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        read_reply(&mut s)
    }

    /// Whether the agent has closed the connection (EOF or an alert within
    /// `LIMIT`), rather than keeping it open for another request.
    fn closed_by_agent(&mut self) -> bool {
        let mut s = rustls::Stream::new(&mut self.tls, &mut self.tcp);
        match s.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

/// `open` and one `call`: the status, or why there was none.
fn one_call(ns: &NetNs, cfg: &Arc<rustls::ClientConfig>) -> Result<(u16, bool), String> {
    let mut c = Conn::open(ns, cfg)?;
    let r = c.call(1)?;
    Ok((r.status, c.resumed()))
}

fn fill(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk) {
        Ok(0) => Err(format!("closed after {} bytes", buf.len())),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read after {} bytes: {e}", buf.len())),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response: a Content-Length or chunked body.
fn read_reply(s: &mut impl Read) -> Result<Reply, String> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(s, &mut buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let mut rest = buf.split_off(end);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let body = match length {
        Some(n) => {
            while rest.len() < n {
                fill(s, &mut rest)?;
            }
            rest.truncate(n);
            rest
        }
        None if head.contains("transfer-encoding: chunked") => dechunk(s, rest)?,
        None => return Err(format!("no framing: {head:?}")),
    };
    Ok(Reply { status, head, body })
}

fn dechunk(s: &mut impl Read, mut rest: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = loop {
            if let Some(i) = find(&rest, b"\r\n") {
                break i;
            }
            fill(s, &mut rest)?;
        };
        let size = String::from_utf8_lossy(&rest[..line]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        while rest.len() < line + 2 + size + 2 {
            fill(s, &mut rest)?;
        }
        body.extend_from_slice(&rest[line + 2..line + 2 + size]);
        rest.drain(..line + 2 + size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

/// Rows the identity stage refused with `message`.
fn identity_refusals(agent: &Agent, message: &'static str) -> Vec<Value> {
    agent
        .wait_events(message, |ev| {
            ev.iter().any(|e| {
                e["kind"] == "rejected"
                    && e["decided_by"] == "identity"
                    && e["error"]["message"] == message
            })
        })
        .into_iter()
        .filter(|e| e["decided_by"] == "identity" && e["error"]["message"] == message)
        .collect()
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

struct World {
    ns: NetNs,
    dir: TempDir,
    pki: Pki,
    server: (PathBuf, PathBuf),
}

fn world(name: &str) -> World {
    let (ns, dir) = (NetNs::new(name), TempDir::new(name));
    let mut pki = Pki::new(&dir.path().join("pki"));
    // An empty CRL of the CA: with client_crl set, a certificate whose CA
    // has no CRL would be refused (unknown status).
    pki.revoke(&[]);
    let server = pki.server("server", &["127.0.0.1".parse().unwrap()], &["mcp.test"]);
    World {
        ns,
        dir,
        pki,
        server,
    }
}

impl World {
    fn agent(&self, crl: bool, extra: &str) -> (Agent, Proc) {
        let server = peer::server(self.ns.name(), "127.0.0.1:8080", self.dir.path());
        let agent = Agent::start_full(
            &self.ns,
            self.dir.path(),
            "",
            PORT,
            "",
            &sections(&self.pki, &self.server, crl, extra),
            Vec::new(),
        );
        (agent, server)
    }
}

#[test]
fn a_certificate_that_expires_on_a_kept_alive_connection_stops_authorizing() {
    require_root();
    let w = world("mtlsexp");
    let (agent, _server) = w.agent(false, "");
    let alice = w
        .pki
        .client_expiring_in("alice", "alice", LIFETIME.as_secs() as i64);
    let expires = Instant::now() + LIFETIME;
    let cfg = w.pki.client_config(&alice);

    let mut conn = Conn::open(&w.ns, &cfg).expect("handshake before expiry");
    let before = conn.call(1).expect("call before expiry");
    assert!(Instant::now() < expires, "the first call took too long");
    assert_eq!(before.status, 200, "{before:?}");
    assert!(
        !before.head.contains("connection: close"),
        "{}",
        before.head
    );

    // Past notAfter (X.509 has whole seconds), on the same connection.
    sleep_until(expires + Duration::from_secs(2));
    let after = conn.call(2).expect("an answer after expiry");
    assert_eq!(after.status, 401, "{after:?}");
    assert_eq!(
        after.error(),
        (-32001, "client certificate expired".to_string())
    );
    assert!(after.head.contains("connection: close"), "{}", after.head);
    assert!(conn.closed_by_agent(), "the connection stays open");
    let rows = identity_refusals(&agent, "client certificate expired");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["http_status"], 401, "{}", rows[0]);

    // A new connection with it does not get past the handshake.
    let fresh = one_call(&w.ns, &cfg);
    assert!(
        !matches!(fresh, Ok((200, _))),
        "expired certificate served on a new connection"
    );
}

#[test]
fn tls_sessions_are_not_resumed_so_an_expired_certificate_cannot_come_back() {
    require_root();
    let w = world("mtlsres");
    let (mut agent, _server) = w.agent(false, "");
    let alice = w
        .pki
        .client_expiring_in("alice", "alice", LIFETIME.as_secs() as i64);
    let expires = Instant::now() + LIFETIME;
    // One config, one session store: every connection below offers what
    // the ones before it were given.
    let cfg = w.pki.client_config(&alice);

    assert_eq!(one_call(&w.ns, &cfg), Ok((200, false)), "first connection");
    // The first connection read its answer, and with it any ticket the
    // agent sent: this one would resume if the agent allowed it.
    let second = one_call(&w.ns, &cfg);
    assert!(Instant::now() < expires, "the calls took too long");

    sleep_until(expires + Duration::from_secs(2));
    let late = one_call(&w.ns, &cfg);
    assert!(
        matches!(late, Err(_) | Ok((401, false))),
        "a saved session after expiry: {late:?}"
    );
    assert_eq!(
        second,
        Ok((200, false)),
        "second connection: served by a full handshake, not resumed"
    );
    // The full handshake refused it, and said why.
    let events = agent.wait_events("the handshake refusal", |ev| {
        ev.iter().any(|e| {
            e["decided_by"] == "tls"
                && e["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.to_lowercase().contains("expired"))
        })
    });
    assert!(
        !events.iter().any(|e| e["decided_by"] == "identity"),
        "got past the handshake: {events:#?}"
    );
    assert!(agent.proc().try_wait().is_none(), "the agent is running");
}

#[test]
fn a_crl_reload_revokes_the_next_request_of_an_established_connection() {
    require_root();
    let mut w = world("mtlscrl");
    let (mut agent, _server) = w.agent(true, "");
    let alice = w.pki.client("alice", "alice", None, None, false);
    let bob = w.pki.client("bob", "bob", None, None, false);
    let mut a = Conn::open(&w.ns, &w.pki.client_config(&alice)).expect("alice");
    let mut b = Conn::open(&w.ns, &w.pki.client_config(&bob)).expect("bob");
    assert_eq!(a.call(1).expect("alice before").status, 200);
    assert_eq!(b.call(1).expect("bob before").status, 200);

    w.pki.revoke(&[&alice]);
    agent.reload(&w.ns, "", PORT);

    let r = a.call(2).expect("alice after the reload");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.error(),
        (-32001, "client certificate revoked".to_string())
    );
    assert!(a.closed_by_agent(), "alice's connection stays open");
    assert_eq!(
        identity_refusals(&agent, "client certificate revoked").len(),
        1
    );
    // Bob's connection, established under the same old CRL, goes on.
    let r = b.call(2).expect("bob after the reload");
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn connections_end_at_their_maximum_age() {
    require_root();
    let w = world("mtlsage");
    // JSON answers: the response head waits for the tool's answer.
    let _server = peer::server_with(
        w.ns.name(),
        "127.0.0.1:8080",
        w.dir.path(),
        &["--json-response"],
    );
    let extra = "max_connection_age_seconds = 2";
    let _agent = Agent::start_full(
        &w.ns,
        w.dir.path(),
        "",
        PORT,
        "",
        &sections(&w.pki, &w.server, false, extra),
        Vec::new(),
    );
    let alice = w.pki.client("alice", "alice", None, None, false);
    let cfg = w.pki.client_config(&alice);
    let mut conn = Conn::open(&w.ns, &cfg).expect("handshake");
    let opened = Instant::now();
    let r = conn.call(1).expect("first call");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.head.contains("connection: close"), "{}", r.head);
    // Idle past its age: the agent closes it; the client handshakes anew.
    assert!(conn.closed_by_agent(), "connection kept past its age");
    let age = opened.elapsed();
    assert!(
        age >= Duration::from_millis(1900) && age < Duration::from_secs(8),
        "closed after {age:?}"
    );
    assert_eq!(one_call(&w.ns, &cfg), Ok((200, false)));

    // Busy when its age comes: the request in flight is answered, with
    // Connection: close, and then the connection ends.
    let mut busy = Conn::open(&w.ns, &cfg).expect("handshake");
    let sleep = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"ms": 3000}}});
    let r = busy.send(&sleep).expect("the slow call is answered");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("slept 3000 ms"),
        "{r:?}"
    );
    assert!(r.head.contains("connection: close"), "{}", r.head);
    assert!(busy.closed_by_agent(), "busy connection kept past its age");
}

#[test]
fn client_auth_required_refuses_plaintext_even_with_a_valid_token() {
    require_root();
    let w = world("mtlsreq");
    let issuer = Issuer::start(&w.ns, 9400, w.dir.path());
    // `[[identity.oidc]]` extends `[identity]`, after the other sections.
    let text = sections(&w.pki, &w.server, false, "client_auth = \"required\"")
        + &format!(
            "[[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"{CLIENT}\"]\n",
            issuer.url
        );
    let _server = peer::server(w.ns.name(), "127.0.0.1:8080", w.dir.path());
    let mut agent = Agent::start_full(&w.ns, w.dir.path(), "", PORT, "", &text, Vec::new());

    let bearer = format!("Authorization: Bearer {}", token(&issuer, "alice", &[]));
    let body = initialize(1).to_string();
    let r = post_in(&w.ns, agent_addr(), "/mcp", body.as_bytes(), &[&bearer]);
    assert_eq!(r.status, 426, "{}", r.head);
    assert_eq!(r.code(), -32001);
    agent.wait_events("the plaintext refusal", |ev| {
        ev.iter()
            .any(|e| e["kind"] == "rejected" && e["decided_by"] == "tls")
    });
    assert!(
        agent.log().contains("implies require_tls"),
        "the implication is logged: {}",
        agent.log()
    );
    let doctor = agent.doctor();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("implies require_tls") && report.contains("no session resumption"),
        "doctor says so: {report}"
    );
    // A certificate still gets in.
    let alice = w.pki.client("alice", "alice", None, None, false);
    assert_eq!(
        one_call(&w.ns, &w.pki.client_config(&alice)),
        Ok((200, false))
    );
    assert!(agent.proc().try_wait().is_none(), "the agent is running");
}

/// A slow `tools/call` on `conn` in a thread: its answer, or why none came,
/// and when.
fn slow_call(
    mut conn: Conn,
    ms: u64,
) -> std::thread::JoinHandle<(Result<Reply, String>, Duration)> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let call = serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"ms": ms}}});
        (conn.send(&call), started.elapsed())
    })
}

#[test]
fn a_response_in_flight_is_cut_when_its_certificate_expires_or_is_revoked() {
    require_root();
    let mut w = world("mtlsflight");
    // JSON answers: nothing of a slow call's answer leaves before it ends.
    let _server = peer::server_with(
        w.ns.name(),
        "127.0.0.1:8080",
        w.dir.path(),
        &["--json-response"],
    );
    let mut agent = Agent::start_full(
        &w.ns,
        w.dir.path(),
        "",
        PORT,
        "",
        &sections(&w.pki, &w.server, true, ""),
        Vec::new(),
    );
    let alice = w.pki.client_expiring_in("alice", "alice", 4);
    let carol = w.pki.client("carol", "carol", None, None, false);
    let dave = w.pki.client("dave", "dave", None, None, false);
    let open = |who: &ClientCert| Conn::open(&w.ns, &w.pki.client_config(who)).expect("handshake");
    let expiring = slow_call(open(&alice), 9000);
    let revoked = slow_call(open(&carol), 9000);
    let bystander = slow_call(open(&dave), 3000);

    std::thread::sleep(Duration::from_millis(500));
    w.pki.revoke(&[&carol]);
    agent.reload(&w.ns, "", PORT);

    let (r, took) = revoked.join().expect("carol's call");
    assert!(r.is_err(), "revoked mid-call, answered anyway: {r:?}");
    assert!(took < Duration::from_secs(6), "cut only after {took:?}");
    let (r, took) = expiring.join().expect("alice's call");
    assert!(r.is_err(), "expired mid-call, answered anyway: {r:?}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "cut after {took:?}, not at expiry"
    );
    // A valid certificate's call across the same reload is answered.
    let (r, _) = bystander.join().expect("dave's call");
    let r = r.expect("dave's answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("slept 3000 ms"),
        "{r:?}"
    );
}
