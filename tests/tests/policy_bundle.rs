//! Policy from one source (issue 24): signed bundles published to S3
//! (moto's server) with `policy publish`, loaded by the agent from
//! `[policy] source` and enforced through the steered port. Newer bundles
//! are in force within two polls; a tampered, foreign-signed, unsigned or
//! replayed older bundle is refused (logged, counted) and the previous one
//! keeps deciding, as calls through the proxy show. The agent restarts on
//! its cached bundle with the source gone, refuses to start with neither,
//! and its audit rows name each decision's bundle version and signer.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq,
    bundle::{aws_cli, aws_env, hex, ok, refused_count, tampered},
    peer::{self, call},
    require_root,
    s3::{BUCKET, boto_in, moto_in},
    wait_for,
};
use serde_json::json;

const SIGTERM: i32 = 15;
const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const URL: &str = "http://127.0.0.1:8080/mcp";
const MOTO: u16 = 9000;
/// The agent's poll interval, seconds.
const POLL: u64 = 2;
const SOURCE: &str = "s3://audit-e2e/policy/";

fn s3_section() -> String {
    format!(
        "\n[audit.s3]\nbucket = \"{BUCKET}\"\nprefix = \"audit\"\nendpoint = \"http://127.0.0.1:{MOTO}\"\nmax_retry_backoff_ms = 500\n\
         retention = \"keep-local\"\n"
    )
}

/// A bundle directory: everything permitted except `tools/call` of
/// `forbidden`, with the `policy test` cases that say so.
fn bundle_dir(root: &Path, name: &str, forbidden: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("base.cedar"),
        "@id(\"all\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("deny.cedar"),
        format!(
            "@id(\"no-{forbidden}\")\nforbid (principal, action == Mcp::Action::\"tools/call\", \
             resource == Mcp::Tool::\"{forbidden}\");\n"
        ),
    )
    .unwrap();
    let other = if forbidden == "echo" { "add" } else { "echo" };
    std::fs::write(
        dir.join("cases.toml"),
        format!(
            "[[case]]\nname = \"forbidden\"\nsubject = \"anyone\"\nmethod = \"tools/call\"\n\
             tool = \"{forbidden}\"\nexpect = \"deny\"\n\
             [[case]]\nname = \"other\"\nsubject = \"anyone\"\nmethod = \"tools/call\"\n\
             tool = \"{other}\"\nexpect = \"allow\"\n"
        ),
    )
    .unwrap();
    dir
}

/// (echo allowed, add allowed) through the proxy.
fn allowed(ns: &NetNs) -> (bool, bool) {
    let echo = call(ns.name(), URL, "echo", json!({"text": "hi"}));
    let add = call(ns.name(), URL, "add", json!({"a": 1, "b": 2}));
    (
        echo.ok() && echo.text() == "hi",
        add.ok() && add.text() == "3",
    )
}

/// Puts `bytes` as the bundle object, as an attacker with write access to
/// the bucket (but not the key) could.
fn put_object(ns: &NetNs, bytes: &[u8]) {
    boto_in(
        Some(ns.name()),
        MOTO,
        &format!(
            "s3.put_object(Bucket=bucket, Key='policy/bundle.json', Body=bytes.fromhex('{}'))",
            hex(bytes)
        ),
    );
}

/// Puts `bytes`, waits for their refusal as `reason`, and shows through
/// the proxy that the bundle in force still decides.
fn refused(ns: &NetNs, agent: &Agent, bytes: &[u8], reason: &str, in_force: (bool, bool)) {
    let before = refused_count(agent, reason);
    put_object(ns, bytes);
    wait_for(
        &format!("the agent to refuse the bundle ({reason})"),
        Duration::from_secs(4 * POLL),
        || (refused_count(agent, reason) > before).then_some(()),
    );
    assert_eq!(
        refused_count(agent, reason),
        before + 1,
        "counted once per object"
    );
    assert!(
        agent.log().contains(reason),
        "the refusal is logged with its reason"
    );
    assert_eq!(allowed(ns), in_force, "after the {reason} bundle");
}

