//! Cedar policy over identity, MCP method, target and arguments (NIST AC-3,
//! AC-6). Default deny: a request no permit policy matches is refused.
//!
//! Policies are validated against the schema (`deploy/policy/mcp.cedarschema`,
//! built in) at load. Each carries an id (`@id("...")`, else
//! `<file>#<n>`); a decision names the determining ids and the policy-set
//! version (SHA-256 of the sources), never other policies' contents.
//! Annotations on a determining permit: `@approval("group")` (the call
//! needs a human approval first) and `@mask("profile")` (masking profile
//! for the answer).
//!
//! Speed: policies are grouped by the actions their scope names at load,
//! and for each (action, principal and groups, resource) the policies
//! whose principal and resource scope can match are picked once and
//! cached, so a decision evaluates only those that can apply (bench:
//! `policy`). A scope is a necessary condition of a policy, so leaving out
//! a policy whose scope cannot match never changes a decision.
#![forbid(unsafe_code)]

pub mod budget;
pub mod bundle;
pub mod cache_scope;
pub mod explain;
pub mod input;
pub mod names;
pub mod phase;
pub mod tool_pins;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    str::FromStr,
};

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Policy, PolicyId, PolicySet, Schema,
    ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

pub use crate::pipeline::{ApprovalMode, ApprovalRule, Decision, Effect};
pub use input::Input;

/// The schema policies are checked against.
pub const SCHEMA: &str = include_str!("../../../deploy/policy/mcp.cedarschema");

/// Why policies could not be loaded or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("{0}: {1}")]
    Read(PathBuf, String),
    /// Cedar could not parse a file.
    #[error("{0}: {1}")]
    Parse(String, String),
    /// A policy does not fit the schema (a typo in an attribute, an action
    /// applied to the wrong resource type, ...).
    #[error("policy {0} does not validate against the schema: {1}")]
    Invalid(String, String),
    /// Two policies share an id.
    #[error("policy id {0:?} is used twice")]
    DuplicateId(String),
    /// The built-in schema is broken (a bug).
    #[error("schema: {0}")]
    Schema(String),
    /// A request could not be expressed in Cedar (e.g. a subject that is
    /// not a valid entity id).
    #[error("policy input: {0}")]
    Input(String),
    /// `@mask("...")` names no masking profile of the config (at run time
    /// it would fall back to the default profile, unnoticed).
    #[error(
        "policy {policy}: @mask({profile:?}) names no mask profile (built in: standard, none; \
         others are defined under [mask.profiles])"
    )]
    UnknownMaskProfile {
        /// The policy.
        policy: String,
        /// The profile it names.
        profile: String,
    },
}

#[derive(Debug, Clone, Default)]
struct Notes {
    approval: Option<ApprovalRule>,
    mask: Option<String>,
}

/// Approval annotations of one policy: `@approval("oncall, security")`,
/// optionally `@approval_quorum("2")` and `@approval_mode("retry")`.
fn approval_rule(id: &str, p: &Policy) -> Result<Option<ApprovalRule>, PolicyError> {
    let bad = |m: String| PolicyError::Invalid(id.to_string(), m);
    let (quorum, mode) = (
        p.annotation("approval_quorum"),
        p.annotation("approval_mode"),
    );
    let Some(groups) = p.annotation("approval") else {
        if quorum.is_some() || mode.is_some() {
            return Err(bad(
                "@approval_quorum and @approval_mode need @approval".into()
            ));
        }
        return Ok(None);
    };
    let groups: Vec<String> = groups
        .split(',')
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect();
    if groups.is_empty() {
        return Err(bad("@approval names no approver group".into()));
    }
    let quorum = match quorum {
        None => 1,
        Some(q) => match q.trim().parse::<u32>() {
            Ok(n @ 1..=16) => n,
            _ => {
                return Err(bad(format!(
                    "@approval_quorum({q:?}) is not a number from 1 to 16"
                )));
            }
        },
    };
    let mode = match mode.map(str::trim) {
        None | Some("hold") => ApprovalMode::Hold,
        Some("retry") => ApprovalMode::Retry,
        Some(m) => {
            return Err(bad(format!(
                "@approval_mode({m:?}) is not \"hold\" or \"retry\""
            )));
        }
    };
    if p.effect() != cedar_policy::Effect::Permit {
        return Err(bad("@approval belongs on a permit policy".into()));
    }
    Ok(Some(ApprovalRule {
        groups,
        quorum,
        mode,
    }))
}

