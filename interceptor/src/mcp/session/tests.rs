use super::*;
use crate::mcp::exchange::Origin;

const ALICE: &str = "oidc|http://issuer|alice";
const BOB: &str = "oidc|http://issuer|bob";

/// The hijack defence rests on this: the per-POST key of an `initialize`
/// is claimed by its caller before the server names the session, and the
/// session id the server returns must still belong to that caller. Were
/// the owner lost on the way, the session would be unowned and go to
/// whoever used it first.
#[test]
fn rename_keeps_the_owner_of_the_initialize() {
    let s = Sessions::default();
    s.claim("\0post-1", ALICE).unwrap();
    s.update_info("\0post-1", |i| i.client_name = Some("raw".into()));
    s.open("\0post-1", "sid-1").unwrap();
    assert_eq!(s.info("sid-1").owner.as_deref(), Some(ALICE));
    assert_eq!(s.info("sid-1").client_name.as_deref(), Some("raw"));
    assert_eq!(
        s.claim("sid-1", BOB),
        Err(ClaimError::Owner(ALICE.to_string()))
    );
    assert_eq!(s.claim("sid-1", ALICE), Ok(()));
    // The per-POST entry is gone, not left to be claimed again.
    assert_eq!(s.info("\0post-1").owner, None);
}

fn event() -> ExchangeEvent {
    event_on("\0post-2", false)
}

/// A refused POST's event on session table entry `key`.
pub(super) fn event_on(key: &str, in_session: bool) -> ExchangeEvent {
    let origin = Origin::test_post(None, Transport::StreamableHttp, key, in_session);
    origin.rejected(0, serde_json::Value::Null, 0)
}

/// Pending requests move with the rename, so the answer on the new key
/// still pairs.
#[test]
fn rename_moves_pending_requests() {
    let s = Sessions::default();
    s.claim("\0post-2", ALICE).unwrap();
    s.expect("\0post-2", "1".into(), event(), false);
    s.open("\0post-2", "sid-2").unwrap();
    assert!(s.answer("\0post-2", "1", true).is_none());
    assert!(s.answer("sid-2", "1", true).is_some());
}

/// A session the agent never saw the server open is no one's: refused,
/// and no entry is made (a flood of made-up ids fills nothing).
#[test]
fn an_unknown_session_is_refused_and_not_remembered() {
    let s = Sessions::default();
    for i in 0..100_000 {
        assert_eq!(s.claim(&format!("junk-{i}"), BOB), Err(ClaimError::Unknown));
    }
    s.update_info("junk-1", |i| i.client_name = Some("x".into()));
    assert!(s.lock().sessions.is_empty());
}

/// A caller's sessions push out only that caller's oldest, never
/// another's binding.
#[test]
fn the_per_caller_bound_evicts_only_the_callers_own_sessions() {
    let s = Sessions::default();
    s.claim("\0post-a", ALICE).unwrap();
    s.open("\0post-a", "alice-1").unwrap();
    for i in 0..(MAX_PER_CALLER + 10) {
        let k = format!("\0post-b{i}");
        s.claim(&k, BOB).unwrap();
        s.open(&k, &format!("bob-{i}")).unwrap();
    }
    assert_eq!(s.claim("alice-1", ALICE), Ok(()));
    assert_eq!(
        s.claim("alice-1", BOB),
        Err(ClaimError::Owner(ALICE.into()))
    );
    assert_eq!(s.claim("bob-0", BOB), Err(ClaimError::Unknown));
    let bobs = (0..MAX_PER_CALLER + 10)
        .filter(|i| s.claim(&format!("bob-{i}"), BOB).is_ok())
        .count();
    assert_eq!(bobs, MAX_PER_CALLER);
}

/// Sessions go by their own idle time; a live one stays.
#[test]
fn idle_sessions_expire_and_used_ones_stay() {
    let s = Sessions::default();
    for (k, who) in [("\0post-x", ALICE), ("\0post-y", BOB)] {
        s.claim(k, who).unwrap();
    }
    s.open("\0post-x", "old").unwrap();
    s.open("\0post-y", "live").unwrap();
    s.expect("old", "1".into(), event(), false);
    let later = Instant::now() + IDLE / 2;
    // Touch "live" half-way (as a request would), then look past IDLE.
    s.lock().sessions.get_mut("live").unwrap().last_used = later;
    let left = s.expire_idle(Instant::now() + IDLE + Duration::from_secs(1));
    assert_eq!(
        left.len(),
        1,
        "the idle session's pending request is returned"
    );
    assert_eq!(s.claim("old", ALICE), Err(ClaimError::Unknown));
    assert_eq!(s.claim("live", BOB), Ok(()));
}

/// A server naming a session bound to someone else does not hand it over.
#[test]
fn a_server_cannot_rebind_another_callers_session() {
    let s = Sessions::default();
    s.claim("\0post-1", ALICE).unwrap();
    s.open("\0post-1", "sid").unwrap();
    s.claim("\0post-2", BOB).unwrap();
    assert_eq!(s.open("\0post-2", "sid").err(), Some(OpenError::Taken));
    assert_eq!(s.claim("sid", BOB), Err(ClaimError::Owner(ALICE.into())));
}

/// Legacy POSTs are matched on the parsed session parameter.
#[test]
fn legacy_sessions_match_on_the_parsed_parameter() {
    let s = Sessions::default();
    s.learn_legacy_endpoint("/message?sessionId=abc", "/message?sessionId=abc");
    let key = Some("/message?sessionId=abc".to_string());
    assert_eq!(s.legacy_session("/message?sessionId=abc"), Ok(key.clone()));
    assert_eq!(
        s.legacy_session("/message?sessionId=abc&x=1"),
        Ok(key.clone())
    );
    assert_eq!(
        s.legacy_session("/MESSAGE/?x=1&sessionId=abc"),
        Ok(key.clone())
    );
    assert_eq!(s.legacy_session("/message?sessionId=%61bc"), Ok(key));
    assert!(matches!(
        s.legacy_session("/message?sessionId=abc&sessionId=def"),
        Err(LegacyError::Ambiguous(_))
    ));
    assert!(matches!(
        s.legacy_session("/message?sessionid=abc"),
        Err(LegacyError::Ambiguous(_))
    ));
    assert_eq!(
        s.legacy_session("/message?sessionId=zzz"),
        Err(LegacyError::Unknown)
    );
    assert_eq!(s.legacy_session("/message?other=1"), Ok(None));
    assert_eq!(s.legacy_session("/elsewhere?sessionId=abc"), Ok(None));
    assert!(s.is_legacy_path("/message"));
    s.close("/message?sessionId=abc");
    assert!(!s.is_legacy_path("/message"));
}
