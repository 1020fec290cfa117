use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::{
    identity::{AuthMethod, Caller},
    jsonrpc::{Body, parse},
    mcp::{exchange::Origin, session::SessionInfo},
    pipeline::{Direction, EventKind, Transport},
};

fn message(v: Value) -> Message {
    match parse(&Bytes::from(v.to_string())).unwrap() {
        Body::Single(m) => m,
        Body::Batch(_) => panic!("one message"),
    }
}

fn caller(sub: &str) -> Arc<Caller> {
    Arc::new(Caller::new(
        AuthMethod::Oidc,
        sub,
        Some("https://idp.test".into()),
    ))
}

/// The pending event of `sub`'s `tools/call` of `tool`, id 7.
fn call(sub: &str, tool: &str, params_meta: Value) -> ExchangeEvent {
    let origin = Origin::test_post(Some(caller(sub)), Transport::Stateless, "\0post-1", false);
    let msg = message(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": {}, "_meta": params_meta}}));
    origin.event(
        EventKind::Exchange,
        Direction::ClientToServer,
        &msg,
        &SessionInfo::default(),
    )
}

fn handle_answer(id: &str, ttl: Value) -> Message {
    message(json!({"jsonrpc": "2.0", "id": 7, "result": {
        "resultType": "task", "taskId": id, "status": "working",
        "createdAt": "2026-07-28T00:00:00Z", "ttlSeconds": ttl}}))
}

fn principal(sub: &str) -> String {
    caller(sub).principal()
}

fn handle(owner: &str, expires: Instant) -> Handle {
    Handle {
        owner: owner.into(),
        tool: "t".into(),
        decision: None,
        call_id: None,
        session: None,
        expires,
    }
}

#[test]
fn a_handle_is_its_owners_only() {
    let (tasks, now) = (Tasks::default(), Instant::now());
    let (id, h) = handle_of(
        &call("alice", "report", json!({})),
        &handle_answer("t-1", json!(60)),
        now,
    )
    .expect("a handle");
    assert_eq!((id.as_str(), h.tool.as_str()), ("t-1", "report"));
    assert_eq!(h.call_id, Some(json!(7)));
    assert!(tasks.learn(&id, h, now));
    let got = tasks.claim("t-1", &principal("alice"), now).expect("hers");
    assert_eq!(got.tool, "report");
    assert_eq!(
        tasks.claim("t-1", &principal("bob"), now).unwrap_err(),
        ClaimError::Owner(principal("alice"))
    );
    assert_eq!(
        tasks.claim("t-2", &principal("alice"), now).unwrap_err(),
        ClaimError::Unknown
    );
}

#[test]
fn a_server_cannot_move_a_handle_to_another_caller() {
    let (tasks, now) = (Tasks::default(), Instant::now());
    let far = now + Duration::from_secs(60);
    assert!(tasks.learn("t-1", handle(&principal("alice"), far), now));
    assert!(!tasks.learn("t-1", handle(&principal("bob"), far), now));
    assert!(tasks.claim("t-1", &principal("alice"), now).is_ok());
    assert!(tasks.claim("t-1", &principal("bob"), now).is_err());
}

#[test]
fn handles_expire_with_their_ttl_bounded_by_the_max() {
    let now = Instant::now();
    let a = call("alice", "t", json!({}));
    let (_, short) = handle_of(&a, &handle_answer("t-1", json!(5)), now).unwrap();
    assert_eq!(short.expires, now + Duration::from_secs(5));
    for ttl in [json!(null), json!(10_000_000u64), json!("soon"), json!(-1)] {
        let (_, h) = handle_of(&a, &handle_answer("t-2", ttl.clone()), now).unwrap();
        assert_eq!(h.expires, now + MAX_TTL, "{ttl}");
    }
    let tasks = Tasks::default();
    tasks.learn("t-1", short, now);
    let later = now + Duration::from_secs(6);
    assert_eq!(
        tasks.claim("t-1", &principal("alice"), later).unwrap_err(),
        ClaimError::Unknown
    );
    assert!(tasks.is_empty(), "an expired handle is forgotten");
}

#[test]
fn a_caller_at_its_cap_loses_its_own_oldest_handle_only() {
    let (tasks, now) = (Tasks::default(), Instant::now());
    let far = |s: u64| now + Duration::from_secs(1000 + s);
    tasks.learn("bob-1", handle(&principal("bob"), far(0)), now);
    for i in 0..MAX_PER_CALLER {
        tasks.learn(
            &format!("a-{i}"),
            handle(&principal("alice"), far(1 + i as u64)),
            now,
        );
    }
    assert_eq!(tasks.len(), MAX_PER_CALLER + 1);
    tasks.learn("a-new", handle(&principal("alice"), far(5000)), now);
    assert_eq!(tasks.len(), MAX_PER_CALLER + 1);
    assert!(tasks.claim("a-0", &principal("alice"), now).is_err());
    assert!(tasks.claim("a-new", &principal("alice"), now).is_ok());
    assert!(tasks.claim("bob-1", &principal("bob"), now).is_ok());
}

#[test]
fn only_a_task_handle_to_a_tool_call_by_a_caller_is_followed() {
    let now = Instant::now();
    let a = call("alice", "t", json!({}));
    let plain = message(json!({"jsonrpc": "2.0", "id": 7, "result": {"content": []}}));
    assert!(handle_of(&a, &plain, now).is_none());
    let no_id = message(json!({"jsonrpc": "2.0", "id": 7, "result": {"resultType": "task"}}));
    assert!(handle_of(&a, &no_id, now).is_none());
    let mut ping = a.clone();
    ping.method = Some("ping".into());
    assert!(handle_of(&ping, &handle_answer("t-1", json!(1)), now).is_none());
    let mut nobody = a.clone();
    nobody.caller = None;
    assert!(handle_of(&nobody, &handle_answer("t-1", json!(1)), now).is_none());
}

#[test]
fn unsolicited_handles_are_followed_too() {
    let tasks = Tasks::default();
    let asked = call(
        "alice",
        "t",
        json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}}),
    );
    let unasked = call("alice", "t", json!({}));
    assert!(solicited(asked.params.as_ref()));
    assert!(!solicited(unasked.params.as_ref()));
    learn(&tasks, &unasked, &handle_answer("t-9", json!(60)));
    assert!(
        tasks
            .claim("t-9", &principal("alice"), Instant::now())
            .is_ok()
    );
}

