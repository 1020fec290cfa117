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

#[test]
fn concurrent_writers_share_writes_and_keep_each_ones_order() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let a = Audit::start(&c, None).unwrap();
    // Hold the WAL: the first caller takes its row and waits here; the
    // others queue behind it, and the next writer must take all of them
    // in one write.
    let wal = lock(&a.inner.wal);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || rows(&a, 1, &format!("t{t}")))
        })
        .collect();
    let queued = Instant::now();
    while a.inner.commit.queued() < 4 {
        assert!(queued.elapsed() < Duration::from_secs(10), "callers stuck");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(a.stats().0, 0, "nothing acknowledged while the WAL is held");
    drop(wal);
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(a.stats(), (4, 0));
    assert_eq!(
        a.inner.writes.load(Ordering::Relaxed),
        2,
        "the first caller's row, then the three queued behind it in one write"
    );

    // Many writers at once: every row once, each writer's rows in its
    // order in the WAL, and the chain verifies.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || rows(&a, 500, &format!("w{t}")))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(a.stats(), (4004, 0));
    let wal_dir = c.dir.join("wal");
    let in_wal: Vec<AuditRow> = wal::list_segments(&wal_dir)
        .unwrap()
        .into_iter()
        .flat_map(|s| wal::read_segment(&wal::segment_path(&wal_dir, s)).unwrap())
        .collect();
    assert_eq!(in_wal.len(), 4004);
    for t in 0..8 {
        let tag = format!("w{t}");
        let got: Vec<&str> = in_wal
            .iter()
            .filter(|r| r.session_id.as_deref() == Some(tag.as_str()))
            .filter_map(|r| r.message.as_deref())
            .collect();
        let want: Vec<String> = (0..500).map(|i| format!("{tag}-{i}")).collect();
        assert_eq!(got, want, "writer {t}'s rows, in its order");
    }
    a.shutdown();
    assert_eq!(chain::verify(&c.dir, None).unwrap().rows, 4004);
    assert_eq!(replay::session(&c.dir, "w3").unwrap().len(), 500);
}

#[test]
fn a_segment_converts_in_batches_sorted_and_split_by_hour() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let hour = 3_600_000_000i64;
    let t0 = 480_000 * hour;
    // More rows than a converter batch, written out of time order, the
    // last ones in the next hour: as a crash would leave them.
    let n = wal::BATCH_ROWS * 2 + 100;
    let times: Vec<i64> = (0..n as i64)
        .map(|i| {
            if i < 50 {
                t0 + hour + i
            } else {
                t0 + (n as i64 - i) * 1000
            }
        })
        .collect();
    let mut batch = Batch::default();
    for (i, t) in times.iter().enumerate() {
        let mut r = a_stamp().row("exchange", *t);
        r.message = Some(format!("m-{i}"));
        batch.push(&r).unwrap();
    }
    // Written by hand: the WAL itself starts a segment at each new hour,
    // but a clock that jumps back and forth can leave two in one.
    let wal_dir = c.dir.join("wal");
    fsutil::create_private_dir(&wal_dir).unwrap();
    std::fs::write(wal::segment_path(&wal_dir, 0), batch.bytes()).unwrap();
    let a = Audit::start(&c, None).unwrap();
    a.shutdown();
    let report = chain::verify(&c.dir, None).unwrap();
    assert_eq!((report.files, report.rows), (2, n as i64));
    let mut got = Vec::new();
    for file in chain::data_files(&c.dir.join("events")) {
        let mut in_file = Vec::new();
        let reader = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = b.column_by_name("event_time_us").unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            in_file.extend(col.values().iter().copied());
        }
        assert!(
            in_file.is_sorted(),
            "{}: rows in time order",
            file.display()
        );
        assert!(
            in_file
                .iter()
                .all(|t| wal::hour_index(*t) == wal::hour_index(in_file[0])),
            "one hour per file"
        );
        got.extend(in_file);
    }
    got.sort_unstable();
    let mut want = times.clone();
    want.sort_unstable();
    assert_eq!(got, want, "every row once");
}

fn a_stamp() -> &'static Stamp {
    static S: std::sync::OnceLock<Stamp> = std::sync::OnceLock::new();
    S.get_or_init(|| Stamp {
        host: "testhost".into(),
        agent_version: "0".into(),
        max_field_bytes: 1 << 16,
    })
}
