//! Ships finished audit files to S3 through a durable local spool.
//!
//! # Design
//!
//! The writer calls [`enqueue`] once a file (Parquet data under `events/`,
//! manifest entry under `manifest/`) is complete and durable. `enqueue`
//! leaves a *mark* in `<audit_dir>/outbox/`: a tiny file whose content is
//! the file's path relative to the audit directory and whose name,
//! `<20-digit sequence>.mark`, sorts in enqueue order (the sequence is the
//! wall clock in nanoseconds, bumped to stay strictly increasing within the
//! process). A mark is written to a hidden temporary name, fsynced, linked
//! to its final name (never overwriting one) and the directory is fsynced,
//! so a mark is either absent or whole, and survives a crash once
//! `enqueue` returns.
//!
//! The [`Uploader`] walks the marks oldest first: reads the file, PUTs it at
//! `<prefix>/<relative path>` (multipart above [`PART_BYTES`]), checks the
//! stored size with a HEAD, then deletes the local data file (retention
//! `delete-after-upload`, `events/` only) and finally the mark. It stops at
//! the first failure, so order is kept and the rest waits; [`Uploader::run`]
//! retries with capped exponential backoff.
//!
//! # Invariants
//!
//! 1. A mark is removed only after the object is confirmed in the bucket
//!    with the local file's size. A crash anywhere repeats at most one
//!    upload; uploads are idempotent (same key, same bytes).
//! 2. Files under `manifest/` are never deleted here: they are the
//!    tamper-evidence chain. Only files under `events/` are, and only with
//!    [`Retention::DeleteAfterUpload`].
//! 3. The queue never wedges on a bad mark: one whose content is not a valid
//!    relative path, or whose local file is gone and not in the bucket, is
//!    logged as an error and dropped. (A data file is deleted before its
//!    mark, so after a crash in between the object is found in the bucket
//!    and the mark is dropped quietly.)
//! 4. Keys use `/`; relative paths that are absolute or contain `.`/`..`
//!    are refused by `enqueue`.
//!
//! Transient errors (network, 5xx) are retried briefly inside one request
//! by `object_store` (bounded, see [`request_retry`]) and then by `run`.
//! Interrupted multipart uploads may leave parts behind; a bucket lifecycle
//! rule `AbortIncompleteMultipartUpload` cleans them up.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Component, Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
    aws::AmazonS3Builder, path::Path as Key,
};
use tokio::sync::{Notify, watch};

/// Files up to this size go in one PUT; larger ones in parts of this size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// How often `run` looks at the outbox when nobody notifies it.
const POLL: Duration = Duration::from_secs(1);
/// First delay after a failed drain; doubles up to `max_retry_backoff_ms`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// A temporary mark older than this is a crash leftover.
const STALE_TMP: Duration = Duration::from_secs(60);
/// Parts of one multipart upload in flight at once.
const PART_CONCURRENCY: usize = 4;

/// `[audit.s3]`: where the audit files go. Secrets are not here: they come
/// from the standard AWS environment (see [`Uploader::new`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix; objects go to `<prefix>/<relative path>`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// S3-compatible endpoint (MinIO, moto, ...); plain HTTP is allowed only
    /// when this is an `http://` URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub retention: Retention,
    /// Cap of the exponential backoff between failed drains.
    #[serde(default = "default_max_backoff_ms")]
    pub max_retry_backoff_ms: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_max_backoff_ms() -> u64 {
    60_000
}

