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

/// Values masked in one message, per detector.
pub type MaskCounts = std::collections::BTreeMap<String, u32>;

/// Scratch space for one message.
#[derive(Debug, Default)]
pub struct Notes {
    decision: Mutex<Option<Decision>>,
    masked: Mutex<Option<(String, MaskCounts)>>,
}

impl Notes {
    pub fn set_decision(&self, d: Decision) {
        *self.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    }

    /// A masking phase rewrote this message with `profile`.
    pub fn set_masked(&self, profile: &str, counts: MaskCounts) {
        *self.masked.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((profile.to_string(), counts));
    }

    pub fn masked(&self) -> Option<(String, MaskCounts)> {
        self.masked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn decision(&self) -> Option<Decision> {
        self.decision
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
