//! Which requests on an MCP port are MCP. A request is MCP by what the
//! server will make of it, not by how its path is spelled: its path is
//! compared as servers route it (`reqpath`), and a POST whose body is
//! JSON-RPC is MCP on any path. Everything else is refused unless the
//! port's `pass_through` names its path; refusals are audited.

use std::{sync::Arc, time::Duration};

use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use hyper::body::Incoming;
use serde_json::Value;

use super::McpHandler;
use crate::{
    error::{Reason, Refusal},
    identity::Caller,
    jsonrpc::{Kind, Message},
    mcp::{exchange, session::LegacyError},
    pipeline::{Direction, EventKind, Transport, event::now_us},
    proxy::{
        ConnCtx,
        body::{ProxyBody, ReadError, full, read_limited},
        http::{pass_through, refusal_response},
    },
    reqpath,
};

/// What to do with a request, decided from its head.
#[derive(Debug, PartialEq)]
pub(super) enum Class {
    /// POST, GET or DELETE on an MCP path.
    Mcp,
    /// A POST elsewhere: MCP if its body is JSON-RPC; otherwise forwarded
    /// when `pass` (its path is in `pass_through`), else refused.
    Sniff { pass: bool },
    /// Forwarded as it is: its path is in `pass_through`.
    PassThrough,
    /// Refused.
    Refuse(Refusal),
}

/// A request's body, read to tell JSON-RPC from anything else.
#[derive(Debug, PartialEq)]
pub(super) enum Body {
    JsonRpc,
    Other,
    /// The agent cannot tell (encoded, another charset, JSON it cannot
    /// parse that mentions `jsonrpc`).
    Unsure(&'static str),
}

impl McpHandler {
    /// Classifies a request by its method and its path as servers read it.
    pub(super) fn classify<B>(&self, req: &Request<B>, ctx: &ConnCtx) -> Class {
        let (method, uri) = (req.method(), req.uri());
        // Servers differ on which of two session ids they read (the first,
        // the last, or both joined): the agent cannot check the one used.
        if req.headers().get_all("mcp-session-id").iter().count() > 1 {
            let msg = "more than one Mcp-Session-Id header".to_string();
            return Class::Refuse(Refusal::new(Reason::Ambiguous, msg));
        }
        let norm = match reqpath::normalize(uri.path()) {
            Ok(p) => p,
            Err(e) => return Class::Refuse(Refusal::new(Reason::Ambiguous, e.to_string())),
        };
        let mcp = ctx
            .rule
            .mcp_paths
            .iter()
            .any(|p| reqpath::normalize(p).is_ok_and(|p| p == norm))
            || self.sessions.is_legacy_path(&norm);
        let pass = ctx
            .rule
            .pass_through
            .iter()
            .any(|p| reqpath::matches(p, &norm));
        match *method {
            Method::POST | Method::GET | Method::DELETE if mcp => Class::Mcp,
            _ if mcp => Class::Refuse(Refusal::new(
                Reason::MethodNotAllowed,
                format!("{method} is not an MCP transport method (POST, GET, DELETE)"),
            )),
            Method::POST => Class::Sniff { pass },
            _ if pass => Class::PassThrough,
            _ => Class::Refuse(Refusal::new(
                Reason::NotMcp,
                format!(
                    "{} is not an MCP endpoint of this port, and not in its pass_through",
                    uri.path()
                ),
            )),
        }
    }

