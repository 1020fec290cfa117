//! The request runner: `run` lists a request's steps in order. Each step
//! is a method named after what it does, in the file of that name beside
//! this one; a step that ends the request returns a `Stop`.

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::McpHandler;
use crate::{
    mcp::held,
    pipeline::HoldSignal,
    proxy::{ConnCtx, body::ProxyBody},
};

/// The response that ends a request before its last step: a refusal, its
/// audit row already written (and a per-POST session key already freed),
/// or the whole answer of a request that leaves the POST path (the
/// metadata document, a GET stream, a DELETE, a pass-through). Boxed, so
/// the steps' results stay small on the way that goes on.
pub(super) type Stop = Box<Response<ProxyBody>>;

impl McpHandler {
    /// Serves one request. With holding on, a POST runs inside
    /// `held::keep_alive`: only `decide` can hold it (and only when its
    /// client takes SSE); until one does, the wrapper hands back the
    /// runner's response as it is.
    pub(super) async fn serve(
        self,
        req: Request<Incoming>,
        ctx: Arc<ConnCtx>,
    ) -> Response<ProxyBody> {
        let Some(every) = self.keepalive.filter(|_| req.method() == Method::POST) else {
            return self.finish(req, ctx, None).await;
        };
        let signal = Arc::new(HoldSignal::default());
        let work = Box::pin(self.finish(req, ctx, Some(signal.clone())));
        held::keep_alive(work, signal, every).await
    }

    /// The runner's response, whichever step gave it.
    async fn finish(
        self,
        req: Request<Incoming>,
        ctx: Arc<ConnCtx>,
        hold: Option<Arc<HoldSignal>>,
    ) -> Response<ProxyBody> {
        match self.run(req, &ctx, hold).await {
            Ok(answer) => answer,
            Err(stop) => *stop,
        }
    }

    /// A request's steps, in order. Each is a method in `mcp/handler/`, in
    /// the file of its name; each that can end the request returns its
    /// `Stop` (already recorded), and `?` hands that back.
    ///
    /// 1. `metadata` (metadata.rs): the OAuth resource metadata, served
    ///    before any identity is asked for.
    /// 2. `classify` (classify.rs): the head read as servers read it: MCP,
    ///    a POST to sniff, pass-through, or refused.
    /// 3. `identify` (identify.rs): the `Caller`, or its refusal (401/403/
    ///    503, `decided_by = 'identity'`).
    /// 4. `route` (route.rs): a GET stream (get.rs), a DELETE (delete.rs),
    ///    a pass-through or a refusal (`decided_by = 'route'`) ends here;
    ///    a POST goes on, as its head and its body.
    /// 5. `session` (session.rs): the transport, the session the POST
    ///    names, its owner checked, a per-POST key claimed.
    /// 6. `record` (record.rs): from here on every forwarded request gets
    ///    its row, whatever the client does (`exchange::Forwarded`).
    /// 7. `body` (body.rs): the body, read within the port's limits.
    /// 8. `parse` (parse.rs): JSON-RPC, the batch limit, stateless checks.
    /// 9. `decide` (decide.rs): each message through the pipeline's
    ///    phases; the outcomes fanned out into denials, pending requests
    ///    and rows. Nothing left to forward: the denials are the answer.
    /// 10. `forward` (forward.rs): the `forwarded` rows, then upstream; its
    ///     failure answered for every request that went.
    /// 11. `answer` (answer.rs): the server's answer, JSON or SSE, each
    ///     message paired and through the server-message phases.
    pub(super) async fn run(
        &self,
        req: Request<Incoming>,
        ctx: &ConnCtx,
        hold: Option<Arc<HoldSignal>>,
    ) -> Result<Response<ProxyBody>, Stop> {
        self.metadata(&req, ctx)?;
        let (mut head, body) = req.into_parts();
        let class = self.classify(&head, ctx);
        let caller = self.identify(&mut head, ctx, &class).await?;
        let (post, body) = self.route(head, body, ctx, class, caller).await?;
        let mut origin = self.session(&post, ctx)?;
        let mut guard = self.record(&origin);
        let bytes = self.body(body, &origin, ctx).await?;
        let mut parsed = self.parse(bytes, &post.head, &origin, ctx)?;
        let decided = self
            .decide(&post, &origin, &mut parsed, &mut guard, hold)
            .await?;
        let sent = self
            .forward(post.head, parsed, decided, guard, &origin, ctx)
            .await?;
        Ok(self.answer(sent, &mut origin, ctx).await)
    }
}
