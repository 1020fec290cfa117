//! Tool pinning, against a server that changes a tool after it was trusted
//! (a "rug pull": a description that now carries instructions for the
//! model, a schema that now asks for more, an annotation that now claims
//! `readOnlyHint`). Each tool definition (every member the client or the
//! model reads: name, title, description, input and output schema,
//! annotations, icons, `_meta`) is fingerprinted per server; the first
//! definition seen is pinned (trust on first use), and one that differs
//! from its pin is logged and audited, and with `on_tool_change = "block"`
//! hidden and refused until an operator re-pins it
//! (`mcp-interceptor tools pin`).
//!
//! Named `tool_pins`, not `pins`: these pin tool definitions, unlike the
//! bpffs pins of `steer::pins`.
//!
//! The pins file is shared by the agent and the CLI. Readers never lock:
//! writers rename a whole file into place. Writers hold an exclusive
//! `flock` on `<file>.lock` around read-modify-write, so an operator's
//! re-pin and the agent's observation never overwrite each other.

mod store;

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use store::FileStamp;
pub use store::{PinError, PinStore};

use crate::{
    config::{Config, OnToolChange},
    error::{Reason, Refusal},
    jsonrpc::{Kind, Message, canonical},
    pipeline::{Events, LifecycleEvent, MessageCtx, Phase, Verdict},
};

/// How often the agent looks for a re-pin by the CLI (one `stat`).
pub const RECHECK: Duration = Duration::from_secs(1);

/// The pins file format this build writes; a newer one is refused rather
/// than rewritten without the fields it does not know. 2: fingerprints
/// cover every member of [`PINNED_MEMBERS`] (1 covered three of them).
pub const FORMAT: u32 = 2;

/// The members of a tool definition that are fingerprinted: all that a
/// client shows or a model reads. `annotations` (`readOnlyHint`,
/// `destructiveHint`) steer clients' confirmation prompts, `title` and
/// `icons` what a user sees, `outputSchema` what the model is told to
/// expect, `_meta` extension data clients act on.
pub const PINNED_MEMBERS: [&str; 8] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "icons",
    "_meta",
];

/// The members format 1 fingerprinted.
const LEGACY_MEMBERS: [&str; 3] = ["name", "description", "inputSchema"];

/// The pins file: per server key, per tool name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinFile {
    /// The file format version.
    #[serde(default = "format")]
    pub version: u32,
    /// The pinned tools, by server then tool name.
    #[serde(default)]
    pub servers: BTreeMap<String, BTreeMap<String, ToolPin>>,
}

fn format() -> u32 {
    FORMAT
}

impl Default for PinFile {
    fn default() -> Self {
        Self {
            version: FORMAT,
            servers: BTreeMap::new(),
        }
    }
}

/// One tool of one server. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolPin {
    /// The fingerprint calls are held to.
    pub pinned: String,
    /// The fingerprint last seen in a `tools/list` answer.
    pub observed: String,
    /// When the tool was first seen (seconds since the epoch).
    pub first_seen: u64,
    /// When the current definition was pinned (seconds since the epoch).
    pub pinned_at: u64,
    /// When `observed` last moved away from `pinned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<u64>,
    /// The last observed definition (the [`PINNED_MEMBERS`]).
    pub definition: Value,
    /// While changed: the definition that was pinned, for the operator to
    /// compare before re-pinning (otherwise it equals `definition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_definition: Option<Value>,
    /// The pins file format whose fingerprint `pinned` is (1 when absent).
    #[serde(default = "legacy")]
    pub scheme: u32,
}

fn legacy() -> u32 {
    1
}

impl ToolPin {
    /// Whether the listed definition differs from the pinned one.
    pub fn changed(&self) -> bool {
        self.pinned != self.observed
    }
}

/// One tool of a `tools/list` answer, fingerprinted.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The tool's name.
    pub name: String,
    /// The fingerprint of its definition.
    pub fingerprint: String,
    /// The definition as listed.
    pub definition: Value,
}

