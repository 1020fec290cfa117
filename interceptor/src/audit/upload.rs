//! Ships finished audit files to S3 through a durable local spool.
//!
//! [`enqueue`] is called once a file (Parquet under `events/`, manifest entry
//! under `manifest/`) is complete and durable. It leaves a *mark* in
//! `<audit_dir>/outbox/`: a tiny file holding the relative path, named so
//! that name order is enqueue order, durable when `enqueue` returns (see
//! `spool` for the format).
//!
//! [`Uploader::drain`] takes marks oldest first: PUT to `<prefix>/<rel>`
//! (multipart above [`PART_BYTES`]), HEAD to confirm the size, then delete
//! the local data file (if retention says so), then the mark. It stops at
//! the first failure; [`Uploader::run`] retries with capped backoff.
//!
//! Invariants:
//! 1. A mark goes only once its object is in the bucket with the local
//!    size. A crash repeats at most one upload, and uploads are idempotent.
//! 2. Nothing under `manifest/` (the tamper-evidence chain) is deleted here;
//!    only `events/` files, with [`Retention::DeleteAfterUpload`].
//! 3. A bad mark never wedges the queue: invalid content, or a local file
//!    that is gone and not in the bucket, is logged and dropped. (Data files
//!    go before their mark, so after a crash in between the object is found
//!    and the mark dropped quietly.)
//! 4. Keys use `/`; absolute paths and `.`/`..` components are refused.
//!
//! Requests retry briefly inside `object_store` (`request_retry`), then
//! `run` takes over. An interrupted multipart upload can leave parts behind:
//! use a bucket lifecycle rule (`AbortIncompleteMultipartUpload`).

use std::{
    fs::{self, File},
    io::{self, Read},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
    aws::AmazonS3Builder, path::Path as Key,
};
use tokio::sync::{Notify, watch};

mod spool;
pub use spool::enqueue;

use crate::config::{Retention, S3Config};

/// Files up to this size go in one PUT; larger ones in parts of this size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// How often `run` looks at the outbox when nobody notifies it.
const POLL: Duration = Duration::from_secs(1);
/// First delay after a failed drain; doubles up to `max_retry_backoff_ms`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Parts of one multipart upload in flight at once.
const PART_CONCURRENCY: usize = 4;

/// Why uploading audit files failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The S3 settings are invalid.
    #[error("invalid S3 configuration: {0}")]
    Config(String),
    /// The object store client could not be built.
    #[error("creating the S3 client: {0}")]
    Client(#[source] object_store::Error),
    /// A file in the upload spool could not be read or removed.
    #[error("audit upload spool {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The object store refused an operation.
    #[error("uploading {key}: {source}")]
    Store {
        /// The object key.
        key: String,
        /// The object store's error.
        source: object_store::Error,
    },
    /// The uploaded object's size differs from the local file's.
    #[error("uploaded {key} but the bucket holds {remote} bytes, not {local}")]
    SizeMismatch {
        /// The object key.
        key: String,
        /// The local file's size.
        local: u64,
        /// The uploaded object's size.
        remote: u64,
    },
    /// A task reading a file to upload failed.
    #[error("reading a file to upload: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UploadError + '_ {
    move |source| UploadError::Io {
        path: path.to_path_buf(),
        source,
    }
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

/// `b` set up for `cfg` as the uploader uses it (bucket, region,
/// endpoint, SHA-256 checksums); `doctor` probes the bucket with the same.
pub fn builder(cfg: &S3Config, b: AmazonS3Builder) -> Result<AmazonS3Builder, UploadError> {
    if cfg.bucket.is_empty() {
        return Err(UploadError::Config("bucket is empty".into()));
    }
    // A SHA-256 checksum on every PUT and part: S3 checks the bytes it
    // stores, and buckets with Object Lock refuse uploads without one.
    let mut b = b
        .with_bucket_name(&cfg.bucket)
        .with_region(&cfg.region)
        .with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    if let Some(ep) = &cfg.endpoint {
        let http = ep.starts_with("http://");
        if !http && !ep.starts_with("https://") {
            return Err(UploadError::Config(format!(
                "endpoint {ep:?} is not an http:// or https:// URL"
            )));
        }
        b = b.with_endpoint(ep).with_allow_http(http);
    }
    Ok(b)
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
        let store = builder(cfg, b)?
            .with_retry(request_retry())
            .build()
            .map_err(UploadError::Client)?;
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
        spool::remove_stale_tmps(&outbox);
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

    /// Number of pending uploads.
    pub fn backlog(&self) -> io::Result<usize> {
        spool::marks(&self.outbox).map(|m| m.len())
    }

    /// Uploads everything pending, oldest first; returns how many objects
    /// were uploaded. Stops at the first failure, leaving it and the rest
    /// queued.
    pub async fn drain(&self) -> Result<usize, UploadError> {
        let mut uploaded = 0;
        for name in spool::marks(&self.outbox).map_err(io_err(&self.outbox))? {
            let mark = self.outbox.join(&name);
            let rel = match fs::read_to_string(&mark) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // another drain took it
                Err(e) => return Err(io_err(&mark)(e)),
            };
            match spool::rel_key(Path::new(&rel)) {
                Ok(rel) => uploaded += usize::from(self.upload(&rel).await?),
                Err(e) => {
                    tracing::error!(mark = %mark.display(), error = %e, "invalid audit upload mark dropped")
                }
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

    /// One file: PUT, HEAD to confirm, retention; false if there was nothing
    /// to upload. Errors leave the mark.
    async fn upload(&self, rel: &str) -> Result<bool, UploadError> {
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
                return Ok(false);
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
        Ok(true)
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
    /// `POLL`; after a failure waits the backoff (1 s doubling up to
    /// `max_retry_backoff_ms`), logging each failed attempt once. On stop,
    /// tries one last drain; what it cannot upload stays for the next start.
    pub async fn run(self, notify: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        while !*stop.borrow_and_update() {
            let failed = match self.drain().await {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(
                            uploaded = n,
                            failed_attempts = failures,
                            "audit upload recovered"
                        );
                    }
                    failures = 0;
                    false
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let (retry_in, backlog) = (self.backoff(failures), self.backlog().unwrap_or(0));
                    tracing::warn!(error = %e, attempt = failures, ?retry_in, backlog, "audit upload failed");
                    true
                }
            };
            let wait = if failed { self.backoff(failures) } else { POLL };
            tokio::select! {
                // New files do not cut a backoff short.
                _ = notify.notified(), if !failed => {}
                _ = tokio::time::sleep(wait) => {}
                r = stop.changed() => if r.is_err() { break },
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
