//! MCP 2026-07-28 tasks extension (`io.modelcontextprotocol/tasks`): a
//! server answers a tool call with a task handle, and the client polls
//! `tasks/get`, feeds `tasks/update` and stops `tasks/cancel`. Each of
//! those is still the tool call: only the caller who made it may use the
//! handle (another caller's request, or a handle the agent never saw, is
//! refused and never reaches the server); a completed result is masked
//! with the call's `@mask` profile and audited as that tool's; an
//! `input_required` task's elicitation is judged like any elicitation;
//! and `tasks/update` is judged by policy on the call's tool. The server
//! is the official Python SDK (tests/peers/tasks_server.py), the client
//! speaks the stateless form with two OIDC identities.

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    auditq::records,
    http::RawResponse,
    oidc::Issuer,
    require_root, sdk,
    world::Stateless,
    world::{PORT, bearer, sections, token},
};
use serde_json::{Value, json};

/// `vault` masks what the default profile leaves: the server's secret.
const PROFILES: &str = "[mask.profiles.vault]\n\
    [[mask.profiles.vault.custom]]\nname = \"vault\"\nregex = \"VAULT-[0-9]{6}\"\n";

const BASE: &str = r#"
@id("calls")
permit (principal, action == Mcp::Action::"tools/call", resource);

@id("vault-report")
@mask("vault")
permit (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"report");

@id("tasks")
permit (principal, action in [Mcp::Action::"tasks/get", Mcp::Action::"tasks/update",
  Mcp::Action::"tasks/cancel"], resource);
"#;

const NO_ELICITATION: &str = r#"
@id("no-elicitation")
forbid (principal, action == Mcp::Action::"elicitation/create", resource);
"#;

const NO_APPROVE_UPDATE: &str = r#"
@id("elicitation-ok")
permit (principal, action == Mcp::Action::"elicitation/create", resource);

@id("no-approve-update")
forbid (principal, action == Mcp::Action::"tasks/update", resource == Mcp::Tool::"approve");
"#;

/// The secret the server's `report` task completes with.
const SECRET: &str = "VAULT-424242";

struct Setup {
    agent: Agent,
    server: Proc,
    alice: String,
    bob: String,
    ns: NetNs,
    _issuer: Issuer,
    _dir: TempDir,
}

/// The SDK server on 127.0.0.1:8080 behind an agent that requires tokens
/// of a test issuer and applies `policy`.
fn setup(tag: &str, policy: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let server = sdk::server(&ns, "tasks_server.py", &[], dir.path());
    let file = dir.path().join("tasks.cedar");
    std::fs::write(&file, policy).unwrap();
    let cred = dir.path().join("upstream-credential");
    std::fs::write(&cred, "Bearer upstream-secret\n").unwrap();
    let tables = format!(
        "{PORT}{PROFILES}[policy]\nfiles = [\"{}\"]\n",
        file.display()
    );
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        &tables,
        "",
        &sections(&issuer, &cred, ""),
        Vec::new(),
    );
    Setup {
        agent,
        server,
        alice: token(&issuer, "alice", &["dev"]),
        bob: token(&issuer, "bob", &["dev"]),
        ns,
        _issuer: issuer,
        _dir: dir,
    }
}

/// A 2026-07-28 stateless request by `tok`, with the tasks extension in
/// its per-request capabilities; `name` is its `Mcp-Name`.
fn send(s: &Setup, tok: &str, id: i64, method: &str, name: &str, params: Value) -> RawResponse {
    let request = Stateless {
        method,
        name: Some(name),
        caps: json!({"elicitation": {}, "extensions": {"io.modelcontextprotocol/tasks": {}}}),
        headers: vec![bearer(tok)],
    };
    request.send(&s.ns, id, params)
}

/// `tok` calls `tool` (id 1); the task id of the handle it gets.
fn start_task(s: &Setup, tok: &str, tool: &str) -> String {
    let r = send(
        s,
        tok,
        1,
        "tools/call",
        tool,
        json!({"name": tool, "arguments": {}}),
    );
    let v = r.json();
    assert_eq!(v["result"]["resultType"], "task", "{v}");
    v["result"]["taskId"]
        .as_str()
        .expect("a task id")
        .to_owned()
}

