use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{
    pipeline::{ApprovalMode, ApprovalRule},
    policy::phase::Grants,
};

const I: &str = "https://idp.example";

fn open(dir: &std::path::Path, tune: impl FnOnce(&mut Config)) -> Arc<Approvals> {
    let mut cfg = Config::default();
    cfg.approvals.db = Some(dir.join("approvals.db"));
    cfg.approvals.grant_groups = vec!["security".into()];
    tune(&mut cfg);
    Approvals::open(&cfg, None, Arc::new(|v: &Value| v.clone())).unwrap()
}

fn call(args: Value, quorum: u32, mode: ApprovalMode) -> Call {
    Call {
        subject: "alice".into(),
        issuer: I.into(),
        groups: vec!["dev".into()],
        server: "db".into(),
        method: "tools/call".into(),
        target: Some("drop_table".into()),
        arguments: Some(args),
        policy_version: "v1".into(),
        policies: vec!["needs-oncall".into()],
        rule: ApprovalRule {
            groups: vec!["oncall".into()],
            quorum,
            mode,
        },
    }
}

fn actor(subject: &str, groups: &[&str]) -> Actor {
    Actor {
        subject: subject.into(),
        issuer: I.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        via: "test".into(),
        human: super::human_key(I, subject),
    }
}

#[test]
fn approval_is_single_use_and_bound_to_the_exact_call() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |_| {});
    let c = call(json!({"table": "orders"}), 1, ApprovalMode::Retry);
    let r = a.request(&c).unwrap();
    assert!(r.id.starts_with("apr-"));
    assert_eq!(a.pending_for(&c).unwrap().unwrap().id, r.id);
    assert!(matches!(
        a.vote(&r.id, &actor("alice", &["oncall"]), true, "mine"),
        Err(ApprovalError::SelfApproval(_))
    ));
    assert!(matches!(
        a.vote(&r.id, &actor("mallory", &["dev"]), true, "sure"),
        Err(ApprovalError::NotApprover { .. })
    ));
    assert!(matches!(
        a.vote(&r.id, &actor("bob", &["oncall"]), true, " "),
        Err(ApprovalError::Invalid(_))
    ));
    let done = a
        .vote(&r.id, &actor("bob", &["oncall"]), true, "INC-1")
        .unwrap();
    assert_eq!(done.status, Status::Approved);
    assert_eq!(done.approvers(), vec!["bob".to_string()]);
    // Changed arguments or a new policy version are another call.
    let other = call(json!({"table": "users"}), 1, ApprovalMode::Retry);
    assert!(a.consume(&other.digest()).unwrap().is_none());
    let mut newer = c.clone();
    newer.policy_version = "v2".into();
    assert!(a.consume(&newer.digest()).unwrap().is_none());
    // The identical call passes once.
    assert_eq!(a.consume(&c.digest()).unwrap().unwrap().id, r.id);
    assert!(a.consume(&c.digest()).unwrap().is_none());
    assert_eq!(a.get(&r.id).unwrap().status, Status::Used);
}

#[test]
fn digest_ignores_key_order_but_not_values() {
    let a = call(json!({"x": 1, "y": [1, 2]}), 1, ApprovalMode::Hold);
    let b = call(json!({"y": [1, 2], "x": 1}), 1, ApprovalMode::Hold);
    let c = call(json!({"y": [2, 1], "x": 1}), 1, ApprovalMode::Hold);
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn quorum_needs_distinct_approvers_and_one_no_denies() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |_| {});
    let r = a.request(&call(json!({}), 2, ApprovalMode::Hold)).unwrap();
    let rx = a.subscribe(&r.id);
    let bob = actor("bob", &["oncall"]);
    assert_eq!(
        a.vote(&r.id, &bob, true, "ok").unwrap().status,
        Status::Pending
    );
    assert!(matches!(
        a.vote(&r.id, &bob, true, "again"),
        Err(ApprovalError::AlreadyVoted(_))
    ));
    assert_eq!(*rx.borrow(), Status::Pending);
    let done = a
        .vote(&r.id, &actor("carol", &["oncall"]), true, "ok too")
        .unwrap();
    assert_eq!(done.status, Status::Approved);
    assert_eq!(*rx.borrow(), Status::Approved);

    let r2 = a
        .request(&call(json!({"n": 2}), 2, ApprovalMode::Hold))
        .unwrap();
    a.vote(&r2.id, &bob, true, "fine").unwrap();
    let denied = a
        .vote(
            &r2.id,
            &actor("carol", &["oncall"]),
            false,
            "not during the freeze",
        )
        .unwrap();
    assert_eq!(denied.status, Status::Denied);
    assert!(matches!(
        a.vote(&r2.id, &actor("dave", &["oncall"]), true, "late"),
        Err(ApprovalError::NotPending(_, "denied"))
    ));
}

