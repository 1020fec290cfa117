use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{
    approval::state::State,
    pipeline::{ApprovalMode, ApprovalRule},
    policy::phase::Grants,
};

const I: &str = "https://idp.example";
/// `call({"table": "orders"})`'s digests, as every version computed them.
const DIGEST: &str = "abdc403aa86687544b182618e37cb2872cf9cd9089f2c43884183d1ca2add4c4";
const ARGS_SHA256: &str = "b261e6a3dbf5b58dc222587a494f8b17c7db6e9e0499dea8679edd2332563fda";

fn open(dir: &std::path::Path, tune: impl FnOnce(&mut Config)) -> Arc<Approvals> {
    let mut cfg = Config::default();
    cfg.approvals.db = Some(dir.join("approvals.db"));
    cfg.approvals.grant_groups = vec!["security".into()];
    tune(&mut cfg);
    Approvals::open(&cfg, Events::default(), Arc::new(|v: &Value| v.clone())).unwrap()
}

/// A store under `dir` (the default config) holding one request: for
/// `args`, needing `quorum` approvers, in `mode`.
fn one_request(
    dir: &std::path::Path,
    args: Value,
    quorum: u32,
    mode: ApprovalMode,
) -> (Arc<Approvals>, Approval) {
    let a = open(dir, |_| {});
    let r = a.request(&call(args, quorum, mode)).unwrap();
    (a, r)
}

fn facts() -> CallFacts {
    CallFacts {
        subject: "alice".into(),
        issuer: I.into(),
        groups: vec!["dev".into()],
        server: "db".into(),
        method: "tools/call".into(),
        target: Some("drop_table".into()),
        arguments_sha256: String::new(),
        policy_version: "v1".into(),
    }
}

fn call(args: Value, quorum: u32, mode: ApprovalMode) -> Call {
    let rule = ApprovalRule {
        groups: vec!["oncall".into()],
        quorum,
        mode,
    };
    Call::new(facts(), Some(args), vec!["needs-oncall".into()], rule)
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
    newer.facts.policy_version = "v2".into();
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

/// Stored approvals are found by this digest: it must not change across
/// versions (an approved retry-mode call would no longer match), nor may
/// the arguments' digest.
#[test]
fn the_digest_is_stable_across_versions() {
    let c = call(json!({"table": "orders"}), 1, ApprovalMode::Retry);
    assert_eq!(c.digest(), DIGEST);
    assert_eq!(c.facts.arguments_sha256, ARGS_SHA256);
}

/// Two moves on one request: the first wins, the second finds it moved
/// (a vote racing the sweeper), and the store keeps the winner's status.
#[test]
fn of_two_moves_on_one_request_the_first_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (a, r) = one_request(dir.path(), json!({}), 1, ApprovalMode::Retry);
    let (first, second) = (r.pending().unwrap(), r.pending().unwrap());
    let won = first.deny(&a.db(), "no").unwrap();
    assert_eq!(won.as_ref().map(State::id), Some(r.id.as_str()));
    assert!(second.expire(&a.db(), "late").unwrap().is_none());
    let got = a.get(&r.id).unwrap();
    assert_eq!(
        (got.status, got.reason.as_deref()),
        (Status::Denied, Some("no"))
    );
    assert!(got.pending().is_none() && got.approved().is_none());
}

/// The admin API and `approvals list/show --json` give these keys, in
/// this order, whatever the struct holds inside.
#[test]
fn an_approval_serializes_as_it_always_has() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = one_request(dir.path(), json!({"k": 1}), 1, ApprovalMode::Retry);
    let v = serde_json::to_value(&r).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "status",
            "mode",
            "subject",
            "issuer",
            "groups",
            "server",
            "method",
            "target",
            "arguments",
            "arguments_sha256",
            "digest",
            "policy_version",
            "policies",
            "approver_groups",
            "quorum",
            "created_us",
            "expires_us",
            "decided_us",
            "valid_until_us",
            "reason",
            "votes",
        ]
    );
    assert_eq!(v["subject"], "alice");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["arguments_sha256"], r.call.arguments_sha256);
}

#[test]
fn quorum_needs_distinct_approvers_and_one_no_denies() {
    let dir = tempfile::tempdir().unwrap();
    let (a, r) = one_request(dir.path(), json!({}), 2, ApprovalMode::Hold);
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
    // `grants list --json` and the admin API: these keys, in this order,
    // the revocation's at the top level.
    let revoked = all.iter().find(|x| x.id == g.id).unwrap();
    let v = serde_json::to_value(revoked).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "subject",
            "issuer",
            "server",
            "tool",
            "created_us",
            "expires_us",
            "granted_by",
            "reason",
            "revoked_us",
            "revoked_by",
            "revoke_reason"
        ]
    );
    assert_eq!(
        (&v["revoked_by"], &v["revoke_reason"]),
        (&json!("sam"), &json!("done"))
    );
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
    for (who, seen) in [("alice", 1), ("bob", 0)] {
        let grants = a.grants_list(&actor(who, &["dev"]), false).unwrap();
        assert_eq!(grants.len(), seen, "{who}");
    }
}

