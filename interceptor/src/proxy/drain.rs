//! Counts connections in flight so shutdown can wait for them, bounded,
//! and so the accept loop can hold them under `http.max_connections`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

/// Counts connections in flight, so shutdown can wait for them.
#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
}

/// Held by one connection; dropping it marks the connection done.
pub struct Guard(Arc<Inner>);

impl Drain {
    /// Counts a connection in until the guard drops.
    pub fn enter(&self) -> Guard {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        Guard(self.inner.clone())
    }

    /// Like [`Drain::enter`], unless `limit` connections are already in
    /// flight: then `None` and nothing is counted.
    pub fn try_enter(&self, limit: usize) -> Option<Guard> {
        self.inner
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Guard(self.inner.clone()))
    }

    /// How many connections are in flight.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Waits until no connection is active or `limit` passes; returns how
    /// many were still active.
    pub async fn wait(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            let n = self.active();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active();
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests;
