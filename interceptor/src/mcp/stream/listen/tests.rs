use bytes::Bytes;
use serde_json::json;

use super::listens_only;
use crate::jsonrpc::parse;

fn body(v: serde_json::Value) -> crate::jsonrpc::Body {
    parse(&Bytes::from(v.to_string())).unwrap()
}

#[test]
fn only_a_post_of_listen_requests_alone_is_long_lived() {
    let listen = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true}}});
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x"}});
    assert!(listens_only(&body(listen.clone()), &[true]));
    assert!(!listens_only(&body(call.clone()), &[true]));
    let both = body(json!([listen, call]));
    assert!(
        !listens_only(&both, &[true, true]),
        "a call must not wait on a stream slot"
    );
    assert!(listens_only(&both, &[true, false]));
    assert!(!listens_only(&both, &[false, true]));
    assert!(
        !listens_only(&both, &[false, false]),
        "nothing goes: no stream"
    );
    let note = json!({"jsonrpc": "2.0", "method": "subscriptions/listen"});
    assert!(
        !listens_only(&body(note), &[true]),
        "a notification has no answer"
    );
}
