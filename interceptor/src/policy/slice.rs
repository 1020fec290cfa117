//! Which policies a decision has to evaluate per call, worked out once per
//! caller and resource (issue 22: the decision at 100 policies).
//!
//! Cedar evaluates a policy's condition as one chain of conjuncts, left to
//! right, stopping at the first false one: its scope, then each `when`
//! body split at `&&`, then each `unless` body negated. The leading run of
//! conjuncts that read neither `context` nor a tag (the static run) depends
//! only on the action, the resource, its server and the caller, and of the
//! caller only on what [`Reads`] lists. So it is evaluated once per such
//! key (a [`Plan`]):
//! - a policy whose static run is false (without an error) cannot be
//!   satisfied by any call with that key, and is left out;
//! - a policy that is static throughout and satisfied is a known reason;
//! - every other policy, including one whose static run erred (so its
//!   error is reported as before), is evaluated by Cedar per call.
//!
//! The plan's known reasons and Cedar's answer on the rest combine as
//! Cedar combines them (a satisfied forbid wins, then a satisfied permit,
//! else default deny), so the decision, its determining policies and its
//! errors are the full set's (`slice_tests`).

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{Authorizer, Decision as CedarDecision, EntityUid, Policy, PolicyId, PolicySet};
use serde_json::{Value, json};

use super::{Input, PolicyError, input::Scope};

/// One policy, with its static run as a permit policy of its own.
#[derive(Debug)]
pub(super) struct Shape {
    /// The policy as written.
    policy: Policy,
    /// Its id.
    id: String,
    /// Whether it is a forbid.
    forbid: bool,
    /// Its scope and static run, as a permit under the same id.
    prefix: Policy,
    /// Whether the static run is the whole condition.
    whole: bool,
    /// The context fields it reads (`None`: it uses the context whole).
    context: Option<BTreeSet<String>>,
}

impl Shape {
    /// Splits `policy` (named `id`) into its static run and the rest.
    pub(super) fn new(policy: &Policy, id: &str) -> Result<Self, PolicyError> {
        let bad = |e: String| PolicyError::Invalid(id.to_string(), e);
        let mut est = policy.to_json().map_err(|e| bad(e.to_string()))?;
        let mut fields = BTreeSet::new();
        let context = (!context_fields(&est["conditions"], &mut fields)).then_some(fields);
        let all = conjuncts(&est["conditions"]);
        let n = all.iter().take_while(|c| !reads_call(c)).count();
        let body = all[..n]
            .iter()
            .cloned()
            .reduce(|left, right| json!({"&&": {"left": left, "right": right}}));
        est["effect"] = json!("permit");
        est["annotations"] = json!({});
        est["conditions"] = match body {
            Some(body) => json!([{"kind": "when", "body": body}]),
            None => json!([]),
        };
        let prefix =
            Policy::from_json(Some(PolicyId::new(id)), est).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            policy: policy.clone(),
            id: id.to_string(),
            forbid: policy.effect() == cedar_policy::Effect::Forbid,
            prefix,
            whole: n == all.len(),
            context,
        })
    }
}

