//! The MCP-aware HTTP handler: POST / GET / DELETE on MCP paths (and
//! JSON-RPC POSTs on any path); other requests refused, or passed through
//! where the port's `pass_through` says so (see `route`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use crate::proxy::upstream::UpstreamBody;
use serde_json::{Value, json};

use super::{
    auth,
    exchange::{self, Origin},
    held,
    session::{ClaimError, OpenError, Sessions},
    stream,
};
use crate::jsonrpc::{Kind, Message};
use crate::{
    error::{Reason, Refusal},
    identity::{Caller, Identity},
    pipeline::{Direction, EventKind, HoldSignal, Pipeline, Transport, event::now_us},
    proxy::{
        ConnCtx, Handler,
        body::{ProxyBody, full},
        http::{HandlerFuture, json_response, refusal_response, strip_hop_headers},
    },
};

mod encoding;
mod post;
mod reply;
mod route;

use route::Class;

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
}

impl Handler for McpHandler {
    fn handle(&self, req: Request<Incoming>, ctx: Arc<ConnCtx>) -> HandlerFuture {
        let this = self.clone();
        Box::pin(async move { this.route(req, ctx).await })
    }

    fn on_connect(&self, conn: &crate::conn::ConnInfo) {
        self.pipeline.on_connect(conn);
    }

    fn on_close(&self, conn: &crate::conn::ConnInfo, requests: u64) {
        self.pipeline.on_close(conn, requests);
    }

