//! The audit uploader against a real S3 API: moto's server (from PyPI, in
//! the workspace's `.venv`) on a loopback port, buckets created and listed
//! with boto3, so what is checked is what an S3 client sees. Covers a clean
//! drain, an outage (moto killed) with files queued meanwhile, an agent
//! restart during it (a new `Uploader` sees the same backlog), the recovery,
//! and the background loop (`run`) riding out a second outage.
//!
//! moto keeps everything in memory: a restarted moto has no bucket and none
//! of the earlier objects, so the test recreates the bucket and checks each
//! phase's objects against the server of that phase.

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use interceptor::{
    audit::upload::{self, UploadError, Uploader},
    config::{Retention, S3Config},
};
use mcp_interceptor_tests::{
    TempDir,
    s3::{BUCKET, KEY_ID, SECRET, bucket_objects, free_port, moto},
};
use tokio::runtime::Runtime;

const PREFIX: &str = "mcp-interceptor";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An audit file with distinct content; returns (relative path, bytes).
fn audit_file(audit: &Path, rel: &str, n: usize) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = format!("{rel}\n")
        .bytes()
        .cycle()
        .take(100 + n * 1000)
        .collect();
    let p = audit.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, &bytes).expect("write");
    upload::enqueue(audit, Path::new(rel)).expect("enqueue");
    (rel.to_string(), bytes)
}

fn pair(audit: &Path, seq: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        audit_file(
            audit,
            &format!("events/dt=2026-11-25/hour=14/host-{seq:012}.parquet"),
            seq,
        ),
        audit_file(audit, &format!("manifest/host/{seq:012}.json"), seq),
    ]
}

fn expected(files: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(rel, b)| (format!("{PREFIX}/{rel}"), hex(b)))
        .collect()
}

/// Credentials are passed explicitly rather than through `AWS_*` variables:
/// `std::env::set_var` is unsafe in a threaded process, and this keeps the
/// test independent of whatever AWS setup the machine has.
fn uploader(audit: &Path, port: u16, max_backoff_ms: u64) -> Uploader {
    let cfg = S3Config {
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
        region: "us-east-1".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        retention: Retention::DeleteAfterUpload,
        max_retry_backoff_ms: max_backoff_ms,
    };
    Uploader::with_static_credentials(audit, &cfg, KEY_ID, SECRET).expect("uploader")
}

fn drain(rt: &Runtime, up: &Uploader) -> Result<usize, UploadError> {
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), up.drain()).await })
        .expect("drain within 30 s")
}

fn assert_retention(audit: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, _) in files {
        let local = audit.join(rel).exists();
        if rel.starts_with("events/") {
            assert!(!local, "{rel} should be deleted after its upload");
        } else {
            assert!(local, "{rel} (tamper evidence) must stay");
        }
    }
}

#[test]
fn uploads_survive_an_outage_and_a_restart() {
    let rt = Runtime::new().expect("runtime");
    let tmp = TempDir::new("upl");
    let audit = tmp.path().join("audit");
    fs::create_dir_all(&audit).expect("audit dir");
    let port = free_port();

    // 1. Normal operation.
    let mut server = Some(moto(port, tmp.path(), "1"));
    let first: Vec<_> = (1..=2).flat_map(|s| pair(&audit, s)).collect();
    let up = uploader(&audit, port, 60_000);
    assert_eq!(up.backlog().expect("backlog"), 4);
    assert_eq!(drain(&rt, &up).expect("drain"), 4);
    assert_eq!(up.backlog().expect("backlog"), 0);
    assert_eq!(bucket_objects(port), expected(&first));
    assert_retention(&audit, &first);

    // 2. S3 goes away; files keep coming. The drain fails, nothing is lost.
    drop(server.take());
    let during = pair(&audit, 3);
    let t = Instant::now();
    let err = drain(&rt, &up).expect_err("moto is down");
    assert!(matches!(err, UploadError::Store { .. }), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "a failing drain returns quickly: {:?}",
        t.elapsed()
    );
    assert_eq!(up.backlog().expect("backlog"), 2);
    assert!(during.iter().all(|(rel, _)| audit.join(rel).exists()));

    // 3. The agent restarts during the outage: the spool is on disk.
    drop(up);
    let up = uploader(&audit, port, 60_000);
    assert_eq!(up.backlog().expect("backlog"), 2);
    assert!(drain(&rt, &up).is_err());
    assert_eq!(up.backlog().expect("backlog"), 2);

    // 4. S3 is back (empty: moto is in memory); the backlog goes up in order.
    server = Some(moto(port, tmp.path(), "2"));
    assert_eq!(drain(&rt, &up).expect("drain"), 2);
    assert_eq!(up.backlog().expect("backlog"), 0);
    assert_eq!(bucket_objects(port), expected(&during));
    assert_retention(&audit, &first);
    assert_retention(&audit, &during);

    // 5. The background loop across another outage: it retries with a short
    //    backoff and uploads once S3 returns, then stops when told.
    drop(server.take());
    let late = pair(&audit, 4);
    let notify = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = rt.spawn(uploader(&audit, port, 500).run(notify.clone(), stop_rx));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        up.backlog().expect("backlog"),
        2,
        "nothing uploads while S3 is down"
    );
    let _server = moto(port, tmp.path(), "3");
    notify.notify_one();
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.backlog().expect("backlog") > 0 {
        assert!(
            Instant::now() < deadline,
            "run() did not upload within 20 s of S3's return"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_tx.send(true).expect("stop");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), task).await })
        .expect("run() stops within 15 s")
        .expect("run() did not panic");
    assert_eq!(bucket_objects(port), expected(&late));
    assert_retention(&audit, &late);
    assert!(
        fs::read_dir(audit.join("outbox"))
            .expect("outbox")
            .next()
            .is_none(),
        "outbox is empty"
    );
}
