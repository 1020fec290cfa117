//! MCP 2026-07-28 end to end: the official Python SDK's server
//! (tests/peers/mcp2026_server.py) and client (tests/peers/mcp2026_client.py)
//! through the agent in eBPF mode, with tools that elicit, sample and run
//! as tasks, one that needs an approval and one whose definition changes,
//! and a 2025-11-25 client on the same port in the same test:
//!
//! - an elicitation the policy does not permit for the caller stops the
//!   call, and the client sees the agent's error; a permitted one round
//!   trips, and both halves (and the retry) are audited and linked;
//! - a sampling request round trips;
//! - a task's result reaches its caller masked, and another caller's
//!   `tasks/get` of it is refused;
//! - an approval completes in band after `approvals approve`;
//! - a tool change announced on `subscriptions/listen` is caught by pinning;
//! - a 2025-11-25 client (initialize) lists and calls tools as before.

use std::{path::Path, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    oidc::Issuer,
    proc::run_in,
    require_root,
    s3::venv_bin,
    sdk,
    world::{PORT, admin_cli, sections, token},
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"ping",
  Mcp::Action::"server/discover", Mcp::Action::"tools/list",
  Mcp::Action::"subscriptions/listen"], resource);

@id("calls")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name != "deploy" && resource.name != "report" };

@id("vault-report")
@mask("vault")
permit (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"report");

@id("tasks")
permit (principal, action in [Mcp::Action::"tasks/get", Mcp::Action::"tasks/update",
  Mcp::Action::"tasks/cancel"], resource);

@id("deploy-needs-oncall")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"deploy");

@id("pin-askers")
permit (principal in Mcp::Group::"pin-ok", action == Mcp::Action::"elicitation/create", resource);

@id("sampling")
permit (principal, action == Mcp::Action::"sampling/createMessage", resource);
"#;

/// `vault` masks the secret of the server's `report` task.
const PROFILES: &str = "[mask.profiles.vault]\n\
    [[mask.profiles.vault.custom]]\nname = \"vault\"\nregex = \"VAULT-[0-9]{6}\"\n";

const SECRET: &str = "VAULT-424242";

struct Setup {
    agent: Agent,
    server: Proc,
    issuer: Issuer,
    ns: NetNs,
    dir: TempDir,
}

/// The issuer, the SDK server on 127.0.0.1:8080 and the agent: tokens
/// required, the policy above, tool pins that block a changed tool, and
/// root on the admin socket as carol, in oncall.
fn setup(tag: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let server = sdk::server(&ns, "mcp2026_server.py", &[], dir.path());
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        &format!("{PORT}{PROFILES}"),
        "",
        &config(dir.path(), &issuer),
        Vec::new(),
    );
    Setup {
        agent,
        server,
        issuer,
        ns,
        dir,
    }
}

fn config(dir: &Path, issuer: &Issuer) -> String {
    let policy = dir.join("mcp2026.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let cred = dir.join("upstream-credential");
    std::fs::write(&cred, "Bearer upstream-secret\n").unwrap();
    format!(
        "{}[policy]\nfiles = [\"{}\"]\npins_file = \"{}\"\non_tool_change = \"block\"\n\
         [admin]\nsocket = \"{}\"\n\
         [[admin.local_users]]\nuser = \"root\"\nsubject = \"carol\"\ngroups = [\"oncall\"]\n",
        sections(issuer, &cred, ""),
        policy.display(),
        dir.join("pins.json").display(),
        dir.join("admin.sock").display()
    )
}

/// The client's arguments for one step as `bearer`.
fn client_args(bearer: &str, step: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--url".to_string(),
        "http://127.0.0.1:8080/mcp".into(),
        "--bearer".into(),
        bearer.into(),
    ];
    args.extend(step.iter().map(|s| s.to_string()));
    sdk::script_args("mcp2026_client.py", &args)
}

/// One step of the SDK client, run to its end: its JSON line.
fn step(s: &Setup, bearer: &str, step: &[&str]) -> Value {
    let out = run_in(
        Some(s.ns.name()),
        &venv_bin("python"),
        &client_args(bearer, step),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{step:?}: {e}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.agent.log()
        )
    })
}

/// The rows of the events file whose `key` is `value`.
fn rows_with(events: &[Value], key: &str, value: &str) -> Vec<Value> {
    events.iter().filter(|e| e[key] == value).cloned().collect()
}

#[test]
fn the_python_sdk_speaks_2026_07_28_through_the_agent_beside_a_2025_11_25_client() {
    require_root();
    let mut s = setup("mcp2026");
    let alice = token(&s.issuer, "alice", &["dev", "pin-ok"]);
    let bob = token(&s.issuer, "bob", &["dev"]);
    elicitation_refused_and_permitted(&s, &alice, &bob);
    let out = step(&s, &alice, &["sample", "--text", "drafted"]);
    assert_eq!(out["text"], "summary: drafted", "{out}");
    tasks_belong_to_their_caller(&s, &alice, &bob);
    approval_in_band(&mut s, &alice);
    listen_change_is_pinned(&s, &alice);
    // A 2025-11-25 client, on the same port, meanwhile.
    let out = step(&s, &bob, &["legacy"]);
    assert_eq!(out["text"], "echo: old", "{out}");
    assert!(
        out["tools"].as_array().unwrap().contains(&json!("echo")),
        "{out}"
    );
    let events = s.agent.events();
    let old = events
        .iter()
        .find(|e| e["method"] == "initialize" && e["kind"] == "exchange")
        .unwrap_or_else(|| panic!("no initialize row: {events:#?}"));
    assert_eq!(old["protocol_version"], "2025-11-25", "{old}");
    let new = rows_with(&events, "client_name", "mcp2026-client");
    assert!(
        new.iter().any(|e| e["protocol_version"] == "2026-07-28"),
        "stateless rows name the client and its version: {new:#?}"
    );
}

