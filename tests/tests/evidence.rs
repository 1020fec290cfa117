//! Evidence for controls, through the real agent: every row of a TLS
//! connection records what its handshake negotiated (version, cipher
//! suite, ALPN: SC-8), read back from the Parquet files with pyarrow and
//! DuckDB, and plaintext rows record none; and an agent configured so that
//! it cannot produce evidence for a control says so at start-up and in
//! `doctor`, naming the control and the fix.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, agent::ANONYMOUS, auditq, http::in_netns, peer, pki::Pki, require_root,
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio_rustls::rustls::{
    self, SupportedCipherSuite, SupportedProtocolVersion,
    crypto::aws_lc_rs::{cipher_suite, default_provider},
    version::{TLS12, TLS13},
};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";

/// A client that trusts only `pki`'s CA and offers exactly one protocol
/// version, one cipher suite and the `alpn` protocols: the server can only
/// agree to these, so the row must name them.
fn pinned(
    pki: &Pki,
    version: &'static SupportedProtocolVersion,
    suite: SupportedCipherSuite,
    alpn: &[&str],
) -> Arc<rustls::ClientConfig> {
    let mut provider = default_provider();
    provider.cipher_suites = vec![suite];
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca_pem).expect("read CA") {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("the suite fits the version")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// `initialize` as client `name` over one TLS connection from inside
/// `ns`, with `Connection: close`; the whole answer as text.
fn initialize_over(ns: &NetNs, cfg: Arc<rustls::ClientConfig>, name: &str) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": name, "version": "1"}}})
    .to_string();
    let mut tcp = in_netns(ns, || {
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], 8080))).expect("connect")
    });
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let server = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut conn = rustls::ClientConnection::new(cfg, server).expect("client session");
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).expect("send over TLS");
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        // The answer is complete either way; how the agent closes TLS
        // (close_notify or not) is not what this test is about.
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("read after {} bytes: {e}", out.len()),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rows(v: &Value) -> &Vec<Value> {
    v["rows"].as_array().expect("rows")
}

