//! The CLI's config checks, as an operator runs them.

use std::time::Duration;

use mcp_interceptor_tests::{TempDir, bin, everything::repo, proc::run_in};
use serde_json::{Value, json};

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

    // The same file through -c, as every other command spells it.
    let err = cli(&["check-config", "-c", &bad.display().to_string()]);
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("fial"));

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
    assert!(out.contains("24 of 24 cases passed"), "{out}");
    let json = cli(&[
        "policy",
        "test",
        &examples.join("cases.toml").display().to_string(),
        "-c",
        &cfg_s,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("policy test --json");
    assert!(json.status.success() && v["passed"] == true, "{v:#}");
    assert_eq!(v["cases"].as_array().map(Vec::len), Some(24), "{v:#}");

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
    let json = cli(&[
        "policy",
        "test",
        &bad.display().to_string(),
        "-c",
        &cfg_s,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("policy test --json");
    assert_eq!(json.status.code(), Some(1));
    assert_eq!(
        (&v["passed"], &v["cases"][0]["want"], &v["cases"][0]["got"]),
        (&json!(false), &json!("allow"), &json!("deny")),
        "{v:#}"
    );

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

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_config_offline_validates_without_the_tls_files() {
    let dir = TempDir::new("cli-offline");
    let cfg = dir.path().join("ci.toml");
    std::fs::write(
        &cfg,
        "[tls]\ncert = \"/etc/mcp-interceptor/tls/server.pem\"\nkey = \"/etc/mcp-interceptor/tls/server.key\"\n\
         [identity]\nallow_anonymous = true\n[policy]\nfiles = [\"/etc/mcp-interceptor/policy\"]\n\
         [[intercept.ports]]\nport = 8080\n",
    )
    .unwrap();
    let cfg_s = cfg.display().to_string();
    // On the host, the files it names must be there.
    let online = cli(&["check-config", "-c", &cfg_s]);
    assert_eq!(online.status.code(), Some(1), "{}", text(&online));
    assert!(
        text(&online).contains("/etc/mcp-interceptor/tls/server.pem"),
        "{}",
        text(&online)
    );
    // In CI, without them: valid, and it says what it did not check.
    let offline = cli(&["check-config", "-c", &cfg_s, "--offline"]);
    assert!(offline.status.success(), "{}", text(&offline));
    let out = String::from_utf8_lossy(&offline.stdout);
    assert!(
        out.contains("# offline: TLS files") && out.contains("policy not checked offline"),
        "{out}"
    );
    let json = cli(&["check-config", "-c", &cfg_s, "--offline", "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("check-config --json");
    assert!(json.status.success(), "{v:#}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["offline"], true);
    assert_eq!(
        v["config"]["tls"]["cert"],
        "/etc/mcp-interceptor/tls/server.pem"
    );
    assert_eq!(v["config"]["intercept"]["ports"][0]["port"], 8080);

    // Offline still refuses what is wrong in the file itself.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[http]\nmax_connections = 0\n[[intercept.ports]]\nport = 8080\n",
    )
    .unwrap();
    let json = cli(&[
        "check-config",
        "-c",
        &bad.display().to_string(),
        "--offline",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("check-config --json");
    assert_eq!(json.status.code(), Some(1));
    assert_eq!(v["valid"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("http.max_connections must be greater than 0"),
        "{v:#}"
    );
}

#[test]
fn errors_say_their_cause_once() {
    let missing = "/nonexistent/mcpi/config.toml";
    for args in [
        vec!["check-config", "-c", missing],
        vec!["status", "-c", missing],
        vec!["tools", "list", "-c", missing],
        vec!["audit", "replay", "--session", "s", "-c", missing],
    ] {
        let out = cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim(),
            format!(
                "mcp-interceptor: cannot read {missing}: No such file or directory (os error 2)"
            ),
            "{args:?}"
        );
    }
}

#[test]
fn status_prints_json_when_nothing_is_attached() {
    let dir = TempDir::new("cli-status");
    let cfg = dir.path().join("c.toml");
    let pins = dir.path().join("no-pins");
    std::fs::write(
        &cfg,
        format!(
            "[intercept]\npin_dir = \"{}\"\n[[intercept.ports]]\nport = 8080\n[identity]\nallow_anonymous = true\n",
            pins.display()
        ),
    )
    .unwrap();
    for extra in [None, Some("--json")] {
        let mut args = vec!["status", "-c", cfg.to_str().unwrap()];
        args.extend(extra);
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("status prints JSON");
        assert_eq!(v["attached"], false, "{v:#}");
        assert_eq!(v["pin_dir"], pins.display().to_string());
    }
    let detach = cli(&["detach", "-c", cfg.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&detach.stdout).expect("detach --json");
    assert!(detach.status.success(), "{v:#}");
    assert_eq!(v["removed"], json!([]));
}

#[test]
fn audit_verify_takes_dir_like_the_other_audit_commands() {
    let dir = TempDir::new("cli-verify");
    let d = dir.path().display().to_string();
    for args in [
        vec!["audit", "verify", "--dir", &d, "--json"],
        vec!["audit", "verify", &d, "--json"],
    ] {
        let out = cli(&args);
        let v: Value = serde_json::from_slice(&out.stdout).expect("audit verify --json");
        assert_eq!(out.status.code(), Some(1), "{v:#}");
        assert_eq!(v["intact"], false, "{v:#}");
        assert!(
            v["break"].as_str().unwrap().contains("no manifest"),
            "{v:#}"
        );
    }
    let both = cli(&["audit", "verify", &d, "--dir", &d]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
}

#[test]
fn init_needs_an_identity_choice_and_every_command_documents_its_exit_status() {
    let out = cli(&["init", "-c", "-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--oidc-issuer") && err.contains("--allow-anonymous"),
        "{err}"
    );
    let out = cli(&[
        "init",
        "-c",
        "-",
        "--oidc-issuer",
        "https://idp.example",
        "--allow-anonymous",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The help the binary prints, as an operator reads it.
    for cmd in [
        vec!["--help"],
        vec!["doctor", "--help"],
        vec!["check-config", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["init", "--help"],
    ] {
        let out = cli(&cmd);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?}");
        assert!(help.contains("EXIT STATUS:"), "{cmd:?}:\n{help}");
    }
    let help = String::from_utf8_lossy(&cli(&["doctor", "--help"]).stdout).into_owned();
    for flag in ["-c, --config <FILE>", "--preflight", "--json"] {
        assert!(help.contains(flag), "{flag}:\n{help}");
    }
}
