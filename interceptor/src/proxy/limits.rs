//! Budgets for requests in flight to each upstream, per caller.
//!
//! A GET stream (SSE) holds its upstream connection for as long as the
//! client keeps it, so streams and other requests have separate budgets:
//! streams can never take the slots POSTs need. A stream over its budget,
//! or over its caller's share, is refused at once (503, 429). A request
//! waits for a slot (bounded by the response timeout), as a burst of calls
//! should, but first for one of its caller's share, queued behind the
//! caller's own requests only: one caller's burst or slow calls cannot
//! take every slot and stall the others.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::UpstreamLimits;

/// Who a request counts against, set by the handler as a request
/// extension: the identified principal, else the client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerKey(pub String);

/// The two budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A long-lived stream: a GET, or a request marked
    /// [`super::upstream::LongLived`].
    Stream,
    /// Anything else: a request and its response.
    Request,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Stream => "long-lived streams",
            Kind::Request => "requests",
        }
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Every stream slot of this upstream is held.
    #[error("upstream {addr} has {limit} {} open (http.max_upstream_streams); retry later", Kind::Stream.name())]
    Full {
        /// The upstream address.
        addr: SocketAddr,
        /// Its stream limit.
        limit: usize,
    },
    /// This caller holds its share of the stream slots.
    #[error("caller {caller:?} has {limit} {} open to upstream {addr} (http.max_upstream_streams_per_caller); close some first", Kind::Stream.name())]
    Caller {
        /// The upstream address.
        addr: SocketAddr,
        /// The caller over its share.
        caller: String,
        /// The caller's connection limit.
        limit: usize,
    },
}

#[derive(Default)]
struct Upstream {
    streams: usize,
    requests: Option<Arc<Semaphore>>,
    /// Held and waiting, per kind and caller.
    callers: HashMap<(Kind, String), usize>,
    /// Each caller's share of the request slots, while it has any.
    shares: HashMap<String, Arc<Semaphore>>,
}

/// The budgets of every upstream of one config.
#[derive(Clone)]
pub struct Limits {
    cfg: UpstreamLimits,
    state: Arc<Mutex<HashMap<SocketAddr, Upstream>>>,
}

/// A slot; given back when dropped.
pub struct Permit {
    limits: Limits,
    addr: SocketAddr,
    kind: Kind,
    caller: String,
    _request: Vec<OwnedSemaphorePermit>,
}

impl Limits {
    /// Limits upstream connections as configured.
    pub fn new(cfg: UpstreamLimits) -> Self {
        Self {
            cfg,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Upstream>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `caller`'s request of `kind` to `addr`. A request
    /// may wait for one (the caller bounds the wait); a stream never waits.
    pub async fn acquire(
        &self,
        addr: SocketAddr,
        kind: Kind,
        caller: &str,
    ) -> Result<Permit, LimitError> {
        let waits = {
            let mut state = self.lock();
            let up = state.entry(addr).or_default();
            let mine = up
                .callers
                .get(&(kind, caller.to_owned()))
                .copied()
                .unwrap_or(0);
            let waits = match kind {
                Kind::Stream if mine >= self.cfg.streams_per_caller => {
                    return Err(LimitError::Caller {
                        addr,
                        caller: caller.to_owned(),
                        limit: self.cfg.streams_per_caller,
                    });
                }
                Kind::Stream if up.streams >= self.cfg.streams => {
                    return Err(LimitError::Full {
                        addr,
                        limit: self.cfg.streams,
                    });
                }
                Kind::Stream => {
                    up.streams += 1;
                    Vec::new()
                }
                Kind::Request => {
                    let per = self.cfg.requests_per_caller;
                    let share = up.shares.entry(caller.to_owned());
                    let share = share.or_insert_with(|| Arc::new(Semaphore::new(per)));
                    let all = up
                        .requests
                        .get_or_insert_with(|| Arc::new(Semaphore::new(self.cfg.requests)));
                    // The caller's share first: queued behind its own.
                    vec![share.clone(), all.clone()]
                }
            };
            *up.callers.entry((kind, caller.to_owned())).or_default() += 1;
            waits
        };
        // Counted before waiting: a cancelled wait gives everything back.
        let mut permit = Permit {
            limits: self.clone(),
            addr,
            kind,
            caller: caller.to_owned(),
            _request: Vec::new(),
        };
        for sem in waits {
            // Never closed; an error would mean no limit to wait for.
            if let Ok(p) = sem.acquire_owned().await {
                permit._request.push(p);
            }
        }
        Ok(permit)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        let Some(up) = state.get_mut(&self.addr) else {
            return;
        };
        if self.kind == Kind::Stream {
            up.streams = up.streams.saturating_sub(1);
        }
        let key = (self.kind, std::mem::take(&mut self.caller));
        if let Some(n) = up.callers.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                up.callers.remove(&key);
                if self.kind == Kind::Request {
                    // Nobody of this caller holds or waits for a slot.
                    up.shares.remove(&key.1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