/// A loaded, validated policy set.
#[derive(Debug)]
pub struct Policies {
    by_action: HashMap<String, Vec<Policy>>,
    /// Picked sets by (action, principal, groups, resource); cleared when
    /// it reaches `PICKED_CACHE` entries.
    picked: std::sync::Mutex<HashMap<String, std::sync::Arc<PolicySet>>>,
    /// Entities some policy scope names (`principal in Mcp::Group::"x"`,
    /// `resource == Mcp::Tool::"y"`): only these can change which policies
    /// are picked, so only these go into the cache key. Otherwise every
    /// new subject would build its own copy of the same set.
    named: std::collections::HashSet<cedar_policy::EntityUid>,
    notes: HashMap<String, Notes>,
    /// The policy set's version (a hash of its text).
    pub version: String,
    /// How many policies it holds.
    pub count: usize,
    authorizer: Authorizer,
}

/// Every action of the schema.
pub const ACTIONS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "server/discover",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "other",
];

/// The Cedar schema policies are checked against.
pub fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _warnings)| s)
        .map_err(|e| PolicyError::Schema(e.to_string()))
}

/// The `.cedar` files named by `paths` (files, or directories whose
/// `*.cedar` files are read in name order), as (name, text).
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, PolicyError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| PolicyError::Read(p.clone(), e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "cedar"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::read_to_string(&f)
                .map(|t| (f.display().to_string(), t))
                .map_err(|e| PolicyError::Read(f.clone(), e.to_string()))
        })
        .collect()
}

