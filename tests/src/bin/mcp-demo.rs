//! `cargo xtask demo`: the agent in front of a real MCP server, in a network
//! namespace, reached by an unchanged MCP client at the server's own
//! address. Prints what the agent saw, then removes everything it made.

use std::time::Duration;

#[path = "mcp_demo/fleet.rs"]
mod fleet;
#[path = "mcp_demo/mcp2026.rs"]
mod mcp2026;

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, Veth, everything,
    oidc::Issuer,
    peer::{self, call, call_with},
    require_root,
};
use serde_json::json;

/// Developers may use the CRM tools; file reads stay under /srv/crm (the
/// path is normalized first, so `..` does not escape).
const DEMO_POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"], resource);

@id("dev-crm")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource in Mcp::Server::"crm")
when { ["echo", "lookup_customer", "read_file"].contains(resource.name) };

// Queries change data: each one waits for an on-call engineer.
@id("crm-query-approval")
@approval("oncall")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource in Mcp::Server::"crm")
when { resource.name == "query" };

@id("crm-files-only")
forbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"read_file")
when { resource.hasTag("path") && !(resource.getTag("path") like "/srv/crm/*") };
"#;

fn section(title: &str) {
    println!("\n=== {title}");
}

fn main() {
    require_root();
    let dir = TempDir::new("demo");
    let host = NetNs::new("demo-host");
    let laptop = NetNs::new("demo-client");
    let veth = Veth::connect(&host, &laptop, 7);
    section(&format!(
        "namespaces: {} (MCP server {}:8080 + agent), {} (remote client {})",
        host.name(),
        veth.a_v4,
        laptop.name(),
        veth.b_v4
    ));

    let _server = peer::server(host.name(), "[::]:8080", dir.path());
    let _sdk_server = mcp2026::server(&host, &veth.a_v4.to_string(), dir.path());
    println!("MCP server (official Python SDK, protocol 2026-07-28) listening on 0.0.0.0:8081");
    println!("MCP server (rmcp, streamable HTTP) listening on [::]:8080");
    let issuer = Issuer::start_on(&host, &veth.a_v4.to_string(), 9400, dir.path());
    issuer.set_user("alice", json!({ "groups": ["dev", "oncall"] }));
    println!(
        "OIDC issuer (oidc-provider-mock) at {}; user alice in groups dev, oncall",
        issuer.url
    );
    let policy = dir.path().join("policy.cedar");
    let text = format!("{DEMO_POLICY}{}", mcp2026::POLICY);
    std::fs::write(&policy, &text).expect("write the demo policy");
    let agent = Agent::start_full(
        &host,
        dir.path(),
        "fail = \"closed\"",
        &format!(
            "[[intercept.ports]]\nport = 8080\nname = \"crm\"\n{}",
            mcp2026::PORT
        ),
        "",
        &format!(
            "[identity]\nallow_anonymous = false\n[[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"mcp-demo\"]\n\
             [policy]\nfiles = [\"{}\"]\npins_file = \"{}\"\non_tool_change = \"block\"\n\
             [admin]\nsocket = \"{}\"\n\
             [[admin.local_users]]\nuser = \"root\"\nsubject = \"olivia\"\ngroups = [\"oncall\"]\n",
            issuer.url,
            policy.display(),
            dir.path().join("pins.json").display(),
            dir.path().join("admin.sock").display()
        ),
        Vec::new(),
    );
    println!("policy ({}):{text}", policy.display());
    println!(
        "agent config:\n{}",
        std::fs::read_to_string(&agent.config).unwrap_or_default()
    );

    section("unchanged MCP clients call the server at its own address");
    let token = issuer.login("alice", "mcp-demo", "openid profile", None)["id_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("alice logged in (authorization-code flow): an RS256 ID token for aud mcp-demo");
    let url = format!("http://{}:8080/mcp", veth.a_v4);
    let anonymous = call(laptop.name(), &url, "echo", json!({ "text": "x" }));
    println!(
        "client without a token -> {}",
        if anonymous.ok() {
            "SERVED (unexpected)".to_string()
        } else {
            let err = anonymous.stderr();
            let line = err.lines().find(|l| l.contains("401")).unwrap_or("refused");
            format!("refused: {}", line.trim())
        }
    );
    let remote = call_with(
        laptop.name(),
        &url,
        "lookup_customer",
        json!({ "id": "c-42" }),
        &["--bearer", &token],
    );
    println!(
        "remote client -> {url}\n  tools: {}",
        remote.json()["tools"]
    );
    let text = remote.text();
    println!(
        "  lookup_customer result: {}...",
        &text[..text.len().min(160)]
    );
    let local = call_with(
        host.name(),
        "http://[::1]:8080/mcp",
        "echo",
        json!({ "text": "hi from the same host" }),
        &["--bearer", &token],
    );
    println!(
        "same-host client -> http://[::1]:8080/mcp\n  echo result: {}",
        local.text()
    );

    section("policy: what alice may not do");
    let outside = call_with(
        laptop.name(),
        &url,
        "read_file",
        json!({ "path": "/srv/crm/../../etc/passwd" }),
        &["--bearer", &token],
    );
    let err = outside.stderr();
    println!(
        "read_file /srv/crm/../../etc/passwd -> {}",
        err.lines()
            .find(|l| l.contains("-32002"))
            .map(str::trim)
            .unwrap_or("ALLOWED (unexpected)")
    );
    let explain = agent.cli(&[
        "policy",
        "explain",
        "--config",
        &agent.config.display().to_string(),
        "--subject",
        "alice",
        "--group",
        "dev",
        "--method",
        "tools/call",
        "--tool",
        "read_file",
        "--args",
        r#"{"path": "/srv/crm/../../etc/passwd"}"#,
    ]);
    println!(
        "$ mcp-interceptor policy explain --subject alice --group dev --method tools/call --tool read_file --args '{{\"path\": \"/srv/crm/../../etc/passwd\"}}'"
    );
    print!("{}", String::from_utf8_lossy(&explain.stdout));

    section("approval: alice's query waits until on-call approves this exact call");
    let socket = dir.path().join("admin.sock").display().to_string();
    let admin = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--socket", &socket]);
        String::from_utf8_lossy(&agent.cli(&a).stdout).into_owned()
    };
    let held = std::thread::scope(|scope| {
        let held = scope.spawn(|| {
            call_with(
                laptop.name(),
                &url,
                "query",
                json!({ "sql": "UPDATE orders SET state = 'refunded' WHERE id = 42" }),
                &["--bearer", &token],
            )
        });
        let mut listed = String::new();
        for _ in 0..100 {
            listed = admin(&["approvals", "list"]);
            if listed.contains("apr-") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "$ mcp-interceptor approvals list   (as root, mapped to olivia in oncall)\n{listed}"
        );
        let id = listed
            .split_whitespace()
            .find(|w| w.starts_with("apr-"))
            .unwrap_or("apr-missing")
            .to_string();
        // Listings and webhooks show arguments masked; the approver looks
        // at the real ones, and the look is an audit row.
        println!(
            "$ mcp-interceptor approvals show {id} --values   (audited as approval_values_viewed)"
        );
        print!("{}", admin(&["approvals", "show", &id, "--values"]));
        println!("$ mcp-interceptor approvals approve {id} --reason \"INC-42 refund\"");
        print!(
            "{}",
            admin(&["approvals", "approve", &id, "--reason", "INC-42 refund"])
        );
        held.join().expect("the held call")
    });
    println!(
        "alice's client, kept alive meanwhile, gets: {}",
        held.text()
    );

    section("MCP 2026-07-28: the official Python SDK's client and server, judged the same way");
    let sdk_url = format!("http://{}:8081/mcp", veth.a_v4);
    mcp2026::show(&laptop, &sdk_url, &token);

    section("what the agent logged (one line per connection)");
    std::thread::sleep(Duration::from_millis(200));
    for line in agent.log().lines().filter(|l| l.contains("connection")) {
        println!("{line}");
    }

    section("every MCP message the agent saw, paired with its answer (events.jsonl)");
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "{:<13} {:<8} {:<18} {:<26} {:<16} {:>6} {:>8}",
        "kind", "caller", "direction", "method", "target", "status", "ms"
    );
    for e in agent.events() {
        let ms = match (e["received_us"].as_i64(), e["done_us"].as_i64()) {
            (Some(r), Some(d)) => format!("{:.1}", (d - r) as f64 / 1e3),
            _ => "-".into(),
        };
        let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
        let caller = e["caller"]["subject"].as_str().unwrap_or("-").to_string();
        println!(
            "{:<13} {:<8} {:<18} {:<26} {:<16} {:>6} {:>8}",
            s("kind"),
            caller,
            s("direction"),
            s("method"),
            s("target"),
            e["http_status"]
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or("-".into()),
            ms
        );
    }

    section("mcp-interceptor status (pinned kernel state)");
    println!("{:#}", agent.status());
    section("mcp-interceptor doctor");
    print!("{}", String::from_utf8_lossy(&agent.doctor().stdout));

    section("agent killed (kill -9): fail closed keeps the port guarded");
    let mut agent = agent;
    agent.stop(9);
    // With a valid token: what stops it is the kernel, not the 401.
    let refused = call_with(
        laptop.name(),
        &url,
        "echo",
        json!({ "text": "x" }),
        &["--bearer", &token],
    );
    println!(
        "remote client while the agent is down: {}",
        if refused.ok() {
            "REACHED THE SERVER (unexpected)"
        } else {
            "refused"
        }
    );
    println!("counters: {:?}", agent.counters(8080));

    section("restart: the WAL left by kill -9 becomes Parquet before traffic; then a clean stop");
    agent.restart();
    agent.stop(15);
    let audit = agent.audit_dir();
    let session = agent
        .events()
        .iter()
        .find(|e| e["target"] == "lookup_customer")
        .and_then(|e| e["session_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    for f in interceptor::audit::chain::data_files(&audit.join("events")) {
        println!("{}", f.strip_prefix(&audit).unwrap_or(&f).display());
    }

    section(&format!("mcp-interceptor audit replay --session {session}"));
    let replay = agent.audit_cli(&[
        "replay",
        "--session",
        &session,
        "--dir",
        &audit.display().to_string(),
    ]);
    print!("{}", String::from_utf8_lossy(&replay.stdout));

    section("an auditor's query (deploy/athena/queries/tool_calls_by_tool.sql) run by DuckDB");
    let out = std::process::Command::new(everything::repo().join(".venv/bin/python"))
        .arg(everything::repo().join("tests/peers/audit_check.py"))
        .arg("--dir")
        .arg(&audit)
        .args([
            "--query",
            "tool_calls_by_tool",
            "--param",
            "tool=lookup_customer",
        ])
        .args([
            "--param",
            "from=2000-01-01 00:00:00",
            "--param",
            "to=2100-01-01 00:00:00",
        ])
        .output();
    match out {
        Ok(o) => print!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("(DuckDB not available: {e}; run cargo xtask setup)"),
    }

    section("mcp-interceptor audit verify (files + signed manifest chain)");
    let verify = agent.audit_cli(&["verify", &audit.display().to_string()]);
    print!("{}", String::from_utf8_lossy(&verify.stdout));

    section("a fleet: three hosts, one signed policy, one approval queue, one audit bucket");
    fleet::show();
    println!("demo done; namespaces, pins and processes are removed on exit");
}
