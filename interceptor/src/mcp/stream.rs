//! Server answers, message by message: a JSON body (one message or a
//! batch) or an SSE stream, event by event, as it arrives. Each message
//! goes through `on_server_message`, then is paired with the request it
//! answers (or remembered, if it is a server request).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use crate::proxy::upstream::UpstreamBody;
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    exchange::{self, Origin},
    jsonrpc::{self, Body, Kind, Message},
    session::Sessions,
    sse,
};
use crate::{
    pipeline::{Direction, EventKind, MessageCtx, Notes, Pipeline, Transport},
    proxy::{
        body::{BoxError, ProxyBody, ReadError, read_limited},
        http::{CODE_SERVER_MESSAGE_TOO_LARGE, CODE_UPSTREAM_TIMEOUT, CODE_UPSTREAM_UNAVAILABLE},
    },
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
}

/// How often a POST's SSE answer checks whether the client has answered
/// the server's request it waits on.
const CLIENT_TURN_POLL: Duration = Duration::from_millis(200);

pub type Replier = Arc<dyn Fn(String, Option<String>, Value) + Send + Sync>;

impl State {
    /// Phases, then pairing, for every message of one server body/event.
    /// Returns whether a message was refused (and taken out of `body`).
    fn on_server_body(&self, body: &mut Body, bytes: u64) -> bool {
        let info = self.sessions.info(&self.origin.key);
        let per_msg = if body.messages().len() == 1 { bytes } else { 0 };
        let mut refused = Vec::new();
        for (i, msg) in body.messages_mut().iter_mut().enumerate() {
            let (request_method, mask_profile) = match (msg.kind, msg.id_key()) {
                (Kind::Response | Kind::Error, Some(id)) => {
                    self.sessions.pending_info(&self.origin.key, &id)
                }
                _ => (None, None),
            };
            let notes = Notes::default();
            let mctx = MessageCtx {
                conn: &self.origin.conn,
                session_id: self.origin.in_session.then_some(self.origin.key.as_str()),
                transport: self.origin.transport,
                protocol_version: info.protocol_version.as_deref(),
                http_path: &self.origin.http_path,
                caller: self.origin.caller.as_deref(),
                client_name: info.client_name.as_deref(),
                client_version: info.client_version.as_deref(),
                request_method: request_method.as_deref(),
                mask_profile: mask_profile.as_deref(),
                notes: &notes,
            };
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
                        None => {
                            let mut ev = self.origin.event(
                                EventKind::Unpaired,
                                Direction::ClientToServer,
                                msg,
                                &info,
                            );
                            ev.result = msg.result().cloned();
                            ev.error = msg.error().cloned();
                            ev.http_status = Some(self.status);
                            note_masked(&mut ev);
                            exchange::record(&self.pipeline, ev);
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
            return false;
        }
        body.remove(&refused);
        true
    }

    /// A server request the client must not see: recorded, and answered
    /// upstream with `error` as if the client had refused it.
    fn refuse_server_request(
        &self,
        msg: &Message,
        info: &super::session::SessionInfo,
        error: Value,
        phase: &'static str,
        decision: Option<crate::pipeline::Decision>,
    ) {
        let mut ev = self
            .origin
            .event(EventKind::Denied, Direction::ServerToClient, msg, info);
        ev.error = Some(error.clone());
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
        reply(
            target,
            session,
            json!({ "jsonrpc": "2.0", "id": msg.id().cloned(), "error": error }),
        );
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
    fn finish(&self, expected: &[String], error: Value) {
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
    /// still waiting gets -32082 as an SSE event and an `unanswered` row.
    /// `None` when none is waiting.
    async fn time_out(
        &self,
        expected: &[String],
        quiet: Duration,
        tx: &mpsc::Sender<Bytes>,
    ) -> Option<Value> {
        let pending = self.sessions.take_unanswered(&self.origin.key, expected);
        if pending.is_empty() {
            return None;
        }
        let error = json!({
            "code": CODE_UPSTREAM_TIMEOUT,
            "message": format!(
                "upstream sent no answer within {quiet:?} (http.upstream_response_timeout_ms)"
            ),
        });
        tracing::warn!(conn = self.origin.conn.id, waiting = pending.len(), error = %error["message"], "upstream answer timed out");
        let ids = pending
            .iter()
            .map(|p| p.jsonrpc_id.clone().unwrap_or(Value::Null));
        tell(tx, ids, &error).await;
        exchange::unanswered(&self.pipeline, pending, Some(self.status), error.clone());
        Some(error)
    }

    /// One SSE event: the legacy `endpoint` announcement, or a message.
    fn on_event(&mut self, ev: sse::Event) -> Bytes {
        if ev.kind() == "endpoint"
            && let Some(data) = &ev.data
        {
            let target = endpoint_target(data);
            self.sessions.learn_legacy_endpoint(&target, &target);
            let owner = self.origin.caller.as_ref().map(|c| c.principal());
            self.sessions.update_info(&target, |i| {
                i.transport = Some(Transport::Sse);
                i.owner = owner;
            });
            self.origin.key = target;
            self.origin.in_session = true;
            return ev.raw;
        }
        let Some(data) = ev.data.as_deref().filter(|d| !d.trim().is_empty()) else {
            return ev.raw;
        };
        let bytes = Bytes::copy_from_slice(data.as_bytes());
        let Ok(mut body) = jsonrpc::parse(&bytes) else {
            return ev.raw;
        };
        let refused = self.on_server_body(&mut body, ev.raw.len() as u64);
        if body.messages().is_empty() {
            // Everything in the event was refused: the client sees nothing.
            return Bytes::new();
        }
        if !refused && body.messages().iter().all(|m| m.raw.is_some()) {
            return ev.raw;
        }
        let new = body.to_bytes(&bytes);
        sse::serialize(
            ev.event.as_deref(),
            ev.id.as_deref(),
            &String::from_utf8_lossy(&new),
        )
    }
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

/// A JSON answer: read whole (it is one message), bounded, then phases.
pub async fn json(
    body: UpstreamBody,
    st: State,
    expected: Vec<String>,
    denials: Vec<Value>,
    batch: bool,
    idle: Duration,
) -> Result<Bytes, (StatusCode, Value)> {
    let bytes = match read_limited(body, st.max_message, idle).await {
        Ok(b) => b,
        Err(e) => {
            let (status, code) = match e {
                ReadError::TooLarge(_) => (StatusCode::BAD_GATEWAY, CODE_SERVER_MESSAGE_TOO_LARGE),
                ReadError::Idle(_) => (StatusCode::GATEWAY_TIMEOUT, CODE_UPSTREAM_TIMEOUT),
                ReadError::Io(_) => (StatusCode::BAD_GATEWAY, CODE_UPSTREAM_UNAVAILABLE),
            };
            let error = json!({ "code": code, "message": format!("upstream response: {e}") });
            tracing::warn!(conn = st.origin.conn.id, error = %e, "upstream response failed");
            st.finish(&expected, error.clone());
            return Err((status, error));
        }
    };
    let out = match jsonrpc::parse(&bytes) {
        Ok(mut b) => {
            st.on_server_body(&mut b, bytes.len() as u64);
            b.to_bytes(&bytes)
        }
        // Not JSON-RPC: the server's business; pass it on as it came.
        Err(_) => bytes,
    };
    st.finish(&expected, json!({ "code": -32603, "message": "the server's answer had no response for this request" }));
    if denials.is_empty() {
        return Ok(out);
    }
    let mut all: Vec<Value> = match serde_json::from_slice::<Value>(&out) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => Vec::new(),
    };
    all.extend(denials);
    let v = if all.len() == 1 && !batch {
        all.remove(0)
    } else {
        Value::Array(all)
    };
    Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
}

/// An SSE answer: a task reads the upstream stream and hands each event on
/// through a small channel, so at most one event (plus the channel's few)
/// is in memory, and a client that stops reading slows the server down.
pub fn sse(
    mut body: UpstreamBody,
    mut st: State,
    expected: Vec<String>,
    denials: Vec<Value>,
) -> ProxyBody {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for d in &denials {
            if tx
                .send(sse::serialize(Some("message"), None, &d.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let mut parser = sse::Parser::new(st.max_message);
        let mut end =
            json!({ "code": -32603, "message": "the server's stream ended without a response" });
        // The 200 head is out, so a server that stops answering cannot get
        // the client a 504; each waiting request gets -32082 instead, and
        // the task, the client and the upstream port are freed. Progress
        // notifications count as an answer; keep-alive comments do not.
        let quiet = st.answer_timeout.filter(|_| !expected.is_empty());
        let mut deadline = quiet.map(|q| tokio::time::Instant::now() + q);
        let mut client_turn = false;
        'read: loop {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d, body.frame()).await.ok(),
                None => Some(body.frame().await),
            };
            let Some(next) = next else {
                let quiet = quiet.unwrap_or_default();
                let now = tokio::time::Instant::now();
                if st.sessions.server_waiting(&st.origin.key) {
                    // The server waits on the client (a sampling or
                    // elicitation answer, perhaps a human's): its silence
                    // is not a fault. Look again soon; once the client has
                    // answered, the server gets a whole period.
                    client_turn = true;
                    deadline = Some(now + CLIENT_TURN_POLL.min(quiet));
                    continue;
                }
                if std::mem::take(&mut client_turn) {
                    deadline = Some(now + quiet);
                    continue;
                }
                match st.time_out(&expected, quiet, &tx).await {
                    Some(error) => {
                        end = error;
                        break;
                    }
                    // All answered; the server may keep its stream open.
                    None => deadline = None,
                }
                continue;
            };
            let frame = match next {
                None => break,
                Some(Err(e)) => {
                    tracing::info!(conn = st.origin.conn.id, error = %e, "upstream stream failed");
                    end = json!({ "code": CODE_UPSTREAM_UNAVAILABLE, "message": format!("upstream stream failed: {e}") });
                    break;
                }
                Some(Ok(f)) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            match parser.push(&data) {
                Ok(events) => {
                    for ev in events {
                        if deadline.is_some()
                            && ev.data.as_deref().is_some_and(|d| !d.trim().is_empty())
                        {
                            deadline = quiet.map(|q| tokio::time::Instant::now() + q);
                        }
                        let out = st.on_event(ev);
                        if out.is_empty() {
                            continue;
                        }
                        if tx.send(out).await.is_err() {
                            end = json!({ "code": -32603, "message": "the client went away" });
                            break 'read;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(conn = st.origin.conn.id, error = %e, "upstream SSE stream cut");
                    end =
                        json!({ "code": CODE_SERVER_MESSAGE_TOO_LARGE, "message": e.to_string() });
                    // Tell the client, per request it is waiting on.
                    let ids = expected.iter().filter_map(|k| serde_json::from_str(k).ok());
                    tell(&tx, ids, &end).await;
                    break;
                }
            }
        }
        let rest = parser.leftover();
        if !rest.is_empty() {
            let _ = tx.send(rest).await;
        }
        st.finish(&expected, end);
    });
    http_body_util::BodyExt::boxed(ChannelBody { rx })
}

/// One JSON-RPC error event per request id, on the client's stream.
async fn tell(tx: &mpsc::Sender<Bytes>, ids: impl Iterator<Item = Value>, error: &Value) {
    for id in ids {
        let msg = json!({ "jsonrpc": "2.0", "id": id, "error": error });
        let _ = tx
            .send(sse::serialize(Some("message"), None, &msg.to_string()))
            .await;
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
