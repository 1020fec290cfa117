//! Server messages the agent cannot judge: never forwarded. A message the
//! agent cannot parse as JSON-RPC, or an answer whose id matches no
//! waiting request exactly, may still be parsed by the client (zod reads
//! id `1.0` as `1`; the TypeScript SDK pairs by `Number(id)`), which would
//! then act on a sampling request, a tool list or an answer that no phase
//! has seen. So it is dropped; each request it may answer gets a JSON-RPC
//! error and an `unanswered` row saying why, and a message that answers
//! none gets a row of its own.

use serde_json::Value;

use super::State;
use crate::{
    error::{Reason, Refusal},
    jsonrpc::Message,
    mcp::{
        exchange,
        ids::{self, Loose},
    },
    pipeline::EventKind,
};

/// Why a server message was not judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Unjudged {
    /// Not a JSON-RPC 2.0 message (the parser's reason).
    NotJsonRpc(String),
    /// An answer whose id matches a waiting request only as a twin.
    TwinId(String),
    /// An answer whose id matches no waiting request at all.
    Unpaired(String),
}

// The server's id is not repeated: it would reach the client unmasked.
impl std::fmt::Display for Unjudged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unjudged::NotJsonRpc(e) => write!(f, "not a JSON-RPC message: {e}"),
            Unjudged::TwinId(_) => {
                write!(
                    f,
                    "an answer whose id matches a waiting request only loosely"
                )
            }
            Unjudged::Unpaired(_) => write!(f, "an answer whose id no request waits for"),
        }
    }
}

/// The refusal for requests an unjudged message may have answered.
pub fn error(why: &Unjudged) -> Refusal {
    Refusal::new(
        Reason::UnjudgedServerMessage,
        format!("the server sent a message the agent cannot judge ({why}); it was not forwarded"),
    )
}

/// How a response's id pairs: `Ok(Some(key))` when a request waits
/// under exactly that key, `Ok(None)` for an error with a `null` id (the
/// server's word that it could not read a request: judged, unpaired),
/// else why it is not judged.
pub fn pairing(st: &State, msg: &Message) -> Result<Option<String>, Unjudged> {
    let Some(key) = msg.id_key() else {
        return Ok(None);
    };
    if st.sessions.is_pending(&st.origin.key, &key) {
        return Ok(Some(key));
    }
    let loose = ids::loose_key(&key);
    if st.sessions.loose_matches(&st.origin.key, &loose).is_empty() {
        Err(Unjudged::Unpaired(key))
    } else {
        Err(Unjudged::TwinId(key))
    }
}

impl State {
    /// Drops a server message (`raw`, its data) the agent cannot judge:
    /// the requests it may answer are settled with an error row, and their
    /// error responses returned for the client. Which requests: those its
    /// id matches loosely; with no usable id, every request of this answer
    /// still waiting (the message may be any one's answer). With none, the
    /// message is recorded on its own.
    pub(super) fn refuse_unjudged(
        &self,
        raw: &[u8],
        msg: Option<&Message>,
        why: Unjudged,
    ) -> Vec<Value> {
        let err = error(&why);
        tracing::warn!(conn = self.origin.conn.id, reason = %why, "server message not judged: dropped");
        let id = match msg {
            Some(m) => m.id().cloned(),
            None => serde_json::from_slice::<Value>(raw)
                .ok()
                .and_then(|v| v.get("id").filter(|i| !i.is_null()).cloned()),
        };
        let mut keys = match id.as_ref().map(ids::loose) {
            Some(l) if l != Loose::None => self.sessions.loose_matches(&self.origin.key, &l),
            _ => Vec::new(),
        };
        if keys.is_empty() && msg.is_none() {
            keys = self.expected.clone();
        }
        let pending = self.sessions.take_unanswered(&self.origin.key, &keys);
        if pending.is_empty() {
            self.record_dropped(raw, msg, err.error());
            return Vec::new();
        }
        let answers = pending
            .iter()
            .map(|p| err.to_jsonrpc(p.jsonrpc_id.clone()))
            .collect();
        exchange::unanswered(&self.pipeline, pending, Some(self.status), err.error());
        answers
    }

    /// A row for a dropped server message that answers no waiting request.
    fn record_dropped(&self, raw: &[u8], msg: Option<&Message>, err: Value) {
        let info = self.sessions.info(&self.origin.key);
        let mut ev = match msg {
            Some(m) => self.origin.event(
                EventKind::Unpaired,
                crate::pipeline::Direction::ClientToServer,
                m,
                &info,
            ),
            None => self.origin.rejected(self.status, Value::Null, 0),
        };
        ev.kind = EventKind::Unpaired;
        ev.error = Some(err);
        ev.http_status = Some(self.status);
        ev.decided_by = Some("mcp".into());
        ev.bytes_out = raw.len() as u64;
        exchange::record(&self.pipeline, ev);
    }
}

/// Why an answer with Content-Type `content_type` (neither JSON nor SSE,
/// several, or unparseable) is refused.
pub fn content_type_refusal(content_type: &str) -> String {
    format!(
        "the server answered with Content-Type {content_type:?}, which is not an MCP answer \
         (application/json or text/event-stream); it was not forwarded"
    )
}

/// The reply to a POST whose requests the server answered, or a GET the
/// server opened a stream for, with a body the agent cannot read
/// (`message` says why: its type, or its coding): each waiting request
/// gets an error and an `unanswered` row (a GET, a `rejected` row); the
/// client gets 502 with those errors and `denials`.
pub fn refuse_answer(
    st: &State,
    message: String,
    denials: Vec<Value>,
    batch: bool,
) -> (http::StatusCode, Value) {
    tracing::warn!(
        conn = st.origin.conn.id,
        reason = %message,
        "server answer not judged: dropped"
    );
    let refusal = Refusal::new(Reason::UnjudgedServerMessage, message);
    let pending = st.sessions.take_unanswered(&st.origin.key, &st.expected);
    let mut all: Vec<Value> = pending
        .iter()
        .map(|p| refusal.to_jsonrpc(p.jsonrpc_id.clone()))
        .collect();
    let status = refusal.status();
    if pending.is_empty() {
        // A GET stream: no request waits, the refusal is its own row.
        let mut ev = st.origin.rejected(status.as_u16(), refusal.error(), 0);
        ev.decided_by = Some("mcp".into());
        exchange::record(&st.pipeline, ev);
    }
    exchange::unanswered(&st.pipeline, pending, Some(st.status), refusal.error());
    all.extend(denials);
    let body = match all.len() {
        0 => refusal.to_jsonrpc(None),
        1 if !batch => all.remove(0),
        _ => Value::Array(all),
    };
    (status, body)
}
