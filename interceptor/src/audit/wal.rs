//! Write-ahead log of audit rows.
//!
//! On disk: `<audit>/wal/<seq:012>.wal`, one segment at a time open for
//! appending. A record is
//!
//! ```text
//!   [len: u32 LE][crc32(payload): u32 LE][payload: postcard AuditRow, len bytes]
//! ```
//!
//! (postcard, a compact binary serde format: rows carry JSON text such as
//! tool results, which JSON framing would escape on the request path and
//! unescape again in the converter; the profile showed both.)
//!
//! Invariants:
//! - A record is written whole by one `write` call (with the records of
//!   concurrent appends: group commit, `audit::commit`) before `append`
//!   returns, and `append` returns before the agent releases the response
//!   it describes: once a client has its answer, the row is at least in the
//!   kernel's page cache, which a crash of the agent (kill -9, OOM) does
//!   not lose.
//! - `fsync` guards against losing the machine: `always` syncs each record
//!   before `append` returns; `interval` syncs dirty segments every N ms
//!   from a background thread (group commit); `none` leaves it to the kernel.
//! - Columns are only ever added at the end of `AuditRow`, as `Option`s: a
//!   record of an older layout decodes with them `None` (`decode_row`).
//! - Reading stops at the first record that is short or fails its CRC: only
//!   the tail of the newest segment can be torn (a crash mid-write), and a
//!   torn record was never acknowledged.
//! - A segment holds rows of one UTC hour; it is closed (fsynced) when the
//!   hour changes, it is `roll_bytes` big, or `roll_seconds` old. Closed
//!   segments become Parquet files and are then deleted; at start every
//!   segment left over is closed and converted the same way.

use std::{
    io,
    path::{Path, PathBuf},
    time::Instant,
};

use super::schema::AuditRow;

mod batch;
mod fs;
mod index;
pub use batch::{Batch, hour_index};
pub use fs::{OsFs, WalFile, WalFs};
pub use index::{BATCH_BYTES, BATCH_ROWS, Indexed, Slot, batch_len, index_segment};

const HEADER: usize = 8;
/// A single row larger than this is refused (it cannot be a real event).
const MAX_RECORD: usize = 64 << 20;

/// The UTC hour (`YYYY-MM-DD`, `HH`) an event time falls in.
pub fn hour_of(event_time_us: i64) -> (String, String) {
    let secs = event_time_us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{hour:02}"))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so the partition never depends on the local time zone.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The path of WAL segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:012}.wal"))
}

/// Segment sequence numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    segments_in(&OsFs, dir)
}

