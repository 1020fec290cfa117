//! Listeners, accept loops and the per-connection byte pass-through.
//!
//! The proxy knows TCP (and, later, HTTP), never MCP. In ebpf mode every
//! accepted socket was steered by the kernel, and its local address is the
//! destination the client meant: the proxy forwards there (or to the
//! configured upstream) from the bypass range. In listen mode the proxy
//! owns the port and forwards to the configured upstream.
#![forbid(unsafe_code)]

pub mod addr;
mod drain;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub use addr::{ClientAddr, OrigDst};
pub use drain::Drain;

use crate::{
    config::{Config, Mode},
    steer::bypass,
};

/// Why a connection was not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The connection reached the proxy socket without being steered (its
    /// destination is not an intercepted port): serving it could loop.
    #[error("destination {0} is not an intercepted port")]
    NotSteered(OrigDst),
    /// Connecting to the upstream failed.
    #[error("upstream {upstream}: {source}")]
    Upstream {
        upstream: SocketAddr,
        source: std::io::Error,
    },
    /// Reading the accepted socket's addresses failed.
    #[error("socket addresses: {0}")]
    Socket(std::io::Error),
}

/// Serves one listener until `stop` turns true; connections in flight are
/// tracked by `drain` and keep going after the listener closes.
pub async fn serve(
    listener: TcpListener,
    config: watch::Receiver<Arc<Config>>,
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
                let cfg = config.borrow().clone();
                let guard = drain.enter();
                tokio::spawn(async move {
                    handle(stream, ClientAddr(peer), &cfg).await;
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
fn route(cfg: &Config, dst: OrigDst) -> Result<(SocketAddr, bool), ProxyError> {
    let rule = cfg.rule(dst.0.port()).ok_or(ProxyError::NotSteered(dst))?;
    let steered = cfg.intercept.mode == Mode::Ebpf;
    Ok((rule.upstream.unwrap_or(dst.0), steered))
}

async fn handle(mut client: TcpStream, peer: ClientAddr, cfg: &Config) {
    let started = Instant::now();
    let dst = match client.local_addr() {
        Ok(a) => OrigDst(addr::unmap(a)),
        Err(e) => {
            tracing::warn!(client = %peer, error = %ProxyError::Socket(e), "connection dropped");
            return;
        }
    };
    let result = async {
        let (upstream, steered) = route(cfg, dst)?;
        let mut server = if steered {
            bypass::connect(upstream, cfg.intercept.bypass_ports).await
        } else {
            TcpStream::connect(upstream).await
        }
        .map_err(|source| ProxyError::Upstream { upstream, source })?;
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let via = server.local_addr().ok();
        let copied = copy_bidirectional(&mut client, &mut server).await;
        Ok::<_, ProxyError>((upstream, via, copied))
    }
    .await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok((upstream, via, Ok((up, down)))) => tracing::info!(
            client = %peer, orig_dst = %dst, %upstream, via = ?via,
            bytes_up = up, bytes_down = down, duration_ms = format!("{ms:.1}"),
            "connection closed"
        ),
        // A reset mid-stream is the peers' business, still worth a line.
        Ok((upstream, via, Err(e))) => tracing::info!(
            client = %peer, orig_dst = %dst, %upstream, via = ?via,
            error = %e, duration_ms = format!("{ms:.1}"),
            "connection ended with error"
        ),
        Err(e) => tracing::warn!(
            client = %peer, orig_dst = %dst, error = %e,
            duration_ms = format!("{ms:.1}"), "connection refused"
        ),
    }
}