#[test]
fn tls_rows_name_the_negotiated_version_cipher_and_alpn_and_plaintext_rows_none() {
    require_root();
    let (ns, dir) = (NetNs::new("evtls"), TempDir::new("evtls"));
    let pki = Pki::new(&dir.path().join("pki"));
    let (cert, key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["mcp.test"]);
    let _server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &[]);
    let sections = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{ANONYMOUS}",
        cert.display(),
        key.display()
    );
    let mut agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());

    // The MCP SDK client (rmcp over reqwest and rustls, its own defaults)
    // over HTTPS, then the same client in plaintext on the same port.
    let ca = pki.ca_pem.display().to_string();
    let url = "https://127.0.0.1:8080/mcp";
    let tls = peer::call_with(
        ns.name(),
        url,
        "echo",
        json!({"text": "over tls"}),
        &["--ca", &ca],
    );
    assert_eq!(tls.text(), "over tls", "{}", tls.stderr());
    let plain = peer::call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({"text": "in the clear"}),
    );
    assert_eq!(plain.text(), "in the clear", "{}", plain.stderr());
    // Clients that leave the server one choice: TLS 1.2 with an ECDSA
    // ChaCha20 suite and no ALPN, TLS 1.3 with ChaCha20 and http/1.1.
    let suite12 = cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
    let answer = initialize_over(&ns, pinned(&pki, &TLS12, suite12, &[]), "pinned-tls12");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let suite13 = cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;
    let alpn = ["http/1.1"];
    let answer = initialize_over(&ns, pinned(&pki, &TLS13, suite13, &alpn), "pinned-tls13");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    agent.stop(15);
    let audit = agent.audit_dir();

    // pyarrow: the three columns, together, as strings (columns added
    // later follow them).
    let schema = auditq::check(&audit, &["--schema"]);
    let fields = schema["fields"].as_array().expect("fields");
    let at = (fields.iter())
        .position(|f| f["name"] == "tls_version")
        .expect("tls_version in the schema");
    assert_eq!(
        fields[at..at + 3],
        [
            json!({"name": "tls_version", "type": "string"}),
            json!({"name": "tls_cipher", "type": "string"}),
            json!({"name": "tls_alpn", "type": "string"}),
        ],
        "{schema}"
    );

    // The pinned clients' rows name exactly what they left to choose.
    let pinned_rows = auditq::sql(
        &audit,
        "SELECT client_name, tls_version, tls_cipher, tls_alpn FROM mcp_audit \
         WHERE kind = 'exchange' AND method = 'initialize' AND client_name LIKE 'pinned-%' \
         ORDER BY client_name",
    );
    assert_eq!(
        rows(&pinned_rows),
        &vec![
            json!([
                "pinned-tls12",
                "TLSv1.2",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                null
            ]),
            json!([
                "pinned-tls13",
                "TLSv1.3",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "http/1.1"
            ]),
        ],
        "{pinned_rows}"
    );

    // The SDK's two tool calls: TLS 1.3 with a TLS 1.3 suite and ALPN
    // http/1.1 (reqwest speaks HTTP/1.1 only here), and plaintext: null.
    let calls = auditq::sql(
        &audit,
        "SELECT arguments, tls_version, tls_cipher LIKE 'TLS13\\_%' ESCAPE '\\', tls_alpn \
         FROM mcp_audit WHERE kind = 'exchange' AND method = 'tools/call' ORDER BY arguments",
    );
    assert_eq!(
        rows(&calls),
        &vec![
            json!([r#"{"text":"in the clear"}"#, null, null, null]),
            json!([r#"{"text":"over tls"}"#, "TLSv1.3", true, "http/1.1"]),
        ],
        "{calls}"
    );

    // Every row of a connection (its open and close rows, each message)
    // carries the same facts, and the facts come whole or not at all.
    let per_conn = auditq::sql(
        &audit,
        "SELECT count(DISTINCT conn_id), \
           count(DISTINCT conn_id) FILTER (WHERE tls_version IS NULL), \
           count(*) FILTER (WHERE kind IN ('connection_open', 'connection_close') \
             AND tls_version IS NOT NULL), \
           count(*) FILTER (WHERE (tls_version IS NULL) <> (tls_cipher IS NULL)) \
         FROM mcp_audit WHERE conn_id IS NOT NULL",
    );
    let counts = &rows(&per_conn)[0];
    assert!(counts[0].as_i64().unwrap() >= 4, "connections: {per_conn}");
    assert!(counts[1].as_i64().unwrap() >= 1, "plaintext: {per_conn}");
    assert!(
        counts[2].as_i64().unwrap() >= 6,
        "open/close rows: {per_conn}"
    );
    assert_eq!(counts[3], 0, "half-filled TLS facts: {per_conn}");
    let mixed = auditq::sql(
        &audit,
        "SELECT conn_id, list(DISTINCT concat_ws('|', coalesce(tls_version, '-'), \
           coalesce(tls_cipher, '-'), coalesce(tls_alpn, '-'))) AS facts \
         FROM mcp_audit WHERE conn_id IS NOT NULL GROUP BY conn_id HAVING count(DISTINCT \
           concat_ws('|', coalesce(tls_version, '-'), coalesce(tls_cipher, '-'), \
           coalesce(tls_alpn, '-'))) > 1",
    );
    assert!(
        rows(&mixed).is_empty(),
        "connections with mixed facts: {mixed}"
    );

    // The OCSF view: OCSF's tls object where the connection had TLS, the
    // same facts as the row's columns, and the ALPN (which OCSF's object
    // lacks) in unmapped; allowed calls are Success.
    let ocsf = auditq::ocsf(
        &audit,
        "SELECT a.arguments, o.tls, o.tls.version = a.tls_version AND o.tls.cipher = a.tls_cipher, \
           json_extract_string(o.unmapped, '$.tls_alpn'), o.status_id, o.status \
         FROM mcp_audit_ocsf o JOIN mcp_audit a ON o.metadata.uid = a.event_id \
         WHERE a.kind = 'exchange' AND a.method = 'tools/call' ORDER BY a.arguments",
    );
    let got = rows(&ocsf);
    assert_eq!(got.len(), 2, "{ocsf}");
    assert_eq!(
        got[0],
        json!([r#"{"text":"in the clear"}"#, null, null, null, 1, "Success"]),
        "{ocsf}"
    );
    assert_eq!(got[1][1]["version"], "TLSv1.3", "{ocsf}");
    assert_eq!(
        got[1].as_array().unwrap()[2..],
        [json!(true), json!("http/1.1"), json!(1), json!("Success")],
        "{ocsf}"
    );
}

/// The log lines of `log` that warn about `control`.
fn warnings<'a>(log: &'a str, control: &str) -> Vec<&'a str> {
    let tag = format!("no evidence for {control}:");
    log.lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&tag))
        .collect()
}

#[test]
fn an_anonymous_agent_without_policy_names_the_controls_it_cannot_evidence() {
    require_root();
    let (ns, dir) = (NetNs::new("evgap"), TempDir::new("evgap"));
    let _server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &[]);
    // The harness's default: anonymous callers, no [policy], no [tls],
    // no [audit.s3].
    let agent = Agent::start(&ns, dir.path(), "", PORT);
    let log = agent.log();
    for (control, says) in [
        ("IA-2", "identity.allow_anonymous = true"),
        ("AU-10", "identity.allow_anonymous = true"),
        ("AC-3", "no [policy] files"),
        ("AC-6", "no [policy] files"),
        ("AU-9", "no [audit.s3]"),
        ("SC-8", "no tls.cert"),
    ] {
        let lines = warnings(&log, control);
        assert_eq!(lines.len(), 1, "one {control} warning:\n{log}");
        assert!(lines[0].contains(says), "{}", lines[0]);
        assert!(lines[0].contains("(fix: "), "{}", lines[0]);
    }
    // Said before the agent serves.
    let ready = log.find("agent ready").expect("ready line");
    assert!(log.find("no evidence for IA-2").unwrap() < ready, "{log}");

    // doctor: the same gaps as warnings with their fix, never failures.
    let doctor = agent.doctor();
    let report = String::from_utf8_lossy(&doctor.stdout);
    let lines: Vec<&str> = report.lines().collect();
    for (control, fix) in [
        ("IA-2", "fix: configure [[identity.oidc]] or tls.client_ca"),
        ("AC-3", "fix: write Cedar policies"),
        ("AC-6", "fix: write Cedar policies"),
        ("SC-8", "fix: set tls.cert and tls.key"),
    ] {
        let at = lines
            .iter()
            .position(|l| l.starts_with("warn evidence") && l.contains(&format!("{control}: ")))
            .unwrap_or_else(|| panic!("a {control} warning:\n{report}"));
        assert!(lines[at + 1].contains(fix), "{control}: {}", lines[at + 1]);
    }
    assert!(
        !report.lines().any(|l| l.starts_with("FAIL evidence")),
        "{report}"
    );
}

