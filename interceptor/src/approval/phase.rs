//! The approvals stage in the pipeline: after policy said "approval
//! required", holds the call until approvers decide (`hold`), or refuses
//! it with the approval's id and lets the identical call through once
//! approved (`retry`); an MCP 2026-07-28 client that takes URL
//! elicitation is answered in band instead of refused (`inband`).

mod inband;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    Approval, Approvals, Call,
    state::{Pending, Status},
};
use crate::{
    config::Config,
    error::{Reason, Refusal},
    jsonrpc::{Kind, Message, mcp_names},
    pipeline::{
        ApprovalMode, ApprovalNote, CallFacts, Effect, MessageCtx, Phase, Verdict, event::now_us,
    },
    policy::phase::arguments_of,
};

/// The pipeline phase that holds calls until they are approved.
pub struct ApprovalPhase {
    approvals: Arc<Approvals>,
    cfg: Arc<Config>,
}

impl ApprovalPhase {
    /// Builds the phase over the shared approval queue.
    pub fn new(cfg: Arc<Config>, approvals: Arc<Approvals>) -> Self {
        Self { approvals, cfg }
    }

    fn unavailable(&self, e: &super::ApprovalError) -> Verdict {
        if let super::ApprovalError::Cap(cap) = e {
            return Verdict::Deny(Refusal::new(Reason::ApprovalCap, format!(
                    "approval refused: this caller already has {cap} pending approval requests (approvals.max_pending_per_caller = {cap}); wait for a decision"
                )).with_data(json!({ "reason": "approval_cap", "max_pending_per_caller": cap })));
        }
        tracing::error!(error = %e, "approvals unavailable: call refused");
        Verdict::Deny(Refusal::new(
            Reason::ApprovalExpired,
            "this call needs an approval, and the approvals store is unavailable; try again later",
        ))
    }

    /// The pending request for `call`, or a new one: `Err` is the
    /// refusal when the store fails.
    fn pending_or_new(&self, call: &Call) -> Result<Approval, Verdict> {
        match self.approvals.pending_for(call) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => self
                .approvals
                .request(call)
                .map_err(|e| self.unavailable(&e)),
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn retry(&self, call: &Call, reason: &str, slot: &Slot) -> Verdict {
        let digest = call.digest();
        match self.approvals.consume(&digest) {
            Ok(Some(a)) => {
                note(slot, &a);
                return Verdict::Continue;
            }
            Ok(None) => {}
            Err(e) => return self.unavailable(&e),
        }
        let a = match self.pending_or_new(call) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        note(slot, &a);
        let how = self.approvals.how_to_approve(&a.id);
        Verdict::Deny(Refusal::new(Reason::ApprovalRequired, format!(
                "approval required: {reason}. Approval {} is pending; once approved, retry the identical call (within {} s). Approve: {how}",
                a.id, self.approvals.config().valid_seconds
            )).with_data(json!({
                "approval_id": a.id,
                "status": a.status.as_str(),
                "approver_groups": a.rule.groups,
                "quorum": a.rule.quorum,
                "expires_at_unix": a.expires_us / 1_000_000,
                "approve": how,
                "policies": a.policies,
                "policy_version": a.call.policy_version,
            })))
    }

    fn hold(
        &self,
        ctx: &MessageCtx<'_>,
        call: &Call,
        slot: Slot,
        progress_token: Option<Value>,
    ) -> Verdict {
        let a = match self.approvals.request(call) {
            Ok(a) => a,
            Err(e) => return self.unavailable(&e),
        };
        note(&slot, &a);
        if let Some(h) = &ctx.notes.hold {
            h.hold(
                format!(
                    "waiting for approval {} by {}",
                    a.id,
                    a.rule.groups.join(", ")
                ),
                progress_token,
            );
        }
        let approvals = self.approvals.clone();
        let mut rx = approvals.subscribe(&a.id);
        let left = Duration::from_micros(u64::try_from(a.expires_us - now_us()).unwrap_or(0));
        let deadline = tokio::time::Instant::now() + left;
        let id = a.id.clone();
        let mut guard = Abandon {
            approvals: approvals.clone(),
            pending: a.pending(),
        };
        Verdict::Hold(Box::pin(async move {
            loop {
                let a = match approvals.get(&id) {
                    Ok(a) => a,
                    Err(e) => {
                        if let Some(p) = guard.disarm() {
                            let _ = approvals
                                .settle("the approvals store failed", |db, why| p.expire(db, why));
                        }
                        return unavailable_verdict(&e);
                    }
                };
                let Some(pending) = a.pending() else {
                    guard.disarm();
                    return released(&approvals, a, &slot);
                };
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            // The waiter was dropped after a final status:
                            // the loop reads it from the store.
                            rx = approvals.subscribe(&id);
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        let why = "no decision within approvals.hold_timeout_seconds";
                        let _ = approvals.settle(why, |db, why| pending.expire(db, why));
                    }
                }
            }
        }))
    }
}

