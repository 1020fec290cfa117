use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::{
    identity::{AuthMethod, Caller},
    jsonrpc::Kind,
    mcp::exchange::Origin,
    pipeline::Transport,
};

fn caller(subject: &str) -> Arc<Caller> {
    Arc::new(Caller::new(
        AuthMethod::Oidc,
        subject,
        Some("https://issuer".into()),
    ))
}

/// A client request `body` of `who`, as `decide` makes its event.
fn call(who: &str, body: Value) -> ExchangeEvent {
    let origin = Origin::test_post(Some(caller(who)), Transport::Stateless, "\0post-1", false);
    let msg = Message {
        kind: Kind::Request,
        value: body,
        raw: None,
    };
    origin.event(
        crate::pipeline::EventKind::Exchange,
        crate::pipeline::Direction::ClientToServer,
        &msg,
        &Default::default(),
    )
}

fn tool(id: u64, args: Value, extra: Value) -> Value {
    let mut params = json!({"name": "confirm_pin", "arguments": args,
        "_meta": {"traceparent": format!("00-{:032x}-{:016x}-01", id + 1, id + 1)}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

fn input_required(state: Option<&str>) -> Message {
    let mut result = json!({"resultType": "input_required", "inputRequests": {}});
    if let Some(s) = state {
        result["requestState"] = s.into();
    }
    Message {
        kind: Kind::Response,
        value: json!({"jsonrpc": "2.0", "id": 1, "result": result}),
        raw: None,
    }
}

const ANSWER: &str = r#"{"inputResponses": {"pin": {"action": "accept"}}, "requestState": "s1"}"#;

fn answer() -> Value {
    serde_json::from_str(ANSWER).unwrap()
}

#[test]
fn a_retry_with_input_responses_follows_the_first_call() {
    let r = Rounds::default();
    let first = call("alice", tool(1, json!({"a": 1}), json!({})));
    let root = first.meta.call_id.clone().unwrap();
    r.remember(&first, &input_required(Some("s1")));
    let retry = call("alice", tool(2, json!({"a": 1}), answer()));
    assert_ne!(retry.meta.call_id, first.meta.call_id);
    assert_eq!(r.follows(&retry), Some(root.clone()));
    // Asked again: the second round is remembered with the same first call.
    let mut retry = retry;
    retry.meta.follows = r.follows(&retry);
    r.remember(&retry, &input_required(Some("s2")));
    let third = json!({"inputResponses": {"x": {}}, "requestState": "s2"});
    let third = call("alice", tool(3, json!({"a": 1}), third));
    assert_eq!(r.follows(&third), Some(root));
}

#[test]
fn only_the_same_call_of_the_same_caller_is_linked() {
    let r = Rounds::default();
    let first = call("alice", tool(1, json!({"a": 1}), json!({})));
    r.remember(&first, &input_required(Some("s1")));
    let cases = [
        (
            "another caller",
            call("bob", tool(2, json!({"a": 1}), answer())),
        ),
        (
            "other arguments",
            call("alice", tool(2, json!({"a": 2}), answer())),
        ),
        (
            "another state",
            call(
                "alice",
                tool(
                    2,
                    json!({"a": 1}),
                    json!({"inputResponses": {}, "requestState": "s9"}),
                ),
            ),
        ),
        (
            "no state where one was sent",
            call(
                "alice",
                tool(2, json!({"a": 1}), json!({"inputResponses": {}})),
            ),
        ),
        (
            "not a retry",
            call("alice", tool(2, json!({"a": 1}), json!({}))),
        ),
    ];
    for (why, ev) in cases {
        assert_eq!(r.follows(&ev), None, "{why}");
    }
    let mut other_tool = tool(2, json!({"a": 1}), answer());
    other_tool["params"]["name"] = "other".into();
    assert_eq!(r.follows(&call("alice", other_tool)), None);
}

#[test]
fn no_state_pairs_by_the_call_alone_and_meta_does_not_count() {
    let r = Rounds::default();
    let first = call("alice", tool(1, json!({"a": 1}), json!({})));
    r.remember(&first, &input_required(None));
    // A new traceparent (in `_meta`) on the retry changes nothing.
    let retry = call(
        "alice",
        tool(9, json!({"a": 1}), json!({"inputResponses": {}})),
    );
    assert_eq!(r.follows(&retry), first.meta.call_id);
}

#[test]
fn methods_without_input_rounds_are_never_linked() {
    let r = Rounds::default();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"inputResponses": {}}});
    let ev = call("alice", body);
    r.remember(&ev, &input_required(None));
    assert_eq!(r.follows(&ev), None);
    assert!(r.inner.lock().unwrap().is_empty());
}

#[test]
fn the_table_is_bounded() {
    let r = Rounds::default();
    let first = call("alice", tool(0, json!({"n": 0}), json!({})));
    r.remember(&first, &input_required(None));
    for n in 1..=MAX_ENTRIES as u64 {
        let ev = call("alice", tool(n, json!({"n": n}), json!({})));
        r.remember(&ev, &input_required(None));
    }
    assert_eq!(r.inner.lock().unwrap().len(), MAX_ENTRIES);
    // The oldest went first.
    let retry = call(
        "alice",
        tool(1, json!({"n": 0}), json!({"inputResponses": {}})),
    );
    assert_eq!(r.follows(&retry), None);
    let last = MAX_ENTRIES as u64;
    let retry = call(
        "alice",
        tool(1, json!({"n": last}), json!({"inputResponses": {}})),
    );
    assert!(r.follows(&retry).is_some());
}

#[test]
fn an_expired_entry_is_not_linked() {
    let r = Rounds::default();
    let first = call("alice", tool(1, json!({"a": 1}), json!({})));
    r.remember(&first, &input_required(None));
    for (_, at) in r.inner.lock().unwrap().values_mut() {
        *at = at.checked_sub(TTL).expect("the clock runs longer than TTL");
    }
    let retry = call(
        "alice",
        tool(2, json!({"a": 1}), json!({"inputResponses": {}})),
    );
    assert_eq!(r.follows(&retry), None);
}
