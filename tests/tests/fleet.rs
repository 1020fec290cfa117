//! A fleet of 20 hosts as one boundary (issue 24): 20 agents, each in its
//! own network namespace in front of its own MCP server, share one moto
//! server for S3 and DynamoDB (tests/src/fleet.rs: a hub namespace that
//! every host reaches by its own link, at one address).
//!
//! - A call held on host 17 is approved through host 3's admin socket and
//!   completes on 17 (the holder polls the shared queue).
//! - A retry-mode approval is used once on host 5; the same call replayed
//!   on host 9 is refused (a conditional write, fleet-wide).
//! - A grant added through host 1 admits a call on host 20.
//! - A newly published bundle is in force on all 20 within two poll
//!   intervals; a tampered one is refused by all 20 and the last good one
//!   keeps deciding.
//! - After the agents stop (their upload queues drained), DuckDB reading
//!   the bucket over S3 (httpfs against moto) sees rows of all 20 hosts,
//!   and `audit verify s3://…` passes, then fails once one object changes.

use std::time::{Duration, Instant};

use mcp_interceptor_tests::{
    Agent, Proc, TempDir, auditq,
    bundle::{aws_cli, hex, output_text, refused_count, tampered},
    fleet::{CASES, Fleet, HUB_IP, MOTO, POLICY, POLL, URL, host_name},
    peer::call,
    require_root,
    s3::BUCKET,
    wait_for,
    world::approval_id,
};
use serde_json::json;

const N: usize = 20;
const SIGTERM: i32 = 15;

/// A call held on host 17 released by a vote through host 3.
fn held_on_17_approved_on_3(f: &Fleet) {
    let ns = f.hosts[16].name().to_string();
    let held = std::thread::spawn(move || {
        let c = call(&ns, URL, "add", json!({"a": 20, "b": 22}));
        (c.ok(), c.text(), c.stderr(), Instant::now())
    });
    let id = f.pending_on(2, "add");
    let voted = Instant::now();
    f.approve_on(2, &id);
    let (ok, out, err, done) = held.join().unwrap();
    assert!(ok && out == "42", "the held call: {out} {err}");
    let took = done.saturating_duration_since(voted);
    eprintln!("held on host 17, approved on host 3: released {took:?} after the vote");
    assert!(
        took < Duration::from_secs(3),
        "released {took:?} after the vote"
    );
    let shown = f.admin_json(16, &["approvals", "show", &id]);
    assert_eq!(shown["status"], "used", "{shown}");
}

/// Retry mode: approved once, used on host 5, refused when replayed on 9.
fn retry_used_once_on_5_refused_on_9(f: &Fleet) {
    let args = json!({"id": "c-fleet"});
    let first = call(f.hosts[4].name(), URL, "lookup_customer", args.clone());
    assert!(!first.ok(), "needs approval first: {}", first.text());
    let id = approval_id(&first.stderr());
    f.approve_on(11, &id);
    let retry = call(f.hosts[4].name(), URL, "lookup_customer", args.clone());
    assert!(
        retry.ok(),
        "the approved retry on host 5: {}",
        retry.stderr()
    );
    assert!(retry.text().contains("c-fleet"), "{}", retry.text());
    let replay = call(f.hosts[8].name(), URL, "lookup_customer", args);
    assert!(
        !replay.ok(),
        "the replay on host 9 passed: {}",
        replay.text()
    );
    let again = approval_id(&replay.stderr());
    assert_ne!(again, id, "the replay is a new request, not the used one");
    let used = f.admin_json(8, &["approvals", "show", &id]);
    assert_eq!(used["status"], "used", "{used}");
}

/// A grant added through host 1 admits a call on host 20.
fn grant_on_1_admits_on_20(f: &Fleet) {
    let q = json!({"sql": "select 1"});
    let before = call(f.hosts[19].name(), URL, "query", q.clone());
    assert!(!before.ok(), "query without a grant: {}", before.text());
    let (ok, out) = f.grant(0, "query", "INC-fleet");
    assert!(ok, "grants add on host 1: {out}");
    let added = Instant::now();
    wait_for(
        "the grant to admit on host 20",
        Duration::from_secs(10),
        || {
            call(f.hosts[19].name(), URL, "query", q.clone())
                .ok()
                .then_some(())
        },
    );
    eprintln!(
        "grant added on host 1 admitted on host 20 after {:?}",
        added.elapsed()
    );
}

