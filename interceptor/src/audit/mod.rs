//! The audit trail: every event as a row in tamper-evident, Hive-partitioned
//! Parquet, with nothing lost when the agent crashes.
//!
//! ```text
//!  record(event) ─▶ encode ─▶ group write: one write(2) for the rows
//!                    │ queued meanwhile, before any of their responses is
//!                    │ released; background: fsync every interval, roll
//!                    ▼ closed segment
//!  converter ─▶ Parquet, streamed in row batches (tmp, fsync, rename)
//!            ─▶ signed manifest entry
//!            ─▶ outbox mark (S3 upload) ─▶ segment deleted
//! ```
//!
//! Crash safety: a segment is deleted only after its Parquet file and its
//! manifest entry are durable; a segment already in the manifest is just
//! deleted on recovery, so a crash anywhere converts each row exactly once.
#![forbid(unsafe_code)]

pub mod chain;
mod commit;
pub mod fsutil;
pub mod parquet;
pub mod replay;
pub mod row;
pub mod schema;
pub mod upload;
pub mod wal;

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    config::{Audit as AuditConfig, Fsync, OnAuditFailure},
    conn::ConnInfo,
    pipeline::{
        ExchangeEvent, LifecycleEvent, LifecycleSink, MessageCtx, Phase, Verdict, event::now_us,
    },
};
use chain::{Chain, Sealed};
use commit::{append, group_sync, write};
use row::Stamp;
use schema::AuditRow;
use wal::{Batch, Roll, Wal};

/// Rows kept in memory for a retry while the WAL cannot be written.
const RETRY_LIMIT: usize = 100_000;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit directory could not be created or read.
    #[error("audit directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The signing key could not be read or created.
    #[error("audit signing key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// Recovering WAL segments left by an earlier run failed.
    #[error("recovering the audit WAL: {0}")]
    Recover(io::Error),
}

enum Job {
    Convert(u64),
    Heartbeat,
    Stop,
}

struct Inner {
    stamp: Stamp,
    dir: PathBuf,
    block: bool,
    wal: Mutex<Wal>,
    commit: commit::Commit,
    /// Records a failed write left, written before any new one.
    retry: Mutex<Batch>,
    healthy: AtomicBool,
    stopping: AtomicBool,
    rows: AtomicU64,
    failures: AtomicU64,
    /// WAL writes (batches): fewer than rows when group commit batches.
    writes: AtomicU64,
    jobs: Mutex<mpsc::Sender<Job>>,
    upload: Option<Arc<tokio::sync::Notify>>,
    /// Which signed bundle each policy set came from (`[policy] source`).
    origins: crate::policy::bundle::Origins,
}

/// The audit writer; cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// The one sink of events made outside an exchange (approvals, grants,
/// tool pins, policy loads): their emitters hold a `pipeline::Events`
/// handle, never the audit itself.
impl LifecycleSink for Audit {
    fn lifecycle(&self, event: LifecycleEvent) {
        self.append(self.stamp().from_lifecycle(event));
    }
}