impl Observed {
    /// `None` for an entry without a string `name` (nothing can call it).
    pub fn of(tool: &Value) -> Option<Self> {
        let name = tool.get("name")?.as_str()?.to_string();
        let definition = definition(tool);
        Some(Self {
            name,
            fingerprint: digest(&definition),
            definition,
        })
    }
}

/// The fingerprinted part of a tool; missing fields are `null`, so adding
/// a description where there was none is a change too.
pub fn definition(tool: &Value) -> Value {
    members(tool, &PINNED_MEMBERS)
}

fn members(tool: &Value, names: &[&str]) -> Value {
    let field = |k: &str| tool.get(k).cloned().unwrap_or(Value::Null);
    Value::Object(names.iter().map(|k| (k.to_string(), field(k))).collect())
}

/// The format 1 fingerprint of a definition, to carry old pins over.
fn legacy_fingerprint(definition: &Value) -> String {
    digest(&members(definition, &LEGACY_MEMBERS))
}

/// SHA-256 (hex) of the canonical JSON of the tool's definition: key order
/// and whitespace do not count, everything else does.
pub fn fingerprint(tool: &Value) -> String {
    digest(&definition(tool))
}

fn digest(definition: &Value) -> String {
    hex::encode(Sha256::digest(canonical(definition).as_bytes()))
}

/// The key a server's pins are kept under: its port rule's `name`, else
/// the port number (the same server identity policies use).
pub fn server_key(cfg: &Config, port: u16) -> String {
    cfg.rule(port)
        .and_then(|r| r.name.clone())
        .unwrap_or_else(|| port.to_string())
}

/// What an observation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First sight: pinned as it is.
    Pinned {
        /// The tool.
        tool: String,
        /// The fingerprint it was pinned at.
        fingerprint: String,
    },
    /// Differs from its pin, with a fingerprint not seen just before.
    Changed {
        /// The tool.
        tool: String,
        /// The pinned fingerprint.
        pinned: String,
        /// The fingerprint now listed.
        observed: String,
    },
    /// Back to its pinned definition.
    Restored {
        /// The tool.
        tool: String,
        /// Its pinned fingerprint.
        fingerprint: String,
    },
}

/// A tool `repin` matched: `from` is the pin it had, `to` the one it has
/// now (equal when it had not changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repinned {
    /// The tool.
    pub tool: String,
    /// The fingerprint it was pinned at.
    pub from: String,
    /// The fingerprint it is now pinned at.
    pub to: String,
}

impl PinFile {
    /// The pin of `tool` on `server`, if there is one.
    pub fn get(&self, server: &str, tool: &str) -> Option<&ToolPin> {
        self.servers.get(server)?.get(tool)
    }

    /// Records one `tools/list` answer of `server` at `now`.
    pub fn observe(&mut self, server: &str, tools: &[Observed], now: u64) -> Vec<Seen> {
        let pins = self.servers.entry(server.to_string()).or_default();
        let mut seen = Vec::new();
        for o in tools {
            let Some(p) = pins.get_mut(&o.name) else {
                pins.insert(
                    o.name.clone(),
                    ToolPin {
                        pinned: o.fingerprint.clone(),
                        observed: o.fingerprint.clone(),
                        first_seen: now,
                        pinned_at: now,
                        changed_at: None,
                        definition: o.definition.clone(),
                        pinned_definition: None,
                        scheme: FORMAT,
                    },
                );
                seen.push(Seen::Pinned {
                    tool: o.name.clone(),
                    fingerprint: o.fingerprint.clone(),
                });
                continue;
            };
            if p.scheme < FORMAT {
                upgrade(p, o);
            }
            if p.observed == o.fingerprint {
                continue;
            }
            if o.fingerprint == p.pinned {
                p.changed_at = None;
                p.pinned_definition = None;
                seen.push(Seen::Restored {
                    tool: o.name.clone(),
                    fingerprint: o.fingerprint.clone(),
                });
            } else {
                if !p.changed() {
                    p.pinned_definition = Some(p.definition.clone());
                }
                p.changed_at = Some(now);
                seen.push(Seen::Changed {
                    tool: o.name.clone(),
                    pinned: p.pinned.clone(),
                    observed: o.fingerprint.clone(),
                });
            }
            p.observed = o.fingerprint.clone();
            p.definition = o.definition.clone();
        }
        if pins.is_empty() {
            self.servers.remove(server);
        }
        seen
    }

