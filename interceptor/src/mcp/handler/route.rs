//! Step `route`: where a request goes once its caller is known. An MCP
//! POST goes on through the runner's steps; a GET stream (get.rs), a
//! DELETE (delete.rs), a request the port's `pass_through` names, and a
//! refused one end here. A POST off the MCP paths is read first (`sniff`):
//! JSON-RPC goes on as MCP. Refusals here are audited with
//! `decided_by = 'route'`.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use hyper::body::Incoming;

use super::{
    McpHandler,
    body::body_refusal,
    classify::{Body, Class, not_mcp, read_body},
    run::Stop,
};
use crate::{
    error::{Reason, Refusal},
    identity::Caller,
    pipeline::{EventKind, Transport, event::now_us},
    proxy::{
        ConnCtx,
        body::{ProxyBody, full, read_limited},
        http::{pass_through, refusal_response},
    },
};

/// A POST that goes on through the steps after `route`.
pub(super) struct Post {
    /// Its head, the caller's credential already swapped for the agent's.
    pub head: Parts,
    pub caller: Arc<Caller>,
    /// When its steps began: each of its messages' `received_us`.
    pub received: i64,
}

/// A POST's body: still to read, or read already (to sniff it).
pub(super) enum Unread {
    Incoming(Incoming),
    Read(Bytes),
}

impl McpHandler {
    /// Sends a request its way: a POST judged as MCP goes on, with the
    /// caller's credential swapped for the agent's; anything else ends
    /// here.
    pub(super) async fn route(
        &self,
        mut head: Parts,
        body: Incoming,
        ctx: &ConnCtx,
        class: Class,
        caller: Arc<Caller>,
    ) -> Result<(Post, Unread), Stop> {
        match class {
            Class::Mcp => {}
            Class::Refuse(refusal) => {
                return Err(self.refuse(&head, ctx, Some(caller), refusal, 0));
            }
            Class::PassThrough => {
                // Not judged: the caller's credential stops here, and the
                // agent's own goes only with requests it judged.
                let req = Request::from_parts(head, crate::proxy::body::stream(body));
                return Err(Box::new(self.pass(req, ctx, caller).await));
            }
            Class::Sniff { pass } => return self.sniff(head, body, ctx, caller, pass).await,
        }
        // Credential isolation: the caller's token stops here; the server
        // sees only the agent's own credential, if one is configured.
        self.identity.rewrite_upstream_headers(&mut head.headers);
        match head.method {
            Method::POST => Ok((Post::new(head, caller), Unread::Incoming(body))),
            Method::GET => Err(Box::new(self.get(head, body, ctx, caller).await)),
            Method::DELETE => Err(Box::new(self.delete(head, ctx, caller).await)),
            // `classify` lets no other method through as MCP; should that
            // change, fail closed.
            _ => {
                let msg = format!("{} is not an MCP transport method", head.method);
                let refusal = Refusal::new(Reason::MethodNotAllowed, msg);
                Err(self.refuse(&head, ctx, Some(caller), refusal, 0))
            }
        }
    }

    /// A POST off the MCP paths: read (bounded), then MCP if it is
    /// JSON-RPC, forwarded as it is if its path passes through, else
    /// refused.
    async fn sniff(
        &self,
        mut head: Parts,
        body: Incoming,
        ctx: &ConnCtx,
        caller: Arc<Caller>,
        pass: bool,
    ) -> Result<(Post, Unread), Stop> {
        let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
        let max = ctx.http.max_request_body;
        let bytes = match read_limited(body, max, idle).await {
            Ok(b) => b,
            Err(e) => return Err(self.refuse(&head, ctx, Some(caller), body_refusal(e), 0)),
        };
        let n = bytes.len() as u64;
        let refusal = match read_body(&head.headers, &bytes) {
            Body::JsonRpc => {
                tracing::info!(conn = ctx.info.id, path = %head.uri.path(), "JSON-RPC body off the MCP paths: judged as MCP");
                self.identity.rewrite_upstream_headers(&mut head.headers);
                return Ok((Post::new(head, caller), Unread::Read(bytes)));
            }
            Body::Other if pass => {
                let req = Request::from_parts(head, full(bytes));
                return Err(Box::new(self.pass(req, ctx, caller).await));
            }
            Body::Unsure(why) => {
                let msg = format!("cannot tell whether this body is JSON-RPC: {why}");
                Refusal::new(Reason::Ambiguous, msg)
            }
            Body::Other => not_mcp(head.uri.path()),
        };
        Err(self.refuse(&head, ctx, Some(caller), refusal, n))
    }

    /// Forwards a request `pass_through` names, unjudged: without the
    /// caller's credential and without the agent's; one `http` row.
    async fn pass(
        &self,
        mut req: Request<ProxyBody>,
        ctx: &ConnCtx,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody> {
        self.identity.strip_caller_credential(req.headers_mut());
        let (parts, body) = req.into_parts();
        let origin = self.origin(&parts, ctx, Transport::Http, None, Some(caller));
        let resp = pass_through(Request::from_parts(parts, body), ctx).await;
        let mut ev = origin.bare(EventKind::Http);
        ev.http_status = Some(resp.status().as_u16());
        ev.done_us = Some(now_us());
        crate::mcp::exchange::record(&self.pipeline, ev);
        resp
    }

    /// Refuses a request with an audit row (`decided_by = 'route'`).
    pub(super) fn refuse(
        &self,
        head: &Parts,
        ctx: &ConnCtx,
        caller: Option<Arc<Caller>>,
        refusal: Refusal,
        bytes_in: u64,
    ) -> Stop {
        let origin = self.origin(head, ctx, Transport::Http, None, caller);
        let status = refusal.status();
        tracing::info!(conn = ctx.info.id, client = %ctx.info.client, method = %head.method, path = %head.uri.path(), status = status.as_u16(), message = refusal.message(), "request refused");
        self.record_refused(&origin, status.as_u16(), refusal.error(), bytes_in, "route");
        let mut r = refusal_response(&refusal, None);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        // The body may be unread: the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Box::new(r)
    }
}

impl Post {
    fn new(head: Parts, caller: Arc<Caller>) -> Self {
        Self {
            head,
            caller,
            received: now_us(),
        }
    }
}
