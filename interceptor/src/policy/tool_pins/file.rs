//! The pins file's model: per server and tool, the pinned fingerprint and
//! the one last listed, and what an observation or a re-pin changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FORMAT, Observed, PinError, fingerprint::legacy_fingerprint};

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

/// The format a file without `version` is read as: this build's.
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

/// The format of a pin without `scheme`: 1, the first.
fn legacy() -> u32 {
    1
}

impl ToolPin {
    /// Whether the listed definition differs from the pinned one.
    pub fn changed(&self) -> bool {
        self.pinned != self.observed
    }
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