/// What happens to a local data file once it is in the bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retention {
    KeepLocal,
    #[default]
    DeleteAfterUpload,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("invalid S3 configuration: {0}")]
    Config(String),
    #[error("creating the S3 client: {0}")]
    Client(#[source] object_store::Error),
    #[error("audit upload spool {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("uploading {key}: {source}")]
    Store {
        key: String,
        source: object_store::Error,
    },
    #[error("uploaded {key} but the bucket holds {remote} bytes, not {local}")]
    SizeMismatch {
        key: String,
        local: u64,
        remote: u64,
    },
    #[error("reading a file to upload: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UploadError + '_ {
    move |source| UploadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Durably marks `rel` (relative to `audit_dir`) for upload: the mark is
/// fsynced (file and directory) before this returns. Call it only once the
/// file itself is complete and durable.
pub fn enqueue(audit_dir: &Path, rel: &Path) -> io::Result<()> {
    let rel = rel_key(rel)?;
    let outbox = audit_dir.join("outbox");
    if !outbox.is_dir() {
        DirBuilder::new().recursive(true).mode(0o750).create(&outbox)?;
        sync_dir(audit_dir)?;
    }
    static LAST: AtomicU64 = AtomicU64::new(0);
    loop {
        let seq = next_seq(&LAST, &outbox)?;
        let name = format!("{seq:020}.mark");
        let tmp = outbox.join(format!(".{name}.tmp"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)?;
            f.write_all(rel.as_bytes())?;
            f.sync_all()?;
        }
        // A hard link publishes the mark whole and never replaces another.
        let linked = fs::hard_link(&tmp, outbox.join(&name));
        fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => return sync_dir(&outbox),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `rel` as an object key suffix: relative, only normal UTF-8 components
/// that are valid key segments, joined by `/`.
fn rel_key(rel: &Path) -> io::Result<String> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("audit upload path {}: {why}", rel.display()),
        )
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| bad("not UTF-8"))?),
            Component::ParentDir => return Err(bad("contains ..")),
            Component::CurDir => return Err(bad("contains .")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("absolute")),
        }
    }
    if parts.is_empty() {
        return Err(bad("empty"));
    }
    let key = parts.join("/");
    Key::parse(&key).map_err(|e| bad(&e.to_string()))?;
    Ok(key)
}

/// The next mark sequence: the clock in nanoseconds, but strictly above
/// `last`, which starts (first call in the process) above the newest mark
/// already queued, so a clock that went back across a restart keeps order.
fn next_seq(last: &AtomicU64, outbox: &Path) -> io::Result<u64> {
    if last.load(Ordering::SeqCst) == 0 {
        last.fetch_max(newest_mark(outbox)?, Ordering::SeqCst);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let now = u64::try_from(now).unwrap_or(u64::MAX);
    let next = |l: u64| l.saturating_add(1).max(now);
    match last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| Some(next(l))) {
        Ok(prev) | Err(prev) => Ok(next(prev)),
    }
}

/// The highest mark sequence in `outbox`, 0 if none.
fn newest_mark(outbox: &Path) -> io::Result<u64> {
    let mut max = 0;
    for e in fs::read_dir(outbox)? {
        let name = e?.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".mark"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            max = max.max(seq);
        }
    }
    Ok(max)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Retries inside one request: short, so that an outage surfaces quickly
/// and `run`'s own backoff (and its stop signal) takes over.
fn request_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

/// Uploads the outbox; see the module documentation.
#[derive(Debug)]
pub struct Uploader {
    audit_dir: PathBuf,
    outbox: PathBuf,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    retention: Retention,
    max_backoff: Duration,
    part_bytes: usize,
}

enum Outcome {
    Uploaded,
    Dropped,
}

impl Uploader {
    /// Credentials (and anything else `AWS_*`) from the standard AWS
    /// environment variables, as `AmazonS3Builder::from_env` reads them;
    /// bucket, region and endpoint from `cfg` win.
    pub fn new(audit_dir: &Path, cfg: &S3Config) -> Result<Self, UploadError> {
        Self::build(audit_dir, cfg, AmazonS3Builder::from_env())
    }

    /// Like [`Self::new`] but with the given static key pair and nothing from
    /// the environment (tests, and secrets held elsewhere than `AWS_*`).
    pub fn with_static_credentials(
        audit_dir: &Path,
        cfg: &S3Config,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, UploadError> {
        let b = AmazonS3Builder::new()
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key);
        Self::build(audit_dir, cfg, b)
    }

