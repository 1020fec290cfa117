//! Step `parse`: a POST's body as JSON-RPC (strictly, `jsonrpc::
//! parse_client`), no larger a batch than `http.max_batch`, and a
//! stateless request's headers matching its body (`stateless`, checked
//! once what the request says of itself, protocol version and transport,
//! is noted on its session, so a refusal's row names its client).

use bytes::Bytes;
use http::{HeaderMap, request::Parts};

use super::{McpHandler, header_str, run::Stop};
use crate::{
    error::{Reason, Refusal},
    jsonrpc::{self, Body},
    mcp::{exchange::Origin, meta, stateless},
    pipeline::Transport,
    proxy::ConnCtx,
};

/// A POST's body, read and parsed.
pub(super) struct Parsed {
    /// As the client sent it (forwarded as it is when nothing changed).
    pub bytes: Bytes,
    pub body: Body,
}

impl McpHandler {
    /// The POST's messages, or the recorded refusal of its body.
    pub(super) fn parse(
        &self,
        bytes: Bytes,
        head: &Parts,
        origin: &Origin,
        ctx: &ConnCtx,
    ) -> Result<Parsed, Stop> {
        let n = bytes.len() as u64;
        let body =
            jsonrpc::parse_client(&bytes).map_err(|e| self.reject(origin, e.refusal(), n))?;
        if body.messages().len() > ctx.http.max_batch {
            let e = Refusal::new(
                Reason::InvalidRequest,
                format!(
                    "a batch of {} messages is more than http.max_batch ({})",
                    body.messages().len(),
                    ctx.http.max_batch
                ),
            );
            return Err(self.reject(origin, e, n));
        }
        if let Some(v) = header_str(&head.headers, "mcp-protocol-version") {
            self.sessions
                .update_info(&origin.key, |i| i.protocol_version = Some(v));
        }
        let transport = origin.transport;
        // Stateless: the request's `_meta` names its client (no initialize).
        let params = (transport == Transport::Stateless)
            .then(|| body.messages().first().and_then(|m| m.params()))
            .flatten();
        self.sessions.update_info(&origin.key, |i| {
            i.transport.get_or_insert(transport);
            meta::stateless_client(params, i);
        });
        if transport == Transport::Stateless {
            self.check_headers(&head.headers, &body, origin, ctx, n)?;
        }
        Ok(Parsed { bytes, body })
    }

    /// A stateless request's mirrored headers against its body: method,
    /// name and version, then `Mcp-Param-*` against the called tool's
    /// schema as its server last listed it (`stateless::params`).
    fn check_headers(
        &self,
        headers: &HeaderMap,
        body: &Body,
        origin: &Origin,
        ctx: &ConnCtx,
        n: u64,
    ) -> Result<(), Stop> {
        let Body::Single(msg) = body else {
            return stateless::check(headers, body).map_err(|e| self.reject(origin, e, n));
        };
        stateless::check(headers, body)
            .map_err(|e| self.refuse_message(origin, msg, e, n, "headers"))?;
        let schema = match (msg.method(), msg.target(), &self.tools) {
            (Some("tools/call"), Some(tool), Some(pins)) => {
                pins.input_schema(ctx.info.orig_dst.port(), tool)
            }
            _ => None,
        };
        stateless::params::check(headers, msg, schema.as_ref())
            .map_err(|e| self.refuse_message(origin, msg, e, n, "headers"))
    }
}
