use std::path::Path;

use serde_json::json;

use super::*;

pub(super) fn input(subject: &str, groups: &[&str], method: &str, target: Option<&str>) -> Input {
    Input {
        subject: subject.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        auth_method: "oidc".into(),
        issuer: "https://idp".into(),
        client_id: String::new(),
        scopes: Vec::new(),
        server: "files".into(),
        server_address: "10.0.0.1".into(),
        server_port: 8080,
        method: method.into(),
        target: target.map(str::to_owned),
        arguments: None,
        client_name: "test".into(),
        client_version: "1".into(),
        source_ip: "10.1.2.3".parse().unwrap(),
        session_id: String::new(),
        transport: "streamable-http".into(),
        // Wednesday 2026-11-25 10:00 UTC.
        time: 1_795_600_800,
        grants: Vec::new(),
        listing: false,
        process: None,
    }
}

/// SQL that SQL dialects read differently (a comment in one, a string or
/// a name in another): the tokenizer calls each `other`, and the policy
/// never takes it for read-only.
pub(super) const DIALECT_TRAPS: &[&str] = &[
    "SELECT 1 AS [--]; DROP TABLE orders",
    "SELECT 1 AS `--`; DROP TABLE orders",
    "SELECT $$ ; $$; DROP TABLE orders",
    "SELECT E'\\'; DROP TABLE orders; --'",
    "SELECT 1 -- x\r; DROP TABLE orders",
    "SELECT 1 --x; DROP TABLE orders",
    "SELECT 1 /*! ; DROP TABLE orders */",
    "SELECT 1 # x\n; DROP TABLE orders",
    "SELECT a FROM t END; DROP TABLE orders",
];

/// alice (group dev) calls `read_file` on `path`.
pub(super) fn read_file(path: &str) -> Input {
    let mut i = input("alice", &["dev"], "tools/call", Some("read_file"));
    i.arguments = Some(json!({ "path": path }));
    i
}

/// ann (group analysts) calls the `db` server's `query` with `sql`.
pub(super) fn query(sql: &str) -> Input {
    let mut i = input("ann", &["analysts"], "tools/call", Some("query"));
    i.server = "db".into();
    i.arguments = Some(json!({ "sql": sql }));
    i
}

/// The example policies' decision on [`query`]`(sql)`.
pub(super) fn decide_query(p: &Policies, sql: &str) -> Decision {
    p.decide(&query(sql)).unwrap()
}

pub(super) fn examples() -> Policies {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policy/examples");
    Policies::load(&[dir]).expect("deploy/policy/examples must load and validate")
}

#[test]
fn the_examples_validate_and_carry_ids() {
    let p = examples();
    assert!(p.count >= 10, "{}", p.count);
    assert_eq!(p.version.len(), 64);
}

#[test]
fn allow_and_deny_by_group_with_default_deny() {
    let p = examples();
    let i = read_file("/srv/data/report.csv");
    let d = p.decide(&i).unwrap();
    assert_eq!(
        (d.effect, d.policies.as_slice()),
        (Effect::Allow, &["fs-read".to_string()][..])
    );
    let mut i = i.clone();
    i.groups = vec!["contractors".into()];
    let d = p.decide(&i).unwrap();
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.policies.is_empty(), "default deny names no policy");
    assert!(d.reason.contains("no policy permits"), "{}", d.reason);
}

#[test]
fn path_guard_sees_through_dot_dot() {
    let p = examples();
    for (path, want) in [
        ("/srv/data/a.txt", Effect::Allow),
        ("/etc/passwd", Effect::Deny),
        ("/srv/data/../../etc/passwd", Effect::Deny),
        ("/srv/data/./x/../y", Effect::Allow),
        ("file:///srv/data/../secret", Effect::Deny),
    ] {
        let i = read_file(path);
        let d = p.decide(&i).unwrap();
        assert_eq!(d.effect, want, "{path}: {}", d.reason);
        if want == Effect::Deny {
            assert_eq!(d.policies, ["fs-outside-data"], "{path}");
        }
    }
}

#[test]
fn sql_guard_allows_reads_and_denies_the_dangerous_twin() {
    let p = examples();
    let call = |sql: &str| decide_query(&p, sql);
    assert_eq!(call("SELECT * FROM orders").effect, Effect::Allow);
    assert_eq!(call("  -- report\n select 1").effect, Effect::Allow);
    let d = call("SELECT 1; DROP TABLE orders");
    assert_eq!(
        (d.effect, d.policies.as_slice()),
        (Effect::Deny, &["db-no-ddl".to_string()][..])
    );
    assert_eq!(call("/* hi */ DELETE FROM orders").effect, Effect::Deny);
    assert_eq!(call("truncate orders").effect, Effect::Deny);
}

