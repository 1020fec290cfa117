//! A forwarded request is recorded whatever becomes of its handler. The
//! client may hang up after the request went upstream; hyper then drops
//! the handler's future, and with it every path that would have written
//! the row, although the server runs the call. `Forwarded` lives as long
//! as someone still waits for the answer (the handler, or the task that
//! relays an SSE answer) and, when dropped, records what is still
//! waiting as `unanswered` with reason `client_gone`.

use std::sync::Arc;

use serde_json::Value;

use crate::{mcp::session::Sessions, pipeline::Pipeline};

/// The requests one POST forwarded, settled on drop (see the module doc).
pub struct Forwarded {
    pipeline: Pipeline,
    sessions: Arc<Sessions>,
    key: String,
    in_session: bool,
    ids: Vec<String>,
    /// Whether the requests went upstream (else they only waited for the
    /// rest of their batch, e.g. a held member).
    sent: bool,
    armed: bool,
}

/// The error recorded for requests whose client went away first.
fn client_gone(sent: bool) -> Value {
    let message = if sent {
        "the client went away before the server's answer; the server may have acted on the request"
    } else {
        "the client went away before the request was forwarded; it was not sent"
    };
    crate::error::Refusal::new(crate::error::Reason::ClientGone, message).error()
}

impl Forwarded {
    /// Guards the requests `ids`, waiting under the session key `key`.
    pub fn new(
        pipeline: Pipeline,
        sessions: Arc<Sessions>,
        key: String,
        in_session: bool,
        ids: Vec<String>,
    ) -> Self {
        Self {
            pipeline,
            sessions,
            key,
            in_session,
            ids,
            sent: false,
            armed: true,
        }
    }

    /// One more request it guards (remembered as waiting for its answer).
    pub fn watch(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }

    /// The requests are going upstream now.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// The requests moved to the session the server opened.
    pub fn rekey(&mut self, key: &str, in_session: bool) {
        self.key = key.to_string();
        self.in_session = in_session;
    }

    /// Their answers come elsewhere (a legacy SSE session's GET stream),
    /// which settles them.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut left = self.sessions.take_unanswered(&self.key, &self.ids);
        if !self.in_session {
            // A per-POST key: nothing else will ever settle or free it.
            left.extend(self.sessions.close(&self.key));
        }
        if left.is_empty() {
            return;
        }
        tracing::warn!(session = %self.key, requests = left.len(), "client went away after its requests were forwarded");
        super::unanswered(&self.pipeline, left, None, client_gone(self.sent));
    }
}
