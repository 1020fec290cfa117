//! Step `forward`: what is left of a POST goes upstream, asking for an
//! answer the agent can read (`encoding`); the `forwarded` rows are
//! written before it goes. When the upstream fails, every request that
//! went gets the failure as its answer and an `unanswered` row.

use bytes::Bytes;
use http::{Request, header, request::Parts};
use serde_json::Value;

use super::{McpHandler, answer::Waiting, decide::Decided, encoding, parse::Parsed, run::Stop};
use crate::{
    jsonrpc::Body,
    mcp::{
        exchange::{self, Forwarded, Origin},
        stream,
    },
    proxy::{
        ConnCtx,
        body::full,
        http::{json_response, strip_hop_headers, upstream_refusal},
        upstream::{LongLived, UpstreamBody, UpstreamError},
    },
};

/// A POST that went upstream: the server's answer, what it must settle,
/// and how to answer the server's own requests on the client's behalf.
pub(super) struct Sent {
    pub resp: http::Response<UpstreamBody>,
    pub waiting: Waiting,
    pub reply: Option<stream::Replier>,
}

impl McpHandler {
    /// Sends the POST's kept messages upstream.
    pub(super) async fn forward(
        &self,
        mut head: Parts,
        mut parsed: Parsed,
        decided: Decided,
        mut guard: Forwarded,
        origin: &Origin,
        ctx: &ConnCtx,
    ) -> Result<Sent, Stop> {
        let out_bytes = forward_body(&mut parsed.body, &decided.keep, &parsed.bytes);
        strip_hop_headers(&mut head.headers);
        encoding::ask_identity(&mut head.headers);
        head.headers.remove(header::CONTENT_LENGTH);
        let reply = self.replier(&head.headers, ctx);
        let mut up_req = Request::from_parts(head, full(out_bytes));
        if stream::listens_only(&parsed.body, &decided.keep) {
            up_req.extensions_mut().insert(LongLived);
        }
        // The `forwarded` rows, before the requests go (see `AuditPhase`).
        for ev in &decided.going {
            self.pipeline.forwarded(ev);
        }
        guard.sent();
        let Decided {
            expected, denials, ..
        } = decided;
        match ctx.upstream.send(ctx.upstream_addr, up_req).await {
            Ok(resp) => Ok(Sent {
                resp,
                reply,
                waiting: Waiting {
                    expected,
                    denials,
                    batch: matches!(parsed.body, Body::Batch(_)),
                    guard: Some(guard),
                },
            }),
            Err(e) => Err(self.upstream_failed(&e, origin, &expected, denials)),
        }
    }

    /// The upstream failed: each request that went gets the failure as its
    /// answer (beside the denials) and an `unanswered` row.
    fn upstream_failed(
        &self,
        e: &UpstreamError,
        origin: &Origin,
        expected: &[String],
        denials: Vec<Value>,
    ) -> Stop {
        tracing::warn!(conn = origin.conn.id, error = %e, "upstream failed");
        let refusal = upstream_refusal(e);
        let status = refusal.status();
        let pending = self.sessions.take_unanswered(&origin.key, expected);
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
        self.free(origin);
        answers.extend(denials);
        let body = match answers.len() {
            0 => refusal.to_jsonrpc(None),
            1 => answers.remove(0),
            _ => Value::Array(answers),
        };
        Box::new(json_response(status, &body))
    }
}

/// The body to send upstream: the original bytes unless a message was
/// rewritten or dropped.
fn forward_body(body: &mut Body, keep: &[bool], original: &Bytes) -> Bytes {
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
