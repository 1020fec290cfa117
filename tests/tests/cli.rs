//! The CLI's config checks, as an operator runs them.

use std::time::Duration;

use mcp_interceptor_tests::{TempDir, bin, everything::repo, proc::run_in};

fn cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_in(
        None,
        &bin("mcp-interceptor"),
        &args,
        Duration::from_secs(20),
    )
}

#[test]
fn check_config_accepts_the_example_and_names_a_typo() {
    let example = repo().join("deploy/config.example.toml");
    let ok = cli(&["check-config", &example.display().to_string()]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("is valid") && out.contains("[intercept]") && out.contains("max_request_body"),
        "{out}"
    );

    let dir = TempDir::new("cli");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[intercept]\nfial = \"open\"\n[[intercept.ports]]\nport = 8080\n",
    )
    .unwrap();
    let err = cli(&["check-config", &bad.display().to_string()]);
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(
        msg.contains("unknown field") && msg.contains("fial"),
        "{msg}"
    );

    let doctor = cli(&["doctor", "--config", &bad.display().to_string()]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL config") && report.contains("fix:"),
        "{report}"
    );
}

/// The example policies, with their ports named as the examples expect.
fn policy_config(dir: &std::path::Path, policy: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("policy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[identity]\nallow_anonymous = true\n[policy]\nfiles = [\"{}\"]\n\
             [[intercept.ports]]\nport = 8081\nname = \"files\"\n\
             [[intercept.ports]]\nport = 8082\nname = \"db\"\n\
             [[intercept.ports]]\nport = 8083\nname = \"shell\"\n",
            policy.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn policy_test_explain_and_check_config_use_the_shipped_examples() {
    let dir = TempDir::new("cli-policy");
    let examples = repo().join("deploy/policy/examples");
    let cfg = policy_config(dir.path(), &examples);
    let cfg_s = cfg.display().to_string();

    let ok = cli(&[
        "policy",
        "test",
        &examples.join("cases.toml").display().to_string(),
        "--config",
        &cfg_s,
    ]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("19 of 19 cases passed"), "{out}");

    // A wrong expectation fails the run and says which and why.
    let bad = dir.path().join("bad-cases.toml");
    std::fs::write(
        &bad,
        "[[case]]\nname = \"wishful\"\nsubject = \"eve\"\nserver = \"db\"\nmethod = \"tools/call\"\n\
         tool = \"query\"\narguments = { sql = \"drop table orders\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let failed = cli(&[
        "policy",
        "test",
        &bad.display().to_string(),
        "--config",
        &cfg_s,
    ]);
    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL wishful: want allow, got deny"), "{out}");

    let explain = cli(&[
        "policy",
        "explain",
        "--config",
        &cfg_s,
        "--subject",
        "alice",
        "--group",
        "dev",
        "--server",
        "files",
        "--method",
        "tools/call",
        "--tool",
        "read_file",
        "--args",
        r#"{"path": "/srv/data/../../etc/passwd"}"#,
    ]);
    let out = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.status.success(),
        "{}",
        String::from_utf8_lossy(&explain.stderr)
    );
    assert!(
        out.contains("decision: deny") && out.contains("determining policies: fs-outside-data"),
        "{out}"
    );

    // A just-in-time grant is part of the question: --grant PATTERN.
    let ask = |grant: Option<&str>| {
        let mut args = vec![
            "policy",
            "explain",
            "--config",
            &cfg_s,
            "--subject",
            "alice",
            "--group",
            "dev",
            "--server",
            "db",
            "--method",
            "tools/call",
            "--tool",
            "query",
            "--args",
            r#"{"sql": "UPDATE orders SET state = 'x'"}"#,
        ];
        if let Some(g) = grant {
            args.extend(["--grant", g]);
        }
        String::from_utf8_lossy(&cli(&args).stdout).into_owned()
    };
    assert!(ask(None).contains("decision: deny"), "{}", ask(None));
    let granted = ask(Some("query"));
    assert!(
        granted.contains("decision: allow") && granted.contains("db-write-under-grant"),
        "{granted}"
    );

    let check = cli(&["check-config", &cfg_s]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("policies valid against the schema"), "{out}");

    // A policy with a typo in an attribute: check-config names it.
    let broken = dir.path().join("broken.cedar");
    std::fs::write(
        &broken,
        "@id(\"typo\")\npermit (principal, action == Mcp::Action::\"tools/call\", resource)\n\
         when { principal.departmnet == \"x\" };\n",
    )
    .unwrap();
    let cfg = policy_config(dir.path(), &broken);
    let check = cli(&["check-config", &cfg.display().to_string()]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(err.contains("typo") && err.contains("departmnet"), "{err}");
}
