//! The server certificate is re-read on SIGHUP: a renewed certificate
//! written over the configured files is what the next TLS client sees,
//! connections made before the reload keep working, and a broken file
//! keeps the running certificate.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    http::{in_netns, initialize, post},
    peer,
    pki::Pki,
    require_root,
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const LIMIT: Duration = Duration::from_secs(10);

fn agent_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// `[tls]` serving `cert`/`key` with mTLS, and a head timeout long enough
/// that a connection opened before the reload is still waited for after it.
fn sections(pki: &Pki, cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = [\"{}\"]\n\
         [identity]\nallow_anonymous = false\n[http]\nheader_read_timeout_ms = 30000\n",
        cert.display(),
        key.display(),
        pki.ca_pem.display(),
    )
}

/// SHA-256 (hex) of the first certificate in a PEM file.
fn fingerprint_of(pem: &Path) -> String {
    let der = CertificateDer::from_pem_file(pem).expect("certificate PEM");
    hex(&Sha256::digest(der.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP connection to the steered port, opened inside `ns`; nothing sent.
fn connect(ns: &NetNs) -> TcpStream {
    in_netns(ns, || {
        let s = TcpStream::connect_timeout(&agent_addr(), LIMIT).expect("connect to the agent");
        s.set_read_timeout(Some(LIMIT)).expect("read timeout");
        s.set_write_timeout(Some(LIMIT)).expect("write timeout");
        s
    })
}

/// A TLS session with the agent (verified against the test CA, for the
/// address 127.0.0.1 both server certificates carry).
struct Session {
    tls: rustls::ClientConnection,
    tcp: TcpStream,
}

impl Session {
    fn handshake(cfg: &Arc<rustls::ClientConfig>, mut tcp: TcpStream) -> Self {
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut tls = rustls::ClientConnection::new(cfg.clone(), name).expect("client session");
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).expect("TLS handshake");
        }
        Self { tls, tcp }
    }

    /// Fingerprint of the certificate the agent presented.
    fn server_fingerprint(&self) -> String {
        let certs = self.tls.peer_certificates().expect("server certificate");
        hex(&Sha256::digest(certs[0].as_ref()))
    }

    /// `initialize` with `Connection: close`; the HTTP status.
    fn initialize(mut self) -> u16 {
        let req = post("/mcp", initialize(1).to_string().as_bytes(), &[]);
        let mut s = rustls::Stream::new(&mut self.tls, &mut self.tcp);
        s.write_all(&req).expect("send the request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // The agent may close without close_notify once it answered.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("reading the answer: {e} (after {} bytes)", buf.len()),
            }
        }
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
    }
}

/// Writes a certificate and key over the configured files.
fn install(from: &(PathBuf, PathBuf), cert: &Path, key: &Path) {
    std::fs::copy(&from.0, cert).expect("write the certificate");
    std::fs::copy(&from.1, key).expect("write the key");
}

#[test]
fn a_renewed_server_certificate_is_served_after_sighup() {
    require_root();
    let (ns, dir) = (NetNs::new("tlsreload"), TempDir::new("tlsreload"));
    let pki = Pki::new(&dir.path().join("pki"));
    let ip = ["127.0.0.1".parse().unwrap()];
    let first = pki.server("first", &ip, &["mcp.test"]);
    let renewed = pki.server("renewed", &ip, &["mcp-renewed.test"]);
    let (old_fp, new_fp) = (fingerprint_of(&first.0), fingerprint_of(&renewed.0));
    assert_ne!(old_fp, new_fp);
    let alice = pki.client("alice", "alice", None, None, false);
    let cfg = pki.client_config(&alice);
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    install(&first, &cert, &key);

    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        PORT,
        "",
        &sections(&pki, &cert, &key),
        Vec::new(),
    );

    // Before the reload: the first certificate; one session stays open,
    // one connection is accepted but has not started its handshake.
    let established = Session::handshake(&cfg, connect(&ns));
    assert_eq!(established.server_fingerprint(), old_fp);
    let accepted = connect(&ns);

    install(&renewed, &cert, &key);
    agent.reload(&ns, "", PORT);

    // A new client sees the renewed certificate and is served.
    let fresh = Session::handshake(&cfg, connect(&ns));
    assert_eq!(fresh.server_fingerprint(), new_fp, "renewed certificate");
    assert_eq!(fresh.initialize(), 200);

    // What was open across the reload still works: the established
    // session is served, the accepted connection completes its handshake
    // (with the certificate of the config it was accepted under).
    assert_eq!(established.initialize(), 200, "session from before");
    let late = Session::handshake(&cfg, accepted);
    assert!(
        [&old_fp, &new_fp].contains(&&late.server_fingerprint()),
        "late handshake saw an unknown certificate"
    );
    assert_eq!(late.initialize(), 200, "handshake across the reload");

    // A broken certificate file is refused as a whole: the renewed one
    // stays in service.
    std::fs::write(&cert, "not a certificate\n").expect("break the certificate");
    let refusal = agent.reload_refused(&ns, "", PORT);
    assert!(refusal.contains(&cert.display().to_string()), "{refusal}");
    let after = Session::handshake(&cfg, connect(&ns));
    assert_eq!(after.server_fingerprint(), new_fp);
    assert_eq!(after.initialize(), 200);

    assert!(agent.proc().try_wait().is_none(), "the agent is running");
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
    let initialized = |ev: &[serde_json::Value]| {
        ev.iter()
            .filter(|e| e["method"] == "initialize" && e["kind"] == "exchange")
            .count()
    };
    let events = agent.wait_events("four initialize rows", |ev| initialized(ev) >= 4);
    assert_eq!(initialized(&events), 4, "each initialize is one exchange");
}
