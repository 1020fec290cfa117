//! The pinning phase: pins each tool of a `tools/list` answer, reports
//! changes, and with `on_tool_change = "block"` hides changed tools and
//! refuses calls to them. It also leaves out of the answer the tools whose
//! `x-mcp-header` declarations are invalid, and keeps the schemas the
//! handler checks `Mcp-Param-*` headers against.

use std::{
    collections::HashSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    Observed, PinFile, PinStore, RECHECK, Seen, ToolPin, server_key, store::FileStamp, unix_now,
};
use crate::{
    config::{Config, OnToolChange},
    error::{Reason, Refusal},
    jsonrpc::{Kind, Message, param_headers::declared},
    pipeline::{Events, LifecycleEvent, MessageCtx, Phase, Verdict},
};

/// The pinning stage. Audit row kinds: `tool_pinned` (first sight),
/// `tool_changed` (once per new fingerprint), `tool_restored` (back to
/// its pin), `tool_repinned` (an operator's re-pin, as the agent saw it).
///
/// The agent always runs it, audit or not: `on_tool_change = "block"` is
/// enforcement and must not lapse because the audit is off (then `events`
/// does nothing and the log is the only record). A pins file that cannot
/// be read or written does not stop traffic: pinning goes on in memory
/// and the log says why.
pub struct PinPhase {
    cfg: Arc<Config>,
    store: PinStore,
    /// Audit rows go out through the audit's one sink, like every
    /// other event made outside an exchange.
    events: Events,
    cache: RwLock<Cache>,
    born: Instant,
    /// Milliseconds after `born` of the last look at the file; lets one
    /// thread per interval do the `stat` while the others only read.
    checked_ms: AtomicU64,
    recheck: Duration,
}

/// The pins as last read, and which file they came from.
struct Cache {
    pins: PinFile,
    stamp: Option<FileStamp>,
}