#[test]
fn pending_requests_expire_and_held_ones_do_not_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |c| c.approvals.pending_seconds = 1);
    let retry = a
        .request(&call(json!({"r": 1}), 1, ApprovalMode::Retry))
        .unwrap();
    let held = a
        .request(&call(json!({"h": 1}), 1, ApprovalMode::Hold))
        .unwrap();
    drop(a);
    let a = open(dir.path(), |c| c.approvals.pending_seconds = 1);
    assert_eq!(a.get(&held.id).unwrap().status, Status::Interrupted);
    assert!(matches!(
        a.vote(&held.id, &actor("bob", &["oncall"]), true, "too late"),
        Err(ApprovalError::NotPending(_, "interrupted"))
    ));
    assert_eq!(a.get(&retry.id).unwrap().status, Status::Pending);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.sweep();
    assert_eq!(a.get(&retry.id).unwrap().status, Status::Expired);
}

#[test]
fn grants_cover_matching_tools_until_revoked_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |c| c.approvals.max_grant_ttl_seconds = 3600);
    let sec = actor("sam", &["security"]);
    let new = |tool: &str, ttl| NewGrant {
        subject: "alice".into(),
        issuer: Some(I.into()),
        server: "*".into(),
        tool: tool.into(),
        ttl_seconds: ttl,
        reason: "INC-7".into(),
    };
    assert!(matches!(
        a.grant_add(&actor("bob", &["oncall"]), new("db.*", 60)),
        Err(ApprovalError::NotGranter(_))
    ));
    assert!(matches!(
        a.grant_add(&sec, new("db.*", 7200)),
        Err(ApprovalError::Invalid(_))
    ));
    let g = a.grant_add(&sec, new("db.*", 60)).unwrap();
    assert_eq!(g.granted_by, "sam");
    assert_eq!(
        a.covering(I, "alice", "db", "db.query"),
        vec!["db.*".to_string()]
    );
    assert!(a.covering(I, "alice", "db", "shell.exec").is_empty());
    assert!(a.covering(I, "bob", "db", "db.query").is_empty());
    a.grant_revoke(&sec, &g.id, "done").unwrap();
    assert!(a.covering(I, "alice", "db", "db.query").is_empty());
    assert!(matches!(
        a.grant_revoke(&sec, &g.id, "again"),
        Err(ApprovalError::NoGrant(_))
    ));
    let short = a.grant_add(&sec, new("db.query", 1)).unwrap();
    assert_eq!(a.grants_list(&sec, false).unwrap().len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(a.covering(I, "alice", "db", "db.query").is_empty());
    a.sweep();
    assert!(a.grants_list(&sec, false).unwrap().is_empty());
    let all = a.grants_list(&sec, true).unwrap();
    assert!(all.iter().any(|x| x.id == short.id));
}

#[test]
fn grants_are_per_issuer_and_never_to_oneself() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |c| c.approvals.max_grant_ttl_seconds = 3600);
    let sec = actor("sam", &["security"]);
    let new = |subject: &str, issuer: Option<&str>| NewGrant {
        subject: subject.into(),
        issuer: issuer.map(str::to_string),
        server: "*".into(),
        tool: "db.*".into(),
        ttl_seconds: 60,
        reason: "INC-7".into(),
    };
    assert!(matches!(
        a.grant_add(&sec, new("sam", Some(I))),
        Err(ApprovalError::SelfGrant(_))
    ));
    assert!(
        matches!(
            a.grant_add(&sec, new("sam", Some("https://other.example"))),
            Err(ApprovalError::SelfGrant(_))
        ),
        "the same name under another issuer is refused too (the safe side)"
    );
    assert!(
        matches!(
            a.grant_add(&sec, new("alice", None)),
            Err(ApprovalError::Invalid(_))
        ),
        "no OIDC issuer configured: the issuer must be named"
    );
    a.grant_add(&sec, new("alice", Some(I))).unwrap();
    assert_eq!(a.covering(I, "alice", "db", "db.query").len(), 1);
    assert!(
        a.covering("https://other.example", "alice", "db", "db.query")
            .is_empty()
    );
    assert!(
        a.covering("CN=Corp CA", "alice", "db", "db.query")
            .is_empty()
    );
    // A caller who is not a granter sees only its own grants.
    assert_eq!(
        a.grants_list(&actor("alice", &["dev"]), false)
            .unwrap()
            .len(),
        1
    );
    assert!(
        a.grants_list(&actor("bob", &["dev"]), false)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_digest_and_the_listing_tell_issuers_apart() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |_| {});
    let c = call(json!({"table": "orders"}), 1, ApprovalMode::Retry);
    let other = Call {
        issuer: "https://other.example".into(),
        ..c.clone()
    };
    assert_ne!(c.digest(), other.digest());
    let r = a.request(&c).unwrap();
    assert_eq!(
        a.list_for(&actor("alice", &["dev"]), None).unwrap().len(),
        1
    );
    assert_eq!(
        a.list_for(&actor("carol", &["oncall"]), None)
            .unwrap()
            .len(),
        1
    );
    assert!(
        a.list_for(&actor("mallory", &["dev"]), None)
            .unwrap()
            .is_empty()
    );
    let alien = Actor {
        issuer: "https://other.example".into(),
        human: super::human_key("https://other.example", "alice"),
        ..actor("alice", &["dev"])
    };
    assert!(a.list_for(&alien, None).unwrap().is_empty());
    assert!(matches!(
        a.get_for(&actor("mallory", &["dev"]), &r.id),
        Err(ApprovalError::NotFound(_))
    ));
}
