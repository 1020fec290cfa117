use std::sync::Arc;

use super::*;

const CID: &str = "4f2a9c0d1e8b7a6f5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b";

/// A process as the capture would report it, in `cgroup`, running `exe`.
pub(crate) fn facts(uid: u32, cgroup: &str, exe: &str) -> Arc<ProcessFacts> {
    Arc::new(ProcessFacts {
        pid: 4242,
        tid: 4243,
        uid,
        gid: uid,
        login_uid: None,
        comm: "python3".into(),
        cgroup_id: 77,
        cgroup_path: Some(cgroup.into()),
        exe_path: Some(exe.into()),
        exe_ino: 1234,
        exe_dev: 66,
        exe_sha256: Some("ab".repeat(32)),
        start_time_ns: 1_000_000,
    })
}

fn rule(subject: &str) -> ProcessRule {
    ProcessRule {
        subject: subject.into(),
        groups: vec!["agents".into()],
        user: None,
        uid: None,
        unit: None,
        cgroup: None,
        exe: None,
        exe_sha256: None,
    }
}

#[test]
fn systemd_units() {
    let p = placement("/system.slice/ai-agent.service");
    assert_eq!(p.unit.as_deref(), Some("ai-agent.service"));
    assert_eq!((p.container, p.pod), (None, None));
    // A sub-cgroup a service made for its workers is still the service;
    // a user manager's app service is the innermost unit.
    let p = placement("/system.slice/ai-agent.service/worker");
    assert_eq!(p.unit.as_deref(), Some("ai-agent.service"));
    let p = placement("/user.slice/user-1000.slice/user@1000.service/app.slice/ci.service");
    assert_eq!(p.unit.as_deref(), Some("ci.service"));
    let p = placement("/user.slice/user-1000.slice/session-3.scope");
    assert_eq!(p.unit.as_deref(), Some("session-3.scope"));
    assert_eq!(placement("/").unit, None);
    assert_eq!(placement("/init.scope").unit.as_deref(), Some("init.scope"));
}

#[test]
fn containers_and_pods() {
    for (path, runtime) in [
        (format!("/system.slice/docker-{CID}.scope"), "docker"),
        (format!("/machine.slice/libpod-{CID}.scope"), "podman"),
        (format!("/docker/{CID}"), "docker cgroupfs"),
    ] {
        let p = placement(&path);
        assert_eq!(p.container.as_deref(), Some(CID), "{runtime}");
        assert_eq!(p.pod, None, "{runtime}");
    }
    let pod = "0b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
    let systemd = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope",
        pod.replace('-', "_")
    );
    let p = placement(&systemd);
    assert_eq!(p.pod.as_deref(), Some(pod));
    assert_eq!(p.container.as_deref(), Some(CID));
    assert_eq!(p.unit, Some(format!("cri-containerd-{CID}.scope")));
    let p = placement(&format!("/kubepods/besteffort/pod{pod}/{CID}"));
    assert_eq!(
        (p.pod.as_deref(), p.container.as_deref()),
        (Some(pod), Some(CID))
    );
    // Not ids: a short or upper-case "id", a slice that only looks like a pod.
    assert_eq!(placement("/docker/abc").container, None);
    assert_eq!(
        placement(&format!("/docker/{}", CID.to_uppercase())).container,
        None
    );
    assert_eq!(placement("/system.slice/pod-cleaner.slice").pod, None);
}

#[test]
fn every_condition_of_a_rule_must_hold() {
    let seen = Seen::new(
        facts(998, "/system.slice/ai-agent.service", "/usr/bin/python3.12"),
        Some("aiagent".into()),
    );
    let by_unit = ProcessRule {
        unit: Some("ai-agent.service".into()),
        ..rule("svc:ai-agent")
    };
    assert!(seen.matches(&by_unit));
    let wrong_user = ProcessRule {
        user: Some("ci".into()),
        ..by_unit.clone()
    };
    assert!(!seen.matches(&wrong_user), "one condition fails: no match");
    let all = ProcessRule {
        user: Some("aiagent".into()),
        uid: Some(998),
        cgroup: Some("/system.slice/*.service".into()),
        exe: Some("/usr/bin/python3.12".into()),
        exe_sha256: Some("AB".repeat(32)),
        ..by_unit.clone()
    };
    assert!(seen.matches(&all), "hash compared case-insensitively");
    for miss in [
        ProcessRule {
            uid: Some(999),
            ..all.clone()
        },
        ProcessRule {
            exe: Some("/usr/bin/python3".into()),
            ..all.clone()
        },
        ProcessRule {
            cgroup: Some("/user.slice/*".into()),
            ..all.clone()
        },
        ProcessRule {
            exe_sha256: Some("cd".repeat(32)),
            ..all.clone()
        },
        ProcessRule {
            unit: Some("ai-agent2.service".into()),
            ..all.clone()
        },
    ] {
        assert!(!seen.matches(&miss), "{miss:?}");
    }
    // Unknown facts never satisfy a condition on them.
    let bare = Seen::new(
        Arc::new(ProcessFacts {
            cgroup_path: None,
            exe_path: None,
            exe_sha256: None,
            ..(*facts(998, "/", "/")).clone()
        }),
        None,
    );
    for r in [&by_unit, &all] {
        assert!(!bare.matches(r));
    }
    assert!(bare.matches(&ProcessRule {
        uid: Some(998),
        ..rule("u")
    }));
}

