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

#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
}

/// Connections in flight in every [`Drain`] of the process (one in the
/// agent), for the metrics gauge.
static ALL_ACTIVE: AtomicUsize = AtomicUsize::new(0);

pub fn all_active() -> usize {
    ALL_ACTIVE.load(Ordering::Relaxed)
}

/// Held by one connection; dropping it marks the connection done.
pub struct Guard(Arc<Inner>);

impl Guard {
    fn new(inner: Arc<Inner>) -> Self {
        ALL_ACTIVE.fetch_add(1, Ordering::Relaxed);
        Self(inner)
    }
}

impl Drain {
    pub fn enter(&self) -> Guard {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        Guard::new(self.inner.clone())
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
        Some(Guard::new(self.inner.clone()))
    }

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
        ALL_ACTIVE.fetch_sub(1, Ordering::Relaxed);
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests;
