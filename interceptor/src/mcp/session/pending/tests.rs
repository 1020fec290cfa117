use super::*;

fn event() -> ExchangeEvent {
    crate::mcp::session::tests::event_on("sid", true)
}

/// A second request with the same id, or one a client may take for it,
/// is refused while the first waits; once answered, the id is free.
#[test]
fn one_waiting_request_per_id_and_its_twins() {
    let s = Sessions::default();
    assert!(
        s.expect_unique("sid", "1".into(), event())
            .unwrap()
            .is_empty()
    );
    for twin in ["1", "\"1\"", "\" 1\"", "\"0x1\""] {
        let dup = s.expect_unique("sid", twin.into(), event()).unwrap_err();
        assert_eq!(dup.waiting, "1", "{twin}");
        assert_eq!(s.pending_twin("sid", twin).as_deref(), Some("1"), "{twin}");
    }
    // Another session, or another id, is not a duplicate.
    assert!(s.expect_unique("other", "1".into(), event()).is_ok());
    assert!(s.expect_unique("sid", "2".into(), event()).is_ok());
    assert!(s.expect_unique("sid", "\"one\"".into(), event()).is_ok());
    assert!(s.answer("sid", "1", true).is_some());
    assert!(s.expect_unique("sid", "\"1\"".into(), event()).is_ok());
}

/// An answer's id that matches only loosely is told apart from an exact one.
#[test]
fn loose_matches_name_the_waiting_twins() {
    let s = Sessions::default();
    s.expect_unique("sid", "7".into(), event()).unwrap();
    assert!(s.is_pending("sid", "7"));
    assert!(!s.is_pending("sid", "\"7\""));
    let twins = s.loose_matches("sid", &ids::loose(&serde_json::json!(7.0)));
    assert_eq!(twins, vec!["7".to_string()]);
    assert!(
        s.loose_matches("sid", &ids::loose(&serde_json::json!(8)))
            .is_empty()
    );
}

/// Requests pushed out of a full table are handed back, to be recorded.
#[test]
fn requests_pushed_out_are_returned() {
    let s = Sessions::default();
    for i in 0..MAX_PENDING {
        assert!(
            s.expect_unique("sid", i.to_string(), event())
                .unwrap()
                .is_empty()
        );
    }
    let out = s.expect_unique("sid", "\"new\"".into(), event()).unwrap();
    assert_eq!(out.len(), 1);
    assert!(!s.is_pending("sid", "0"));
    assert!(s.is_pending("sid", "\"new\""));
}
