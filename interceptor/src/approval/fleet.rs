//! Agents sharing one store (DynamoDB): what one agent decides, the
//! others learn by reading the store again every `approvals.dynamodb.poll_ms`.
//!
//! - A call held here resumes when another agent records the deciding
//!   vote: each awaited request's status is read (one consistent read per
//!   held call per poll) and a change wakes the held call.
//! - Grants added or revoked on another agent apply here: the grants in
//!   force are re-read (one index query per poll).
//!
//! With SQLite nobody else writes to the store, and no watcher runs.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use super::{Approvals, Status};

/// Starts the watcher of `a`; it ends soon after `a` is dropped.
pub(super) fn watch(a: &Arc<Approvals>, every: Duration) {
    let weak: Weak<Approvals> = Arc::downgrade(a);
    let started = std::thread::Builder::new()
        .name("approvals-fleet".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(a) = weak.upgrade() else { return };
                a.poll_fleet();
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "approvals: the fleet watcher did not start; decisions of other agents reach held calls only at their deadline");
    }
}

impl Approvals {
    /// One look at what other agents did.
    fn poll_fleet(&self) {
        for (id, seen) in self.awaited() {
            match self.get(&id) {
                Ok(a) if a.status != seen => self.notify(&id, a.status),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(approval = %id, error = %e, "approvals: reading a held call's request failed")
                }
            }
        }
        if let Err(e) = self.refresh_grants() {
            tracing::warn!(error = %e, "approvals: re-reading the grants in force failed");
        }
    }

    /// The requests a call here waits on, with the status it last saw;
    /// requests nobody waits on any more are forgotten.
    fn awaited(&self) -> Vec<(String, Status)> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|_, tx| tx.receiver_count() > 0);
        w.iter()
            .map(|(id, tx)| (id.clone(), *tx.borrow()))
            .collect()
    }
}