    fn on_refused(&self, conn: &crate::conn::ConnInfo, reason: &str) {
        let origin = Origin {
            conn: conn.clone(),
            caller: None,
            transport: Transport::Http,
            key: String::new(),
            in_session: false,
            http_method: String::new(),
            http_path: String::new(),
        };
        let mut ev = origin.rejected(0, Refusal::new(Reason::TlsRequired, reason).error(), 0);
        ev.http_status = None;
        ev.decided_by = Some("tls".into());
        exchange::record(&self.pipeline, ev);
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
        }
    }

    /// Held requests are kept alive every `every` (see `held`).
    pub fn with_keepalive(mut self, every: Option<Duration>) -> Self {
        self.keepalive = every;
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
        }
    }

    async fn route(&self, mut req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Response<ProxyBody> {
        if self.identity.has_oauth()
            && req.method() == Method::GET
            && let Some(suffix) = req.uri().path().strip_prefix(auth::METADATA_PATH)
        {
            return auth::metadata(&self.identity, &req, &ctx, suffix);
        }
        let class = self.classify(&req, &ctx);
        let authenticated = match ctx.recheck_cert() {
            Ok(()) => self.identity.authenticate(req.headers(), &ctx.info).await,
            Err(e) => Err(e.into()),
        };
        let caller = match authenticated {
            Ok(c) => c,
            Err(e) => {
                let transport = if class == Class::Mcp {
                    Transport::StreamableHttp
                } else {
                    Transport::Http
                };
                let (parts, _) = req.into_parts();
                let origin = self.origin(&parts, &ctx, transport, None, None);
                let (resp, error) = auth::refusal(&self.identity, &parts, &ctx, &e);
                tracing::info!(conn = ctx.info.id, client = %ctx.info.client, path = %parts.uri.path(), status = resp.status().as_u16(), error = %e, "request refused: no identity");
                let mut ev = origin.rejected(resp.status().as_u16(), error, 0);
                ev.decided_by = Some("identity".into());
                exchange::record(&self.pipeline, ev);
                return resp;
            }
        };
        // Whose share of the upstream's budgets this request uses.
        let key = match caller.method {
            crate::identity::AuthMethod::Anonymous => ctx.info.client.ip().to_string(),
            _ => caller.principal(),
        };
        req.extensions_mut()
            .insert(crate::proxy::limits::CallerKey(key));
        match class {
            Class::Mcp => {}
            Class::Refuse(refusal) => {
                let (parts, _) = req.into_parts();
                return self.refuse(&parts, &ctx, Some(caller), refusal, 0);
            }
            Class::PassThrough => {
                // Not judged: the caller's credential stops here, and the
                // agent's own goes only with requests it judged.
                let req = req.map(crate::proxy::body::stream);
                return self.pass(req, &ctx, caller).await;
            }
            Class::Sniff { pass } => return self.sniff(req, ctx, caller, pass).await,
        }
        // Credential isolation: the caller's token stops here; the server
        // sees only the agent's own credential, if one is configured.
        self.identity.rewrite_upstream_headers(req.headers_mut());
        match *req.method() {
            Method::POST => self.post_any(req, ctx, caller).await,
            Method::GET => self.get(req, ctx, caller).await,
            Method::DELETE => self.delete(req, ctx, caller).await,
            // `classify` lets no other method through as MCP; should that
            // change, fail closed.
            _ => {
                let (parts, _) = req.into_parts();
                let msg = format!("{} is not an MCP transport method", parts.method);
                let refusal = Refusal::new(Reason::MethodNotAllowed, msg);
                self.refuse(&parts, &ctx, Some(caller), refusal, 0)
            }
        }
    }

    /// A POST judged as MCP, kept alive while held when the client takes
    /// SSE (see `held`).
    async fn post_any<B>(
        &self,
        req: Request<B>,
        ctx: Arc<ConnCtx>,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<crate::proxy::body::BoxError>,
    {
        match self.keepalive.filter(|_| held::accepts_sse(req.headers())) {
            Some(every) => {
                let signal = Arc::new(HoldSignal::default());
                let (this, s) = (self.clone(), signal.clone());
                let work = Box::pin(async move { this.post(req, ctx, caller, Some(s)).await });
                held::keep_alive(work, signal, every).await
            }
            None => self.post(req, ctx, caller, None).await,
        }
    }

    /// Refuses a request on a session another identity opened (hijack).
    fn check_owner(&self, origin: &Origin) -> Option<Response<ProxyBody>> {
        let (Some(caller), true) = (&origin.caller, origin.in_session) else {
            return None;
        };
        let principal = caller.principal();
        let e = match self.sessions.claim(&origin.key, &principal).err()? {
            ClaimError::Owner(owner) => {
                tracing::warn!(conn = origin.conn.id, session = %origin.key, caller = %principal, %owner, "session used by another identity: refused");
                Refusal::new(
                    Reason::SessionOwner,
                    "this session belongs to another identity",
                )
            }
            // MCP spec: a session id the server does not know gets 404,
            // and the client starts a new session. Never made an entry.
            ClaimError::Unknown => {
                tracing::info!(conn = origin.conn.id, session = %origin.key, caller = %principal, "unknown session: refused");
                Refusal::new(
                    Reason::UnknownSession,
                    "session not found: the server did not open it here, or it ended",
                )
            }
        };
        let mut ev = origin.rejected(e.status().as_u16(), e.error(), 0);
        ev.decided_by = Some("identity".into());
        exchange::record(&self.pipeline, ev);
        let mut r = refusal_response(&e, None);
        // Answered before the body is read: the connection cannot be reused.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Some(r)
    }

    fn origin(
        &self,
        req: &http::request::Parts,
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

    fn reject(&self, origin: &Origin, refusal: Refusal, bytes_in: u64) -> Response<ProxyBody> {
        let (status, error) = (refusal.status(), refusal.error());
        tracing::info!(conn = origin.conn.id, status = status.as_u16(), error = %error, "mcp request rejected");
        // A POST outside a session has a table entry of its own (claimed
        // before the body is read); it ends here. Left behind, every refused
        // request kept one until the table was full, and from then on each
        // pushed out the oldest real session, owner binding and all.
        if !origin.in_session {
            self.sessions.close(&origin.key);
        }
        exchange::record(
            &self.pipeline,
            origin.rejected(status.as_u16(), error, bytes_in),
        );
        refusal_response(&refusal, None)
    }

    /// Handles the upstream's answer to a POST (or GET): pairs and runs
    /// phases on every server message, JSON or SSE.
    async fn respond(
        &self,
        resp: Response<UpstreamBody>,
        origin: &mut Origin,
        ctx: &ConnCtx,
        waiting: Waiting,
        reply: Option<stream::Replier>,
    ) -> Response<ProxyBody> {
        let Waiting {
            expected,
            denials,
            batch,
            mut guard,
        } = waiting;
        let (mut parts, body) = resp.into_parts();
        strip_hop_headers(&mut parts.headers);
        let status = parts.status.as_u16();
        let was_in_session = origin.in_session;
        if let Some(refused) = self.adopt_session(&parts.headers, origin) {
            return refused;
        }
        if !was_in_session
            && origin.in_session
            && let Some(g) = &mut guard
        {
            g.rekey(&origin.key, true);
        }
        let ctype = header_str(&parts.headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
        let answer = stream::ctype::answer(&parts.headers);
        let st = stream::State {
            pipeline: self.pipeline.clone(),
            sessions: self.sessions.clone(),
            origin: origin.clone(),
            status,
            max_message: ctx.http.max_message,
            first_byte_us: (origin.http_method == "POST").then(now_us),
            reply,
            answer_timeout: (origin.http_method == "POST")
                .then(|| Duration::from_millis(ctx.http.upstream_response_timeout_ms)),
            expected: expected.clone(),
        };
        // What the agent judged goes out under the type it judged it as,
        // spelled as every client reads it.
        let canonical = match answer {
            stream::ctype::Answer::Sse => Some("text/event-stream"),
            stream::ctype::Answer::Json => Some("application/json"),
            stream::ctype::Answer::Other => None,
        };
        if let Some(c) = canonical {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(c));
        }
        let carries_messages = origin.http_method == "GET"
            || (!expected.is_empty() && origin.transport != Transport::Sse);
        if answer == stream::ctype::Answer::Other
            && carries_messages
            && (200..300).contains(&status)
        {
            // A stream or a request's answer the agent cannot read: a
            // client might (see `stream::ctype`), so nothing of it is
            // forwarded. (A legacy POST's 202 carries none.)
            let why = stream::content_type_refusal(&ctype);
            let (status, body) = stream::refuse_answer(&st, why, denials, batch);
            if !origin.in_session {
                self.sessions.close(&origin.key);
            }
            return json_response(status, &body);
        }
        if let Some(coding) = encoding::coded(&parts.headers)
            && (answer != stream::ctype::Answer::Other || self.pipeline.rewrites_server_data())
        {
            // Asked for identity (see `encoding`), the server compressed
            // anyway: the agent cannot judge or mask what it cannot read
            // (masked as bytes, a compressed body would pass unmasked).
            let why = encoding::refusal(&coding);
            let (status, body) = stream::refuse_answer(&st, why, denials, batch);
            if !origin.in_session {
                self.sessions.close(&origin.key);
            }
            return json_response(status, &body);
        }
        if answer == stream::ctype::Answer::Sse {
            parts.headers.remove(header::CONTENT_LENGTH);
            let out = stream::sse(body, st, expected, denials, guard);
            return Response::from_parts(parts, out);
        }
        if answer == stream::ctype::Answer::Json {
            let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
            let out = stream::json(body, st, expected, denials, batch, idle).await;
            return match out {
                Ok(bytes) => {
                    parts.headers.remove(header::CONTENT_LENGTH);
                    Response::from_parts(parts, full(bytes))
                }
                Err(refusal) => refusal_response(&refusal, None),
            };
        }
        // No message in this answer (202 for notifications, or an error
        // page). When masking, it is read and masked like any server data:
        // forwarded as it came, it would be the one way past the masking.
        let out = if self.pipeline.rewrites_server_data() {
            let idle = Duration::from_millis(ctx.http.idle_timeout_ms);
            parts.headers.remove(header::CONTENT_LENGTH);
            stream::opaque_body(body, &st, &expected, idle)
                .await
                .map(full)
        } else {
            Ok(crate::proxy::body::stream(body))
        };
        // Requests that expected an answer will not get it here (on the
        // legacy SSE transport, a POST's answer comes on the GET stream).
        if (200..300).contains(&status)
            && origin.transport == Transport::Sse
            && let Some(g) = guard.take()
        {
            // Answered on the GET stream, which settles them.
            g.disarm();
        }
        if !(200..300).contains(&status) || origin.transport != Transport::Sse {
            let pending = self.sessions.take_unanswered(&origin.key, &expected);
            let none = format!("upstream answered HTTP {status} without a JSON-RPC response");
            let err = match &out {
                Ok(_) => json!({ "code": status as i64, "message": none }),
                Err(refused) => refused.error(),
            };
            exchange::unanswered(&self.pipeline, pending, Some(status), err);
        }
        if !origin.in_session {
            self.sessions.close(&origin.key);
        }
        match out {
            Ok(b) => Response::from_parts(parts, b),
            Err(refusal) => refusal_response(&refusal, None),
        }
    }

    async fn get(
        &self,
        req: Request<Incoming>,
        ctx: Arc<ConnCtx>,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        let sid = header_str(&parts.headers, "mcp-session-id");
        // A GET without a session is the legacy SSE endpoint (its session is
        // named by the `endpoint` event); with one, a Streamable HTTP stream.
        let transport = if sid.is_some() {
            Transport::StreamableHttp
        } else {
            Transport::Sse
        };
        let mut origin = self.origin(&parts, &ctx, transport, sid, Some(caller));
        if let Some(resp) = self.check_owner(&origin) {
            return resp;
        }
        strip_hop_headers(&mut parts.headers);
        encoding::ask_identity(&mut parts.headers);
        let reply = self.replier(&parts.headers, &ctx);
        let up_req = Request::from_parts(parts, crate::proxy::body::stream(body));
        match ctx.upstream.send(ctx.upstream_addr, up_req).await {
            Ok(resp) => {
                let waiting = Waiting {
                    expected: Vec::new(),
                    denials: Vec::new(),
                    batch: false,
                    guard: None,
                };
                self.respond(resp, &mut origin, &ctx, waiting, reply).await
            }
            Err(e) => crate::proxy::http::upstream_error_response(&e, Value::Null),
        }
    }

    async fn delete(
        &self,
        req: Request<Incoming>,
        ctx: Arc<ConnCtx>,
        caller: Arc<Caller>,
    ) -> Response<ProxyBody> {
        let sid = header_str(req.headers(), "mcp-session-id");
        let (parts, _) = req.into_parts();
        let origin = self.origin(
            &parts,
            &ctx,
            Transport::StreamableHttp,
            sid.clone(),
            Some(caller),
        );
        if let Some(resp) = self.check_owner(&origin) {
            return resp;
        }
        let req = Request::from_parts(parts, crate::proxy::body::empty());
        let resp = crate::proxy::http::forward(req, &ctx).await;
        if let Some(sid) = sid
            && resp.status().is_success()
        {
            let left = self.sessions.close(&sid);
            let err =
                Refusal::new(Reason::SessionEnded, "session closed before the response").error();
            exchange::unanswered(&self.pipeline, left, None, err);
            let empty = Message {
                kind: Kind::Notification,
                value: Value::Null,
                raw: None,
            };
            let mut ev = origin.event(
                EventKind::SessionClosed,
                Direction::ClientToServer,
                &empty,
                &Default::default(),
            );
            ev.http_status = Some(resp.status().as_u16());
            exchange::record(&self.pipeline, ev);
        }
        resp
    }
}

impl McpHandler {
    /// Binds the session a server opened on its answer to a POST outside a
    /// session (its `initialize` answer) to that POST's caller; the answer
    /// to send instead when it cannot be bound.
    fn adopt_session(
        &self,
        headers: &http::HeaderMap,
        origin: &mut Origin,
    ) -> Option<Response<ProxyBody>> {
        let sid = header_str(headers, "mcp-session-id")
            .filter(|_| !origin.in_session && origin.http_method == "POST")?;
        match self.sessions.open(&origin.key, &sid) {
            Ok(forgotten) => {
                let err = Refusal::new(
                    Reason::SessionEnded,
                    "session forgotten (idle, or its owner's oldest)",
                )
                .error();
                exchange::unanswered(&self.pipeline, forgotten, None, err);
                origin.key = sid;
                origin.in_session = true;
                None
            }
            Err(e) => Some(self.refuse_session(origin, &e)),
        }
    }

    /// The server opened a session the agent will not bind: the client
    /// gets 503 and the requests of the POST an `unanswered` row.
    fn refuse_session(&self, origin: &Origin, e: &OpenError) -> Response<ProxyBody> {
        tracing::warn!(conn = origin.conn.id, error = %e, "session opened by the server refused");
        let refusal = Refusal::new(Reason::SessionUnbound, e.to_string());
        let left = self.sessions.close(&origin.key);
        let status = refusal.status().as_u16();
        exchange::unanswered(&self.pipeline, left, Some(status), refusal.error());
        refusal_response(&refusal, None)
    }
}

/// What a POST's answer must still settle: the requests waiting for it,
/// denials to add, and whether the client sent a batch.
struct Waiting {
    expected: Vec<String>,
    denials: Vec<Value>,
    batch: bool,
    /// Records the forwarded requests if the handler is dropped first.
    guard: Option<exchange::Forwarded>,
}

pub fn header_str(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned)
}
