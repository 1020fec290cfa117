//! The per-message context every phase can read and update (pingora's
//! per-request `CTX`): what a deciding phase concluded, carried into the
//! event, the audit row, and later phases.

use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

/// What a policy decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Let the call through.
    Allow,
    /// Refuse the call.
    Deny,
    /// Allowed once a human approves (`@approval` on the determining permit).
    Approval,
}

impl Effect {
    /// The effect's name as audited.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Approval => "approval",
        }
    }
}

/// A policy decision and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Determining policy ids: the permits that allowed, or the forbids
    /// that denied; empty for the default deny.
    pub policies: Vec<String>,
    /// SHA-256 of the policy set that decided.
    pub version: String,
    /// `@mask` of a determining permit: the masking profile.
    pub mask: Option<String>,
    /// `@approval` (and `@approval_quorum`, `@approval_mode`) of a
    /// determining permit: who must approve, how many, and how the caller
    /// waits.
    pub approval: Option<ApprovalRule>,
    /// One sentence for people: which policy, or that none permits.
    pub reason: String,
    /// Policies that failed to evaluate (and were skipped), with why.
    pub errors: Vec<String>,
}

/// How a call that needs approval is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRule {
    /// Approvers are members of any of these groups.
    pub groups: Vec<String>,
    /// Distinct approvers needed (N of the group's M members).
    pub quorum: u32,
    /// How votes are counted.
    pub mode: ApprovalMode,
}

impl ApprovalRule {
    /// `oncall` or `oncall, security`.
    pub fn groups_text(&self) -> String {
        self.groups.join(", ")
    }
}

/// How the caller experiences an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// The request stays open (kept alive) until approved, denied or
    /// timed out.
    Hold,
    /// The request is refused at once with the approval's id; the
    /// identical call passes once after approval.
    Retry,
}

/// An approval that let a call through (or is waiting for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalNote {
    /// The approval's id.
    pub id: String,
    /// Who approved.
    pub approvers: Vec<String>,
}

/// Tells the transport a message is held, so it keeps the client's
/// connection alive meanwhile (SSE comments, progress notifications).
#[derive(Debug, Default)]
pub struct HoldSignal {
    notify: tokio::sync::Notify,
    what: Mutex<Option<(String, Option<serde_json::Value>)>>,
}

impl HoldSignal {
    /// A phase started holding; `what` says why, for progress messages
    /// sent with the request's `progressToken`, if it had one.
    pub fn hold(&self, what: String, progress_token: Option<serde_json::Value>) {
        *lock(&self.what) = Some((what, progress_token));
        self.notify.notify_one();
    }

    /// Resolves once a phase holds a message.
    pub async fn held(&self) {
        self.notify.notified().await
    }

    /// What the held call is: its method and arguments.
    pub fn what(&self) -> Option<(String, Option<serde_json::Value>)> {
        lock(&self.what).clone()
    }
}

/// Values masked in one message, per detector.
pub type MaskCounts = std::collections::BTreeMap<String, u32>;

/// Scratch space for one message.
#[derive(Debug, Default)]
pub struct Notes {
    decision: Mutex<Option<Decision>>,
    /// Shared, so a held message's future can fill it in when released.
    approval: std::sync::Arc<Mutex<Option<ApprovalNote>>>,
    /// Set by the transport when it can keep a held client waiting.
    pub hold: Option<std::sync::Arc<HoldSignal>>,
    masked: Mutex<Option<(String, MaskCounts)>>,
    /// Set by the transport on a `tasks/*` request: the tool of the call
    /// that created the task it names (policy judges it on that tool).
    pub task_tool: Option<String>,
}

impl Notes {
    /// Notes whose phases can tell the transport they hold the message.
    pub fn with_hold(hold: Option<std::sync::Arc<HoldSignal>>) -> Self {
        Self {
            hold,
            ..Self::default()
        }
    }

    /// Records the policy decision.
    pub fn set_decision(&self, d: Decision) {
        *lock(&self.decision) = Some(d);
    }

    /// A masking phase rewrote this message with `profile`.
    pub fn set_masked(&self, profile: &str, counts: MaskCounts) {
        *lock(&self.masked) = Some((profile.to_string(), counts));
    }

    /// The masking profile applied and what it masked.
    pub fn masked(&self) -> Option<(String, MaskCounts)> {
        lock(&self.masked).clone()
    }

    /// Records the approval the call waited on.
    pub fn set_approval(&self, a: ApprovalNote) {
        *lock(&self.approval) = Some(a);
    }

    /// Where a held message's future records the approval that released it.
    pub fn approval_slot(&self) -> std::sync::Arc<Mutex<Option<ApprovalNote>>> {
        self.approval.clone()
    }

    /// The approval the call waited on.
    pub fn approval(&self) -> Option<ApprovalNote> {
        lock(&self.approval).clone()
    }

    /// The decision's effect, without copying the decision.
    pub fn effect(&self) -> Option<Effect> {
        lock(&self.decision).as_ref().map(|d| d.effect)
    }

    /// The policy decision.
    pub fn decision(&self) -> Option<Decision> {
        lock(&self.decision).clone()
    }
}

/// The value behind `m`, even if a panicking holder poisoned it: notes
/// are plain data, valid whatever a phase did.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