/// bob may not be asked for a PIN: his call stops, he hears why, the server
/// never gets an answer. alice may: her call round trips, and the first
/// call, the elicitation and the retry are linked in the audit.
fn elicitation_refused_and_permitted(s: &Setup, alice: &str, bob: &str) {
    let out = step(s, bob, &["elicit", "--vault", "bobs", "--pin", "1111"]);
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(
        err.contains("elicitation/create") && err.contains("pin"),
        "{err}"
    );
    let out = step(s, alice, &["elicit", "--vault", "alices", "--pin", "4321"]);
    assert_eq!(out["text"], "unlocked alices", "{out}");
    let got = s.server.stdout();
    assert!(got.contains("got pin 4321 for alices"), "{got}");
    assert!(!got.contains("for bobs"), "{got}");
    let events = s.agent.events();
    let refused = events
        .iter()
        .find(|e| e["method"] == "elicitation/create" && e["kind"] == "denied")
        .unwrap_or_else(|| panic!("no denied elicitation: {events:#?}"));
    assert_eq!(refused["direction"], "server_to_client", "{refused}");
    let asked = events
        .iter()
        .find(|e| e["method"] == "elicitation/create" && e["kind"] == "exchange")
        .unwrap_or_else(|| panic!("no permitted elicitation: {events:#?}"));
    let first = asked["follows"]
        .as_str()
        .unwrap_or_else(|| panic!("{asked}"));
    let rounds: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "unlock" && e["kind"] == "exchange")
        .filter(|e| e["call_id"] == first || e["follows"] == first)
        .collect();
    assert_eq!(rounds.len(), 2, "the call and its retry: {rounds:#?}");
    assert!(
        rounds
            .iter()
            .any(|e| e["input_responses"].is_object() || e["params"]["inputResponses"].is_object()),
        "the retry's answers are recorded: {rounds:#?}"
    );
}

/// alice's `report` runs as a task: she gets its result masked; bob's
/// `tasks/get` of her handle is refused and never reaches the server.
fn tasks_belong_to_their_caller(s: &Setup, alice: &str, bob: &str) {
    let out = step(s, alice, &["task", "--tool", "report"]);
    let text = out["text"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(
        text.starts_with("quarterly report") && !text.contains(SECRET),
        "{out}"
    );
    let id = out["task_id"].as_str().unwrap().to_string();
    let gets = |p: &Proc| p.stdout().matches("got tasks/get").count();
    let before = gets(&s.server);
    let out = step(s, bob, &["taskget", "--task-id", &id]);
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(err.contains("another") || err.contains("owner"), "{err}");
    assert_eq!(
        gets(&s.server),
        before,
        "bob's tasks/get never reached the server"
    );
    let out = step(s, alice, &["taskget", "--task-id", &id]);
    assert_eq!(out["status"], "completed", "{out}");
    let events = s.agent.events();
    assert!(
        events.iter().any(|e| e["method"] == "tasks/get"
            && e["kind"] == "denied"
            && e["decided_by"] == "identity"
            && e["error"]["data"]["reason"] == "session_owner"),
        "bob's refusal is a row: {events:#?}"
    );
    assert!(
        events.iter().any(|e| e["method"] == "tasks/get"
            && e["kind"] == "exchange"
            && e["target"] == "report"),
        "alice's tasks/get is a row naming the tool: {events:#?}"
    );
}

/// alice's `deploy` needs oncall: the SDK client is asked in band (a URL
/// elicitation naming the approval), carol approves, the call completes.
fn approval_in_band(s: &mut Setup, alice: &str) {
    let go = s.dir.path().join("go");
    let args = client_args(
        alice,
        &[
            "approve",
            "--tool",
            "deploy",
            "--args",
            r#"{"env":"prod"}"#,
            "--go",
            &go.display().to_string(),
        ],
    );
    let mut client = Proc::spawn(
        "mcp2026-approve",
        Some(s.ns.name()),
        &venv_bin("python"),
        &args,
        s.dir.path(),
    );
    let out = client.wait_for_output("elicit ", Duration::from_secs(30));
    let ask: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("elicit "))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!(ask["mode"], "url", "{ask}");
    let url = ask["url"].as_str().unwrap();
    let id = url.rsplit(':').next().unwrap().to_string();
    assert!(id.starts_with("apr-"), "{url}");
    assert!(!s.server.stdout().contains("deployed"), "nothing ran yet");
    let (ok, text) = admin_cli(
        s.dir.path(),
        &["approvals", "approve", &id, "--reason", "ok"],
    );
    assert!(ok, "{text}");
    std::fs::write(&go, "").unwrap();
    let out = client.wait_for_output("\"text\"", Duration::from_secs(30));
    assert!(out.contains("deployed prod"), "{out}");
}

/// The server changes fetch_report and says so on the listen stream; the
/// next list no longer offers it as it was pinned, and a call is refused.
fn listen_change_is_pinned(s: &Setup, alice: &str) {
    let out = step(s, alice, &["listen"]);
    assert_eq!(out["announced"], true, "{out}");
    assert!(out["before"]["fetch_report"].is_string(), "{out}");
    let after = out["after"]["fetch_report"].as_str().unwrap_or_default();
    assert!(
        !after.contains("evil.example"),
        "the changed tool is not offered: {out}"
    );
    let call = out["call_after"].as_str().unwrap_or_default();
    assert!(call.contains("pinned"), "{out}");
    let events = s.agent.events();
    assert!(
        events
            .iter()
            .any(|e| e["method"] == "notifications/tools/list_changed"),
        "the announcement is recorded: {events:#?}"
    );
}
