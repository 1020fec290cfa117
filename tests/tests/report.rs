//! `report nist` end to end, from real agent runs: each control's status
//! and the gap that explains it, computed from the audit directory the
//! agent wrote.
//!
//! Two runs. A well-configured one (OIDC tokens with a `jti`, a Cedar
//! policy with a forbid, the key pinned with `--public-key`) meets every
//! control it can; reported again without the pinned key it is partial on
//! AU-9 and AU-10; its HTML is rendered by headless Chromium. A careless one
//! (anonymous callers, no policy, the agent killed and later stopped)
//! shows not met and partial controls, each with the rows or stretch of
//! time that caused it and the fix.

use std::{path::Path, process::Output, time::Duration};

use interceptor::report::markdown::md;
use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, peer, require_root, run_in,
    world::{PORT, URL, World, now, post_mcp},
};
use serde_json::{Value, json};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

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

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
fn utc(unix_secs: i64) -> String {
    interceptor::report::fmt_time(unix_secs * 1_000_000)
}

/// `mcp-interceptor report nist` over `audit` for `[from, to)` (Unix
/// seconds) into `out`, with `more` flags: its output, and the JSON verdicts.
fn report(
    agent: &Agent,
    audit: &Path,
    (from, to): (i64, i64),
    out: &Path,
    more: &[&str],
) -> (Output, Value) {
    let (audit, out_s) = (audit.display().to_string(), out.display().to_string());
    let (from, to) = (utc(from), utc(to));
    let mut args: Vec<&str> = vec![
        "report", "nist", "--from", &from, "--to", &to, "--dir", &audit, "--out", &out_s,
    ];
    args.extend(more);
    let run = agent.cli(&args);
    let json = std::fs::read_to_string(out.join("nist-report.json"))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {run:?}"));
    (run, serde_json::from_str(&json).unwrap())
}

/// The control `id` of the JSON verdicts.
fn control<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v:#}"))
}

/// Asserts each control's status, naming the verdicts on failure.
fn assert_statuses(v: &Value, want: &[(&str, &str)]) {
    for (id, status) in want {
        assert_eq!(
            control(v, id)["status"],
            *status,
            "{id}: {:#}",
            control(v, id)
        );
    }
}

/// The gap of control `id` whose cause contains `cause`; asserts that the
/// Markdown report lists it with its fix.
fn gap<'a>(v: &'a Value, md_text: &str, id: &str, cause: &str) -> &'a Value {
    let g = control(v, id)["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["cause"].as_str().unwrap().contains(cause))
        .unwrap_or_else(|| panic!("{id} has no gap {cause:?}: {:#}", control(v, id)));
    for (label, key) in [("Gap", "cause"), ("Fix", "fix")] {
        let line = format!("**{label}:** {}\n", md(g[key].as_str().unwrap()));
        assert!(md_text.contains(&line), "{id}: no {line:?} in:\n{md_text}");
    }
    g
}

/// A token of the world's issuer for `sub` in `groups`, with a `jti`: the
/// credential id AU-10 asks every row to carry.
fn token_with_jti(w: &World, sub: &str, groups: &[&str], jti: &str) -> String {
    w.issuer.mint(
        json!({"iss": w.issuer.url, "aud": mcp_interceptor_tests::world::CLIENT,
               "sub": sub, "groups": groups, "iat": now(), "exp": now() + 600, "jti": jti}),
        Value::Null,
        "key",
    )
}

fn chromium(args: Vec<String>) -> Output {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("chromium is missing: run `cargo xtask setup` (it installs the Debian package)");
    let profile = TempDir::new("chromium");
    let mut all = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    all.extend(args);
    run_in(None, Path::new(chromium), &all, Duration::from_secs(90))
}

/// Headless Chromium's DOM of `html` after loading it, and its screenshot
/// (1280x2000) as PNG bytes.
fn render(html: &Path, png: &Path) -> (String, Vec<u8>) {
    let url = format!("file://{}", html.display());
    let dom = chromium(vec!["--dump-dom".into(), url.clone()]);
    let shot = chromium(vec![
        format!("--screenshot={}", png.display()),
        "--window-size=1280,2000".into(),
        url,
    ]);
    assert!(
        png.is_file(),
        "chromium wrote no screenshot ({}): {}",
        shot.status,
        String::from_utf8_lossy(&shot.stderr)
    );
    (
        String::from_utf8_lossy(&dom.stdout).into_owned(),
        std::fs::read(png).unwrap(),
    )
}

