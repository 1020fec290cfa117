//! Step `decide`: each of a POST's messages through the pipeline's phases
//! (`Pipeline::on_request`), and each outcome fanned out: a message a
//! phase refused gets its `denied` row and, a request, the agent's own
//! answer; a request that goes upstream waits for its answer (guarded by
//! `record`'s `Forwarded`); a notification is recorded; a client's answer
//! to a server request is paired with it. A request whose id would make
//! its answer ambiguous is refused here (`ids`).

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{McpHandler, parse::Parsed, route::Post, run::Stop};
use crate::{
    error::{Reason, Refusal},
    jsonrpc::{Body, Kind, Message},
    mcp::{
        exchange::{self, Forwarded, Origin},
        held,
        ids::{self, Loose},
        session::{SessionInfo, Sessions},
        tasks,
    },
    pipeline::{
        Direction, EventKind, ExchangeEvent, HoldSignal, MessageCtx, Notes, Outcome, event::now_us,
    },
    proxy::{body::ProxyBody, http::json_response},
};

/// What `decide` made of a POST's messages.
#[derive(Default)]
pub(super) struct Decided {
    /// Per message, whether it goes upstream.
    pub keep: Vec<bool>,
    /// The agent's own answers to the requests the phases refused.
    pub denials: Vec<Value>,
    /// The pairing keys of the requests that go upstream.
    pub expected: Vec<String>,
    /// Their events, recorded as `forwarded` just before they go.
    pub going: Vec<ExchangeEvent>,
}

/// One POST's messages on their way through the phases.
struct Deciding<'a> {
    handler: &'a McpHandler,
    origin: &'a Origin,
    guard: &'a mut Forwarded,
    /// Lets a phase that holds a message keep the client waiting.
    hold: Option<Arc<HoldSignal>>,
    received: i64,
    /// A lone message's row carries the body's size; a batch's, none.
    bytes_in: u64,
    /// The session as the POST found it.
    info: SessionInfo,
    /// The ids of the batch's requests so far.
    ids_seen: Vec<(String, Loose)>,
    out: Decided,
}

impl McpHandler {
    /// Runs the POST's messages through the phases. When none is left to
    /// forward, the agent's own answers end the request.
    pub(super) async fn decide(
        &self,
        post: &Post,
        origin: &Origin,
        parsed: &mut Parsed,
        guard: &mut Forwarded,
        hold: Option<Arc<HoldSignal>>,
    ) -> Result<Decided, Stop> {
        let lone = parsed.body.messages().len() == 1;
        let mut d = Deciding {
            handler: self,
            origin,
            guard,
            // Only a client that takes SSE can be kept waiting (see `held`).
            hold: hold.filter(|_| held::accepts_sse(&post.head.headers)),
            received: post.received,
            bytes_in: if lone { parsed.bytes.len() as u64 } else { 0 },
            info: self.sessions.info(&origin.key),
            ids_seen: Vec::new(),
            out: Decided::default(),
        };
        for msg in parsed.body.messages_mut() {
            let kept = d.message(msg).await;
            d.out.keep.push(kept);
        }
        if d.out.keep.iter().any(|k| *k) {
            return Ok(d.out);
        }
        // Nothing left to forward: answer the denials ourselves.
        self.free(origin);
        let denials = d.out.denials;
        Err(Box::new(match denials.len() {
            0 => accepted(),
            1 if matches!(parsed.body, Body::Single(_)) => {
                json_response(StatusCode::OK, &denials[0])
            }
            _ => json_response(StatusCode::OK, &Value::Array(denials)),
        }))
    }

    /// Records a message a phase (or the handler itself, `mcp`) refused,
    /// and adds its answer (a request's) to the denials.
    pub(super) fn deny(
        &self,
        mut ev: ExchangeEvent,
        by: &str,
        answer: Option<Value>,
        out: &mut Vec<Value>,
    ) {
        ev.kind = EventKind::Denied;
        ev.decided_by = Some(by.to_string());
        ev.http_status = Some(200);
        out.extend(answer);
        exchange::record(&self.pipeline, ev);
    }
}

