//! `doctor --preflight` gates a first start: it passes on a host that is
//! ready (before anything is pinned), the start it predicts then happens,
//! and it fails with a named fix when a start would fail. `[audit.s3]` is
//! checked against a real S3 API (moto) with the agent's credentials.
//! The real binary, from the host's mount namespace, steering a network
//! namespace through `intercept.netns`, as the shipped unit runs it.

use std::{path::Path, process::Output, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    agent::{ANONYMOUS, PinGuard},
    bin,
    oidc::Issuer,
    peer,
    proc::run_in,
    require_root,
    s3::{BUCKET, KEY_ID, SECRET, free_port, moto_in},
    unique,
};
use serde_json::Value;

/// A config for `ns` with its own pins and state under `dir`; `extra`
/// adds tables (`[identity]`, `[audit.s3]`, ...).
fn config(ns: &NetNs, dir: &Path, pins: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[intercept]\nnetns = \"{}\"\npin_dir = \"{}\"\n[[intercept.ports]]\nport = 8080\n\
         [admin]\nsocket = \"{d}/admin.sock\"\n\
         [audit]\ndir = \"{d}/audit\"\nsigning_key = \"{d}/audit-signing.key\"\nroll_seconds = 2\n\
         {extra}",
        ns.path(),
        pins.display(),
        d = dir.display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// `mcp-interceptor ARGS` with `env` set (the AWS credentials doctor's S3
/// check uses, as the unit's environment would give them).
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut argv: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    argv.push(bin("mcp-interceptor").display().to_string());
    argv.extend(args.iter().map(|a| a.to_string()));
    run_in(
        None,
        Path::new("/usr/bin/env"),
        &argv,
        Duration::from_secs(90),
    )
}

/// `doctor --json` (with `--preflight` when asked): exit code and report.
fn doctor_json(cfg: &Path, preflight: bool, env: &[(&str, &str)]) -> (Option<i32>, Value) {
    let c = cfg.display().to_string();
    let mut args = vec!["doctor", "-c", &c, "--json"];
    if preflight {
        args.push("--preflight");
    }
    let out = cli(&args, env);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["passed"], out.status.success(), "{report:#}");
    (out.status.code(), report)
}

/// The checks named `name` in a report.
fn named<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

#[test]
fn preflight_passes_before_the_first_start_and_the_start_follows() {
    require_root();
    let (ns, dir) = (NetNs::new("preflight"), TempDir::new("preflight"));
    let pins = PinGuard(format!("/sys/fs/bpf/{}", unique("mcpi-t")).into());
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let issuer = Issuer::start(&ns, 9100, dir.path());
    let identity = format!(
        "[identity]\nallow_anonymous = false\n[[identity.oidc]]\nissuer = \"{}\"\naudiences = [\"mcp\"]\n",
        issuer.url
    );
    let cfg = config(&ns, dir.path(), &pins.0, &identity);
    assert!(!pins.0.exists(), "nothing pinned before the first start");

    // Plain doctor checks a running agent: before the first start it
    // fails, and says what to run instead.
    let (code, report) = doctor_json(&cfg, false, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    // (Where bpffs is not mounted yet, doctor stops at that instead.)
    if named(&report, "bpffs")[0]["status"] == "ok" {
        let program = named(&report, "program");
        assert!(
            program[0]["hint"]
                .as_str()
                .is_some_and(|h| h.contains("doctor --preflight")),
            "{report:#}"
        );
    }

    let (code, report) = doctor_json(&cfg, true, &[]);
    assert_eq!(code, Some(0), "preflight must pass:\n{report:#}");
    assert_eq!(report["preflight"], true);
    for (name, has) in [
        ("port", "127.0.0.1:15001 (intercept.proxy_listen) is free"),
        ("oidc", issuer.url.as_str()),
        ("config", "is valid"),
    ] {
        assert!(
            named(&report, name)
                .iter()
                .any(|c| c["status"] == "ok" && c["detail"].as_str().unwrap_or("").contains(has)),
            "{name}: {has}\n{report:#}"
        );
    }
    // The test's state is under /tmp, which the shipped unit keeps private:
    // writable, with a warning that says so.
    let audit = format!("{}/audit", dir.path().display());
    assert!(
        named(&report, "state dir")
            .iter()
            .any(|c| c["status"] == "warn"
                && c["detail"].as_str().unwrap_or("").contains(&audit)
                && c["detail"].as_str().unwrap_or("").contains("PrivateTmp")),
        "{report:#}"
    );
    // Nothing only a running agent has is asked for.
    assert!(named(&report, "program").is_empty(), "{report:#}");
    let text = cli(
        &["doctor", "--preflight", "-c", &cfg.display().to_string()],
        &[],
    );
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.status.success() && shown.contains("checks passed"),
        "{shown}"
    );

    // The start preflight predicted, with exactly this config.
    let cfg_s = cfg.display().to_string();
    let mut agent = Proc::spawn(
        "agent",
        None,
        &bin("mcp-interceptor"),
        &["run", "-c", &cfg_s].map(String::from),
        dir.path(),
    );
    agent.wait_for_output("agent ready", Duration::from_secs(20));
    let (code, report) = doctor_json(&cfg, false, &[]);
    assert_eq!(code, Some(0), "doctor passes once it runs:\n{report:#}");
    // Preflight on a running agent: its ports are taken, by it.
    let (code, report) = doctor_json(&cfg, true, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(
        named(&report, "port")
            .iter()
            .any(|c| c["status"] == "warn" && c["detail"].as_str().unwrap_or("").contains("pid")),
        "{report:#}"
    );
    agent.stop(15, Duration::from_secs(20));
}

#[test]
fn preflight_fails_with_a_named_fix_when_a_start_would_fail() {
    require_root();
    let (ns, dir) = (NetNs::new("preflight-bad"), TempDir::new("preflight-bad"));
    let pins = PinGuard(format!("/sys/fs/bpf/{}", unique("mcpi-t")).into());
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    // Something already listens on the proxy's port.
    let _squatter = peer::server(ns.name(), "127.0.0.1:15001", dir.path());
    let cfg = config(&ns, dir.path(), &pins.0, ANONYMOUS);
    let (code, report) = doctor_json(&cfg, true, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "only the port: {report:#}");
    assert_eq!(failed[0]["name"], "port");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:15001 (intercept.proxy_listen) is in use"),
        "{report:#}"
    );
    assert!(
        failed[0]["hint"]
            .as_str()
            .unwrap()
            .contains("ss -ltnp 'sport = :15001'"),
        "{report:#}"
    );
    // And the agent indeed cannot start with it.
    let mut agent = Proc::spawn(
        "agent",
        None,
        &bin("mcp-interceptor"),
        &["run", "-c", &cfg.display().to_string()].map(String::from),
        dir.path(),
    );
    let status =
        mcp_interceptor_tests::wait_for("the agent to give up", Duration::from_secs(20), || {
            agent.try_wait()
        });
    assert!(!status.success(), "{}", agent.stderr());

    // A namespace that is gone, and a config that does not parse.
    let gone = dir.path().join("gone.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&ns.path(), "/run/netns/mcpi-no-such-ns");
    std::fs::write(&gone, text).unwrap();
    let (code, report) = doctor_json(&gone, true, &[]);
    assert_eq!(code, Some(1));
    let netns = named(&report, "netns");
    assert!(
        netns[0]["status"] == "fail" && netns[0]["hint"].as_str().unwrap().contains("ip netns add"),
        "{report:#}"
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[intercept]\nfial = \"open\"\n").unwrap();
    let (code, report) = doctor_json(&typo, true, &[]);
    assert_eq!(code, Some(1));
    let config = named(&report, "config");
    assert!(
        config[0]["detail"].as_str().unwrap().contains("fial")
            && config[0]["hint"]
                .as_str()
                .unwrap()
                .contains("/usr/share/mcp-interceptor/config.example.toml"),
        "{report:#}"
    );
}

/// The AWS credentials moto accepts, as the agent's environment has them.
const AWS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
];

