use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::jsonrpc::{Body, parse};

struct Deny;
impl Phase for Deny {
    fn name(&self) -> &'static str {
        "deny"
    }
    fn on_request(&self, _: &MessageCtx<'_>, msg: &Message) -> Verdict {
        if msg.method() == Some("tools/call") {
            Verdict::Deny(Refusal::new(Reason::PolicyDenied, "no"))
        } else {
            Verdict::Continue
        }
    }
}

struct Rename;
impl Phase for Rename {
    fn name(&self) -> &'static str {
        "rename"
    }
    fn on_request(&self, _: &MessageCtx<'_>, msg: &Message) -> Verdict {
        let mut v = msg.value.clone();
        v["params"]["renamed"] = json!(true);
        Verdict::Rewrite(v)
    }
}

struct HoldThen(Duration, bool);
impl Phase for HoldThen {
    fn name(&self) -> &'static str {
        "hold"
    }
    fn on_request(&self, _: &MessageCtx<'_>, _: &Message) -> Verdict {
        let (d, allow) = (self.0, self.1);
        Verdict::Hold(Box::pin(async move {
            tokio::time::sleep(d).await;
            if allow {
                Verdict::Continue
            } else {
                Verdict::Deny(Refusal::new(Reason::ApprovalDenied, "held no"))
            }
        }))
    }
}

fn msg(s: &str) -> Message {
    match parse(&Bytes::copy_from_slice(s.as_bytes())).unwrap() {
        Body::Single(m) => m,
        Body::Batch(_) => panic!(),
    }
}

async fn run(p: &Pipeline, m: &mut Message) -> Outcome {
    let conn = ConnInfo::between(
        SocketAddr::from(([1, 2, 3, 4], 5)),
        SocketAddr::from(([1, 2, 3, 4], 6)),
    );
    let notes = Notes::default();
    let ctx = MessageCtx::for_test(&conn, &notes);
    p.on_request(&ctx, m).await
}

#[tokio::test]
async fn phases_run_in_order_and_deny_stops_the_rest() {
    let p = Pipeline::new(
        vec![Arc::new(Rename), Arc::new(Deny)],
        Duration::from_secs(1),
    );
    let mut list = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#);
    assert_eq!(
        run(&p, &mut list).await,
        Outcome::Forward { rewritten: true }
    );
    assert_eq!(list.value["params"]["renamed"], true);
    assert!(list.raw.is_none(), "rewritten message is re-serialized");
    let mut call = msg(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#);
    match run(&p, &mut call).await {
        Outcome::Denied { error, phase } => {
            assert_eq!(phase, "deny");
            assert_eq!(error.reason(), Reason::PolicyDenied);
        }
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn holds_resolve_or_expire() {
    let released = Pipeline::new(
        vec![Arc::new(HoldThen(Duration::from_millis(20), true))],
        Duration::from_secs(1),
    );
    let mut m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(
        run(&released, &mut m).await,
        Outcome::Forward { rewritten: false }
    );
    let refused = Pipeline::new(
        vec![Arc::new(HoldThen(Duration::from_millis(1), false))],
        Duration::from_secs(1),
    );
    assert!(matches!(
        run(&refused, &mut m).await,
        Outcome::Denied { .. }
    ));
    let expired = Pipeline::new(
        vec![Arc::new(HoldThen(Duration::from_secs(5), true))],
        Duration::from_millis(20),
    );
    match run(&expired, &mut m).await {
        Outcome::Denied { error, .. } => assert_eq!(error.reason(), Reason::HoldExpired),
        o => panic!("{o:?}"),
    }
}

/// Names itself, and notes each request it sees in a shared log.
struct Named(&'static str, Arc<std::sync::Mutex<Vec<&'static str>>>);
impl Phase for Named {
    fn name(&self) -> &'static str {
        self.0
    }
    fn on_request(&self, _: &MessageCtx<'_>, _: &Message) -> Verdict {
        self.1.lock().unwrap().push(self.0);
        Verdict::Continue
    }
}

/// Every slot with a phase named after it, supplied in `order`.
fn built(order: &[PhaseSlot], seen: &Arc<std::sync::Mutex<Vec<&'static str>>>) -> Pipeline {
    order
        .iter()
        .fold(Pipeline::builder(Duration::from_secs(1)), |b, &slot| {
            let name = format!("{slot:?}").leak();
            b.slot(slot, Arc::new(Named(name, seen.clone())) as Arc<dyn Phase>)
        })
        .build()
}

/// The order the agent's phases run in (`PhaseSlot`'s doc says why);
/// changing it changes what the agent does.
const AGENT_ORDER: [&str; 7] = [
    "Audit",
    "Policy",
    "ToolPins",
    "Mask",
    "Approval",
    "EventsJsonl",
    "Metrics",
];

#[tokio::test]
async fn the_builder_sets_the_order_whatever_order_phases_come_in() {
    use PhaseSlot::*;
    let scrambled = [
        Metrics,
        Mask,
        Audit,
        EventsJsonl,
        Policy,
        Approval,
        ToolPins,
    ];
    let mut reversed = scrambled;
    reversed.reverse();
    for order in [scrambled, reversed] {
        let seen = Arc::default();
        let p = built(&order, &seen);
        let names: Vec<_> = p.phases.iter().map(|p| p.name()).collect();
        assert_eq!(names, AGENT_ORDER, "supplied as {order:?}");
        let mut m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        assert_eq!(run(&p, &mut m).await, Outcome::Forward { rewritten: false });
        assert_eq!(*seen.lock().unwrap(), AGENT_ORDER, "run as {order:?}");
    }
}

#[test]
fn empty_slots_are_skipped_and_a_slot_set_again_is_replaced() {
    let seen = Arc::default();
    let named = |n| Arc::new(Named(n, Arc::clone(&seen))) as Arc<dyn Phase>;
    let p = Pipeline::builder(Duration::from_secs(1))
        .slot(PhaseSlot::Metrics, named("metrics"))
        .slot(PhaseSlot::Mask, named("first mask"))
        .slot(PhaseSlot::Policy, None)
        .slot(PhaseSlot::Audit, named("audit"))
        .slot(PhaseSlot::Mask, named("mask"))
        .slot(PhaseSlot::Approval, named("approval"))
        .slot(PhaseSlot::Approval, None)
        .build();
    let names: Vec<_> = p.phases.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["audit", "mask", "metrics"]);
}
