//! The `mcp-peer` options later tests build on: HTTPS with a test CA,
//! client certificates, bearer tokens, and the server's record of the
//! credentials that reached it. Loopback only: no namespaces, no root.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
};

use mcp_interceptor_tests::{
    Proc, TempDir,
    peer::{self, auth_log, call_with, listening},
    pki::Pki,
};
use serde_json::json;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// An HTTPS server for 127.0.0.1 with a certificate from `pki`.
fn tls_server(pki: &Pki, dir: &Path, extra: &[&str]) -> (Proc, String) {
    let (cert, key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["localhost"]);
    let mut args = vec!["--tls-cert", s(&cert), "--tls-key", s(&key)];
    args.extend(extra);
    let server = peer::server_with(None, "127.0.0.1:0", dir, &args);
    let url = format!("https://{}/mcp", listening(&server));
    (server, url)
}

#[test]
fn https_with_bearer_reaches_server_and_is_logged() {
    let dir = TempDir::new("peer-tls");
    let pki = Pki::new(dir.path());
    let (server, url) = tls_server(
        &pki,
        dir.path(),
        &["--log-auth", "--require-auth", "Bearer up"],
    );
    let ca = s(&pki.ca_pem);

    let ok = call_with(
        None,
        &url,
        "echo",
        json!({"text": "hi"}),
        &["--ca", ca, "--bearer", "up"],
    );
    assert_eq!(ok.text(), "hi", "{}", ok.stderr());
    let log = auth_log(&server);
    assert!(
        log.iter()
            .any(|l| l == "auth POST /mcp authorization=Bearer up x-upstream-auth=-"),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| l.contains("authorization=Bearer up ")),
        "{log:#?}"
    );

    let denied = call_with(None, &url, "echo", json!({"text": "hi"}), &["--ca", ca]);
    assert!(!denied.ok(), "no bearer, yet: {:?}", denied.output);
    let err = denied.stderr();
    assert!(
        err.contains("401") && err.contains("upstream credential missing"),
        "{err}"
    );
    assert!(
        auth_log(&server)
            .iter()
            .any(|l| l == "auth POST /mcp authorization=- x-upstream-auth=-"),
        "{:#?}",
        auth_log(&server)
    );
}

#[test]
fn https_trusts_only_the_given_ca() {
    let dir = TempDir::new("peer-tls-ca");
    let pki = Pki::new(dir.path());
    let other = Pki::with_name(&dir.path().join("other"), "other CA");
    let (_server, url) = tls_server(&pki, dir.path(), &[]);

    let call = call_with(
        None,
        &url,
        "echo",
        json!({"text": "x"}),
        &["--ca", s(&other.ca_pem)],
    );
    assert!(!call.ok(), "untrusted server accepted: {:?}", call.output);
    assert!(call.stderr().contains("certificate"), "{}", call.stderr());

    // No --ca: the system roots, which know nothing of the test CA.
    let call = call_with(None, &url, "echo", json!({"text": "x"}), &[]);
    assert!(!call.ok(), "untrusted server accepted: {:?}", call.output);
    assert!(call.stderr().contains("certificate"), "{}", call.stderr());
}

#[test]
fn client_certificate_is_presented() {
    let dir = TempDir::new("peer-mtls");
    let pki = Pki::new(dir.path());
    let (_server, url) = tls_server(&pki, dir.path(), &["--tls-client-ca", s(&pki.ca_pem)]);
    let alice = pki.client(
        "alice",
        "alice",
        Some("spiffe://example.org/alice"),
        None,
        false,
    );
    let ca = s(&pki.ca_pem);

    let with = call_with(
        None,
        &url,
        "echo",
        json!({"text": "mtls"}),
        &["--ca", ca, "--cert", s(&alice.cert), "--key", s(&alice.key)],
    );
    assert_eq!(with.text(), "mtls", "{}", with.stderr());

    let without = call_with(None, &url, "echo", json!({"text": "mtls"}), &["--ca", ca]);
    assert!(
        !without.ok(),
        "server required a certificate, yet: {:?}",
        without.output
    );
}

#[test]
fn challenge_of_a_401_is_reported() {
    let challenge =
        r#"Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource""#;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Answers whatever arrives (the client may retry) until the test ends.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let call = call_with(
        None,
        &format!("http://{addr}/mcp"),
        "echo",
        json!({"text": "x"}),
        &[],
    );
    assert!(!call.ok(), "{:?}", call.output);
    let err = call.stderr();
    assert!(err.contains("401") && err.contains(challenge), "{err}");
}
