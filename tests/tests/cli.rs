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
