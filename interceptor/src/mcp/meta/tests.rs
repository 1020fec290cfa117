use serde_json::json;

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn tp(s: &str) -> Option<(String, String)> {
    traceparent(s)
}

#[test]
fn a_valid_traceparent_gives_its_trace_and_parent_ids() {
    let ok = Some((TRACE.to_owned(), SPAN.to_owned()));
    assert_eq!(tp(&format!("00-{TRACE}-{SPAN}-01")), ok);
    assert_eq!(tp(&format!("00-{TRACE}-{SPAN}-00")), ok);
    // A later version may append fields after a dash.
    assert_eq!(tp(&format!("01-{TRACE}-{SPAN}-01-what-ever")), ok);
    assert_eq!(tp(&format!("01-{TRACE}-{SPAN}-01")), ok);
}

#[test]
fn a_malformed_traceparent_gives_nothing() {
    for bad in [
        String::new(),
        "garbage".into(),
        format!("00-{TRACE}-{SPAN}"),
        format!("00-{TRACE}-{SPAN}-01-"),
        format!("00-{TRACE}-{SPAN}-01x"),
        format!("01-{TRACE}-{SPAN}-01x"),
        format!("ff-{TRACE}-{SPAN}-01"),
        format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
        format!("00-{}-{SPAN}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{TRACE}-{SPAN}-0g"),
        format!("0-{TRACE}0-{SPAN}-01"),
        format!("00_{TRACE}_{SPAN}_01"),
        format!("00-{TRACE}-{SPAN}-01").replace('b', "é"),
    ] {
        assert_eq!(tp(&bad), None, "{bad:?}");
    }
}

#[test]
fn trace_reads_meta_traceparent_only() {
    let good = format!("00-{TRACE}-{SPAN}-01");
    let p = json!({"_meta": {"traceparent": good}});
    assert_eq!(
        trace(Some(&p)),
        (Some(TRACE.to_owned()), Some(SPAN.to_owned()))
    );
    for p in [
        json!({"traceparent": good}),
        json!({"_meta": {"traceparent": 7}}),
        json!({"_meta": {"traceparent": "00-nope"}}),
        json!({"_meta": "x"}),
        json!([1]),
    ] {
        assert_eq!(trace(Some(&p)), (None, None), "{p}");
    }
    assert_eq!(trace(None), (None, None));
}

#[test]
fn stateless_client_fills_name_version_and_protocol() {
    let p = json!({"_meta": {
        META_CLIENT_INFO: {"name": "cli", "version": "2.3.0"},
        META_PROTOCOL_VERSION: "2026-07-28"}});
    let mut i = SessionInfo::default();
    stateless_client(Some(&p), &mut i);
    assert_eq!(i.client_name.as_deref(), Some("cli"));
    assert_eq!(i.client_version.as_deref(), Some("2.3.0"));
    assert_eq!(i.protocol_version.as_deref(), Some("2026-07-28"));
    // The header's version (checked equal to the body's) stays.
    let mut i = SessionInfo {
        protocol_version: Some("from-header".into()),
        ..Default::default()
    };
    stateless_client(Some(&p), &mut i);
    assert_eq!(i.protocol_version.as_deref(), Some("from-header"));
}

#[test]
fn stateless_client_keeps_no_odd_values() {
    let long = "x".repeat(MAX_TEXT + 1);
    let p = json!({"_meta": {META_CLIENT_INFO: {"name": long, "version": 3}, META_PROTOCOL_VERSION: {}}});
    let mut i = SessionInfo::default();
    stateless_client(Some(&p), &mut i);
    assert_eq!(i.client_name, None);
    assert_eq!(i.client_version, None);
    assert_eq!(i.protocol_version, None);
}
