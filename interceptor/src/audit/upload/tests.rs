use std::{
    fs,
    path::Path,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use object_store::{ObjectStoreExt, memory::InMemory, path::Path as Key};

use super::{spool::next_seq, *};

const EVENTS: &str = "events/dt=2026-11-25/hour=14/host-000000000001.parquet";
const MANIFEST: &str = "manifest/host/000000000001.json";

fn put_file(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, bytes).expect("write");
}

fn marks(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("outbox"))
        .expect("outbox")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn memory(dir: &Path, retention: Retention) -> (Uploader, Arc<InMemory>) {
    let store = Arc::new(InMemory::new());
    let up = Uploader::with_store(
        dir,
        store.clone(),
        "/mcp-interceptor/",
        retention,
        Duration::from_secs(60),
    )
    .expect("uploader");
    (up, store)
}

/// The object uploaded for audit file `rel`, under the uploader's prefix.
async fn object(store: &InMemory, rel: &str) -> Option<Vec<u8>> {
    let key = format!("mcp-interceptor/{rel}");
    match store.get(&Key::from(key.as_str())).await {
        Ok(r) => Some(r.bytes().await.expect("body").to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

#[test]
fn enqueue_keeps_order_and_content() {
    let d = tempfile::tempdir().expect("tempdir");
    let rels: Vec<String> = (0..50)
        .map(|i| format!("events/dt=2026-11-25/hour=14/h-{i:012}.parquet"))
        .collect();
    for r in &rels {
        enqueue(d.path(), Path::new(r)).expect("enqueue");
    }
    let names = marks(d.path());
    assert_eq!(names.len(), rels.len(), "{names:?}");
    for (name, rel) in names.iter().zip(&rels) {
        assert!(name.ends_with(".mark") && name.len() == 25, "{name}");
        assert_eq!(
            &fs::read_to_string(d.path().join("outbox").join(name)).expect("mark"),
            rel
        );
    }
}

#[test]
fn sequence_stays_behind_existing_marks() {
    let d = tempfile::tempdir().expect("tempdir");
    let outbox = d.path().join("outbox");
    fs::create_dir_all(&outbox).expect("outbox");
    // A mark from the "future": the clock went back since it was written.
    let far = u64::MAX / 2;
    fs::write(outbox.join(format!("{far:020}.mark")), EVENTS).expect("mark");
    fs::write(outbox.join("junk.mark"), EVENTS).expect("junk");
    let last = AtomicU64::new(0);
    let a = next_seq(&last, &outbox).expect("seq");
    let b = next_seq(&last, &outbox).expect("seq");
    assert_eq!((a, b), (far + 1, far + 2));
    // Without queued marks it is the clock.
    let fresh = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let c = next_seq(&AtomicU64::new(0), fresh.path()).expect("seq");
    assert!(c >= now && c - now < 60_000_000_000, "{c} vs {now}");
}

#[test]
fn enqueue_rejects_bad_paths() {
    let d = tempfile::tempdir().expect("tempdir");
    for bad in [
        "/etc/passwd",
        "../x",
        "events/../../x",
        "./events/a",
        "",
        "events/a\u{1}b",
    ] {
        let e = enqueue(d.path(), Path::new(bad)).expect_err(bad);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
    }
    assert!(!d.path().join("outbox").exists() || marks(d.path()).is_empty());
    // Doubled separators and inner "." normalize away (std::path::Components).
    enqueue(d.path(), Path::new("events//a.parquet")).expect("enqueue");
    let name = &marks(d.path())[0];
    assert_eq!(
        fs::read_to_string(d.path().join("outbox").join(name)).expect("mark"),
        "events/a.parquet"
    );
}

#[test]
fn marks_survive_reopening_and_backlog_counts() {
    let d = tempfile::tempdir().expect("tempdir");
    let (up, _) = memory(d.path(), Retention::DeleteAfterUpload);
    assert_eq!(up.backlog().expect("backlog"), 0, "no outbox yet");
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    enqueue(d.path(), Path::new(MANIFEST)).expect("enqueue");
    assert_eq!(up.backlog().expect("backlog"), 2);
    drop(up);
    // A crash between writing a temporary mark and linking it.
    let old = d.path().join("outbox/.00000000000000000001.mark.tmp");
    let fresh = d.path().join("outbox/.00000000000000000002.mark.tmp");
    fs::write(&old, EVENTS).expect("tmp");
    fs::write(&fresh, EVENTS).expect("tmp");
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(hour_ago)
        .expect("mtime");
    let (up, _) = memory(d.path(), Retention::DeleteAfterUpload);
    assert_eq!(up.backlog().expect("backlog"), 2);
    assert!(!old.exists(), "stale temporary marks are removed");
    assert!(
        fresh.exists(),
        "a temporary mark may be an enqueue in progress"
    );
}

#[tokio::test]
async fn drain_uploads_and_applies_retention() {
    let d = tempfile::tempdir().expect("tempdir");
    put_file(d.path(), EVENTS, b"PAR1 data PAR1");
    put_file(d.path(), MANIFEST, b"{\"seq\":1}");
    put_file(d.path(), "events/dt=2026-11-25/hour=15/empty.parquet", b"");
    for r in [
        EVENTS,
        MANIFEST,
        "events/dt=2026-11-25/hour=15/empty.parquet",
    ] {
        enqueue(d.path(), Path::new(r)).expect("enqueue");
    }
    let (up, store) = memory(d.path(), Retention::DeleteAfterUpload);
    assert_eq!(up.drain().await.expect("drain"), 3);
    assert_eq!(up.backlog().expect("backlog"), 0);
    assert_eq!(
        object(&store, EVENTS).await.as_deref(),
        Some(&b"PAR1 data PAR1"[..])
    );
    assert_eq!(
        object(&store, MANIFEST).await.as_deref(),
        Some(&b"{\"seq\":1}"[..])
    );
    assert!(
        !d.path().join(EVENTS).exists(),
        "data file deleted after upload"
    );
    assert!(
        d.path().join(MANIFEST).exists(),
        "manifest entries are never deleted"
    );
    assert_eq!(up.drain().await.expect("drain"), 0, "nothing left");
}

#[tokio::test]
async fn keep_local_keeps_files_and_reupload_is_idempotent() {
    let d = tempfile::tempdir().expect("tempdir");
    put_file(d.path(), EVENTS, b"one");
    let (up, store) = memory(d.path(), Retention::KeepLocal);
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    assert_eq!(up.drain().await.expect("drain"), 2);
    assert!(d.path().join(EVENTS).exists());
    assert_eq!(object(&store, EVENTS).await.as_deref(), Some(&b"one"[..]));
}

#[tokio::test]
async fn large_files_go_in_parts() {
    let d = tempfile::tempdir().expect("tempdir");
    let body: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
    put_file(d.path(), EVENTS, &body);
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    let (mut up, store) = memory(d.path(), Retention::DeleteAfterUpload);
    up.part_bytes = 4096;
    assert_eq!(up.drain().await.expect("drain"), 1);
    assert_eq!(object(&store, EVENTS).await, Some(body));
}

#[tokio::test]
async fn missing_or_invalid_marks_do_not_wedge_the_queue() {
    let d = tempfile::tempdir().expect("tempdir");
    enqueue(d.path(), Path::new("events/gone.parquet")).expect("enqueue");
    fs::write(
        d.path().join("outbox/00000000000000000002.mark"),
        "../../etc/passwd",
    )
    .expect("bad mark");
    put_file(d.path(), MANIFEST, b"m");
    enqueue(d.path(), Path::new(MANIFEST)).expect("enqueue");
    let (up, store) = memory(d.path(), Retention::DeleteAfterUpload);
    assert_eq!(up.drain().await.expect("drain"), 1);
    assert_eq!(up.backlog().expect("backlog"), 0);
    assert!(object(&store, MANIFEST).await.is_some());
    assert!(object(&store, "events/gone.parquet").await.is_none());
}

#[tokio::test]
async fn missing_file_already_in_bucket_is_dropped_quietly() {
    let d = tempfile::tempdir().expect("tempdir");
    let (up, store) = memory(d.path(), Retention::DeleteAfterUpload);
    store
        .put(
            &Key::from(format!("mcp-interceptor/{EVENTS}").as_str()),
            b"x".to_vec().into(),
        )
        .await
        .expect("put");
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    assert_eq!(up.drain().await.expect("drain"), 0);
    assert_eq!(up.backlog().expect("backlog"), 0);
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn s3_config(endpoint: String) -> S3Config {
    S3Config {
        bucket: "audit".into(),
        prefix: "p".into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        retention: Retention::DeleteAfterUpload,
        max_retry_backoff_ms: 2_000,
    }
}

#[tokio::test]
async fn failure_stops_the_drain_and_keeps_everything() {
    let d = tempfile::tempdir().expect("tempdir");
    put_file(d.path(), EVENTS, b"data");
    put_file(d.path(), MANIFEST, b"m");
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    enqueue(d.path(), Path::new(MANIFEST)).expect("enqueue");
    let cfg = s3_config(format!("http://127.0.0.1:{}", closed_port()));
    let up = Uploader::with_static_credentials(d.path(), &cfg, "k", "s").expect("uploader");
    let t = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), up.drain())
        .await
        .expect("bounded")
        .expect_err("no server");
    assert!(matches!(err, UploadError::Store { .. }), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "request retries are short: {:?}",
        t.elapsed()
    );
    assert_eq!(up.backlog().expect("backlog"), 2);
    assert!(d.path().join(EVENTS).exists());
}

#[test]
fn config_is_checked() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut cfg = s3_config("ftp://x".into());
    assert!(matches!(
        Uploader::with_static_credentials(d.path(), &cfg, "k", "s"),
        Err(UploadError::Config(_))
    ));
    cfg.endpoint = Some("https://s3.example.net".into());
    cfg.bucket = String::new();
    assert!(matches!(
        Uploader::with_static_credentials(d.path(), &cfg, "k", "s"),
        Err(UploadError::Config(_))
    ));
    let store = Arc::new(InMemory::new());
    assert!(
        Uploader::with_store(
            d.path(),
            store,
            "a//b",
            Retention::KeepLocal,
            Duration::ZERO
        )
        .is_err()
    );
}

#[test]
fn config_parses_with_defaults() {
    let cfg: S3Config = toml::from_str("bucket = \"b\"").expect("parse");
    assert_eq!(cfg.region, "us-east-1");
    assert_eq!(cfg.retention, Retention::DeleteAfterUpload);
    assert_eq!(cfg.max_retry_backoff_ms, 60_000);
    assert_eq!((cfg.prefix.as_str(), cfg.endpoint.as_deref()), ("", None));
    let cfg: S3Config =
        toml::from_str("bucket = \"b\"\nretention = \"keep-local\"").expect("parse");
    assert_eq!(cfg.retention, Retention::KeepLocal);
    assert!(toml::from_str::<S3Config>("bucket = \"b\"\nsecret = \"x\"").is_err());
    assert!(toml::from_str::<S3Config>("bucket = \"b\"\nretention = \"forever\"").is_err());
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let d = tempfile::tempdir().expect("tempdir");
    let (mut up, _) = memory(d.path(), Retention::KeepLocal);
    let steps: Vec<u64> = (1..=8).map(|f| up.backoff(f).as_secs()).collect();
    assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(up.backoff(u32::MAX), Duration::from_secs(60));
    up.max_backoff = Duration::from_millis(300);
    assert_eq!(up.backoff(1), Duration::from_millis(300));
}

#[tokio::test]
async fn run_uploads_on_notify_and_stops() {
    let d = tempfile::tempdir().expect("tempdir");
    let (up, store) = memory(d.path(), Retention::DeleteAfterUpload);
    let notify = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(up.run(notify.clone(), stop_rx));
    put_file(d.path(), EVENTS, b"late");
    enqueue(d.path(), Path::new(EVENTS)).expect("enqueue");
    notify.notify_one();
    let deadline = Instant::now() + Duration::from_secs(10);
    while object(&store, EVENTS).await.is_none() {
        assert!(Instant::now() < deadline, "run did not upload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Enqueued just before stop: the last drain takes it.
    put_file(d.path(), MANIFEST, b"last");
    enqueue(d.path(), Path::new(MANIFEST)).expect("enqueue");
    stop_tx.send(true).expect("send");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run stops")
        .expect("join");
    assert!(object(&store, MANIFEST).await.is_some());
}
