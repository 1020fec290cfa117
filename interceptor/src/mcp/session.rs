//! Sessions and request/response pairing, shared by every connection of
//! the agent: a legacy (2024-11-05) response arrives on the GET stream, not
//! on the POST that carried its request, and a server request's reply comes
//! back on a later POST.
//!
//! Keys: the `Mcp-Session-Id` (Streamable HTTP), the legacy session id from
//! the `endpoint` event, or a per-POST key for messages outside a session.
//!
//! A session exists only once the server opened it: its `Mcp-Session-Id`
//! on the answer to a POST outside a session, or a legacy `endpoint`
//! event. A request naming any other session is refused and makes no
//! entry, so no client can fill the table. Bounded: `MAX_PENDING`
//! unanswered requests per key; `MAX_PER_CALLER` sessions per owner (a
//! caller's new session pushes out that caller's least recently used
//! one, never someone else's); sessions unused for `IDLE` are forgotten;
//! and at `MAX_SESSIONS` a new session is refused, nothing evicted.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::pipeline::{ExchangeEvent, Transport};

mod legacy;
mod pending;

pub use legacy::LegacyError;
pub use pending::DuplicateId;

const MAX_PENDING: usize = 4096;
const MAX_SESSIONS: usize = 65_536;
/// Sessions one owner may hold open at once.
pub const MAX_PER_CALLER: usize = 1024;
/// A session no request or server message used for this long is gone.
pub const IDLE: Duration = Duration::from_secs(3600);
/// The owner of an entry made for a session that ended under a request
/// in flight: no caller's principal, so no one can claim it.
const ORPHAN: &str = "\0orphan";

/// What is known about an MCP session.
#[derive(Debug, Default, Clone)]
pub struct SessionInfo {
    /// The transport the session uses.
    pub transport: Option<Transport>,
    /// The protocol version negotiated.
    pub protocol_version: Option<String>,
    /// The client's name from `initialize`.
    pub client_name: Option<String>,
    /// The client's version from `initialize`.
    pub client_version: Option<String>,
    /// The principal that opened the session (`Caller::principal`).
    pub owner: Option<String>,
}

struct Session {
    info: SessionInfo,
    /// Client requests awaiting the server, by JSON-RPC id key.
    pending: HashMap<String, ExchangeEvent>,
    /// Server requests awaiting the client.
    server_pending: HashMap<String, ExchangeEvent>,
    order: VecDeque<String>,
    last_used: Instant,
    /// A legacy session lives as long as its GET stream (closed with it),
    /// not by idle time.
    stream_bound: bool,
}

impl Session {
    fn new(owner: Option<String>) -> Self {
        Self {
            info: SessionInfo {
                owner,
                ..Default::default()
            },
            pending: HashMap::new(),
            server_pending: HashMap::new(),
            order: VecDeque::new(),
            last_used: Instant::now(),
            stream_bound: false,
        }
    }
}

/// Why a request may not use a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The server never opened it here, or it ended.
    Unknown,
    /// Another identity opened it (its principal).
    Owner(String),
}

/// Why a session the server opened is not bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The server named a session that is bound to another identity.
    #[error("the server named a session that belongs to another identity")]
    Taken,
    /// `MAX_SESSIONS` sessions are open.
    #[error("the agent's session table is full ({0} sessions)")]
    Full(usize),
}

/// The MCP sessions the proxy has seen.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
    /// MRTR first calls awaiting their retries (across POSTs and sessions).
    pub rounds: super::rounds::Rounds,
    /// The task handles servers handed out (2026-07-28 tasks extension):
    /// shared like sessions, they outlive any one request.
    tasks: super::tasks::Tasks,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    legacy: legacy::Endpoints,
}

/// Keys the agent makes (per-POST keys) start with NUL, which no header
/// value can hold: only they are made on first use.
fn internal(key: &str) -> bool {
    key.starts_with('\0')
}

impl Inner {
    /// The entry under `key`: made on first use for an agent-made key;
    /// for a session that ended meanwhile, an unclaimable orphan (it keeps
    /// pairing what is in flight and expires by idle time).
    fn session(&mut self, key: &str) -> &mut Session {
        let s = self.sessions.entry(key.to_string()).or_insert_with(|| {
            if internal(key) {
                Session::new(None)
            } else {
                tracing::warn!(session = %key, "session ended under a request in flight");
                Session::new(Some(ORPHAN.into()))
            }
        });
        s.last_used = Instant::now();
        s
    }

