//! Step `parse`: a POST's body as JSON-RPC (strictly, `jsonrpc::
//! parse_client`), no larger a batch than `http.max_batch`, and a
//! stateless request's headers matching its body (`stateless`). What the
//! request says of itself (protocol version, transport) is then noted on
//! its session.

use bytes::Bytes;
use http::request::Parts;

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
        if origin.transport == Transport::Stateless
            && let Err(err) = stateless::check(&head.headers, &body)
        {
            return Err(self.reject(origin, err, n));
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
        Ok(Parsed { bytes, body })
    }
}
