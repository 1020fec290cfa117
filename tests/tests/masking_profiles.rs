//! `@mask("profile")` on the determining permit picks the masking profile
//! of the answer, and of the notifications the call streams before it; a
//! policy naming a profile the config does not define is refused by
//! `check-config`, at start, on SIGHUP and when its file changes, with an
//! error naming the policy and the profile.

use std::{path::Path, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, bin,
    peer::{self, call},
    proc::run_in,
    require_root, wait_for,
};
use serde_json::{Value, json};

const URL: &str = "http://127.0.0.1:8080/mcp";

/// `strict` masks what `standard` leaves: names (by key).
const PROFILES: &str = "[mask.profiles.strict]\n\
    detectors = [\"email\", \"phone\", \"card\"]\n\
    keys = [\"name\", \"cardholder\"]\n";

fn policy(profile: &str) -> String {
    format!(
        r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("strict-records")
@mask("{profile}")
permit (principal, action == Mcp::Action::"tools/call", resource)
when {{ resource.name == "lookup_customer_structured" || resource.name == "stream_customers" }};

@id("plain-lookup")
permit (principal, action == Mcp::Action::"tools/call", resource)
when {{ resource.name == "lookup_customer" }};
"#
    )
}

/// The port table, the profiles and `[policy]` reading `file`.
fn tables(file: &Path) -> String {
    format!(
        "[[intercept.ports]]\nport = 8080\n{PROFILES}\
         [policy]\nfiles = [\"{}\"]\nreload_poll_seconds = 1\n",
        file.display()
    )
}

fn record(v: &Value) -> Value {
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {v}"))
}

#[test]
fn the_policy_profile_masks_the_answer_and_its_notifications() {
    require_root();
    let (ns, dir) = (NetNs::new("maskpol"), TempDir::new("maskpol"));
    // Stateless: a call's notifications come on its own SSE answer.
    let _server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--json-response"],
    );
    let file = dir.path().join("mask.cedar");
    std::fs::write(&file, policy("strict")).unwrap();
    let agent = Agent::start(&ns, dir.path(), "", &tables(&file));

    // The default profile: names pass.
    let plain = record(&call(ns.name(), URL, "lookup_customer", json!({"id": "c-1"})).json());
    assert_eq!(plain["email"], "[EMAIL]");
    assert!(
        plain["name"].as_str().is_some_and(|n| !n.starts_with('[')),
        "{plain}"
    );
    // `strict`, from @mask on the permit: names masked too.
    let strict = call(
        ns.name(),
        URL,
        "lookup_customer_structured",
        json!({"id": "c-1"}),
    )
    .json();
    let sc = &strict["result"]["structuredContent"];
    assert_eq!(sc["name"], "[REDACTED]", "{sc}");
    assert_eq!(sc["payment_card"]["cardholder"], "[REDACTED]", "{sc}");
    assert_eq!(sc["email"], "[EMAIL]");
    assert_eq!(record(&strict)["name"], "[REDACTED]", "the text too");
    assert_eq!(sc["orders"], plain["orders"], "the rest is the same record");

    // The call's log notifications precede its answer on the same stream:
    // masked with the call's profile, not the default.
    let streamed = call(
        ns.name(),
        URL,
        "stream_customers",
        json!({"count": 2, "prefix": "p"}),
    )
    .json();
    let logs = streamed["log_messages"].as_array().expect("log_messages");
    assert_eq!(logs.len(), 2, "{streamed}");
    for l in logs {
        assert_eq!(l["name"], "[REDACTED]", "{l}");
        assert_eq!(l["email"], "[EMAIL]", "{l}");
    }

    let events = agent.wait_events("the streamed call", |ev| {
        ev.iter()
            .any(|e| e["target"] == "stream_customers" && e["kind"] == "exchange")
    });
    let with = |target: &str| {
        events
            .iter()
            .find(|e| e["target"] == target && e["kind"] == "exchange")
            .map(|e| e["masked_with"].clone())
    };
    assert_eq!(with("lookup_customer"), Some(json!("standard")));
    assert_eq!(with("lookup_customer_structured"), Some(json!("strict")));
    let notes: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "notifications/message")
        .collect();
    assert_eq!(notes.len(), 2);
    for n in notes {
        assert_eq!(n["masked_with"], "strict", "{n}");
        assert!(n["masked"]["key"].as_u64() >= Some(2), "{n}");
    }
}

#[test]
fn a_policy_naming_an_unknown_profile_is_refused_everywhere() {
    require_root();
    let (ns, dir) = (NetNs::new("maskbad"), TempDir::new("maskbad"));
    let _server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--json-response"],
    );
    let good = dir.path().join("good.cedar");
    let bad = dir.path().join("bad.cedar");
    std::fs::write(&good, policy("strict")).unwrap();
    std::fs::write(&bad, policy("stirct")).unwrap();
    let names = |text: &str| text.contains("strict-records") && text.contains("\"stirct\"");
    let check_config = |agent: &Agent| {
        let out = run_in(
            None,
            &bin("mcp-interceptor"),
            &["check-config".into(), agent.config.display().to_string()],
            Duration::from_secs(30),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let strict = |agent: &Agent| {
        let v = call(
            agent.netns(),
            URL,
            "lookup_customer_structured",
            json!({"id": "c-2"}),
        )
        .json();
        v["result"]["structuredContent"]["name"].clone()
    };

    let mut agent = Agent::start(&ns, dir.path(), "", &tables(&good));
    let (ok, text) = check_config(&agent);
    assert!(ok, "{text}");
    assert_eq!(strict(&agent), "[REDACTED]");

    // SIGHUP to a config whose policy misspells the profile: refused, the
    // running set stays (the call is still masked strictly); check-config
    // refuses the same file.
    let line = agent.reload_refused(&ns, "", &tables(&bad));
    assert!(names(&line), "{line}");
    assert_eq!(strict(&agent), "[REDACTED]");
    let (ok, text) = check_config(&agent);
    assert!(!ok && names(&text), "{text}");

    // The running config's policy file changes to the misspelling: the
    // poll refuses it too, and the running set still decides.
    agent.reload(&ns, "", &tables(&good));
    std::fs::write(&good, policy("stirct")).unwrap();
    let refused = wait_for(
        "the changed policy file to be refused",
        Duration::from_secs(10),
        || {
            agent
                .log()
                .lines()
                .find(|l| l.contains("policy files changed but do not load"))
                .map(str::to_owned)
        },
    );
    assert!(names(&refused), "{refused}");
    assert_eq!(strict(&agent), "[REDACTED]");

    // A start with it: refused.
    agent.stop(15);
    let out = agent.start_refused(&ns, "", &tables(&bad));
    assert!(names(&out), "{out}");
}