/// Parses one source file and adds its policies to `all`, each under its
/// `@id` (or `file#n`), with its annotations in `notes`. An id used twice,
/// in this file or an earlier one, is refused.
fn add_source(
    name: &str,
    text: &str,
    all: &mut PolicySet,
    notes: &mut HashMap<String, Notes>,
) -> Result<(), PolicyError> {
    let set =
        PolicySet::from_str(text).map_err(|e| PolicyError::Parse(name.to_string(), render(&e)))?;
    let short = Path::new(name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    for (n, p) in ordered(&set).into_iter().enumerate() {
        let id = p
            .annotation("id")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{short}#{n}"));
        if notes.contains_key(&id) {
            return Err(PolicyError::DuplicateId(id));
        }
        notes.insert(
            id.clone(),
            Notes {
                approval: approval_rule(&id, p)?,
                mask: p.annotation("mask").map(str::to_owned),
            },
        );
        let p = p.new_id(PolicyId::new(&id));
        all.add(p)
            .map_err(|e| PolicyError::DuplicateId(format!("{id}: {e}")))?;
    }
    Ok(())
}

/// Strict validation against the schema; the first error or warning
/// refuses the whole set.
fn validate(schema: Schema, all: &PolicySet) -> Result<(), PolicyError> {
    let result = Validator::new(schema).validate(all, ValidationMode::Strict);
    if let Some(e) = result.validation_errors().next() {
        return Err(PolicyError::Invalid(e.policy_id().to_string(), render(e)));
    }
    // Warnings too: a policy that can never apply (an action on the
    // wrong resource type) or a string with look-alike characters is a
    // mistake in a security policy, not a style issue.
    if let Some(w) = result.validation_warnings().next() {
        return Err(PolicyError::Invalid(w.policy_id().to_string(), render(w)));
    }
    Ok(())
}

/// The policies each action of the schema can match, by their action
/// constraint (an action outside the schema matches none).
fn by_action(all: &PolicySet) -> HashMap<String, Vec<Policy>> {
    let mut by_action: HashMap<String, Vec<Policy>> = ACTIONS
        .iter()
        .map(|a| (a.to_string(), Vec::new()))
        .collect();
    for p in all.policies() {
        let targets: Vec<String> = match p.action_constraint() {
            ActionConstraint::Any => ACTIONS.iter().map(|a| a.to_string()).collect(),
            ActionConstraint::Eq(a) => vec![a.id().unescaped().to_string()],
            ActionConstraint::In(v) => v.iter().map(|a| a.id().unescaped().to_string()).collect(),
        };
        for t in targets {
            if let Some(list) = by_action.get_mut(&t) {
                list.push(p.clone());
            }
        }
    }
    by_action
}

/// The entities policy scopes name as principal or resource (see
/// `Policies::named`).
fn named_in_scopes(all: &PolicySet) -> std::collections::HashSet<cedar_policy::EntityUid> {
    use cedar_policy::{PrincipalConstraint as P, ResourceConstraint as R};
    let mut named = std::collections::HashSet::new();
    for p in all.policies() {
        if let P::Eq(u) | P::In(u) | P::IsIn(_, u) = p.principal_constraint() {
            named.insert(u);
        }
        if let R::Eq(u) | R::In(u) | R::IsIn(_, u) = p.resource_constraint() {
            named.insert(u);
        }
    }
    named
}

impl Policies {
    /// Loads and validates the policies in these files.
    pub fn load(paths: &[PathBuf]) -> Result<Self, PolicyError> {
        Self::from_sources(&read_sources(paths)?)
    }

    /// Parses, names, validates and indexes `sources` (name, text).
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, PolicyError> {
        let schema = schema()?;
        let mut all = PolicySet::new();
        let mut notes = HashMap::new();
        let mut digest = Sha256::new();
        for (name, text) in sources {
            digest.update(name.as_bytes());
            digest.update([0]);
            digest.update(text.as_bytes());
            digest.update([0]);
            add_source(name, text, &mut all, &mut notes)?;
        }
        validate(schema, &all)?;
        Ok(Self {
            by_action: by_action(&all),
            picked: std::sync::Mutex::new(HashMap::new()),
            named: named_in_scopes(&all),
            count: notes.len(),
            notes,
            version: hex::encode(digest.finalize()),
            authorizer: Authorizer::new(),
        })
    }

    /// Refuses the set if a `@mask("...")` names a profile `known` does
    /// not (checked at start, reload and `check-config`).
    pub fn check_mask_profiles(&self, known: impl Fn(&str) -> bool) -> Result<(), PolicyError> {
        let mut unknown: Vec<(&String, &String)> = self
            .notes
            .iter()
            .filter_map(|(id, n)| n.mask.as_ref().filter(|m| !known(m)).map(|m| (id, m)))
            .collect();
        unknown.sort();
        match unknown.first() {
            Some((policy, profile)) => Err(PolicyError::UnknownMaskProfile {
                policy: policy.to_string(),
                profile: profile.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The decision for `input`.
    pub fn decide(&self, input: &Input) -> Result<Decision, PolicyError> {
        let scope = input::scope_uids(input)?;
        let set = self.picked(input.action(), &scope)?;
        let (request, entities) = input::cedar_in(input, scope)?;
        let resp = self.authorizer.is_authorized(&request, &set, &entities);
        let mut policies: Vec<String> = resp
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        policies.sort();
        let errors: Vec<String> = resp.diagnostics().errors().map(|e| e.to_string()).collect();
        let what = match &input.target {
            Some(t) => format!("{} on {t}", input.method),
            None => input.method.clone(),
        };
        let mut d = Decision {
            effect: Effect::Deny,
            policies,
            version: self.version.clone(),
            mask: None,
            approval: None,
            reason: String::new(),
            errors,
        };
        match resp.decision() {
            CedarDecision::Deny if d.policies.is_empty() => {
                d.reason = format!("no policy permits {what} for {}", input.subject);
            }
            CedarDecision::Deny => {
                d.reason = format!("{what} is forbidden by policy {}", d.policies.join(", "));
            }
            CedarDecision::Allow => {
                let notes: Vec<&Notes> = d
                    .policies
                    .iter()
                    .filter_map(|p| self.notes.get(p))
                    .collect();
                d.approval = notes.iter().find_map(|n| n.approval.clone());
                d.mask = notes.iter().find_map(|n| n.mask.clone());
                if let Some(rule) = &d.approval {
                    d.effect = Effect::Approval;
                    let n = if rule.quorum > 1 {
                        format!("{} approvers from ", rule.quorum)
                    } else {
                        String::new()
                    };
                    d.reason = format!(
                        "{what} needs approval by {n}{} (policy {})",
                        rule.groups_text(),
                        d.policies.join(", ")
                    );
                } else {
                    d.effect = Effect::Allow;
                    d.reason = format!("{what} is permitted by policy {}", d.policies.join(", "));
                }
            }
        }
        Ok(d)
    }
}

const PICKED_CACHE: usize = 4096;

impl Policies {
    /// The policies whose scope can match, cached by the action and the
    /// named entities among the caller, its groups, the resource and its
    /// server: inputs that agree on those pick the same policies.
    fn picked(
        &self,
        action: &str,
        scope: &input::Scope,
    ) -> Result<std::sync::Arc<PolicySet>, PolicyError> {
        use std::fmt::Write;
        let input::Scope {
            principal,
            groups,
            resource,
            server,
            ..
        } = scope;
        let mut key = String::with_capacity(64);
        key.push_str(action);
        for u in [principal, resource, server] {
            if self.named.contains(u) {
                let _ = write!(key, "\u{0}{u}");
            } else {
                key.push_str("\u{0}-");
            }
        }
        for g in groups.iter().filter(|g| self.named.contains(*g)) {
            let _ = write!(key, "\u{0}{g}");
        }
        if let Some(s) = self
            .picked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(s.clone());
        }
        let principal_in = |u: &cedar_policy::EntityUid| u == principal || groups.contains(u);
        let resource_in = |u: &cedar_policy::EntityUid| u == resource || u == server;
        let candidates = self.by_action.get(action).map(Vec::as_slice).unwrap_or(&[]);
        let chosen = candidates.iter().filter(|p| {
            use cedar_policy::{PrincipalConstraint as P, ResourceConstraint as R};
            let principal_ok = match p.principal_constraint() {
                P::Any | P::Is(_) => true,
                P::Eq(u) => u == *principal,
                P::In(u) | P::IsIn(_, u) => principal_in(&u),
            };
            let resource_ok = match p.resource_constraint() {
                R::Any | R::Is(_) => true,
                R::Eq(u) => u == *resource,
                R::In(u) | R::IsIn(_, u) => resource_in(&u),
            };
            principal_ok && resource_ok
        });
        let set = std::sync::Arc::new(
            PolicySet::from_policies(chosen.cloned())
                .map_err(|e| PolicyError::DuplicateId(e.to_string()))?,
        );
        let mut cache = self.picked.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PICKED_CACHE {
            cache.clear();
        }
        cache.insert(key, set.clone());
        Ok(set)
    }
}

/// Policies of one parsed file in source order (Cedar numbers them
/// `policy0`, `policy1`, ...).
fn ordered(set: &PolicySet) -> Vec<&Policy> {
    let mut v: BTreeMap<usize, &Policy> = BTreeMap::new();
    for p in set.policies() {
        let n = p
            .id()
            .to_string()
            .trim_start_matches("policy")
            .parse()
            .unwrap_or(usize::MAX - v.len());
        v.insert(n, p);
    }
    v.into_values().collect()
}

/// Cedar's diagnostics with their help text, on one line.
fn render(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

#[cfg(test)]
mod bypass_tests;
#[cfg(test)]
mod tests;