type Slot = Arc<Mutex<Option<ApprovalNote>>>;

fn note(slot: &Slot, a: &Approval) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(ApprovalNote {
        id: a.id.clone(),
        approvers: a.votes.iter().map(|v| v.approver.clone()).collect(),
    });
}

fn unavailable_verdict(e: &super::ApprovalError) -> Verdict {
    tracing::error!(error = %e, "approvals unavailable: held call refused");
    Verdict::Deny(Refusal::new(
        Reason::ApprovalExpired,
        "the approvals store failed while the call was held",
    ))
}

/// The verdict for a held call whose approval left `pending`.
fn released(approvals: &Approvals, a: Approval, slot: &Slot) -> Verdict {
    let data = json!({ "approval_id": a.id, "status": a.status.as_str() });
    match a.status {
        Status::Approved => match a.approved().map(|ok| approvals.take(ok)) {
            Some(Ok(Some(a))) => {
                note(slot, &a);
                Verdict::Continue
            }
            _ => Verdict::Deny(
                Refusal::new(
                    Reason::ApprovalExpired,
                    format!("approval {} is no longer valid", a.id),
                )
                .with_data(data),
            ),
        },
        Status::Denied => {
            note(slot, &a);
            let why = a
                .votes
                .iter()
                .find(|v| !v.approve)
                .map(|v| format!("{}: {}", v.approver, v.reason))
                .unwrap_or_default();
            Verdict::Deny(
                Refusal::new(
                    Reason::ApprovalDenied,
                    format!("approval {} denied by {why}", a.id),
                )
                .with_data(data),
            )
        }
        _ => {
            note(slot, &a);
            Verdict::Deny(
                Refusal::new(
                    Reason::ApprovalExpired,
                    format!(
                        "approval {} {}: {}",
                        a.id,
                        a.status.as_str(),
                        a.reason.as_deref().unwrap_or("no decision")
                    ),
                )
                .with_data(data),
            )
        }
    }
}

/// A held call whose future is dropped (the caller went away) before a
/// decision: the request ends as abandoned, so a later "approve" can never
/// release anything.
struct Abandon {
    approvals: Arc<Approvals>,
    /// The request while the call waits on it.
    pending: Option<Pending>,
}

impl Abandon {
    /// The call no longer waits: the request is the caller's no more.
    fn disarm(&mut self) -> Option<Pending> {
        self.pending.take()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let _ = self
                .approvals
                .settle("the caller went away before a decision", |db, why| {
                    p.abandon(db, why)
                });
        }
    }
}

impl Phase for ApprovalPhase {
    fn name(&self) -> &'static str {
        "approval"
    }

    fn on_request(&self, ctx: &MessageCtx<'_>, msg: &Message) -> Verdict {
        inband::without_own(msg, self.decide(ctx, msg))
    }
}

impl ApprovalPhase {
    /// The verdict for `msg`, before the agent's own MRTR state and answer
    /// are taken out of what goes upstream.
    fn decide(&self, ctx: &MessageCtx<'_>, msg: &Message) -> Verdict {
        // Most calls need no approval: decided without copying anything.
        if msg.kind != Kind::Request || ctx.notes.effect() != Some(Effect::Approval) {
            return Verdict::Continue;
        }
        let Some(d) = ctx.notes.decision() else {
            return Verdict::Continue;
        };
        let (Effect::Approval, Some(rule)) = (d.effect, d.approval.clone()) else {
            return Verdict::Continue;
        };
        let Some(caller) = ctx.caller else {
            return Verdict::Deny(Refusal::new(
                Reason::ApprovalRequired,
                "approval required, and the caller has no identity",
            ));
        };
        let facts = CallFacts {
            subject: caller.subject.clone(),
            issuer: caller.issuer.clone().unwrap_or_default(),
            groups: caller.groups.clone(),
            server: crate::policy::tool_pins::server_key(&self.cfg, ctx.conn.orig_dst.port()),
            method: msg.method().unwrap_or_default().to_string(),
            target: msg.target().map(str::to_owned),
            arguments_sha256: String::new(),
            policy_version: d.version.clone(),
        };
        let arguments = match msg.method() {
            Some("tools/call" | "prompts/get") => arguments_of(msg),
            _ => msg.params().cloned().map(mcp_names::call_params),
        };
        let call = Call::new(facts, arguments, d.policies.clone(), rule);
        let slot = ctx.notes.approval_slot();
        match call.rule.mode {
            ApprovalMode::Retry if inband::accepts(ctx, msg) => {
                self.inband(msg, &call, &d.reason, &slot)
            }
            ApprovalMode::Retry => self.retry(&call, &d.reason, &slot),
            ApprovalMode::Hold => {
                let token = msg
                    .params()
                    .and_then(|p| p.get("_meta"))
                    .and_then(|m| m.get("progressToken"))
                    .cloned();
                self.hold(ctx, &call, slot, token)
            }
        }
    }
}
