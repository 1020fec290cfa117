use std::path::Path;

use super::*;

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = load_or_create_key(&dir.path().join("key")).unwrap();
    let mut chain = Chain::open(dir.path(), "h1", key).unwrap();
    let pubkey = chain.public_key_hex();
    for i in 0..3u64 {
        let rel = format!("events/dt=2026-11-25/hour=1{i}/h1-{i:012}.parquet");
        let bytes = format!("data file {i}").into_bytes();
        write_atomic(&dir.path().join(&rel), &bytes).unwrap();
        chain
            .append(
                Sealed {
                    segment: Some(i),
                    file: Some(rel),
                    sha256: Some(sha256_hex(&bytes)),
                    rows: 1,
                    first_event_us: Some(1),
                    last_event_us: Some(2),
                },
                3,
            )
            .unwrap();
    }
    (dir, pubkey)
}

fn entry_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("manifest/h1/{seq:012}.json"))
}

/// An entry's file holds these keys, in this order (what is signed and
/// what other tools read), the sealed file's at the top level.
#[test]
fn an_entry_is_written_as_it_always_was() {
    let (dir, _) = setup();
    let bytes = std::fs::read(entry_path(dir.path(), 1)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "seq",
            "host",
            "segment",
            "file",
            "sha256",
            "rows",
            "first_event_us",
            "last_event_us",
            "written_us",
            "prev",
            "signature"
        ]
    );
    assert_eq!(
        (&v["seq"], &v["segment"], &v["rows"]),
        (&1.into(), &1.into(), &1.into())
    );
    let e: Entry = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(e.sealed.last_event_us, Some(2));
}

#[test]
fn a_clean_trail_verifies_and_the_key_is_reused() {
    let (dir, key) = setup();
    let r = verify(dir.path(), Some(&key)).expect("clean");
    assert_eq!((r.entries, r.files, r.rows), (3, 3, 3));
    let again = Chain::open(
        dir.path(),
        "h1",
        load_or_create_key(&dir.path().join("key")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        again.public_key_hex(),
        key,
        "key file reused, not regenerated"
    );
    assert_eq!(again.segments.len(), 3);
}

#[test]
fn every_tamper_case_names_the_first_bad_file() {
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "flipped byte",
            Box::new(|d: &Path| {
                let p = d.join("events/dt=2026-11-25/hour=11/h1-000000000001.parquet");
                let mut b = std::fs::read(&p).unwrap();
                b[0] ^= 1;
                std::fs::write(&p, b).unwrap();
            }),
            "h1-000000000001.parquet",
        ),
        (
            "deleted file",
            Box::new(|d: &Path| {
                std::fs::remove_file(
                    d.join("events/dt=2026-11-25/hour=12/h1-000000000002.parquet"),
                )
                .unwrap();
            }),
            "h1-000000000002.parquet",
        ),
        (
            "added file",
            Box::new(|d: &Path| {
                std::fs::write(d.join("events/dt=2026-11-25/hour=12/h1-999.parquet"), b"x")
                    .unwrap();
            }),
            "h1-999.parquet",
        ),
        (
            "deleted entry",
            Box::new(|d: &Path| std::fs::remove_file(entry_path(d, 1)).unwrap()),
            "000000000002.json",
        ),
        (
            "reordered entries",
            Box::new(|d: &Path| {
                let (a, b) = (entry_path(d, 0), entry_path(d, 1));
                let tmp = d.join("swap");
                std::fs::rename(&a, &tmp).unwrap();
                std::fs::rename(&b, &a).unwrap();
                std::fs::rename(&tmp, &b).unwrap();
            }),
            "000000000000.json",
        ),
        (
            "edited entry",
            Box::new(|d: &Path| {
                let p = entry_path(d, 2);
                let s = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"rows\": 1", "\"rows\": 2");
                std::fs::write(&p, s).unwrap();
            }),
            "000000000002.json",
        ),
    ];
    for (what, tamper, names) in cases {
        let (dir, key) = setup();
        tamper(dir.path());
        let b = verify(dir.path(), Some(&key)).expect_err(what);
        assert!(b.path.ends_with(names), "{what}: {b}");
    }
    let (dir, _) = setup();
    let other = hex::encode(SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
    let b = verify(dir.path(), Some(&other)).expect_err("wrong key");
    assert!(b.reason.contains("signature"), "{b}");
}

