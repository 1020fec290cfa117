use super::*;
use crate::{mcp::exchange::Origin, proxy::ConnInfo};

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
    s.rename("\0post-1", "sid-1");
    assert_eq!(s.info("sid-1").owner.as_deref(), Some(ALICE));
    assert_eq!(s.info("sid-1").client_name.as_deref(), Some("raw"));
    assert_eq!(s.claim("sid-1", BOB), Err(ALICE.to_string()));
    assert_eq!(s.claim("sid-1", ALICE), Ok(()));
    // The per-POST entry is gone, not left to be claimed again.
    assert_eq!(s.info("\0post-1").owner, None);
}

fn event() -> ExchangeEvent {
    let origin = Origin {
        conn: ConnInfo {
            id: 1,
            client: "127.0.0.1:1".parse().unwrap(),
            orig_dst: "127.0.0.1:2".parse().unwrap(),
            tls: None,
        },
        caller: None,
        transport: Transport::StreamableHttp,
        key: "\0post-2".into(),
        in_session: false,
        http_method: "POST".into(),
        http_path: "/mcp".into(),
    };
    origin.rejected(0, serde_json::Value::Null, 0)
}

/// Pending requests move with the rename, so the answer on the new key
/// still pairs.
#[test]
fn rename_moves_pending_requests() {
    let s = Sessions::default();
    s.claim("\0post-2", ALICE).unwrap();
    s.expect("\0post-2", "1".into(), event(), false);
    s.rename("\0post-2", "sid-2");
    assert!(s.answer("\0post-2", "1", true).is_none());
    assert!(s.answer("sid-2", "1", true).is_some());
}

/// A session the agent never saw open goes to its first caller, and from
/// then on to no one else.
#[test]
fn an_unknown_session_is_bound_to_its_first_caller() {
    let s = Sessions::default();
    assert_eq!(s.claim("sid-3", BOB), Ok(()));
    assert_eq!(s.claim("sid-3", ALICE), Err(BOB.to_string()));
    assert_eq!(s.claim("sid-3", BOB), Ok(()));
}
