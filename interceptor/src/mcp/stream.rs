//! Server answers, message by message: a JSON body (one message or a
//! batch) or an SSE stream, event by event, as it arrives. Each message
//! goes through `on_server_message`, then is paired with the request it
//! answers (or remembered, if it is a server request).

use std::{sync::Arc, time::Duration};

use crate::proxy::upstream::UpstreamBody;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

pub mod ctype;
mod judge;
mod relay;
pub use judge::{content_type_refusal, refuse_answer};
pub use relay::sse;

use super::{
    exchange::{self, Origin},
    session::{SessionInfo, Sessions},
    sse,
};
use crate::jsonrpc::{self, Body, Kind, Message};
use crate::{
    error::{Reason, Refusal},
    pipeline::{Direction, EventKind, MessageCtx, Notes, Pipeline, Transport},
    proxy::body::{ReadError, read_limited},
};

pub struct State {
    pub pipeline: Pipeline,
    pub sessions: Arc<Sessions>,
    pub origin: Origin,
    pub status: u16,
    pub max_message: usize,
    /// When the answer's head arrived (a POST's own answer); `None` on a
    /// long-lived GET stream, where each event is its own first byte.
    pub first_byte_us: Option<i64>,
    /// Answers a server request upstream on the client's behalf (when a
    /// phase refused it): (path?query, session id, JSON-RPC message).
    pub reply: Option<Replier>,
    /// A POST's SSE answer: longest silence (no server message) while one
    /// of its requests waits (`http.upstream_response_timeout_ms`). `None`
    /// on a GET stream, which may idle.
    pub answer_timeout: Option<Duration>,
    /// The pairing keys of the requests this answer is for (empty on a
    /// GET stream): what a message the agent cannot judge may answer.
    pub expected: Vec<String>,
}

pub type Replier = Arc<dyn Fn(String, Option<String>, Value) + Send + Sync>;

