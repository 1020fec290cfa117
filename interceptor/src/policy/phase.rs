//! The policy stage in the pipeline: decides each client request and each
//! server request, filters list answers to what the caller may use, and
//! applies call budgets.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::{
    Input, Policies,
    budget::{self, Budgets},
    names::{self, Known},
};
use crate::{
    config::Config,
    error::{Reason, Refusal},
    jsonrpc::{Kind, Message},
    pipeline::{Decision, Effect, MessageCtx, Phase, Verdict},
};

/// Server requests that go through policy; denied unless permitted.
const POLICED_SERVER_REQUESTS: &[&str] =
    &["sampling/createMessage", "elicitation/create", "roots/list"];

/// The running policy set, swapped whole on reload.
pub type Shared = Arc<RwLock<Arc<Policies>>>;

/// Active just-in-time grants as the policy context sees them. The
/// approvals stage keeps them; policy only asks (data flows one way).
pub trait Grants: Send + Sync {
    /// Tool patterns of `subject`'s active grants on `server` that cover
    /// `tool` (e.g. `db.*`); empty when none does.
    fn covering(&self, issuer: &str, subject: &str, server: &str, tool: &str) -> Vec<String>;
}

/// The pipeline phase that decides calls with Cedar policies.
pub struct PolicyPhase {
    policies: Shared,
    cfg: Arc<Config>,
    budgets: Budgets,
    /// Set when an approvals stage follows: an `@approval` decision is
    /// then passed on to it instead of refused here.
    approvals: Option<Arc<dyn Grants>>,
    /// Tool and prompt names the servers listed: what a case variant is
    /// told apart from. Shared across config reloads: a reload does not
    /// make the servers list again, so forgetting would let a case variant
    /// through until the next list.
    known: Arc<Known>,
}

impl PolicyPhase {
    /// Builds the phase over the shared policy set.
    pub fn new(cfg: Arc<Config>, policies: Shared) -> Self {
        Self {
            budgets: Budgets::new(cfg.policy.budgets.clone()),
            policies,
            cfg,
            approvals: None,
            known: Arc::default(),
        }
    }

    /// Budgets over `table`, which outlives config reloads so that a
    /// reload never refills a bucket.
    pub fn with_budget_table(mut self, table: &budget::Table) -> Self {
        self.budgets = Budgets::sharing(self.cfg.policy.budgets.clone(), table);
        self
    }

    /// Names learnt in `known`, which outlives config reloads.
    pub fn with_known(mut self, known: &Arc<Known>) -> Self {
        self.known = known.clone();
        self
    }

    /// With an approvals stage after this one, which also keeps `grants`.
    pub fn with_approvals(mut self, grants: Arc<dyn Grants>) -> Self {
        self.approvals = Some(grants);
        self
    }

    /// `input` with the caller's grants that cover it (a tools/call, when
    /// approvals are on).
    fn granted(&self, mut input: Input) -> Input {
        if let (Some(g), "tools/call", Some(tool)) = (
            &self.approvals,
            input.method.as_str(),
            input.target.as_deref(),
        ) {
            input.grants = g.covering(&input.issuer, &input.subject, &input.server, tool);
        }
        input
    }

    fn current(&self) -> Arc<Policies> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Decides; a failure to express the question in Cedar is a deny.
    fn decide(&self, input: &Input) -> Decision {
        let p = self.current();
        p.decide(input).unwrap_or_else(|e| {
            tracing::warn!(error = %e, subject = %input.subject, "policy input refused");
            Decision {
                effect: Effect::Deny,
                policies: Vec::new(),
                version: p.version.clone(),
                mask: None,
                approval: None,
                reason: e.to_string(),
                errors: vec![e.to_string()],
            }
        })
    }

    /// A tool or prompt name policy cannot judge as written: outside the
    /// MCP character set, or a case variant of a name the server listed.
    fn check_name(
        &self,
        ctx: &MessageCtx<'_>,
        method: &str,
        name: Option<&str>,
    ) -> Option<Verdict> {
        let kind = match method {
            "tools/call" => "tools",
            "prompts/get" => "prompts",
            _ => return None,
        };
        let name = name?;
        let why = if self.cfg.policy.strict_names {
            names::check(name).err()
        } else {
            None
        };
        let why = why.or_else(|| {
            let server = super::tool_pins::server_key(&self.cfg, ctx.conn.orig_dst.port());
            self.known.case_variant(&server, kind, name).map(|listed| {
                format!(
                    "{name:?} is not listed by the server, {listed:?} is; names are case-sensitive"
                )
            })
        })?;
        tracing::info!(conn = ctx.conn.id, method, name = %name.escape_default(), reason = %why, "name refused before policy");
        Some(Verdict::Deny(Refusal::new(
            Reason::InvalidName,
            format!("invalid {} name: {why}", &kind[..kind.len() - 1]),
        )))
    }

