//! One bucket, many hosts: two agents (host names `alpha` and `beta`)
//! ship their trails to one moto bucket, and `audit verify s3://…` checks
//! every host's chain straight from the bucket, through the uploader's
//! client. A row rewritten in one uploaded Parquet file, and a manifest
//! entry deleted from the middle of a chain, each fail verify naming the
//! host and the object; an empty prefix is an error, not a pass.
//!
//! Heartbeat rows: agents on two bundle versions write one every second,
//! naming host, version, policy bundle and steering counters, and the
//! shipped fleet query (deploy/athena/fleet/fleet_health.sql, run with
//! DuckDB) lists the stopped host as silent and as behind on its bundle.

use std::{path::Path, process::Command, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq,
    bundle::{self, aws_cli, aws_env, ok, output_text},
    peer::{self, call},
    require_root,
    s3::{BUCKET, boto_in, bucket_objects_in, moto_in},
    wait_for,
};
use serde_json::json;

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const SIGTERM: i32 = 15;
const MOTO: u16 = 9000;

/// `mcp-interceptor audit verify <url> --config <config>` in `ns`, with
/// credentials from the AWS environment as an auditor would have them.
fn verify(ns: &NetNs, url: &str, config: &std::path::Path) -> (bool, String) {
    let config = config.display().to_string();
    let out = aws_cli(ns.name(), &["audit", "verify", url, "--config", &config]);
    (out.status.success(), output_text(&out))
}

/// Runs an agent as `host` until its chain has at least three entries in
/// the bucket, then stops it (which drains its upload queue).
fn ship(ns: &NetNs, dir: &TempDir, host: &str) -> std::path::PathBuf {
    let home = dir.path().join(host);
    std::fs::create_dir_all(&home).expect("mkdir");
    let keys = format!(
        "host = \"{host}\"\n[audit.s3]\nbucket = \"{BUCKET}\"\nprefix = \"fleet\"\n\
         endpoint = \"http://127.0.0.1:{MOTO}\"\nmax_retry_backoff_ms = 500\n"
    );
    let env = aws_env();
    let mut agent = Agent::start_with_env(ns, &home, "", PORT, &keys, env);
    let said = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({ "text": format!("from {host}") }),
    );
    assert_eq!(said.text(), format!("from {host}"));
    let third = format!("fleet/manifest/{host}/000000000002.json");
    wait_for(
        "three manifest entries in the bucket",
        Duration::from_secs(60),
        || {
            bucket_objects_in(Some(ns.name()), MOTO)
                .contains_key(&third)
                .then_some(())
        },
    );
    agent.stop(SIGTERM);
    home.join("agent.toml")
}

