use super::*;
use crate::config::Audit as AuditConfig;

fn cfg(dir: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.join("audit"),
        signing_key: dir.join("key"),
        host: Some("testhost".into()),
        roll_seconds: 3600,
        ..AuditConfig::default()
    }
}

fn rows(a: &Audit, n: usize, tag: &str) {
    for i in 0..n {
        let mut r = a.stamp().lifecycle("exchange", format!("{tag}-{i}"));
        r.session_id = Some(tag.into());
        a.append(r);
    }
}

/// An audit started over a fresh directory, `n` rows of session `tag`
/// written; the directory lasts as long as the first value.
fn started_with_rows(n: usize, tag: &str) -> (tempfile::TempDir, AuditConfig, Audit) {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let a = Audit::start(&c, None).unwrap();
    rows(&a, n, tag);
    (tmp, c, a)
}

#[test]
fn rows_become_verified_parquet_on_shutdown() {
    let (_tmp, c, a) = started_with_rows(25, "s1");
    assert_eq!(a.stats(), (25, 0));
    a.shutdown();
    let report = chain::verify(&c.dir, None).expect("verifies");
    assert_eq!((report.files, report.rows), (1, 25));
    assert!(
        wal::list_segments(&c.dir.join("wal")).unwrap().is_empty(),
        "WAL emptied"
    );
    let steps = replay::session(&c.dir, "s1").unwrap();
    assert_eq!(steps.len(), 25);
    // `audit replay --json`: the message's keys between the session and
    // the outcome, at the top level, as before it was a struct of its own.
    let v = serde_json::to_value(&steps[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        (keys.len(), &keys[2..8]),
        (
            13,
            &[
                "session_id",
                "direction",
                "jsonrpc_id",
                "method",
                "target",
                "http_status"
            ][..]
        )
    );
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].event_time_us <= w[1].event_time_us)
    );
    let file = chain::data_files(&c.dir.join("events")).remove(0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o007,
        0,
        "audit files are not world-readable: {mode:o}"
    );
}

#[test]
fn a_crash_leaves_rows_in_the_wal_and_the_next_start_converts_them_once() {
    let (_tmp, c, a) = started_with_rows(10, "before-crash");
    // No shutdown: the threads die with the test's leak; the segment
    // stays open, as after kill -9.
    std::mem::forget(a);
    let a = Audit::start(&c, None).unwrap();
    assert_eq!(
        replay::session(&c.dir, "before-crash").unwrap().len(),
        10,
        "recovered before traffic"
    );
    rows(&a, 5, "after");
    a.shutdown();
    let all = replay::read_all(&c.dir).unwrap();
    assert_eq!(
        all.iter()
            .filter(|s| s.session_id.as_deref() == Some("before-crash"))
            .count(),
        10,
        "exactly once"
    );
    assert_eq!(chain::verify(&c.dir, None).unwrap().rows, 15);
}

#[test]
fn an_idle_period_still_writes_a_heartbeat_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let c = AuditConfig {
        roll_seconds: 1,
        ..cfg(tmp.path())
    };
    let a = Audit::start(&c, None).unwrap();
    std::thread::sleep(Duration::from_millis(2600));
    a.shutdown();
    let r = chain::verify(&c.dir, None).unwrap();
    assert!(r.entries >= 1 && r.files == 0, "{r:?}");
}