#[test]
fn check_refuses_another_callers_an_unknown_and_an_unnamed_handle() {
    let (tasks, now) = (Tasks::default(), Instant::now());
    tasks.learn(
        "t-1",
        handle(&principal("alice"), now + Duration::from_secs(60)),
        now,
    );
    let req = |method: &str, params: Value| {
        message(json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params}))
    };
    let alice = principal("alice");
    for m in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let ok = check(&tasks, &req(m, json!({"taskId": "t-1"})), Some(&alice), now);
        assert_eq!(ok.unwrap().unwrap().tool, "t", "{m}");
        let bob = check(
            &tasks,
            &req(m, json!({"taskId": "t-1"})),
            Some(&principal("bob")),
            now,
        );
        assert_eq!(bob.unwrap_err().reason(), Reason::SessionOwner, "{m}");
        for params in [json!({"taskId": "t-2"}), json!({}), json!({"taskId": 1})] {
            let r = check(&tasks, &req(m, params), Some(&alice), now);
            assert_eq!(r.unwrap_err().reason(), Reason::UnknownSession, "{m}");
        }
        let anon = check(&tasks, &req(m, json!({"taskId": "t-1"})), None, now);
        assert_eq!(anon.unwrap_err().reason(), Reason::UnknownSession);
    }
    // Other methods name no task, whatever their params.
    let other = check(
        &tasks,
        &req("tools/call", json!({"taskId": "t-1"})),
        None,
        now,
    );
    assert!(other.unwrap().is_none());
}

#[test]
fn a_status_notification_never_carries_input_requests() {
    let mut n = message(
        json!({"jsonrpc": "2.0", "method": "notifications/tasks/status",
        "params": {"taskId": "t-1", "status": "input_required",
            "inputRequests": {"pin": {"method": "elicitation/create", "params": {}}}}}),
    );
    assert!(withhold_input(&mut n));
    assert!(n.raw.is_none());
    assert_eq!(
        n.value["params"],
        json!({"taskId": "t-1", "status": "input_required"})
    );
    let mut other = message(json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"inputRequests": {}}}));
    assert!(!withhold_input(&mut other));
    assert!(other.raw.is_some());
}

#[test]
fn stamp_names_the_tool_and_gives_a_forwarded_get_the_calls_decision() {
    let now = Instant::now();
    let mut h = handle("o", now);
    h.tool = "report".into();
    h.decision = Some(crate::pipeline::Decision {
        effect: crate::pipeline::Effect::Allow,
        policies: vec!["p".into()],
        version: "v".into(),
        mask: Some("vault".into()),
        approval: None,
        reason: String::new(),
        errors: vec![],
    });
    for (method, forwarded, gets_decision) in [
        ("tasks/get", true, true),
        ("tasks/get", false, false),
        ("tasks/update", true, false),
    ] {
        let mut ev = call("alice", "x", json!({}));
        ev.method = Some(method.into());
        ev.decision = None;
        stamp(&mut ev, &h, forwarded);
        assert_eq!(ev.target.as_deref(), Some("report"));
        assert_eq!(ev.decision.is_some(), gets_decision, "{method} {forwarded}");
    }
}

#[test]
fn a_2025_11_25_handle_is_followed_and_tasks_result_is_its_owners_only() {
    let (tasks, now) = (Tasks::default(), Instant::now());
    let legacy = message(json!({"jsonrpc": "2.0", "id": 7, "result": {"task": {
        "taskId": "old-1", "status": "working", "createdAt": "2025-11-25T00:00:00Z",
        "ttl": 5000, "pollInterval": 100}}}));
    let (id, h) = handle_of(&call("alice", "research", json!({})), &legacy, now)
        .expect("a 2025-11-25 handle");
    assert_eq!((id.as_str(), h.tool.as_str()), ("old-1", "research"));
    assert_eq!(h.expires, now + Duration::from_millis(5000));
    assert!(tasks.learn(&id, h, now));
    let result = |by: &str| {
        let m = message(json!({"jsonrpc": "2.0", "id": 8, "method": "tasks/result",
            "params": {"taskId": "old-1"}}));
        check(&tasks, &m, Some(&principal(by)), now)
    };
    assert_eq!(result("alice").unwrap().unwrap().tool, "research");
    let e = result("bob").unwrap_err();
    assert!(e.message().contains("another identity"), "{}", e.message());
    // A result whose `task` names no id is no handle.
    let plain = message(json!({"jsonrpc": "2.0", "id": 7, "result": {
        "content": [], "task": {"status": "working"}}}));
    assert!(!is_handle(&plain));
}
