//! OIDC bearer tokens through the steered port, against a real issuer
//! (oidc-provider-mock) started by the test: valid tokens bind the caller
//! (subject and groups in the audit), every forgery gets 401 and a row,
//! key rotation is picked up live, sessions cannot be hijacked, and the
//! server never sees the caller's token.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mcp_interceptor_tests::{
    auditq,
    http::initialize,
    oidc::{jwt_claims, jwt_header},
    peer::auth_log,
    require_root,
    world::{
        CLIENT, PORT, UPSTREAM, URL, World, bearer, echo, header, id_token, now, post_mcp, sections,
    },
};
use serde_json::{Value, json};

/// The same token with one claim changed and the signature kept.
fn tampered(token: &str, claim: &str, value: Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = jwt_claims(token);
    claims[claim] = value;
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[test]
fn bearer_tokens_bind_identity_and_forgeries_are_refused() {
    require_root();
    let World {
        mut agent,
        server,
        issuer,
        cred,
        ns,
        dir: _dir,
    } = World::new("oidc");
    issuer.set_user("bob", json!({"groups": ["contractors"]}));

    // A real RS256 ID token from the authorization-code flow.
    let alice = id_token(&issuer, "alice", "openid profile");
    assert_eq!(jwt_header(&alice)["alg"], "RS256");
    assert_eq!(echo(&ns, &alice, "hi"), "hi");
    let events = agent.wait_events("alice's call", |ev| {
        ev.iter()
            .any(|e| e["method"] == "tools/call" && e["kind"] == "exchange")
    });
    let call = events.iter().find(|e| e["method"] == "tools/call").unwrap();
    assert_eq!(call["caller"]["subject"], "alice", "{call}");
    assert_eq!(call["caller"]["groups"], json!(["dev", "oncall"]));
    assert_eq!(call["caller"]["method"], "oidc");
    assert_eq!(call["caller"]["issuer"], issuer.url.as_str());

    // Credential isolation: every request reached the server with the
    // agent's credential, none with the caller's token.
    let seen = auth_log(&server);
    assert!(!seen.is_empty());
    for line in &seen {
        assert!(
            line.contains(&format!("authorization={UPSTREAM}")),
            "{line}"
        );
        assert!(!line.contains(&alice), "caller token leaked: {line}");
    }

    // Each forgery: 401, invalid_token, and an audit row with the reason.
    let url = issuer.url.clone();
    let good = |over: Value| {
        let mut c =
            json!({"iss": url, "aud": CLIENT, "sub": "alice", "iat": now(), "exp": now() + 600});
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // The raw client sends `Host: mcp.test`: the metadata URL follows it.
    let forgeries = [
        (
            "expired",
            issuer.mint(
                good(json!({"exp": now() - 3600, "iat": now() - 7200})),
                Value::Null,
                "key",
            ),
            "expired",
        ),
        (
            "wrong aud",
            issuer.mint(good(json!({"aud": "another-service"})), Value::Null, "key"),
            "audience",
        ),
        (
            "wrong iss",
            issuer.mint(
                good(json!({"iss": "http://evil.example"})),
                Value::Null,
                "key",
            ),
            "not trusted",
        ),
        (
            "alg none",
            issuer.mint(good(json!({})), Value::Null, "none"),
            "\"none\" is not accepted",
        ),
        (
            "HS256 with the public key",
            issuer.mint(good(json!({})), Value::Null, "hs256-public"),
            "\"HS256\" is not accepted",
        ),
        (
            "unknown kid",
            issuer.mint(good(json!({})), Value::Null, "other-key"),
            "not in the issuer's JWKS",
        ),
        (
            "tampered payload",
            tampered(&alice, "sub", json!("admin")),
            "signature is invalid",
        ),
        (
            "not yet valid",
            issuer.mint(good(json!({"nbf": now() + 3600})), Value::Null, "key"),
            "not valid yet",
        ),
    ];
    for (what, token, why) in &forgeries {
        let r = post_mcp(&ns, initialize(1), &[bearer(token)]);
        assert_eq!(r.status, 401, "{what}: {}", r.head);
        assert_eq!(r.code(), -32001, "{what}");
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(why), "{what}: {msg}");
        let challenge = header(&r, "www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\"")
                && challenge.contains(
                    "resource_metadata=\"http://mcp.test/.well-known/oauth-protected-resource/mcp\""
                ),
            "{what}: {challenge}"
        );
    }
    let events = agent.wait_events("a row per forgery", |ev| {
        ev.iter().filter(|e| e["decided_by"] == "identity").count() >= forgeries.len()
    });
    for (what, _, why) in &forgeries {
        assert!(
            events.iter().any(|e| e["decided_by"] == "identity"
                && e["http_status"] == 401
                && e["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(why)),
            "no audit row for {what}"
        );
    }
    assert!(
        seen.len() == auth_log(&server).len(),
        "no forged request reached the server"
    );

    // Key rotation, live: a token under the new key passes once the agent
    // refetches the JWKS on the unknown kid; the old key is gone with it.
    std::thread::sleep(Duration::from_millis(1100)); // jwks_min_refresh_seconds
    let new_kid = issuer.rotate();
    let rotated = id_token(&issuer, "alice", "openid");
    assert_eq!(jwt_header(&rotated)["kid"], new_kid.as_str());
    assert_eq!(echo(&ns, &rotated, "rotated"), "rotated");
    let old = post_mcp(&ns, initialize(2), &[bearer(&alice)]);
    assert_eq!(
        old.status, 401,
        "the old key no longer verifies: {}",
        old.head
    );

    // Session hijack: bob presents alice's session id as its first user,
    // right after her initialize. Were the session not bound to alice when
    // the server named it, it would go to bob as its first caller.
    let bob = id_token(&issuer, "bob", "openid");
    let init = post_mcp(&ns, initialize(3), &[bearer(&rotated)]);
    assert_eq!(init.status, 200, "{}", init.head);
    let sid = header(&init, "mcp-session-id")
        .expect("a session")
        .to_string();
    let list = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
    let session = |token: &str| {
        vec![
            bearer(token),
            format!("Mcp-Session-Id: {sid}"),
            "Mcp-Protocol-Version: 2025-06-18".to_string(),
        ]
    };
    let hijack = post_mcp(&ns, list.clone(), &session(&bob));
    assert_eq!(hijack.status, 403, "{}", hijack.head);
    assert_eq!(
        (hijack.code(), hijack.reason()),
        (-32001, "session_owner".into())
    );
    let notified = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post_mcp(&ns, notified, &session(&rotated)).status, 202);
    let owner = post_mcp(&ns, list, &session(&rotated));
    assert_eq!(
        owner.status, 200,
        "the owner keeps the session: {}",
        owner.head
    );
    agent.wait_events("the hijack row", |ev| {
        ev.iter().any(|e| {
            e["decided_by"] == "identity"
                && e["http_status"] == 403
                && e["session_id"] == sid.as_str()
                && e["caller"]["subject"] == "bob"
        })
    });

    // Scopes: with a required scope, a token without it gets 403
    // insufficient_scope; one with it passes.
    agent.set_sections(&sections(
        &issuer,
        &cred,
        "required_scopes = [\"mcp:tools\"]",
    ));
    agent.reload(&ns, "", PORT);
    let scoped = |scope: &str| issuer.mint(good(json!({"scope": scope})), Value::Null, "key");
    let r = post_mcp(&ns, initialize(5), &[bearer(&scoped("openid"))]);
    assert_eq!(r.status, 403, "{}", r.head);
    let challenge = header(&r, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("mcp:tools"),
        "{challenge}"
    );
    let r = post_mcp(&ns, initialize(6), &[bearer(&scoped("openid mcp:tools"))]);
    assert_eq!(r.status, 200, "{}", r.head);

    // The Parquet rows hold subject and groups, as auditors query them.
    agent.stop(15);
    let all = [
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    let v = auditq::run_query(&agent.audit_dir(), "activity_by_subject", &all);
    let cols: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let rows = v["rows"].as_array().unwrap();
    let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    let alice_call = rows
        .iter()
        .find(|r| r[at("subject")] == "alice" && r[at("method")] == "tools/call")
        .unwrap_or_else(|| panic!("alice's tools/call in {v}"));
    assert_eq!(alice_call[at("groups")], json!(["dev", "oncall"]));
    assert_eq!(alice_call[at("auth_method")], "oidc");
    let denials = auditq::query(&agent.audit_dir(), "denials", &all);
    assert!(denials.len() >= forgeries.len() + 3, "{denials:#?}");
    // Every exchange row names its caller: only refusals before an
    // identity was established have none.
    let v = auditq::sql(
        &agent.audit_dir(),
        "SELECT count(*) FILTER (WHERE kind = 'exchange'), \
         count(*) FILTER (WHERE kind = 'exchange' AND subject IS NULL) FROM mcp_audit",
    );
    assert!(v["rows"][0][0].as_i64().unwrap() >= 6, "{v}");
    assert_eq!(v["rows"][0][1], 0, "exchange rows without a subject: {v}");
}

/// A client that follows the MCP authorization spec (the official Python
/// SDK) starts with no token, learns where to log in from the 401, and
/// comes back with a token for this resource (RFC 8707 audience).
#[test]
fn a_spec_following_client_discovers_the_metadata_and_logs_in() {
    require_root();
    // Every field bound: unbound ones would drop (and stop) right here.
    let World {
        agent,
        server,
        issuer: _issuer,
        cred: _,
        ns,
        dir: _dir,
    } = World::new("oauth");

    let script = mcp_interceptor_tests::everything::repo().join("tests/peers/mcp_oauth_client.py");
    let args: Vec<String> = [
        script.display().to_string(),
        "--url".into(),
        URL.into(),
        "--sub".into(),
        "alice".into(),
        "--tool".into(),
        "echo".into(),
        "--args".into(),
        json!({"text": "logged in"}).to_string(),
    ]
    .to_vec();
    let out = mcp_interceptor_tests::run_in(
        Some(ns.name()),
        &mcp_interceptor_tests::s3::venv_bin("python"),
        &args,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "OAuth client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("client prints JSON");
    let metadata = "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp";
    assert_eq!(v["metadata_url"], metadata, "{v}");
    assert!(
        v["auth_requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "GET" && r[1] == metadata && r[2] == 200),
        "the client read the metadata the agent serves: {v}"
    );
    assert_eq!(
        v["token_claims"]["aud"], URL,
        "token for this resource: {v}"
    );
    assert_eq!(v["result"]["content"][0]["text"], "logged in", "{v}");

    let events = agent.wait_events("the logged-in call", |ev| {
        ev.iter()
            .any(|e| e["method"] == "tools/call" && e["kind"] == "exchange")
    });
    assert!(
        events
            .iter()
            .any(|e| e["decided_by"] == "identity" && e["http_status"] == 401),
        "the first attempt was refused: {events:#?}"
    );
    let call = events.iter().find(|e| e["method"] == "tools/call").unwrap();
    assert_eq!(call["caller"]["subject"], "alice");
    assert!(call["caller"]["client_id"].as_str().is_some(), "{call}");
    let token = v["token_claims"].to_string();
    for line in auth_log(&server) {
        assert!(
            line.contains(&format!("authorization={UPSTREAM}")),
            "{line} ({token})"
        );
    }
}