fn get(s: &Setup, tok: &str, id: i64, task: &str) -> RawResponse {
    send(s, tok, id, "tasks/get", task, json!({"taskId": task}))
}

/// How many `method` requests for `task` reached the server.
fn reached(s: &Setup, method: &str, task: &str) -> usize {
    s.server
        .stdout()
        .lines()
        .filter(|l| l.starts_with(&format!("got {method} ")) && l.contains(task))
        .count()
}

/// The event of request `id` of `method` (`kind`), once it exists.
fn row(agent: &Agent, method: &str, id: i64, kind: &str) -> Value {
    let found = |ev: &[Value]| {
        ev.iter()
            .find(|e| e["method"] == method && e["jsonrpc_id"] == id && e["kind"] == kind)
            .cloned()
    };
    let events = agent.wait_events(&format!("the {kind} {method} row of id {id}"), |ev| {
        found(ev).is_some()
    });
    found(&events).unwrap()
}

#[test]
fn a_task_is_its_callers_and_its_result_is_masked_as_the_tools() {
    require_root();
    let mut s = setup("tasks-own", BASE);
    let task = start_task(&s, &s.alice, "report");

    // Bob cannot poll, feed or cancel alice's task: refused, never sent.
    let r = get(&s, &s.bob, 2, &task);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        (r.code(), r.reason().as_str()),
        (-32001, "session_owner"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
    let update = json!({"taskId": task, "inputResponses": {}});
    let r = send(&s, &s.bob, 3, "tasks/update", &task, update);
    assert_eq!(r.reason(), "session_owner");
    let r = send(
        &s,
        &s.bob,
        4,
        "tasks/cancel",
        &task,
        json!({"taskId": task}),
    );
    assert_eq!(r.reason(), "session_owner");
    let denied = row(&s.agent, "tasks/get", 2, "denied");
    assert_eq!(denied["caller"]["subject"], "bob", "{denied}");
    assert_eq!(denied["decided_by"], "identity");
    assert_eq!(denied["error"]["data"]["reason"], "session_owner");

    // A handle no server handed out here: refused too (fail closed).
    let r = get(&s, &s.alice, 5, "made-up-task");
    assert_eq!((r.code(), r.reason().as_str()), (-32000, "unknown_session"));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown to the agent")
    );
    row(&s.agent, "tasks/get", 5, "denied");
    assert_eq!(reached(&s, "tasks/get", "made-up-task"), 0);

    // A poll whose routing header names another task: refused as the
    // stateless form refuses any header that disagrees with the body.
    let r = send(
        &s,
        &s.alice,
        7,
        "tasks/get",
        "other-task",
        json!({"taskId": task}),
    );
    assert_eq!((r.status, r.code()), (400, -32020), "{r:?}");

    // Alice polls her own: the completed result, masked with the call's
    // profile, her taskId and requestState untouched.
    let r = get(&s, &s.alice, 6, &task);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let v = r.json();
    assert_eq!(v["result"]["status"], "completed", "{text}");
    assert_eq!(v["result"]["taskId"], task.as_str());
    assert_eq!(v["result"]["requestState"], format!("state-{task}"));
    assert!(!text.contains(SECRET), "the vault profile masks it: {text}");
    assert!(text.contains("quarterly report"), "{text}");
    assert!(s.server.stdout().contains(SECRET), "the server did send it");
    assert_eq!(reached(&s, "tasks/get", &task), 1, "only alice's poll went");
    assert_eq!(reached(&s, "tasks/update", &task), 0);
    assert_eq!(reached(&s, "tasks/cancel", &task), 0);

    // Audited as the report tool's result, under the call's decision.
    let ev = row(&s.agent, "tasks/get", 6, "exchange");
    assert_eq!(ev["target"], "report", "{ev}");
    assert_eq!(ev["caller"]["subject"], "alice");
    assert_eq!(ev["masked_with"], "vault", "{ev}");
    assert_eq!(ev["decision"]["policies"], json!(["calls", "vault-report"]));
    assert!(!ev.to_string().contains(SECRET), "{ev}");

    // The Parquet audit counts the poll among alice's report calls.
    s.agent.stop(15);
    let all = [
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    let rows = records(&s.agent.audit_dir(), "activity_by_subject", &all);
    let poll = rows
        .iter()
        .find(|r| r["subject"] == "alice" && r["method"] == "tasks/get")
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(poll["tool_name"], "report", "{poll:?}");
    // Its `forwarded` and `exchange` rows, as for the call itself.
    let call = rows
        .iter()
        .find(|r| r["subject"] == "alice" && r["method"] == "tools/call")
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(call["tool_name"], "report");
    assert_eq!(
        (&poll["allowed"], &poll["denied"]),
        (&call["allowed"], &json!(0))
    );
}

#[test]
fn an_input_required_tasks_elicitation_is_judged_like_any_elicitation() {
    require_root();
    let s = setup("tasks-elicit", &format!("{BASE}{NO_ELICITATION}"));
    let task = start_task(&s, &s.alice, "approve");
    let r = get(&s, &s.alice, 2, &task);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        (r.code(), r.reason().as_str()),
        (-32002, "policy_denied"),
        "{text}"
    );
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(
            "input request \"pin\" (elicitation/create) denied by the client's security policy"
        ),
        "{message}"
    );
    assert!(!text.contains("enter your PIN"), "{text}");
    assert!(!text.contains("inputRequests"), "{text}");
    // The server did ask: the agent, not the server, kept it away.
    assert!(s.server.stdout().contains("enter your PIN"));

    let input = s
        .agent
        .wait_events("the input request's row", |ev| {
            ev.iter().any(|e| e["method"] == "elicitation/create")
        })
        .into_iter()
        .find(|e| e["method"] == "elicitation/create")
        .unwrap();
    assert_eq!(input["kind"], "denied", "{input}");
    assert_eq!(input["decision"]["policies"], json!(["no-elicitation"]));
    assert_eq!(input["jsonrpc_id"], 2, "linked to the poll: {input}");
    let poll = row(&s.agent, "tasks/get", 2, "denied");
    assert_eq!(poll["target"], "approve", "{poll}");
    assert_eq!(poll["decided_by"], "policy");
}

