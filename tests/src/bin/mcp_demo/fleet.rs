//! The demo's fleet section: three hosts, each its own namespace with its
//! own MCP server and agent, sharing one moto server for S3 and DynamoDB
//! (mcp_interceptor_tests::fleet): one signed policy bundle, one approval
//! queue, one audit bucket.

use std::time::Instant;

use mcp_interceptor_tests::{
    TempDir,
    bundle::{aws_cli, output_text},
    fleet::{CASES, Fleet, POLICY, URL},
    peer::call,
};
use serde_json::json;

/// Runs the section; prints what each host saw.
pub fn show() {
    let dir = TempDir::new("demo-fleet");
    let mut f = Fleet::new("dfl", 3, dir.path());
    f.start_aws();
    f.publish("1", POLICY, CASES);
    println!("policy bundle 1 signed and published to s3://audit-e2e/policy/ (moto)");
    let mut hosts = f.start_all();
    println!(
        "host01..host03 started; each pins the signer's key and polls the bundle; \
         [approvals] store = \"dynamodb://mcpi-fleet\""
    );

    let ns = f.hosts[2].name().to_string();
    let held = std::thread::spawn(move || call(&ns, URL, "add", json!({"a": 20, "b": 22})));
    let id = f.pending_on(0, "add");
    println!("host03 holds `add` (needs on-call); host01 lists it as pending: {id}");
    let voted = Instant::now();
    f.approve_on(0, &id);
    let held = held.join().unwrap();
    println!(
        "approved through host01 -> the call held on host03 returns {} ({:.1?} after the vote)",
        held.text(),
        voted.elapsed()
    );

    let q = json!({"sql": "select 1"});
    let before = call(f.hosts[1].name(), URL, "query", q.clone());
    let (ok, _) = f.grant(0, "query", "INC-7");
    let added = Instant::now();
    let mut after = call(f.hosts[1].name(), URL, "query", q.clone());
    while !after.ok() && added.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        after = call(f.hosts[1].name(), URL, "query", q.clone());
    }
    println!(
        "query on host02: {} without a grant; grant added on host01 ({}); then: {}",
        if before.ok() { "allowed" } else { "refused" },
        if ok { "ok" } else { "failed" },
        if after.ok() { "allowed" } else { "refused" }
    );

    for (_, a) in &mut hosts {
        a.stop(15);
    }
    let cfg = f.home(0).join("agent.toml");
    let verify = aws_cli(
        f.hosts[0].name(),
        &[
            "audit",
            "verify",
            "s3://audit-e2e/fleet/",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    println!("mcp-interceptor audit verify s3://audit-e2e/fleet/ (every host's chain):");
    print!("{}", output_text(&verify));
}
