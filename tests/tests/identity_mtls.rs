//! mTLS through the steered port: certificates made by the test (rcgen),
//! verified by the agent against the configured CA and CRL; TLS and
//! plaintext clients on one port; every refusal is an audit row.

use std::net::SocketAddr;

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq,
    http::{RawResponse, initialize, post_in},
    peer::{self, auth_log, call_with},
    pki::{ClientCert, Pki},
    require_root,
};
use serde_json::{Value, json};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const URL: &str = "https://127.0.0.1:8080/mcp";

fn sections(pki: &Pki, cert: &std::path::Path, key: &std::path::Path, extra: &str) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = [\"{}\"]\nclient_crl = [\"{}\"]\n{extra}\n\
         [identity]\nallow_anonymous = false\n",
        cert.display(),
        key.display(),
        pki.ca_pem.display(),
        pki.crl_pem.display(),
    )
}

fn tls_call(ns: &NetNs, pki: &Pki, client: Option<&ClientCert>) -> peer::Call {
    let ca = pki.ca_pem.display().to_string();
    let mut args = vec!["--ca".to_string(), ca];
    if let Some(c) = client {
        args.extend([
            "--cert".into(),
            c.cert.display().to_string(),
            "--key".into(),
            c.key.display().to_string(),
        ]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    call_with(ns.name(), URL, "echo", json!({ "text": "hi" }), &refs)
}

fn plaintext(ns: &NetNs) -> RawResponse {
    let body = initialize(1).to_string();
    post_in(
        ns,
        SocketAddr::from(([127, 0, 0, 1], 8080)),
        "/mcp",
        body.as_bytes(),
        &[],
    )
}

/// TLS refusals recorded so far: (error message) of rejected rows.
fn tls_refusals(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "rejected" && e["decided_by"] == "tls")
        .map(|e| {
            e["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect()
}

#[test]
fn client_certificates_bind_identity_and_bad_ones_are_refused_and_audited() {
    require_root();
    let (ns, dir) = (NetNs::new("mtls"), TempDir::new("mtls"));
    let mut pki = Pki::new(&dir.path().join("pki"));
    let other = Pki::with_name(&dir.path().join("other"), "other CA");
    // Same name as ours, different key: a forged CA.
    let forged = Pki::new(&dir.path().join("forged"));
    let (srv_cert, srv_key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["mcp.test"]);
    let alice = pki.client(
        "alice",
        "alice",
        Some("spiffe://example.org/ns/dev/sa/alice"),
        None,
        false,
    );
    let expired = pki.client("old", "old", None, None, true);
    let revoked = pki.client("mallory", "mallory", None, None, false);
    let stranger = other.client("stranger", "stranger", None, None, false);
    let impostor = forged.client(
        "alice",
        "alice",
        Some("spiffe://example.org/ns/dev/sa/alice"),
        None,
        false,
    );
    pki.revoke(&[&revoked]);

    let server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &["--log-auth"]);
    let mut agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        PORT,
        "",
        &sections(&pki, &srv_cert, &srv_key, ""),
        Vec::new(),
    );

    // A valid certificate: served, and the caller is its SPIFFE ID.
    let ok = tls_call(&ns, &pki, Some(&alice));
    assert_eq!(ok.text(), "hi");
    let events = agent.wait_events("alice's call", |ev| {
        ev.iter()
            .any(|e| e["kind"] == "exchange" && e["method"] == "tools/call")
    });
    let call = events
        .iter()
        .find(|e| e["method"] == "tools/call")
        .expect("tools/call event");
    let caller = &call["caller"];
    assert_eq!(
        caller["subject"], "spiffe://example.org/ns/dev/sa/alice",
        "{call}"
    );
    assert_eq!(caller["method"], "mtls");
    assert_eq!(
        caller["cert"]["fingerprint"],
        alice.fingerprint_sha256.as_str()
    );
    assert_eq!(caller["cert"]["serial"], alice.serial_hex.as_str());
    assert!(caller["cert"]["not_after"].as_i64().unwrap() > 0);
    assert!(!auth_log(&server).is_empty(), "the server saw the requests");

    // Expired, revoked and other-CA certificates fail the handshake; each
    // is an audit row saying why.
    for (who, cert, why) in [
        ("expired", &expired, "expired"),
        ("revoked", &revoked, "revoked"),
        ("other CA", &stranger, "unknownissuer"),
        ("forged CA", &impostor, "badsignature"),
    ] {
        let out = tls_call(&ns, &pki, Some(cert));
        assert!(!out.ok(), "{who} must be refused: {}", out.stderr());
        agent.wait_events(&format!("the {who} refusal"), |ev| {
            tls_refusals(ev)
                .iter()
                .any(|m| m.replace(' ', "").contains(why))
        });
    }

    // TLS without a certificate: the handshake passes (client_auth is
    // optional, a token could follow), but there is no identity: 401.
    let none = tls_call(&ns, &pki, None);
    assert!(!none.ok());
    assert!(none.stderr().contains("401"), "{}", none.stderr());

    // Plaintext on the same port reaches HTTP (and is refused for lack of
    // identity, with a JSON-RPC error); no challenge without OAuth.
    let plain = plaintext(&ns);
    assert_eq!(plain.status, 401, "{}", plain.head);
    assert_eq!(plain.code(), -32001);
    assert!(
        !plain.head.to_lowercase().contains("www-authenticate"),
        "{}",
        plain.head
    );
    let events = agent.wait_events("identity refusals", |ev| {
        ev.iter()
            .filter(|e| e["kind"] == "rejected" && e["decided_by"] == "identity")
            .count()
            >= 2
    });
    assert!(
        events
            .iter()
            .filter(|e| e["decided_by"] == "identity")
            .all(|e| e["caller"].is_null() && e["http_status"] == 401),
        "{events:#?}"
    );

    // require_tls: plaintext now gets 426 and a row; TLS still works.
    agent.set_sections(&sections(&pki, &srv_cert, &srv_key, "require_tls = true"));
    agent.reload(&ns, "", PORT);
    let plain = plaintext(&ns);
    assert_eq!(plain.status, 426, "{}", plain.head);
    assert_eq!(plain.code(), -32001);
    agent.wait_events("the plaintext refusal", |ev| {
        tls_refusals(ev).iter().any(|m| m.contains("requires tls"))
    });
    assert_eq!(tls_call(&ns, &pki, Some(&alice)).text(), "hi");

    // The audit rows carry the certificate's identity columns.
    agent.stop(15);
    let rows = auditq::check(
        &agent.audit_dir(),
        &[
            "--query",
            "denials",
            "--param",
            "from=2000-01-01 00:00:00",
            "--param",
            "to=2100-01-01 00:00:00",
        ],
    );
    let rows = rows["rows"].as_array().expect("rows").clone();
    assert!(rows.len() >= 7, "tls and identity denials: {rows:#?}");
    let subjects = auditq::column(
        &agent.audit_dir(),
        "activity_by_subject",
        &[
            ("from", "2000-01-01 00:00:00"),
            ("to", "2100-01-01 00:00:00"),
        ],
        "subject",
    );
    assert!(
        subjects
            .iter()
            .all(|s| s == "spiffe://example.org/ns/dev/sa/alice"),
        "{subjects:?}"
    );
    assert!(!subjects.is_empty());

    // The certificate columns of alice's rows, as auditors read them: her
    // fingerprint and serial, and her certificate's real notAfter.
    let v = auditq::sql(
        &agent.audit_dir(),
        "SELECT DISTINCT cert_fingerprint, cert_serial, cert_not_after, \
         epoch_ms(cert_not_after) AS not_after_ms FROM mcp_audit \
         WHERE subject = 'spiffe://example.org/ns/dev/sa/alice' AND kind = 'exchange'",
    );
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(
        rows.len(),
        1,
        "one certificate for all of alice's rows: {v}"
    );
    let not_after = openssl_not_after(&alice.cert);
    assert_eq!(
        rows[0],
        json!([
            alice.fingerprint_sha256,
            alice.serial_hex,
            not_after,
            caller["cert"]["not_after"].as_i64().unwrap() * 1000
        ]),
        "Parquet certificate columns; openssl says notAfter {not_after}"
    );

    // Every row of an MCP message names its caller; only refusals before
    // an identity (TLS, identity) have none.
    let v = auditq::sql(
        &agent.audit_dir(),
        "SELECT count(*) FILTER (WHERE kind = 'exchange'), \
         count(*) FILTER (WHERE subject IS NULL AND kind <> 'rejected' AND method IS NOT NULL), \
         count(*) FILTER (WHERE subject IS NULL AND kind = 'exchange') FROM mcp_audit",
    );
    let counts = &v["rows"][0];
    assert!(counts[0].as_i64().unwrap() >= 6, "exchange rows: {v}");
    assert_eq!(counts[1], 0, "message rows without a subject: {v}");
    assert_eq!(counts[2], 0, "exchange rows without a subject: {v}");
}

/// `notAfter` of a PEM certificate as openssl reads it, in the form the
/// audit's DuckDB reader prints timestamps: `2026-03-01T09:05:00.000+00:00`.
fn openssl_not_after(cert: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let iso = text
        .trim()
        .strip_prefix("notAfter=")
        .and_then(|t| t.strip_suffix('Z'))
        .unwrap_or_else(|| panic!("openssl -enddate: {text:?}"));
    format!("{}.000+00:00", iso.replace(' ', "T"))
}

/// TLS to the upstream: verified against the configured CA and name; a
/// server the CA did not sign gets a clear 502, never a silent downgrade.
#[test]
fn tls_upstreams_are_verified() {
    require_root();
    let (ns, dir) = (NetNs::new("uptls"), TempDir::new("uptls"));
    let pki = Pki::new(&dir.path().join("pki"));
    let other = Pki::with_name(&dir.path().join("other"), "other CA");
    let (cert, key) = pki.server("upstream", &[], &["mcp.internal"]);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let _server = peer::server_with(
        ns.name(),
        "127.0.0.1:8443",
        dir.path(),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let rule = "[[intercept.ports]]\nport = 8080\nupstream = \"127.0.0.1:8443\"\n\
                upstream_tls = true\nupstream_server_name = \"mcp.internal\"\n";
    let sections = |ca: &std::path::Path| {
        format!(
            "[tls]\nupstream_ca = [\"{}\"]\n{}",
            ca.display(),
            mcp_interceptor_tests::agent::ANONYMOUS
        )
    };
    let mut agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        rule,
        "",
        &sections(&pki.ca_pem),
        Vec::new(),
    );
    let ok = peer::call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({"text": "over tls"}),
    );
    assert_eq!(ok.text(), "over tls");

    agent.set_sections(&sections(&other.ca_pem));
    agent.reload(&ns, "", rule);
    let r = plaintext(&ns);
    assert_eq!(r.status, 502, "{}", r.head);
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        msg.contains("tls") && msg.contains("unknownissuer"),
        "{msg}"
    );
}