#[test]
fn signed_bundles_from_s3_decide_and_bad_ones_are_refused() {
    require_root();
    let (ns, dir) = (NetNs::new("bundle"), TempDir::new("bundle"));
    let root = dir.path();
    let _server = peer::server(ns.name(), "127.0.0.1:8080", root);
    let mut moto = moto_in(Some(ns.name()), MOTO, root, "1");
    let key = root.join("signer.key");
    let public = ok(aws_cli(
        ns.name(),
        &["policy", "keygen", key.to_str().unwrap()],
    ));
    let public = public.trim().to_string();
    let other = root.join("other.key");
    ok(aws_cli(
        ns.name(),
        &["policy", "keygen", other.to_str().unwrap()],
    ));
    let tables = format!(
        "{PORT}[policy]\nsource = \"{SOURCE}\"\nbundle_keys = [\"{public}\"]\nreload_poll_seconds = {POLL}\n"
    );
    // The publisher's config: the same [audit.s3] endpoint, its own keys.
    let pubcfg = root.join("publisher.toml");
    std::fs::write(
        &pubcfg,
        format!(
            "{PORT}[identity]\nallow_anonymous = true\n[audit]\ndir = \"{}\"\n{}[policy]\nbundle_keys = [\"{public}\"]\n",
            root.join("pub-audit").display(),
            s3_section()
        ),
    )
    .unwrap();
    let publish = |d: &Path, version: &str, key: &Path, to: Option<&str>, out: &Path| {
        let mut a = vec![
            "policy",
            "publish",
            d.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--version",
            version,
            "--config",
            pubcfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(to) = to {
            a.extend(["--to", to]);
        }
        ok(aws_cli(ns.name(), &a));
        std::fs::read(out).unwrap()
    };

    // A bundle whose `policy test` fails is not published: its cases say
    // add is forbidden, its policy forbids echo.
    let wrong = bundle_dir(root, "wrong", "add");
    let echo =
        std::fs::read_to_string(bundle_dir(root, "echo", "echo").join("deny.cedar")).unwrap();
    std::fs::write(wrong.join("deny.cedar"), echo).unwrap();
    let out = aws_cli(
        ns.name(),
        &[
            "policy",
            "publish",
            wrong.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--to",
            SOURCE,
            "--config",
            pubcfg.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success(),
        "a failing case must stop the publish"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FAIL forbidden"),
        "{out:?}"
    );

    // Version 1 (add forbidden): loaded at start and enforced.
    let v1 = publish(
        &bundle_dir(root, "v1", "add"),
        "1",
        &key,
        Some(SOURCE),
        &root.join("v1.json"),
    );
    let mut agent = Agent::start_with_env(&ns, root, "", &tables, &s3_section(), aws_env());
    assert_eq!(
        allowed(&ns),
        (true, false),
        "version 1: echo allowed, add denied"
    );

    // Version 2 (echo forbidden): in force within two poll intervals.
    publish(
        &bundle_dir(root, "v2", "echo"),
        "2",
        &key,
        Some(SOURCE),
        &root.join("v2.json"),
    );
    let t = Instant::now();
    wait_for("version 2 in force", Duration::from_secs(2 * POLL), || {
        agent.log().contains("bundle_version=2 ").then_some(())
    });
    let took = t.elapsed();
    assert_eq!(
        allowed(&ns),
        (false, true),
        "version 2: echo denied, add allowed"
    );
    eprintln!("version 2 in force {took:?} after its upload (poll every {POLL} s)");

    // Version 3 (add forbidden again) signed but kept off the bucket: each
    // bad variant of it, had it been taken, would allow echo again.
    let v3dir = bundle_dir(root, "v3", "add");
    let v3 = publish(&v3dir, "3", &key, None, &root.join("v3.json"));
    refused(&ns, &agent, &tampered(&v3), "bad_signature", (false, true));
    let foreign = publish(&v3dir, "3", &other, None, &root.join("v3-other.json"));
    refused(&ns, &agent, &foreign, "unknown_signer", (false, true));
    let mut unsigned: serde_json::Value = serde_json::from_slice(&v3).unwrap();
    let o = unsigned.as_object_mut().unwrap();
    o.remove("signature");
    o.remove("signer");
    refused(
        &ns,
        &agent,
        &serde_json::to_vec(&unsigned).unwrap(),
        "unsigned",
        (false, true),
    );
    refused(&ns, &agent, &v1, "not_newer", (false, true));

    // The genuine version 3 is then taken.
    put_object(&ns, &v3);
    wait_for(
        "version 3 in force",
        Duration::from_secs(2 * POLL + 2),
        || agent.log().contains("bundle_version=3 ").then_some(()),
    );
    assert_eq!(
        allowed(&ns),
        (true, false),
        "version 3: echo allowed, add denied"
    );

    // Each decision's row names its bundle's version and signer.
    agent.stop(SIGTERM);
    let rows = auditq::sql(
        &agent.audit_dir(),
        "SELECT DISTINCT tool_name, decision, bundle_version, bundle_signer FROM mcp_audit \
         WHERE method = 'tools/call' AND kind <> 'forwarded' AND decision IS NOT NULL \
         ORDER BY bundle_version, tool_name",
    );
    let got: Vec<Vec<serde_json::Value>> = serde_json::from_value(rows["rows"].clone()).unwrap();
    let want: Vec<Vec<serde_json::Value>> = [
        ("add", "deny", 1),
        ("echo", "allow", 1),
        ("add", "allow", 2),
        ("echo", "deny", 2),
        ("add", "deny", 3),
        ("echo", "allow", 3),
    ]
    .iter()
    .map(|(t, d, v)| vec![json!(t), json!(d), json!(v), json!(public)])
    .collect();
    assert_eq!(got, want);

    // The source gone: the agent starts on its cached version 3.
    moto.stop(SIGTERM, Duration::from_secs(10));
    agent.restart();
    assert_eq!(allowed(&ns), (true, false), "the cached version 3 decides");
    assert!(
        agent.log().contains("cache"),
        "the log says the bundle came from the cache"
    );

    // Neither source nor cache: the agent refuses to start, naming the fix.
    agent.stop(SIGTERM);
    std::fs::remove_file(root.join("policy-bundle.json")).expect("the cached bundle");
    let said = agent.start_refused(&ns, "", &tables);
    assert!(said.contains("no good policy bundle"), "{said}");
    assert!(said.contains("policy publish"), "{said}");
}
