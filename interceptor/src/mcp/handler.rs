//! The MCP-aware HTTP handler: POST / GET / DELETE on MCP paths (and
//! JSON-RPC POSTs on any path); other requests refused, or passed through
//! where the port's `pass_through` says so. `McpHandler::run`
//! (handler/run.rs) lists a request's steps in order; each step lives in
//! the file of its name beside it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{HeaderValue, Request, request::Parts};
use hyper::body::Incoming;

use super::{exchange::Origin, session::Sessions};
use crate::{
    identity::{Caller, Identity},
    pipeline::{Pipeline, Transport},
    policy::tool_pins::PinPhase,
    proxy::{ConnCtx, Handler, http::HandlerFuture},
};

mod answer;
mod body;
mod classify;
mod decide;
mod delete;
mod encoding;
mod forward;
mod get;
mod identify;
mod metadata;
mod parse;
mod record;
mod reply;
mod route;
mod run;
mod session;
mod tasks;

/// Serves MCP over the proxy's HTTP, running the pipeline on each message.
#[derive(Clone)]
pub struct McpHandler {
    pipeline: Pipeline,
    identity: Arc<Identity>,
    sessions: Arc<Sessions>,
    keys: Arc<AtomicU64>,
    /// Set when a phase may hold requests: held POSTs from clients that
    /// take SSE are kept alive this often (see `held`).
    keepalive: Option<Duration>,
    /// The tools each server listed, which stateless `Mcp-Param-*`
    /// headers are checked against; `None`: none known, so such headers
    /// are refused.
    tools: Option<Arc<PinPhase>>,
}

impl Handler for McpHandler {
    fn handle(&self, req: Request<Incoming>, ctx: Arc<ConnCtx>) -> HandlerFuture {
        Box::pin(self.clone().serve(req, ctx))
    }

    fn on_connect(&self, conn: &crate::conn::ConnInfo) {
        self.pipeline.on_connect(conn);
    }

    fn on_close(&self, conn: &crate::conn::ConnInfo, requests: u64) {
        self.pipeline.on_close(conn, requests);
    }

    fn on_refused(&self, conn: &crate::conn::ConnInfo, reason: &str) {
        self.record_tls(conn, reason);
    }
}

impl McpHandler {
    /// Builds the handler over a pipeline and an identity verifier.
    pub fn new(pipeline: Pipeline, identity: Arc<Identity>) -> Self {
        Self {
            pipeline,
            identity,
            sessions: Arc::new(Sessions::default()),
            keys: Arc::new(AtomicU64::new(1)),
            keepalive: None,
            tools: None,
        }
    }

    /// Held requests are kept alive every `every` (see `held`).
    pub fn with_keepalive(mut self, every: Option<Duration>) -> Self {
        self.keepalive = every;
        self
    }

    /// Checks stateless `Mcp-Param-*` headers against the tool schemas
    /// `pins` keeps (see `stateless::params`).
    pub fn with_tools(mut self, pins: Arc<PinPhase>) -> Self {
        self.tools = Some(pins);
        self
    }

    /// The identity verifier callers are authenticated with.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Shares the session table with a previous handler (config reload).
    pub fn with_sessions(pipeline: Pipeline, identity: Arc<Identity>, from: &McpHandler) -> Self {
        Self {
            pipeline,
            identity,
            sessions: from.sessions.clone(),
            keys: from.keys.clone(),
            keepalive: None,
            tools: None,
        }
    }

    /// Where a request's messages travel: its session key (`key`, or a
    /// fresh per-POST key) and the facts every row of it shares.
    fn origin(
        &self,
        req: &Parts,
        ctx: &ConnCtx,
        transport: Transport,
        key: Option<String>,
        caller: Option<Arc<Caller>>,
    ) -> Origin {
        let (key, in_session) = match key {
            Some(k) => (k, true),
            // A NUL cannot be in a header value, so no client can name
            // this entry as its Mcp-Session-Id and collide with it.
            None => (
                format!("\0post-{}", self.keys.fetch_add(1, Ordering::Relaxed)),
                false,
            ),
        };
        Origin {
            conn: ctx.info.clone(),
            caller,
            transport,
            key,
            in_session,
            http_method: req.method.to_string(),
            http_path: req.uri.path().to_string(),
        }
    }
}

/// A header's value, when it is one and readable as text.
pub fn header_str(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned)
}
