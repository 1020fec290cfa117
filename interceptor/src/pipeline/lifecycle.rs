//! Events that happen outside any exchange: a tool pinned or changed, an
//! approval asked for or decided, a grant added, revoked or refused, a
//! policy loaded, the agent started.
//!
//! They reach the audit the one way every emitter uses: an [`Events`]
//! handle, which masks their names and free text with the agent's `[mask]`
//! (they never pass the pipeline's masking phase) and hands them to the one
//! [`LifecycleSink`] the agent wired (the audit). Emitters (approvals, tool
//! pins) hold no audit handle, so they never depend on `audit`.

use std::sync::Arc;

use super::CallFacts;

/// What a lifecycle event is about, beyond its kind and message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum About {
    /// The agent itself (a policy load, a start, a tool pinned).
    #[default]
    Agent,
    /// A step of an approval request.
    Approval {
        /// The request's id.
        id: String,
        /// The call the request is bound to.
        call: CallFacts,
        /// JSON of the call's arguments, already masked by the emitter
        /// (none where the step must not show them).
        arguments: Option<String>,
        /// The policies that asked for approval.
        policies: Vec<String>,
    },
    /// A grant added, revoked, expired or refused.
    Grant {
        /// The grant's id (none for a refused one: it never existed).
        id: Option<String>,
        /// The subject the grant is for.
        subject: String,
        /// The tool name glob the grant covers.
        tool: String,
    },
}

/// One event outside an exchange: what happened, what it is about, who
/// acted and what was decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// The audit row kind (`tool_pinned`, `approval_requested`, ...).
    pub kind: String,
    /// What happened, for a person reading the row.
    pub message: String,
    /// The approval or grant the event is about.
    pub about: About,
    /// Who acted: the approvers, or who granted, revoked or looked.
    pub approvers: Vec<String>,
    /// The decision taken: an approval's status, a grant refused.
    pub decision: Option<String>,
    /// The policy set in force, for events that report it (heartbeats);
    /// the audit adds the signed bundle it came from.
    pub policy_version: Option<String>,
}

#[cfg(test)]
impl LifecycleEvent {
    /// An `approval_requested` step of request `apr-1` for `call`, for
    /// unit tests.
    pub(crate) fn approval_requested(message: &str, call: CallFacts) -> Self {
        let mut e = Self::new("approval_requested", message);
        e.about = About::Approval {
            id: "apr-1".into(),
            call,
            arguments: None,
            policies: Vec::new(),
        };
        e
    }
}

impl LifecycleEvent {
    /// An event with only its kind and message set.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// The names in the event a mask must see: the message, and the call's
    /// target or the grant's tool.
    fn texts(&mut self) -> impl Iterator<Item = &mut String> {
        let name = match &mut self.about {
            About::Agent => None,
            About::Approval { call, .. } => call.target.as_mut(),
            About::Grant { tool, .. } => Some(tool),
        };
        std::iter::once(&mut self.message).chain(name)
    }
}

/// Where lifecycle events are recorded (the audit implements it).
pub trait LifecycleSink: Send + Sync {
    /// Records one event; must not block on I/O longer than an exchange's
    /// `record` would.
    fn lifecycle(&self, event: LifecycleEvent);
}

/// Masks one text; `None` when nothing in it is sensitive.
pub type TextMask = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The handle every emitter of lifecycle events holds: the one sink and the
/// mask in force. Cloning is cheap; the default records nothing (audit off,
/// or a test that does not look).
#[derive(Clone, Default)]
pub struct Events {
    sink: Option<Arc<dyn LifecycleSink>>,
    mask: Option<TextMask>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("sink", &self.sink.is_some())
            .field("mask", &self.mask.is_some())
            .finish()
    }
}

impl Events {
    /// Events go to `sink` (none: dropped), their names and messages
    /// masked by `mask` first (none: kept as made). The agent passes a mask
    /// that follows `[mask]` across reloads.
    pub fn new(sink: Option<Arc<dyn LifecycleSink>>, mask: Option<TextMask>) -> Self {
        Self { sink, mask }
    }

    /// Whether emitted events are recorded anywhere.
    pub fn is_recorded(&self) -> bool {
        self.sink.is_some()
    }

    /// Masks `event`'s message and the name it carries (tool, resource or
    /// prompt), then records it.
    pub fn emit(&self, mut event: LifecycleEvent) {
        let Some(sink) = &self.sink else { return };
        if let Some(mask) = &self.mask {
            for s in event.texts() {
                if let Some(m) = mask(s) {
                    *s = m;
                }
            }
        }
        sink.lifecycle(event);
    }
}

#[cfg(test)]
mod tests;
