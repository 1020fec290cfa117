use serde_json::json;

use super::*;

fn twin(a: Value, b: Value) -> bool {
    twins(&loose(&a), &loose(&b))
}

#[test]
fn ids_a_client_may_confuse_are_twins() {
    assert!(twin(json!(1), json!(1)));
    assert!(twin(json!(1), json!("1")));
    assert!(twin(json!(1), json!(1.0)));
    assert!(twin(json!(1), json!(" 1 ")));
    assert!(twin(json!(1), json!("1e0")));
    assert!(twin(json!(1), json!("+1")));
    assert!(twin(json!(16), json!("0x10")));
    assert!(twin(json!(10), json!("1_0")));
    assert!(twin(json!(0), json!("")));
    assert!(twin(json!(0), json!(-0.0)));
    // JavaScript cannot tell these apart.
    assert!(twin(json!(9007199254740993u64), json!(9007199254740992u64)));
    assert!(twin(json!("abc"), json!("abc")));
}

#[test]
fn distinct_ids_are_not_twins() {
    assert!(!twin(json!(1), json!(2)));
    assert!(!twin(json!(1), json!("one")));
    assert!(!twin(json!("a"), json!("A")));
    assert_eq!(loose(&json!("NaN")), Loose::Text("NaN".into()));
    assert!(!twin(json!(null), json!(null)));
    assert!(!twin(json!(1), json!("1x")));
}

#[test]
fn pairing_keys_read_back() {
    assert_eq!(loose_key("1"), loose(&json!("1")));
    assert_eq!(loose_key("\"abc\""), Loose::Text("abc".into()));
    assert_eq!(loose_key("not json"), Loose::None);
}