fn segments_in<F: WalFs>(fs: &F, dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for name in fs.list(dir)? {
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".wal").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Encodes one record.
pub fn encode(row: &AuditRow) -> io::Result<Vec<u8>> {
    Ok(Batch::of(row)?.bytes().to_vec())
}

/// Decodes the complete records at the start of `buf`; returns the rows and
/// how many bytes they used. Stops at the first torn or corrupt record.
pub fn decode(buf: &[u8]) -> (Vec<AuditRow>, usize) {
    let mut rows = Vec::new();
    let mut at = 0;
    while buf.len() - at >= HEADER {
        let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        if len > MAX_RECORD || buf.len() - at - HEADER < len {
            break;
        }
        let payload = &buf[at + HEADER..at + HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode_row(payload) {
            Some(row) => rows.push(row),
            None => break,
        }
        at += HEADER + len;
    }
    (rows, at)
}

/// One record's row. A record of an older layout (an agent upgraded with
/// rows still in its WAL) ends where the columns added since would start;
/// postcard writes each `None` as one zero byte, so the record padded with
/// one per added column is the same row with the new columns null (of a
/// layout between, postcard reads the zeros it needs and ignores the rest).
/// The CRC already matched: the payload is what some agent wrote.
fn decode_row(payload: &[u8]) -> Option<AuditRow> {
    postcard::from_bytes(payload).ok().or_else(|| {
        let mut padded = payload.to_vec();
        padded.resize(payload.len() + super::schema::ADDED_COLUMNS, 0);
        postcard::from_bytes(&padded).ok()
    })
}

/// Every complete row of a segment file.
pub fn read_segment(path: &Path) -> io::Result<Vec<AuditRow>> {
    read_segment_in(&OsFs, path)
}

fn read_segment_in<F: WalFs>(fs: &F, path: &Path) -> io::Result<Vec<AuditRow>> {
    let buf = fs.read(path)?;
    let (rows, used) = decode(&buf);
    if used < buf.len() {
        tracing::warn!(segment = %path.display(), torn_bytes = buf.len() - used, "audit WAL segment ends in a torn record (crash mid-write); it was never acknowledged");
    }
    Ok(rows)
}

struct Segment<W> {
    seq: u64,
    file: W,
    bytes: u64,
    hour: i64,
    opened: Instant,
    /// Bytes a sync covered (all of them with fsync `always`).
    synced: u64,
}

/// What [`Wal::append_batch`] did.
#[derive(Debug)]
pub struct Appended {
    /// Segments it closed (to be converted), even when it then failed.
    pub closed: Vec<u64>,
    /// The first error, and how many records (a prefix of the batch) were
    /// written before it: those stand, the rest were not written.
    pub failed: Option<(usize, io::Error)>,
}

/// When a segment is closed.
#[derive(Debug, Clone, Copy)]
pub struct Roll {
    /// Roll to a new file once this many bytes are written.
    pub max_bytes: u64,
    /// Roll to a new file once the current one is this old.
    pub max_age: std::time::Duration,
}

/// The log: one open segment, written through `F` (the real filesystem
/// unless a test says otherwise).
pub struct Wal<F: WalFs = OsFs> {
    fs: F,
    dir: PathBuf,
    current: Option<Segment<F::File>>,
    next_seq: u64,
    roll: Roll,
    sync_each: bool,
}

impl Wal {
    /// Opens the log; returns it and the segments left from an earlier run
    /// (all to be converted, oldest first). `first_seq` is the lowest
    /// sequence number new segments may use (the manifest's next one).
    pub fn open(
        dir: &Path,
        roll: Roll,
        sync_each: bool,
        first_seq: u64,
    ) -> io::Result<(Self, Vec<u64>)> {
        Self::open_in(OsFs, dir, roll, sync_each, first_seq)
    }
}

impl<F: WalFs> Wal<F> {
    /// [`Wal::open`] on the filesystem `fs`.
    pub fn open_in(
        fs: F,
        dir: &Path,
        roll: Roll,
        sync_each: bool,
        first_seq: u64,
    ) -> io::Result<(Self, Vec<u64>)> {
        fs.create_dir(dir)?;
        let leftover = segments_in(&fs, dir)?;
        let next_seq = leftover
            .last()
            .map_or(first_seq, |l| (l + 1).max(first_seq));
        Ok((
            Self {
                fs,
                dir: dir.to_path_buf(),
                current: None,
                next_seq,
                roll,
                sync_each,
            },
            leftover,
        ))
    }

    /// The directory the segments are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one row; returns the sequence number of a segment this
    /// closed (the hour changed, or the segment was full).
    pub fn append(&mut self, row: &AuditRow) -> io::Result<Option<u64>> {
        let batch = Batch::of(row)?;
        let done = self.append_batch(&batch);
        match done.failed {
            None => Ok(done.closed.last().copied()),
            Some((_, e)) => Err(e),
        }
    }

    /// Appends a batch of records, each run of one hour that fits the
    /// segment with one `write` (and one fdatasync with fsync `always`);
    /// stops at the first error (see [`Appended`]).
    pub fn append_batch(&mut self, batch: &Batch) -> Appended {
        let mut closed = Vec::new();
        let failed = self.write_batch(batch, &mut closed).err();
        Appended { closed, failed }
    }

    fn write_batch(
        &mut self,
        batch: &Batch,
        closed: &mut Vec<u64>,
    ) -> Result<(), (usize, io::Error)> {
        let mut i = 0;
        while i < batch.len() {
            let hour = batch.hour(i);
            let first = (batch.end(i) - batch.start(i)) as u64;
            let must_roll = self
                .current
                .as_ref()
                .is_some_and(|s| s.hour != hour || s.bytes + first > self.roll.max_bytes);
            if must_roll && let Some(seq) = self.close().map_err(|e| (i, e))? {
                closed.push(seq);
            }
            let room = self.current.as_ref().map_or(self.roll.max_bytes, |s| {
                self.roll.max_bytes - s.bytes.min(self.roll.max_bytes)
            });
            // The run: records of this hour that fit (at least one, as a
            // single row bigger than a segment gets one of its own).
            let mut j = i + 1;
            while j < batch.len()
                && batch.hour(j) == hour
                && (batch.end(j) - batch.start(i)) as u64 <= room
            {
                j += 1;
            }
            self.write_run(hour, &batch.bytes()[batch.start(i)..batch.end(j - 1)])
                .map_err(|e| (i, e))?;
            i = j;
        }
        Ok(())
    }

    /// Writes one run of records to the open segment (opened if none).
    fn write_run(&mut self, hour: i64, run: &[u8]) -> io::Result<()> {
        if self.current.is_none() {
            self.current = Some(self.create(hour)?);
        }
        let seg = self.current.as_mut().expect("just opened");
        if let Err(e) = seg.file.write_all(run) {
            // The rows before it are sound: sync them as a close would.
            self.abandon(true, true);
            return Err(e);
        }
        if self.sync_each
            && let Err(e) = seg.file.sync_data()
        {
            self.abandon(true, false);
            return Err(e);
        }
        seg.bytes += run.len() as u64;
        if self.sync_each {
            seg.synced = seg.bytes;
        }
        Ok(())
    }

    /// Leaves the open segment after a failed write or fsync; the next
    /// append starts a new one, and the segment is converted at the next
    /// start. `cut`: take the failed record back off first, so a retry of
    /// its row is not read twice and no record follows a torn one. `sync`
    /// (after a failed write only): fsync what is left. Never after a
    /// failed fsync: Linux may have dropped the dirty pages and reports the
    /// next fsync as a success, which would claim rows that are gone.
    fn abandon(&mut self, cut: bool, sync: bool) {
        let Some(mut seg) = self.current.take() else {
            return;
        };
        if cut && let Err(e) = seg.file.truncate(seg.bytes) {
            tracing::error!(segment = seg.seq, error = %e, "cutting a failed audit WAL record off failed; its row may be read twice");
        } else if sync && let Err(e) = seg.file.sync_all() {
            tracing::error!(segment = seg.seq, error = %e, "syncing an audit WAL segment left after a failed write failed");
        }
    }

    fn create(&mut self, hour: i64) -> io::Result<Segment<F::File>> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let file = self.fs.create_new(&segment_path(&self.dir, seq))?;
        self.fs.sync_dir(&self.dir)?;
        Ok(Segment {
            seq,
            file,
            bytes: 0,
            hour,
            opened: Instant::now(),
            synced: 0,
        })
    }

    /// Closes the open segment (fsynced) if it is older than `max_age`.
    pub fn roll_if_old(&mut self) -> io::Result<Option<u64>> {
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.opened.elapsed() >= self.roll.max_age)
        {
            return self.close();
        }
        Ok(None)
    }

    /// Closes the open segment, if any.
    pub fn close(&mut self) -> io::Result<Option<u64>> {
        match self.current.take() {
            Some(mut seg) => {
                seg.file.sync_all()?;
                Ok(Some(seg.seq))
            }
            None => Ok(None),
        }
    }

    /// Group commit: syncs the open segment if anything was appended since
    /// the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        match self.begin_sync()? {
            Some(mut s) => {
                let done = s.file.sync_data();
                self.end_sync(s, done)
            }
            None => Ok(()),
        }
    }

    /// The first half of [`Wal::sync`]: a handle on the open segment to
    /// fdatasync, if anything was appended since the last sync. The sync
    /// itself runs without the WAL, so appends (the request path) never
    /// wait for the disk; rows appended meanwhile are covered by the next.
    pub fn begin_sync(&mut self) -> io::Result<Option<Syncing<F::File>>> {
        match self.current.as_ref() {
            Some(seg) if seg.bytes > seg.synced => Ok(Some(Syncing {
                seq: seg.seq,
                upto: seg.bytes,
                file: seg.file.try_clone()?,
            })),
            _ => Ok(None),
        }
    }

    /// The second half of [`Wal::sync`], with the fdatasync's result.
    pub fn end_sync(&mut self, s: Syncing<F::File>, done: io::Result<()>) -> io::Result<()> {
        // Closed meanwhile: the close synced (or failed) on its own.
        if self.current.as_ref().is_none_or(|c| c.seq != s.seq) {
            return done;
        }
        match done {
            Ok(()) => {
                let seg = self.current.as_mut().expect("checked above");
                seg.synced = seg.synced.max(s.upto);
                Ok(())
            }
            Err(e) => {
                // The rows since the last sync were never promised durable;
                // later ones go to a new segment.
                self.abandon(false, false);
                Err(e)
            }
        }
    }
}

/// A sync of the open segment under way (see [`Wal::begin_sync`]).
#[derive(Debug)]
pub struct Syncing<W> {
    seq: u64,
    upto: u64,
    /// The segment, to fdatasync.
    pub file: W,
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