/// Echo for everyone, add after an approval (retry mode), query never.
const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("echo-for-all")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "echo" };

@id("add-needs-ops")
@approval("ops")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "add" };

@id("no-query")
forbid (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "query" };
"#;

#[test]
fn a_well_configured_agent_warns_only_of_what_it_cannot_see_and_ocsf_names_each_outcome() {
    require_root();
    let (ns, dir) = (NetNs::new("evok"), TempDir::new("evok"));
    let pki = Pki::new(&dir.path().join("pki"));
    let (cert, key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["mcp.test"]);
    let alice = pki.client("alice", "alice", None, None, false);
    let policy = dir.path().join("policy.cedar");
    std::fs::write(&policy, POLICY).expect("write policy");
    let _server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &[]);
    let sections = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nrequire_tls = true\nclient_ca = [\"{}\"]\n\
         [identity]\nallow_anonymous = false\n[policy]\nfiles = [\"{}\"]\n",
        cert.display(),
        key.display(),
        pki.ca_pem.display(),
        policy.display()
    );
    let mut agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());
    let log = agent.log();
    for control in ["IA-2", "AU-10", "AC-3", "AC-6", "SC-8"] {
        assert!(warnings(&log, control).is_empty(), "{control}:\n{log}");
    }
    // Only the audit's protection is left to this host.
    assert_eq!(warnings(&log, "AU-9").len(), 1, "{log}");

    // Allowed, held for an approval, and forbidden.
    let (ca, cert, key) = (
        pki.ca_pem.display().to_string(),
        alice.cert.display().to_string(),
        alice.key.display().to_string(),
    );
    let mtls = [
        "--ca",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
    ];
    let url = "https://127.0.0.1:8080/mcp";
    let call = |tool: &str, args: Value| peer::call_with(ns.name(), url, tool, args, &mtls);
    let echo = call("echo", json!({"text": "hi"}));
    assert_eq!(echo.text(), "hi", "{}", echo.stderr());
    assert!(
        !call("add", json!({"a": 1, "b": 2})).ok(),
        "add waits for ops"
    );
    assert!(
        !call("query", json!({"sql": "select 1"})).ok(),
        "query is forbidden"
    );
    agent.stop(15);

    // OCSF's status vocabulary: what each decision means, and why.
    let ocsf = auditq::ocsf(
        &agent.audit_dir(),
        "SELECT metadata.event_code, resources[1].name, status_id, status, status_detail \
         FROM mcp_audit_ocsf WHERE resources[1].name IN ('echo', 'add', 'query') \
           AND metadata.event_code <> 'forwarded' ORDER BY 2, 1",
    );
    let got = rows(&ocsf);
    let fixed: Vec<Value> = got
        .iter()
        .map(|r| json!([r[0], r[1], r[2], r[3]]))
        .collect();
    assert_eq!(
        fixed,
        [
            json!(["approval_requested", "add", 99, "Pending"]),
            json!(["denied", "add", 2, "Failure"]),
            json!(["exchange", "echo", 1, "Success"]),
            json!(["denied", "query", 2, "Failure"]),
        ],
        "{ocsf}"
    );
    let detail: Vec<&str> = got.iter().map(|r| r[4].as_str().unwrap_or("")).collect();
    assert_eq!(detail[0], "pending (approval: add-needs-ops)", "{ocsf}");
    assert!(
        detail[1].starts_with("deny (approval: add-needs-ops); approval required"),
        "{ocsf}"
    );
    assert_eq!(detail[2], "allow (echo-for-all)", "{ocsf}");
    assert!(
        detail[3].starts_with("deny (policy: no-query); denied: tools/call on query"),
        "{ocsf}"
    );
}
