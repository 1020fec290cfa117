//! HTTP/1.1 on an accepted connection: hyper serves it (keep-alive,
//! chunked bodies, limits), a [`Handler`] answers each request. The plain
//! pass-through handler lives here; the MCP-aware one is `mcp::McpHandler`.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::conn::ConnInfo;

use super::{
    body::{ProxyBody, full, stream},
    upstream::{Upstream, UpstreamError},
};

use crate::{
    config::{Http, PortRule},
    error::{Reason, Refusal},
};

/// Everything a handler needs about the connection a request came on.
pub struct ConnCtx {
    /// The connection's facts.
    pub info: ConnInfo,
    /// The connector to upstream servers.
    pub upstream: Upstream,
    /// Where this connection's requests go.
    pub upstream_addr: SocketAddr,
    /// The port rule the connection matched.
    pub rule: PortRule,
    /// HTTP limits and timeouts.
    pub http: Http,
    /// Turns true when the agent stops: the connection then closes as soon
    /// as it is between requests. `None`: served until the client closes.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// The connection is closed this long after it was accepted (after the
    /// request in flight): TLS connections, `tls.max_connection_age_seconds`.
    pub max_age: Option<Duration>,
    /// What serves new connections now (follows reloads); `None`: only
    /// the config the connection was accepted under is known.
    pub now: Option<tokio::sync::watch::Receiver<super::Serving>>,
}

impl ConnCtx {
    /// Verifies the connection's client certificate again, against the
    /// CAs and CRLs in force now and the clock: a handshake proved it once,
    /// every request must find it still valid. Without `now` (a test's
    /// context) nothing newer than the handshake is known: refused, since
    /// a certificate that cannot be judged must not pass.
    pub fn recheck_cert(&self) -> Result<(), crate::conn::CertCheckError> {
        let Some(t) = &self.info.tls else {
            return Ok(());
        };
        if t.chain.is_empty() {
            return Ok(());
        }
        let verifier = match &self.now {
            Some(now) => now.borrow().tls.as_ref().and_then(|s| s.verifier.clone()),
            None => None,
        };
        super::tls::recheck(
            verifier.as_deref(),
            &t.chain,
            rustls_pki_types::UnixTime::now(),
        )
    }
}

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// Answers one request. Implementations never fail: every error becomes a
/// response (with a log line).
pub trait Handler: Send + Sync + 'static {
    /// Serves one request on a connection.
    fn handle(&self, req: Request<Incoming>, ctx: Arc<ConnCtx>) -> HandlerFuture;
    /// A connection was accepted and routed (before its first request).
    fn on_connect(&self, _conn: &ConnInfo) {}
    /// A connection ended.
    fn on_close(&self, _conn: &ConnInfo, _requests: u64) {}
    /// A connection was refused before HTTP (TLS handshake failed, or
    /// plaintext where TLS is required).
    fn on_refused(&self, _conn: &ConnInfo, _reason: &str) {}
}

