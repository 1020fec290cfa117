//! The masking stage: server messages are masked one at a time as they
//! pass (each JSON body or SSE event is one message, so nothing more is
//! buffered), and every event is masked again before it is recorded, so
//! the audit and the events file never hold a raw value an enabled
//! detector matches: request arguments go upstream unchanged but are
//! stored masked.

use std::sync::Arc;

use serde_json::Value;

use super::{Counts, Masker};
use crate::{
    mcp::jsonrpc::{Kind, Message},
    pipeline::{ExchangeEvent, MessageCtx, Phase},
};

pub struct MaskPhase {
    masker: Arc<Masker>,
}

impl MaskPhase {
    pub fn new(masker: Arc<Masker>) -> Self {
        Self { masker }
    }
}

/// The part of a message that carries data: a response's result, an
/// error, a request's or notification's params.
fn payload(msg: &mut Message) -> Option<&mut Value> {
    let key = match msg.kind {
        Kind::Response => "result",
        Kind::Error => "error",
        Kind::Request | Kind::Notification => "params",
    };
    msg.value.get_mut(key)
}

impl Phase for MaskPhase {
    fn name(&self) -> &'static str {
        "mask"
    }

    fn on_server_message(&self, ctx: &MessageCtx<'_>, msg: &mut Message) {
        let profile = self.masker.profile(ctx.mask_profile);
        if !profile.is_active() {
            return;
        }
        let mut counts = Counts::new();
        let changed = payload(msg).is_some_and(|v| profile.mask_json(v, &mut counts));
        if changed {
            // The original bytes no longer match the value: re-serialize.
            msg.raw = None;
        }
        ctx.notes.set_masked(profile.name(), counts);
    }

    fn prepares_records(&self) -> bool {
        true
    }

    /// The record is masked with the default profile whatever the answer
    /// was masked with (a policy may let a caller see more than the audit
    /// may keep); an answer already masked with it is not scanned twice.
    fn prepare_record(&self, ev: &mut ExchangeEvent) {
        let profile = self.masker.profile(None);
        if !profile.is_active() {
            return;
        }
        let mut ignored = Counts::new();
        for v in [&mut ev.params, &mut ev.error].into_iter().flatten() {
            profile.mask_json(v, &mut ignored);
        }
        if ev.masked_with.as_deref() != Some(profile.name())
            && let Some(r) = &mut ev.result
        {
            profile.mask_json(r, &mut ignored);
        }
    }
}