#[test]
fn removing_the_oldest_entries_with_their_files_is_a_break() {
    let (dir, key) = setup();
    std::fs::remove_file(entry_path(dir.path(), 0)).unwrap();
    std::fs::remove_file(
        dir.path()
            .join("events/dt=2026-11-25/hour=10/h1-000000000000.parquet"),
    )
    .unwrap();
    let b = verify(dir.path(), Some(&key)).expect_err("unanchored start");
    assert!(b.path.ends_with("000000000001.json"), "{b}");
    assert!(b.reason.contains("genesis"), "{b}");
}

#[test]
fn every_object_under_events_must_be_listed() {
    for stray in [
        "events/dt=2026-11-25/extra.json",
        "events/dt=2026-11-25/hour=10/.h1-000000000009.parquet.tmp",
        "events/dt=2026-11-25/hour=10/sub/dir/part-0",
        "events/README",
    ] {
        let (dir, key) = setup();
        write_atomic(&dir.path().join(stray), b"{\"x\":1}").unwrap();
        let b = verify(dir.path(), Some(&key)).expect_err(stray);
        assert!(b.path.ends_with(stray), "{stray}: {b}");
        assert!(b.reason.contains("not in any manifest entry"), "{b}");
    }
    let (dir, key) = setup();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("events/link.parquet")).unwrap();
    let b = verify(dir.path(), Some(&key)).expect_err("symlink");
    assert!(b.path.ends_with("events/link.parquet"), "{b}");
}

#[test]
fn a_held_checkpoint_anchors_a_trimmed_chain_and_a_wrong_one_fails() {
    let (dir, key) = setup();
    let heads = verify(dir.path(), Some(&key)).unwrap().heads;
    assert_eq!(heads.len(), 1);
    let mid: Checkpoint = format!(
        "h1:1:{}",
        sha256_hex(&std::fs::read(entry_path(dir.path(), 1)).unwrap())
    )
    .parse()
    .unwrap();
    std::fs::remove_file(entry_path(dir.path(), 0)).unwrap();
    std::fs::remove_file(
        dir.path()
            .join("events/dt=2026-11-25/hour=10/h1-000000000000.parquet"),
    )
    .unwrap();
    let r = verify_from(dir.path(), Some(&key), std::slice::from_ref(&mid)).expect("anchored");
    assert_eq!(r.entries, 2);
    let hostless: Checkpoint = format!("1:{}", mid.sha256).parse().unwrap();
    verify_from(dir.path(), Some(&key), &[hostless]).expect("one host: no name needed");
    // The newest entry, held from before: still there, so still fine.
    verify_from(dir.path(), Some(&key), &heads).expect("head held");

    let wrong = Checkpoint {
        sha256: "0".repeat(64),
        ..mid.clone()
    };
    let b = verify_from(dir.path(), Some(&key), &[wrong]).expect_err("wrong hash");
    assert!(
        b.path.ends_with("000000000001.json") && b.reason.contains("checkpoint"),
        "{b}"
    );
    let gone = Checkpoint {
        seq: 0,
        ..mid.clone()
    };
    let b = verify_from(dir.path(), Some(&key), &[gone]).expect_err("before the start");
    assert!(b.reason.contains("not in the chain"), "{b}");
    let other = Checkpoint {
        host: Some("h2".into()),
        ..mid
    };
    let b = verify_from(dir.path(), Some(&key), &[other]).expect_err("unknown host");
    assert!(b.reason.contains("missing"), "{b}");
    // Truncating the newest entry is seen by one who held it.
    std::fs::remove_file(entry_path(dir.path(), 2)).unwrap();
    let b = verify_from(dir.path(), Some(&key), &heads).expect_err("head removed");
    assert!(b.reason.contains("not in the chain"), "{b}");
}

#[test]
fn checkpoints_parse_and_print_alike() {
    let h = "ab".repeat(32);
    for s in [format!("host-1:12:{h}"), format!("12:{h}")] {
        let c: Checkpoint = s.parse().unwrap();
        assert_eq!(c.to_string(), s);
    }
    for bad in ["12", "x:12:abc", &format!("h:x:{h}")] {
        assert!(bad.parse::<Checkpoint>().is_err(), "{bad}");
    }
}