#[test]
fn approval_annotation_is_carried() {
    let p = examples();
    let mut i = input("alice", &["dev"], "tools/call", Some("write_file"));
    i.arguments = Some(json!({"path": "/srv/data/x", "content": "y"}));
    let d = p.decide(&i).unwrap();
    assert_eq!(d.effect, Effect::Approval);
    let rule = d.approval.unwrap();
    assert_eq!((rule.groups, rule.quorum), (vec!["oncall".to_string()], 1));
    assert_eq!(rule.mode, crate::pipeline::ApprovalMode::Hold);
}

#[test]
fn approval_annotations_are_checked_at_load() {
    let load = |annotations: &str| {
        let text = format!(
            "{annotations}\npermit(principal, action == Mcp::Action::\"tools/call\", resource);"
        );
        Policies::from_sources(&[("a.cedar".into(), text)])
    };
    let ok =
        load("@approval(\"oncall, security\")\n@approval_quorum(\"2\")\n@approval_mode(\"retry\")")
            .unwrap();
    let mut i = input("alice", &["dev"], "tools/call", Some("anything"));
    i.arguments = Some(json!({}));
    let rule = ok.decide(&i).unwrap().approval.unwrap();
    assert_eq!(
        rule.groups,
        vec!["oncall".to_string(), "security".to_string()]
    );
    assert_eq!(
        (rule.quorum, rule.mode),
        (2, crate::pipeline::ApprovalMode::Retry)
    );
    for bad in [
        "@approval(\"\")",
        "@approval(\"oncall\")\n@approval_quorum(\"0\")",
        "@approval(\"oncall\")\n@approval_quorum(\"many\")",
        "@approval(\"oncall\")\n@approval_mode(\"later\")",
        "@approval_quorum(\"2\")",
    ] {
        let e = load(bad).unwrap_err();
        assert!(matches!(e, PolicyError::Invalid(..)), "{bad}: {e}");
    }
}

#[test]
fn server_requests_are_denied_unless_permitted() {
    let p = examples();
    let i = input("alice", &["dev"], "sampling/createMessage", None);
    assert_eq!(p.decide(&i).unwrap().effect, Effect::Deny);
    let allowing = Policies::from_sources(&[(
        "s.cedar".into(),
        r#"@id("s") permit(principal in Mcp::Group::"dev", action == Mcp::Action::"sampling/createMessage", resource);"#.into(),
    )])
    .unwrap();
    assert_eq!(allowing.decide(&i).unwrap().effect, Effect::Allow);
}

#[test]
fn source_ip_and_time_are_in_the_context() {
    let p = examples();
    let mut i = input("bob", &["oncall"], "tools/call", Some("run_command"));
    i.server = "shell".into();
    i.arguments = Some(json!({"command": "uptime"}));
    assert_eq!(p.decide(&i).unwrap().effect, Effect::Approval);
    i.source_ip = "192.168.1.5".parse().unwrap();
    let d = p.decide(&i).unwrap();
    assert_eq!(
        (d.effect, d.policies.as_slice()),
        (Effect::Deny, &["shell-internal".to_string()][..])
    );
    // Saturday: the office-hours write rule does not apply.
    let mut w = input("dee", &["data-eng"], "tools/call", Some("query"));
    w.server = "db".into();
    w.arguments = Some(json!({"sql": "insert into t values (1)"}));
    assert_eq!(p.decide(&w).unwrap().effect, Effect::Allow);
    w.time += 3 * 86_400;
    assert_eq!(p.decide(&w).unwrap().effect, Effect::Deny);
}

#[test]
fn broken_policies_name_what_is_wrong() {
    let typo = Policies::from_sources(&[(
        "t.cedar".into(),
        r#"@id("typo") permit(principal, action == Mcp::Action::"tools/call", resource) when { principal.groupz == "x" };"#.into(),
    )]);
    assert!(
        matches!(&typo, Err(PolicyError::Invalid(id, _)) if id == "typo"),
        "{typo:?}"
    );
    let syntax = Policies::from_sources(&[("s.cedar".into(), "permit(principal,".into())]);
    assert!(
        matches!(&syntax, Err(PolicyError::Parse(f, _)) if f == "s.cedar"),
        "{syntax:?}"
    );
    let twice = Policies::from_sources(&[(
        "d.cedar".into(),
        r#"@id("a") permit(principal, action, resource); @id("a") forbid(principal, action, resource);"#.into(),
    )]);
    assert_eq!(twice.err(), Some(PolicyError::DuplicateId("a".into())));
    let wrong_resource = Policies::from_sources(&[(
        "w.cedar".into(),
        r#"permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Server::"x");"#
            .into(),
    )]);
    assert!(matches!(wrong_resource, Err(PolicyError::Invalid(..))));
}