impl Shape {
    /// The policy as written.
    #[cfg(test)]
    pub(super) fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// The conjuncts of a policy's conditions (EST), in evaluation order.
fn conjuncts(conditions: &Value) -> Vec<Value> {
    fn split(e: &Value, out: &mut Vec<Value>) {
        match e.get("&&") {
            Some(op) => {
                split(&op["left"], out);
                split(&op["right"], out);
            }
            None => out.push(e.clone()),
        }
    }
    let mut out = Vec::new();
    for c in conditions.as_array().into_iter().flatten() {
        if c["kind"] == "when" {
            split(&c["body"], &mut out);
        } else {
            out.push(json!({"!": {"arg": c["body"].clone()}}));
        }
    }
    out
}

/// Whether an expression (EST) reads what only the call carries: the
/// context, the arguments (tags), or anything not known at load (slots,
/// unknowns).
fn reads_call(e: &Value) -> bool {
    match e {
        Value::Object(m) => m.iter().any(|(k, v)| {
            matches!(k.as_str(), "getTag" | "hasTag" | "Slot" | "Unknown")
                || (k == "Var" && !matches!(v.as_str(), Some("principal" | "resource" | "action")))
                || reads_call(v)
        }),
        Value::Array(a) => a.iter().any(reads_call),
        _ => false,
    }
}

/// Adds the context fields an expression (EST) reads to `out`; true when
/// it uses the context otherwise (as a whole).
fn context_fields(e: &Value, out: &mut BTreeSet<String>) -> bool {
    let of_context =
        |v: &Value| v.get("left").and_then(|l| l.get("Var")) == Some(&json!("context"));
    match e {
        Value::Array(a) => a.iter().any(|x| context_fields(x, out)),
        Value::Object(m) => m.iter().any(|(k, v)| match k.as_str() {
            "." | "has" if of_context(v) => match v.get("attr").and_then(Value::as_str) {
                Some(a) => {
                    out.insert(a.to_string());
                    false
                }
                None => true,
            },
            "Var" => v.as_str() == Some("context"),
            _ => context_fields(v, out),
        }),
        _ => false,
    }
}

/// What any condition reads of the principal beyond its groups: the
/// attributes named, or everything (`all`) when the principal is used in
/// a way this does not follow. With the entities any policy names, this
/// is what a plan's key holds of the caller.
#[derive(Debug, Default)]
pub(super) struct Reads {
    attrs: BTreeSet<String>,
    all: bool,
    named: HashSet<EntityUid>,
}

impl Reads {
    /// Adds what `policy` reads.
    pub(super) fn add(&mut self, policy: &Policy) -> Result<(), PolicyError> {
        self.named.extend(policy.entity_literals());
        let est = policy
            .to_json()
            .map_err(|e| PolicyError::Invalid(policy.id().to_string(), e.to_string()))?;
        self.walk(&est["conditions"]);
        Ok(())
    }

    fn walk(&mut self, e: &Value) {
        let is_var =
            |v: Option<&Value>, name: &str| v.and_then(|v| v.get("Var")) == Some(&json!(name));
        match e {
            Value::Array(a) => a.iter().for_each(|x| self.walk(x)),
            Value::Object(m) => {
                for (k, v) in m {
                    match k.as_str() {
                        "." | "has" => {
                            let left = v.get("left");
                            if is_var(left, "principal") {
                                match v.get("attr").and_then(Value::as_str) {
                                    Some(a) => drop(self.attrs.insert(a.to_string())),
                                    None => self.all = true,
                                }
                            } else if left.and_then(|l| l.get("Value")).is_some() {
                                // An entity literal's attribute: the caller's, if it
                                // names the caller.
                                self.all = true;
                            } else {
                                self.walk(v);
                            }
                        }
                        // `principal in`/`==` an entity: its groups (named) or its
                        // id (named too) decide.
                        "in" | "==" | "!=" => {
                            for side in ["left", "right"] {
                                if !is_var(v.get(side), "principal") {
                                    v.get(side).into_iter().for_each(|s| self.walk(s));
                                }
                            }
                        }
                        "Var" if v.as_str() == Some("principal") => self.all = true,
                        _ => self.walk(v),
                    }
                }
            }
            _ => {}
        }
    }

    /// The plan key of `input`: everything a static run can read.
    pub(super) fn key(&self, input: &Input, scope: &Scope) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(128);
        let _ = write!(
            key,
            "{}\0{}\0{}\0{}\0{}",
            input.action(),
            scope.resource,
            scope.server,
            input.server_address,
            input.server_port
        );
        if self.all || self.named.contains(&scope.principal) {
            let _ = write!(key, "\0{}", scope.principal);
        } else {
            key.push_str("\0-");
        }
        for g in scope
            .groups
            .iter()
            .filter(|g| self.all || self.named.contains(*g))
        {
            let _ = write!(key, "\0{g}");
        }
        let attrs: [(&str, &dyn std::fmt::Debug); 5] = [
            ("auth_method", &input.auth_method),
            ("issuer", &input.issuer),
            ("subject", &input.subject),
            ("client_id", &input.client_id),
            ("scopes", &input.scopes),
        ];
        for (name, value) in attrs {
            if self.all || self.attrs.contains(name) {
                let _ = write!(key, "\0{name}={value:?}");
            }
        }
        key
    }
}

