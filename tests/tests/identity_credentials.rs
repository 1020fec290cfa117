//! Credential isolation, asserted where it matters: at the MCP server
//! (`mcp-peer server --log-auth` prints the `Authorization` of every
//! request it gets). The caller's token never arrives once the agent is an
//! identity boundary; the agent's own credential, from a command, does.

use std::os::unix::fs::PermissionsExt;

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    agent::ANONYMOUS,
    oidc::Issuer,
    peer::{self, auth_log, call_with},
    pki::Pki,
    require_root, unique,
    world::{CLIENT, PORT, URL, echo, token},
};
use serde_json::json;

/// A credential command that counts its runs and prints
/// `Bearer cmd-<nonce>-<run>`: each refresh gives a new value.
fn credential_command(dir: &std::path::Path, nonce: &str) -> std::path::PathBuf {
    let script = dir.join("fetch-token");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(( $(cat \"$0.count\" 2>/dev/null || echo 0) + 1 ))\n\
             echo \"$n\" > \"$0.count\"\necho \"Bearer cmd-{nonce}-$n\"\n"
        ),
    )
    .expect("write the credential command");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// The run number of a `cmd-<nonce>-<run>` credential in an auth line.
fn run_of(line: &str, nonce: &str) -> u32 {
    let prefix = format!(" authorization=Bearer cmd-{nonce}-");
    line.split_once(&prefix)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not the command's credential: {line}"))
}

#[test]
fn a_command_credential_replaces_the_callers_token_and_is_refreshed() {
    require_root();
    let (ns, dir) = (NetNs::new("credcmd"), TempDir::new("credcmd"));
    let nonce = unique("n");
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let script = credential_command(dir.path(), &nonce);
    let server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &["--log-auth"]);
    let sections = format!(
        "[identity]\nallow_anonymous = false\n\
         [[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"{CLIENT}\"]\n\
         [identity.upstream_credential]\ncommand = [\"{}\"]\nrefresh_seconds = 1\n",
        issuer.url,
        script.display()
    );
    let agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());

    let caller = token(&issuer, "alice", &["dev"]);
    assert_eq!(echo(&ns, &caller, "first"), "first");
    let first = auth_log(&server);
    assert!(!first.is_empty());
    let first_run = first.iter().map(|l| run_of(l, &nonce)).max().unwrap();

    // The command runs again every refresh_seconds; later requests carry
    // its newer output.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(echo(&ns, &caller, "second"), "second");
    let all = auth_log(&server);
    let later: Vec<u32> = all[first.len()..]
        .iter()
        .map(|l| run_of(l, &nonce))
        .collect();
    assert!(
        later.iter().all(|r| *r > first_run),
        "refreshed credential: first {first_run}, later {later:?}"
    );
    for line in &all {
        assert!(!line.contains(&caller), "caller token leaked: {line}");
    }
    let events = agent.wait_events("both calls", |ev| {
        ev.iter()
            .filter(|e| e["method"] == "tools/call" && e["kind"] == "exchange")
            .count()
            >= 2
    });
    assert!(
        events
            .iter()
            .filter(|e| e["method"] == "tools/call")
            .all(|e| e["caller"]["subject"] == "alice"),
        "{events:#?}"
    );
}

/// With mTLS as the only identity source and no upstream credential, the
/// caller's `Authorization` still stops at the agent; only an agent that
/// identifies nobody passes it on, for the server's own authentication.
#[test]
fn mtls_alone_strips_the_callers_authorization_and_no_identity_passes_it() {
    require_root();
    let (ns, dir) = (NetNs::new("credmtls"), TempDir::new("credmtls"));
    let pki = Pki::new(&dir.path().join("pki"));
    let (cert, key) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["mcp.test"]);
    let alice = pki.client("alice", "alice", None, None, false);
    let secret = format!("Bearer {}", unique("caller-secret"));
    let server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &["--log-auth"]);
    let mtls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = [\"{}\"]\n\
         [identity]\nallow_anonymous = false\n",
        cert.display(),
        key.display(),
        pki.ca_pem.display()
    );
    let mut agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &mtls, Vec::new());

    let (ca, c, k) = (
        pki.ca_pem.display().to_string(),
        alice.cert.display().to_string(),
        alice.key.display().to_string(),
    );
    let token = secret.trim_start_matches("Bearer ");
    let args = ["--ca", &ca, "--cert", &c, "--key", &k, "--bearer", token];
    let https = URL.replace("http://", "https://");
    let out = call_with(
        ns.name(),
        https.as_str(),
        "echo",
        json!({"text": "mtls"}),
        &args,
    );
    assert_eq!(out.text(), "mtls");
    let seen = auth_log(&server);
    assert!(
        seen.len() >= 3,
        "initialize, initialized, list, call: {seen:?}"
    );
    for line in &seen {
        assert!(line.contains("authorization=-"), "{line}");
        assert!(!line.contains(token), "caller token leaked: {line}");
    }
    let events = agent.wait_events("the mTLS call", |ev| {
        ev.iter()
            .any(|e| e["method"] == "tools/call" && e["kind"] == "exchange")
    });
    let call = events.iter().find(|e| e["method"] == "tools/call").unwrap();
    assert_eq!(call["caller"]["method"], "mtls", "{call}");

    // No identity configured at all: the agent only steers and audits, and
    // the server does its own authentication with the caller's header.
    agent.set_sections(ANONYMOUS);
    agent.reload(&ns, "", PORT);
    let out = call_with(
        ns.name(),
        URL,
        "echo",
        json!({"text": "plain"}),
        &["--bearer", token],
    );
    assert_eq!(out.text(), "plain");
    let passed = &auth_log(&server)[seen.len()..];
    assert!(!passed.is_empty());
    for line in passed {
        assert!(line.contains(&format!("authorization={secret} ")), "{line}");
    }
}