#[test]
fn a_well_configured_run_meets_its_controls_and_without_the_pinned_key_is_partial() {
    require_root();
    let mut w = World::with("report", "", policy);
    let from = now();
    let alice = token_with_jti(&w, "alice", &["dev"], "jti-alice-1");
    for text in ["one", "two", "three"] {
        assert_eq!(
            mcp_interceptor_tests::world::echo(&w.ns, &alice, text),
            text
        );
    }
    let denied = post_mcp(
        &w.ns,
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}),
        &[format!("Authorization: Bearer {alice}")],
    );
    let body: Value = serde_json::from_slice(&denied.body).unwrap();
    assert_eq!(
        body["error"]["data"]["policies"],
        json!(["no-add"]),
        "{body}"
    );
    // Refused before identification: the control working, not a gap.
    let anonymous = post_mcp(
        &w.ns,
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"}),
        &[],
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.head);
    // Idle for longer than the allowed gap: only the agent's heartbeat
    // entries can keep AU-2 and AU-12 met through this stretch.
    std::thread::sleep(Duration::from_secs(8));
    let to = now();
    w.agent.stop(SIGTERM);

    let audit = w.agent.audit_dir();
    let host = std::fs::read_dir(audit.join("manifest"))
        .unwrap()
        .next()
        .expect("one host's chain")
        .unwrap()
        .path();
    let key = std::fs::read_to_string(host.join("public-key.hex")).unwrap();
    // The key as the operator recorded it at deployment: the agent logs it.
    assert!(
        w.agent.log().contains(key.trim()),
        "the start-up log names the key"
    );
    let out = w.dir.path().join("pinned");
    // Heartbeats come every 2 s (roll_seconds = 2); 6 s leaves room for a
    // loaded CI host, and is shorter than the idle stretch above.
    let pinned = ["--public-key", key.trim(), "--max-gap", "6"];
    let (run, v) = report(&w.agent, &audit, (from, to), &out, &pinned);
    let md_text = std::fs::read_to_string(out.join("nist-report.md")).unwrap();
    assert_statuses(
        &v,
        &[
            ("AC-3", "met"),
            ("AC-6", "met"),
            ("AU-2", "met"),
            ("AU-3", "met"),
            ("AU-9", "met"),
            ("AU-10", "met"),
            ("AU-12", "met"),
            ("IA-2", "met"),
            // Every client is a process on this host, and the kernel's
            // record of it is in its rows (read back from the Parquet).
            ("IA-3", "met"),
            // The world serves plaintext, and the trail records it so.
            ("SC-8", "not_met"),
        ],
    );
    assert_eq!(run.status.code(), Some(3), "SC-8 not met: {run:?}");
    let g = gap(
        &v,
        &md_text,
        "SC-8",
        "connections carried exchange rows in plaintext",
    );
    assert!(
        g["fix"].as_str().unwrap().contains("tls.require_tls"),
        "{g}"
    );
    for line in [
        "| tools/call | 3 | 1 | 0 |",
        "| no-add | 1 |",
        "| (identity stage) | 1 |",
        "| alice | oidc | dev | 4 | echo | add |",
        // The tokenless caller is a process on this host (the kernel's
        // capture is on in eBPF mode) that no [identity.process] rule admits.
        "| -32001 | a process on this host that no \\[identity.process\\] rule admits | 1 |",
        "**Status:** met\n\n**Rule:** Met when every client request allowed",
    ] {
        assert!(md_text.contains(line), "missing {line:?} in:\n{md_text}");
    }

    // The same trail, its chain checked only against the key stored beside it.
    let out = w.dir.path().join("stored-key");
    let more = ["--max-gap", "6", "--json"];
    let (run, v) = report(&w.agent, &audit, (from, to), &out, &more);
    // --json prints the verdicts the JSON file holds, for a pipeline.
    let printed: Value = serde_json::from_slice(&run.stdout).expect("JSON on stdout");
    assert_eq!(printed, v);
    let md_text = std::fs::read_to_string(out.join("nist-report.md")).unwrap();
    assert_statuses(
        &v,
        &[("AU-9", "partial"), ("AU-10", "partial"), ("IA-2", "met")],
    );
    assert_eq!(run.status.code(), Some(3), "SC-8 still not met: {run:?}");
    for id in ["AU-9", "AU-10"] {
        let g = gap(
            &v,
            &md_text,
            id,
            "checked with the public key stored beside the manifest",
        );
        assert!(
            g["fix"].as_str().unwrap().starts_with("pass --public-key"),
            "{g}"
        );
    }

    let html = out.join("nist-report.html");
    let (dom, png) = render(&html, &out.join("nist-report.png"));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    for shown in [
        "<span class=\"badge s-partial\">partial</span>",
        "<span class=\"badge s-met\">met</span>",
        "<span class=\"badge s-not-met\">not met</span>",
        "<section class=\"gaps\" id=\"gaps\"><h2>Gaps</h2>",
        "<dt>Fix</dt><dd>pass --public-key",
        "<b>Rule:</b> Met when <code>audit verify</code>",
    ] {
        assert!(
            dom.contains(shown),
            "Chromium's DOM lacks {shown:?}:\n{dom}"
        );
    }
    let _ = std::fs::copy(out.join("nist-report.png"), "/tmp/nist-report.png");
    let _ = std::fs::copy(&html, "/tmp/nist-report.html");
}