#[test]
fn audit_verify_checks_every_hosts_chain_straight_from_s3() {
    require_root();
    let (ns, dir) = (NetNs::new("fleet"), TempDir::new("fleet"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let _moto = moto_in(Some(ns.name()), MOTO, dir.path(), "fleet");
    let config = ship(&ns, &dir, "alpha");
    ship(&ns, &dir, "beta");
    let url = format!("s3://{BUCKET}/fleet/");

    let (ok, out) = verify(&ns, &url, &config);
    assert!(ok, "{out}");
    for host in ["alpha", "beta"] {
        assert!(out.contains(&format!("host {host}: ok")), "{out}");
    }
    assert!(out.contains("ok: 2 host(s)"), "{out}");

    // Nothing under a prefix is an error, not a pass.
    let (ok, out) = verify(&ns, &format!("s3://{BUCKET}/nobody/"), &config);
    assert!(!ok && out.contains("nothing to verify"), "{out}");

    // One row of one of beta's files rewritten, as a valid Parquet file.
    let objs = bucket_objects_in(Some(ns.name()), MOTO);
    let victim = (objs.keys())
        .find(|k| k.starts_with("fleet/events/") && k.contains("/beta-"))
        .expect("a data file of beta")
        .clone();
    let original = &objs[&victim];
    boto_in(
        Some(ns.name()),
        MOTO,
        &format!(
            "import io, pyarrow as pa, pyarrow.parquet as pq\n\
             key = '{victim}'\n\
             t = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)['Body'].read()))\n\
             i = t.schema.get_field_index('message')\n\
             msgs = t.column('message').to_pylist()\n\
             msgs[0] = 'rewritten'\n\
             t = t.set_column(i, t.schema.field(i), pa.array(msgs, type=t.schema.field(i).type))\n\
             buf = io.BytesIO(); pq.write_table(t, buf)\n\
             s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())"
        ),
    );
    let (ok, out) = verify(&ns, &url, &config);
    assert!(!ok, "a rewritten row passed: {out}");
    assert!(
        out.contains("host beta: FAIL")
            && out.contains(&format!("s3://{BUCKET}/{victim}"))
            && out.contains("SHA-256 differs from its manifest entry"),
        "{out}"
    );
    assert!(
        out.contains("host alpha: ok"),
        "one host's break is its own: {out}"
    );

    // Put back: it verifies again. Then an entry out of alpha's chain.
    boto_in(
        Some(ns.name()),
        MOTO,
        &format!("s3.put_object(Bucket=bucket, Key='{victim}', Body=bytes.fromhex('{original}'))"),
    );
    let (ok, out) = verify(&ns, &url, &config);
    assert!(ok, "{out}");
    boto_in(
        Some(ns.name()),
        MOTO,
        "s3.delete_object(Bucket=bucket, Key='fleet/manifest/alpha/000000000001.json')",
    );
    let (ok, out) = verify(&ns, &url, &config);
    assert!(!ok, "a deleted entry passed: {out}");
    assert!(
        out.contains("host alpha: FAIL")
            && out.contains("manifest/alpha/000000000002.json")
            && out.contains("entry 1 is missing"),
        "{out}"
    );
    assert!(out.contains("host beta: ok"), "{out}");
}

/// `mcp-interceptor <args>` in `ns` with the moto credentials; stdout.
fn cli_ok(ns: &NetNs, args: &[&str]) -> String {
    ok(aws_cli(ns.name(), args))
}

/// A bundle that permits everything, with the `policy test` case that
/// says so, published as `version` to `s3://audit-e2e/policy/`.
fn publish(ns: &NetNs, root: &Path, version: &str) {
    let policy = "@id(\"all\")\npermit (principal, action, resource);\n";
    let cases = "[[case]]\nname = \"echo\"\nsubject = \"anyone\"\nmethod = \"tools/call\"\n\
                 tool = \"echo\"\nexpect = \"allow\"\n";
    ok(bundle::publish(
        ns.name(),
        root,
        version,
        policy,
        cases,
        POLICY,
    ));
}

const POLICY: &str = "s3://audit-e2e/policy/";

/// Starts `host` on the bundle source, a heartbeat every second; makes one
/// call through it and waits for two heartbeat rows in its Parquet files.
fn beating(ns: &NetNs, root: &Path, host: &str, public: &str) -> Agent {
    let home = root.join(host);
    std::fs::create_dir_all(&home).unwrap();
    let tables = format!(
        "{PORT}[policy]\nsource = \"{POLICY}\"\nbundle_keys = [\"{public}\"]\nreload_poll_seconds = 2\n"
    );
    let keys = format!(
        "host = \"{host}\"\nheartbeat_seconds = 1\n[audit.s3]\nbucket = \"{BUCKET}\"\nprefix = \"beats\"\n\
         endpoint = \"http://127.0.0.1:{MOTO}\"\nretention = \"keep-local\"\n"
    );
    let env = aws_env();
    let agent = Agent::start_with_env(ns, &home, "", &tables, &keys, env);
    let said = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({ "text": host }),
    );
    assert_eq!(said.text(), host);
    wait_for("two heartbeat rows", Duration::from_secs(30), || {
        // Nothing to query until the first segment is converted (the
        // events directory, then its first file, appear a moment apart):
        // a failed query is asked again until the deadline.
        let dir = agent.audit_dir();
        if !dir.join("events").is_dir() {
            return None;
        }
        let n = std::panic::catch_unwind(|| {
            auditq::sql(
                &dir,
                "SELECT count(*) FROM mcp_audit WHERE kind = 'heartbeat'",
            )
        })
        .ok()?;
        (n["rows"][0][0].as_i64() >= Some(2)).then_some(())
    });
    agent
}

/// `date -u` with `args` (e.g. `-d -1hour`) as 'YYYY-MM-DD HH:MM:SS'.
fn utc(args: &[&str]) -> String {
    let out = Command::new("date")
        .arg("-u")
        .args(args)
        .arg("+%Y-%m-%d %H:%M:%S")
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn heartbeats_name_the_bundle_and_the_fleet_query_finds_silent_and_stale_hosts() {
    require_root();
    let (ns, dir) = (NetNs::new("beats"), TempDir::new("beats"));
    let root = dir.path();
    let _server = peer::server(ns.name(), "127.0.0.1:8080", root);
    let _moto = moto_in(Some(ns.name()), MOTO, root, "beats");
    let key = root.join("signer.key");
    let public = cli_ok(&ns, &["policy", "keygen", key.to_str().unwrap()]);
    let public = public.trim().to_string();
    std::fs::write(
        root.join("publisher.toml"),
        format!(
            "{PORT}[identity]\nallow_anonymous = true\n[audit]\ndir = \"{}\"\n\
             [audit.s3]\nbucket = \"{BUCKET}\"\nendpoint = \"http://127.0.0.1:{MOTO}\"\n\
             [policy]\nbundle_keys = [\"{public}\"]\n",
            root.join("pub-audit").display()
        ),
    )
    .unwrap();

    // "stale" runs bundle 1, then stops; "live" runs bundle 2.
    publish(&ns, root, "1");
    let mut stale = beating(&ns, root, "stale", &public);
    stale.stop(SIGTERM);
    let stopped = std::time::Instant::now();
    publish(&ns, root, "2");
    let mut live = beating(&ns, root, "live", &public);

    // The heartbeat row: host, version, policy set and bundle, counters.
    let beat = auditq::sql(
        &live.audit_dir(),
        "SELECT h.host, h.agent_version = s.agent_version, h.policy_version IS NOT NULL, \
         h.bundle_version, h.bundle_signer, h.message, h.method, h.subject \
         FROM mcp_audit h, (SELECT agent_version FROM mcp_audit WHERE kind = 'agent_start') s \
         WHERE h.kind = 'heartbeat' ORDER BY h.event_time_us DESC LIMIT 1",
    );
    let row = &beat["rows"][0];
    assert_eq!(row[0], "live", "{beat:#}");
    assert_eq!(row[1], true, "the agent's version: {beat:#}");
    assert_eq!(row[2], true, "the policy set in force: {beat:#}");
    assert_eq!((&row[3], &row[4]), (&json!(2), &json!(public)), "{beat:#}");
    let counters: serde_json::Value = serde_json::from_str(row[5].as_str().unwrap()).unwrap();
    let port = (counters["steer"].as_array())
        .and_then(|a| a.iter().find(|c| c["port"] == 8080))
        .unwrap_or_else(|| panic!("steering counters of port 8080: {counters}"));
    assert!(port["steered"].as_u64() >= Some(1), "{counters}");
    assert_eq!(
        (&row[6], &row[7]),
        (&json!(null), &json!(null)),
        "no request"
    );

    // Both hosts' files in one table, as the bucket holds them.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(stopped.elapsed()));
    let fleet = root.join("fleet");
    std::fs::create_dir_all(&fleet).unwrap();
    for a in [&stale, &live] {
        let out = Command::new("cp")
            .args(["-a", "--no-target-directory"])
            .arg(a.audit_dir().join("events"))
            .arg(fleet.join("events"))
            .status()
            .expect("cp");
        assert!(out.success());
    }
    let (from, now) = (utc(&["-d", "-1hour"]), utc(&[]));
    let judged = |minutes: &str| {
        let params = [
            ("from", from.as_str()),
            ("now", now.as_str()),
            ("silent_minutes", minutes),
        ];
        auditq::records(&fleet, "fleet_health", &params)
    };
    // Silent for more than 6 seconds: only "stale", which is also behind.
    let six = judged("0.1");
    assert_eq!(six.len(), 1, "{six:?}");
    let s = &six[0];
    assert_eq!(
        (
            &s["host"],
            &s["silent"],
            &s["old_bundle"],
            &s["bundle_version"],
            &s["newest_bundle"]
        ),
        (
            &json!("stale"),
            &json!(true),
            &json!(true),
            &json!(1),
            &json!(2)
        ),
        "{six:?}"
    );
    // Allowed an hour of silence: "stale" is listed for its bundle only.
    let hour = judged("60");
    assert_eq!(hour.len(), 1, "{hour:?}");
    assert_eq!(
        (&hour[0]["silent"], &hour[0]["old_bundle"]),
        (&json!(false), &json!(true))
    );
    live.stop(SIGTERM);
}
