//! Step `record`, and the audit rows the handler writes itself. Each
//! message's own rows are written where it is decided (`decide`) and
//! answered (`stream`); this file holds the rest:
//! - the `Forwarded` guard, armed before a POST's body is read, which
//!   gives every forwarded request its row even if the client leaves;
//! - the rows of requests refused before any message was read, with the
//!   step that refused them (`decided_by` 'identity', 'route', 'tls', or
//!   none for a POST whose body the agent could not take);
//! - the `denied` row of a stateless request whose headers disagree with
//!   its message (`decided_by` 'headers').

use serde_json::Value;

use super::{McpHandler, run::Stop};
use crate::{
    conn::ConnInfo,
    error::{Reason, Refusal},
    jsonrpc::Message,
    mcp::exchange::{self, Forwarded, Origin},
    pipeline::{Direction, EventKind, Transport},
    proxy::http::refusal_response,
};

impl McpHandler {
    /// From here on, whatever the client does, a per-POST key is freed
    /// and a forwarded request gets its row (see `exchange::Forwarded`).
    pub(super) fn record(&self, origin: &Origin) -> Forwarded {
        Forwarded::new(
            self.pipeline.clone(),
            self.sessions.clone(),
            origin.key.clone(),
            origin.in_session,
            Vec::new(),
        )
    }

    /// Records a request refused before any of its messages was read, by
    /// the step `by`.
    pub(super) fn record_refused(
        &self,
        origin: &Origin,
        status: u16,
        error: Value,
        bytes_in: u64,
        by: &str,
    ) {
        let mut ev = origin.rejected(status, error, bytes_in);
        ev.decided_by = Some(by.into());
        exchange::record(&self.pipeline, ev);
    }

    /// Refuses a POST whose messages the agent will not judge (its body
    /// too large, stalled, not JSON-RPC, ...): the row, and the answer.
    pub(super) fn reject(&self, origin: &Origin, refusal: Refusal, bytes_in: u64) -> Stop {
        let (status, error) = (refusal.status(), refusal.error());
        tracing::info!(conn = origin.conn.id, status = status.as_u16(), error = %error, "mcp request rejected");
        self.free(origin);
        exchange::record(
            &self.pipeline,
            origin.rejected(status.as_u16(), error, bytes_in),
        );
        Box::new(refusal_response(&refusal, None))
    }

    /// Refuses a POST for what its one message says (headers that
    /// disagree with it): a `denied` row naming the message, its method
    /// and target, decided by the step `by`; the answer carries its id.
    pub(super) fn refuse_message(
        &self,
        origin: &Origin,
        msg: &Message,
        refusal: Refusal,
        bytes_in: u64,
        by: &str,
    ) -> Stop {
        let (status, error) = (refusal.status(), refusal.error());
        tracing::info!(conn = origin.conn.id, status = status.as_u16(), error = %error, "mcp request refused");
        self.free(origin);
        let info = self.sessions.info(&origin.key);
        let mut ev = origin.event(EventKind::Denied, Direction::ClientToServer, msg, &info);
        ev.decided_by = Some(by.into());
        ev.http_status = Some(status.as_u16());
        ev.error = Some(error);
        ev.bytes_in = bytes_in;
        exchange::record(&self.pipeline, ev);
        Box::new(refusal_response(&refusal, msg.id().cloned()))
    }

    /// Ends a POST's per-POST session key (a real session stays). A POST
    /// outside a session has a table entry of its own, claimed before its
    /// body is read; left behind, every such request kept one until the
    /// table was full, and from then on each pushed out the oldest real
    /// session, owner binding and all.
    pub(super) fn free(&self, origin: &Origin) {
        if !origin.in_session {
            self.sessions.close(&origin.key);
        }
    }

    /// Records a connection refused before any request (plain text where
    /// the port requires TLS), `decided_by = 'tls'`.
    pub(super) fn record_tls(&self, conn: &ConnInfo, reason: &str) {
        let origin = Origin {
            conn: conn.clone(),
            caller: None,
            transport: Transport::Http,
            key: String::new(),
            in_session: false,
            http_method: String::new(),
            http_path: String::new(),
        };
        let mut ev = origin.rejected(0, Refusal::new(Reason::TlsRequired, reason).error(), 0);
        ev.http_status = None;
        ev.decided_by = Some("tls".into());
        exchange::record(&self.pipeline, ev);
    }
}
