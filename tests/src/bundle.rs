//! What the fleet tests share (policy_bundle, audit_fleet, fleet): the
//! CLI with the moto credentials an operator's AWS environment would give,
//! the agent's refused-bundle counter, and a bundle tampered as an
//! attacker with write access to the bucket (not to the key) would.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::Output,
    time::Duration,
};

use base64::Engine;
use serde_json::Value;

use crate::{
    Agent, bin,
    proc::run_in_env,
    s3::{KEY_ID, SECRET},
};

/// The moto credentials as an agent's environment.
pub fn aws_env() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
    ]
}

/// `mcp-interceptor <args>` inside network namespace `ns`, with the moto
/// credentials (≤ 60 s).
pub fn aws_cli(ns: &str, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    run_in_env(
        Some(ns),
        &bin("mcp-interceptor"),
        &args,
        &env,
        Duration::from_secs(60),
    )
}

/// Writes `policy` (one Cedar file) and `cases` (its `policy test` file)
/// to `root/bundle-<version>` and publishes them as bundle `version` to
/// `to` from inside `ns`, signed with `root/signer.key` under the
/// publisher's config `root/publisher.toml`.
pub fn publish(
    ns: &str,
    root: &Path,
    version: &str,
    policy: &str,
    cases: &str,
    to: &str,
) -> Output {
    let d = root.join(format!("bundle-{version}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("policy.cedar"), policy).unwrap();
    std::fs::write(d.join("cases.toml"), cases).unwrap();
    let (key, cfg) = (root.join("signer.key"), root.join("publisher.toml"));
    let args = [
        "policy",
        "publish",
        d.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--version",
        version,
        "--to",
        to,
        "--config",
        cfg.to_str().unwrap(),
    ];
    aws_cli(ns, &args)
}

/// stdout and stderr of `o`, one after the other.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stdout of `o`, which must have succeeded.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `mcp_interceptor_policy_bundles_refused_total{reason}` on the agent's
/// admin socket (`/metrics`).
pub fn refused_count(agent: &Agent, reason: &str) -> u64 {
    let mut s = UnixStream::connect(agent.admin_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let needle = format!("mcp_interceptor_policy_bundles_refused_total{{reason=\"{reason}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The bundle object `bytes` with one byte of a policy's text in its
/// signed manifest changed (the `f` of the first `forbid`): what would be
/// enforced.
pub fn tampered(bytes: &[u8]) -> Vec<u8> {
    let mut env: Value = serde_json::from_slice(bytes).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut m = b64.decode(env["manifest"].as_str().unwrap()).unwrap();
    let at = String::from_utf8_lossy(&m).find("forbid").unwrap();
    m[at] = b'F';
    env["manifest"] = b64.encode(&m).into();
    serde_json::to_vec(&env).unwrap()
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
