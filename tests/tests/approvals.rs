//! Human approval and just-in-time grants through the steered port, with
//! real OIDC identities: a held call released on approve, refused on deny
//! and on time-out (kept alive meanwhile); retry mode single use and bound
//! to the arguments, 2-of-N, self-approval refused; grants that let calls
//! through until their TTL; pending approvals and grants that survive a
//! restart while held calls do not; the webhook; and every step an audit
//! row naming the approver (DuckDB over the Parquet).

use std::{
    io::{Read, Write},
    net::TcpListener,
    os::fd::AsFd,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_interceptor_tests::{
    auditq, bin,
    http::{RawResponse, initialize},
    proc::run_in,
    require_root, wait_for,
    world::{
        ADMIN, URL, World, admin_api, admin_cli, approval_id, messages, now, post_session, token,
    },
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("echo")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "echo" };

// Held until one on-call engineer approves.
@id("add-needs-oncall")
@approval("oncall")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "add" };

// Refused with an approval id; two approvers from oncall or security.
@id("lookup-needs-two")
@approval("oncall, security")
@approval_quorum("2")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "lookup_customer" };

// Queries only under a just-in-time grant that covers them.
@id("query-under-grant")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "query" && !context.grants.isEmpty() };
"#;

/// A token for the admin API's own audience (`admin.audiences`' default):
/// MCP-audience tokens are refused there.
fn admin_token(w: &World, sub: &str, groups: &[&str]) -> String {
    w.issuer.mint(
        json!({"iss": w.issuer.url, "aud": "mcp-interceptor-admin", "sub": sub,
               "groups": groups, "iat": now(), "exp": now() + 600}),
        Value::Null,
        "key",
    )
}
const HOOK: &str = "127.0.0.1:9510";

fn sections(dir: &Path, hold_timeout: u64) -> String {
    let policy = dir.join("approvals.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    format!(
        "[policy]\nfiles = [\"{}\"]\n\
         [approvals]\nhold_timeout_seconds = {hold_timeout}\nkeepalive_seconds = 1\n\
         grant_groups = [\"security\"]\napprove_url = \"http://{ADMIN}/v1/approvals\"\n\
         [approvals.webhook]\nurl = \"http://{HOOK}/hook\"\n\
         [admin]\nsocket = \"{}\"\nlisten = \"{ADMIN}\"\n\
         [[admin.local_users]]\nuser = \"root\"\nsubject = \"bob\"\ngroups = [\"oncall\", \"security\"]\n",
        policy.display(),
        dir.join("admin.sock").display()
    )
}

/// `mcp-interceptor approvals|grants ...` on the admin socket, as root
/// (mapped to bob, in oncall and security).
fn cli(w: &World, args: &[&str]) -> (bool, String) {
    admin_cli(w.dir.path(), args)
}

fn cli_json(w: &World, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, text) = cli(w, &a);
    assert!(ok, "{args:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The admin listener with a bearer token (from inside the namespace).
fn admin(w: &World, method: &str, path: &str, body: Option<Value>, token: &str) -> RawResponse {
    admin_api(&w.ns, method, path, body, token)
}

/// An MCP session opened with raw requests, so a test sees every byte of
/// a held answer.
struct Session {
    token: String,
    sid: String,
}

impl Session {
    fn open(w: &World, token: &str) -> Self {
        let r = Self::post(w, token, None, initialize(1));
        let sid = r
            .head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no session id: {}", r.head));
        let s = Self {
            token: token.into(),
            sid,
        };
        Self::post(
            w,
            token,
            Some(&s.sid),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        s
    }

    fn post(w: &World, token: &str, sid: Option<&str>, body: Value) -> RawResponse {
        post_session(&w.ns, token, sid, &body, Duration::from_secs(20))
    }

    /// tools/call; returns the raw answer and the JSON-RPC message for `id`.
    fn call(
        &self,
        w: &World,
        id: i64,
        tool: &str,
        args: Value,
        progress: bool,
    ) -> (RawResponse, Value) {
        let mut params = json!({"name": tool, "arguments": args});
        if progress {
            params["_meta"] = json!({"progressToken": format!("p{id}")});
        }
        let r = Self::post(
            w,
            &self.token,
            Some(&self.sid),
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
        );
        let msg = messages(&r)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {}", String::from_utf8_lossy(&r.body)));
        (r, msg)
    }
}

/// Waits for `n` pending approvals and returns them.
fn pending(w: &World, n: usize) -> Vec<Value> {
    wait_for("pending approvals", Duration::from_secs(15), || {
        let v = cli_json(w, &["approvals", "list"]);
        let items = v["approvals"].as_array().cloned().unwrap_or_default();
        (items.len() == n).then_some(items)
    })
}

/// Every POST body a webhook receives, from a listener in the namespace.
fn webhook_sink(w: &World) -> Arc<Mutex<Vec<Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, g) = (w.ns.path(), got.clone());
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(HOOK).unwrap();
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text[..i]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break Some(buf[i + 4..i + 4 + len].to_vec());
                    }
                }
            };
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Some(b) = body.and_then(|b| serde_json::from_slice(&b).ok()) {
                g.lock().unwrap().push(b);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    got
}

