//! OIDC settings beyond one plain issuer, against real issuers
//! (oidc-provider-mock): the JWKS is cached and forged kids refetch it at
//! most once per `jwks_min_refresh_seconds` (counted in the issuer's own
//! request log); several issuers side by side, each with its own groups
//! claim (a dotted Keycloak path); `iat` in the future; a narrowed
//! algorithm list.

use std::time::{Duration, Instant};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    http::{RawResponse, initialize},
    oidc::Issuer,
    peer, require_root, wait_for,
    world::{CLIENT, PORT, bearer, header, now, post_mcp},
};
use serde_json::{Value, json};

/// Requests for `path` in the issuer's request log (werkzeug prints one
/// line per request on stderr: `... "GET /jwks HTTP/1.1" 200 -`).
fn gets(issuer: &mut Issuer, path: &str) -> usize {
    let needle = format!("\"GET {path} HTTP/");
    issuer
        .proc()
        .stderr()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// A token of `issuer`'s current key; `over` replaces claims (`iss`
/// included) and `header` header fields (e.g. a forged `kid`).
fn mint(issuer: &Issuer, sub: &str, over: Value, header: Value) -> String {
    let mut claims =
        json!({"iss": issuer.url, "aud": CLIENT, "sub": sub, "iat": now(), "exp": now() + 600});
    for (k, v) in over.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer.mint(claims, header, "key")
}

fn message(r: &RawResponse) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// One `[[identity.oidc]]` entry for `issuer` with more keys.
fn entry(issuer: &Issuer, extra: &str) -> String {
    format!(
        "[[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"{CLIENT}\"]\nleeway_seconds = 5\n{extra}\n",
        issuer.url
    )
}

#[test]
fn jwks_is_cached_and_forged_kids_refetch_it_once_per_window() {
    require_root();
    let (ns, dir) = (NetNs::new("jwks"), TempDir::new("jwks"));
    let mut issuer = Issuer::start(&ns, 9400, dir.path());
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let sections = format!(
        "[identity]\nallow_anonymous = false\n{}",
        entry(&issuer, "jwks_min_refresh_seconds = 4")
    );
    let _agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections, Vec::new());
    wait_for(
        "the agent's first JWKS fetch",
        Duration::from_secs(10),
        || (gets(&mut issuer, "/jwks") == 1).then_some(()),
    );
    let window = Instant::now() + Duration::from_millis(4500);

    // Ten different tokens of the known key: all verified from the cache.
    for i in 0..10 {
        let t = mint(
            &issuer,
            "alice",
            json!({"jti": format!("t{i}")}),
            Value::Null,
        );
        let r = post_mcp(&ns, initialize(i), &[bearer(&t)]);
        assert_eq!(r.status, 200, "{}", r.head);
    }
    assert_eq!(gets(&mut issuer, "/jwks"), 1, "the JWKS was refetched");

    // Once the first fetch is jwks_min_refresh_seconds old, a burst of
    // tokens naming 20 unknown kids (signed by the real key, so only the
    // kid is wrong) refetches once, not once per token.
    let forged: Vec<String> = (0..20)
        .map(|i| {
            mint(
                &issuer,
                "alice",
                json!({}),
                json!({"kid": format!("forged-{i}")}),
            )
        })
        .collect();
    std::thread::sleep(window.saturating_duration_since(Instant::now()));
    let answers: Vec<RawResponse> = std::thread::scope(|s| {
        let ns = &ns;
        let handles: Vec<_> = forged
            .iter()
            .map(|t| s.spawn(move || post_mcp(ns, initialize(1), &[bearer(t)])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &answers {
        assert_eq!(r.status, 401, "{}", r.head);
        assert!(
            message(r).contains("not in the issuer's JWKS"),
            "{}",
            message(r)
        );
    }
    wait_for("the refetch", Duration::from_secs(5), || {
        (gets(&mut issuer, "/jwks") >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gets(&mut issuer, "/jwks"), 2, "one refetch for the burst");
    assert_eq!(
        gets(&mut issuer, "/.well-known/openid-configuration"),
        1,
        "discovery is read once"
    );

    // The known key still verifies, without another fetch.
    let t = mint(&issuer, "alice", json!({"jti": "after"}), Value::Null);
    assert_eq!(post_mcp(&ns, initialize(2), &[bearer(&t)]).status, 200);
    assert_eq!(gets(&mut issuer, "/jwks"), 2);
}

#[test]
fn two_issuers_each_with_its_claims_and_a_third_refused() {
    require_root();
    let (ns, dir) = (NetNs::new("issuers"), TempDir::new("issuers"));
    let (corp, keycloak, stranger) = std::thread::scope(|s| {
        let start = |port| {
            let (ns, dir) = (&ns, dir.path());
            s.spawn(move || Issuer::start(ns, port, dir))
        };
        let (a, b, c) = (start(9400), start(9401), start(9402));
        (a.join().unwrap(), b.join().unwrap(), c.join().unwrap())
    });
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let sections = |corp_extra: &str| {
        format!(
            "[identity]\nallow_anonymous = false\n{}{}",
            entry(&corp, corp_extra),
            entry(&keycloak, "groups_claim = \"realm_access.roles\"")
        )
    };
    let mut agent = Agent::start_full(&ns, dir.path(), "", PORT, "", &sections(""), Vec::new());

    // Both configured issuers are accepted, each with its groups claim
    // (keycloak's plain `groups` is a decoy its entry does not read).
    let a = mint(&corp, "alice", json!({"groups": ["dev"]}), Value::Null);
    let roles = json!({"realm_access": {"roles": ["admin", "ops"]}, "groups": ["decoy"]});
    let b = mint(&keycloak, "alice", roles, Value::Null);
    let from_a = post_mcp(&ns, initialize(1), &[bearer(&a)]);
    assert_eq!(from_a.status, 200, "{}", from_a.head);
    assert_eq!(post_mcp(&ns, initialize(2), &[bearer(&b)]).status, 200);
    let events = agent.wait_events("both callers", |ev| {
        ev.iter()
            .filter(|e| e["method"] == "initialize" && e["kind"] == "exchange")
            .count()
            >= 2
    });
    let caller_of = |iss: &str| {
        events
            .iter()
            .find(|e| e["method"] == "initialize" && e["caller"]["issuer"] == iss)
            .map(|e| e["caller"].clone())
            .unwrap_or_else(|| panic!("no row from {iss}: {events:#?}"))
    };
    let (ca, cb) = (caller_of(&corp.url), caller_of(&keycloak.url));
    assert_eq!(
        (&ca["subject"], &ca["groups"]),
        (&json!("alice"), &json!(["dev"]))
    );
    assert_eq!(
        (&cb["subject"], &cb["groups"]),
        (&json!("alice"), &json!(["admin", "ops"]))
    );

    // The same subject from another issuer is another principal: it cannot
    // use the session alice@corp opened.
    let sid = header(&from_a, "mcp-session-id").expect("a session");
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let r = post_mcp(&ns, list, &[bearer(&b), format!("Mcp-Session-Id: {sid}")]);
    assert_eq!((r.status, r.code()), (403, -32001), "{}", r.head);

    // A third issuer is not trusted; its key does not become trusted by
    // naming a configured issuer in `iss` either.
    for (what, t, why) in [
        (
            "unconfigured issuer",
            mint(&stranger, "alice", json!({}), Value::Null),
            "not trusted",
        ),
        (
            "iss of a configured issuer",
            mint(&stranger, "alice", json!({"iss": corp.url}), Value::Null),
            "not in the issuer's JWKS",
        ),
    ] {
        let r = post_mcp(&ns, initialize(4), &[bearer(&t)]);
        assert_eq!(r.status, 401, "{what}: {}", r.head);
        assert!(message(&r).contains(why), "{what}: {}", message(&r));
    }

    // iat: in the future beyond leeway_seconds (5) refused, within it
    // accepted.
    let future = mint(&corp, "alice", json!({"iat": now() + 60}), Value::Null);
    let r = post_mcp(&ns, initialize(5), &[bearer(&future)]);
    assert_eq!(r.status, 401, "{}", r.head);
    assert!(
        message(&r).contains("issued in the future"),
        "{}",
        message(&r)
    );
    let skewed = mint(&corp, "alice", json!({"iat": now() + 2}), Value::Null);
    let r = post_mcp(&ns, initialize(6), &[bearer(&skewed)]);
    assert_eq!(r.status, 200, "{}", r.head);

    // algorithms narrowed to ES256: corp's RS256 tokens are refused, saying
    // what the issuer accepts; the other issuer is unaffected.
    agent.set_sections(&sections("algorithms = [\"ES256\"]"));
    agent.reload(&ns, "", PORT);
    let r = post_mcp(&ns, initialize(7), &[bearer(&a)]);
    assert_eq!((r.status, r.code()), (401, -32001), "{}", r.head);
    assert!(
        message(&r).contains(
            "token algorithm \"RS256\" is not accepted: this issuer's algorithms are [ES256]"
        ),
        "{}",
        message(&r)
    );
    assert_eq!(post_mcp(&ns, initialize(8), &[bearer(&b)]).status, 200);
    agent.wait_events("the algorithm refusal row", |ev| {
        ev.iter().any(|e| {
            e["decided_by"] == "identity"
                && e["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("algorithms are [ES256]"))
        })
    });
}
