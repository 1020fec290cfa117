//! Which requests on an MCP port are MCP. A request is MCP by what the
//! server will make of it, not by how its path is spelled: its path is
//! compared as servers route it (`reqpath`), and a POST whose body is
//! JSON-RPC is MCP on any path. Everything else is refused unless the
//! port's `pass_through` names its path; refusals are audited.

use std::{sync::Arc, time::Duration};

use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::McpHandler;
use crate::{
    identity::Caller,
    jsonrpc::{Kind, Message},
    mcp::{exchange, session::LegacyError},
    pipeline::{Direction, EventKind, Transport, event::now_us},
    proxy::{
        ConnCtx,
        body::{ProxyBody, ReadError, full, read_limited},
        http::{CODE_REQUEST_TIMEOUT, CODE_TOO_LARGE, json_response, pass_through},
    },
    reqpath,
};

/// Not an MCP request, and its path is not in the port's `pass_through`.
pub const CODE_NOT_MCP: i64 = -32070;
/// An HTTP method the MCP transport does not define, on an MCP path.
pub const CODE_METHOD_NOT_ALLOWED: i64 = -32071;
/// A path, query or body the agent cannot read one way only.
pub const CODE_AMBIGUOUS: i64 = -32072;
/// A session the server never opened here (or that ended).
pub const CODE_UNKNOWN_SESSION: i64 = -32073;

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
    /// Refused with this status, JSON-RPC code and message.
    Refuse(StatusCode, i64, String),
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
            return Class::Refuse(StatusCode::BAD_REQUEST, CODE_AMBIGUOUS, msg);
        }
        let norm = match reqpath::normalize(uri.path()) {
            Ok(p) => p,
            Err(e) => return Class::Refuse(StatusCode::BAD_REQUEST, CODE_AMBIGUOUS, e.to_string()),
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
            _ if mcp => Class::Refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                CODE_METHOD_NOT_ALLOWED,
                format!("{method} is not an MCP transport method (POST, GET, DELETE)"),
            ),
            Method::POST => Class::Sniff { pass },
            _ if pass => Class::PassThrough,
            _ => Class::Refuse(
                StatusCode::NOT_FOUND,
                CODE_NOT_MCP,
                format!(
                    "{} is not an MCP endpoint of this port, and not in its pass_through",
                    uri.path()
                ),
            ),
        }
    }

    /// Refuses a request with an audit row (`decided_by = 'route'`).
    pub(super) fn refuse(
        &self,
        parts: &Parts,
        ctx: &ConnCtx,
        caller: Option<Arc<Caller>>,
        (status, code, message): (StatusCode, i64, String),
        bytes_in: u64,
    ) -> Response<ProxyBody> {
        let origin = self.origin(parts, ctx, Transport::Http, None, caller);
        tracing::info!(conn = ctx.info.id, client = %ctx.info.client, method = %parts.method, path = %parts.uri.path(), status = status.as_u16(), %message, "request refused");
        let error = json!({ "code": code, "message": message });
        let mut ev = origin.rejected(status.as_u16(), error.clone(), bytes_in);
        ev.decided_by = Some("route".into());
        exchange::record(&self.pipeline, ev);
        let mut r = json_response(
            status,
            &json!({ "jsonrpc": "2.0", "id": null, "error": error }),
        );
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
                let refusal = match e {
                    ReadError::TooLarge(m) => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        CODE_TOO_LARGE,
                        format!("request body larger than {m} bytes"),
                    ),
                    ReadError::Idle(d) => (
                        StatusCode::REQUEST_TIMEOUT,
                        CODE_REQUEST_TIMEOUT,
                        format!("request body stalled for {d:?}"),
                    ),
                    ReadError::Io(err) => (
                        StatusCode::BAD_REQUEST,
                        -32700,
                        format!("reading the request body failed: {err}"),
                    ),
                };
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
                    (StatusCode::BAD_REQUEST, CODE_AMBIGUOUS, msg),
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
                    (StatusCode::NOT_FOUND, CODE_NOT_MCP, msg),
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
        let (status, code) = match e {
            LegacyError::Unknown => (StatusCode::NOT_FOUND, CODE_UNKNOWN_SESSION),
            _ => (StatusCode::BAD_REQUEST, CODE_AMBIGUOUS),
        };
        self.refuse(parts, ctx, Some(caller), (status, code, e.to_string()), 0)
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
