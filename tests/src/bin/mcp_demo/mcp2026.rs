//! The demo's MCP 2026-07-28 section: the official Python SDK's server
//! (tests/peers/mcp2026_server.py) on port 8081 of the host, named
//! `sdk2026`, called by the SDK's client from the laptop namespace.

use std::{path::Path, time::Duration};

use mcp_interceptor_tests::{NetNs, Proc, proc::run_in, s3::venv_bin, sdk};
use serde_json::Value;

/// The policy for `sdk2026`: alice (dev) may call its tools (report's
/// result masked), poll her tasks and listen; the server may sample her client,
/// but no policy lets it elicit (ask for her PIN).
pub const POLICY: &str = r#"
@id("sdk2026-session")
permit (principal, action in [Mcp::Action::"server/discover", Mcp::Action::"tools/list",
  Mcp::Action::"subscriptions/listen"], resource in Mcp::Server::"sdk2026");

@id("sdk2026-calls")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource in Mcp::Server::"sdk2026")
when { ["unlock", "summarize", "rug_pull", "fetch_report", "echo"].contains(resource.name) };

// The report's task result is masked with `vault`, whichever request
// (the call, or a tasks/get of its handle) carries it.
@id("sdk2026-report")
@mask("vault")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"report");

@id("sdk2026-tasks")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tasks/get", resource in Mcp::Server::"sdk2026");

@id("sdk2026-sampling")
permit (principal, action == Mcp::Action::"sampling/createMessage", resource in Mcp::Server::"sdk2026");
"#;

/// The port rule of the SDK server, and the `vault` masking profile.
pub const PORT: &str = "[[intercept.ports]]\nport = 8081\nname = \"sdk2026\"\n\
    [mask.profiles.vault]\n[[mask.profiles.vault.custom]]\nname = \"vault\"\nregex = \"VAULT-[0-9]{6}\"\n";

/// Starts the SDK server in `host`, accepting `addr` as its Host.
pub fn server(host: &NetNs, addr: &str, dir: &Path) -> Proc {
    let allow = format!("{addr}:8081");
    sdk::server(
        host,
        "mcp2026_server.py",
        &[
            "--host",
            "0.0.0.0",
            "--port",
            "8081",
            "--allow-host",
            &allow,
        ],
        dir,
    )
}

/// One step of the SDK client from `ns` (see mcp2026_client.py).
fn step(ns: &NetNs, url: &str, token: &str, step: &[&str]) -> Value {
    let mut args = vec![
        "--url".to_string(),
        url.into(),
        "--bearer".into(),
        token.into(),
    ];
    args.extend(step.iter().map(|s| s.to_string()));
    let out = run_in(
        Some(ns.name()),
        &venv_bin("python"),
        &sdk::script_args("mcp2026_client.py", &args),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
        Value::String(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    })
}

/// What the 2026-07-28 client sees through the agent, step by step.
pub fn show(laptop: &NetNs, url: &str, token: &str) {
    println!("SDK client (mcp 2.3, protocol 2026-07-28, stateless) -> {url}");
    let out = step(
        laptop,
        url,
        token,
        &["elicit", "--vault", "payroll", "--pin", "1234"],
    );
    println!(
        "  unlock(payroll): the server answers input_required, asking for a PIN by elicitation;\n  \
         no policy permits elicitation/create, so the client never sees the question:\n    {out}"
    );
    let out = step(laptop, url, token, &["sample", "--text", "three lines"]);
    println!("  summarize(): sampling is permitted, the round trip completes:\n    {out}");
    let out = step(laptop, url, token, &["task", "--tool", "report"]);
    println!(
        "  report(): answered with a task handle (tasks extension); the agent binds it to alice\n  \
         and masks and audits tasks/get as the report tool's result:\n    {out}"
    );
    let out = step(laptop, url, token, &["listen"]);
    println!(
        "  subscriptions/listen: the server changes fetch_report's description and announces it;\n  \
         tool pinning refuses the changed tool on the next call:\n    announced: {}, call: {}",
        out["announced"], out["call_after"]
    );
    let out = step(laptop, url, token, &["legacy"]);
    println!("  the same port, a 2025-11-25 client (initialize):\n    {out}");
}