/// The auditor's view: `approvals.sql` over the whole audit, with DuckDB.
fn approval_rows(w: &mut World) -> Vec<Value> {
    w.agent.stop(15);
    auditq::records(
        &w.agent.audit_dir(),
        "approvals",
        &[
            ("from", "2000-01-01 00:00:00"),
            ("to", "2100-01-01 00:00:00"),
        ],
    )
    .into_iter()
    .map(Value::Object)
    .collect()
}

fn kinds_of(rows: &[Value], id: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r["approval_id"] == id)
        .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn held_calls_are_released_on_approve_and_refused_on_deny_and_timeout() {
    require_root();
    let mut w = World::with("apphold", "", |dir| sections(dir, 4));
    let hook = webhook_sink(&w);
    let alice = token(&w.issuer, "alice", &["dev", "oncall"]);
    let carol = admin_token(&w, "carol", &["oncall"]);
    let alice_admin = admin_token(&w, "alice", &["dev", "oncall"]);
    let s = Session::open(&w, &alice);

    // Approve: the call waits, kept alive (SSE comments and progress
    // notifications), and is released with the server's answer.
    let (raw, msg, approved_id) = std::thread::scope(|scope| {
        let held = scope.spawn(|| s.call(&w, 10, "add", json!({"a": 2, "b": 3}), true));
        let p = pending(&w, 1);
        let id = p[0]["id"].as_str().unwrap().to_string();
        assert_eq!(p[0]["subject"], "alice");
        assert_eq!(p[0]["target"], "add");
        assert_eq!(p[0]["arguments"], json!({"a": 2, "b": 3}));
        // The caller is in oncall too, and still may not approve its own call.
        let own = admin(
            &w,
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            Some(json!({"reason": "mine"})),
            &alice_admin,
        );
        assert_eq!(own.status, 403, "{}", String::from_utf8_lossy(&own.body));
        std::thread::sleep(Duration::from_millis(2500));
        let (ok, text) = cli(
            &w,
            &[
                "approvals",
                "approve",
                &id,
                "--reason",
                "INC-42 change window",
            ],
        );
        assert!(ok, "{text}");
        let (raw, msg) = held.join().unwrap();
        (raw, msg, id)
    });
    assert_eq!(msg["result"]["content"][0]["text"], "5", "{msg}");
    let body = String::from_utf8_lossy(&raw.body);
    assert!(
        raw.head.to_ascii_lowercase().contains("text/event-stream"),
        "{}",
        raw.head
    );
    assert!(
        body.contains(&format!(": waiting for approval {approved_id} by oncall")),
        "{body}"
    );
    let progress: Vec<Value> = messages(&raw)
        .into_iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(progress.len() >= 2, "progress while held: {body}");
    assert_eq!(progress[0]["params"]["progressToken"], "p10");

    // Deny, through the admin listener with an OIDC approver token.
    let denied = std::thread::scope(|scope| {
        let held = scope.spawn(|| s.call(&w, 11, "add", json!({"a": 1, "b": 1}), false));
        let id = pending(&w, 1)[0]["id"].as_str().unwrap().to_string();
        let r = admin(
            &w,
            "POST",
            &format!("/v1/approvals/{id}/deny"),
            Some(json!({"reason": "not in the change window"})),
            &carol,
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        held.join().unwrap().1
    });
    assert_eq!(denied["error"]["code"], -32002, "{denied}");
    let m = denied["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("denied by carol: not in the change window"),
        "{m}"
    );

    // Nobody decides: refused after hold_timeout_seconds (4 s).
    let t = std::time::Instant::now();
    let (_, expired) = s.call(&w, 12, "add", json!({"a": 5, "b": 5}), false);
    assert_eq!(expired["error"]["code"], -32003, "{expired}");
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());

    // The webhook heard of all three.
    let heard = wait_for("webhook", Duration::from_secs(5), || {
        let h = hook.lock().unwrap().clone();
        (h.len() >= 3).then_some(h)
    });
    assert_eq!(heard[0]["type"], "approval_requested");
    assert_eq!(heard[0]["approval"]["id"], approved_id.as_str());
    assert_eq!(
        heard[0]["approve"],
        format!("http://{ADMIN}/v1/approvals/{approved_id}")
    );

    // The audit has each step, naming the approver.
    let rows = approval_rows(&mut w);
    let kinds = kinds_of(&rows, &approved_id);
    for k in [
        "approval_requested",
        "approval_refused",
        "approval_vote_approve",
        "approval_approved",
        "approval_used",
        "exchange",
    ] {
        assert!(kinds.contains(&k.to_string()), "{k} missing: {kinds:?}");
    }
    let released = rows
        .iter()
        .find(|r| r["approval_id"] == approved_id.as_str() && r["kind"] == "exchange")
        .unwrap();
    assert_eq!(released["approvers"], json!(["bob"]));
    assert_eq!(released["subject"], "alice");
    assert_eq!(released["decision"], "approval");
    // Who asked is a subject of an issuer, on the approval's own rows too.
    let requested = rows
        .iter()
        .find(|r| r["approval_id"] == approved_id.as_str() && r["kind"] == "approval_requested")
        .unwrap();
    assert_eq!(requested["subject"], "alice");
    assert_eq!(requested["issuer"], w.issuer.url.as_str(), "{requested}");
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "approval_vote_deny" && r["approvers"] == json!(["carol"])),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["kind"] == "approval_expired"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["kind"] == "denied"
            && r["tool_name"] == "add"
            && r["approvers"] == json!(["carol"])),
        "{rows:?}"
    );
}