impl State {
    /// What phases know about a server message of this answer.
    fn ctx<'a>(
        &'a self,
        info: &'a SessionInfo,
        request_method: Option<&'a str>,
        mask_profile: Option<&'a str>,
        notes: &'a Notes,
    ) -> MessageCtx<'a> {
        MessageCtx {
            conn: &self.origin.conn,
            session_id: self.origin.in_session.then_some(self.origin.key.as_str()),
            transport: self.origin.transport,
            protocol_version: info.protocol_version.as_deref(),
            http_path: &self.origin.http_path,
            caller: self.origin.caller.as_deref(),
            client_name: info.client_name.as_deref(),
            client_version: info.client_version.as_deref(),
            request_method,
            mask_profile,
            notes,
        }
    }

    /// The masking profile of the call(s) this answer belongs to, for the
    /// notifications and server requests it carries besides their
    /// responses: the one every request in `expected` was given, else
    /// `None` (the default; requests that disagree get no one's).
    fn call_profile(&self, expected: &[String]) -> Option<String> {
        let mut profiles = expected
            .iter()
            .map(|id| self.sessions.pending_info(&self.origin.key, id).1);
        let first = profiles.next()?;
        profiles.all(|p| p == first).then_some(first).flatten()
    }

    /// Server text that is no JSON-RPC message, through the phases (which
    /// mask it, or drop what they cannot read): never forwarded raw.
    fn opaque(&self, data: Bytes, profile: Option<&str>) -> Option<Bytes> {
        let info = self.sessions.info(&self.origin.key);
        let notes = Notes::default();
        let ctx = self.ctx(&info, None, profile, &notes);
        self.pipeline.on_server_data(&ctx, data)
    }

    /// Phases, then pairing, for every message of one server body/event;
    /// `call_profile` (see [`State::call_profile`]) masks the messages that
    /// answer no request. Returns whether a message was refused (and taken
    /// out of `body`), and the errors for the client of requests whose
    /// answer was not judged (see `judge`).
    fn on_server_body(
        &self,
        body: &mut Body,
        bytes: u64,
        call_profile: Option<&str>,
    ) -> (bool, Vec<Value>) {
        let info = self.sessions.info(&self.origin.key);
        let per_msg = if body.messages().len() == 1 { bytes } else { 0 };
        let mut refused = Vec::new();
        let mut errors = Vec::new();
        for (i, msg) in body.messages_mut().iter_mut().enumerate() {
            if matches!(msg.kind, Kind::Response | Kind::Error)
                && let Err(why) = judge::pairing(self, msg)
            {
                errors.extend(self.refuse_unjudged(
                    &msg.value.to_string().into_bytes(),
                    Some(msg),
                    why,
                ));
                refused.push(i);
                continue;
            }
            let (request_method, mask_profile) = match (msg.kind, msg.id_key()) {
                (Kind::Response | Kind::Error, Some(id)) => {
                    self.sessions.pending_info(&self.origin.key, &id)
                }
                _ => (None, call_profile.map(str::to_owned)),
            };
            let notes = Notes::default();
            let mctx = self.ctx(
                &info,
                request_method.as_deref(),
                mask_profile.as_deref(),
                &notes,
            );
            if msg.kind == Kind::Request
                && let Some((error, phase)) = self.pipeline.on_server_request(&mctx, msg)
            {
                self.refuse_server_request(msg, &info, error, phase, notes.decision());
                refused.push(i);
                continue;
            }
            self.pipeline.on_server_message(&mctx, msg);
            let masked = notes.masked();
            let note_masked = |ev: &mut crate::pipeline::ExchangeEvent| {
                if let Some((profile, counts)) = &masked {
                    ev.masked = counts.clone();
                    ev.masked_with = Some(profile.clone());
                }
            };
            match msg.kind {
                Kind::Response | Kind::Error => {
                    let id = msg.id_key().unwrap_or_default();
                    match self.sessions.answer(&self.origin.key, &id, true) {
                        Some(mut req) => {
                            note_masked(&mut req);
                            if req.method.as_deref() == Some("initialize") {
                                self.learn_initialize(msg, &mut req);
                            }
                            req.first_byte_us = req.first_byte_us.or(self.first_byte_us);
                            if req.session_id.is_none() && self.origin.in_session {
                                req.session_id = Some(self.origin.key.clone());
                            }
                            exchange::complete(&self.pipeline, req, msg, self.status, per_msg);
                        }
                        // An error with a `null` id (the server could not
                        // read a request): the server's word, judged.
                        None if msg.id().is_none() => {
                            let mut ev = self.origin.event(
                                EventKind::Unpaired,
                                Direction::ClientToServer,
                                msg,
                                &info,
                            );
                            ev.error = msg.error().cloned();
                            ev.http_status = Some(self.status);
                            note_masked(&mut ev);
                            exchange::record(&self.pipeline, ev);
                        }
                        // Taken meanwhile (a timeout): answers no one now.
                        None => {
                            let why = judge::Unjudged::Unpaired(id);
                            let raw = msg.value.to_string().into_bytes();
                            errors.extend(self.refuse_unjudged(&raw, Some(msg), why));
                            refused.push(i);
                        }
                    }
                }
                Kind::Request => {
                    let mut ev = self.origin.event(
                        EventKind::Exchange,
                        Direction::ServerToClient,
                        msg,
                        &info,
                    );
                    // A policy let it through: the record names which.
                    ev.decision = notes.decision();
                    note_masked(&mut ev);
                    self.sessions.expect(
                        &self.origin.key,
                        msg.id_key().unwrap_or_default(),
                        ev,
                        true,
                    );
                }
                Kind::Notification => {
                    let mut ev = self.origin.event(
                        EventKind::Notification,
                        Direction::ServerToClient,
                        msg,
                        &info,
                    );
                    ev.bytes_out = per_msg;
                    note_masked(&mut ev);
                    exchange::record(&self.pipeline, ev);
                }
            }
        }
        if refused.is_empty() {
            return (false, errors);
        }
        body.remove(&refused);
        (true, errors)
    }

    /// A server request the client must not see: recorded, and answered
    /// upstream with `error` as if the client had refused it.
    fn refuse_server_request(
        &self,
        msg: &Message,
        info: &SessionInfo,
        error: Refusal,
        phase: &'static str,
        decision: Option<crate::pipeline::Decision>,
    ) {
        let mut ev = self
            .origin
            .event(EventKind::Denied, Direction::ServerToClient, msg, info);
        ev.error = Some(error.error());
        ev.decided_by = Some(phase.to_string());
        ev.decision = decision;
        tracing::info!(conn = self.origin.conn.id, method = ?msg.method(), phase, "server request refused");
        exchange::record(&self.pipeline, ev);
        let Some(reply) = &self.reply else { return };
        let legacy = self.origin.transport == Transport::Sse;
        let target = if legacy {
            self.origin.key.clone()
        } else {
            self.origin.http_path.clone()
        };
        let session = (self.origin.in_session && !legacy).then(|| self.origin.key.clone());
        reply(target, session, error.to_jsonrpc(msg.id().cloned()));
    }

    /// The negotiated protocol version from the `initialize` answer.
    fn learn_initialize(&self, answer: &Message, req: &mut crate::pipeline::ExchangeEvent) {
        let version = answer
            .result()
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str);
        if let Some(v) = version {
            self.sessions.update_info(&self.origin.key, |i| {
                i.protocol_version = Some(v.to_string())
            });
            req.protocol_version = Some(v.to_string());
        }
    }

    /// Requests of this HTTP exchange still unanswered get `error`.
    fn finish(&self, expected: &[String], refusal: &Refusal) {
        let error = refusal.error();
        let pending = self.sessions.take_unanswered(&self.origin.key, expected);
        exchange::unanswered(&self.pipeline, pending, Some(self.status), error.clone());
        let stream_owns_session = !self.origin.in_session
            || (self.origin.transport == Transport::Sse && self.origin.http_method == "GET");
        if stream_owns_session {
            let left = self.sessions.close(&self.origin.key);
            exchange::unanswered(&self.pipeline, left, Some(self.status), error);
        }
    }

    /// The server sent no message for `quiet`: each request of `expected`
    /// still waiting gets `upstream_timeout` as an SSE event and an `unanswered` row.
    /// `None` when none is waiting.
    async fn time_out(
        &self,
        expected: &[String],
        quiet: Duration,
        tx: &mpsc::Sender<Bytes>,
    ) -> Option<Refusal> {
        let pending = self.sessions.take_unanswered(&self.origin.key, expected);
        if pending.is_empty() {
            return None;
        }
        let error = Refusal::new(
            Reason::UpstreamTimeout,
            format!("upstream sent no answer within {quiet:?} (http.upstream_response_timeout_ms)"),
        );
        tracing::warn!(
            conn = self.origin.conn.id,
            waiting = pending.len(),
            error = error.message(),
            "upstream answer timed out"
        );
        let ids = pending
            .iter()
            .map(|p| p.jsonrpc_id.clone().unwrap_or(Value::Null));
        tell(tx, ids, &error).await;
        exchange::unanswered(&self.pipeline, pending, Some(self.status), error.error());
        Some(error)
    }

    /// One SSE event: the legacy `endpoint` announcement, or a message.
    /// Returns the bytes to send (empty: nothing). Nothing a masking phase
    /// has not seen is forwarded: a message goes through the phases, any
    /// other data, the comments and the other fields through
    /// `on_server_data`, and an event is rebuilt when any of them changed.
    fn on_event(&mut self, ev: sse::Event, profile: Option<&str>) -> Bytes {
        let side = ev.side_text();
        let side_clean = side.is_empty() || {
            let b = Bytes::from(side);
            self.opaque(b.clone(), profile).is_some_and(|o| o == b)
        };
        if ev.kind() == "endpoint"
            && let Some(data) = &ev.data
        {
            // The client must post back to exactly this URI: its data
            // passes as it came, the rest only if clean.
            let target = endpoint_target(data);
            self.sessions.learn_legacy_endpoint(&target, &target);
            let owner = self.origin.caller.as_ref().map(|c| c.principal());
            self.sessions.update_info(&target, |i| {
                i.transport = Some(Transport::Sse);
                i.owner = owner;
            });
            self.origin.key = target;
            self.origin.in_session = true;
            if side_clean {
                return ev.raw;
            }
            return sse::serialize(Some("endpoint"), None, data);
        }
        let Some(data) = ev.data.as_deref().filter(|d| !d.trim().is_empty()) else {
            // A keep-alive: its comment is no one's business.
            return if side_clean {
                ev.raw
            } else {
                Bytes::from_static(b":\n\n")
            };
        };
        let bytes = Bytes::copy_from_slice(data.as_bytes());
        let (new_data, errors) = match jsonrpc::parse(&bytes) {
            Ok(mut body) => {
                let (refused, errors) =
                    self.on_server_body(&mut body, ev.raw.len() as u64, profile);
                if body.messages().is_empty() {
                    // Everything in the event was refused: the client sees
                    // nothing of it, only the errors of what it left waiting.
                    return error_events(&errors);
                }
                let changed = refused || !body.messages().iter().all(|m| m.raw.is_some());
                (changed.then(|| body.to_bytes(&bytes)), errors)
            }
            // Not JSON-RPC: never forwarded, even masked (see `judge`).
            Err(e) => {
                let why = judge::Unjudged::NotJsonRpc(e.to_string());
                return error_events(&self.refuse_unjudged(&bytes, None, why));
            }
        };
        if side_clean && new_data.is_none() {
            return join(ev.raw, error_events(&errors));
        }
        let field = |f: Option<String>| {
            if side_clean {
                return f;
            }
            let b = self.opaque(Bytes::from(f?), profile)?;
            Some(String::from_utf8_lossy(&b).into_owned())
        };
        let (event, id) = (field(ev.event.clone()), field(ev.id.clone()));
        let data = new_data.unwrap_or(bytes);
        let out = sse::serialize(
            event.as_deref(),
            id.as_deref(),
            &String::from_utf8_lossy(&data),
        );
        join(out, error_events(&errors))
    }
}