#[test]
fn ids_default_to_file_and_position_and_version_follows_content() {
    let a = Policies::from_sources(&[(
        "/etc/p/one.cedar".into(),
        "permit(principal, action == Mcp::Action::\"ping\", resource);\nforbid(principal, action == Mcp::Action::\"ping\", resource) when { principal.auth_method == \"anonymous\" };".into(),
    )])
    .unwrap();
    let mut i = input("x", &[], "ping", None);
    assert_eq!(a.decide(&i).unwrap().policies, ["one.cedar#0"]);
    i.auth_method = "anonymous".into();
    assert_eq!(a.decide(&i).unwrap().policies, ["one.cedar#1"]);
    let b = Policies::from_sources(&[(
        "/etc/p/one.cedar".into(),
        "permit(principal, action == Mcp::Action::\"ping\", resource);".into(),
    )])
    .unwrap();
    assert_ne!(a.version, b.version);
}

#[test]
fn unknown_methods_map_to_other_and_lists_ask_without_arguments() {
    let p = examples();
    let i = input("alice", &["dev"], "vendor/custom", None);
    assert_eq!(i.action(), "other");
    assert_eq!(p.decide(&i).unwrap().effect, Effect::Deny);
    let mut l = input("alice", &["dev"], "tools/call", Some("read_file"));
    l.listing = true;
    assert_eq!(
        p.decide(&l).unwrap().effect,
        Effect::Allow,
        "listed: guards are forbids on arguments"
    );
}

#[test]
fn normalize_and_sql_kinds() {
    use input::{normalize, sql_kinds};
    assert_eq!(normalize("/a/b/../c/./d/"), "/a/c/d/");
    assert_eq!(normalize("/../../x"), "/x");
    assert_eq!(normalize("relative/../x"), "relative/../x");
    assert_eq!(normalize("file:///a/../b"), "file:///b");
    let k = |v: serde_json::Value| sql_kinds(&v).into_iter().collect::<Vec<_>>();
    assert_eq!(k(json!({"sql": "SELECT 1"})), ["select"]);
    assert_eq!(
        k(json!({"sql": "select 1; drop table x;"})),
        ["drop", "select"]
    );
    assert_eq!(k(json!({"q": "/* x */ (SELECT 1)", "n": 3})), ["select"]);
    assert_eq!(
        k(json!({"sql": "select ';drop' from t"})),
        ["select"],
        "a string literal is no statement"
    );
    assert!(k(json!({"text": "hello world"})).is_empty());
}

/// A same-host caller's `run_command` on the shell server, from `unit`.
fn local_shell(unit: Option<&str>) -> Input {
    let mut i = input(
        "svc:ai-agent",
        &["agents"],
        "tools/call",
        Some("run_command"),
    );
    i.auth_method = "process".into();
    i.issuer = "process".into();
    i.server = "shell".into();
    i.source_ip = "127.0.0.1".parse().unwrap();
    i.arguments = Some(json!({ "command": "uptime" }));
    i.process = unit.map(|u| input::ProcessContext {
        pid: 4242,
        uid: 998,
        user: "aiagent".into(),
        unit: u.into(),
        cgroup: format!("/system.slice/{u}"),
        exe: "/usr/bin/python3.12".into(),
        ..Default::default()
    });
    i
}

#[test]
fn context_process_is_what_unit_policies_read() {
    let p = examples();
    let d = p.decide(&local_shell(Some("ai-agent.service"))).unwrap();
    assert_eq!(
        (d.effect, d.policies.as_slice()),
        (Effect::Approval, &["process-shell-agent".to_string()][..])
    );
    let d = p.decide(&local_shell(Some("ci-runner.service"))).unwrap();
    assert_eq!(
        (d.effect, d.policies.as_slice()),
        (Effect::Deny, &["process-shell-only-agent".to_string()][..])
    );
    // The same name without the kernel's record (a remote caller) has no
    // `context.process`, so no process policy can apply to it.
    let d = p.decide(&local_shell(None)).unwrap();
    assert_eq!(d.effect, Effect::Deny);
    // Every field reaches Cedar under its schema name.
    let fields = Policies::from_sources(&[(
        "f.cedar".into(),
        r#"@id("f") permit (principal, action, resource) when {
            context has process && context.process.pid == 4242 && context.process.uid == 998 &&
            context.process.user == "aiagent" && context.process.cgroup like "/system.slice/*" &&
            context.process.exe == "/usr/bin/python3.12" && context.process.exe_sha256 == "" &&
            context.process.container == "" && context.process.pod == "" &&
            principal.auth_method == "process" && context.auth_method == "process" };"#
            .into(),
    )])
    .unwrap();
    let d = fields
        .decide(&local_shell(Some("ai-agent.service")))
        .unwrap();
    assert_eq!(d.effect, Effect::Allow, "{}", d.reason);
}