/// Runs the rmcp client for `tool`; Ok(text) or Err(stderr).
fn client_call(w: &World, token: &str, tool: &str, args: Value) -> Result<String, String> {
    let argv: Vec<String> = [
        "client",
        "--url",
        URL,
        "--tool",
        tool,
        "--args",
        &args.to_string(),
        "--timeout-secs",
        "15",
        "--bearer",
        token,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_in(
        Some(w.ns.name()),
        &bin("mcp-peer"),
        &argv,
        Duration::from_secs(30),
    );
    if out.status.success() {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn retry_mode_is_single_use_bound_to_arguments_and_needs_two_approvers() {
    require_root();
    let mut w = World::with("appretry", "", |dir| sections(dir, 60));
    let alice = token(&w.issuer, "alice", &["dev"]);
    let carol = admin_token(&w, "carol", &["security"]);
    let dave = admin_token(&w, "dave", &["dev"]);
    let args = json!({"id": "7"});

    let first = client_call(&w, &alice, "lookup_customer", args.clone()).unwrap_err();
    assert!(
        first.contains("-32003") && first.contains("approval required"),
        "{first}"
    );
    let id = approval_id(&first);
    // Asking again before a decision names the same request.
    let again = client_call(&w, &alice, "lookup_customer", args.clone()).unwrap_err();
    assert_eq!(approval_id(&again), id);

    // Not an approver group member.
    let r = admin(
        &w,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"reason": "ok"})),
        &dave,
    );
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    // No token at all.
    let r = admin(&w, "GET", "/v1/approvals", None, "not-a-jwt");
    assert_eq!(r.status, 401);

    // 2-of-N: bob (local socket) is one, still pending.
    let (ok, text) = cli(
        &w,
        &["approvals", "approve", &id, "--reason", "looks right"],
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(&w, &["approvals", "approve", &id, "--reason", "twice"]);
    assert!(!ok && text.contains("already voted"), "{text}");
    let still = client_call(&w, &alice, "lookup_customer", args.clone()).unwrap_err();
    assert_eq!(approval_id(&still), id, "one approval of two is not enough");
    // carol (admin listener, OIDC) is the second.
    let r = admin(
        &w,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"reason": "ticket CS-9"})),
        &carol,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "approved");

    // Changed arguments are another call: a new approval.
    let other = client_call(&w, &alice, "lookup_customer", json!({"id": "8"})).unwrap_err();
    assert_ne!(approval_id(&other), id);
    // The identical call passes once.
    let text = client_call(&w, &alice, "lookup_customer", args.clone()).unwrap();
    assert!(
        text.contains("\"id\":\"7\"") || text.contains("7"),
        "{text}"
    );
    let after = client_call(&w, &alice, "lookup_customer", args.clone()).unwrap_err();
    assert_ne!(approval_id(&after), id, "single use");

    let shown = cli_json(&w, &["approvals", "show", &id]);
    assert_eq!(shown["status"], "used");
    let voters: Vec<&str> = shown["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["approver"].as_str().unwrap())
        .collect();
    assert_eq!(voters, ["bob", "carol"]);

    let rows = approval_rows(&mut w);
    let kinds = kinds_of(&rows, &id);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "approval_vote_approve")
            .count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"approval_used".to_string()), "{kinds:?}");
    let released = rows
        .iter()
        .find(|r| r["approval_id"] == id.as_str() && r["kind"] == "exchange")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(released["approvers"], json!(["bob", "carol"]));
}