/// `[audit.s3]` for `bucket` on moto at `port`.
fn s3_table(bucket: &str, port: u16) -> String {
    format!(
        "\n[audit.s3]\nbucket = \"{bucket}\"\nprefix = \"mcpi\"\nendpoint = \"http://127.0.0.1:{port}\"\n"
    )
}

#[test]
fn doctor_checks_the_audit_bucket_with_the_agents_credentials() {
    require_root();
    let (ns, dir) = (NetNs::new("doctor-s3"), TempDir::new("doctor-s3"));
    let pins = PinGuard(format!("/sys/fs/bpf/{}", unique("mcpi-t")).into());
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let port = free_port();
    let _moto = moto_in(Some(ns.name()), port, dir.path(), "doctor");

    // A bucket that does not exist: the check fails and says what to do.
    let extra = format!("{ANONYMOUS}{}", s3_table("no-such-bucket", port));
    let cfg = config(&ns, dir.path(), &pins.0, &extra);
    let (code, report) = doctor_json(&cfg, true, &AWS);
    assert_eq!(code, Some(1), "{report:#}");
    let s3 = named(&report, "s3");
    assert_eq!(s3.len(), 1, "{report:#}");
    assert_eq!(s3[0]["status"], "fail");
    assert!(
        s3[0]["detail"].as_str().unwrap().contains("no such bucket")
            && s3[0]["hint"]
                .as_str()
                .unwrap()
                .contains("create the bucket, or fix audit.s3.bucket"),
        "{report:#}"
    );

    // The bucket moto made: reachable, this host's keys readable, and
    // nothing uploaded yet before the first start.
    let extra = format!("{ANONYMOUS}{}", s3_table(BUCKET, port));
    let cfg = config(&ns, dir.path(), &pins.0, &extra);
    let (code, report) = doctor_json(&cfg, true, &AWS);
    assert_eq!(code, Some(0), "{report:#}");
    let s3 = named(&report, "s3");
    assert!(
        s3[0]["status"] == "ok"
            && s3[0]["detail"]
                .as_str()
                .unwrap()
                .contains("nothing uploaded yet"),
        "{report:#}"
    );
    drop(pins);

    // Once an agent has shipped its chain, doctor finds its first entry
    // where the uploader put it (the key layout is the uploader's).
    let env = AWS.map(|(k, v)| (k.to_string(), v.to_string())).to_vec();
    let agent = Agent::start_with_env(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\n",
        &s3_table(BUCKET, port),
        env,
    );
    mcp_interceptor_tests::wait_for(
        "the first manifest entry to be uploaded",
        Duration::from_secs(30),
        || {
            let (_, report) = doctor_json(&agent.config, false, &AWS);
            let s3 = named(&report, "s3")[0].clone();
            s3["detail"]
                .as_str()
                .unwrap_or("")
                .contains("chain already uploaded")
                .then_some(())
        },
    );
}
