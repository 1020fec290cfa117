//! The audit trail end to end: real MCP traffic through the steered port
//! becomes Parquet that DuckDB and pyarrow read with the partition layout,
//! the auditor queries answer, verify catches tampering, and kill -9 loses
//! no acknowledged row.

use std::{path::Path, process::Command, time::Duration};

use interceptor::audit::replay;
use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    auditq::{check, column, query},
    bin,
    peer::{self, call},
    require_root, wait_for,
};
use serde_json::{Value, json};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

#[test]
fn a_session_becomes_parquet_that_auditors_query_with_duckdb() {
    require_root();
    let (ns, dir) = (NetNs::new("audit"), TempDir::new("audit"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT);
    // `audit tail` follows rows as they are written.
    let tail_args: Vec<String> = ["audit", "tail", "--json", "--dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([agent.audit_dir().display().to_string()])
        .collect();
    let tail = Proc::spawn(
        "tail",
        None,
        &bin("mcp-interceptor"),
        &tail_args,
        dir.path(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "lookup_customer",
        json!({ "id": "c-99" }),
    );
    assert!(out.text().contains("c-99"));
    // The call's `forwarded` row (written before it went upstream), then
    // its `exchange` row.
    let steps = wait_for("the call's rows", Duration::from_secs(10), || {
        let steps: Vec<Value> = tail
            .stdout()
            .lines()
            .filter(|l| l.contains("\"tools/call\""))
            .map(|l| serde_json::from_str(l).expect("tail --json prints JSON lines"))
            .collect();
        (steps.len() >= 2).then_some(steps)
    });
    let seen: Vec<(Option<&str>, Option<&str>)> = steps
        .iter()
        .map(|s| (s["kind"].as_str(), s["target"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("forwarded"), Some("lookup_customer")),
            (Some("exchange"), Some("lookup_customer"))
        ]
    );
    drop(tail);
    let events = agent.wait_events("the session", |ev| {
        ev.iter().any(|e| e["kind"] == "session_closed")
    });
    let session = events
        .iter()
        .find_map(|e| e["session_id"].as_str())
        .unwrap()
        .to_string();
    agent.stop(SIGTERM);
    let audit = agent.audit_dir();

    let verify = agent.audit_cli(&["verify", &audit.display().to_string()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let schema = check(&audit, &["--schema"]);
    assert!(schema["rows"].as_u64().unwrap() >= 6, "{schema}");
    let fields: Vec<(String, String)> =
        serde_json::from_value::<Vec<Value>>(schema["fields"].clone())
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    let event_time = fields
        .iter()
        .find(|(n, _)| n == "event_time")
        .expect("event_time column");
    assert!(
        event_time.1.contains("timestamp[ms") && event_time.1.contains("UTC"),
        "{event_time:?}"
    );
    assert!(
        schema["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_str().unwrap().starts_with("dt="))
    );

    let (from, to) = ("2000-01-01 00:00:00", "2100-01-01 00:00:00");
    let callers = column(
        &audit,
        "tool_calls_by_tool",
        &[("tool", "lookup_customer"), ("from", from), ("to", to)],
        "session_id",
    );
    assert_eq!(callers, vec![json!(session)], "who called lookup_customer");
    let args = column(
        &audit,
        "tool_calls_by_tool",
        &[("tool", "lookup_customer"), ("from", from), ("to", to)],
        "arguments",
    );
    assert_eq!(
        serde_json::from_str::<Value>(args[0].as_str().unwrap()).unwrap(),
        json!({ "id": "c-99" })
    );
    let none = query(
        &audit,
        "tool_calls_by_tool",
        &[("tool", "no_such_tool"), ("from", from), ("to", to)],
    );
    assert!(none.is_empty());

    let timeline = column(
        &audit,
        "session_timeline",
        &[("session_id", &session)],
        "method",
    );
    let methods: Vec<&str> = timeline.iter().filter_map(Value::as_str).collect();
    let pos = |m: &str| {
        methods
            .iter()
            .position(|x| *x == m)
            .unwrap_or_else(|| panic!("{m} in {methods:?}"))
    };
    assert!(
        pos("initialize") < pos("tools/list") && pos("tools/list") < pos("tools/call"),
        "{methods:?}"
    );
    assert!(
        query(&audit, "denials", &[("from", from), ("to", to)]).is_empty(),
        "no denials in this session"
    );
    assert!(
        query(&audit, "approvals", &[("from", from), ("to", to)]).is_empty(),
        "no approvals yet"
    );
    check(&audit, &["--parse-ddl"]);

    let replayed = agent.audit_cli(&[
        "replay",
        "--session",
        &session,
        "--dir",
        &audit.display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&replayed.stdout);
    assert!(replayed.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("tools/call") && l.contains("lookup_customer")),
        "{text}"
    );

    // Tampering: one flipped byte in a data file is named by verify.
    let file = interceptor::audit::chain::data_files(&audit.join("events")).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let bad = agent.audit_cli(&["verify", &audit.display().to_string()]);
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{report}");
    assert!(
        report.contains(&file.file_name().unwrap().to_string_lossy().to_string())
            && report.contains("modified"),
        "{report}"
    );
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_row() {
    kill_9_loses_no_acknowledged_row("kill9", 1);
}

/// 32 calls in flight: their rows reach the WAL in shared writes (group
/// commit), and still none of them is answered before its row is written.
#[test]
fn kill_9_during_a_concurrent_burst_loses_no_acknowledged_row() {
    kill_9_loses_no_acknowledged_row("kill9burst", 32);
}

/// Kills the agent (SIGKILL) while `concurrency` calls are in flight, then
/// checks every call the client saw answered has its row after restart.
fn kill_9_loses_no_acknowledged_row(name: &str, concurrency: u32) {
    require_root();
    let (ns, dir) = (NetNs::new(name), TempDir::new(name));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT);
    let args: Vec<String> = [
        "load",
        "--url",
        "http://127.0.0.1:8080/mcp",
        "--prefix",
        "k9",
        "--count",
        "2000",
        "--concurrency",
        &concurrency.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut load = Proc::spawn("load", Some(ns.name()), &bin("mcp-peer"), &args, dir.path());
    wait_for("60 acknowledged calls", Duration::from_secs(30), || {
        (load.stdout().lines().count() >= 60).then_some(())
    });
    agent.stop(SIGKILL);
    wait_for("the load client to fail", Duration::from_secs(30), || {
        load.try_wait()
    });
    let acked: Vec<String> = load
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned))
        .collect();
    assert!(
        acked.len() >= 60 && acked.len() < 2000,
        "the kill landed mid-load: {}",
        acked.len()
    );

    // Restart: the WAL left by the crash is converted before traffic.
    agent.restart();
    agent.stop(SIGTERM);
    let steps = replay::read_all(&agent.audit_dir()).expect("read the trail");
    let recorded: std::collections::HashSet<String> = steps
        .iter()
        .filter(|s| s.kind == "exchange" && s.message.method.as_deref() == Some("tools/call"))
        .filter_map(|s| {
            s.arguments
                .as_deref()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
        })
        .filter_map(|a| a["text"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|t| !recorded.contains(*t)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged calls have no row: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    let verify = agent.audit_cli(&["verify", &agent.audit_dir().display().to_string()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A small tmpfs the test mounts for the audit and unmounts on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        Self(path.to_path_buf())
    }

    /// Fills the filesystem; returns the filler's path.
    fn fill(&self) -> std::path::PathBuf {
        let p = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", p.display()))
            .output();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn audit_failure(mode: &str) {
    require_root();
    let (ns, dir) = (NetNs::new("full"), TempDir::new("full"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let fs = Tmpfs::mount(&dir.path().join("audit"), "4m");
    let mut agent = Agent::start_with(
        &ns,
        dir.path(),
        "",
        PORT,
        &format!("on_audit_failure = \"{mode}\"\n"),
    );
    let url = "http://127.0.0.1:8080/mcp";
    assert_eq!(
        call(ns.name(), url, "echo", json!({ "text": "before" })).text(),
        "before"
    );
    let filler = fs.fill();
    let during = call(ns.name(), url, "echo", json!({ "text": "during" }));
    match mode {
        "block" => {
            assert!(
                !during.ok(),
                "block: refused while the audit cannot be written"
            );
            assert!(
                during.stderr().contains("audit trail cannot be written"),
                "{}",
                during.stderr()
            );
        }
        _ => assert_eq!(during.text(), "during", "continue: traffic goes on"),
    }
    assert!(
        agent.log().contains("audit WAL write failed"),
        "{}",
        agent.log()
    );
    // Segments roll every 2 s: let one conversion to Parquet meet the
    // full disk.
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::remove_file(filler).unwrap();
    wait_for("the audit to recover", Duration::from_secs(10), || {
        let c = call(ns.name(), url, "echo", json!({ "text": "after" }));
        c.ok().then_some(())
    });
    assert!(agent.log().contains("audit WAL writable again"));
    agent.stop(SIGTERM);

    // No corrupt or partial Parquet left behind: pyarrow and DuckDB read
    // every file, the chain verifies, and the rows before and after the
    // outage are there.
    let files = walk_parquet(&agent.audit_dir().join("events"));
    assert!(files >= 1, "{files} Parquet files");
    let schema = check(&agent.audit_dir(), &["--schema"]);
    assert_eq!(schema["files"].as_u64(), Some(files as u64), "{schema}");
    let verify = agent.audit_cli(&["verify", &agent.audit_dir().display().to_string()]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let texts: Vec<String> = replay::read_all(&agent.audit_dir())
        .expect("read the trail")
        .iter()
        .filter(|s| s.message.method.as_deref() == Some("tools/call"))
        .filter_map(|s| s.arguments.as_deref())
        .filter_map(|a| serde_json::from_str::<Value>(a).ok())
        .filter_map(|a| a["text"].as_str().map(str::to_owned))
        .collect();
    assert!(
        texts.contains(&"before".to_string()) && texts.contains(&"after".to_string()),
        "{texts:?}"
    );
    drop(fs);
}

/// Parquet files under `dir`, recursively.
fn walk_parquet(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_parquet(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|x| x == "parquet"))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn block_mode_refuses_traffic_while_the_disk_is_full() {
    audit_failure("block");
}

#[test]
fn continue_mode_keeps_serving_while_the_disk_is_full() {
    audit_failure("continue");
}

#[test]
fn the_agent_ships_its_trail_to_s3_and_the_spool_rides_out_an_outage() {
    use mcp_interceptor_tests::s3::{KEY_ID, SECRET, bucket_objects_in, moto_in};
    require_root();
    let (ns, dir) = (NetNs::new("s3"), TempDir::new("s3"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    // moto runs in the agent's namespace: the agent's sockets live there.
    let port = 9000;
    let mut moto = moto_in(Some(ns.name()), port, dir.path(), "1");
    let s3 = format!(
        "\n[audit.s3]\nbucket = \"{}\"\nprefix = \"mcpi\"\nendpoint = \"http://127.0.0.1:{port}\"\nmax_retry_backoff_ms = 500\n",
        mcp_interceptor_tests::s3::BUCKET
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string()),
    ];
    let mut agent = Agent::start_with_env(&ns, dir.path(), "", PORT, &s3, env);
    let url = "http://127.0.0.1:8080/mcp";
    let parquet_keys = |objs: &std::collections::BTreeMap<String, String>| -> Vec<String> {
        objs.keys()
            .filter(|k| k.starts_with("mcpi/events/dt=") && k.ends_with(".parquet"))
            .cloned()
            .collect()
    };

    assert_eq!(
        call(ns.name(), url, "echo", json!({ "text": "one" })).text(),
        "one"
    );
    let first = wait_for(
        "a data file and its manifest entry in S3",
        Duration::from_secs(30),
        || {
            let objs = bucket_objects_in(Some(ns.name()), port);
            (!parquet_keys(&objs).is_empty()
                && objs.keys().any(|k| k.starts_with("mcpi/manifest/")))
            .then_some(objs)
        },
    );
    let outbox = agent.audit_dir().join("outbox");
    let backlog = || {
        std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".mark"))
                    .count()
            })
            .unwrap_or(0)
    };

    // Outage: S3 gone while traffic goes on; files queue up locally.
    moto.stop(SIGTERM, Duration::from_secs(10));
    assert_eq!(
        call(ns.name(), url, "echo", json!({ "text": "during outage" })).text(),
        "during outage"
    );
    wait_for(
        "files queued during the outage",
        Duration::from_secs(30),
        || (backlog() >= 2).then_some(()),
    );
    assert!(
        agent.log().contains("upload"),
        "the failing upload is logged"
    );

    // S3 back (moto starts empty): the queue drains by itself.
    let _moto2 = moto_in(Some(ns.name()), port, dir.path(), "2");
    let second = wait_for("the queue to drain", Duration::from_secs(30), || {
        let objs = bucket_objects_in(Some(ns.name()), port);
        (backlog() == 0 && !parquet_keys(&objs).is_empty()).then_some(objs)
    });
    let new_files: Vec<String> = parquet_keys(&second)
        .into_iter()
        .filter(|k| !first.contains_key(k))
        .collect();
    assert!(
        !new_files.is_empty(),
        "files from the outage were uploaded after it: {second:?}"
    );
    agent.stop(SIGTERM);
    let local = interceptor::audit::chain::data_files(&agent.audit_dir().join("events"));
    let uploaded: Vec<&std::path::PathBuf> = local
        .iter()
        .filter(|f| {
            new_files
                .iter()
                .any(|k| k.ends_with(&*f.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        uploaded.is_empty(),
        "delete-after-upload removed uploaded data files locally: {uploaded:?}"
    );
    assert!(
        agent.audit_dir().join("manifest").read_dir().is_ok(),
        "manifest entries stay local"
    );
}