/// `grants add` for alice.
fn grant_args<'a>(tool: &'a str, ttl: &'a str) -> [&'a str; 10] {
    [
        "grants",
        "add",
        "--subject",
        "alice",
        "--tool",
        tool,
        "--ttl",
        ttl,
        "--reason",
        "INC-123",
    ]
}

#[test]
fn grants_expire_by_themselves_and_state_survives_a_restart() {
    require_root();
    let mut w = World::with("appgrant", "", |dir| sections(dir, 60));
    let alice = token(&w.issuer, "alice", &["dev"]);
    let q = json!({"sql": "select 1"});

    let denied = client_call(&w, &alice, "query", q.clone()).unwrap_err();
    assert!(denied.contains("-32002"), "no grant, no query: {denied}");
    // Only members of grant_groups may grant.
    let carol = admin_token(&w, "carol", &["oncall"]);
    let r = admin(
        &w,
        "POST",
        "/v1/grants",
        Some(json!({"subject": "alice", "tool": "q*", "ttl_seconds": 60, "reason": "x"})),
        &carol,
    );
    assert_eq!(r.status, 403);
    let (ok, text) = cli(&w, &grant_args("q*", "9h"));
    assert!(!ok && text.contains("max_grant_ttl_seconds"), "{text}");

    // A short grant: works, then stops by itself.
    let short = cli_json(&w, &grant_args("q*", "4s"));
    assert_eq!(short["granted_by"], "bob");
    assert_eq!(
        client_call(&w, &alice, "query", q.clone()).unwrap(),
        "ran: select 1"
    );
    std::thread::sleep(Duration::from_secs(5));
    let late = client_call(&w, &alice, "query", q.clone()).unwrap_err();
    assert!(late.contains("-32002"), "{late}");

    // A long grant, a pending retry-mode approval and a held call; then
    // the agent dies (SIGKILL) and restarts.
    let long = cli_json(&w, &grant_args("query", "30m"));
    let retry = client_call(&w, &alice, "lookup_customer", json!({"id": "9"})).unwrap_err();
    let retry_id = approval_id(&retry);
    let s = Session::open(&w, &alice);
    let pid = w.agent.proc().pid();
    let held_id = std::thread::scope(|scope| {
        let held = scope.spawn(|| {
            // The connection dies with the agent: no answer, never a result.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s.call(&w, 20, "add", json!({"a": 40, "b": 2}), false)
            }));
            r.ok().map(|(_, m)| m)
        });
        let p = wait_for("held approval", Duration::from_secs(15), || {
            let v = cli_json(&w, &["approvals", "list"]);
            v["approvals"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["target"] == "add")
                .map(|a| a["id"].as_str().unwrap().to_string())
        });
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let answer = held.join().unwrap();
        assert!(
            answer.as_ref().is_none_or(|m| m.get("result").is_none()),
            "a held call never gets a result when the agent dies: {answer:?}"
        );
        p
    });
    w.agent.stop(9);
    w.agent.restart();

    let held = cli_json(&w, &["approvals", "show", &held_id]);
    assert_eq!(held["status"], "interrupted", "{held}");
    let (ok, text) = cli(
        &w,
        &["approvals", "approve", &held_id, "--reason", "too late"],
    );
    assert!(!ok && text.contains("interrupted"), "{text}");
    assert_eq!(
        cli_json(&w, &["approvals", "show", &retry_id])["status"],
        "pending"
    );
    let grants = cli_json(&w, &["grants", "list"]);
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");
    assert_eq!(grants[0]["id"], long["id"]);
    assert_eq!(
        client_call(&w, &alice, "query", q.clone()).unwrap(),
        "ran: select 1"
    );

    // Revoked: stops at once.
    let (ok, text) = cli(
        &w,
        &[
            "grants",
            "revoke",
            long["id"].as_str().unwrap(),
            "--reason",
            "incident closed",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        client_call(&w, &alice, "query", q)
            .unwrap_err()
            .contains("-32002")
    );

    let rows = approval_rows(&mut w);
    let short_id = short["id"].as_str().unwrap();
    assert_eq!(kinds_of(&rows, short_id), ["grant_added", "grant_expired"]);
    let long_kinds = kinds_of(&rows, long["id"].as_str().unwrap());
    assert_eq!(long_kinds, ["grant_added", "grant_revoked"]);
    assert!(rows.iter().any(|r| r["approval_id"] == long["id"]
        && r["kind"] == "grant_revoked"
        && r["approvers"] == json!(["bob"])));
    assert!(kinds_of(&rows, &held_id).contains(&"approval_interrupted".to_string()));
    // The held call never reached the server.
    assert!(
        !rows
            .iter()
            .any(|r| r["approval_id"] == held_id.as_str() && r["kind"] == "exchange"),
        "{rows:?}"
    );
}