/// Serves HTTP/1.1 on `client` until it closes; returns the request count.
/// `late_writer` (plaintext only) answers 408 after hyper gave up on a head.
pub async fn serve<I>(
    client: I,
    late_writer: Option<super::reclaim::Slot>,
    ctx: Arc<ConnCtx>,
    handler: Arc<dyn Handler>,
) -> u64
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.http.clone();
    let stop = ctx.stop.clone();
    let max_age = ctx.max_age;
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let busy = Arc::new(AtomicU64::new(0));
    let watch = (ctx.clone(), busy.clone());
    let svc = service_fn(move |req| {
        counter.fetch_add(1, Ordering::Relaxed);
        answer(handler.as_ref(), ctx.clone(), &busy, req)
    });
    let conn = builder(&limits).serve_connection(TokioIo::new(client), svc);
    // Boxed, not stack-pinned: it must be dropped before the 408 below,
    // which needs the socket hyper's IO gives back on drop.
    let mut conn = Box::pin(conn);
    let stopping = stopped(stop);
    let aged = after(max_age);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = cert_lapsed(watch.0, watch.1) => {
            // Mid-response (a stream, a slow answer): nothing more goes to
            // a caller whose certificate no longer stands. An idle
            // connection is left to its next request's 401.
            tracing::info!("client certificate no longer valid during a response: connection cut");
            Ok(())
        }
        () = aged => {
            // Identity is proved at the handshake: past its age the
            // connection ends (an idle one now, a busy one after the
            // request in flight, answered with Connection: close) and the
            // client handshakes again.
            tracing::debug!("closing a connection at tls.max_connection_age_seconds");
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
        () = stopping => {
            // Without this, an idle or silent connection held a stopping
            // agent until its head timeout (10 s of refused connections on
            // restart). One that never completed a request head has asked
            // nothing: it closes now. Otherwise an idle keep-alive
            // connection closes now, and one mid-request finishes that
            // request first (answered with Connection: close).
            if requests.load(Ordering::Relaxed) == 0 {
                tracing::debug!("stopping: closing a connection that asked nothing yet");
                return 0;
            }
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    drop(conn);
    if let Err(e) = result {
        ended(&e, late_writer, &limits);
    }
    requests.load(Ordering::Relaxed)
}

/// Answers one request with `handler`; the request counts as in flight
/// in `busy` until its response body is done (or dropped).
fn answer(
    handler: &dyn Handler,
    ctx: Arc<ConnCtx>,
    busy: &Arc<AtomicU64>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + use<> {
    let guard = Busy::enter(busy);
    let fut = handler.handle(req, ctx);
    async move {
        let resp = fut.await.map(move |b| {
            Held {
                inner: b,
                _busy: guard,
            }
            .boxed()
        });
        Ok::<_, Infallible>(resp)
    }
}

/// hyper's HTTP/1.1 server, held to the port's limits.
fn builder(limits: &Http) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_header_size(limits.max_header_bytes)
        // hyper's read buffer otherwise grows to ~400 KiB per connection
        // under load; with hundreds of connections that was most of the
        // agent's memory (bench). Bodies still stream in frames.
        .max_buf_size(READ_BUFFER.max(limits.max_header_bytes + 1024))
        .max_headers(limits.max_headers);
    b
}

/// Resolves when `stop` turns true; never without one (or once its
/// sender is gone).
async fn stopped(stop: Option<tokio::sync::watch::Receiver<bool>>) {
    let stopped = match stop {
        Some(mut s) => s.wait_for(|s| *s).await.is_ok(),
        None => false,
    };
    if !stopped {
        std::future::pending::<()>().await;
    }
}

/// Resolves after `d`; never without one.
async fn after(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending::<()>().await,
    }
}

/// Logs why hyper ended a connection; answers 408 when the head was late.
fn ended(e: &hyper::Error, late_writer: Option<super::reclaim::Slot>, limits: &Http) {
    if e.is_timeout() {
        tracing::info!(
            timeout_ms = limits.header_read_timeout_ms,
            "request head not received in time: 408"
        );
        // A fresh 408 fits the socket's send buffer: no waiting.
        if let Some(w) = late_writer.and_then(|l| l.take()) {
            let _ = w.try_write(&raw_error(&Refusal::new(
                Reason::RequestTimeout,
                "request head not received in time",
            )));
        }
    } else if e.is_parse_too_large() {
        tracing::info!(
            max_bytes = limits.max_header_bytes,
            max_headers = limits.max_headers,
            "request head too large: 431"
        );
    } else if !e.is_incomplete_message() && !e.is_closed() {
        tracing::debug!(error = %e, "http connection ended with error");
    }
}

/// Counts a request as in flight until dropped.
struct Busy(Arc<AtomicU64>);

impl Busy {
    fn enter(n: &Arc<AtomicU64>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n.clone())
    }
}

