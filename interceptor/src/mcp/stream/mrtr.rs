//! MCP 2026-07-28 multi round-trip requests (MRTR): a result with
//! `resultType: "input_required"` carries, in `inputRequests`, the
//! elicitation, sampling and roots requests a server used to send on its
//! own. Each entry is judged exactly as that server request would be
//! (`on_server_request`, then masking of its params) and gets a row of its
//! own. One refused, or one the agent cannot read, and nothing of the
//! result reaches the client: its call gets the refusal instead, so a
//! policy that denies elicitation is not bypassed by the new form.
//! `requestState` is opaque to the agent and passes as the server sent it.

use serde_json::{Map, Value};

use super::State;
use crate::{
    error::{Reason, Refusal},
    jsonrpc::{Kind, Message},
    mcp::{exchange, session::SessionInfo},
    pipeline::{Decision, Direction, EventKind, Notes},
};

/// The result field the client must echo untouched.
const STATE: &str = "requestState";

/// The requests an input request may be (the spec's `InputRequest`):
/// any other method is none the agent can judge, and a client that read
/// it some other way (a case variant, say) would act on it unjudged.
const INPUT_METHODS: &[&str] = &["elicitation/create", "sampling/createMessage", "roots/list"];

/// An input request refused: why, which phase said so, and the policy's
/// decision (if a policy decided).
struct Refused {
    refusal: Refusal,
    phase: &'static str,
    decision: Option<Decision>,
}

/// Whether `msg` is a response asking the client for input first.
pub(super) fn is_input_required(msg: &Message) -> bool {
    msg.kind == Kind::Response
        && msg
            .result()
            .and_then(|r| r.get("resultType"))
            .and_then(Value::as_str)
            == Some("input_required")
}

