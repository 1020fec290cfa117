use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{Value, json};

use super::super::State;
use crate::{
    error::{Reason, Refusal},
    jsonrpc::{self, Message},
    mcp::{exchange::Origin, session::Sessions},
    pipeline::{Direction, EventKind, ExchangeEvent, MessageCtx, Phase, Pipeline, Transport},
};

const KEY: &str = "\0post-1";

/// Refuses elicitation, "masks" the word `secret` everywhere it may, and
/// keeps every row.
struct Toy(Arc<Mutex<Vec<ExchangeEvent>>>);

impl Phase for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn polices_server_requests(&self) -> bool {
        true
    }
    fn on_server_request(&self, _: &MessageCtx<'_>, msg: &Message) -> Option<Refusal> {
        (msg.method() == Some("elicitation/create"))
            .then(|| Refusal::new(Reason::PolicyDenied, "denied by the toy"))
    }
    fn on_server_message(&self, _: &MessageCtx<'_>, msg: &mut Message) {
        let text = msg.value.to_string();
        if text.contains("secret") {
            msg.value = serde_json::from_str(&text.replace("secret", "[masked]")).unwrap();
            msg.raw = None;
        }
    }
    fn record(&self, event: &ExchangeEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// A State for one POST whose tools/call (id 7) waits, and its rows.
fn state() -> (State, Arc<Mutex<Vec<ExchangeEvent>>>) {
    let rows = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::new(vec![Arc::new(Toy(rows.clone()))], Duration::from_secs(1));
    let origin = Origin::test_post(None, Transport::Stateless, KEY, false);
    let call = call_msg();
    let sessions = Arc::new(Sessions::default());
    let info = sessions.info(KEY);
    let ev = origin.event(EventKind::Exchange, Direction::ClientToServer, &call, &info);
    sessions.expect(KEY, "7".into(), ev, false);
    let st = State {
        pipeline,
        sessions,
        origin,
        status: 200,
        max_message: 1 << 20,
        first_byte_us: None,
        reply: None,
        answer_timeout: None,
        expected: vec!["7".into()],
    };
    (st, rows)
}

fn call_msg() -> Message {
    let v = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "t"}});
    match jsonrpc::parse(&Bytes::from(v.to_string())).unwrap() {
        jsonrpc::Body::Single(m) => m,
        jsonrpc::Body::Batch(_) => panic!(),
    }
}

/// Runs the server answer `result` (to call 7) through `st`.
fn answer(st: &State, result: Value) -> (jsonrpc::Body, bool, Vec<Value>) {
    let raw = Bytes::from(json!({"jsonrpc": "2.0", "id": 7, "result": result}).to_string());
    let mut body = jsonrpc::parse(&raw).unwrap();
    let (refused, errors) = st.on_server_body(&mut body, raw.len() as u64, None);
    (body, refused, errors)
}

#[test]
fn one_refused_input_request_refuses_the_whole_result() {
    let (st, rows) = state();
    let (body, refused, errors) = answer(
        &st,
        json!({"resultType": "input_required", "requestState": "s", "inputRequests": {
            "pin": {"method": "elicitation/create", "params": {"message": "enter your PIN"}},
            "where": {"method": "roots/list"}}}),
    );
    assert!(refused && body.messages().is_empty());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["id"], 7);
    assert_eq!(
        errors[0]["error"]["message"],
        "input request \"pin\" (elicitation/create) denied by the toy"
    );
    assert!(!errors[0].to_string().contains("enter your PIN"));
    let rows = rows.lock().unwrap();
    let row = |k: &str| {
        rows.iter()
            .find(|e| e.target.as_deref() == Some(k))
            .unwrap()
    };
    assert_eq!(row("pin").kind, EventKind::Denied);
    assert_eq!(row("pin").decided_by.as_deref(), Some("toy"));
    assert_eq!(row("pin").direction, Direction::ServerToClient);
    assert_eq!(row("pin").jsonrpc_id, Some(json!(7)));
    assert_eq!(row("where").kind, EventKind::Exchange);
    assert_eq!(row("where").method.as_deref(), Some("roots/list"));
    let call = row("t");
    assert_eq!(call.kind, EventKind::Denied);
    assert_eq!(
        call.error.as_ref().unwrap()["message"],
        errors[0]["error"]["message"]
    );
}

#[test]
fn an_input_request_the_agent_cannot_read_fails_closed() {
    for requests in [
        json!({"x": {"params": {}}}),
        json!({"x": 5}),
        json!(["x"]),
        // Not one of the spec's input requests: a case variant of one, or
        // a method the policy never judges.
        json!({"x": {"method": "Elicitation/Create", "params": {"message": "PIN?"}}}),
        json!({"x": {"method": "tools/call", "params": {"name": "rm"}}}),
    ] {
        let (st, rows) = state();
        let (body, refused, errors) = answer(
            &st,
            json!({"resultType": "input_required", "inputRequests": requests}),
        );
        assert!(refused && body.messages().is_empty(), "{requests}");
        assert_eq!(
            errors[0]["error"]["data"]["reason"],
            "unjudged_server_message"
        );
        let rows = rows.lock().unwrap();
        assert!(
            rows.iter()
                .any(|e| e.kind == EventKind::Denied && e.target.as_deref() == Some("t"))
        );
    }
}

#[test]
fn permitted_input_requests_are_masked_but_request_state_is_not() {
    let (st, rows) = state();
    let (body, refused, errors) = answer(
        &st,
        json!({"resultType": "input_required", "requestState": "a secret state",
            "inputRequests": {"model": {"method": "sampling/createMessage",
                "params": {"messages": [{"role": "user", "content": "my secret"}]}}}}),
    );
    assert!(!refused && errors.is_empty());
    let result = body.messages()[0].result().unwrap().clone();
    assert_eq!(result["requestState"], "a secret state");
    let params = &result["inputRequests"]["model"]["params"];
    assert_eq!(params["messages"][0]["content"], "my [masked]");
    assert_eq!(result["inputRequests"]["model"].get("jsonrpc"), None);
    let rows = rows.lock().unwrap();
    let input = rows
        .iter()
        .find(|e| e.target.as_deref() == Some("model"))
        .unwrap();
    assert_eq!(input.kind, EventKind::Exchange);
    assert_eq!(input.method.as_deref(), Some("sampling/createMessage"));
    assert!(
        !input
            .params
            .as_ref()
            .unwrap()
            .to_string()
            .contains("secret")
    );
}

#[test]
fn only_input_required_results_are_read_as_input_requests() {
    let (st, rows) = state();
    let (body, refused, _) = answer(
        &st,
        json!({"content": [], "inputRequests": {"pin": {"method": "elicitation/create"}}}),
    );
    assert!(!refused && body.messages().len() == 1);
    assert_eq!(rows.lock().unwrap().len(), 1, "the call's row only");
}
