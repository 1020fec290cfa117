//! `mcp-interceptor init` on a host (a namespace) with a real MCP server
//! and a web server that is not MCP: only the MCP server becomes a rule,
//! and the written config passes `check-config`.

use std::{path::Path, time::Duration};

use mcp_interceptor_tests::{NetNs, Proc, TempDir, bin, peer, proc::run_in, require_root};

fn init(ns: &NetNs, args: &[&str]) -> (bool, String, String) {
    let mut argv = vec!["init".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = run_in(
        Some(ns.name()),
        &bin("mcp-interceptor"),
        &argv,
        Duration::from_secs(60),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli(args: &[&str]) -> std::process::Output {
    run_in(
        None,
        &bin("mcp-interceptor"),
        &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        Duration::from_secs(30),
    )
}

fn check_config(path: &Path) -> (bool, String) {
    let out = cli(&["check-config", "-c", &path.display().to_string()]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn init_finds_the_mcp_server_and_writes_a_config_that_loads() {
    require_root();
    let (ns, dir) = (NetNs::new("init"), TempDir::new("init"));
    let _mcp = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    // A web server that is not MCP, on all addresses.
    let mut web = Proc::spawn(
        "web",
        Some(ns.name()),
        Path::new("/usr/bin/python3"),
        &["-u", "-m", "http.server", "9999", "--bind", "0.0.0.0"].map(String::from),
        dir.path(),
    );
    mcp_interceptor_tests::wait_for("web server", Duration::from_secs(10), || {
        web.try_wait()
            .is_none()
            .then_some(())
            .filter(|_| web.stdout().contains("Serving HTTP"))
    });

    let out = dir.path().join("config.toml");
    let policy = dir.path().join("policy");
    let policy_s = policy.display().to_string();
    // Who may call is a choice init does not make alone.
    let (ok, _, err) = init(&ns, &["-c", &out.display().to_string()]);
    assert!(!ok && err.contains("--allow-anonymous"), "{err}");
    assert!(!out.exists());

    let (ok, _, err) = init(
        &ns,
        &[
            "--output",
            &out.display().to_string(),
            "--allow-anonymous",
            "--policy-dir",
            &policy_s,
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("found an MCP server on port 8080"), "{err}");
    assert!(err.contains("anonymous"), "warns about identity: {err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("ANONYMOUS CALLERS ALLOWED") && text.contains("allow_anonymous = true"),
        "{text}"
    );
    assert!(policy.join("starter.cedar").is_file(), "{err}");
    assert!(text.contains("port = 8080"), "{text}");
    assert!(text.contains("mcp-peer"), "names the owner: {text}");
    assert!(!text.contains("9999"), "the web server is not MCP: {text}");
    let (ok, shown) = check_config(&out);
    assert!(ok, "{shown}");

    // An existing file is kept unless --force.
    let (ok, _, err) = init(
        &ns,
        &["--output", &out.display().to_string(), "--allow-anonymous"],
    );
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, _, err) = init(
        &ns,
        &[
            "-c",
            &out.display().to_string(),
            "--force",
            "--oidc-issuer",
            "https://idp.example",
            "--audience",
            "https://mcp.example",
            "--policy-dir",
            &policy_s,
        ],
    );
    assert!(ok, "{err}");
    assert!(err.contains("kept the policies"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("allow_anonymous = false") && text.contains("https://idp.example"),
        "{text}"
    );
    assert!(check_config(&out).0);

    // Default deny is real: an identified caller may open a session and
    // list, and call nothing, until a policy permits it.
    let cfg_s = out.display().to_string();
    let ask = |method: &str, tool: Option<&str>| -> String {
        let mut args = vec![
            "policy",
            "explain",
            "-c",
            &cfg_s,
            "--subject",
            "alice",
            "--method",
            method,
            "--json",
        ];
        if let Some(t) = tool {
            args.extend(["--tool", t]);
        }
        let out = cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("explain --json");
        v["effect"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(ask("initialize", None), "allow");
    assert_eq!(ask("tools/list", None), "allow");
    assert_eq!(ask("tools/call", Some("echo")), "deny");

    // To standard output.
    let (ok, stdout, _) = init(&ns, &["--output", "-", "--allow-anonymous"]);
    assert!(
        ok && stdout.contains("[[intercept.ports]]\nport = 8080"),
        "{stdout}"
    );
}
