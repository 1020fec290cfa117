//! Sessions and request/response pairing, shared by every connection of
//! the agent: a legacy (2024-11-05) response arrives on the GET stream, not
//! on the POST that carried its request, and a server request's reply comes
//! back on a later POST.
//!
//! Keys: the `Mcp-Session-Id` (Streamable HTTP), the legacy session id from
//! the `endpoint` event, or a per-POST key for messages outside a session.
//! Bounded: at most `MAX_PENDING` unanswered requests per key and
//! `MAX_SESSIONS` sessions; the oldest go first, logged.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
};

use crate::pipeline::{ExchangeEvent, Transport};

mod pending;
pub use pending::DuplicateId;

const MAX_PENDING: usize = 4096;
const MAX_SESSIONS: usize = 65_536;

#[derive(Debug, Default, Clone)]
pub struct SessionInfo {
    pub transport: Option<Transport>,
    pub protocol_version: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    /// The principal that opened the session (`Caller::principal`).
    pub owner: Option<String>,
}

#[derive(Default)]
struct Session {
    info: SessionInfo,
    /// Client requests awaiting the server, by JSON-RPC id key.
    pending: HashMap<String, ExchangeEvent>,
    /// Server requests awaiting the client.
    server_pending: HashMap<String, ExchangeEvent>,
    order: VecDeque<String>,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    age: VecDeque<String>,
    /// Legacy message endpoints learned from `endpoint` events:
    /// path -> set of full targets (path?query) -> session key.
    legacy_paths: HashSet<String>,
    legacy_targets: HashMap<String, String>,
}

impl Inner {
    fn session(&mut self, key: &str) -> &mut Session {
        if !self.sessions.contains_key(key) {
            while self.sessions.len() >= MAX_SESSIONS {
                let Some(old) = self.age.pop_front() else {
                    break;
                };
                if self.sessions.remove(&old).is_some() {
                    tracing::warn!(session = %old, "session table full; forgot the oldest session");
                }
            }
            self.age.push_back(key.to_string());
        }
        self.sessions.entry(key.to_string()).or_default()
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn info(&self, key: &str) -> SessionInfo {
        self.lock()
            .sessions
            .get(key)
            .map(|s| s.info.clone())
            .unwrap_or_default()
    }

    pub fn update_info(&self, key: &str, f: impl FnOnce(&mut SessionInfo)) {
        f(&mut self.lock().session(key).info);
    }

    /// Binds `key` to `principal` if it has no owner yet; otherwise
    /// returns the owner when it is someone else. A session the agent never
    /// saw open (e.g. before a restart) is bound to its first caller.
    pub fn claim(&self, key: &str, principal: &str) -> Result<(), String> {
        let mut inner = self.lock();
        let info = &mut inner.session(key).info;
        match &info.owner {
            Some(o) if o != principal => Err(o.clone()),
            Some(_) => Ok(()),
            None => {
                info.owner = Some(principal.to_string());
                Ok(())
            }
        }
    }

    /// Remembers a client request until its response arrives.
    pub fn expect(&self, key: &str, id: String, event: ExchangeEvent, from_server: bool) {
        let mut inner = self.lock();
        let s = inner.session(key);
        while s.order.len() >= MAX_PENDING {
            if let Some(old) = s.order.pop_front() {
                s.pending.remove(&old);
                s.server_pending.remove(&old);
                tracing::warn!(session = %key, "too many unanswered requests; forgot the oldest");
            }
        }
        s.order.push_back(id.clone());
        if from_server {
            s.server_pending.insert(id, event);
        } else {
            s.pending.insert(id, event);
        }
    }

    /// Takes the request a response answers, if it is known.
    pub fn answer(&self, key: &str, id: &str, from_server: bool) -> Option<ExchangeEvent> {
        let mut inner = self.lock();
        let s = inner.sessions.get_mut(key)?;
        let found = if from_server {
            s.pending.remove(id)
        } else {
            s.server_pending.remove(id)
        };
        if found.is_some() {
            s.order.retain(|o| o != id);
        }
        found
    }

    /// The method of the pending client request `id` answers, and the
    /// masking profile its policy decision chose, if known.
    pub fn pending_info(&self, key: &str, id: &str) -> (Option<String>, Option<String>) {
        let inner = self.lock();
        match inner.sessions.get(key).and_then(|s| s.pending.get(id)) {
            Some(e) => (
                e.method.clone(),
                e.decision.as_ref().and_then(|d| d.mask.clone()),
            ),
            None => (None, None),
        }
    }

    /// Whether a server request under `key` (sampling, elicitation) still
    /// waits for the client, which may take a human's time.
    pub fn server_waiting(&self, key: &str) -> bool {
        self.lock()
            .sessions
            .get(key)
            .is_some_and(|s| !s.server_pending.is_empty())
    }

    /// Takes every unanswered client request under `key` with one of `ids`.
    pub fn take_unanswered(&self, key: &str, ids: &[String]) -> Vec<ExchangeEvent> {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(key) else {
            return Vec::new();
        };
        let out: Vec<_> = ids.iter().filter_map(|id| s.pending.remove(id)).collect();
        s.order.retain(|o| !ids.contains(o));
        out
    }

    /// Moves what a per-POST key holds under the session id the server
    /// assigned in its `initialize` answer.
    pub fn rename(&self, from: &str, to: &str) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.remove(from) {
            inner.age.retain(|k| k != from);
            let dst = inner.session(to);
            dst.info = s.info;
            dst.pending.extend(s.pending);
            dst.server_pending.extend(s.server_pending);
            dst.order.extend(s.order);
        }
    }

    /// Forgets a session (DELETE, or a per-POST key when its stream ends);
    /// returns its unanswered client requests.
    pub fn close(&self, key: &str) -> Vec<ExchangeEvent> {
        let mut inner = self.lock();
        inner.age.retain(|k| k != key);
        inner.legacy_targets.retain(|_, v| v != key);
        inner
            .sessions
            .remove(key)
            .map(|s| s.pending.into_values().collect())
            .unwrap_or_default()
    }

    /// A legacy server announced `target` (path?query) as the message
    /// endpoint of session `key`.
    pub fn learn_legacy_endpoint(&self, target: &str, key: &str) {
        let mut inner = self.lock();
        let path = target.split('?').next().unwrap_or(target).to_string();
        inner.legacy_paths.insert(path);
        inner
            .legacy_targets
            .insert(target.to_string(), key.to_string());
    }

    pub fn is_legacy_path(&self, path: &str) -> bool {
        self.lock().legacy_paths.contains(path)
    }

    /// The legacy session a POST to `target` (path?query) belongs to.
    pub fn legacy_session(&self, target: &str) -> Option<String> {
        self.lock().legacy_targets.get(target).cloned()
    }
}

#[cfg(test)]
mod tests;
