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
//! Speed: for each action, resource and caller (as far as conditions can
//! tell callers apart) the policies that can apply are worked out once
//! and cached (`slice`), so a decision evaluates only those whose outcome
//! depends on the call itself (bench: `policy`), with the same decision,
//! determining policies and errors as the whole set.
#![forbid(unsafe_code)]

pub mod budget;
pub mod bundle;
pub mod cache_scope;
pub mod explain;
pub mod input;
pub mod names;
pub mod phase;
mod slice;
pub mod tool_pins;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    str::FromStr,
};

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Policy, PolicyId, PolicySet, Schema, ValidationMode,
    Validator,
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
    shapes: Vec<slice::Shape>,
    /// Indexes into `shapes` by the actions each policy's scope names.
    by_action: HashMap<&'static str, Vec<usize>>,
    /// What conditions read of the caller: the plan key.
    reads: slice::Reads,
    /// Plans by key; cleared when it reaches `PLAN_CACHE` entries.
    plans: std::sync::Mutex<HashMap<String, std::sync::Arc<slice::Plan>>>,
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
        let mut shapes = Vec::with_capacity(notes.len());
        let mut reads = slice::Reads::default();
        for p in all.policies() {
            shapes.push(slice::Shape::new(p, p.id().as_ref())?);
            reads.add(p)?;
        }
        Ok(Self {
            by_action: slice::by_action(&shapes),
            shapes,
            reads,
            plans: std::sync::Mutex::new(HashMap::new()),
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

    /// The decision for `input`: the plan for its caller and resource
    /// (`slice`), and Cedar on the policies the call itself decides.
    pub fn decide(&self, input: &Input) -> Result<Decision, PolicyError> {
        let scope = input::scope_uids(input)?;
        let plan = self.plan(input, &scope)?;
        let (mut permits, mut forbids) = (plan.permits.clone(), plan.forbids.clone());
        let mut errors = Vec::new();
        match &plan.dynamic {
            Some(set) => {
                let (request, entities) = match &plan.context {
                    Some(fields) => input::cedar_with(input, scope, fields)?,
                    None => input::cedar_in(input, scope)?,
                };
                let resp = self.authorizer.is_authorized(&request, set, &entities);
                let reasons = resp.diagnostics().reason().map(|id| id.to_string());
                match resp.decision() {
                    CedarDecision::Allow => permits.extend(reasons),
                    CedarDecision::Deny => forbids.extend(reasons),
                }
                errors = resp.diagnostics().errors().map(|e| e.to_string()).collect();
            }
            None => input::check_arguments(input)?,
        }
        // As Cedar combines them: a satisfied forbid wins, then a
        // satisfied permit, else default deny.
        let (allow, policies) = match forbids.is_empty() {
            true => (!permits.is_empty(), permits),
            false => (false, forbids),
        };
        Ok(self.decision(input, allow, policies, errors))
    }

    /// The decision of the whole set, with no plan: what `decide` must
    /// always agree with.
    #[cfg(test)]
    fn decide_full(&self, input: &Input) -> Result<Decision, PolicyError> {
        let (request, entities) = input::cedar(input)?;
        let all = PolicySet::from_policies(self.shapes.iter().map(|s| s.policy().clone()))
            .expect("loaded ids are unique");
        let resp = self.authorizer.is_authorized(&request, &all, &entities);
        Ok(self.decision(
            input,
            resp.decision() == CedarDecision::Allow,
            resp.diagnostics()
                .reason()
                .map(|id| id.to_string())
                .collect(),
            resp.diagnostics().errors().map(|e| e.to_string()).collect(),
        ))
    }

    /// The decision, its reason and annotations from Cedar's answer:
    /// allowed or not, the determining policies and the errors.
    fn decision(
        &self,
        input: &Input,
        allow: bool,
        mut policies: Vec<String>,
        mut errors: Vec<String>,
    ) -> Decision {
        policies.sort();
        errors.sort();
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
        if !allow {
            d.reason = match d.policies.is_empty() {
                true => format!("no policy permits {what} for {}", input.subject),
                false => format!("{what} is forbidden by policy {}", d.policies.join(", ")),
            };
            return d;
        }
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
        d
    }

    /// The plan for `input`'s key (see `slice::Reads::key`), made on
    /// first use.
    fn plan(
        &self,
        input: &Input,
        scope: &input::Scope,
    ) -> Result<std::sync::Arc<slice::Plan>, PolicyError> {
        let key = self.reads.key(input, scope);
        let cache = || self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache().get(&key) {
            return Ok(p.clone());
        }
        let shapes: Vec<&slice::Shape> = self
            .by_action
            .get(input.action())
            .into_iter()
            .flatten()
            .map(|&n| &self.shapes[n])
            .collect();
        let plan = std::sync::Arc::new(slice::Plan::new(
            &self.authorizer,
            &shapes,
            input,
            scope.clone(),
        )?);
        let mut cache = cache();
        if cache.len() >= PLAN_CACHE {
            cache.clear();
        }
        cache.insert(key, plan.clone());
        Ok(plan)
    }
}

const PLAN_CACHE: usize = 4096;

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
mod slice_tests;
#[cfg(test)]
mod tests;
