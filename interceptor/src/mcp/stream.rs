//! Server answers, message by message: a JSON body (one message or a
//! batch) or an SSE stream, event by event, as it arrives.
//!
//! - here: the answer's [`State`], a JSON answer read whole, and the
//!   requests it leaves unanswered;
//! - `relay`: an SSE answer, relayed event by event by a task;
//! - `event`: one SSE event (the legacy `endpoint`, a keep-alive, messages);
//! - `message`: each message through `on_server_message`, then paired with
//!   the request it answers (or remembered, if it is a server request);
//! - `judge`: what the agent cannot judge, never forwarded;
//! - `mrtr`: the input requests of an `input_required` result, judged;
//! - `frames`: the agent's own streamed answers as a response body.

use std::{sync::Arc, time::Duration};

use crate::proxy::upstream::UpstreamBody;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

pub mod ctype;
mod event;
pub(crate) mod frames;
mod judge;
mod message;
mod mrtr;
mod relay;
pub use judge::{content_type_refusal, refuse_answer};
pub use relay::sse;

use super::{
    exchange::{self, Origin},
    session::{SessionInfo, Sessions},
    sse,
};
use crate::jsonrpc;
use crate::{
    error::{Reason, Refusal},
    pipeline::{MessageCtx, Notes, Pipeline, Transport},
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
    let (out, mut extra) = match jsonrpc::parse_server(&bytes) {
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