    fn build(audit_dir: &Path, cfg: &S3Config, b: AmazonS3Builder) -> Result<Self, UploadError> {
        if cfg.bucket.is_empty() {
            return Err(UploadError::Config("bucket is empty".into()));
        }
        let mut b = b
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_retry(request_retry());
        if let Some(ep) = &cfg.endpoint {
            let http = ep.starts_with("http://");
            if !http && !ep.starts_with("https://") {
                return Err(UploadError::Config(format!(
                    "endpoint {ep:?} is not an http:// or https:// URL"
                )));
            }
            b = b.with_endpoint(ep).with_allow_http(http);
        }
        let store = b.build().map_err(UploadError::Client)?;
        let max_backoff = Duration::from_millis(cfg.max_retry_backoff_ms);
        Self::with_store(
            audit_dir,
            Arc::new(store),
            &cfg.prefix,
            cfg.retention,
            max_backoff,
        )
    }

    /// Any object store (tests use `InMemory`). `prefix` may be empty.
    pub(crate) fn with_store(
        audit_dir: &Path,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        retention: Retention,
        max_backoff: Duration,
    ) -> Result<Self, UploadError> {
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Key::parse(&prefix)
                .map_err(|e| UploadError::Config(format!("prefix {prefix:?}: {e}")))?;
        }
        let outbox = audit_dir.join("outbox");
        // Leftovers of an enqueue that crashed before linking its mark (old
        // enough not to be one in progress right now).
        if let Ok(dir) = fs::read_dir(&outbox) {
            for e in dir.flatten() {
                let tmp = e.file_name().to_str().is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
                let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if tmp && age.is_some_and(|a| a > STALE_TMP) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            audit_dir: audit_dir.to_path_buf(),
            outbox,
            store,
            prefix,
            retention,
            max_backoff,
            part_bytes: PART_BYTES,
        })
    }

    /// Mark names, oldest first.
    fn pending(&self) -> io::Result<Vec<String>> {
        let dir = match fs::read_dir(&self.outbox) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for e in dir {
            if let Some(n) = e?
                .file_name()
                .to_str()
                .filter(|n| n.ends_with(".mark") && !n.starts_with('.'))
            {
                names.push(n.to_string());
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Number of pending uploads.
    pub fn backlog(&self) -> io::Result<usize> {
        self.pending().map(|p| p.len())
    }

    /// Uploads everything pending, oldest first; returns how many objects
    /// were uploaded. Stops at the first failure, leaving it and the rest
    /// queued.
    pub async fn drain(&self) -> Result<usize, UploadError> {
        let mut uploaded = 0;
        for name in self.pending().map_err(io_err(&self.outbox))? {
            let mark = self.outbox.join(&name);
            let rel = match fs::read_to_string(&mark) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // another drain took it
                Err(e) => return Err(io_err(&mark)(e)),
            };
            let outcome = match rel_key(Path::new(&rel)) {
                Ok(rel) => self.upload(&rel).await?,
                Err(e) => {
                    tracing::error!(mark = %mark.display(), error = %e, "invalid audit upload mark dropped");
                    Outcome::Dropped
                }
            };
            if let Outcome::Uploaded = outcome {
                uploaded += 1;
            }
            match fs::remove_file(&mark) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&mark)(e)),
                _ => {}
            }
        }
        Ok(uploaded)
    }

    fn key(&self, rel: &str) -> Result<Key, UploadError> {
        let key = if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        };
        Key::parse(&key).map_err(|e| UploadError::Config(format!("object key {key:?}: {e}")))
    }

    /// One file: PUT, HEAD to confirm, retention. Errors leave the mark.
    async fn upload(&self, rel: &str) -> Result<Outcome, UploadError> {
        let local = self.audit_dir.join(rel);
        let key = self.key(rel)?;
        let store_err = |source| UploadError::Store {
            key: key.to_string(),
            source,
        };
        let file = match File::open(&local) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Deleted after its upload and before its mark (a crash), or lost.
                match self.store.head(&key).await {
                    Ok(_) => {
                        tracing::debug!(file = rel, "audit file already uploaded; mark dropped")
                    }
                    Err(object_store::Error::NotFound { .. }) => {
                        tracing::error!(
                            file = rel,
                            "audit file to upload is missing locally and not in the bucket; dropped"
                        )
                    }
                    Err(e) => return Err(store_err(e)),
                }
                return Ok(Outcome::Dropped);
            }
            Err(e) => return Err(io_err(&local)(e)),
        };
        let len = file.metadata().map_err(io_err(&local))?.len();
        if len <= self.part_bytes as u64 {
            let bytes = read_chunk(file, &local, self.part_bytes).await?.1;
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(store_err)?;
        } else {
            self.put_parts(file, &local, &key).await?;
        }
        let remote = self.store.head(&key).await.map_err(store_err)?.size;
        if remote != len {
            return Err(UploadError::SizeMismatch {
                key: key.to_string(),
                local: len,
                remote,
            });
        }
        tracing::debug!(file = rel, key = %key, bytes = len, "audit file uploaded");
        if self.retention == Retention::DeleteAfterUpload && rel.starts_with("events/") {
            match fs::remove_file(&local) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&local)(e)),
                _ => {}
            }
        }
        Ok(Outcome::Uploaded)
    }

    async fn put_parts(&self, mut file: File, local: &Path, key: &Key) -> Result<(), UploadError> {
        let store_err = |source| UploadError::Store {
            key: key.to_string(),
            source,
        };
        let mut parts = WriteMultipart::new_with_chunk_size(
            self.store.put_multipart(key).await.map_err(store_err)?,
            self.part_bytes,
        );
        loop {
            let read = read_chunk(file, local, self.part_bytes).await;
            let (f, chunk) = match read {
                Ok(r) => r,
                Err(e) => {
                    let _ = parts.abort().await;
                    return Err(e);
                }
            };
            if chunk.is_empty() {
                break;
            }
            file = f;
            if let Err(e) = parts.wait_for_capacity(PART_CONCURRENCY).await {
                let _ = parts.abort().await;
                return Err(store_err(e));
            }
            parts.put(chunk.into());
        }
        parts.finish().await.map_err(store_err)?;
        Ok(())
    }

    fn backoff(&self, failures: u32) -> Duration {
        let step = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        step.min(self.max_backoff)
    }

    /// Drains until `stop` turns true (or its sender goes away): after a
    /// success waits for `notify` (use `notify_one`, which is never lost) or
    /// [`POLL`]; after a failure waits the backoff (1 s doubling up to
    /// `max_retry_backoff_ms`), logging each failed attempt once. On stop,
    /// tries one last drain; what it cannot upload stays for the next start.
    pub async fn run(self, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        while !*stop.borrow_and_update() {
            let wait = match self.drain().await {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(
                            uploaded = n,
                            failed_attempts = failures,
                            "audit upload recovered"
                        );
                    }
                    failures = 0;
                    None
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = self.backoff(failures);
                    let backlog = self.backlog().unwrap_or(0);
                    tracing::warn!(error = %e, attempt = failures, retry_in_ms = delay.as_millis() as u64, backlog, "audit upload failed");
                    Some(delay)
                }
            };
            let stopped = match wait {
                None => tokio::select! {
                    _ = notify.notified() => false,
                    _ = tokio::time::sleep(POLL) => false,
                    r = stop.changed() => r.is_err(),
                },
                // New files do not cut a backoff short.
                Some(delay) => tokio::select! {
                    _ = tokio::time::sleep(delay) => false,
                    r = stop.changed() => r.is_err(),
                },
            };
            if stopped {
                break;
            }
        }
        match self.drain().await {
            Ok(n) => tracing::info!(uploaded = n, "audit uploader stopped"),
            Err(e) => {
                tracing::warn!(error = %e, backlog = self.backlog().unwrap_or(0), "audit uploader stopped; the rest is uploaded at the next start")
            }
        }
    }
}

/// Reads up to `max` bytes off the async runtime; returns the file for the
/// next chunk. Empty at end of file.
async fn read_chunk(file: File, path: &Path, max: usize) -> Result<(File, Vec<u8>), UploadError> {
    let (file, res) = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(max.min(1 << 20));
        let res = (&file).take(max as u64).read_to_end(&mut buf).map(|_| buf);
        (file, res)
    })
    .await?;
    Ok((file, res.map_err(io_err(path))?))
}

#[cfg(test)]
mod tests;
