use bytes::Bytes;
use serde_json::{Value, json};

use super::{KEY, accepts, without_own};
use crate::{
    conn::ConnInfo,
    jsonrpc::{Body, Message, parse},
    pipeline::{MessageCtx, Notes, Transport, Verdict},
};

fn message(v: Value) -> Message {
    match parse(&Bytes::from(v.to_string())).unwrap() {
        Body::Single(m) => m,
        Body::Batch(_) => panic!("one message"),
    }
}

fn call(method: &str, version: &str, caps: Value, more: Value) -> Message {
    let mut params = json!({"name": "lookup", "arguments": {"id": "7"}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": caps}});
    if let Value::Object(m) = more {
        params.as_object_mut().unwrap().extend(m);
    }
    message(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
}

fn accepted(transport: Transport, msg: &Message) -> bool {
    let conn = ConnInfo::between(
        "10.0.0.9:4000".parse().unwrap(),
        "10.0.0.1:8080".parse().unwrap(),
    );
    let notes = Notes::default();
    let ctx = MessageCtx {
        transport,
        ..MessageCtx::for_test(&conn, &notes)
    };
    accepts(&ctx, msg)
}

#[test]
fn only_stateless_2026_clients_with_url_elicitation_are_answered_in_band() {
    let url = json!({"elicitation": {"url": {}}});
    let m = call("tools/call", "2026-07-28", url.clone(), json!({}));
    assert!(accepted(Transport::Stateless, &m));
    for method in ["resources/read", "prompts/get"] {
        let m = call(method, "2026-07-28", url.clone(), json!({}));
        assert!(accepted(Transport::Stateless, &m), "{method}");
    }
    // A session client, whatever it declares.
    assert!(!accepted(Transport::StreamableHttp, &m));
    // An older protocol, or no URL mode (a bare `elicitation` is form only).
    let old = call("tools/call", "2025-11-25", url.clone(), json!({}));
    assert!(!accepted(Transport::Stateless, &old));
    for caps in [
        json!({}),
        json!({"elicitation": {}}),
        json!({"elicitation": {"form": {}}}),
        json!({"elicitation": {"url": true}}),
    ] {
        let m = call("tools/call", "2026-07-28", caps.clone(), json!({}));
        assert!(!accepted(Transport::Stateless, &m), "{caps}");
    }
    // Input requests ride only on the three MRTR methods.
    let m = call("tools/list", "2026-07-28", url, json!({}));
    assert!(!accepted(Transport::Stateless, &m));
}

fn rewritten(v: Verdict) -> Value {
    match v {
        Verdict::Rewrite(v) => v,
        _ => panic!("not a rewrite"),
    }
}

#[test]
fn only_the_agents_own_state_and_answer_are_taken_out() {
    let caps = json!({"elicitation": {"url": {}}});
    let ours = json!({"requestState": "mcpi1.sealed", "inputResponses": {
        KEY: {"action": "accept"}, "pin": {"action": "accept", "content": {"pin": "1"}}}});
    let m = call("tools/call", "2026-07-28", caps.clone(), ours);
    let p = rewritten(without_own(&m, Verdict::Continue))["params"].clone();
    assert!(p.get("requestState").is_none(), "{p}");
    assert_eq!(
        p["inputResponses"],
        json!({"pin": {"action": "accept", "content": {"pin": "1"}}})
    );
    assert_eq!(p["arguments"], json!({"id": "7"}));
    assert!(p.get("_meta").is_some());

    // Our answer alone: no empty inputResponses is left behind.
    let m = call(
        "tools/call",
        "2026-07-28",
        caps.clone(),
        json!({"requestState": "mcpi1.sealed", "inputResponses": {KEY: {"action": "accept"}}}),
    );
    let p = rewritten(without_own(&m, Verdict::Continue))["params"].clone();
    assert!(
        p.get("inputResponses").is_none() && p.get("requestState").is_none(),
        "{p}"
    );

    // The server's own state and answers: nothing to take out.
    let server =
        json!({"requestState": "round-1", "inputResponses": {"pin": {"action": "accept"}}});
    let m = call("tools/call", "2026-07-28", caps.clone(), server);
    assert!(matches!(
        without_own(&m, Verdict::Continue),
        Verdict::Continue
    ));

    // A refusal or an answer stays what it is.
    let m = call(
        "tools/call",
        "2026-07-28",
        caps,
        json!({"requestState": "mcpi1.sealed"}),
    );
    let answer = without_own(&m, Verdict::Answer(json!({"resultType": "input_required"})));
    assert!(matches!(answer, Verdict::Answer(_)));
}

#[tokio::test]
async fn a_held_call_released_later_goes_without_the_agents_state() {
    let m = call(
        "tools/call",
        "2026-07-28",
        json!({}),
        json!({"requestState": "mcpi1.sealed", "inputResponses": {KEY: {"action": "accept"}}}),
    );
    let held = Verdict::Hold(Box::pin(async { Verdict::Continue }));
    let Verdict::Hold(fut) = without_own(&m, held) else {
        panic!("still held");
    };
    let p = rewritten(fut.await)["params"].clone();
    assert!(
        p.get("requestState").is_none() && p.get("inputResponses").is_none(),
        "{p}"
    );
}

#[test]
fn an_approval_binds_params_without_the_rounds_state_and_answers() {
    let a = json!({"uri": "file:///x", "_meta": {"progressToken": 1},
                   "requestState": "mcpi1.sealed", "inputResponses": {KEY: {"action": "accept"}}});
    let b = json!({"uri": "file:///x"});
    assert_eq!(crate::jsonrpc::mcp_names::call_params(a), b);
}