/// Audit rows to emit: kind and message.
type Rows = Vec<(&'static str, String)>;

impl PinPhase {
    /// Reads the pins file now; a missing file is an empty one, an
    /// unreadable one is logged and the phase starts from memory.
    pub fn new(cfg: Arc<Config>, events: Events) -> Self {
        let store = PinStore::new(cfg.pins_path());
        let phase = Self {
            cfg,
            store,
            events,
            cache: RwLock::new(Cache {
                pins: PinFile::default(),
                stamp: None,
            }),
            born: Instant::now(),
            checked_ms: AtomicU64::new(0),
            recheck: RECHECK,
        };
        let notes = phase.reload(&mut phase.write(), true);
        phase.emit(notes);
        phase
    }

    /// How often to look for changes by the CLI (tests: `Duration::ZERO`).
    pub fn recheck_every(mut self, every: Duration) -> Self {
        self.recheck = every;
        self
    }

    fn block(&self) -> bool {
        self.cfg.policy.on_tool_change == OnToolChange::Block
    }

    /// The cache, re-read first if the file changed (looked at no more
    /// than once per `recheck`).
    fn fresh(&self) -> (std::sync::RwLockReadGuard<'_, Cache>, Rows) {
        let now = self.born.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= self.recheck.as_millis() as u64
            && self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        let notes = if due {
            self.reload(&mut self.write(), false)
        } else {
            Vec::new()
        };
        (self.cache.read().unwrap_or_else(|e| e.into_inner()), notes)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the cache if the file is not the one last read; notes the
    /// re-pins it brings. A file that stays missing keeps what is in memory
    /// (pins that could not be written are still pins).
    fn reload(&self, c: &mut Cache, force: bool) -> Rows {
        let stamp = FileStamp::of(self.store.path());
        if !force && stamp == c.stamp {
            return Vec::new();
        }
        match self.store.read_stamped() {
            Ok((pins, stamp)) => {
                let notes = repins(&c.pins, &pins);
                c.pins = pins;
                c.stamp = stamp;
                notes
            }
            Err(e) => {
                // Remembered so a broken file is reported once per change,
                // not once per second.
                c.stamp = stamp;
                tracing::error!(error = %e, "pins file unreadable; pinning continues in memory only");
                Vec::new()
            }
        }
    }

    fn emit(&self, notes: Rows) {
        for (kind, message) in notes {
            if kind == "tool_changed" {
                tracing::warn!(kind, "{message}");
            } else {
                tracing::info!(kind, "{message}");
            }
            self.events.emit(LifecycleEvent::new(kind, message));
        }
    }

    fn seen_note(&self, server: &str, s: Seen) -> (&'static str, String) {
        match s {
            Seen::Pinned { tool, fingerprint } => (
                "tool_pinned",
                format!("server {server} tool {tool} pinned on first sight: {fingerprint}"),
            ),
            Seen::Changed {
                tool,
                pinned,
                observed,
            } => (
                "tool_changed",
                format!(
                    "server {server} tool {tool} changed since it was pinned: pinned {pinned}, now {observed}; {}",
                    if self.block() {
                        "hidden and refused until re-pinned (mcp-interceptor tools pin)"
                    } else {
                        "still usable (on_tool_change = alert)"
                    }
                ),
            ),
            Seen::Restored { tool, fingerprint } => (
                "tool_restored",
                format!(
                    "server {server} tool {tool} is back to its pinned definition {fingerprint}"
                ),
            ),
        }
    }
}

/// Pins that moved between two reads of the file: an operator re-pinned.
fn repins(old: &PinFile, new: &PinFile) -> Rows {
    let mut out = Vec::new();
    for (server, tools) in &new.servers {
        for (tool, p) in tools {
            if let Some(o) = old.get(server, tool)
                && o.pinned != p.pinned
            {
                out.push((
                    "tool_repinned",
                    format!(
                        "server {server} tool {tool} re-pinned: {} -> {}",
                        o.pinned, p.pinned
                    ),
                ));
            }
        }
    }
    out
}

impl Phase for PinPhase {
    fn name(&self) -> &'static str {
        "pins"
    }

    fn on_request(&self, ctx: &MessageCtx<'_>, msg: &Message) -> Verdict {
        if !self.block() || msg.kind != Kind::Request || msg.method() != Some("tools/call") {
            return Verdict::Continue;
        }
        let Some(tool) = msg.target() else {
            return Verdict::Continue;
        };
        let server = server_key(&self.cfg, ctx.conn.orig_dst.port());
        let (cache, notes) = self.fresh();
        let changed = cache.pins.get(&server, tool).is_some_and(ToolPin::changed);
        drop(cache);
        self.emit(notes);
        if !changed {
            return Verdict::Continue;
        }
        tracing::info!(
            conn = ctx.conn.id,
            server,
            tool,
            "call to a changed tool refused"
        );
        Verdict::Deny(Refusal::new(
            Reason::ToolChanged,
            format!(
                "tool {tool} changed since it was pinned; an operator must re-pin it (mcp-interceptor tools pin)"
            ),
        ))
    }

    fn on_server_message(&self, ctx: &MessageCtx<'_>, msg: &mut Message) {
        if ctx.request_method != Some("tools/list") {
            return;
        }
        let Some(tools) = msg
            .result()
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
        else {
            return;
        };
        let seen: Vec<Observed> = tools.iter().filter_map(Observed::of).collect();
        let server = server_key(&self.cfg, ctx.conn.orig_dst.port());
        let (cache, mut notes) = self.fresh();
        let news = seen.iter().any(|o| {
            cache
                .pins
                .get(&server, &o.name)
                .is_none_or(|p| p.observed != o.fingerprint)
        });
        drop(cache);
        if news {
            notes.extend(self.record(&server, &seen));
        }
        let mut hidden = if self.block() {
            self.unpinned(&server, &seen)
        } else {
            HashSet::new()
        };
        hidden.extend(invalid_headers(&server, &seen));
        self.emit(notes);
        if !hidden.is_empty() {
            hide(msg, &hidden);
        }
    }
}

impl PinPhase {
    /// Records a `tools/list` answer with something new in it; returns the
    /// re-pins and changes to report. Decided against the file under its
    /// lock, so two answers in flight (or two agents) report a change
    /// once; without the file, in memory.
    fn record(&self, server: &str, seen: &[Observed]) -> Rows {
        let mut notes = Vec::new();
        let mut c = self.write();
        let now = unix_now();
        let changes = match self
            .store
            .update_stamped(|f| Ok(f.observe(server, seen, now)))
        {
            Ok((changes, pins, stamp)) => {
                notes.extend(repins(&c.pins, &pins));
                c.pins = pins;
                c.stamp = stamp;
                changes
            }
            Err(e) => {
                tracing::error!(error = %e, server, "pins file not updated; pinning continues in memory only");
                c.pins.observe(server, seen, now)
            }
        };
        notes.extend(changes.into_iter().map(|s| self.seen_note(server, s)));
        notes
    }

    /// The `inputSchema` of `tool` as the server on `port` last listed it
    /// (`null` when it listed none); `None` when it never listed the tool.
    pub fn input_schema(&self, port: u16, tool: &str) -> Option<Value> {
        let server = server_key(&self.cfg, port);
        let (cache, notes) = self.fresh();
        let schema = cache.pins.get(&server, tool).map(|p| {
            p.definition
                .get("inputSchema")
                .cloned()
                .unwrap_or(Value::Null)
        });
        drop(cache);
        self.emit(notes);
        schema
    }

    /// The listed tools whose definition is not the pinned one.
    fn unpinned<'a>(&self, server: &str, seen: &'a [Observed]) -> HashSet<&'a str> {
        let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|o| {
                c.pins
                    .get(server, &o.name)
                    .is_some_and(|p| p.pinned != o.fingerprint)
            })
            .map(|o| o.name.as_str())
            .collect()
    }
}

/// The listed tools whose `x-mcp-header` declarations are invalid: the
/// spec has clients leave them out of `tools/list`, and the agent does it
/// for them, since their `Mcp-Param-*` headers could be bound two ways
/// (`mcp::stateless::params` refuses calls to them).
fn invalid_headers<'a>(server: &str, seen: &'a [Observed]) -> HashSet<&'a str> {
    let mut out = HashSet::new();
    for o in seen {
        let schema = o.definition.get("inputSchema").unwrap_or(&Value::Null);
        if let Err(e) = declared(schema) {
            tracing::warn!(server, tool = o.name, "tool left out of tools/list: {e}");
            out.insert(o.name.as_str());
        }
    }
    out
}

/// Takes the `hidden` tools out of a `tools/list` answer.
fn hide(msg: &mut Message, hidden: &HashSet<&str>) {
    let mut value = msg.value.clone();
    if let Some(list) = value
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    {
        list.retain(|t| {
            !t.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| hidden.contains(n))
        });
    }
    if let Err(e) = msg.rewrite(value) {
        tracing::error!(error = %e, "tools/list without changed tools did not rewrite");
    }
}
