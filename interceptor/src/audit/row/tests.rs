use super::*;
use crate::pipeline::CallFacts;

fn stamp() -> Stamp {
    Stamp {
        host: "h".into(),
        agent_version: "v".into(),
        max_field_bytes: 1 << 20,
    }
}

fn approval_step(method: &str, target: &str, sha: &str) -> LifecycleEvent {
    let call = CallFacts {
        subject: "alice".into(),
        issuer: "https://idp".into(),
        groups: vec!["dev".into()],
        server: "db".into(),
        method: method.into(),
        target: Some(target.into()),
        arguments_sha256: sha.into(),
        policy_version: "pv".into(),
    };
    let mut e = LifecycleEvent::approval_requested("m", call);
    if let About::Approval {
        arguments,
        policies,
        ..
    } = &mut e.about
    {
        *arguments = Some("{}".into());
        *policies = vec!["p1".into()];
    }
    e.decision = Some("pending".into());
    e
}

#[test]
fn the_target_lands_in_the_column_of_its_method() {
    let row = |m| stamp().from_lifecycle(approval_step(m, "t", ""));
    let tool = row("tools/call");
    assert_eq!(tool.tool_name.as_deref(), Some("t"));
    assert_eq!(row("prompts/get").prompt_name.as_deref(), Some("t"));
    assert_eq!(row("resources/read").resource_uri.as_deref(), Some("t"));
    let ping = row("ping");
    let names = [ping.tool_name, ping.prompt_name, ping.resource_uri];
    assert_eq!(names, [None, None, None], "ping names nothing");
    assert_eq!((tool.prompt_name, tool.resource_uri), (None, None));
}

/// An approval step's row: the call's columns with the caller's issuer,
/// an empty digest left null.
#[test]
fn an_approval_step_fills_the_call_columns() {
    let r = stamp().from_lifecycle(approval_step("tools/call", "db.drop", ""));
    assert_eq!(r.subject.as_deref(), Some("alice"));
    assert_eq!(r.groups, ["dev"]);
    assert_eq!(r.method.as_deref(), Some("tools/call"));
    assert_eq!(r.policy_version.as_deref(), Some("pv"));
    assert_eq!(r.arguments_sha256, None);
    assert_eq!(r.issuer.as_deref(), Some("https://idp"));
    assert_eq!(r.approval_id.as_deref(), Some("apr-1"));
    assert_eq!(r.decided_by.as_deref(), Some("approval"));
    assert_eq!(r.rule_ids, ["p1"]);
    assert_eq!(r.arguments.as_deref(), Some("{}"));
    assert_eq!(r.decision.as_deref(), Some("pending"));
    let r = stamp().from_lifecycle(approval_step("tools/call", "db.drop", "abc"));
    assert_eq!(r.arguments_sha256.as_deref(), Some("abc"));
}

#[test]
fn a_grant_row_names_its_subject_tool_and_id_only() {
    let mut e = LifecycleEvent::new("grant_added", "m");
    e.about = About::Grant {
        id: Some("grt-1".into()),
        subject: "bob".into(),
        tool: "db.*".into(),
    };
    let r = stamp().from_lifecycle(e);
    assert_eq!(r.subject.as_deref(), Some("bob"));
    assert_eq!(r.tool_name.as_deref(), Some("db.*"));
    assert_eq!(r.approval_id.as_deref(), Some("grt-1"));
    assert_eq!(r.decided_by.as_deref(), Some("grant"));
    assert_eq!((r.method, r.policy_version), (None, None));
}

/// A client's `tools/call` event with `params`, as `mcp` builds it.
fn call_event(params: serde_json::Value) -> ExchangeEvent {
    ExchangeEvent {
        protocol_version: Some("2026-07-28".into()),
        client_name: Some("cli".into()),
        client_version: Some("1".into()),
        jsonrpc_id: Some(2.into()),
        method: Some("tools/call".into()),
        target: Some("unlock".into()),
        params: Some(params),
        http_method: "POST".into(),
        http_path: "/mcp".into(),
        http_status: Some(200),
        received_us: 0,
        done_us: Some(1),
        meta: crate::pipeline::RequestMeta {
            trace_id: Some("t".into()),
            span_id: Some("s".into()),
            call_id: Some("c2".into()),
            follows: Some("c1".into()),
        },
        ..ExchangeEvent::new(
            EventKind::Exchange,
            Direction::ClientToServer,
            &crate::conn::ConnInfo::loopback(),
            Transport::Stateless,
        )
    }
}

