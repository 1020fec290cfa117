use std::time::Duration;

use super::*;

fn row(t: i64, kind: &str) -> AuditRow {
    AuditRow {
        event_time_us: t,
        event_id: format!("id-{t}"),
        kind: kind.into(),
        host: "h".into(),
        ..AuditRow::default()
    }
}

#[test]
fn hours_are_utc_calendar_hours() {
    assert_eq!(hour_of(0), ("1970-01-01".into(), "00".into()));
    assert_eq!(
        hour_of(1_700_000_000_000_000),
        ("2023-11-14".into(), "22".into())
    );
    assert_eq!(
        hour_of(951_782_400_000_000),
        ("2000-02-29".into(), "00".into())
    );
    assert_eq!(
        hour_of(951_782_400_000_000 - 1),
        ("2000-02-28".into(), "23".into())
    );
}

#[test]
fn records_round_trip_and_a_torn_tail_is_dropped() {
    let mut buf = Vec::new();
    for i in 0..3 {
        buf.extend(encode(&row(i, "exchange")).unwrap());
    }
    let (rows, used) = decode(&buf);
    assert_eq!((rows.len(), used), (3, buf.len()));
    for cut in 1..20 {
        let (rows, _) = decode(&buf[..buf.len() - cut]);
        assert_eq!(rows.len(), 2, "a record cut by {cut} bytes is not returned");
    }
    let mut corrupt = buf.clone();
    let last = corrupt.len() - 2;
    corrupt[last] ^= 0xff;
    assert_eq!(
        decode(&corrupt).0.len(),
        2,
        "a CRC mismatch ends the segment"
    );
}

#[test]
fn segments_roll_on_hour_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let roll = Roll {
        max_bytes: 8192,
        max_age: Duration::from_millis(50),
    };
    let (mut wal, left) = Wal::open(dir.path(), roll, false, 7).unwrap();
    assert!(left.is_empty());
    let hour = 3_600_000_000;
    assert_eq!(wal.append(&row(hour, "a")).unwrap(), None);
    assert_eq!(wal.append(&row(hour + 1, "a")).unwrap(), None);
    assert_eq!(
        wal.append(&row(2 * hour, "b")).unwrap(),
        Some(7),
        "new hour closes segment 7"
    );
    let big = AuditRow {
        message: Some("x".repeat(5000)),
        ..row(2 * hour + 1, "c")
    };
    wal.append(&big).unwrap();
    assert_eq!(wal.append(&big).unwrap(), Some(8), "full segment closes");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(wal.roll_if_old().unwrap(), Some(9));
    assert_eq!(read_segment(&segment_path(dir.path(), 7)).unwrap().len(), 2);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![7, 8, 9]);
    // A restart sees all three as leftovers and continues after them.
    let (mut again, left) = Wal::open(dir.path(), roll, true, 0).unwrap();
    assert_eq!(left, vec![7, 8, 9]);
    again.append(&row(3 * hour, "d")).unwrap();
    assert!(segment_path(dir.path(), 10).exists());
}

/// A record as an agent of an older layout wrote it: the row's postcard
/// bytes without the trailing `None`s of the `missing` columns added
/// since, framed with its CRC.
fn legacy_record(r: &AuditRow, missing: usize) -> Vec<u8> {
    let full = postcard::to_allocvec(r).unwrap();
    let old = &full[..full.len() - missing];
    let mut rec = Vec::new();
    rec.extend_from_slice(&(old.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(old).to_le_bytes());
    rec.extend_from_slice(old);
    rec
}

#[test]
fn records_of_the_older_layouts_still_decode() {
    // The first layout (before trace_id), the one before the tls_*
    // columns (5 missing), the one before bundle_* (2 missing) and the one
    // before the process_* columns (7 missing), beside a record of today's.
    let mut first = row(1, "exchange");
    first.message = Some("written before trace_id existed".into());
    let mut traced = row(3, "exchange");
    traced.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    traced.follows = Some("written before tls_version existed".into());
    let mut tls = traced.clone();
    tls.follows = Some("written before process_pid existed".into());
    tls.tls_version = Some("TLSv1.3".into());
    tls.tls_alpn = Some("h2".into());
    let mut new = row(2, "exchange");
    new.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    new.follows = Some("first".into());
    new.tls_version = Some("TLSv1.3".into());
    new.tls_cipher = Some("TLS13_AES_128_GCM_SHA256".into());
    new.tls_alpn = Some("http/1.1".into());
    // Written before the bundle_* columns (2 missing).
    let tls = new.clone();
    new.bundle_version = Some(7);
    new.bundle_signer = Some("ab".repeat(32));
    // Written before the process_* columns (7 missing).
    let bundled = new.clone();
    new.process_pid = Some(4242);
    new.process_uid = Some(998);
    new.process_cgroup = Some("/system.slice/ai-agent.service".into());
    let mut buf = legacy_record(&first, crate::audit::schema::ADDED_COLUMNS);
    buf.extend(encode(&new).unwrap());
    buf.extend(legacy_record(&traced, 12));
    buf.extend(legacy_record(&tls, 9));
    buf.extend(legacy_record(&bundled, 7));
    buf.extend(legacy_record(&first, crate::audit::schema::ADDED_COLUMNS));
    let (rows, used) = decode(&buf);
    assert_eq!(used, buf.len());
    assert_eq!(rows, vec![first.clone(), new, traced, tls, bundled, first]);
}