    /// Accepts the observed definition of `tool` (all changed tools of
    /// `server` when `None`) as its pin.
    pub fn repin(
        &mut self,
        server: &str,
        tool: Option<&str>,
        now: u64,
    ) -> Result<Vec<Repinned>, PinError> {
        let known = |m: &mut dyn Iterator<Item = &String>| {
            m.map(String::as_str).collect::<Vec<_>>().join(", ")
        };
        let servers = &mut self.servers;
        let Some(pins) = servers.get_mut(server) else {
            return Err(PinError::NotFound(format!(
                "no tools recorded for server {server:?}; known servers: {}",
                known(&mut servers.keys())
            )));
        };
        if let Some(t) = tool
            && !pins.contains_key(t)
        {
            return Err(PinError::NotFound(format!(
                "server {server:?} has no tool {t:?}; known tools: {}",
                known(&mut pins.keys())
            )));
        }
        let mut out = Vec::new();
        for (name, p) in pins.iter_mut() {
            if tool.is_some_and(|t| t != name) || (tool.is_none() && !p.changed()) {
                continue;
            }
            let from = std::mem::replace(&mut p.pinned, p.observed.clone());
            if from != p.pinned {
                p.pinned_at = now;
                p.changed_at = None;
                p.pinned_definition = None;
            }
            out.push(Repinned {
                tool: name.clone(),
                from,
                to: p.pinned.clone(),
            });
        }
        Ok(out)
    }
}

/// Carries a format 1 pin over: if the members it covered are unchanged,
/// the whole definition now observed becomes the pin (the new members were
/// never pinned, so first sight it is); otherwise the old pin stays and the
/// tool shows as changed until an operator re-pins it.
fn upgrade(p: &mut ToolPin, o: &Observed) {
    if p.pinned == legacy_fingerprint(&o.definition) && !p.changed() {
        p.pinned = o.fingerprint.clone();
        p.observed = o.fingerprint.clone();
        p.definition = o.definition.clone();
    }
    p.scheme = FORMAT;
}

/// What `mcp-interceptor tools pin` does: re-pins under the file lock.
pub fn repin(path: &Path, server: &str, tool: Option<&str>) -> Result<Vec<Repinned>, PinError> {
    PinStore::new(path).update(|f| f.repin(server, tool, unix_now()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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

struct Cache {
    pins: PinFile,
    stamp: Option<FileStamp>,
}

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
            // Decided against the file under its lock, so two answers in
            // flight (or two agents) report a change once.
            let mut c = self.write();
            let now = unix_now();
            let changes = match self
                .store
                .update_stamped(|f| Ok(f.observe(&server, &seen, now)))
            {
                Ok((changes, pins, stamp)) => {
                    notes.extend(repins(&c.pins, &pins));
                    c.pins = pins;
                    c.stamp = stamp;
                    changes
                }
                Err(e) => {
                    tracing::error!(error = %e, server, "pins file not updated; pinning continues in memory only");
                    c.pins.observe(&server, &seen, now)
                }
            };
            notes.extend(changes.into_iter().map(|s| self.seen_note(&server, s)));
        }
        let hidden: HashSet<&str> = if self.block() {
            let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
            seen.iter()
                .filter(|o| {
                    c.pins
                        .get(&server, &o.name)
                        .is_some_and(|p| p.pinned != o.fingerprint)
                })
                .map(|o| o.name.as_str())
                .collect()
        } else {
            HashSet::new()
        };
        self.emit(notes);
        if hidden.is_empty() {
            return;
        }
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
}

#[cfg(test)]
mod tests;