#[test]
fn refusal_names_the_process_and_a_rule_that_admits_it() {
    let seen = Seen::new(
        facts(
            1001,
            "/system.slice/ci-runner.service",
            "/usr/bin/python3.12",
        ),
        Some("ci".into()),
    );
    let err = crate::identity::AuthError::ProcessUnmatched(Box::new(seen.clone()));
    let r = err.refusal();
    assert_eq!((r.code(), r.status().as_u16()), (-32001, 401));
    assert_eq!(
        r.message(),
        "no credential, and no [identity.process] rule admits the calling process: \
         pid 4242 (python3), user ci (uid 1001), unit ci-runner.service, exe /usr/bin/python3.12"
    );
    let e = r.error();
    assert_eq!(e["data"]["reason"], "process_unmatched");
    assert_eq!(e["data"]["process"]["uid"], 1001);
    assert_eq!(
        e["data"]["process"]["cgroup"],
        "/system.slice/ci-runner.service"
    );
    let text = e["data"]["rule"].as_str().unwrap();
    assert_eq!(
        text,
        "[[identity.process.rules]]\nsubject = \"svc:ci-runner\"\nuser = \"ci\"\n\
         unit = \"ci-runner.service\"\nexe = \"/usr/bin/python3.12\"\n"
    );
    // Pasted into a config, the rule parses and admits this process.
    #[derive(serde::Deserialize)]
    struct Wrap {
        identity: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        process: ProcessIdentity,
    }
    let w: Wrap = toml::from_str(text).unwrap();
    assert!(seen.matches(&w.identity.process.rules[0]));
}

#[test]
fn a_session_scope_is_suggested_by_cgroup_and_an_unnamed_uid_by_number() {
    let seen = Seen::new(
        facts(
            4321,
            "/user.slice/user-4321.slice/session-9.scope",
            "/bin/sh",
        ),
        None,
    );
    assert_eq!(
        seen.suggested_rule(),
        "[[identity.process.rules]]\nsubject = \"uid:4321\"\nuid = 4321\n\
         cgroup = \"/user.slice/user-4321.slice/session-9.scope\"\nexe = \"/bin/sh\"\n"
    );
    assert!(
        seen.describe()
            .contains("user ? (uid 4321), unit session-9.scope")
    );
}

#[tokio::test]
async fn user_names_come_from_passwd_and_are_kept() {
    let users = UserNames::new(std::time::Duration::from_secs(60));
    assert_eq!(users.name(0).await.as_deref(), Some("root"));
    // A uid no system has: no name, and the miss is kept too.
    assert_eq!(users.name(3_999_999_999).await, None);
    assert!(users.lock().contains_key(&3_999_999_999));
}

const RULES: &str = r#"[[intercept.ports]]
port = 8080
[[identity.process.rules]]
unit = "ai-agent.service"
subject = "svc:ai-agent"
groups = ["agents"]
[[identity.oidc]]
issuer = "http://127.0.0.1:1"
audiences = ["mcp"]
"#;

async fn stage(text: &str) -> crate::identity::Identity {
    let cfg = crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap();
    crate::identity::Identity::new(&cfg, None).await.unwrap()
}

fn conn(p: Option<Arc<ProcessFacts>>) -> crate::conn::ConnInfo {
    crate::conn::ConnInfo {
        process: p,
        ..crate::conn::ConnInfo::loopback()
    }
}

#[tokio::test]
async fn a_matching_rule_names_a_same_host_caller_without_a_token() {
    use crate::identity::{AuthError, AuthMethod};
    let id = stage(RULES).await;
    let none = http::HeaderMap::new();
    let agent = facts(0, "/system.slice/ai-agent.service", "/usr/bin/python3.12");
    let c = id
        .authenticate(&none, &conn(Some(agent.clone())))
        .await
        .unwrap();
    assert_eq!(
        (
            c.method,
            c.subject.as_str(),
            c.groups.clone(),
            c.issuer.as_deref()
        ),
        (
            AuthMethod::Process,
            "svc:ai-agent",
            vec!["agents".to_string()],
            Some(ISSUER)
        )
    );
    assert_eq!(c.principal(), "process|process|svc:ai-agent");
    let p = c.process.as_ref().unwrap();
    assert_eq!((p.user.as_deref(), p.facts.pid), (Some("root"), 4242));
    // Another unit on the same host: refused, naming what was seen.
    let ci = facts(0, "/system.slice/ci.service", "/usr/bin/python3.12");
    let err = id.authenticate(&none, &conn(Some(ci))).await.unwrap_err();
    let AuthError::ProcessUnmatched(seen) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(seen.placement.unit.as_deref(), Some("ci.service"));
    // A remote caller (no process record) is refused as before.
    let err = id.authenticate(&none, &conn(None)).await.unwrap_err();
    assert_eq!(err, AuthError::Missing);
    // A token, even a bad one, still decides: no fallback to the process.
    let mut h = http::HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, "Bearer x.y.z".parse().unwrap());
    let err = id.authenticate(&h, &conn(Some(agent))).await.unwrap_err();
    assert!(matches!(err, AuthError::Token(_)), "{err:?}");
}

#[tokio::test]
async fn anonymous_callers_on_the_host_keep_their_process() {
    let id = stage("[[intercept.ports]]\nport = 8080\n[identity]\nallow_anonymous = true\n").await;
    let f = facts(0, "/user.slice/user-0.slice/session-1.scope", "/bin/sh");
    let c = id
        .authenticate(&http::HeaderMap::new(), &conn(Some(f.clone())))
        .await
        .unwrap();
    assert_eq!(c.method, crate::identity::AuthMethod::Anonymous);
    assert_eq!(c.process.as_ref().map(|p| p.facts.clone()), Some(f));
}
