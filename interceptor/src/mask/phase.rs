//! The masking stage: server messages are masked one at a time as they
//! pass (each JSON body or SSE event is one message, so nothing more is
//! buffered), server text that is no JSON-RPC message is masked as text
//! (or dropped when it is not UTF-8), and every event is masked again
//! before it is recorded, so the audit and the events file never hold a
//! raw value an enabled detector matches: request arguments go upstream
//! unchanged but are stored masked, and so are the names, URIs and ids
//! the record keeps (a resource URI or a JSON-RPC id can be an e-mail
//! address). Who the caller is (subject, issuer, groups, certificate) is
//! kept as verified: an audit must name who acted.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::{Counts, Masker, Profile};
use crate::{
    jsonrpc::{Kind, Message},
    pipeline::{ExchangeEvent, MessageCtx, Phase},
};

/// The pipeline phase that masks sensitive values.
pub struct MaskPhase {
    masker: Arc<Masker>,
    /// Whether any profile masks anything (a policy's `@mask` may pick a
    /// profile other than the default, so all are asked).
    active: bool,
}

impl MaskPhase {
    /// Builds the phase over a masker.
    pub fn new(masker: Arc<Masker>) -> Self {
        let active = masker
            .profile_names()
            .any(|n| masker.profile(Some(n)).is_active());
        Self { masker, active }
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

    fn on_server_data(&self, ctx: &MessageCtx<'_>, data: Bytes) -> Option<Bytes> {
        let profile = self.masker.profile(ctx.mask_profile);
        if !profile.is_active() {
            return Some(data);
        }
        let Ok(text) = std::str::from_utf8(&data) else {
            tracing::warn!(
                conn = ctx.conn.id,
                bytes = data.len(),
                "server data that is not UTF-8 dropped: it cannot be masked"
            );
            return None;
        };
        let mut counts = Counts::new();
        let masked = match serde_json::from_str::<Value>(text) {
            // JSON that is no JSON-RPC message (a batch with one bad
            // member): walked as JSON, so sensitive key names count too.
            Ok(mut v) => profile
                .mask_json(&mut v, &mut counts)
                .then(|| serde_json::to_vec(&v).unwrap_or_default()),
            Err(_) => profile.mask_str(text, &mut counts).map(String::into_bytes),
        };
        let Some(masked) = masked else {
            return Some(data);
        };
        tracing::info!(
            conn = ctx.conn.id,
            profile = profile.name(),
            masked = ?counts,
            "masked server data that is no JSON-RPC message"
        );
        Some(Bytes::from(masked))
    }

    fn rewrites_server_data(&self) -> bool {
        self.active
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
        for v in [&mut ev.params, &mut ev.error, &mut ev.jsonrpc_id]
            .into_iter()
            .flatten()
        {
            profile.mask_json(v, &mut ignored);
        }
        if ev.masked_with.as_deref() != Some(profile.name())
            && let Some(r) = &mut ev.result
        {
            profile.mask_json(r, &mut ignored);
        }
        let text = [
            &mut ev.target,
            &mut ev.session_id,
            &mut ev.method,
            &mut ev.client_name,
            &mut ev.client_version,
            &mut ev.protocol_version,
        ];
        for s in text.into_iter().flatten() {
            mask_text(profile, s, &mut ignored);
        }
        mask_text(profile, &mut ev.http_path, &mut ignored);
        if let Some(d) = &mut ev.decision {
            // The reason names the target ("tools/call on <name> ...").
            mask_text(profile, &mut d.reason, &mut ignored);
            for e in &mut d.errors {
                mask_text(profile, e, &mut ignored);
            }
        }
    }
}

fn mask_text(profile: &Profile, s: &mut String, counts: &mut Counts) {
    if let Some(m) = profile.mask_str(s, counts) {
        *s = m;
    }
}

#[cfg(test)]
mod tests;
