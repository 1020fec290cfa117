//! Step `classify`: which requests on an MCP port are MCP, read from the
//! head. A request is MCP by what the server will make of it, not by how
//! its path is spelled: its path is compared as servers route it
//! (`reqpath`), and a POST whose body is JSON-RPC is MCP on any path
//! (`read_body`, used by `route`'s sniff). Everything else is refused
//! unless the port's `pass_through` names its path.

use http::{Method, header, request::Parts};
use serde_json::Value;

use super::McpHandler;
use crate::{
    error::{Reason, Refusal},
    proxy::ConnCtx,
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
    pub(super) fn classify(&self, head: &Parts, ctx: &ConnCtx) -> Class {
        let (method, uri) = (&head.method, &head.uri);
        // Servers differ on which of two session ids they read (the first,
        // the last, or both joined): the agent cannot check the one used.
        if head.headers.get_all("mcp-session-id").iter().count() > 1 {
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
            _ => Class::Refuse(not_mcp(uri.path())),
        }
    }
}

/// The refusal of a request to `path` that is not MCP and not passed through.
pub(super) fn not_mcp(path: &str) -> Refusal {
    Refusal::new(
        Reason::NotMcp,
        format!("{path} is not an MCP endpoint of this port, and not in its pass_through"),
    )
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