#[test]
fn an_anonymous_run_without_policy_killed_and_stopped_shows_each_gap() {
    require_root();
    let (ns, dir) = (NetNs::new("report-gaps"), TempDir::new("report-gaps"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    // Anonymous callers allowed, no [policy]: the agent's test default.
    let mut agent = Agent::start(&ns, dir.path(), "", PORT);
    let from = now();
    let echo = |text: &str| {
        let c = peer::call(ns.name(), URL, "echo", json!({ "text": text }));
        assert_eq!(c.text(), text, "{}", c.stderr());
    };
    echo("before the kill");
    // Killed: no agent_stop row, and no manifest entry until it is back.
    agent.stop(SIGKILL);
    std::thread::sleep(Duration::from_secs(6));
    agent.restart();
    echo("after the restart");
    // Stopped: agent_stop, then nothing to the end of the period.
    agent.stop(SIGTERM);
    std::thread::sleep(Duration::from_secs(6));
    let to = now();

    let out = dir.path().join("report");
    let config = agent.config.display().to_string();
    // The config's roll_seconds = 2 allows 4 s without an entry.
    let (run, v) = report(
        &agent,
        &agent.audit_dir(),
        (from, to),
        &out,
        &["--config", &config],
    );
    let md_text = std::fs::read_to_string(out.join("nist-report.md")).unwrap();
    assert_eq!(run.status.code(), Some(3), "a control not met: {run:?}");
    assert_statuses(
        &v,
        &[
            ("IA-2", "not_met"),
            ("AC-3", "not_met"),
            ("AC-6", "not_met"),
            ("AU-10", "not_met"),
            ("AU-9", "partial"),
            ("AU-2", "partial"),
            ("AU-12", "partial"),
            ("AU-3", "met"),
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("IA-2 not met: 0 of "), "{stdout}");

    let g = gap(
        &v,
        &md_text,
        "IA-2",
        "(100.0%) exchange rows carry no verified identity (anonymous)",
    );
    assert!(
        g["fix"]
            .as_str()
            .unwrap()
            .starts_with("add [[identity.oidc]]"),
        "{g}"
    );
    assert_eq!(g["rows"][0]["subject"], "anonymous", "{g}");
    let g = gap(
        &v,
        &md_text,
        "AC-3",
        "(100.0%) client requests were decided without a loaded policy",
    );
    assert!(
        g["fix"].as_str().unwrap().starts_with("load a policy"),
        "{g}"
    );
    assert!(
        g["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["method"] == "tools/call"),
        "{g}"
    );
    gap(
        &v,
        &md_text,
        "AC-6",
        "(100.0%) allowed tool calls were not decided by any policy",
    );
    gap(
        &v,
        &md_text,
        "AU-10",
        "(100.0%) exchange rows bind no verified subject",
    );
    gap(
        &v,
        &md_text,
        "AU-9",
        "checked with the public key stored beside the manifest",
    );
    for id in ["AU-2", "AU-12"] {
        let stopped = gap(
            &v,
            &md_text,
            id,
            "after agent_stop with no agent_start within 4 s",
        );
        let killed = gap(&v, &md_text, id, "without any signed manifest entry or row");
        // The stop runs to the end of the period; the kill, to the restart.
        let which = stopped["which"].as_str().unwrap();
        assert!(which.contains(&format!(" to {} (", utc(to))), "{stopped}");
        let secs = |g: &Value| -> i64 {
            let w = g["which"].as_str().unwrap();
            w.rsplit('(')
                .next()
                .unwrap()
                .trim_end_matches(" s)")
                .parse()
                .unwrap()
        };
        assert!(
            (5..30).contains(&secs(stopped)),
            "the stop's stretch: {stopped}"
        );
        assert!(
            (5..30).contains(&secs(killed)),
            "the kill's stretch: {killed}"
        );
    }
    assert!(
        md_text.contains("\n## Gaps\n\n### AC-3 Access enforcement: not met\n"),
        "{md_text}"
    );
}
