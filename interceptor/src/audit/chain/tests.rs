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
            .append(Entry {
                seq: 0,
                host: String::new(),
                segment: Some(i),
                file: Some(rel),
                sha256: Some(sha256_hex(&bytes)),
                rows: 1,
                first_event_us: Some(1),
                last_event_us: Some(2),
                written_us: 3,
                prev: String::new(),
                signature: String::new(),
            })
            .unwrap();
    }
    (dir, pubkey)
}

fn entry_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("manifest/h1/{seq:012}.json"))
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
