//! The tamper-evident chain against the edits an attacker with write
//! access to the audit directory (or the bucket) would make, on a trail
//! the agent wrote from real traffic: the oldest entries removed together
//! with their files, an object Athena would read that no entry lists, and
//! a chain verified from a checkpoint the auditor holds.

use std::{path::Path, process::Output};

use interceptor::audit::chain::sha256_file;
use mcp_interceptor_tests::{
    Agent, NetNs, TempDir,
    peer::{self, call},
    require_root,
};
use serde_json::json;

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";
const SIGTERM: i32 = 15;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `audit verify <dir> <more>`: (passed, output).
fn verify(agent: &Agent, more: &[&str]) -> (bool, String) {
    let dir = agent.audit_dir().display().to_string();
    let mut args = vec!["verify", dir.as_str()];
    args.extend_from_slice(more);
    let out = agent.audit_cli(&args);
    (out.status.success(), text(&out))
}

/// The entries of the one host, oldest first, with the data file each lists.
fn entries(audit: &Path) -> Vec<(std::path::PathBuf, Option<String>)> {
    let host = std::fs::read_dir(audit.join("manifest"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let mut out: Vec<_> = std::fs::read_dir(&host)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, e["file"].as_str().map(str::to_string))
        })
        .collect();
    out.sort();
    out
}

/// Two agent runs, so the trail has at least two files and entries.
fn trail(tag: &str) -> (NetNs, TempDir, Agent) {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT);
    for text in ["first run", "second run"] {
        let out = call(
            ns.name(),
            "http://127.0.0.1:8080/mcp",
            "echo",
            json!({ "text": text }),
        );
        assert_eq!(out.text(), text);
        agent.stop(SIGTERM);
        if text == "first run" {
            agent.restart();
        }
    }
    (ns, dir, agent)
}

#[test]
fn removing_the_oldest_entries_and_their_files_fails_unless_anchored_by_a_held_checkpoint() {
    require_root();
    let (_ns, _dir, agent) = trail("chain-start");
    let audit = agent.audit_dir();
    let (ok, out) = verify(&agent, &[]);
    assert!(ok, "{out}");
    let all = entries(&audit);
    // The auditor keeps the newest entry (what verify prints, checked
    // below once the attack has been tried).
    let (last, _) = all.last().unwrap();
    let held = format!(
        "{}:{}",
        last.file_stem()
            .unwrap()
            .to_string_lossy()
            .parse::<u64>()
            .unwrap(),
        sha256_file(last).unwrap()
    );

    let with_file = all.iter().filter(|e| e.1.is_some()).count();
    assert!(with_file >= 2, "two data files: {all:?}");
    // The attacker removes everything before the second data file's entry.
    let cut = all.iter().skip(1).position(|e| e.1.is_some()).unwrap() + 1;
    for (entry, file) in &all[..cut] {
        std::fs::remove_file(entry).unwrap();
        if let Some(f) = file {
            std::fs::remove_file(audit.join(f)).unwrap();
        }
    }
    let (ok, out) = verify(&agent, &[]);
    assert!(!ok, "a trail without its oldest entries passed: {out}");
    assert!(
        out.contains(&format!(
            "{}",
            all[cut].0.file_name().unwrap().to_string_lossy()
        )) && out.contains("genesis")
            && out.contains("entries 0 to"),
        "{out}"
    );

    // From the checkpoint the auditor held, what is left is intact; verify
    // prints it for the next time.
    let (ok, out) = verify(&agent, &["--checkpoint", &held]);
    assert!(ok, "{out}");
    let printed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("checkpoint "))
        .collect();
    assert_eq!(printed.len(), 1, "{out}");
    assert!(printed[0].ends_with(&held), "{out}");
    // Or from the entry where the trimmed chain starts, in a file.
    let start = format!("{}:{}", cut, sha256_file(&all[cut].0).unwrap());
    let file = audit.parent().unwrap().join("checkpoints");
    std::fs::write(
        &file,
        format!("# kept by the auditor\ncheckpoint {start}\n"),
    )
    .unwrap();
    let (ok, out) = verify(&agent, &["--checkpoint-file", &file.display().to_string()]);
    assert!(ok, "{out}");
    // A checkpoint that is not the chain's: refused, naming the entry.
    let wrong = format!("{cut}:{}", "0".repeat(64));
    let (ok, out) = verify(&agent, &["--checkpoint", &wrong]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checkpoint") && out.contains(&format!("{cut:012}.json")),
        "{out}"
    );
    // One from before the cut: those entries are gone.
    let (ok, out) = verify(&agent, &["--checkpoint", &format!("0:{}", "a".repeat(64))]);
    assert!(!ok && out.contains("not in the chain"), "{out}");
}