    /// Removes sessions idle since before `now - IDLE`; their unanswered
    /// requests are returned.
    fn expire(&mut self, now: Instant) -> Vec<ExchangeEvent> {
        let old: Vec<String> = self
            .sessions
            .iter()
            .filter(|(k, s)| {
                !internal(k) && !s.stream_bound && now.saturating_duration_since(s.last_used) > IDLE
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut left = Vec::new();
        for k in old {
            tracing::info!(session = %k, "session idle for {IDLE:?}: forgotten");
            left.extend(self.remove(&k));
        }
        left
    }

    /// The entry under `key`, made if missing (a session being opened).
    fn session_or_new(&mut self, key: &str) -> &mut Session {
        let s = self
            .sessions
            .entry(key.to_string())
            .or_insert_with(|| Session::new(None));
        s.last_used = Instant::now();
        s
    }

    fn remove(&mut self, key: &str) -> Vec<ExchangeEvent> {
        self.legacy.forget(key);
        self.sessions
            .remove(key)
            .map(|s| s.pending.into_values().collect())
            .unwrap_or_default()
    }

    /// At `MAX_PER_CALLER` sessions of `owner`, forgets its least recently
    /// used one.
    fn make_room_for(&mut self, owner: &str) -> Vec<ExchangeEvent> {
        let mine: Vec<(&String, Instant)> = self
            .sessions
            .iter()
            .filter(|(k, s)| {
                !internal(k) && !s.stream_bound && s.info.owner.as_deref() == Some(owner)
            })
            .map(|(k, s)| (k, s.last_used))
            .collect();
        if mine.len() < MAX_PER_CALLER {
            return Vec::new();
        }
        let Some(oldest) = mine
            .iter()
            .min_by_key(|(_, t)| *t)
            .map(|(k, _)| (*k).clone())
        else {
            return Vec::new();
        };
        tracing::warn!(session = %oldest, caller = %owner, "caller holds {MAX_PER_CALLER} sessions: forgot its least recently used");
        self.remove(&oldest)
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task handles servers handed out.
    pub fn tasks(&self) -> &super::tasks::Tasks {
        &self.tasks
    }

    /// What is known of session `key`. Read for every message in it, so
    /// it also marks the session used: a quiet stream that still carries
    /// server messages keeps its session.
    pub fn info(&self, key: &str) -> SessionInfo {
        let mut inner = self.lock();
        match inner.sessions.get_mut(key) {
            Some(s) => {
                s.last_used = Instant::now();
                s.info.clone()
            }
            None => SessionInfo::default(),
        }
    }

    /// Updates the info of an existing session (or agent-made key).
    pub fn update_info(&self, key: &str, f: impl FnOnce(&mut SessionInfo)) {
        let mut inner = self.lock();
        if internal(key) || inner.sessions.contains_key(key) {
            f(&mut inner.session(key).info);
        }
    }

    /// Whether `principal` may use session `key`: it must exist (opened
    /// by the server, seen here) and belong to `principal`. An agent-made
    /// key is bound to its first caller.
    pub fn claim(&self, key: &str, principal: &str) -> Result<(), ClaimError> {
        let mut inner = self.lock();
        if !internal(key) && !inner.sessions.contains_key(key) {
            return Err(ClaimError::Unknown);
        }
        let info = &mut inner.session(key).info;
        match &info.owner {
            Some(o) if o != principal => Err(ClaimError::Owner(o.clone())),
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
        s.last_used = Instant::now();
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

    /// The logical call (see `rounds`) of the request waiting under `key`
    /// with `id`: its `follows`, else its own `call_id`.
    pub fn pending_round(&self, key: &str, id: &str) -> Option<String> {
        let inner = self.lock();
        let e = inner.sessions.get(key)?.pending.get(id)?;
        e.meta.follows.clone().or_else(|| e.meta.call_id.clone())
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

    /// The server opened session `to` in answer to the POST under the
    /// per-POST key `from`: what `from` holds moves there, owner and all.
    /// Returns the unanswered requests of sessions forgotten to make room
    /// (idle ones, or the owner's least recently used).
    pub fn open(&self, from: &str, to: &str) -> Result<Vec<ExchangeEvent>, OpenError> {
        self.open_at(from, to, Instant::now())
    }

    fn open_at(&self, from: &str, to: &str, now: Instant) -> Result<Vec<ExchangeEvent>, OpenError> {
        let mut inner = self.lock();
        let mut left = inner.expire(now);
        let owner = inner.sessions.get(from).and_then(|s| s.info.owner.clone());
        if let Some(existing) = inner.sessions.get(to) {
            if existing.info.owner != owner {
                return Err(OpenError::Taken);
            }
        } else {
            if let Some(o) = &owner {
                left.extend(inner.make_room_for(o));
            }
            if inner.sessions.len() >= MAX_SESSIONS {
                tracing::warn!(session = %to, "session table full: the new session is refused");
                return Err(OpenError::Full(MAX_SESSIONS));
            }
        }
        let Some(s) = inner.sessions.remove(from) else {
            return Ok(left);
        };
        let dst = inner
            .sessions
            .entry(to.to_string())
            .or_insert_with(|| Session::new(None));
        dst.info = s.info;
        dst.pending.extend(s.pending);
        dst.server_pending.extend(s.server_pending);
        dst.order.extend(s.order);
        dst.last_used = now;
        Ok(left)
    }

    /// Forgets sessions idle for `IDLE` as of `now`; returns their
    /// unanswered requests.
    pub fn expire_idle(&self, now: Instant) -> Vec<ExchangeEvent> {
        self.lock().expire(now)
    }

    /// Forgets a session (DELETE, or a per-POST key when its stream ends);
    /// returns its unanswered client requests.
    pub fn close(&self, key: &str) -> Vec<ExchangeEvent> {
        self.lock().remove(key)
    }

    /// A legacy server announced `target` (path?query) as the message
    /// endpoint of session `key`: the server opened it.
    pub fn learn_legacy_endpoint(&self, target: &str, key: &str) {
        let mut inner = self.lock();
        inner.legacy.learn(target, key);
        let s = inner.session_or_new(key);
        s.stream_bound = true;
    }

    /// Whether normalized `path` is a message endpoint a legacy server
    /// announced.
    pub fn is_legacy_path(&self, path: &str) -> bool {
        self.lock().legacy.is_path(path)
    }

    /// The legacy session a POST to `target` (path?query) belongs to, read
    /// from its parsed query as the server reads it.
    pub fn legacy_session(&self, target: &str) -> Result<Option<String>, LegacyError> {
        self.lock().legacy.session(target)
    }
}

#[cfg(test)]
mod tests;