impl Deciding<'_> {
    /// One message through the phases; whether it goes upstream.
    async fn message(&mut self, msg: &mut Message) -> bool {
        let (h, origin) = (self.handler, self.origin);
        if let Some(waiting) = h.duplicate_id(&origin.key, msg, &mut self.ids_seen) {
            let ev = origin.event(
                EventKind::Denied,
                Direction::ClientToServer,
                msg,
                &self.info,
            );
            h.refuse_duplicate(ev, &waiting, &mut self.out.denials);
            return false;
        }
        let info = if msg.method() == Some("initialize") {
            remember_client(&h.sessions, &origin.key, msg);
            h.sessions.info(&origin.key)
        } else {
            self.info.clone()
        };
        let Ok(task) = h.task_handle(origin, msg, &info, &mut self.out.denials) else {
            return false;
        };
        let mut notes = Notes::with_hold(self.hold.clone());
        notes.task_tool = task.as_ref().map(|t| t.tool.clone());
        let mctx = MessageCtx {
            conn: &origin.conn,
            session_id: origin.in_session.then_some(origin.key.as_str()),
            transport: origin.transport,
            protocol_version: info.protocol_version.as_deref(),
            http_path: &origin.http_path,
            caller: origin.caller.as_deref(),
            client_name: info.client_name.as_deref(),
            client_version: info.client_version.as_deref(),
            request_method: None,
            mask_profile: None,
            notes: &notes,
        };
        let outcome = h.pipeline.on_request(&mctx, msg).await;
        let mut ev = origin.event(EventKind::Exchange, Direction::ClientToServer, msg, &info);
        ev.meta.follows = h.sessions.rounds.follows(&ev);
        ev.received_us = self.received;
        ev.bytes_in = self.bytes_in;
        ev.decision = notes.decision();
        ev.approval = notes.approval();
        if let Some(t) = &task {
            tasks::stamp(&mut ev, t, matches!(outcome, Outcome::Forward { .. }));
        }
        self.settle(msg, outcome, ev)
    }

    /// Fans a message's outcome out into its row, a denial or a pending
    /// request; whether it goes upstream.
    fn settle(&mut self, msg: &Message, outcome: Outcome, mut ev: ExchangeEvent) -> bool {
        let request = msg.kind == Kind::Request;
        match outcome {
            Outcome::Answered { result, phase } => {
                let answer = request.then(
                    || json!({ "jsonrpc": "2.0", "id": msg.id().cloned(), "result": &result }),
                );
                ev.result = Some(result);
                self.handler.deny(ev, phase, answer, &mut self.out.denials);
                false
            }
            Outcome::Denied { error, phase } => {
                let answer = request.then(|| error.to_jsonrpc(msg.id().cloned()));
                ev.error = Some(error.error());
                self.handler.deny(ev, phase, answer, &mut self.out.denials);
                false
            }
            Outcome::Forward { rewritten } => {
                ev.rewritten = rewritten;
                ev.forwarded_us = Some(now_us());
                self.goes(msg, ev)
            }
        }
    }

    /// A message the phases let through: a request waits for its answer
    /// (unless another POST took its id first), a notification is
    /// recorded, a client's answer to a server request is paired with it.
    fn goes(&mut self, msg: &Message, mut ev: ExchangeEvent) -> bool {
        let (h, key) = (self.handler, &self.origin.key);
        match msg.kind {
            Kind::Request => {
                let id = msg.id_key().unwrap_or_default();
                let copy = ev.clone();
                match h.sessions.expect_unique(key, id.clone(), ev) {
                    Ok(evicted) => {
                        self.guard.watch(&id);
                        self.out.going.push(copy);
                        h.forgotten(evicted);
                        self.out.expected.push(id);
                    }
                    // Another POST of the session got there first.
                    Err(dup) => {
                        h.refuse_duplicate(*dup.event, &dup.waiting, &mut self.out.denials);
                        return false;
                    }
                }
            }
            Kind::Notification => {
                ev.kind = EventKind::Notification;
                exchange::record(&h.pipeline, ev);
            }
            Kind::Response | Kind::Error => {
                let id = msg.id_key().unwrap_or_default();
                match h.sessions.answer(key, &id, false) {
                    Some(req) => exchange::complete(&h.pipeline, req, msg, 200, self.bytes_in),
                    None => {
                        ev.kind = EventKind::Unpaired;
                        exchange::record(&h.pipeline, ev);
                    }
                }
            }
        }
        true
    }
}

impl McpHandler {
    /// The pairing key of a request `msg`'s id duplicates: an earlier
    /// request of this batch (`seen`) or one waiting under `key`, with the
    /// same id or a twin (see `ids`). Its answer could not be told apart:
    /// it would be paired with the other's row and masked with the other's
    /// profile.
    fn duplicate_id(
        &self,
        key: &str,
        msg: &Message,
        seen: &mut Vec<(String, Loose)>,
    ) -> Option<String> {
        if msg.kind != Kind::Request {
            return None;
        }
        let id = msg.id_key()?;
        let loose = ids::loose_key(&id);
        let in_batch = seen
            .iter()
            .find(|(k, l)| *k == id || ids::twins(l, &loose))
            .map(|(k, _)| k.clone());
        seen.push((id.clone(), loose));
        in_batch.or_else(|| self.sessions.pending_twin(key, &id))
    }

    /// Refuses a request whose id duplicates `waiting` (-32600), with a
    /// `denied` row.
    fn refuse_duplicate(&self, mut ev: ExchangeEvent, waiting: &str, denials: &mut Vec<Value>) {
        let id = ev.jsonrpc_id.clone().unwrap_or(Value::Null);
        let refusal = Refusal::new(
            Reason::DuplicateId,
            format!(
                "duplicate JSON-RPC id {id}: a request with id {waiting} is already waiting \
                 for its answer in this session, and the answers could not be told apart"
            ),
        );
        tracing::warn!(conn = ev.conn_id, %id, waiting, "request with a duplicate id refused");
        ev.error = Some(refusal.error());
        self.deny(ev, "mcp", Some(refusal.to_jsonrpc(Some(id))), denials);
    }

    /// Requests the pending table gave up on (too many waiting): recorded.
    fn forgotten(&self, evicted: Vec<ExchangeEvent>) {
        let error = Refusal::new(
            Reason::PendingLimit,
            "too many unanswered requests in this session; the agent stopped waiting for this one",
        )
        .error();
        exchange::unanswered(&self.pipeline, evicted, None, error);
    }
}

/// Client name/version and requested protocol version from `initialize`.
fn remember_client(sessions: &Sessions, key: &str, msg: &Message) {
    let p = msg.params();
    let get = |path: &[&str]| {
        let mut v = p?;
        for k in path {
            v = v.get(k)?;
        }
        v.as_str().map(str::to_owned)
    };
    let (name, version, proto) = (
        get(&["clientInfo", "name"]),
        get(&["clientInfo", "version"]),
        get(&["protocolVersion"]),
    );
    sessions.update_info(key, |i| {
        i.client_name = name;
        i.client_version = version;
        if i.protocol_version.is_none() {
            i.protocol_version = proto;
        }
    });
}

/// 202 Accepted, empty: nothing to forward and no request to answer.
fn accepted() -> Response<ProxyBody> {
    let mut r = Response::new(crate::proxy::body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}
