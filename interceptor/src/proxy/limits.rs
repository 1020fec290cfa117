//! Budgets for requests in flight to each upstream, per caller.
//!
//! A GET stream (SSE) holds its upstream connection for as long as the
//! client keeps it, so streams and other requests have separate budgets:
//! streams can never take the slots POSTs need. A stream over its budget is
//! refused at once (503); a request waits for a slot (bounded by the
//! response timeout), as a burst of calls should. One caller may hold only
//! its share of either budget (429), so one caller cannot stall others.

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
    /// A GET: a long-lived stream.
    Stream,
    /// Anything else: a request and its response.
    Request,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Stream => "GET streams",
            Kind::Request => "requests",
        }
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Every stream slot of this upstream is held.
    #[error("upstream {addr} has {limit} {} open (http.max_upstream_streams); retry later", Kind::Stream.name())]
    Full { addr: SocketAddr, limit: usize },
    /// This caller holds its share.
    #[error("caller {caller:?} has {limit} {} in flight to upstream {addr} (http.max_upstream_{key}_per_caller); close some first", kind.name())]
    Caller {
        addr: SocketAddr,
        caller: String,
        kind: Kind,
        key: &'static str,
        limit: usize,
    },
}

#[derive(Default)]
struct Upstream {
    streams: usize,
    requests: Option<Arc<Semaphore>>,
    callers: HashMap<(Kind, String), usize>,
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
    _request: Option<OwnedSemaphorePermit>,
}

impl Limits {
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
        let (cap, key) = match kind {
            Kind::Stream => (self.cfg.streams_per_caller, "streams"),
            Kind::Request => (self.cfg.requests_per_caller, "requests"),
        };
        let wait = {
            let mut state = self.lock();
            let up = state.entry(addr).or_default();
            let mine = up
                .callers
                .get(&(kind, caller.to_owned()))
                .copied()
                .unwrap_or(0);
            if mine >= cap {
                return Err(LimitError::Caller {
                    addr,
                    caller: caller.to_owned(),
                    kind,
                    key,
                    limit: cap,
                });
            }
            let wait = match kind {
                Kind::Stream if up.streams >= self.cfg.streams => {
                    return Err(LimitError::Full {
                        addr,
                        limit: self.cfg.streams,
                    });
                }
                Kind::Stream => {
                    up.streams += 1;
                    None
                }
                Kind::Request => Some(
                    up.requests
                        .get_or_insert_with(|| Arc::new(Semaphore::new(self.cfg.requests)))
                        .clone(),
                ),
            };
            *up.callers.entry((kind, caller.to_owned())).or_default() += 1;
            wait
        };
        // Counted before waiting, so queued requests use the caller's share.
        let mut permit = Permit {
            limits: self.clone(),
            addr,
            kind,
            caller: caller.to_owned(),
            _request: None,
        };
        if let Some(sem) = wait {
            // Never closed; an error would mean no limit to wait for.
            permit._request = sem.acquire_owned().await.ok();
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
            }
        }
    }
}

#[cfg(test)]
mod tests;