/// JSON-RPC error responses as SSE `message` events.
fn error_events(errors: &[Value]) -> Bytes {
    errors
        .iter()
        .map(|e| sse::serialize(Some("message"), None, &e.to_string()))
        .fold(Bytes::new(), join)
}

fn join(a: Bytes, b: Bytes) -> Bytes {
    if b.is_empty() {
        return a;
    }
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(&a);
    v.extend_from_slice(&b);
    Bytes::from(v)
}

/// `endpoint` data is a URI reference; keep path and query.
fn endpoint_target(data: &str) -> String {
    let d = data.trim();
    match d.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() => u
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        _ => d.to_string(),
    }
}

/// A whole answer body, bounded by `max_message`; the error is the
/// client's reply.
async fn read_answer(body: UpstreamBody, st: &State, idle: Duration) -> Result<Bytes, Refusal> {
    read_limited(body, st.max_message, idle).await.map_err(|e| {
        let reason = match e {
            ReadError::TooLarge(_) => Reason::ServerMessageTooLarge,
            ReadError::Idle(_) => Reason::UpstreamTimeout,
            ReadError::Io(_) => Reason::UpstreamUnavailable,
        };
        tracing::warn!(conn = st.origin.conn.id, error = %e, "upstream response failed");
        Refusal::new(reason, format!("upstream response: {e}"))
    })
}

