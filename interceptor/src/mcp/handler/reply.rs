//! The handler's helpers for what goes back out: refusals of server
//! requests answered upstream, the forwarded body, and small replies.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::Value;

use super::McpHandler;
use crate::{
    error::{Reason, Refusal},
    jsonrpc::{Body, Kind, Message},
    mcp::{
        exchange,
        ids::{self, Loose},
        session::Sessions,
        stream,
    },
    pipeline::{EventKind, ExchangeEvent},
    proxy::{
        ConnCtx,
        body::{ProxyBody, full},
    },
};

impl McpHandler {
    /// Answers server requests upstream for the client (when a phase
    /// refused one), with the headers this request went upstream with:
    /// Host, the agent's credential, the protocol version.
    pub(super) fn replier(
        &self,
        headers: &http::HeaderMap,
        ctx: &ConnCtx,
    ) -> Option<stream::Replier> {
        if !self.pipeline.polices_server_requests() {
            return None;
        }
        let mut base = headers.clone();
        base.remove(header::CONTENT_LENGTH);
        base.remove("mcp-session-id");
        base.remove("last-event-id");
        base.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        base.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let (up, addr) = (ctx.upstream.clone(), ctx.upstream_addr);
        Some(Arc::new(
            move |target: String, session: Option<String>, msg: Value| {
                let mut h = base.clone();
                if let Some(v) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
                    h.insert("mcp-session-id", v);
                }
                let body = full(serde_json::to_vec(&msg).unwrap_or_default());
                let mut req = Request::new(body);
                *req.method_mut() = Method::POST;
                *req.headers_mut() = h;
                match target.parse() {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(e) => {
                        tracing::warn!(%target, error = %e, "cannot answer the server: bad target");
                        return;
                    }
                }
                let up = up.clone();
                tokio::spawn(async move {
                    match up.send(addr, req).await {
                        Ok(r) => tracing::debug!(
                            status = r.status().as_u16(),
                            "refusal sent to the server"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not send a refusal to the server")
                        }
                    }
                });
            },
        ))
    }
}

/// The body to send upstream: the original bytes unless a message was
/// rewritten or dropped.
pub(super) fn forward_body(body: &mut Body, keep: &[bool], original: &Bytes) -> Bytes {
    if keep.iter().all(|k| *k) {
        return body.to_bytes(original);
    }
    let kept: Vec<Value> = body
        .messages()
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(m, _)| m.value.clone())
        .collect();
    Bytes::from(serde_json::to_vec(&Value::Array(kept)).unwrap_or_default())
}

/// Client name/version and requested protocol version from `initialize`.
pub(super) fn remember_client(sessions: &Sessions, key: &str, msg: &Message) {
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

pub(super) fn accepted() -> Response<ProxyBody> {
    let mut r = Response::new(crate::proxy::body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

impl McpHandler {
    /// The pairing key of a request `msg`'s id duplicates: an earlier
    /// request of this batch (`seen`) or one waiting under `key`, with the
    /// same id or a twin (see `ids`). Its answer could not be told apart:
    /// it would be paired with the other's row and masked with the other's
    /// profile.
    pub(super) fn duplicate_id(
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
    pub(super) fn refuse_duplicate(
        &self,
        mut ev: ExchangeEvent,
        waiting: &str,
        denials: &mut Vec<Value>,
    ) {
        let id = ev.jsonrpc_id.clone().unwrap_or(Value::Null);
        let refusal = Refusal::new(
            Reason::DuplicateId,
            format!(
                "duplicate JSON-RPC id {id}: a request with id {waiting} is already waiting \
                 for its answer in this session, and the answers could not be told apart"
            ),
        );
        let error = refusal.error();
        tracing::warn!(conn = ev.conn_id, %id, waiting, "request with a duplicate id refused");
        ev.kind = EventKind::Denied;
        ev.decided_by = Some("mcp".into());
        ev.error = Some(error.clone());
        ev.http_status = Some(200);
        denials.push(refusal.to_jsonrpc(Some(id)));
        exchange::record(&self.pipeline, ev);
    }

    /// Requests the pending table gave up on (too many waiting): recorded.
    pub(super) fn forgotten(&self, evicted: Vec<ExchangeEvent>) {
        let error = Refusal::new(
            Reason::PendingLimit,
            "too many unanswered requests in this session; the agent stopped waiting for this one",
        )
        .error();
        exchange::unanswered(&self.pipeline, evicted, None, error);
    }
}
