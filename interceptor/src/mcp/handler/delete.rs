//! A DELETE: the client ends its session. Its owner is checked like a
//! POST's; when the server agrees, requests still waiting in the session
//! get an `unanswered` row and the session a `session_closed` row.

use std::sync::Arc;

use http::{Request, Response, request::Parts};

use super::{McpHandler, header_str};
use crate::{
    error::{Reason, Refusal},
    identity::Caller,
    mcp::exchange,
    pipeline::{EventKind, Transport},
    proxy::{ConnCtx, body::ProxyBody},
};

impl McpHandler {
    /// Forwards the DELETE; the session ends here when the server agrees.
    pub(super) async fn delete(
        &self,
        head: Parts,
        ctx: &ConnCtx,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody> {
        let sid = header_str(&head.headers, "mcp-session-id");
        let transport = Transport::StreamableHttp;
        let origin = self.origin(&head, ctx, transport, sid.clone(), Some(caller));
        if let Err(refused) = self.owner(&origin) {
            return *refused;
        }
        let req = Request::from_parts(head, crate::proxy::body::empty());
        let resp = crate::proxy::http::forward(req, ctx).await;
        if let Some(sid) = sid
            && resp.status().is_success()
        {
            let left = self.sessions.close(&sid);
            let err =
                Refusal::new(Reason::SessionEnded, "session closed before the response").error();
            exchange::unanswered(&self.pipeline, left, None, err);
            let mut ev = origin.bare(EventKind::SessionClosed);
            ev.http_status = Some(resp.status().as_u16());
            exchange::record(&self.pipeline, ev);
        }
        resp
    }
}
