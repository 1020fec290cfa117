use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{Claims, PREFIX, StateError, StateKey, call_key, is_ours, random_key};
use crate::{approval::store::Backend, pipeline::CallFacts};

const NOW: i64 = 1_800_000_000_000_000;

fn facts(subject: &str, args: &str) -> CallFacts {
    CallFacts {
        subject: subject.into(),
        issuer: "https://issuer.example".into(),
        groups: vec!["dev".into()],
        server: "127.0.0.1:8080".into(),
        method: "tools/call".into(),
        target: Some("lookup".into()),
        arguments_sha256: args.into(),
        policy_version: "v1".into(),
    }
}

fn claims(f: &CallFacts) -> Claims {
    Claims {
        approval: "apr-0123456789abcdef".into(),
        issuer: f.issuer.clone(),
        subject: f.subject.clone(),
        call: call_key(f),
        expires_us: NOW + 60_000_000,
    }
}

#[test]
fn a_sealed_state_opens_to_its_claims_and_checks_for_its_call() {
    let key = StateKey::new(&random_key());
    let f = facts("alice", "aa");
    let token = key.seal(&claims(&f));
    assert!(is_ours(&token) && token.starts_with(PREFIX));
    assert!(
        !token.contains("alice") && !token.contains("apr-"),
        "{token}"
    );
    let got = key.open(&token).unwrap();
    assert_eq!(got, claims(&f));
    assert_eq!(got.check(&f, NOW), Ok(()));
    // A policy reload between the rounds does not make it another call.
    let mut reloaded = f.clone();
    reloaded.policy_version = "v2".into();
    assert_eq!(got.check(&reloaded, NOW), Ok(()));
    // Two seals of the same claims differ (fresh nonce).
    assert_ne!(key.seal(&claims(&f)), token);
}

#[test]
fn tampered_states_are_forged() {
    let key = StateKey::new(&random_key());
    let token = key.seal(&claims(&facts("alice", "aa")));
    let mut raw = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
    for i in [0, raw.len() / 2, raw.len() - 1] {
        raw[i] ^= 1;
        let bad = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(key.open(&bad), Err(StateError::Forged), "byte {i}");
        raw[i] ^= 1;
    }
    for bad in [
        "",
        PREFIX,
        "mcpi1.!!",
        "mcpi1.AAAA",
        &token[..token.len() - 2],
        &token.replacen(PREFIX, "mcpi2.", 1),
    ] {
        assert_eq!(key.open(bad), Err(StateError::Forged), "{bad:?}");
    }
    // Another agent's key (or a key lost since) opens nothing.
    let other = StateKey::new(&random_key());
    assert_eq!(other.open(&token), Err(StateError::Forged));
    // The untouched token still opens: the loop above restored it.
    assert!(key.open(&token).is_ok());
}

#[test]
fn expired_states_are_refused() {
    let f = facts("alice", "aa");
    let c = claims(&f);
    assert_eq!(c.check(&f, c.expires_us - 1), Ok(()));
    assert_eq!(c.check(&f, c.expires_us), Err(StateError::Expired));
    assert_eq!(c.check(&f, c.expires_us + 1), Err(StateError::Expired));
}

/// A state holds for its caller's own call only: another caller (another
/// subject, or the same name of another issuer) or another call (its
/// arguments, server, method or target) is refused, each with its reason.
#[test]
fn another_callers_or_another_calls_state_is_refused() {
    let f = facts("alice", "aa");
    let c = claims(&f);
    type Change = fn(&mut CallFacts);
    let changes: [(Change, StateError); 7] = [
        (|f| *f = facts("mallory", "aa"), StateError::OtherCaller),
        // "alice" of another issuer is someone else.
        (
            |f| f.issuer = "https://other.example".into(),
            StateError::OtherCaller,
        ),
        (|f| *f = facts("alice", "bb"), StateError::OtherCall),
        (
            |f| f.server = "127.0.0.1:9090".into(),
            StateError::OtherCall,
        ),
        (|f| f.method = "prompts/get".into(), StateError::OtherCall),
        (|f| f.target = Some("delete".into()), StateError::OtherCall),
        (|f| f.target = None, StateError::OtherCall),
    ];
    for (change, want) in changes {
        let mut other = f.clone();
        change(&mut other);
        assert_eq!(c.check(&other, NOW), Err(want), "{other:?}");
    }
}

#[test]
fn only_the_agents_prefix_is_ours() {
    assert!(is_ours("mcpi1.abc"));
    assert!(!is_ours("round-1"));
    assert!(!is_ours("MCPI1.abc"));
    assert!(!is_ours(""));
}

#[test]
fn the_key_is_made_once_and_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let first = crate::approval::store::Store::open(&path).unwrap();
    let k1 = first.state_key().unwrap();
    assert_eq!(first.state_key().unwrap(), k1, "asked twice, made once");
    drop(first);
    let token = StateKey::new(&k1).seal(&claims(&facts("alice", "aa")));
    let reopened = crate::approval::store::Store::open(&path).unwrap();
    let k2 = reopened.state_key().unwrap();
    assert_eq!(k2, k1);
    assert!(StateKey::new(&k2).open(&token).is_ok());
    // Another agent's database has another key.
    let other = tempfile::tempdir().unwrap();
    let k3 = crate::approval::store::Store::open(&other.path().join("approvals.db"))
        .unwrap()
        .state_key()
        .unwrap();
    assert_ne!(k3, k1);
}
