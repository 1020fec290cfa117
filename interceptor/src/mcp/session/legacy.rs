//! Legacy (2024-11-05) message endpoints: the server's `endpoint` event
//! names a target such as `/message?sessionId=X`, and a POST belongs to
//! session X when the server will read it so. Servers read the parsed
//! query, so matching is on the parsed parameters, not the raw string:
//! `/message?sessionId=X&x=1` is session X too, and a query the agent
//! and the server could read differently (the session parameter twice,
//! or in another case) is refused.

use std::collections::HashMap;

use crate::reqpath::{self, PathError};

/// Why a POST to a legacy message endpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    /// The path or query has no single reading.
    #[error("{0}")]
    Target(#[from] PathError),
    /// The session parameter appears twice, or spelled in another case.
    #[error("the session parameter {0:?} is given more than once or in another spelling")]
    Ambiguous(String),
    /// It names a session the server never announced (or that ended).
    #[error("no such legacy session")]
    Unknown,
}

/// One announced target: its query pairs and the session key.
struct Target {
    pairs: Vec<(String, String)>,
    key: String,
}

/// Announced targets by normalized path.
#[derive(Default)]
pub(super) struct Endpoints {
    by_path: HashMap<String, Vec<Target>>,
}

fn split(target: &str) -> Result<(String, Vec<(String, String)>), PathError> {
    let (p, q) = target.split_once('?').unwrap_or((target, ""));
    Ok((reqpath::normalize(p)?, reqpath::query_pairs(q)?))
}

impl Endpoints {
    /// Remembers that `target` (path?query) names session `key`.
    pub(super) fn learn(&mut self, target: &str, key: &str) {
        let Ok((p, pairs)) = split(target) else {
            tracing::warn!(%target, "legacy endpoint with no single reading: POSTs to it are refused");
            return;
        };
        let list = self.by_path.entry(p).or_default();
        list.retain(|t| t.pairs != pairs);
        list.push(Target {
            pairs,
            key: key.to_string(),
        });
    }

    /// Forgets the targets of session `key`.
    pub(super) fn forget(&mut self, key: &str) {
        self.by_path.retain(|_, list| {
            list.retain(|t| t.key != key);
            !list.is_empty()
        });
    }

    /// Whether normalized `path` is an announced message endpoint.
    pub(super) fn is_path(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    /// The session a request to `target` (path?query) belongs to; `None`
    /// when its path is no legacy endpoint or it names no session.
    pub(super) fn session(&self, target: &str) -> Result<Option<String>, LegacyError> {
        let (p, _) = target.split_once('?').unwrap_or((target, ""));
        let Some(list) = reqpath::normalize(p)
            .ok()
            .and_then(|p| self.by_path.get(&p))
        else {
            return Ok(None);
        };
        let (_, pairs) = split(target)?;
        // The parameter names that name sessions here, as announced.
        let mut names: Vec<&str> = list
            .iter()
            .flat_map(|t| t.pairs.iter().map(|(k, _)| k.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in &names {
            let given: Vec<&String> = pairs
                .iter()
                .map(|(k, _)| k)
                .filter(|k| k.eq_ignore_ascii_case(name))
                .collect();
            if given.len() > 1 || given.first().is_some_and(|k| k != name) {
                return Err(LegacyError::Ambiguous((*name).to_string()));
            }
        }
        let named = pairs.iter().any(|(k, _)| names.contains(&k.as_str()));
        let found = list
            .iter()
            .filter(|t| t.pairs.iter().all(|pair| pairs.contains(pair)))
            .max_by_key(|t| t.pairs.len());
        match found {
            Some(t) if named || t.pairs.is_empty() => Ok(Some(t.key.clone())),
            _ if named => Err(LegacyError::Unknown),
            _ => Ok(None),
        }
    }
}
