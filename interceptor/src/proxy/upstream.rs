//! The pooled upstream client. Connections are reused (keep-alive) and
//! made through the steering bypass in ebpf mode, so the kernel program
//! does not hand them back to the proxy.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    body::ProxyBody,
    limits::{CallerKey, Kind, LimitError, Limits, Permit},
};
use crate::{
    config::{PortRange, UpstreamLimits},
    steer::bypass::{self, BypassStream},
};

/// An upstream connection: plain, or TLS over the bypass socket.
pub enum UpstreamIo {
    /// A plain TCP connection.
    Plain(BypassStream),
    /// A TLS connection.
    Tls(Box<tokio_rustls::client::TlsStream<BypassStream>>),
}

impl hyper_util::client::legacy::connect::Connection for UpstreamIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Which upstreams speak TLS, and the name each certificate must carry
/// (`None`: the upstream's IP address). Rules with an explicit upstream
/// are keyed by its address, the others (original destination) by port.
#[derive(Clone, Default)]
pub struct UpstreamTls {
    /// The client TLS config, if any upstream uses TLS.
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// Upstream addresses reached over TLS, with the server name to verify, if set.
    pub by_addr: HashMap<SocketAddr, Option<String>>,
    /// Upstream ports reached over TLS (when no address matches), with the server
    /// name to verify, if set.
    pub by_port: HashMap<u16, Option<String>>,
}

impl UpstreamTls {
    fn name_for(&self, addr: SocketAddr) -> Option<&Option<String>> {
        self.by_addr
            .get(&addr)
            .or_else(|| self.by_port.get(&addr.port()))
    }
}

/// Why an upstream connection failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, timed out).
    #[error("cannot connect to upstream {0}: {1}")]
    Connect(SocketAddr, String),
    /// Connected (or waiting for a bypass port), but no response head
    /// within the limit.
    #[error("upstream {0} sent no response within {1:?} (http.upstream_response_timeout_ms)")]
    Timeout(SocketAddr, Duration),
    /// The exchange failed after connecting.
    #[error("upstream {0}: {1}")]
    Failed(SocketAddr, String),
    /// Over a budget of `http.max_upstream_*`: refused before connecting.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// Connects to the host:port of the request URI; TLS for `https` URIs.
#[derive(Clone)]
struct Connector {
    bypass: Option<PortRange>,
    timeout: Duration,
    tls: Arc<UpstreamTls>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UpstreamIo>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| {
                    std::io::Error::other(format!("upstream URI {uri} has no address"))
                })?;
            let connect = async {
                match this.bypass {
                    Some(range) => bypass::connect(addr, range).await,
                    None => bypass::plain(addr).await,
                }
            };
            let stream = tokio::time::timeout(this.timeout, connect)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            let _ = stream.stream().set_nodelay(true);
            if uri.scheme_str() != Some("https") {
                return Ok(TokioIo::new(UpstreamIo::Plain(stream)));
            }
            let (Some(cc), Some(name)) = (&this.tls.config, this.tls.name_for(addr)) else {
                return Err(std::io::Error::other("no TLS settings for this upstream"));
            };
            let name = super::tls::server_name(name.as_deref(), addr)
                .map_err(|e| std::io::Error::other(format!("upstream server name {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(cc.clone());
            let s = tokio::time::timeout(this.timeout, tls.connect(name, stream))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })?
                .map_err(|e| std::io::Error::other(format!("TLS to upstream: {e}")))?;
            Ok(TokioIo::new(UpstreamIo::Tls(Box::new(s))))
        })
    }
}

/// Connects to upstream servers, bypassing steering.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, ProxyBody>,
    tls: Arc<UpstreamTls>,
    response_timeout: Duration,
    /// In ebpf mode every upstream connection to one server needs its own
    /// port of the bypass range (the 4-tuple differs only there); the
    /// budgets per upstream fit in it (config validation), split between
    /// GET streams and other requests, with a share per caller.
    limits: Limits,
}

/// Marks a request (an extension) whose answer is a long-lived stream
/// although it is no GET (an MCP `subscriptions/listen` POST): it takes a
/// stream slot, so such streams never take the slots calls need.
#[derive(Debug, Clone, Copy)]
pub struct LongLived;

/// An upstream response body; holds its slot until dropped.
pub struct UpstreamBody {
    inner: Incoming,
    _slot: Permit,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Upstream {
    /// `bypass`: the source-port range in ebpf mode, `None` in listen mode.
    pub fn new(
        bypass: Option<PortRange>,
        connect_timeout: Duration,
        response_timeout: Duration,
        tls: UpstreamTls,
        limits: UpstreamLimits,
    ) -> Self {
        let tls = Arc::new(tls);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            // Idle connections beyond the bypass range could never all be used,
            // and closing them leaves source ports in TIME_WAIT.
            .pool_max_idle_per_host(bypass.map_or(256, |r| r.count() as usize))
            // Keep the client's Host header: the server must see what the
            // client sent, not our upstream address.
            .set_host(false)
            .http1_max_buf_size(super::http::READ_BUFFER)
            .build(Connector {
                bypass,
                timeout: connect_timeout,
                tls: tls.clone(),
            });
        Self {
            client,
            tls,
            response_timeout,
            limits: Limits::new(limits),
        }
    }

    /// Sends `req` (origin-form URI) to `addr` and waits for the head.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.response_timeout;
        let kind =
            if req.method() == http::Method::GET || req.extensions().get::<LongLived>().is_some() {
                Kind::Stream
            } else {
                Kind::Request
            };
        let caller = req
            .extensions()
            .get::<CallerKey>()
            .map_or("", |c| c.0.as_str())
            .to_owned();
        let acquire = self.limits.acquire(addr, kind, &caller);
        let slot = match tokio::time::timeout_at(deadline, acquire).await {
            Ok(p) => p?,
            Err(_) => return Err(UpstreamError::Timeout(addr, self.response_timeout)),
        };
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let scheme = if self.tls.name_for(addr).is_some() {
            "https"
        } else {
            "http"
        };
        *req.uri_mut() = format!("{scheme}://{addr}{pq}")
            .parse()
            .map_err(|e| UpstreamError::Failed(addr, format!("bad URI: {e}")))?;
        match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(addr, self.response_timeout)),
            Ok(Ok(resp)) => Ok(resp.map(|inner| UpstreamBody { inner, _slot: slot })),
            Ok(Err(e)) if e.is_connect() => {
                let cause = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                Err(UpstreamError::Connect(addr, cause))
            }
            Ok(Err(e)) => Err(UpstreamError::Failed(addr, e.to_string())),
        }
    }
}
