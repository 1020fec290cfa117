use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::{
    conn::ConnInfo,
    identity::{AuthMethod, Caller},
    jsonrpc::{Body, parse},
    pipeline::Notes,
};

const POLICY: &str = r#"
@id("read-docs")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"resources/read", resource)
when { resource.uri like "file:///docs/*" };
@id("greet")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"prompts/get", resource == Mcp::Prompt::"greet");
@id("roots")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"roots/list", resource);
"#;

fn phase() -> PolicyPhase {
    let p = Policies::from_sources(&[("t.cedar".into(), POLICY.into())]).unwrap();
    let mut cfg = Config::default();
    cfg.intercept.ports = vec![crate::config::PortRule {
        port: 8080,
        ..Default::default()
    }];
    PolicyPhase::new(Arc::new(cfg), Arc::new(RwLock::new(Arc::new(p))))
}

fn caller(groups: &[&str]) -> Caller {
    Caller {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Caller::new(AuthMethod::Oidc, "alice", None)
    }
}

fn message(v: serde_json::Value) -> Message {
    match parse(&Bytes::from(v.to_string())).unwrap() {
        Body::Single(m) => m,
        Body::Batch(_) => panic!("one message"),
    }
}

fn with_ctx<T>(
    groups: &[&str],
    request_method: Option<&str>,
    f: impl FnOnce(&MessageCtx<'_>) -> T,
) -> T {
    let conn = ConnInfo::between(
        "10.0.0.9:4000".parse().unwrap(),
        "10.0.0.1:8080".parse().unwrap(),
    );
    let c = caller(groups);
    let notes = Notes::default();
    let ctx = MessageCtx {
        session_id: Some("s1"),
        caller: Some(&c),
        request_method,
        ..MessageCtx::for_test(&conn, &notes)
    };
    f(&ctx)
}

#[test]
fn resource_and_prompt_lists_are_filtered_and_cursors_kept() {
    let p = phase();
    let mut m = message(json!({"jsonrpc": "2.0", "id": 1, "result": {
        "resources": [{"uri": "file:///docs/a.md", "name": "a"}, {"uri": "file:///etc/passwd", "name": "p"}],
        "nextCursor": "page-2"}}));
    with_ctx(&["dev"], Some("resources/list"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert_eq!(
        m.value["result"]["resources"],
        json!([{"uri": "file:///docs/a.md", "name": "a"}])
    );
    assert_eq!(m.value["result"]["nextCursor"], "page-2");

    let mut m = message(json!({"jsonrpc": "2.0", "id": 2, "result": {
        "prompts": [{"name": "greet"}, {"name": "exfiltrate"}]}}));
    with_ctx(&["dev"], Some("prompts/list"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert_eq!(m.value["result"]["prompts"], json!([{"name": "greet"}]));

    // Someone in no group sees nothing; an answer to another method is untouched.
    let mut m =
        message(json!({"jsonrpc": "2.0", "id": 3, "result": {"prompts": [{"name": "greet"}]}}));
    with_ctx(&[], Some("prompts/list"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert_eq!(m.value["result"]["prompts"], json!([]));
    let mut m = message(json!({"jsonrpc": "2.0", "id": 4, "result": {"prompts": [{"name": "x"}]}}));
    with_ctx(&[], Some("tools/call"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert!(m.raw.is_some(), "not re-serialized");
}

#[test]
fn server_requests_need_a_permit_and_others_pass() {
    let p = phase();
    let roots = message(json!({"jsonrpc": "2.0", "id": 7, "method": "roots/list"}));
    assert!(with_ctx(&["dev"], None, |ctx| p.on_server_request(ctx, &roots)).is_none());
    let refused = with_ctx(&["ops"], None, |ctx| p.on_server_request(ctx, &roots)).unwrap();
    assert_eq!(refused.reason(), crate::error::Reason::PolicyDenied);
    let elicit =
        message(json!({"jsonrpc": "2.0", "id": 8, "method": "elicitation/create", "params": {}}));
    assert!(with_ctx(&["dev"], None, |ctx| p.on_server_request(ctx, &elicit)).is_some());
    let ping = message(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}));
    assert!(
        with_ctx(&[], None, |ctx| p.on_server_request(ctx, &ping)).is_none(),
        "server pings are not policed"
    );
}

#[test]
fn approval_refuses_with_its_own_code_and_notes_the_decision() {
    let p = Policies::from_sources(&[(
        "a.cedar".into(),
        r#"@id("needs-oncall") @approval("oncall") permit (principal, action == Mcp::Action::"tools/call", resource);"#.into(),
    )])
    .unwrap();
    let mut cfg = Config::default();
    cfg.intercept.ports = vec![crate::config::PortRule {
        port: 8080,
        ..Default::default()
    }];
    let phase = PolicyPhase::new(Arc::new(cfg), Arc::new(RwLock::new(Arc::new(p))));
    let call = message(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}),
    );
    let (verdict, decision) = with_ctx(&[], None, |ctx| {
        (phase.on_request(ctx, &call), ctx.notes.decision())
    });
    match verdict {
        Verdict::Deny(e) => assert_eq!(e.reason(), crate::error::Reason::ApprovalRequired),
        _ => panic!("without an approvals stage, approval required is a refusal"),
    }
    let d = decision.unwrap();
    assert_eq!(d.effect, Effect::Approval);
    assert_eq!(d.approval.unwrap().groups, vec!["oncall".to_string()]);
}

/// `with_ctx`, at protocol revision `version`.
fn at_version<T>(
    groups: &[&str],
    request_method: Option<&str>,
    version: Option<&str>,
    f: impl FnOnce(&MessageCtx<'_>) -> T,
) -> T {
    with_ctx(groups, request_method, |ctx| {
        f(&MessageCtx {
            protocol_version: version,
            ..ctx.clone()
        })
    })
}

#[test]
fn judged_lists_go_out_private_with_their_ttl_untouched() {
    let p = phase();
    // Public from the server, nothing removed: still private, since it
    // depends on who asks.
    let mut m = message(json!({"jsonrpc": "2.0", "id": 1, "result": {
        "prompts": [{"name": "greet"}], "cacheScope": "public", "ttlMs": 60000}}));
    with_ctx(&["dev"], Some("prompts/list"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert_eq!(m.value["result"]["cacheScope"], "private");
    assert_eq!(m.value["result"]["ttlMs"], 60000);
    assert_eq!(m.value["result"]["prompts"], json!([{"name": "greet"}]));
    // No scope at 2026-07-28 (a client's default may be shared): private.
    let mut m = message(json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": []}}));
    at_version(&["dev"], Some("tools/list"), Some("2026-07-28"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert_eq!(m.value["result"]["cacheScope"], "private");
    // An older client gets no field it does not know; private stays as sent.
    let mut m = message(json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}}));
    at_version(&["dev"], Some("tools/list"), Some("2025-11-25"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert!(m.raw.is_some(), "not re-serialized");
    let mut m = message(json!({"jsonrpc": "2.0", "id": 4, "result": {
        "resources": [], "cacheScope": "private"}}));
    with_ctx(&["dev"], Some("resources/list"), |ctx| {
        p.on_server_message(ctx, &mut m)
    });
    assert!(m.raw.is_some(), "not re-serialized");
}

#[test]
fn every_cacheable_answer_the_policy_judged_is_private() {
    let p = phase();
    // Whether a caller gets these at all is the policy's decision: a
    // shared cache would answer another caller past the agent.
    for method in [
        "resources/read",
        "server/discover",
        "resources/templates/list",
    ] {
        let mut m = message(json!({"jsonrpc": "2.0", "id": 1, "result": {
            "contents": [], "cacheScope": "public", "ttlMs": 5}}));
        with_ctx(&["dev"], Some(method), |ctx| {
            p.on_server_message(ctx, &mut m)
        });
        assert_eq!(m.value["result"]["cacheScope"], "private", "{method}");
        assert_eq!(m.value["result"]["ttlMs"], 5, "{method}");
    }
    // Not cacheable, an error, an input_required result: left as they came.
    let untouched = [
        (
            "tools/call",
            json!({"jsonrpc": "2.0", "id": 2, "result": {"content": [], "cacheScope": "public"}}),
        ),
        (
            "resources/read",
            json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "no"}}),
        ),
        (
            "resources/read",
            json!({"jsonrpc": "2.0", "id": 4, "result": {"resultType": "input_required",
                "inputRequests": {}, "cacheScope": "public"}}),
        ),
    ];
    for (method, v) in untouched {
        let mut m = message(v);
        at_version(&["dev"], Some(method), Some("2026-07-28"), |ctx| {
            p.on_server_message(ctx, &mut m)
        });
        assert!(m.raw.is_some(), "{method}: {}", m.value);
    }
}

#[test]
fn resource_updates_reach_only_callers_who_may_read_the_resource() {
    let p = phase();
    let updated = |uri: &str| {
        message(
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": uri, "_meta": {"io.modelcontextprotocol/subscriptionId": 1}}}),
        )
    };
    let docs = updated("file:///docs/a.md");
    assert!(with_ctx(&["dev"], None, |ctx| p.on_server_notification(ctx, &docs)).is_none());
    let secret = updated("file:///etc/passwd");
    let (refused, decision) = with_ctx(&["dev"], None, |ctx| {
        (p.on_server_notification(ctx, &secret), ctx.notes.decision())
    });
    assert_eq!(
        refused.unwrap().reason(),
        crate::error::Reason::PolicyDenied
    );
    assert_eq!(decision.unwrap().effect, Effect::Deny);
    let other = with_ctx(&["ops"], None, |ctx| p.on_server_notification(ctx, &docs));
    assert!(
        other.is_some(),
        "a caller without the permit never hears of it"
    );
    let listed = message(
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
        "params": {}}),
    );
    assert!(
        with_ctx(&[], None, |ctx| p.on_server_notification(ctx, &listed)).is_none(),
        "list changes pass to everyone"
    );
}

#[test]
fn a_task_request_is_judged_on_its_calls_tool_with_its_input_as_tags() {
    let src = r#"
@id("tasks")
permit (principal, action in [Mcp::Action::"tasks/get", Mcp::Action::"tasks/update",
  Mcp::Action::"tasks/cancel"], resource);
@id("no-approve-update")
forbid (principal, action == Mcp::Action::"tasks/update", resource == Mcp::Tool::"approve");
@id("no-card")
forbid (principal, action == Mcp::Action::"tasks/update", resource)
when { resource.hasTag("pin.content.card") };
"#;
    let p = Policies::from_sources(&[("t.cedar".into(), src.into())]).unwrap();
    let mut cfg = Config::default();
    cfg.intercept.ports = vec![crate::config::PortRule {
        port: 8080,
        ..Default::default()
    }];
    let phase = PolicyPhase::new(Arc::new(cfg), Arc::new(RwLock::new(Arc::new(p))));
    let conn = ConnInfo::loopback();
    let c = caller(&[]);
    let judge = |method: &str, tool: &str, params: serde_json::Value| {
        let mut notes = Notes::default();
        notes.task_tool = Some(tool.into());
        let ctx = MessageCtx {
            caller: Some(&c),
            ..MessageCtx::for_test(&conn, &notes)
        };
        let msg = message(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
        let v = phase.on_request(&ctx, &msg);
        (
            matches!(v, Verdict::Continue),
            notes.decision().unwrap().policies,
        )
    };
    let answer = json!({"taskId": "t", "inputResponses": {"pin": {"action": "accept",
        "content": {"pin": "1"}}}});
    assert_eq!(
        judge("tasks/update", "approve", answer.clone()),
        (false, vec!["no-approve-update".to_string()])
    );
    assert_eq!(
        judge("tasks/update", "other", answer),
        (true, vec!["tasks".to_string()])
    );
    let card = json!({"taskId": "t", "inputResponses": {"pin": {"content": {"card": "4111"}}}});
    assert_eq!(
        judge("tasks/update", "other", card),
        (false, vec!["no-card".to_string()])
    );
    for m in ["tasks/get", "tasks/cancel"] {
        assert!(judge(m, "approve", json!({"taskId": "t"})).0, "{m}");
    }
    // 2025-11-25 tasks methods are gone from the schema.
    for gone in ["tasks/list", "tasks/result"] {
        let text = format!("permit (principal, action == Mcp::Action::\"{gone}\", resource);");
        assert!(
            Policies::from_sources(&[("g.cedar".into(), text)]).is_err(),
            "{gone}"
        );
    }
}
