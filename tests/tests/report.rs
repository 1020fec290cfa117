//! `report nist` end to end: a real session through the agent (OIDC
//! tokens, a Cedar policy with a forbid), the agent stopped, the report
//! generated from its audit directory, its numbers checked, and the HTML
//! rendered by headless Chromium to a PNG.

use std::{path::Path, time::Duration};

use interceptor::audit::wal::hour_of;
use mcp_interceptor_tests::{
    TempDir, require_root, run_in,
    world::{World, echo, now, post_mcp, token},
};
use serde_json::{Value, json};

const SIGTERM: i32 = 15;

const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("dev-tools")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource in Mcp::Server::"8080");

@id("no-add")
forbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"add");
"#;

fn policy(dir: &Path) -> String {
    let file = dir.join("policy.cedar");
    std::fs::write(&file, POLICY).unwrap();
    format!(
        "[policy]\nfiles = [\"{}\"]\npins_file = \"{}\"\n",
        file.display(),
        dir.join("pins.json").display()
    )
}

/// The UTC day of `unix_secs` plus `days`, `YYYY-MM-DD`.
fn day(unix_secs: i64, days: i64) -> String {
    hour_of((unix_secs + days * 86_400) * 1_000_000).0
}

/// Headless Chromium's screenshot of `html` (1280x2000) as PNG bytes.
fn screenshot(html: &Path, png: &Path) -> Vec<u8> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("chromium is missing: run `cargo xtask setup` (it installs the Debian package)");
    let profile = TempDir::new("chromium");
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.path().display()),
        format!("--screenshot={}", png.display()),
        "--window-size=1280,2000".into(),
        format!("file://{}", html.display()),
    ];
    let out = run_in(None, Path::new(chromium), &args, Duration::from_secs(90));
    assert!(
        png.is_file(),
        "chromium wrote no screenshot ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(png).unwrap()
}

#[test]
fn a_session_becomes_a_nist_evidence_report() {
    require_root();
    let start = now();
    let mut w = World::with("report", "", policy);
    let alice = token(&w.issuer, "alice", &["dev"]);
    for text in ["one", "two", "three"] {
        assert_eq!(echo(&w.ns, &alice, text), text);
    }
    let denied = post_mcp(
        &w.ns,
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}),
        &[format!("Authorization: Bearer {alice}")],
    );
    let body: Value = serde_json::from_slice(&denied.body).unwrap();
    assert_eq!(body["error"]["code"], -32002, "{body}");
    assert_eq!(body["error"]["data"]["policies"], json!(["no-add"]));
    let anonymous = post_mcp(
        &w.ns,
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"}),
        &[],
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.head);
    w.agent.stop(SIGTERM);

    let audit = w.agent.audit_dir().display().to_string();
    let out = w.dir.path().join("report");
    let (from, to) = (day(start, 0), day(now(), 1));
    let run = w.agent.cli(&[
        "report",
        "nist",
        "--from",
        &from,
        "--to",
        &to,
        "--dir",
        &audit,
        "--out",
        &out.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("audit verify: ok: 1 host(s)"), "{stdout}");

    let md = std::fs::read_to_string(out.join("nist-report.md")).unwrap();
    for c in [
        "AC-3", "AC-6", "AU-2", "AU-3", "AU-9", "AU-10", "AU-12", "IA-2", "SC-8",
    ] {
        assert!(md.contains(&format!("\n## {c} ")), "no {c} heading:\n{md}");
    }
    for line in [
        // AC-3: three calls allowed, one denied by its rule; plus the
        // refused authentication, a deny of the identity stage.
        "| tools/call | 3 | 1 | 0 |",
        "| no-add | 1 |",
        "| (identity stage) | 1 |",
        "| Denied | 2 |",
        // AC-6: alice's calls and tools.
        "| alice | oidc | dev | 4 | echo | add |",
        // AU-9 and AU-10.
        "| audit verify | ok: chain and signatures intact, every file matches its entry |",
        // AU-12: one start, one stop.
        "| agent\\_start rows | 1 |",
        "| agent\\_stop rows | 1 |",
        // IA-2: one refusal, for want of any credential.
        "| Refused authentications | 1 |",
        "| -32001 | no verified identity (missing or invalid credentials) | 1 |",
        "| Distinct subjects | 1 |",
    ] {
        assert!(md.contains(line), "missing {line:?} in:\n{md}");
    }

    let html = out.join("nist-report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script") && !page.contains(" src="));
    let png = out.join("nist-report.png");
    let bytes = screenshot(&html, &png);
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &bytes[..bytes.len().min(8)]
    );
    assert!(
        bytes.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        bytes.len()
    );
    let _ = std::fs::copy(&png, "/tmp/nist-report.png");
    let _ = std::fs::copy(&html, "/tmp/nist-report.html");
    let _ = std::fs::copy(out.join("nist-report.md"), "/tmp/nist-report.md");
}