    fn refusal(&self, d: &Decision, method: &str) -> Verdict {
        let data = json!({ "policies": d.policies, "policy_version": d.version });
        match d.effect {
            Effect::Approval => Verdict::Deny(
                Refusal::new(
                    Reason::ApprovalRequired,
                    format!("{}; approvals are not enabled on this agent", d.reason),
                )
                .with_data(data),
            ),
            _ if method == "tools/call" && self.cfg.policy.deny_as_tool_result => {
                Verdict::Answer(json!({
                    "content": [{ "type": "text", "text": format!("Denied by the MCP security policy: {}", d.reason) }],
                    "isError": true,
                }))
            }
            _ => Verdict::Deny(
                Refusal::new(Reason::PolicyDenied, format!("denied: {}", d.reason)).with_data(data),
            ),
        }
    }
}

/// The policy question for one message, as the live proxy asks it.
pub fn input_for(
    cfg: &Config,
    ctx: &MessageCtx<'_>,
    method: &str,
    target: Option<String>,
    arguments: Option<Value>,
    listing: bool,
) -> Option<Input> {
    let caller = ctx.caller?;
    let port = ctx.conn.orig_dst.port();
    let server = super::tool_pins::server_key(cfg, port);
    Some(Input {
        subject: caller.subject.clone(),
        groups: caller.groups.clone(),
        auth_method: caller.method.as_str().to_string(),
        issuer: caller.issuer.clone().unwrap_or_default(),
        client_id: caller.client_id.clone().unwrap_or_default(),
        scopes: caller.scopes.clone(),
        server,
        server_address: ctx.conn.orig_dst.ip().to_string(),
        server_port: port,
        method: method.to_string(),
        target,
        arguments,
        client_name: ctx.client_name.unwrap_or_default().to_string(),
        client_version: ctx.client_version.unwrap_or_default().to_string(),
        source_ip: ctx.conn.client.ip(),
        session_id: ctx.session_id.unwrap_or_default().to_string(),
        transport: transport_name(ctx),
        time: crate::pipeline::event::now_us() / 1_000_000,
        grants: Vec::new(),
        listing,
        process: caller
            .process
            .as_deref()
            .map(super::input::ProcessContext::of),
    })
}

