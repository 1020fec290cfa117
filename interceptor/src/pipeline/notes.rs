//! The per-message context every phase can read and update (pingora's
//! per-request `CTX`): what a deciding phase concluded, carried into the
//! event, the audit row, and later phases.

use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
    /// Allowed once a human approves (`@approval` on the determining permit).
    Approval,
}

impl Effect {
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
    pub effect: Effect,
    /// Determining policy ids: the permits that allowed, or the forbids
    /// that denied; empty for the default deny.
    pub policies: Vec<String>,
    /// SHA-256 of the policy set that decided.
    pub version: String,
    /// `@mask` of a determining permit: the masking profile.
    pub mask: Option<String>,
    /// `@approval` of a determining permit: the approver group.
    pub approval: Option<String>,
    /// One sentence for people: which policy, or that none permits.
    pub reason: String,
    /// Policies that failed to evaluate (and were skipped), with why.
    pub errors: Vec<String>,
}

/// Scratch space for one message.
#[derive(Debug, Default)]
pub struct Notes {
    decision: Mutex<Option<Decision>>,
}

impl Notes {
    pub fn set_decision(&self, d: Decision) {
        *self.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    }

    pub fn decision(&self) -> Option<Decision> {
        self.decision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