/// What a call with a given key needs: the reasons known from static
/// runs and the policies Cedar still has to evaluate.
#[derive(Debug)]
pub(super) struct Plan {
    /// Permits static throughout and satisfied.
    pub permits: Vec<String>,
    /// Forbids static throughout and satisfied.
    pub forbids: Vec<String>,
    /// The policies to evaluate per call (none: no request is built).
    pub dynamic: Option<PolicySet>,
    /// The context fields those read (`None`: all).
    pub context: Option<Vec<String>>,
}

impl Plan {
    /// Evaluates the static runs of `shapes` (one action's) for `input`.
    pub(super) fn new(
        authorizer: &Authorizer,
        shapes: &[&Shape],
        input: &Input,
        scope: Scope,
    ) -> Result<Self, PolicyError> {
        let prefixes = PolicySet::from_policies(shapes.iter().map(|s| s.prefix.clone()))
            .map_err(|e| PolicyError::DuplicateId(e.to_string()))?;
        let (request, entities) = super::input::cedar_static(input, scope)?;
        let resp = authorizer.is_authorized(&request, &prefixes, &entities);
        let erred: HashSet<String> = resp
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    e.policy_id().to_string()
                }
            })
            .collect();
        let held: HashSet<String> = match resp.decision() {
            CedarDecision::Allow => resp
                .diagnostics()
                .reason()
                .map(|id| id.to_string())
                .collect(),
            CedarDecision::Deny => HashSet::new(),
        };
        let mut plan = Self {
            permits: Vec::new(),
            forbids: Vec::new(),
            dynamic: None,
            context: Some(Vec::new()),
        };
        let mut dynamic = Vec::new();
        let mut fields = Some(BTreeSet::new());
        for s in shapes {
            if erred.contains(&s.id) || (held.contains(&s.id) && !s.whole) {
                dynamic.push(s.policy.clone());
                fields = match (fields, &s.context) {
                    (Some(mut f), Some(more)) => {
                        f.extend(more.iter().cloned());
                        Some(f)
                    }
                    _ => None,
                };
            } else if held.contains(&s.id) {
                match s.forbid {
                    true => plan.forbids.push(s.id.clone()),
                    false => plan.permits.push(s.id.clone()),
                }
            }
        }
        plan.context = fields.map(|f| f.into_iter().collect());
        if !dynamic.is_empty() {
            plan.dynamic = Some(
                PolicySet::from_policies(dynamic)
                    .map_err(|e| PolicyError::DuplicateId(e.to_string()))?,
            );
        }
        Ok(plan)
    }
}

/// The shapes of each action's policies, by their action constraint (an
/// action outside the schema matches none).
pub(super) fn by_action(shapes: &[Shape]) -> HashMap<&'static str, Vec<usize>> {
    use cedar_policy::ActionConstraint;
    let mut by_action: HashMap<&'static str, Vec<usize>> =
        super::ACTIONS.iter().map(|a| (*a, Vec::new())).collect();
    for (n, s) in shapes.iter().enumerate() {
        let targets: Vec<String> = match s.policy.action_constraint() {
            ActionConstraint::Any => super::ACTIONS.iter().map(|a| a.to_string()).collect(),
            ActionConstraint::Eq(a) => vec![a.id().unescaped().to_string()],
            ActionConstraint::In(v) => v.iter().map(|a| a.id().unescaped().to_string()).collect(),
        };
        for t in targets {
            if let Some(list) = by_action.get_mut(t.as_str()) {
                list.push(n);
            }
        }
    }
    by_action
}