fn transport_name(ctx: &MessageCtx<'_>) -> String {
    serde_json::to_value(ctx.transport)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The arguments a method's policy sees.
pub fn arguments_of(msg: &Message) -> Option<Value> {
    match msg.method() {
        Some("tools/call" | "prompts/get") => {
            msg.params().and_then(|p| p.get("arguments")).cloned()
        }
        // Input to the task's tool, judged as its arguments are.
        Some("tasks/update") => msg.params().and_then(|p| p.get("inputResponses")).cloned(),
        _ => None,
    }
}

impl Phase for PolicyPhase {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn on_request(&self, ctx: &MessageCtx<'_>, msg: &Message) -> Verdict {
        // Notifications cannot be answered and replies answer the server:
        // neither is a request the caller makes of the server.
        if msg.kind != Kind::Request {
            return Verdict::Continue;
        }
        let method = msg.method().unwrap_or_default();
        // A task names no tool itself: the transport found its call's.
        let target = msg
            .target()
            .map(str::to_owned)
            .or_else(|| ctx.notes.task_tool.clone());
        if let Some(refusal) = self.check_name(ctx, method, target.as_deref()) {
            return refusal;
        }
        let input = input_for(
            &self.cfg,
            ctx,
            method,
            target.clone(),
            arguments_of(msg),
            false,
        );
        let Some(input) = input.map(|i| self.granted(i)) else {
            return Verdict::Deny(Refusal::new(Reason::PolicyDenied, "denied: no identity"));
        };
        let d = self.decide(&input);
        ctx.notes.set_decision(d.clone());
        let passed_on = d.effect == Effect::Approval && self.approvals.is_some();
        if d.effect != Effect::Allow && !passed_on {
            tracing::info!(conn = ctx.conn.id, subject = %input.subject, method, target = ?target, reason = %d.reason, "policy refused");
            return self.refusal(&d, method);
        }
        if method == "tools/call"
            && !self.budgets.is_empty()
            && let Err(over) = self.budgets.take(
                &input.issuer,
                &input.subject,
                target.as_deref().unwrap_or_default(),
            )
        {
            tracing::info!(subject = %input.subject, tool = ?target, "call budget exceeded");
            return Verdict::Deny(
                Refusal::new(
                    Reason::BudgetExceeded,
                    format!(
                        "call budget exceeded: {} calls per minute for {}; retry in {:.0} s",
                        over.per_minute,
                        over.tool_glob,
                        over.retry_after_secs.ceil()
                    ),
                )
                .with("retry_after_seconds", over.retry_after_secs.ceil()),
            );
        }
        Verdict::Continue
    }

    fn polices_server_requests(&self) -> bool {
        true
    }

    fn on_server_request(&self, ctx: &MessageCtx<'_>, msg: &Message) -> Option<Refusal> {
        let method = msg.method().unwrap_or_default();
        if !POLICED_SERVER_REQUESTS.contains(&method) {
            return None;
        }
        let d = match input_for(&self.cfg, ctx, method, None, None, false) {
            Some(input) => self.decide(&input),
            None => {
                return Some(Refusal::new(Reason::PolicyDenied, "denied: no identity"));
            }
        };
        ctx.notes.set_decision(d.clone());
        (d.effect != Effect::Allow).then(|| {
            Refusal::new(
                Reason::PolicyDenied,
                format!("denied by the client's security policy: {}", d.reason),
            )
        })
    }

    fn on_server_notification(&self, ctx: &MessageCtx<'_>, msg: &Message) -> Option<Refusal> {
        if msg.method() != Some(super::cache_scope::RESOURCE_UPDATED) {
            return None;
        }
        // Judged as `resources/list` shows the resource: a caller hears
        // of changes to exactly the resources it is shown.
        let uri = msg.target().unwrap_or_default();
        let Some(d) = self.listing(ctx, "resources/read", uri) else {
            return Some(Refusal::new(Reason::PolicyDenied, "denied: no identity"));
        };
        ctx.notes.set_decision(d.clone());
        (d.effect == Effect::Deny).then(|| {
            Refusal::new(
                Reason::PolicyDenied,
                format!("the caller may not read {uri}: {}", d.reason),
            )
        })
    }

    fn on_server_message(&self, ctx: &MessageCtx<'_>, msg: &mut Message) {
        let filtered = self.filter_list(ctx, msg);
        let shared = super::cache_scope::shared(ctx, msg);
        if filtered.is_none() && !shared {
            return;
        }
        let mut value = msg.value.clone();
        if let Some((list, kept)) = filtered {
            value["result"][list] = Value::Array(kept);
        }
        if shared {
            super::cache_scope::make_private(&mut value);
        }
        if let Err(e) = msg.rewrite(value) {
            tracing::error!(error = %e, "filtered answer did not rewrite");
        }
    }
}

impl PolicyPhase {
    /// A list answer without what the caller may not use: the list's
    /// member and what is kept, when something was taken out.
    fn filter_list(
        &self,
        ctx: &MessageCtx<'_>,
        msg: &Message,
    ) -> Option<(&'static str, Vec<Value>)> {
        let (list, key, action) = match ctx.request_method {
            Some("tools/list") => ("tools", "name", "tools/call"),
            Some("resources/list") => ("resources", "uri", "resources/read"),
            Some("prompts/list") => ("prompts", "name", "prompts/get"),
            _ => return None,
        };
        let items = msg.result()?.get(list)?.as_array()?;
        if list != "resources" {
            let server = super::tool_pins::server_key(&self.cfg, ctx.conn.orig_dst.port());
            let names = items.iter().filter_map(|i| i.get(key)?.as_str());
            self.known.learn(&server, list, names);
        }
        let kept: Vec<Value> = items
            .iter()
            .filter(|item| {
                let Some(name) = item.get(key).and_then(Value::as_str) else {
                    return false;
                };
                self.listing(ctx, action, name)
                    .is_some_and(|d| d.effect != Effect::Deny)
            })
            .cloned()
            .collect();
        (kept.len() != items.len()).then_some((list, kept))
    }

    /// The decision on `action` over `target` with no arguments, as a
    /// listing asks it (`context.listing`): what decides whether a caller
    /// is shown an item, or hears that it changed. `None`: no identity.
    fn listing(&self, ctx: &MessageCtx<'_>, action: &str, target: &str) -> Option<Decision> {
        let input = input_for(&self.cfg, ctx, action, Some(target.into()), None, true)?;
        Some(self.decide(&self.granted(input)))
    }
}

#[cfg(test)]
mod tests;
