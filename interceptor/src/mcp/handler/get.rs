//! A GET: the server's stream of a Streamable HTTP session (with its
//! `Mcp-Session-Id`), or a legacy SSE session's stream (without; its
//! session is named by the `endpoint` event). Its owner is checked like a
//! POST's; its messages go through `answer` like a POST's answer.

use std::sync::Arc;

use http::{Request, Response, request::Parts};
use hyper::body::Incoming;
use serde_json::Value;

use super::{McpHandler, answer::Waiting, encoding, forward::Sent, header_str};
use crate::{
    identity::Caller,
    pipeline::Transport,
    proxy::{
        ConnCtx,
        body::ProxyBody,
        http::{strip_hop_headers, upstream_error_response},
    },
};

impl McpHandler {
    /// Opens the server's stream for the caller.
    pub(super) async fn get(
        &self,
        mut head: Parts,
        body: Incoming,
        ctx: &ConnCtx,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody> {
        let sid = header_str(&head.headers, "mcp-session-id");
        let transport = if sid.is_some() {
            Transport::StreamableHttp
        } else {
            Transport::Sse
        };
        let mut origin = self.origin(&head, ctx, transport, sid, Some(caller));
        if let Err(refused) = self.owner(&origin) {
            return *refused;
        }
        strip_hop_headers(&mut head.headers);
        encoding::ask_identity(&mut head.headers);
        let reply = self.replier(&head.headers, ctx);
        let up_req = Request::from_parts(head, crate::proxy::body::stream(body));
        match ctx.upstream.send(ctx.upstream_addr, up_req).await {
            Ok(resp) => {
                let waiting = Waiting::none();
                let sent = Sent {
                    resp,
                    waiting,
                    reply,
                };
                self.answer(sent, &mut origin, ctx).await
            }
            Err(e) => upstream_error_response(&e, Value::Null),
        }
    }
}