/// Bundle 2 (echo forbidden) in force on all 20 within two polls; then a
/// tampered copy of it refused by all 20 while bundle 2 keeps deciding.
fn bundle_everywhere(f: &Fleet, agents: &[(Proc, Agent)]) {
    let forbid = "@id(\"no-echo\")\nforbid (principal, action == Mcp::Action::\"tools/call\", \
                  resource) when { resource.name == \"echo\" };\n";
    f.publish("2", &format!("{POLICY}\n{forbid}"), CASES);
    let published = Instant::now();
    wait_for(
        "bundle 2 in force on all 20 hosts",
        Duration::from_secs(2 * POLL),
        || {
            agents
                .iter()
                .all(|(_, a)| a.log().contains("bundle_version=2 "))
                .then_some(())
        },
    );
    eprintln!(
        "bundle 2 in force on all 20 hosts {:?} after publishing",
        published.elapsed()
    );
    let echo = call(f.hosts[13].name(), URL, "echo", json!({"text": "hi"}));
    assert!(!echo.ok(), "bundle 2 forbids echo: {}", echo.text());

    let good =
        f.aws("print(s3.get_object(Bucket=bucket, Key='policy/bundle.json')['Body'].read().hex())");
    let good: Vec<u8> = (0..good.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&good.trim()[i..i + 2], 16).unwrap())
        .collect();
    let before: Vec<u64> = agents
        .iter()
        .map(|(_, a)| refused_count(a, "bad_signature"))
        .collect();
    f.aws(&format!(
        "s3.put_object(Bucket=bucket, Key='policy/bundle.json', Body=bytes.fromhex('{}'))",
        hex(&tampered(&good))
    ));
    wait_for(
        "the tampered bundle refused by all 20 hosts",
        Duration::from_secs(4 * POLL),
        || {
            agents
                .iter()
                .zip(&before)
                .all(|((_, a), b)| refused_count(a, "bad_signature") > *b)
                .then_some(())
        },
    );
    for i in [0, 19] {
        let echo = call(f.hosts[i].name(), URL, "echo", json!({"text": "hi"}));
        assert!(!echo.ok(), "bundle 2 still decides on host {}", i + 1);
        let add = call(f.hosts[i].name(), URL, "query", json!({"sql": "select 1"}));
        assert!(
            add.ok(),
            "and its grant stands on host {}: {}",
            i + 1,
            add.stderr()
        );
    }
}

/// DuckDB over the bucket (httpfs against moto): every host's rows.
fn duckdb_sees_every_host(f: &Fleet) {
    let endpoint = format!("{HUB_IP}:{MOTO}");
    let v = auditq::s3_sql(
        Some(f.hosts[0].name()),
        &endpoint,
        BUCKET,
        "fleet",
        "SELECT host, count(*) FROM mcp_audit GROUP BY host ORDER BY host",
    );
    let hosts: Vec<String> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..N).map(host_name).collect();
    assert_eq!(hosts, want, "{v}");
}

/// `audit verify s3://…` from host 1: (passed, output).
fn verify(f: &Fleet, config: &std::path::Path) -> (bool, String) {
    let url = format!("s3://{BUCKET}/fleet/");
    let cfg = config.display().to_string();
    let out = aws_cli(
        f.hosts[0].name(),
        &["audit", "verify", &url, "--config", &cfg],
    );
    (out.status.success(), output_text(&out))
}

fn verify_then_tamper(f: &Fleet, config: &std::path::Path) {
    let (ok, out) = verify(f, config);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("ok: {N} host(s)")), "{out}");
    // One byte of one of host 7's Parquet files changed in the bucket.
    let key = f.aws(
        "pages = s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix='fleet/events/')\n\
         k = sorted(o['Key'] for p in pages for o in p['Contents'] if '/host07-' in o['Key'])[0]\n\
         b = bytearray(s3.get_object(Bucket=bucket, Key=k)['Body'].read())\n\
         b[len(b) // 2] ^= 1\n\
         s3.put_object(Bucket=bucket, Key=k, Body=bytes(b))\n\
         print(k)",
    );
    let (ok, out) = verify(f, config);
    assert!(!ok, "verify passed after {key} changed: {out}");
    assert!(
        out.contains("host host07: FAIL")
            && out.contains(key.trim())
            && out.contains("SHA-256 differs from its manifest entry"),
        "{out}"
    );
    assert!(out.contains("host host06: ok"), "{out}");
}

#[test]
fn twenty_hosts_one_queue_one_bundle_one_audit() {
    require_root();
    let dir = TempDir::new("fleet20");
    let mut f = Fleet::new("fl", N, dir.path());
    f.start_aws();
    f.publish("1", POLICY, CASES);
    let started = Instant::now();
    let mut agents = f.start_all();
    eprintln!("{N} agents ready in {:?}", started.elapsed());

    held_on_17_approved_on_3(&f);
    retry_used_once_on_5_refused_on_9(&f);
    grant_on_1_admits_on_20(&f);
    bundle_everywhere(&f, &agents);

    for (_, a) in &mut agents {
        a.stop(SIGTERM);
    }
    duckdb_sees_every_host(&f);
    verify_then_tamper(&f, &f.home(0).join("agent.toml"));
}