#[test]
fn tasks_update_is_judged_on_the_calls_tool() {
    require_root();
    let s = setup("tasks-update", &format!("{BASE}{NO_APPROVE_UPDATE}"));
    let pin = |task: &str| {
        json!({"taskId": task, "inputResponses": {"pin": {"action": "accept",
            "content": {"pin": "2468"}}}})
    };

    // Forbidden on `approve`: refused, never sent, audited on the tool.
    let task = start_task(&s, &s.alice, "approve");
    let r = get(&s, &s.alice, 2, &task);
    let v = r.json();
    assert_eq!(v["result"]["status"], "input_required", "{v}");
    assert_eq!(
        v["result"]["inputRequests"]["pin"]["params"]["message"],
        "enter your PIN"
    );
    let r = send(&s, &s.alice, 3, "tasks/update", &task, pin(&task));
    assert_eq!(
        (r.code(), r.reason().as_str()),
        (-32002, "policy_denied"),
        "{r:?}"
    );
    assert_eq!(reached(&s, "tasks/update", &task), 0);
    let ev = row(&s.agent, "tasks/update", 3, "denied");
    assert_eq!(ev["target"], "approve", "{ev}");
    assert_eq!(ev["decision"]["policies"], json!(["no-approve-update"]));

    // The same answer to `approve_ok` goes, and the task completes.
    let ok = start_task(&s, &s.alice, "approve_ok");
    let r = send(&s, &s.alice, 4, "tasks/update", &ok, pin(&ok));
    assert_eq!(r.json()["result"]["resultType"], "complete", "{r:?}");
    assert_eq!(reached(&s, "tasks/update", &ok), 1);
    let ev = row(&s.agent, "tasks/update", 4, "exchange");
    assert_eq!(ev["target"], "approve_ok", "{ev}");
    assert_eq!(ev["decision"]["policies"], json!(["tasks"]));
    let v = get(&s, &s.alice, 5, &ok).json();
    assert_eq!(v["result"]["status"], "completed", "{v}");
    assert_eq!(
        v["result"]["result"]["content"][0]["text"],
        "approved with 2468"
    );

    // Cancelling is the owner's too, and goes.
    let r = send(
        &s,
        &s.alice,
        6,
        "tasks/cancel",
        &task,
        json!({"taskId": task}),
    );
    assert_eq!(r.json()["result"]["resultType"], "complete", "{r:?}");
    assert_eq!(reached(&s, "tasks/cancel", &task), 1);
}
