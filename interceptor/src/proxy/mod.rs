//! Listeners, accept loops, HTTP serving and the pooled upstream.
//!
//! The proxy knows TCP and HTTP, never MCP: a [`Handler`] (the MCP-aware
//! one comes from `mcp`, wired by the agent) answers each request. In ebpf
//! mode every
//! accepted socket was steered by the kernel, and its local address is the
//! destination the client meant: the proxy forwards there (or to the
//! configured upstream) from the bypass range. In listen mode the proxy
//! owns the port and forwards to the configured upstream.
#![forbid(unsafe_code)]

pub mod addr;
pub mod body;
mod drain;
pub mod http;
pub mod upstream;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub use addr::{ClientAddr, OrigDst};
pub use drain::Drain;
pub use http::{ConnCtx, Handler};
pub use upstream::Upstream;

use crate::config::{Config, Mode};

/// Facts about one client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Unique within this agent run, for correlating log lines and events.
    pub id: u64,
    pub client: SocketAddr,
    pub orig_dst: SocketAddr,
}

static CONN_IDS: AtomicU64 = AtomicU64::new(1);

/// Why a connection was not served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The connection reached the proxy socket without being steered (its
    /// destination is not an intercepted port): serving it could loop.
    #[error("destination {0} is not an intercepted port")]
    NotSteered(OrigDst),
    /// Reading the accepted socket's addresses failed.
    #[error("socket addresses: {0}")]
    Socket(std::io::Error),
}

/// What serves connections: the handler and the pooled upstream client,
/// swapped as a whole on reload.
#[derive(Clone)]
pub struct Serving {
    pub config: Arc<Config>,
    pub handler: Arc<dyn Handler>,
    pub upstream: Upstream,
}

/// Serves one listener until `stop` turns true; connections in flight are
/// tracked by `drain` and keep going after the listener closes.
pub async fn serve(
    listener: TcpListener,
    serving: watch::Receiver<Serving>,
    mut stop: watch::Receiver<bool>,
    drain: Drain,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let serving = serving.borrow().clone();
                let guard = drain.enter();
                tokio::spawn(async move {
                    handle(stream, ClientAddr(peer), serving).await;
                    drop(guard);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, listener = ?local, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(listener = ?local, "listener closed");
}

/// Where a connection goes: the rule's upstream, or the original destination.
fn route(cfg: &Config, dst: OrigDst) -> Result<(SocketAddr, crate::config::PortRule), ProxyError> {
    let rule = cfg.rule(dst.0.port()).ok_or(ProxyError::NotSteered(dst))?;
    Ok((rule.upstream.unwrap_or(dst.0), rule.clone()))
}

async fn handle(client: TcpStream, peer: ClientAddr, serving: Serving) {
    let started = Instant::now();
    let dst = match client.local_addr() {
        Ok(a) => OrigDst(addr::unmap(a)),
        Err(e) => {
            tracing::warn!(client = %peer, error = %ProxyError::Socket(e), "connection dropped");
            return;
        }
    };
    let (upstream_addr, rule) = match route(&serving.config, dst) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(client = %peer, orig_dst = %dst, error = %e, "connection refused");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let info = ConnInfo {
        id: CONN_IDS.fetch_add(1, Ordering::Relaxed),
        client: addr::unmap(peer.0),
        orig_dst: dst.0,
    };
    let id = info.id;
    let ctx = Arc::new(ConnCtx {
        info,
        upstream: serving.upstream.clone(),
        upstream_addr,
        rule,
        http: serving.config.http.clone(),
    });
    serving.handler.on_connect(&ctx.info);
    let requests = http::serve(client, ctx.clone(), serving.handler.clone()).await;
    serving.handler.on_close(&ctx.info, requests);
    tracing::info!(
        conn = id, client = %peer, orig_dst = %dst, upstream = %upstream_addr, requests,
        duration_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
        "connection closed"
    );
}

/// The upstream client for a config: through the bypass in ebpf mode.
pub fn upstream_for(cfg: &Config) -> Upstream {
    let bypass = (cfg.intercept.mode == Mode::Ebpf).then_some(cfg.intercept.bypass_ports);
    Upstream::new(
        bypass,
        std::time::Duration::from_millis(cfg.http.upstream_connect_timeout_ms),
        std::time::Duration::from_millis(cfg.http.upstream_response_timeout_ms),
    )
}