impl Audit {
    /// Opens the trail: recovers WAL leftovers into Parquet (before any
    /// traffic), then starts the converter and the group-commit thread.
    /// `upload`: notified after each new file, when S3 is configured.
    pub fn start(
        cfg: &AuditConfig,
        upload: Option<Arc<tokio::sync::Notify>>,
    ) -> Result<Self, AuditError> {
        let dir = cfg.dir.clone();
        fsutil::create_private_dir(&dir).map_err(dir_err(&dir))?;
        let host = cfg.host_name();
        let mut chain = open_chain(cfg, &host)?;
        let first_seq = chain.segments.last().map_or(0, |s| s + 1);
        let (wal, leftover) = open_wal(cfg, first_seq)?;
        let stamp = Stamp {
            host: host.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            max_field_bytes: cfg.max_field_bytes,
        };
        let s3 = cfg.s3.is_some();
        if s3 {
            publish_key(&dir, &host)?;
        }
        for seq in leftover {
            convert(&dir, &host, &mut chain, seq, s3).map_err(AuditError::Recover)?;
            tracing::info!(segment = seq, "recovered audit WAL segment");
        }
        tracing::info!(dir = %dir.display(), host = %host, public_key = %chain.public_key_hex(), "audit trail open");

        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            stamp,
            dir,
            block: cfg.on_audit_failure == OnAuditFailure::Block,
            wal: Mutex::new(wal),
            commit: commit::Commit::default(),
            retry: Mutex::new(Batch::default()),
            healthy: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            rows: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            jobs: Mutex::new(tx),
            upload,
            origins: Default::default(),
        });
        let threads = spawn_threads(cfg, &inner, chain, rx, s3)?;
        Ok(Self {
            inner,
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// Where the agent records which bundle each policy set came from;
    /// rows decided by such a set name the bundle's version and signer.
    pub fn bundle_origins(&self) -> crate::policy::bundle::Origins {
        self.inner.origins.clone()
    }

    /// The host and version stamped on every row.
    pub fn stamp(&self) -> &Stamp {
        &self.inner.stamp
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether rows are being written (false while the WAL fails).
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Rows acknowledged so far, and write failures.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.inner.rows.load(Ordering::Relaxed),
            self.inner.failures.load(Ordering::Relaxed),
        )
    }

    /// Appends one row to the WAL (returns once the kernel has it).
    pub fn append(&self, row: AuditRow) {
        append(&self.inner, row);
    }

    /// Closes the open segment, converts everything, stops the threads.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let closed = lock(&self.inner.wal).close();
        let jobs = lock(&self.inner.jobs);
        match closed {
            Ok(Some(seq)) => {
                let _ = jobs.send(Job::Convert(seq));
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "closing the audit WAL failed"),
        }
        let _ = jobs.send(Job::Stop);
        drop(jobs);
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }
}