/// Runs `f` (the phases over the whole response) with `requestState` (and
/// a task's `taskId`) set aside, so no masking rewrites the state the
/// server will verify or the handle the client polls.
pub(super) fn keeping_state(msg: &mut Message, f: impl FnOnce(&mut Message)) {
    let kept: Vec<(&str, Value)> = [STATE, "taskId"]
        .into_iter()
        .filter_map(|k| Some((k, result_mut(msg)?.remove(k)?)))
        .collect();
    f(msg);
    if let Some(r) = result_mut(msg) {
        r.extend(kept.into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
}

fn result_mut(msg: &mut Message) -> Option<&mut Map<String, Value>> {
    msg.value.get_mut("result").and_then(Value::as_object_mut)
}

/// A refusal for an input request the agent cannot judge (fail closed).
fn unjudgeable(key: &str, why: &str) -> Refused {
    Refused {
        refusal: Refusal::new(
            Reason::UnjudgedServerMessage,
            format!("input request {key:?} cannot be judged ({why}); the result was not forwarded"),
        ),
        phase: "mcp",
        decision: None,
    }
}

impl State {
    /// Judges every input request of `msg`, an `input_required` answer to
    /// a call masked with `profile`: each gets a row, masked params are
    /// written back. `Err`: the errors for the client (the call's row is
    /// recorded as denied); the whole message must be dropped.
    pub(super) fn on_input_required(
        &self,
        msg: &mut Message,
        info: &SessionInfo,
        profile: Option<&str>,
    ) -> Result<(), Vec<Value>> {
        let entries = match msg.result().and_then(|r| r.get("inputRequests")) {
            // Only `requestState`: nothing is asked of the client.
            None => return Ok(()),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                let why = unjudgeable("inputRequests", "not an object");
                return Err(self.refuse_call(msg, Box::new(why)));
            }
        };
        let mut refused = None;
        let mut judged = Map::new();
        for (key, entry) in entries.iter() {
            match self.judge_input(msg, key, entry, info, profile) {
                Ok(v) => {
                    judged.insert(key.clone(), v);
                }
                Err(r) => {
                    refused.get_or_insert(r);
                }
            }
        }
        if let Some(r) = refused {
            return Err(self.refuse_call(msg, r));
        }
        if judged != entries
            && let Some(r) = result_mut(msg)
        {
            r.insert("inputRequests".into(), Value::Object(judged));
            // The value no longer matches the original bytes.
            msg.raw = None;
        }
        Ok(())
    }

    /// One input request (`key` of `entry`), judged as a server request of
    /// its method, recorded; `Ok`: the entry as the client may see it.
    fn judge_input(
        &self,
        call: &Message,
        key: &str,
        entry: &Value,
        info: &SessionInfo,
        profile: Option<&str>,
    ) -> Result<Value, Box<Refused>> {
        let Some(mut obj) = entry.as_object().cloned() else {
            return Err(self.record_unjudgeable(call, key, info, "not an object"));
        };
        let Some(method) = obj.get("method").and_then(Value::as_str).map(str::to_owned) else {
            return Err(self.record_unjudgeable(call, key, info, "no method"));
        };
        if !INPUT_METHODS.contains(&method.as_str()) {
            let why = format!("{method:?} is not an input request method");
            return Err(self.record_unjudgeable(call, key, info, &why));
        }
        // The call's id: its row and the call's row join on it.
        obj.insert("jsonrpc".into(), "2.0".into());
        obj.insert("id".into(), call.id().cloned().unwrap_or(Value::Null));
        let mut m = Message {
            kind: Kind::Request,
            value: Value::Object(obj),
            raw: None,
        };
        let notes = Notes::default();
        let ctx = self.ctx(info, None, profile, &notes);
        let refused = self.pipeline.on_server_request_or_notification(&ctx, &m);
        if refused.is_none() {
            self.pipeline.on_server_message(&ctx, &mut m);
        }
        let mut ev = self
            .origin
            .event(EventKind::Exchange, Direction::ServerToClient, &m, info);
        ev.target = Some(key.to_owned());
        let call_key = call.id_key().unwrap_or_default();
        ev.meta.follows = self.sessions.pending_round(&self.origin.key, &call_key);
        ev.decision = notes.decision();
        if let Some((profile, counts)) = notes.masked() {
            ev.masked = counts;
            ev.masked_with = Some(profile);
        }
        let Some((error, phase)) = refused else {
            exchange::record(&self.pipeline, ev);
            let mut out = m.value;
            if let Some(o) = out.as_object_mut() {
                o.remove("jsonrpc");
                o.remove("id");
            }
            return Ok(out);
        };
        let refusal = Refusal::new(
            error.reason(),
            format!("input request {key:?} ({method}) {}", error.message()),
        );
        ev.kind = EventKind::Denied;
        ev.error = Some(refusal.error());
        ev.decided_by = Some(phase.to_owned());
        exchange::record(&self.pipeline, ev);
        Err(Box::new(Refused {
            refusal,
            phase,
            decision: notes.decision(),
        }))
    }

    /// The row of an input request the agent cannot read, and its refusal.
    fn record_unjudgeable(
        &self,
        call: &Message,
        key: &str,
        info: &SessionInfo,
        why: &str,
    ) -> Box<Refused> {
        let r = Box::new(unjudgeable(key, why));
        let mut ev = self
            .origin
            .event(EventKind::Denied, Direction::ServerToClient, call, info);
        ev.target = Some(key.to_owned());
        ev.error = Some(r.refusal.error());
        ev.decided_by = Some(r.phase.to_owned());
        exchange::record(&self.pipeline, ev);
        r
    }

    /// The call `msg` answers, refused for `r`: its row recorded as
    /// denied; returns the error the client gets in its place.
    fn refuse_call(&self, msg: &Message, r: Box<Refused>) -> Vec<Value> {
        tracing::info!(
            conn = self.origin.conn.id,
            phase = r.phase,
            reason = r.refusal.message(),
            "input_required result refused"
        );
        let id = msg.id_key().unwrap_or_default();
        if let Some(mut req) = self.sessions.answer(&self.origin.key, &id, true) {
            req.kind = EventKind::Denied;
            req.error = Some(r.refusal.error());
            req.decided_by = Some(r.phase.to_owned());
            req.decision = r.decision.or(req.decision);
            req.http_status = Some(self.status);
            req.first_byte_us = req.first_byte_us.or(self.first_byte_us);
            exchange::record(&self.pipeline, req);
        }
        vec![r.refusal.to_jsonrpc(msg.id().cloned())]
    }
}

#[cfg(test)]
mod tests;
