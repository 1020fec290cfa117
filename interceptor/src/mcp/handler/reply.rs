//! Answers to the server's own requests, sent upstream on the client's
//! behalf when a phase refused one (see `stream::Replier`).

use std::sync::Arc;

use http::{HeaderValue, Method, Request, header};
use serde_json::Value;

use super::McpHandler;
use crate::{
    mcp::stream,
    proxy::{ConnCtx, body::full},
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