/// The error of creating or reading `path` in the audit directory.
fn dir_err(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Dir {
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest chain in `cfg.dir`, signed with the configured key
/// (created on first start).
fn open_chain(cfg: &AuditConfig, host: &str) -> Result<Chain, AuditError> {
    let key = chain::load_or_create_key(&cfg.signing_key).map_err(|source| AuditError::Key {
        path: cfg.signing_key.clone(),
        source,
    })?;
    Chain::open(&cfg.dir, host, key).map_err(dir_err(&cfg.dir))
}

/// The WAL, numbering new segments from `first_seq`, and the segments an
/// earlier run left unconverted.
fn open_wal(cfg: &AuditConfig, first_seq: u64) -> Result<(Wal, Vec<u64>), AuditError> {
    let roll = Roll {
        max_bytes: cfg.roll_bytes,
        max_age: Duration::from_secs(cfg.roll_seconds),
    };
    let dir = cfg.dir.join("wal");
    Wal::open(&dir, roll, cfg.fsync == Fsync::Always, first_seq).map_err(dir_err(&dir))
}

/// Queues the public key for the bucket: its copy carries the key beside
/// the entries, as the local directory does (auditors still pin it:
/// --public-key).
fn publish_key(dir: &Path, host: &str) -> Result<(), AuditError> {
    let key = Path::new("manifest")
        .join(host)
        .join(chain::PUBLIC_KEY_FILE);
    upload::enqueue(dir, &key).map_err(dir_err(&dir.join(&key)))
}

/// Starts the converter (closed segments to Parquet and `chain`) and the
/// group-commit ticker.
fn spawn_threads(
    cfg: &AuditConfig,
    inner: &Arc<Inner>,
    chain: Chain,
    rx: mpsc::Receiver<Job>,
    s3: bool,
) -> Result<Vec<JoinHandle<()>>, AuditError> {
    let conv_inner = inner.clone();
    let converter = std::thread::Builder::new()
        .name("audit-convert".into())
        .spawn(move || converter(conv_inner, chain, rx, s3))
        .map_err(dir_err(&cfg.dir))?;
    let tick_inner = inner.clone();
    let interval = Duration::from_millis(cfg.fsync_interval_ms);
    let (sync, roll_period) = (
        cfg.fsync == Fsync::Interval,
        Duration::from_secs(cfg.roll_seconds),
    );
    let ticker = std::thread::Builder::new()
        .name("audit-commit".into())
        .spawn(move || ticker(tick_inner, interval, sync, roll_period))
        .map_err(dir_err(&cfg.dir))?;
    Ok(vec![converter, ticker])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ticker(inner: Arc<Inner>, interval: Duration, sync: bool, roll_period: Duration) {
    let mut last_entry = Instant::now();
    while !inner.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(interval.min(Duration::from_millis(250)));
        if !inner.healthy.load(Ordering::Relaxed) {
            write(&inner, Batch::default());
        }
        if sync {
            group_sync(&inner);
        }
        let mut wal = lock(&inner.wal);
        match wal.roll_if_old() {
            Ok(Some(seq)) => {
                let _ = lock(&inner.jobs).send(Job::Convert(seq));
                last_entry = Instant::now();
            }
            Ok(None) => {
                if last_entry.elapsed() >= roll_period {
                    let _ = lock(&inner.jobs).send(Job::Heartbeat);
                    last_entry = Instant::now();
                }
            }
            Err(e) => tracing::error!(error = %e, "closing an audit WAL segment failed"),
        }
    }
}

fn converter(inner: Arc<Inner>, mut chain: Chain, rx: mpsc::Receiver<Job>, s3: bool) {
    // Segments whose conversion failed (e.g. a full disk): retried with
    // every later job, and at the next start if still there.
    let mut failed = std::collections::BTreeSet::new();
    for job in rx {
        let mut todo: Vec<u64> = std::mem::take(&mut failed).into_iter().collect();
        let beat = match job {
            Job::Convert(seq) => {
                todo.push(seq);
                false
            }
            Job::Heartbeat => true,
            Job::Stop => {
                for seq in todo {
                    if let Err(e) = convert(&inner.dir, &inner.stamp.host, &mut chain, seq, s3) {
                        tracing::error!(segment = seq, error = %e, "audit conversion failed at stop; the WAL keeps the rows for the next start");
                    }
                }
                break;
            }
        };
        let mut wrote = false;
        for seq in todo {
            match convert(&inner.dir, &inner.stamp.host, &mut chain, seq, s3) {
                Ok(()) => wrote = true,
                Err(e) => {
                    tracing::error!(segment = seq, error = %e, "audit conversion failed; the WAL keeps the rows, will retry");
                    failed.insert(seq);
                }
            }
        }
        if beat && !wrote {
            match heartbeat(&inner.dir, &mut chain, s3) {
                Ok(()) => wrote = true,
                Err(e) => tracing::error!(error = %e, "audit heartbeat entry failed"),
            }
        }
        if wrote && let Some(n) = &inner.upload {
            n.notify_one();
        }
    }
}

fn heartbeat(dir: &Path, chain: &mut Chain, s3: bool) -> io::Result<()> {
    let rel = chain.append(Sealed::default(), now_us())?;
    if s3 {
        upload::enqueue(dir, &rel)?;
    }
    Ok(())
}

/// One closed segment to Parquet + manifest, then deleted. Idempotent.
fn convert(dir: &Path, host: &str, chain: &mut Chain, seq: u64, s3: bool) -> io::Result<()> {
    let path = wal::segment_path(&dir.join("wal"), seq);
    if chain.segments.contains(&seq) {
        return remove(&path);
    }
    let seg = wal::index_segment(&path)?;
    // One file per UTC hour (a segment holds one hour unless the clock jumped).
    let parts = seg
        .slots
        .chunk_by(|a, b| wal::hour_index(a.time) == wal::hour_index(b.time));
    let mut files = 0;
    for (i, part) in parts.enumerate() {
        let (first, last) = (part[0].time, part[part.len() - 1].time);
        let rel = parquet::relative_path(host, seq, i, first);
        let mut rest = part;
        let (sha, bytes) = parquet::write_streamed(dir, &rel, host, seq, || {
            if rest.is_empty() {
                return Ok(None);
            }
            let (batch, more) = rest.split_at(wal::batch_len(rest));
            rest = more;
            seg.rows(batch).map(Some)
        })?;
        let rel_s = rel.to_string_lossy().into_owned();
        let sealed = Sealed {
            segment: Some(seq),
            file: Some(rel_s),
            sha256: Some(sha),
            rows: part.len() as i64,
            first_event_us: Some(first),
            last_event_us: Some(last),
        };
        let entry_rel = chain.append(sealed, now_us())?;
        if s3 {
            upload::enqueue(dir, &rel)?;
            upload::enqueue(dir, &entry_rel)?;
        }
        files += 1;
        tracing::debug!(file = %rel.display(), rows = part.len(), bytes, "audit file closed");
    }
    if files == 0 {
        // Nothing in it (an empty or wholly torn segment): still record that
        // the segment existed, so sequence numbers stay explained. Shipped
        // like every entry: a copy without it has a hole in its chain.
        let only_seq = Sealed {
            segment: Some(seq),
            ..Sealed::default()
        };
        let entry_rel = chain.append(only_seq, now_us())?;
        if s3 {
            upload::enqueue(dir, &entry_rel)?;
        }
    }
    remove(&path)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), fsutil::sync_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The pipeline phase: refuses requests while the audit is down (block
/// mode), and writes every event and connection as a row.
pub struct AuditPhase(pub Audit);

impl Phase for AuditPhase {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn on_connect(&self, conn: &ConnInfo) {
        let mut r = self
            .0
            .stamp()
            .lifecycle("connection_open", "connection accepted");
        conn_fields(&mut r, conn);
        self.0.append(r);
    }

    fn on_close(&self, conn: &ConnInfo, requests: u64) {
        let mut r = self
            .0
            .stamp()
            .lifecycle("connection_close", format!("{requests} request(s)"));
        conn_fields(&mut r, conn);
        self.0.append(r);
    }

    fn on_request(&self, _: &MessageCtx<'_>, _: &crate::jsonrpc::Message) -> Verdict {
        if self.0.inner.block && !self.0.healthy() {
            return Verdict::Deny(crate::error::Refusal::new(
                crate::error::Reason::AuditUnavailable,
                "the audit trail cannot be written; requests are refused until it can (on_audit_failure = block)",
            ));
        }
        Verdict::Continue
    }

    fn record(&self, event: &ExchangeEvent) {
        // The pipeline masked the event before `record` (prepare_record),
        // names and ids included; rows made outside it come masked through
        // `pipeline::Events`.
        append(&self.0.inner, self.0.stamp().from_event(event));
    }

    fn on_forward(&self, event: &ExchangeEvent) {
        // Written before the request goes upstream, like every row before
        // its release: after a crash (kill -9) it is the evidence that the
        // server got the request. The answer's row follows as usual.
        let mut r = self.0.stamp().from_event(event);
        r.kind = "forwarded".into();
        append(&self.0.inner, r);
    }
}

fn conn_fields(r: &mut AuditRow, c: &ConnInfo) {
    r.src_addr = Some(c.client.ip().to_string());
    r.src_port = Some(i32::from(c.client.port()));
    r.dst_addr = Some(c.orig_dst.ip().to_string());
    r.dst_port = Some(i32::from(c.orig_dst.port()));
    r.conn_id = i64::try_from(c.id).ok();
    row::set_tls(r, c.tls.as_ref().map(|t| &t.negotiated));
    row::set_process(r, c.process.as_deref(), None);
}

#[cfg(test)]
mod tests;
