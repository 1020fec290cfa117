//! In-band approvals for MCP 2026-07-28 clients: where retry mode would
//! refuse a call with "approval pending" (-32003), a stateless client that
//! takes URL-mode elicitation gets an `input_required` result instead. Its
//! one input request (key [`KEY`]) is a URL elicitation naming the
//! approval and where to approve it; its `requestState` is the agent's own,
//! sealed (`super::super::sealed`). The client shows it to its user and
//! repeats the call with the state and an answer under [`KEY`]; the agent
//! checks the state (refusing a forged, expired, other caller's or other
//! call's one), removes its own state and answer, and judges the call as
//! retry mode does: approved, released once (without them); still
//! pending, the same answer again; denied or expired, refused.
//!
//! The URL: `approvals.approve_url` and the id when set; else
//! `urn:mcp-interceptor:approval:<id>`, an absolute URI as the schema's
//! `url` asks, which names the approval without pretending to be a page,
//! while the message gives the `mcp-interceptor approvals approve` command.
//!
//! A `requestState` not of the agent's form (`sealed::PREFIX`) is the
//! server's and passes untouched, as do the server's own input responses:
//! only the agent's are removed.

use serde_json::{Value, json};

use super::{ApprovalPhase, Slot, note, released};
use crate::{
    approval::{
        Approval, ApprovalError, Approvals, Call,
        sealed::{self, Claims, StateError},
        secs_us,
        state::Status,
    },
    error::{Reason, Refusal},
    jsonrpc::{
        Message,
        mcp_names::{
            INPUT_RESPONSES as RESPONSES, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION,
            REQUEST_STATE as STATE,
        },
    },
    pipeline::{CallFacts, MessageCtx, Transport, Verdict, event::now_us},
};

/// The key of the agent's own input request and of the client's answer.
pub const KEY: &str = "mcp-interceptor/approval";

/// Whether `msg` may be answered in band: a stateless request of protocol
/// 2026-07-28 or later, of a method that may carry input requests, whose
/// client declares URL-mode elicitation (`elicitation.url`; a bare
/// `elicitation: {}` means form mode only).
pub fn accepts(ctx: &MessageCtx<'_>, msg: &Message) -> bool {
    if ctx.transport != Transport::Stateless
        || !matches!(
            msg.method(),
            Some("tools/call" | "resources/read" | "prompts/get")
        )
    {
        return false;
    }
    let meta = msg.params().and_then(|p| p.get("_meta"));
    let version = meta
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .or(ctx.protocol_version);
    version.is_some_and(|v| v >= "2026-07-28")
        && meta
            .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
            .and_then(|c| c.get("elicitation"))
            .and_then(|e| e.get("url"))
            .is_some_and(Value::is_object)
}

/// What a request carries of the agent's own round.
struct Own {
    /// The agent's `requestState`, echoed.
    state: Option<String>,
    /// The client's answer under [`KEY`].
    response: Option<Value>,
}

impl Own {
    fn of(msg: &Message) -> Option<Self> {
        let p = msg.params()?;
        let state = p
            .get(STATE)
            .and_then(Value::as_str)
            .filter(|s| sealed::is_ours(s))
            .map(str::to_owned);
        let response = p.get(RESPONSES).and_then(|r| r.get(KEY)).cloned();
        (state.is_some() || response.is_some()).then_some(Self { state, response })
    }

    /// The user's "decline" or "cancel", if that was the answer.
    fn declined(&self) -> Option<String> {
        let action = self.response.as_ref()?.get("action")?.as_str()?;
        matches!(action, "decline" | "cancel").then(|| action.to_owned())
    }
}

/// `msg` without the agent's own `requestState` and input response (an
/// `inputResponses` left empty goes too); the server's pass as they are.
fn stripped(msg: &Message) -> Value {
    let mut v = msg.value.clone();
    if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut) {
        if p.get(STATE)
            .and_then(Value::as_str)
            .is_some_and(sealed::is_ours)
        {
            p.remove(STATE);
        }
        if let Some(Value::Object(r)) = p.get_mut(RESPONSES) {
            r.remove(KEY);
            if r.is_empty() {
                p.remove(RESPONSES);
            }
        }
    }
    v
}

/// `verdict`, except that a message that goes upstream (now, or once a
/// hold ends) goes without the agent's own state and answer, whatever
/// mode or client: the server never asked for them.
pub fn without_own(msg: &Message, verdict: Verdict) -> Verdict {
    if Own::of(msg).is_none() {
        return verdict;
    }
    let clean = stripped(msg);
    match verdict {
        Verdict::Continue => Verdict::Rewrite(clean),
        Verdict::Hold(fut) => Verdict::Hold(Box::pin(async move {
            match fut.await {
                Verdict::Continue => Verdict::Rewrite(clean),
                v => v,
            }
        })),
        v => v,
    }
}

