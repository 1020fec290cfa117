//! Building exchange events and completing them when the answer arrives.

use serde_json::Value;

mod forwarded;
pub use forwarded::Forwarded;

use super::session::SessionInfo;
use crate::jsonrpc::{Kind, Message};
use crate::{
    conn::ConnInfo,
    pipeline::{
        Direction, EventKind, ExchangeEvent, Pipeline, RequestMeta, Transport, event::now_us,
    },
};

/// Where a message travelled: the fields every event of one HTTP request
/// (or one stream) shares.
#[derive(Clone)]
pub struct Origin {
    pub conn: ConnInfo,
    /// The identity the request was bound to.
    pub caller: Option<std::sync::Arc<crate::identity::Caller>>,
    pub transport: Transport,
    /// The session key (a real session id, or a per-POST key).
    pub key: String,
    /// Whether `key` is a real session id.
    pub in_session: bool,
    pub http_method: String,
    pub http_path: String,
}

impl Origin {
    /// A POST to `/mcp` on a loopback connection, for unit tests.
    #[cfg(test)]
    pub(crate) fn test_post(
        caller: Option<std::sync::Arc<crate::identity::Caller>>,
        transport: Transport,
        key: &str,
        in_session: bool,
    ) -> Self {
        Self {
            conn: ConnInfo::loopback(),
            caller,
            transport,
            key: key.into(),
            in_session,
            http_method: "POST".into(),
            http_path: "/mcp".into(),
        }
    }

    /// An event for `msg`, with session facts from `info`.
    pub fn event(
        &self,
        kind: EventKind,
        direction: Direction,
        msg: &Message,
        info: &SessionInfo,
    ) -> ExchangeEvent {
        ExchangeEvent {
            caller: self.caller.clone(),
            session_id: self.in_session.then(|| self.key.clone()),
            protocol_version: info.protocol_version.clone(),
            client_name: info.client_name.clone(),
            client_version: info.client_version.clone(),
            jsonrpc_id: msg.id().cloned(),
            method: msg.method().map(str::to_owned),
            target: msg.target().map(str::to_owned),
            params: msg.params().cloned(),
            http_method: self.http_method.clone(),
            http_path: self.http_path.clone(),
            meta: request_meta(direction, msg),
            ..ExchangeEvent::new(
                kind,
                direction,
                &self.conn,
                info.transport.unwrap_or(self.transport),
            )
        }
    }

    /// An event of this request that carries no message (a request
    /// passed through, a session closed, a refusal).
    pub fn bare(&self, kind: EventKind) -> ExchangeEvent {
        let empty = Message {
            kind: Kind::Notification,
            value: Value::Null,
            raw: None,
        };
        self.event(
            kind,
            Direction::ClientToServer,
            &empty,
            &SessionInfo::default(),
        )
    }

    /// An event for an HTTP request that never became a message.
    pub fn rejected(&self, status: u16, error: Value, bytes_in: u64) -> ExchangeEvent {
        let mut e = self.bare(EventKind::Rejected);
        e.http_status = Some(status);
        e.error = Some(error);
        e.bytes_in = bytes_in;
        e.done_us = Some(now_us());
        e
    }
}

/// The trace context of `msg`'s `_meta` and, for a client's request, the
/// agent's id for the call (see [`RequestMeta`]).
fn request_meta(direction: Direction, msg: &Message) -> RequestMeta {
    let (trace_id, span_id) = super::meta::trace(msg.params());
    let call = direction == Direction::ClientToServer && msg.kind == Kind::Request;
    RequestMeta {
        trace_id,
        span_id,
        call_id: call.then(|| uuid::Uuid::now_v7().to_string()),
        follows: None,
    }
}

/// Fills in the answer and records the finished exchange.
pub fn complete(
    pipeline: &Pipeline,
    mut ev: ExchangeEvent,
    answer: &Message,
    status: u16,
    bytes_out: u64,
) {
    ev.kind = EventKind::Exchange;
    ev.result = answer.result().cloned();
    ev.error = answer.error().cloned();
    ev.http_status = ev.http_status.or(Some(status));
    ev.done_us = Some(now_us());
    ev.first_byte_us = ev.first_byte_us.or(ev.done_us);
    ev.bytes_out = bytes_out;
    log(&ev);
    pipeline.record(&ev);
}

/// Records requests that will get no answer, with the reason.
pub fn unanswered(
    pipeline: &Pipeline,
    events: Vec<ExchangeEvent>,
    status: Option<u16>,
    error: Value,
) {
    for mut ev in events {
        ev.kind = EventKind::Unanswered;
        ev.http_status = ev.http_status.or(status);
        ev.error = Some(error.clone());
        ev.done_us = Some(now_us());
        log(&ev);
        pipeline.record(&ev);
    }
}

/// Records an event that needs no pairing.
pub fn record(pipeline: &Pipeline, mut ev: ExchangeEvent) {
    ev.done_us = ev.done_us.or(Some(now_us()));
    log(&ev);
    pipeline.record(&ev);
}

fn log(ev: &ExchangeEvent) {
    let ms = ev
        .done_us
        .map(|d| (d - ev.received_us) as f64 / 1e3)
        .unwrap_or(0.0);
    tracing::info!(
        conn = ev.conn_id,
        kind = ?ev.kind,
        session = %ev.session_id.as_deref().unwrap_or("-"),
        method = %ev.method.as_deref().unwrap_or("-"),
        target = %ev.target.as_deref().unwrap_or("-"),
        id = %ev.jsonrpc_id.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        status = ev.http_status.unwrap_or(0),
        error = ev.error.as_ref().and_then(|e| e.get("code")).and_then(|c| c.as_i64()).unwrap_or(0),
        ms = format!("{ms:.1}"),
        "mcp"
    );
}
