//! Step `identify`: who sends the request (an mTLS certificate, a bearer
//! token, or anonymous where the port allows it), or its refusal: 401,
//! 403 or 503 as the MCP authorization spec says (`auth::refusal`), with
//! an audit row `decided_by = 'identity'`.

use std::sync::Arc;

use http::request::Parts;

use super::{McpHandler, classify::Class, run::Stop};
use crate::{
    identity::{AuthError, AuthMethod, Caller},
    mcp::auth,
    pipeline::Transport,
    proxy::{ConnCtx, limits::CallerKey},
};

impl McpHandler {
    /// The request's caller (its TLS certificate checked again first),
    /// noted on the request as whose share of the upstream's budgets it
    /// uses; or the recorded refusal.
    pub(super) async fn identify(
        &self,
        head: &mut Parts,
        ctx: &ConnCtx,
        class: &Class,
    ) -> Result<Arc<Caller>, Stop> {
        let authenticated = match ctx.recheck_cert() {
            Ok(()) => self.identity.authenticate(&head.headers, &ctx.info).await,
            Err(e) => Err(e.into()),
        };
        let caller = authenticated.map_err(|e| self.unidentified(head, ctx, class, &e))?;
        // Whose share of the upstream's budgets this request uses.
        let key = match caller.method {
            AuthMethod::Anonymous => ctx.info.client.ip().to_string(),
            _ => caller.principal(),
        };
        head.extensions.insert(CallerKey(key));
        Ok(caller)
    }

    /// The answer to a request without a usable identity, recorded.
    fn unidentified(&self, head: &Parts, ctx: &ConnCtx, class: &Class, e: &AuthError) -> Stop {
        let transport = if *class == Class::Mcp {
            Transport::StreamableHttp
        } else {
            Transport::Http
        };
        let origin = self.origin(head, ctx, transport, None, None);
        let (resp, error) = auth::refusal(&self.identity, head, ctx, e);
        tracing::info!(conn = ctx.info.id, client = %ctx.info.client, path = %head.uri.path(), status = resp.status().as_u16(), error = %e, "request refused: no identity");
        self.record_refused(&origin, resp.status().as_u16(), error, 0, "identity");
        Box::new(resp)
    }
}
