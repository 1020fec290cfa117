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

/// One event outside an exchange, in the audit's terms (each field is the
/// audit column of the same name; unset fields stay empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// The audit row kind (`tool_pinned`, `approval_requested`, ...).
    pub kind: String,
    /// What happened, for a person reading the row.
    pub message: String,
    /// The caller's subject.
    pub subject: Option<String>,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The tool a `tools/call` names.
    pub tool_name: Option<String>,
    /// The resource URI a `resources/read` names.
    pub resource_uri: Option<String>,
    /// The prompt a `prompts/get` names.
    pub prompt_name: Option<String>,
    /// Canonical JSON of the call's arguments (already masked by the emitter).
    pub arguments: Option<String>,
    /// SHA-256 of the call's arguments.
    pub arguments_sha256: Option<String>,
    /// The approval involved.
    pub approval_id: Option<String>,
    /// Who approved.
    pub approvers: Vec<String>,
    /// The policy rules that matched.
    pub rule_ids: Vec<String>,
    /// The policy set version.
    pub policy_version: Option<String>,
    /// `approval` or `grant`: which mechanism decided.
    pub decided_by: Option<String>,
    /// The decision taken.
    pub decision: Option<String>,
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

    /// Sets the column that names `target` for `method`: the tool of a
    /// `tools/call`, the prompt of a `prompts/get`, the URI of a
    /// `resources/*` request; other methods name none.
    pub fn set_target(&mut self, method: &str, target: Option<String>) {
        match method {
            "tools/call" => self.tool_name = target,
            "prompts/get" => self.prompt_name = target,
            m if m.starts_with("resources/") => self.resource_uri = target,
            _ => {}
        }
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

    /// Masks `event`'s message, tool, resource and prompt, then records it.
    pub fn emit(&self, mut event: LifecycleEvent) {
        let Some(sink) = &self.sink else { return };
        if let Some(mask) = &self.mask {
            if let Some(m) = mask(&event.message) {
                event.message = m;
            }
            let names = [
                &mut event.tool_name,
                &mut event.resource_uri,
                &mut event.prompt_name,
            ];
            for s in names.into_iter().flatten() {
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