impl Approvals {
    /// The agent's sealed `requestState` for waiting on `a`: valid while
    /// `a` may be decided and then used.
    fn seal_state(&self, a: &Approval, facts: &CallFacts) -> String {
        self.state_key.seal(&Claims {
            approval: a.id.clone(),
            issuer: facts.issuer.clone(),
            subject: facts.subject.clone(),
            call: sealed::call_key(facts),
            expires_us: a.expires_us + secs_us(self.cfg.valid_seconds),
        })
    }

    /// The approval an echoed state names, if it is this agent's, this
    /// caller's and this call's, and not expired.
    fn open_state(&self, token: &str, facts: &CallFacts) -> Result<String, StateError> {
        let claims = self.state_key.open(token)?;
        claims.check(facts, now_us())?;
        Ok(claims.approval)
    }
}

impl ApprovalPhase {
    /// Retry mode for a client answered in band (see the module docs).
    pub(super) fn inband(&self, msg: &Message, call: &Call, reason: &str, slot: &Slot) -> Verdict {
        let own = Own::of(msg);
        let mut named = None;
        if let Some(state) = own.as_ref().and_then(|o| o.state.as_deref()) {
            match self.approvals.open_state(state, &call.facts) {
                Ok(id) => named = Some(id),
                Err(e) => return invalid_state(e),
            }
        }
        if let (Some(id), Some(action)) = (&named, own.as_ref().and_then(Own::declined)) {
            return self.declined(id, &action, slot);
        }
        match self.approvals.consume(&call.digest()) {
            Ok(Some(a)) => {
                note(slot, &a);
                return Verdict::Continue;
            }
            Ok(None) => {}
            Err(e) => return self.unavailable(&e),
        }
        // The approval the client waited on was decided against it (or
        // lapsed): today's refusal, not a new request behind its back.
        if let Some(id) = &named {
            match self.approvals.get(id) {
                Ok(a) if !matches!(a.status, Status::Pending | Status::Approved) => {
                    return released(&self.approvals, a, slot);
                }
                Ok(_) | Err(ApprovalError::NotFound(_)) => {}
                Err(e) => return self.unavailable(&e),
            }
        }
        let a = match self.pending_or_new(call) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        note(slot, &a);
        Verdict::Answer(self.input_required(&a, &call.facts, reason))
    }

    /// The `input_required` result asking the client to wait for `a`.
    fn input_required(&self, a: &Approval, facts: &CallFacts, reason: &str) -> Value {
        let cfg = self.approvals.config();
        let url = match &cfg.approve_url {
            Some(_) => self.approvals.how_to_approve(&a.id),
            None => format!("urn:mcp-interceptor:approval:{}", a.id),
        };
        let message = format!(
            "Approval required: {reason}. Approval {} waits for {} approver(s) from {}; \
             approve: {}. Once approved, continue within {} s.",
            a.id,
            a.rule.quorum,
            a.rule.groups_text(),
            self.approvals.how_to_approve(&a.id),
            cfg.valid_seconds
        );
        json!({
            "resultType": "input_required",
            "inputRequests": { KEY: {
                "method": "elicitation/create",
                "params": { "mode": "url", "message": message, "url": url },
            }},
            "requestState": self.approvals.seal_state(a, facts),
        })
    }

    /// The user would not wait for approval `id`: the call is refused and
    /// a request still pending is abandoned, so no approver acts on it.
    fn declined(&self, id: &str, action: &str, slot: &Slot) -> Verdict {
        let mut status = "unknown";
        if let Ok(a) = self.approvals.get(id) {
            if let Some(p) = a.pending() {
                let why = format!("the caller's user answered the approval request {action:?}");
                let _ = self.approvals.settle(&why, |db, why| p.abandon(db, why));
            }
            note(slot, &a);
            status = self
                .approvals
                .get(id)
                .map_or(a.status, |a| a.status)
                .as_str();
        }
        Verdict::Deny(
            Refusal::new(
                Reason::ApprovalExpired,
                format!(
                    "the user answered approval request {id} with {action:?}: the call was not made (approval {id} is {status})"
                ),
            )
            .with_data(json!({ "approval_id": id, "status": status })),
        )
    }
}

/// The refusal of a retry whose `requestState` has the agent's form but
/// does not hold: an expired one is an expired approval round; any other
/// is not a request the agent will pass.
fn invalid_state(e: StateError) -> Verdict {
    tracing::warn!(error = %e, "retry with an invalid agent requestState refused");
    let reason = match e {
        StateError::Expired => Reason::ApprovalExpired,
        _ => Reason::InvalidRequest,
    };
    Verdict::Deny(
        Refusal::new(
            reason,
            format!(
                "{e}; repeat the call without it (and without inputResponses[{KEY:?}]) to ask for approval anew"
            ),
        )
        .with("request_state", e.as_str()),
    )
}

#[cfg(test)]
mod tests;