    /// Refuses a request with an audit row (`decided_by = 'route'`).
    pub(super) fn refuse(
        &self,
        parts: &Parts,
        ctx: &ConnCtx,
        caller: Option<Arc<Caller>>,
        refusal: Refusal,
        bytes_in: u64,
    ) -> Response<ProxyBody> {
        let origin = self.origin(parts, ctx, Transport::Http, None, caller);
        let status = refusal.status();
        tracing::info!(conn = ctx.info.id, client = %ctx.info.client, method = %parts.method, path = %parts.uri.path(), status = status.as_u16(), message = refusal.message(), "request refused");
        let mut ev = origin.rejected(status.as_u16(), refusal.error(), bytes_in);
        ev.decided_by = Some("route".into());
        exchange::record(&self.pipeline, ev);
        let mut r = refusal_response(&refusal, None);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        // The body may be unread: the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }

    /// Forwards a request `pass_through` names, unjudged: without the
    /// caller's credential and without the agent's; one `http` row.
    pub(super) async fn pass(
        &self,
        mut req: Request<ProxyBody>,
        ctx: &ConnCtx,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody> {
        self.identity.strip_caller_credential(req.headers_mut());
        let (parts, body) = req.into_parts();
        let origin = self.origin(&parts, ctx, Transport::Http, None, Some(caller));
        let resp = pass_through(Request::from_parts(parts, body), ctx).await;
        let empty = Message {
            kind: Kind::Notification,
            value: Value::Null,
            raw: None,
        };
        let mut ev = origin.event(
            EventKind::Http,
            Direction::ClientToServer,
            &empty,
            &Default::default(),
        );
        ev.http_status = Some(resp.status().as_u16());
        ev.done_us = Some(now_us());
        exchange::record(&self.pipeline, ev);
        resp
    }

    /// A POST off the MCP paths: read (bounded), then MCP if it is
    /// JSON-RPC, forwarded as it is if its path passes through, else
    /// refused.
    pub(super) async fn sniff(
        &self,
        req: Request<Incoming>,
        ctx: Arc<ConnCtx>,
        caller: Arc<Caller>,
        pass: bool,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
        let max = ctx.http.max_request_body;
        let bytes = match read_limited(body, max, idle).await {
            Ok(b) => b,
            Err(e) => {
                let refusal = body_refusal(e);
                return self.refuse(&parts, &ctx, Some(caller), refusal, 0);
            }
        };
        let n = bytes.len() as u64;
        match read_body(&parts.headers, &bytes) {
            Body::JsonRpc => {
                tracing::info!(conn = ctx.info.id, path = %parts.uri.path(), "JSON-RPC body off the MCP paths: judged as MCP");
                self.identity.rewrite_upstream_headers(&mut parts.headers);
                self.post_any(Request::from_parts(parts, full(bytes)), ctx, caller)
                    .await
            }
            Body::Unsure(why) => {
                let msg = format!("cannot tell whether this body is JSON-RPC: {why}");
                self.refuse(
                    &parts,
                    &ctx,
                    Some(caller),
                    Refusal::new(Reason::Ambiguous, msg),
                    n,
                )
            }
            Body::Other if pass => {
                self.pass(Request::from_parts(parts, full(bytes)), &ctx, caller)
                    .await
            }
            Body::Other => {
                let msg = format!(
                    "{} is not an MCP endpoint of this port, and not in its pass_through",
                    parts.uri.path()
                );
                self.refuse(
                    &parts,
                    &ctx,
                    Some(caller),
                    Refusal::new(Reason::NotMcp, msg),
                    n,
                )
            }
        }
    }
}

impl McpHandler {
    /// Refuses a POST to a legacy message endpoint whose session the
    /// agent cannot read one way, or that names no live session.
    pub(super) fn refuse_legacy(
        &self,
        parts: &Parts,
        ctx: &ConnCtx,
        caller: Arc<Caller>,
        e: &LegacyError,
    ) -> Response<ProxyBody> {
        let reason = match e {
            LegacyError::Unknown => Reason::UnknownSession,
            _ => Reason::Ambiguous,
        };
        self.refuse(
            parts,
            ctx,
            Some(caller),
            Refusal::new(reason, e.to_string()),
            0,
        )
    }
}

/// The refusal for a request body the agent could not read.
pub(super) fn body_refusal(e: ReadError) -> Refusal {
    match e {
        ReadError::TooLarge(m) => Refusal::new(
            Reason::RequestTooLarge,
            format!("request body larger than {m} bytes"),
        ),
        ReadError::Idle(d) => Refusal::new(
            Reason::RequestTimeout,
            format!("request body stalled for {d:?}"),
        ),
        ReadError::Io(err) => Refusal::new(
            Reason::ParseError,
            format!("reading the request body failed: {err}"),
        ),
    }
}

/// Whether `body` is JSON-RPC: an object with a `jsonrpc` or `method`
/// member (any case), or an array holding one.
pub(super) fn read_body(headers: &http::HeaderMap, body: &[u8]) -> Body {
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Body::Unsure("it has a Content-Encoding");
    }
    let charset = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .skip(1)
                .find_map(|p| {
                    p.trim()
                        .split_once('=')
                        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
                })
                .map(|(_, c)| c.trim().trim_matches('"').to_ascii_lowercase())
        });
    if charset.is_some_and(|c| c != "utf-8" && c != "utf8") {
        return Body::Unsure("its charset is not UTF-8");
    }
    let text = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let is_msg = |v: &Value| {
        v.as_object().is_some_and(|o| {
            o.keys()
                .any(|k| k.eq_ignore_ascii_case("jsonrpc") || k.eq_ignore_ascii_case("method"))
        })
    };
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Array(a)) if a.iter().any(is_msg) => Body::JsonRpc,
        Ok(v) if is_msg(&v) => Body::JsonRpc,
        Ok(_) => Body::Other,
        Err(_) if mentions_jsonrpc(text) => Body::Unsure("it mentions jsonrpc but is not JSON"),
        Err(_) => Body::Other,
    }
}

fn mentions_jsonrpc(b: &[u8]) -> bool {
    b.windows(7).any(|w| w.eq_ignore_ascii_case(b"jsonrpc"))
}

#[cfg(test)]
mod tests;
