//! The pending table as the boundary needs it: one waiting request per id
//! (a second with the same id, or a twin of it, is refused, since its
//! answer would be paired with the first), nothing forgotten without a
//! row, and the waiting requests an answer's id matches only loosely.

use super::{MAX_PENDING, Sessions};
use crate::{
    mcp::ids::{self, Loose},
    pipeline::ExchangeEvent,
};

/// Why a client request could not be remembered.
#[derive(Debug)]
pub struct DuplicateId {
    /// The pairing key of the request already waiting.
    pub waiting: String,
    /// The refused request's event, given back.
    pub event: Box<ExchangeEvent>,
}

impl Sessions {
    /// The pairing key of a client request under `key` whose id is `id`
    /// or a twin of it (see [`crate::mcp::ids`]), if one waits.
    pub fn pending_twin(&self, key: &str, id: &str) -> Option<String> {
        let want = ids::loose_key(id);
        let inner = self.lock();
        let s = inner.sessions.get(key)?;
        if s.pending.contains_key(id) {
            return Some(id.to_string());
        }
        s.pending
            .keys()
            .find(|k| ids::twins(&ids::loose_key(k), &want))
            .cloned()
    }

    /// The client requests under `key` an answer with id `id` matches
    /// only as a twin (never exactly): `1.0` or `"1"` for a waiting `1`.
    pub fn loose_matches(&self, key: &str, id: &Loose) -> Vec<String> {
        let inner = self.lock();
        let Some(s) = inner.sessions.get(key) else {
            return Vec::new();
        };
        s.pending
            .keys()
            .filter(|k| ids::twins(&ids::loose_key(k), id))
            .cloned()
            .collect()
    }

    /// Remembers a client request until its answer arrives, unless a
    /// request with the same id (or a twin) already waits under `key`.
    /// Returns the requests pushed out to stay within `MAX_PENDING`, which
    /// the caller records: a forwarded request is never forgotten silently.
    pub fn expect_unique(
        &self,
        key: &str,
        id: String,
        event: ExchangeEvent,
    ) -> Result<Vec<ExchangeEvent>, DuplicateId> {
        let want = ids::loose_key(&id);
        let mut inner = self.lock();
        let s = inner.session(key);
        let twin = s
            .pending
            .keys()
            .find(|k| k.as_str() == id.as_str() || ids::twins(&ids::loose_key(k), &want));
        if let Some(waiting) = twin {
            return Err(DuplicateId {
                waiting: waiting.clone(),
                event: Box::new(event),
            });
        }
        let mut evicted = Vec::new();
        while s.order.len() >= MAX_PENDING {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            s.server_pending.remove(&old);
            if let Some(ev) = s.pending.remove(&old) {
                evicted.push(ev);
            }
            tracing::warn!(session = %key, "too many unanswered requests; gave up on the oldest");
        }
        s.order.push_back(id.clone());
        s.pending.insert(id, event);
        Ok(evicted)
    }
}

impl Sessions {
    /// Whether a client request waits under `key` with exactly the
    /// pairing key `id`.
    pub fn is_pending(&self, key: &str, id: &str) -> bool {
        self.lock()
            .sessions
            .get(key)
            .is_some_and(|s| s.pending.contains_key(id))
    }
}

#[cfg(test)]
mod tests;