/// The refusal of an answer a phase dropped (not UTF-8: nothing can mask it).
fn unmaskable() -> Refusal {
    Refusal::new(
        Reason::UpstreamUnavailable,
        "the server's answer is not UTF-8 and cannot be masked",
    )
}

/// An answer that is neither JSON nor SSE (`text/plain`, an HTML error
/// page, no content type), when a phase rewrites server data: read whole,
/// bounded like a JSON answer, and passed only as `on_server_data` leaves
/// it, with the call's masking profile. Settling `expected` is the
/// caller's: such a body answers none of them.
pub async fn opaque_body(
    body: UpstreamBody,
    st: &State,
    expected: &[String],
    idle: Duration,
) -> Result<Bytes, Refusal> {
    let profile = st.call_profile(expected);
    let bytes = read_answer(body, st, idle).await?;
    st.opaque(bytes, profile.as_deref()).ok_or_else(unmaskable)
}

/// A JSON answer: read whole (it is one message), bounded, then phases.
pub async fn json(
    body: UpstreamBody,
    st: State,
    expected: Vec<String>,
    denials: Vec<Value>,
    batch: bool,
    idle: Duration,
) -> Result<Bytes, Refusal> {
    let bytes = match read_answer(body, &st, idle).await {
        Ok(b) => b,
        Err(refusal) => {
            st.finish(&expected, &refusal);
            return Err(refusal);
        }
    };
    let profile = st.call_profile(&expected);
    let (out, mut extra) = match jsonrpc::parse(&bytes) {
        Ok(mut b) => {
            let (_, errors) = st.on_server_body(&mut b, bytes.len() as u64, profile.as_deref());
            (
                (!b.messages().is_empty()).then(|| b.to_bytes(&bytes)),
                errors,
            )
        }
        // Not JSON-RPC (a batch with one bad member, id `1.0`, an error
        // text): never forwarded, even masked (see `judge`).
        Err(e) => {
            let why = judge::Unjudged::NotJsonRpc(e.to_string());
            (None, st.refuse_unjudged(&bytes, None, why))
        }
    };
    let none = Refusal::new(
        Reason::NoResponse,
        "the server's answer had no response for this request",
    );
    let left = st.sessions.take_unanswered(&st.origin.key, &expected);
    if out.is_none() {
        // Nothing of the server's is left: the client hears why instead.
        extra.extend(left.iter().map(|p| none.to_jsonrpc(p.jsonrpc_id.clone())));
    }
    exchange::unanswered(&st.pipeline, left, Some(st.status), none.error());
    // Nothing left to take; closes a per-POST key.
    st.finish(&expected, &none);
    extra.extend(denials);
    if extra.is_empty() {
        return Ok(out.unwrap_or_default());
    }
    let mut all: Vec<Value> = match out.map(|o| serde_json::from_slice::<Value>(&o)) {
        Some(Ok(Value::Array(a))) => a,
        Some(Ok(v)) => vec![v],
        _ => Vec::new(),
    };
    all.extend(extra);
    let v = if all.len() == 1 && !batch {
        all.remove(0)
    } else {
        Value::Array(all)
    };
    Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
}

/// One JSON-RPC error event per request id, on the client's stream.
async fn tell(tx: &mpsc::Sender<Bytes>, ids: impl Iterator<Item = Value>, error: &Refusal) {
    for id in ids {
        let msg = error.to_jsonrpc(Some(id));
        let _ = tx
            .send(sse::serialize(Some("message"), None, &msg.to_string()))
            .await;
    }
}