#[test]
fn an_object_under_events_that_no_entry_lists_fails_verify_and_is_named() {
    require_root();
    let (_ns, _dir, agent) = trail("chain-stray");
    let audit = agent.audit_dir();
    let (ok, out) = verify(&agent, &[]);
    assert!(ok, "{out}");
    let listed = entries(&audit)
        .into_iter()
        .find_map(|e| e.1)
        .expect("a data file");
    let partition = audit.join(&listed).parent().unwrap().to_path_buf();
    let day = partition.parent().unwrap().to_path_buf();
    for stray in [
        day.join("extra.json"),
        partition.join(".late.parquet.tmp"),
        partition.join("nested/part-0000"),
    ] {
        std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
        std::fs::write(&stray, b"{\"tool_name\":\"nothing happened\"}\n").unwrap();
        let (ok, out) = verify(&agent, &[]);
        assert!(!ok, "{} passed: {out}", stray.display());
        assert!(
            out.contains(&stray.display().to_string()) && out.contains("not in any manifest"),
            "{out}"
        );
        std::fs::remove_file(&stray).unwrap();
    }
    let (ok, out) = verify(&agent, &[]);
    assert!(ok, "{out}");
}

/// Every object under `prefix/` in the bucket, written below `dest`
/// without the prefix: the copy an auditor syncs from S3.
fn download(ns: &NetNs, port: u16, prefix: &str, dest: &Path) {
    use mcp_interceptor_tests::s3::boto_in;
    boto_in(
        Some(ns.name()),
        port,
        &format!(
            "import os\n\
             for o in s3.list_objects_v2(Bucket=bucket, Prefix='{prefix}/').get('Contents', []):\n\
             \x20   path = os.path.join('{}', o['Key'][len('{prefix}/'):])\n\
             \x20   os.makedirs(os.path.dirname(path), exist_ok=True)\n\
             \x20   open(path, 'wb').write(s3.get_object(Bucket=bucket, Key=o['Key'])['Body'].read())\n",
            dest.display()
        ),
    );
}

#[test]
fn the_s3_copy_verifies_and_an_object_added_to_the_bucket_is_named() {
    use mcp_interceptor_tests::s3::{BUCKET, KEY_ID, SECRET, boto_in, moto_in};
    require_root();
    let (ns, dir) = (NetNs::new("chain-s3"), TempDir::new("chain-s3"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let port = 9000;
    let _moto = moto_in(Some(ns.name()), port, dir.path(), "1");
    let s3 = format!(
        "\n[audit.s3]\nbucket = \"{BUCKET}\"\nprefix = \"mcpi\"\nendpoint = \"http://127.0.0.1:{port}\"\n"
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string()),
    ];
    let mut agent = Agent::start_with_env(&ns, dir.path(), "", PORT, &s3, env);
    let out = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({ "text": "shipped" }),
    );
    assert_eq!(out.text(), "shipped");
    // Stopped, its last file closed; started again, it ships what is left.
    agent.stop(SIGTERM);
    agent.restart();
    let outbox = agent.audit_dir().join("outbox");
    mcp_interceptor_tests::wait_for(
        "the outbox to drain",
        std::time::Duration::from_secs(30),
        || {
            let marks = std::fs::read_dir(&outbox)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".mark"))
                        .count()
                })
                .unwrap_or(0);
            (marks == 0).then_some(())
        },
    );
    let host = std::fs::read_dir(agent.audit_dir().join("manifest"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let key = std::fs::read_to_string(host.join("public-key.hex")).unwrap();

    let copy = dir.path().join("copy");
    download(&ns, port, "mcpi", &copy);
    let copy_s = copy.display().to_string();
    let v = agent.audit_cli(&["verify", &copy_s, "--public-key", key.trim()]);
    assert!(v.status.success(), "the bucket's copy: {}", text(&v));
    assert!(text(&v).contains("files"), "{}", text(&v));

    // Someone with write access to the bucket adds rows Athena would read.
    let parquet = interceptor::audit::chain::data_files(&copy.join("events")).remove(0);
    let partition = parquet.parent().unwrap().strip_prefix(&copy).unwrap();
    let stray = format!("mcpi/{}/extra.json", partition.display());
    boto_in(
        Some(ns.name()),
        port,
        &format!("s3.put_object(Bucket=bucket, Key='{stray}', Body=b'{{\"kind\":\"exchange\"}}')"),
    );
    let copy2 = dir.path().join("copy2");
    download(&ns, port, "mcpi", &copy2);
    let v = agent.audit_cli(&[
        "verify",
        &copy2.display().to_string(),
        "--public-key",
        key.trim(),
    ]);
    assert!(
        !v.status.success(),
        "a stray object in the bucket passed: {}",
        text(&v)
    );
    assert!(
        text(&v).contains("extra.json") && text(&v).contains("not in any manifest entry"),
        "{}",
        text(&v)
    );
    // The key beside the entries is shipped too (consistency; pin it for
    // origin, as above).
    let v = agent.audit_cli(&["verify", &copy_s]);
    assert!(v.status.success(), "without --public-key: {}", text(&v));
}
