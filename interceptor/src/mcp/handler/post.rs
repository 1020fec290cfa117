//! A POST from the client: its JSON-RPC messages, each through the
//! phases, then forwarded (what is left of them) and paired with the
//! answer; denials the agent answers itself.

use std::{sync::Arc, time::Duration};

use http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{
    McpHandler, Waiting, header_str,
    reply::{accepted, forward_body, remember_client},
};
use crate::{
    error::{Reason, Refusal},
    identity::Caller,
    jsonrpc::{self, Body, Kind},
    mcp::{exchange, stateless},
    pipeline::{
        Direction, EventKind, HoldSignal, MessageCtx, Notes, Outcome, Transport, event::now_us,
    },
    proxy::{
        ConnCtx,
        body::{ProxyBody, ReadError, full, read_limited},
        http::{json_response, strip_hop_headers, upstream_refusal},
    },
};

impl McpHandler {
    pub(super) async fn post<B>(
        &self,
        req: Request<B>,
        ctx: Arc<ConnCtx>,
        caller: Arc<Caller>,
        hold: Option<Arc<HoldSignal>>,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin,
        B::Error: Into<crate::proxy::body::BoxError>,
    {
        let received = now_us();
        let (mut parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let legacy = match self.sessions.legacy_session(&target) {
            Ok(l) => l,
            Err(e) => return self.refuse_legacy(&parts, &ctx, caller, &e),
        };
        let header_sid = header_str(&parts.headers, "mcp-session-id");
        let transport = if legacy.is_some() {
            Transport::Sse
        } else if stateless::is_stateless(&parts.headers) {
            Transport::Stateless
        } else {
            Transport::StreamableHttp
        };
        let mut origin = self.origin(&parts, &ctx, transport, legacy.or(header_sid), Some(caller));
        if let Some(resp) = self.check_owner(&origin) {
            return resp;
        }
        if !origin.in_session
            && let Some(c) = &origin.caller
        {
            // A session the server opens in answer inherits this owner.
            let _ = self.sessions.claim(&origin.key, &c.principal());
        }
        // From here on, whatever the client does: a per-POST key is freed,
        // and a forwarded request gets its row.
        let mut guard = exchange::Forwarded::new(
            self.pipeline.clone(),
            self.sessions.clone(),
            origin.key.clone(),
            origin.in_session,
            Vec::new(),
        );
        let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
        let bytes = match read_limited(body, ctx.http.max_request_body, idle).await {
            Ok(b) => b,
            Err(e) => {
                let n = match e {
                    ReadError::TooLarge(max) => max as u64,
                    _ => 0,
                };
                return self.reject(&origin, super::route::body_refusal(e), n);
            }
        };
        let mut body = match jsonrpc::parse_client(&bytes) {
            Ok(b) => b,
            Err(e) => return self.reject(&origin, e.refusal(), bytes.len() as u64),
        };
        if body.messages().len() > ctx.http.max_batch {
            let e = Refusal::new(
                Reason::InvalidRequest,
                format!(
                    "a batch of {} messages is more than http.max_batch ({})",
                    body.messages().len(),
                    ctx.http.max_batch
                ),
            );
            return self.reject(&origin, e, bytes.len() as u64);
        }
        if transport == Transport::Stateless
            && let Err(err) = stateless::check(&parts.headers, &body)
        {
            return self.reject(&origin, err, bytes.len() as u64);
        }
        if let Some(v) = header_str(&parts.headers, "mcp-protocol-version") {
            self.sessions
                .update_info(&origin.key, |i| i.protocol_version = Some(v));
        }
        self.sessions.update_info(&origin.key, |i| {
            i.transport.get_or_insert(transport);
        });

        // Each client message through the phases, then remembered for pairing.
        let per_msg_bytes = if body.messages().len() == 1 {
            bytes.len() as u64
        } else {
            0
        };
        let mut denials = Vec::new();
        let mut keep = Vec::new();
        let mut expected = Vec::new();
        let info = self.sessions.info(&origin.key);
        let mut ids_seen = Vec::new();
        let mut going = Vec::new();
        for msg in body.messages_mut() {
            if let Some(waiting) = self.duplicate_id(&origin.key, msg, &mut ids_seen) {
                let ev = origin.event(EventKind::Denied, Direction::ClientToServer, msg, &info);
                self.refuse_duplicate(ev, &waiting, &mut denials);
                keep.push(false);
                continue;
            }
            if msg.method() == Some("initialize") {
                remember_client(&self.sessions, &origin.key, msg);
            }
            let info = if msg.method() == Some("initialize") {
                self.sessions.info(&origin.key)
            } else {
                info.clone()
            };
            let notes = Notes::with_hold(hold.clone());
            let mctx = MessageCtx {
                conn: &origin.conn,
                session_id: origin.in_session.then_some(origin.key.as_str()),
                transport,
                protocol_version: info.protocol_version.as_deref(),
                http_path: &origin.http_path,
                caller: origin.caller.as_deref(),
                client_name: info.client_name.as_deref(),
                client_version: info.client_version.as_deref(),
                request_method: None,
                mask_profile: None,
                notes: &notes,
            };
            let outcome = self.pipeline.on_request(&mctx, msg).await;
            let mut ev = origin.event(EventKind::Exchange, Direction::ClientToServer, msg, &info);
            ev.received_us = received;
            ev.bytes_in = per_msg_bytes;
            ev.decision = notes.decision();
            ev.approval = notes.approval();
            match outcome {
                Outcome::Answered { result, phase } => {
                    ev.kind = EventKind::Denied;
                    ev.decided_by = Some(phase.to_string());
                    ev.result = Some(result.clone());
                    ev.http_status = Some(200);
                    if msg.kind == Kind::Request {
                        denials.push(
                            json!({ "jsonrpc": "2.0", "id": msg.id().cloned(), "result": result }),
                        );
                    }
                    exchange::record(&self.pipeline, ev);
                    keep.push(false);
                }
                Outcome::Denied { error, phase } => {
                    ev.kind = EventKind::Denied;
                    ev.decided_by = Some(phase.to_string());
                    ev.error = Some(error.error());
                    ev.http_status = Some(200);
                    if msg.kind == Kind::Request {
                        denials.push(error.to_jsonrpc(msg.id().cloned()));
                    }
                    exchange::record(&self.pipeline, ev);
                    keep.push(false);
                }
                Outcome::Forward { rewritten } => {
                    ev.rewritten = rewritten;
                    ev.forwarded_us = Some(now_us());
                    match msg.kind {
                        Kind::Request => {
                            let id = msg.id_key().unwrap_or_default();
                            let copy = ev.clone();
                            match self.sessions.expect_unique(&origin.key, id.clone(), ev) {
                                Ok(evicted) => {
                                    guard.watch(&id);
                                    going.push(copy);
                                    self.forgotten(evicted);
                                    expected.push(id);
                                }
                                // Another POST of the session got there first.
                                Err(dup) => {
                                    self.refuse_duplicate(*dup.event, &dup.waiting, &mut denials);
                                    keep.push(false);
                                    continue;
                                }
                            }
                        }
                        Kind::Notification => {
                            ev.kind = EventKind::Notification;
                            exchange::record(&self.pipeline, ev);
                        }
                        Kind::Response | Kind::Error => {
                            let id = msg.id_key().unwrap_or_default();
                            match self.sessions.answer(&origin.key, &id, false) {
                                Some(req) => {
                                    exchange::complete(&self.pipeline, req, msg, 200, per_msg_bytes)
                                }
                                None => {
                                    ev.kind = EventKind::Unpaired;
                                    exchange::record(&self.pipeline, ev);
                                }
                            }
                        }
                    }
                    keep.push(true);
                }
            }
        }

        if keep.iter().all(|k| !k) {
            // Nothing left to forward: answer the denials ourselves.
            if !origin.in_session {
                self.sessions.close(&origin.key);
            }
            return match denials.len() {
                0 => accepted(),
                1 if matches!(body, Body::Single(_)) => json_response(StatusCode::OK, &denials[0]),
                _ => json_response(StatusCode::OK, &Value::Array(denials)),
            };
        }
        let out_bytes = forward_body(&mut body, &keep, &bytes);
        strip_hop_headers(&mut parts.headers);
        super::encoding::ask_identity(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        let reply = self.replier(&parts.headers, &ctx);
        let up_req = Request::from_parts(parts, full(out_bytes));
        // The `forwarded` rows, before the requests go (see `AuditPhase`).
        for ev in &going {
            self.pipeline.forwarded(ev);
        }
        guard.sent();
        match ctx.upstream.send(ctx.upstream_addr, up_req).await {
            Ok(resp) => {
                let waiting = Waiting {
                    expected,
                    denials,
                    batch: matches!(body, Body::Batch(_)),
                    guard: Some(guard),
                };
                self.respond(resp, &mut origin, &ctx, waiting, reply).await
            }
            Err(e) => {
                tracing::warn!(conn = origin.conn.id, error = %e, "upstream failed");
                let refusal = upstream_refusal(&e);
                let status = refusal.status();
                let pending = self.sessions.take_unanswered(&origin.key, &expected);
                let mut answers: Vec<Value> = pending
                    .iter()
                    .map(|p| refusal.to_jsonrpc(p.jsonrpc_id.clone()))
                    .collect();
                exchange::unanswered(
                    &self.pipeline,
                    pending,
                    Some(status.as_u16()),
                    refusal.error(),
                );
                if !origin.in_session {
                    self.sessions.close(&origin.key);
                }
                answers.extend(denials);
                let body = match answers.len() {
                    0 => refusal.to_jsonrpc(None),
                    1 => answers.remove(0),
                    _ => Value::Array(answers),
                };
                json_response(status, &body)
            }
        }
    }
}