#[test]
fn a_retry_keeps_its_input_responses_trace_and_link() {
    let params = serde_json::json!({"name": "unlock", "arguments": {"vault": "v1"},
        "inputResponses": {"pin": {"action": "accept"}}, "requestState": "s"});
    let r = stamp().from_event(&call_event(params));
    assert_eq!(r.arguments.as_deref(), Some(r#"{"vault":"v1"}"#));
    assert_eq!(
        r.input_responses.as_deref(),
        Some(r#"{"pin":{"action":"accept"}}"#)
    );
    assert_eq!(
        (r.trace_id.as_deref(), r.span_id.as_deref()),
        (Some("t"), Some("s"))
    );
    assert_eq!(
        (r.call_id.as_deref(), r.follows.as_deref()),
        (Some("c2"), Some("c1"))
    );
    assert_eq!(r.client_name.as_deref(), Some("cli"));
    let plain = stamp().from_event(&call_event(serde_json::json!({"name": "unlock"})));
    assert_eq!(plain.input_responses, None);
}

#[test]
fn long_input_responses_are_cut_like_arguments() {
    let s = Stamp {
        max_field_bytes: 16,
        ..stamp()
    };
    let params = serde_json::json!({"inputResponses": {"pin": "x".repeat(100)}});
    let r = s.from_event(&call_event(params));
    assert_eq!(r.input_responses.map(|t| t.len()), Some(16));
}

#[test]
fn a_tls_connection_fills_the_tls_columns_and_plaintext_leaves_them_null() {
    let mut ev = call_event(serde_json::json!({"name": "unlock"}));
    ev.tls = Some(crate::conn::Negotiated {
        version: "TLSv1.2",
        cipher: Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into()),
        alpn: None,
    });
    let r = stamp().from_event(&ev);
    assert_eq!(
        (
            r.tls_version.as_deref(),
            r.tls_cipher.as_deref(),
            r.tls_alpn
        ),
        (
            Some("TLSv1.2"),
            Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
            None
        )
    );
    let plain = stamp().from_event(&call_event(serde_json::json!({"name": "unlock"})));
    assert_eq!(
        (plain.tls_version, plain.tls_cipher, plain.tls_alpn),
        (None, None, None)
    );
}

#[test]
fn a_same_host_caller_fills_the_process_columns_and_a_remote_one_leaves_them_null() {
    use crate::identity::{AuthMethod, Caller, process::Seen};
    let facts = std::sync::Arc::new(crate::conn::ProcessFacts {
        pid: 4242,
        tid: 4242,
        uid: 998,
        gid: 998,
        login_uid: None,
        comm: "python3".into(),
        cgroup_id: 9,
        cgroup_path: Some("/system.slice/ai-agent.service/worker".into()),
        exe_path: Some("/usr/bin/python3.12".into()),
        exe_ino: 1,
        exe_dev: 2,
        exe_sha256: Some("ab".repeat(32)),
        start_time_ns: 7,
    });
    let mut ev = call_event(serde_json::json!({"name": "unlock"}));
    ev.process = Some(facts.clone());
    // Refused before identity: the kernel's facts, no user name.
    let r = stamp().from_event(&ev);
    assert_eq!(
        (r.process_pid, r.process_uid, r.process_user.as_deref()),
        (Some(4242), Some(998), None)
    );
    assert_eq!(r.process_unit.as_deref(), Some("ai-agent.service"));
    assert_eq!(
        r.process_cgroup.as_deref(),
        Some("/system.slice/ai-agent.service/worker")
    );
    assert_eq!(r.process_exe.as_deref(), Some("/usr/bin/python3.12"));
    assert_eq!(r.process_exe_sha256, Some("ab".repeat(32)));
    ev.caller = Some(std::sync::Arc::new(Caller {
        process: Some(std::sync::Arc::new(Seen::new(
            facts,
            Some("aiagent".into()),
        ))),
        ..Caller::new(AuthMethod::Process, "svc:ai-agent", Some("process".into()))
    }));
    let r = stamp().from_event(&ev);
    assert_eq!(
        (r.process_user.as_deref(), r.auth_method.as_deref()),
        (Some("aiagent"), Some("process"))
    );
    let remote = stamp().from_event(&call_event(serde_json::json!({"name": "unlock"})));
    assert_eq!(
        (
            remote.process_pid,
            remote.process_uid,
            remote.process_exe,
            remote.process_cgroup
        ),
        (None, None, None, None)
    );
}

/// A heartbeat names the policy set in force; an approval step keeps its
/// call's version.
#[test]
fn a_lifecycle_event_carries_its_policy_version() {
    let mut e = LifecycleEvent::new("heartbeat", "{}");
    e.policy_version = Some("v9".into());
    let r = stamp().from_lifecycle(e);
    assert_eq!(
        (r.kind.as_str(), r.policy_version.as_deref()),
        ("heartbeat", Some("v9"))
    );
    assert_eq!(r.method, None);
    let step = stamp().from_lifecycle(approval_step("tools/call", "t", ""));
    assert_eq!(step.policy_version.as_deref(), Some("pv"));
}