/// A response body that keeps its request counted as in flight until it
/// is done or dropped. Size and end are the inner body's, so a known
/// length still goes out as `Content-Length`, not chunked.
struct Held<B> {
    inner: B,
    _busy: Busy,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves when the connection's client certificate stops verifying
/// (its notAfter passes, or a reload withdraws it) while a response is in
/// flight; never for connections without one. Requests are judged one by
/// one (see [`ConnCtx::recheck_cert`]); this covers what one request can
/// keep open for long, such as an SSE stream.
async fn cert_lapsed(ctx: Arc<ConnCtx>, busy: Arc<AtomicU64>) {
    let (Some(t), Some(mut now)) = (ctx.info.tls.clone(), ctx.now.clone()) else {
        return std::future::pending().await;
    };
    if t.chain.is_empty() {
        return std::future::pending().await;
    }
    let mut not_after = t.peer.as_ref().map(|p| p.not_after);
    loop {
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // webpki refuses strictly after notAfter: a second past it.
        let wait = not_after.map(|n| {
            Duration::from_secs(u64::try_from(n.saturating_add(1)).unwrap_or(0))
                .saturating_sub(Duration::from_secs(unix_now))
        });
        tokio::select! {
            () = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
            r = now.changed() => {
                if r.is_err() {
                    // The agent is going away; its stop signal closes this.
                    return std::future::pending().await;
                }
            }
        }
        if ctx.recheck_cert().is_err() {
            if busy.load(Ordering::Relaxed) > 0 {
                return;
            }
            // Idle: the next request is refused and closes it.
            return std::future::pending().await;
        }
        if wait == Some(Duration::ZERO) {
            // Past notAfter yet still verifying (a clock step): from now
            // on only reloads wake this, not a busy loop.
            not_after = None;
        }
    }
}

/// Per-connection read buffer cap, both directions.
pub const READ_BUFFER: usize = 64 << 10;

/// A complete HTTP/1.1 error response with a JSON-RPC error body, for the
/// few cases answered outside hyper.
pub(super) fn raw_error(refusal: &Refusal) -> Vec<u8> {
    let body = refusal.to_jsonrpc(None).to_string();
    let status = refusal.status();
    let (code, reason) = (status.as_u16(), status.canonical_reason().unwrap_or(""));
    format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus
/// the framing hyper sets itself for the body it sends.
pub fn strip_hop_headers(h: &mut HeaderMap) {
    // Every Connection header counts (RFC 9110 7.6.1): a second line must
    // not smuggle a hop-by-hop header through to the server.
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    for name in named {
        h.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        h.remove(name);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

/// Forwards a request the port's `pass_through` names, streaming both
/// bodies; logs one line.
pub async fn pass_through(req: Request<ProxyBody>, ctx: &ConnCtx) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = forward(req, ctx).await;
    tracing::info!(
        client = %ctx.info.client, %method, %path, status = resp.status().as_u16(),
        ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
        "http pass-through"
    );
    resp
}

/// Sends a request upstream without hop-by-hop headers and streams the
/// answer back the same way; an upstream failure becomes 502/504.
pub async fn forward(mut req: Request<ProxyBody>, ctx: &ConnCtx) -> Response<ProxyBody> {
    strip_hop_headers(req.headers_mut());
    match ctx.upstream.send(ctx.upstream_addr, req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_headers(&mut parts.headers);
            Response::from_parts(parts, stream(body))
        }
        Err(e) => upstream_error_response(&e, serde_json::Value::Null),
    }
}

/// The refusal answering an upstream failure.
pub fn upstream_refusal(e: &UpstreamError) -> Refusal {
    use super::limits::LimitError;
    let kind = match e {
        UpstreamError::Timeout(..) => Reason::UpstreamTimeout,
        UpstreamError::Limit(LimitError::Full { .. }) => Reason::UpstreamBusy,
        UpstreamError::Limit(LimitError::Caller { .. }) => Reason::CallerBusy,
        _ => Reason::UpstreamUnavailable,
    };
    Refusal::new(kind, e.to_string())
}

/// The HTTP answer to an upstream failure, answering `id`.
pub fn upstream_error_response(e: &UpstreamError, id: serde_json::Value) -> Response<ProxyBody> {
    tracing::warn!(error = %e, "upstream failed");
    refusal_response(&upstream_refusal(e), Some(id))
}

/// The HTTP answer carrying `refusal` alone, answering `id`: the refusal's
/// own status and its JSON-RPC error.
pub fn refusal_response(refusal: &Refusal, id: Option<serde_json::Value>) -> Response<ProxyBody> {
    json_response(refusal.status(), &refusal.to_jsonrpc(id))
}

/// A JSON response with this status.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::strip_hop_headers;

    #[test]
    fn every_connection_header_names_hop_headers() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("keep-alive"));
        h.append("connection", HeaderValue::from_static("x-hop, x-other"));
        for (n, v) in [("x-hop", "1"), ("x-other", "2"), ("x-end", "3")] {
            h.insert(n, HeaderValue::from_static(v));
        }
        h.insert("te", HeaderValue::from_static("trailers"));
        strip_hop_headers(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-end"]);
    }
}
