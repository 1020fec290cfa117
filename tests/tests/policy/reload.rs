//! Reload of the policy files, on change and on SIGHUP: a broken set is
//! refused and the running one keeps deciding, with its own version.

use super::*;

/// The policy-set version a refusal names (`error.data.policy_version`).
fn refused_version(r: &RawResponse) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["error"]["data"]["policy_version"]
        .as_str()
        .unwrap_or_else(|| panic!("a policy refusal: {v}"))
        .to_string()
}

/// The decision recorded for the request with JSON-RPC id `id`.
fn decision_of(w: &World, id: i64) -> Value {
    let events = w.agent.wait_events(&format!("request {id}"), |ev| {
        ev.iter().any(|e| e["jsonrpc_id"] == id)
    });
    let e = events.iter().find(|e| e["jsonrpc_id"] == id).unwrap();
    e["decision"].clone()
}

#[test]
fn a_broken_policy_keeps_the_running_one() {
    require_root();
    let mut w = World::with("polreload", "", |dir| policy_sections(dir, "alert"));
    let bob = token(&w.issuer, "bob", &["contractors"]);
    let first = raw_call(&w, &bob, 1, "add", json!({"a": 1, "b": 1}));
    assert_eq!(denied_by(&first).0, -32002);
    let old = refused_version(&first);
    assert_eq!(old, explained_version(&w));

    // Changed on disk, and broken: refused, logged, the old set decides.
    std::fs::write(
        w.dir.path().join("policy.cedar"),
        "permit (principal, action,",
    )
    .unwrap();
    wait_for(
        "the broken policy to be refused",
        Duration::from_secs(10),
        || {
            w.agent
                .log()
                .contains("keeping the running policy set")
                .then_some(())
        },
    );
    let echo = tool(&w, &bob, "echo", json!({"text": "still"}), &[]);
    assert_eq!(echo["result"]["content"][0]["text"], "still");
    let denied = raw_call(&w, &bob, 2, "add", json!({"a": 1, "b": 1}));
    assert_eq!(denied_by(&denied).0, -32002);
    assert_eq!(refused_version(&denied), old);

    // SIGHUP with the broken file: the reload is refused as a whole.
    let before = w.agent.log().matches("reload rejected").count();
    w.agent.proc().signal(1);
    wait_for("the refused reload", Duration::from_secs(10), || {
        (w.agent.log().matches("reload rejected").count() > before).then_some(())
    });
    // The old set, not a deny-all fallback: bob's permitted call still
    // goes through, decided by the old version; his other call is refused
    // by that same version.
    let echo = tool(&w, &bob, "echo", json!({"text": "after SIGHUP"}), &[]);
    assert_eq!(echo["result"]["content"][0]["text"], "after SIGHUP");
    let allowed = raw_call(&w, &bob, 3, "echo", json!({"text": "x"}));
    assert_ne!(denied_by(&allowed).0, -32002);
    let d = decision_of(&w, 3);
    assert_eq!(d["effect"], "allow", "{d}");
    assert_eq!(d["policies"], json!(["contractor-echo"]));
    assert_eq!(d["version"], old.as_str(), "decided by the running set");
    let denied = raw_call(&w, &bob, 4, "add", json!({"a": 1, "b": 1}));
    assert_eq!(denied_by(&denied).0, -32002);
    assert_eq!(refused_version(&denied), old);

    // Fixed: picked up without a signal; bob may now add.
    let fixed = format!(
        "{POLICY}\n@id(\"contractor-add\")\npermit (principal in Mcp::Group::\"contractors\", \
         action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"add\");\n"
    );
    std::fs::write(w.dir.path().join("policy.cedar"), fixed).unwrap();
    wait_for("the fixed policy to load", Duration::from_secs(10), || {
        let r = raw_call(&w, &bob, 5, "add", json!({"a": 1, "b": 1}));
        (denied_by(&r).0 != -32002).then_some(())
    });
    let fixed = explained_version(&w);
    assert_ne!(fixed, old);
    raw_call(&w, &bob, 6, "add", json!({"a": 1, "b": 1}));
    let d = decision_of(&w, 6);
    assert_eq!(d["policies"], json!(["contractor-add"]), "{d}");
    assert_eq!(d["version"], fixed.as_str(), "{d}");
}
