//! Group commit of WAL records. Each caller encodes its row on its own
//! thread, queues the record, and returns once it is written: the caller
//! that finds no write under way becomes the writer and writes everything
//! queued (its row and those of callers that came meanwhile) with one
//! `write`; the others wait for that write instead of making their own.
//! One writer at a time, no thread hop when there is no contention (a
//! lone caller writes its own row, as before), and under load one syscall
//! for many rows: the profile showed the per-row `write(2)` costing about
//! as much as building the row.
//!
//! The guarantee is unchanged: `submit` returns only after the `write`
//! that carries its row returned (or failed, and the row waits in the
//! retry buffer as before), so the row is in the kernel before the
//! response it describes is released.

use std::sync::{Condvar, Mutex, atomic::Ordering};

use super::{Inner, Job, RETRY_LIMIT, lock, schema::AuditRow, wal::Batch};

#[derive(Default)]
struct State {
    /// Records queued and not yet taken by a writer.
    pending: Batch,
    /// Records queued so far: a caller's ticket is the count after its own.
    queued: u64,
    /// Records whose write finished (all tickets up to this one).
    finished: u64,
    /// Whether a writer is at work.
    writing: bool,
}

/// The queue in front of the WAL.
#[derive(Default)]
pub(super) struct Commit {
    state: Mutex<State>,
    done: Condvar,
}

impl Commit {
    /// Records queued so far.
    #[cfg(test)]
    pub(super) fn queued(&self) -> u64 {
        lock(&self.state).queued
    }

    /// Queues `records` and returns once a `write` call carried them;
    /// `write` is run by whichever caller becomes the writer, with every
    /// record queued by then.
    pub(super) fn submit(&self, mut records: Batch, write: impl FnOnce(Batch)) {
        let mut st = lock(&self.state);
        st.queued += records.len() as u64;
        let ticket = st.queued;
        st.pending.append(&mut records);
        let mut write = Some(write);
        while st.finished < ticket {
            if st.writing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This caller's records are queued and nobody writes: it
            // writes them, with whatever else is queued.
            let batch = std::mem::take(&mut st.pending);
            let upto = st.queued;
            st.writing = true;
            drop(st);
            {
                // Marks the write finished even if it panics, or every
                // later caller would wait forever.
                let _finish = Finish { commit: self, upto };
                if let Some(w) = write.take() {
                    w(batch);
                }
            }
            st = lock(&self.state);
        }
    }
}

/// Ends a writer's turn: its records are finished, the waiters wake.
struct Finish<'a> {
    commit: &'a Commit,
    upto: u64,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.commit.state);
        st.finished = self.upto;
        st.writing = false;
        self.commit.done.notify_all();
    }
}

/// Names the signed bundle `row`'s policy set came from, encodes the row
/// on the caller's thread and hands it to group commit: returns once the
/// `write` carrying it returned.
pub(super) fn append(inner: &Inner, mut row: AuditRow) {
    if let Some(o) = (row.policy_version.as_deref()).and_then(|v| inner.origins.get(v)) {
        row.bundle_version = i64::try_from(o.version).ok();
        row.bundle_signer = Some(o.signer);
    }
    let batch = match Batch::of(&row) {
        Ok(b) => b,
        Err(e) => {
            // Cannot happen with fields cut to max_field_bytes; retrying
            // would fail the same way forever.
            inner.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "an audit row could not be encoded: it was lost");
            return;
        }
    };
    inner.commit.submit(batch, |b| write(inner, b));
}

/// Writes queued retries, then `batch`. On failure keeps what was not
/// written for the next attempt (bounded) and marks the audit unhealthy.
pub(super) fn write(inner: &Inner, mut batch: Batch) {
    let mut retry = lock(&inner.retry);
    retry.append(&mut batch);
    if retry.is_empty() {
        return;
    }
    let mut wal = lock(&inner.wal);
    let done = wal.append_batch(&retry);
    inner.writes.fetch_add(1, Ordering::Relaxed);
    for seq in done.closed {
        let _ = lock(&inner.jobs).send(Job::Convert(seq));
    }
    let written = done.failed.as_ref().map_or(retry.len(), |f| f.0);
    inner.rows.fetch_add(written as u64, Ordering::Relaxed);
    let rest = retry.split_off(written);
    *retry = rest;
    let Some((_, e)) = done.failed else {
        if !inner.healthy.swap(true, Ordering::Relaxed) {
            tracing::warn!("audit WAL writable again; traffic resumes");
        }
        return;
    };
    inner.failures.fetch_add(1, Ordering::Relaxed);
    if inner.healthy.swap(false, Ordering::Relaxed) {
        tracing::error!(error = %e, block = inner.block, "audit WAL write failed");
    }
    // A failed write may have opened no segment or left a torn record;
    // start a fresh segment on the next attempt.
    let _ = wal.close();
    if retry.len() > RETRY_LIMIT {
        let lost = retry.len() - RETRY_LIMIT;
        retry.drop_front(lost);
        tracing::error!(rows = lost, "audit retry buffer full: rows were lost");
    }
}

/// fsync `interval`: syncs what was written since the last sync, with
/// the WAL free meanwhile (the request path never waits for the disk).
pub(super) fn group_sync(inner: &Inner) {
    let started = lock(&inner.wal).begin_sync();
    let result = match started {
        Ok(Some(s)) => {
            let done = s.file.sync_data();
            lock(&inner.wal).end_sync(s, done)
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // Rows of the abandoned segment may not survive a machine crash:
        // counted as a write failure, so the audit alert sees it.
        inner.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "audit group commit (fsync) failed");
    }
}