#[test]
fn the_digest_and_the_listing_tell_issuers_apart() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |_| {});
    let c = call(json!({"table": "orders"}), 1, ApprovalMode::Retry);
    let mut other = c.clone();
    other.facts.issuer = "https://other.example".into();
    assert_ne!(c.digest(), other.digest());
    let r = a.request(&c).unwrap();
    for (who, group, seen) in [
        ("alice", "dev", 1),
        ("carol", "oncall", 1),
        ("mallory", "dev", 0),
    ] {
        let listed = a.list_for(&actor(who, &[group]), None).unwrap();
        assert_eq!(listed.len(), seen, "{who}");
    }
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

/// Masks every string, as the audit's profile would a secret.
fn open_masked(dir: &std::path::Path, tune: impl FnOnce(&mut Config)) -> Arc<Approvals> {
    let mut cfg = Config::default();
    cfg.approvals.db = Some(dir.join("approvals.db"));
    tune(&mut cfg);
    let mask = |v: &Value| -> Value {
        match v {
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| (k.clone(), json!(if v.is_string() { "[X]" } else { "" })))
                .collect(),
            v => v.clone(),
        }
    };
    Approvals::open(&cfg, Events::default(), Arc::new(mask)).unwrap()
}

#[test]
fn real_values_are_held_in_memory_and_a_blind_yes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_masked(dir.path(), |_| {});
    let c = call(json!({"account": "DE89"}), 1, ApprovalMode::Retry);
    let r = a.request(&c).unwrap();
    assert_eq!(r.arguments, Some(json!({"account": "[X]"})));
    let bob = actor("bob", &["oncall"]);
    assert_eq!(
        a.values_for(&bob, &r.id).unwrap()["arguments"],
        json!({"account": "DE89"})
    );
    assert!(matches!(
        a.values_for(&actor("mallory", &["dev"]), &r.id),
        Err(ApprovalError::NotFound(_))
    ));
    drop(a);
    let a = open_masked(dir.path(), |_| {});
    assert!(matches!(
        a.values_for(&bob, &r.id),
        Err(ApprovalError::ValuesGone(_))
    ));
    assert!(matches!(
        a.vote(&r.id, &bob, true, "ok"),
        Err(ApprovalError::ValuesGone(_))
    ));
    // The caller asking again brings them back.
    assert_eq!(a.pending_for(&c).unwrap().unwrap().id, r.id);
    assert_eq!(
        a.vote(&r.id, &bob, true, "ok").unwrap().status,
        Status::Approved
    );
    assert!(matches!(
        a.values_for(&bob, &r.id),
        Err(ApprovalError::ValuesGone(_))
    ));
}

#[test]
fn each_caller_has_a_cap_of_pending_requests_and_listings_page_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), |c| c.approvals.max_pending_per_caller = 3);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            a.request(&call(json!({"n": i}), 1, ApprovalMode::Retry))
                .unwrap()
                .id
        })
        .collect();
    assert!(matches!(
        a.request(&call(json!({"n": 9}), 1, ApprovalMode::Retry)),
        Err(ApprovalError::Cap(3))
    ));
    let mut other = call(json!({"n": 9}), 1, ApprovalMode::Retry);
    other.facts.subject = "dave".into();
    let dave = a.request(&other).unwrap().id;
    let carol = actor("carol", &["oncall"]);
    let mut q = PageQuery {
        status: Some(Status::Pending),
        limit: 2,
        ..PageQuery::default()
    };
    let p1 = a.page_for(&carol, &q).unwrap();
    assert_eq!(
        p1.approvals.iter().map(|x| &x.id).collect::<Vec<_>>(),
        [&ids[0], &ids[1]]
    );
    q.cursor = p1.next_cursor;
    let p2 = a.page_for(&carol, &q).unwrap();
    assert_eq!(
        p2.approvals.iter().map(|x| &x.id).collect::<Vec<_>>(),
        [&ids[2], &dave]
    );
    assert_eq!(p2.next_cursor, None);
    q.newest_first = true;
    q.cursor = None;
    assert_eq!(a.page_for(&carol, &q).unwrap().approvals[0].id, dave);
    q.cursor = Some("nonsense".into());
    assert!(matches!(
        a.page_for(&carol, &q),
        Err(ApprovalError::Invalid(_))
    ));
    // A decision frees a slot.
    a.vote(&ids[0], &carol, false, "flood").unwrap();
    a.request(&call(json!({"n": 9}), 1, ApprovalMode::Retry))
        .unwrap();
}

#[test]
fn a_human_linked_across_names_votes_once_and_not_on_their_own_call() {
    let dir = tempfile::tempdir().unwrap();
    let (a, r) = one_request(dir.path(), json!({"q": 1}), 2, ApprovalMode::Retry);
    // root as "bob", linked to "robert" of I; and robert's own token.
    let local = Actor {
        issuer: String::new(),
        via: "local:root".into(),
        human: human_key(I, "robert"),
        ..actor("bob", &["oncall"])
    };
    let robert = actor("robert", &["oncall"]);
    a.vote(&r.id, &local, true, "ok").unwrap();
    assert!(matches!(
        a.vote(&r.id, &robert, true, "ok"),
        Err(ApprovalError::AlreadyVoted(_))
    ));
    let mut own = call(json!({"q": 2}), 1, ApprovalMode::Retry);
    own.facts.subject = "robert".into();
    let own = a.request(&own).unwrap();
    assert!(matches!(
        a.vote(&own.id, &local, true, "ok"),
        Err(ApprovalError::SelfApproval(_))
    ));
}
