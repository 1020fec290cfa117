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

pub mod body;
mod drain;
pub mod http;
pub mod limits;
mod reclaim;
pub mod tls;
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

pub use drain::Drain;
pub use http::{ConnCtx, Handler};
pub use upstream::Upstream;

use crate::{
    config::{Config, Mode},
    conn::{ClientAddr, ConnInfo, OrigDst, addr},
    error::{Reason, Refusal},
};

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
    /// The configuration.
    pub config: Arc<Config>,
    /// The handler requests are served with.
    pub handler: Arc<dyn Handler>,
    /// The connector to upstream servers.
    pub upstream: Upstream,
    /// TLS on steered ports; `None`: plaintext only.
    pub tls: Option<Arc<tls::TlsServer>>,
}

/// Serves one listener until `stop` turns true; connections in flight are
/// tracked by `drain` and keep going after the listener closes.
pub async fn serve(
    listener: TcpListener,
    serving_rx: watch::Receiver<Serving>,
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
                let serving = serving_rx.borrow().clone();
                let max = serving.config.http.max_connections;
                let Some(guard) = drain.try_enter(max) else {
                    refuse_over_limit(&stream, peer, max);
                    continue;
                };
                let (stop, now) = (stop.clone(), serving_rx.clone());
                tokio::spawn(async move {
                    handle(stream, ClientAddr(peer), (serving, now), stop).await;
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

static REFUSED_OVER_LIMIT: AtomicU64 = AtomicU64::new(0);
/// Unix second of the last "connection limit" log line.
static LIMIT_LOGGED_AT: AtomicU64 = AtomicU64::new(0);

/// Connections refused at `http.max_connections` since start.
pub fn refused_over_limit() -> u64 {
    REFUSED_OVER_LIMIT.load(Ordering::Relaxed)
}

/// One connection too many: a 503 if the socket takes it at once (a fresh
/// socket's send buffer does), then close. The accept loop goes on, so
/// the backlog keeps draining and later clients are told, not left
/// waiting. No audit row: a flood would become an audit flood; the
/// counter and the log line say it.
fn refuse_over_limit(stream: &TcpStream, peer: SocketAddr, max: usize) {
    let total = REFUSED_OVER_LIMIT.fetch_add(1, Ordering::Relaxed) + 1;
    let msg = http::raw_error(&Refusal::new(
        Reason::TooManyConnections,
        format!("the agent is at its connection limit (http.max_connections = {max}); retry later"),
    ));
    let _ = stream.try_write(&msg);
    // Whatever the client already sent is read, so the close is a FIN,
    // not a reset that could discard the 503 on its way.
    let _ = stream.try_read(&mut [0u8; 4096]);
    // At most one line a second, whatever the flood.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LIMIT_LOGGED_AT.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(
            client = %addr::unmap(peer), max_connections = max, refused_total = total,
            "connection refused: at http.max_connections"
        );
    }
}

/// Where a connection goes: the rule's upstream, or the original destination.
fn route(cfg: &Config, dst: OrigDst) -> Result<(SocketAddr, crate::config::PortRule), ProxyError> {
    let rule = cfg.rule(dst.0.port()).ok_or(ProxyError::NotSteered(dst))?;
    Ok((rule.upstream.unwrap_or(dst.0), rule.clone()))
}

/// Serves one connection with `serving` (the config it was accepted
/// under); `now` follows reloads, for what must be judged by the config in
/// force at each request (see [`ConnCtx::recheck_cert`]).
async fn handle(
    client: TcpStream,
    peer: ClientAddr,
    (serving, now): (Serving, watch::Receiver<Serving>),
    stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let Some((dst, upstream_addr, rule)) = destination(&client, peer, &serving.config) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let mut info = ConnInfo {
        id: CONN_IDS.fetch_add(1, Ordering::Relaxed),
        client: addr::unmap(peer.0),
        orig_dst: dst.0,
        tls: None,
        process: None,
    };
    if rule.upstream.is_none()
        && serving.config.intercept.mode == Mode::Ebpf
        && let Err(reason) = crate::steer::dests::check(dst.0)
    {
        refuse_destination(&client, &info, &serving, &reason);
        return;
    }
    if serving.config.intercept.mode == Mode::Ebpf {
        info.process = crate::steer::process::facts(info.client, info.orig_dst).await;
    }
    log_accepted(&info);
    let Some(io) = secure(client, peer, &mut info, &serving).await else {
        return;
    };
    let max_age = match (&io, &serving.tls) {
        (Io::Tls(_), Some(t)) => Some(t.max_connection_age),
        _ => None,
    };
    let ctx = Arc::new(ConnCtx {
        info,
        upstream: serving.upstream.clone(),
        upstream_addr,
        rule,
        http: serving.config.http.clone(),
        stop: Some(stop),
        max_age,
        now: Some(now),
    });
    serving.handler.on_connect(&ctx.info);
    let requests = io.serve(ctx.clone(), serving.handler.clone()).await;
    serving.handler.on_close(&ctx.info, requests);
    let p = ctx.info.process.as_deref();
    tracing::info!(
        conn = ctx.info.id, client = %peer, orig_dst = %dst, upstream = %upstream_addr, requests,
        tls = ctx.info.tls.as_ref().map(|t| t.negotiated.version),
        pid = p.map(|p| p.pid), uid = p.map(|p| p.uid), gid = p.map(|p| p.gid),
        cgroup = p.and_then(|p| p.cgroup_path.as_deref()),
        exe = p.and_then(|p| p.exe_path.as_deref()),
        start_time_ns = p.map(|p| p.start_time_ns),
        duration_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
        "connection closed"
    );
}

/// One debug line per accepted connection, with the process facts the
/// kernel recorded for a same-host caller.
fn log_accepted(info: &ConnInfo) {
    match info.process.as_deref() {
        Some(p) => tracing::debug!(
            conn = info.id, client = %info.client, orig_dst = %info.orig_dst,
            pid = p.pid, tid = p.tid, uid = p.uid, gid = p.gid, login_uid = ?p.login_uid,
            comm = %p.comm, cgroup_id = p.cgroup_id, cgroup = ?p.cgroup_path,
            exe = ?p.exe_path, exe_dev = p.exe_dev, exe_ino = p.exe_ino,
            exe_sha256 = ?p.exe_sha256, start_time_ns = p.start_time_ns,
            "connection accepted from a local process"
        ),
        None => tracing::debug!(
            conn = info.id, client = %info.client, orig_dst = %info.orig_dst,
            "connection accepted (no process record)"
        ),
    }
}

/// The connection's original destination and where it goes (see
/// [`route`]); `None`, logged, when it is not to be served.
fn destination(
    client: &TcpStream,
    peer: ClientAddr,
    cfg: &Config,
) -> Option<(OrigDst, SocketAddr, crate::config::PortRule)> {
    let dst = match client.local_addr() {
        Ok(a) => OrigDst(addr::unmap(a)),
        Err(e) => {
            tracing::warn!(client = %peer, error = %ProxyError::Socket(e), "connection dropped");
            return None;
        }
    };
    match route(cfg, dst) {
        Ok((upstream_addr, rule)) => Some((dst, upstream_addr, rule)),
        Err(e) => {
            tracing::warn!(client = %peer, orig_dst = %dst, error = %e, "connection refused");
            None
        }
    }
}

/// TLS where the port has it: plaintext passes unless `require_tls`, a
/// TLS client is handshaken (and `info` learns its session). `None`: the
/// connection ends here (silent, refused or a failed handshake).
async fn secure(
    client: TcpStream,
    peer: ClientAddr,
    info: &mut ConnInfo,
    serving: &Serving,
) -> Option<Io> {
    let Some(t) = &serving.tls else {
        return Some(Io::Plain(client));
    };
    let limit = std::time::Duration::from_millis(serving.config.http.header_read_timeout_ms);
    match tls::sniff(&client, limit).await {
        // Closed or silent before a byte: nothing was asked, nothing to record.
        Err(_) => None,
        Ok(false) if t.require_tls => {
            refuse_plaintext(client, info, serving).await;
            None
        }
        Ok(false) => Some(Io::Plain(client)),
        Ok(true) => handshake(t, client, peer, info, serving, limit).await,
    }
}

/// The TLS handshake, bounded by `limit`; a failure is logged and
/// reported to the handler as a refusal.
async fn handshake(
    t: &tls::TlsServer,
    client: TcpStream,
    peer: ClientAddr,
    info: &mut ConnInfo,
    serving: &Serving,
    limit: std::time::Duration,
) -> Option<Io> {
    let (id, dst) = (info.id, info.orig_dst);
    let reason = match tokio::time::timeout(limit, t.acceptor.accept(client)).await {
        Ok(Ok(s)) => {
            info.tls = Some(Arc::new(tls::info(s.get_ref().1)));
            return Some(Io::Tls(Box::new(s)));
        }
        Ok(Err(e)) => {
            tracing::warn!(conn = id, client = %peer, orig_dst = %dst, error = %e, "TLS handshake failed");
            format!("TLS handshake failed: {e}")
        }
        Err(_) => {
            let reason = format!("TLS handshake not completed within {limit:?}");
            tracing::warn!(conn = id, client = %peer, orig_dst = %dst, "{reason}");
            reason
        }
    };
    serving.handler.on_refused(info, &reason);
    None
}

/// The original destination is another owner's socket: one 502 saying
/// why (no request is read, nothing is forwarded), a log line, a record.
fn refuse_destination(client: &TcpStream, info: &ConnInfo, serving: &Serving, reason: &str) {
    tracing::warn!(conn = info.id, client = %info.client, orig_dst = %info.orig_dst, "connection refused: {reason}");
    serving.handler.on_refused(info, reason);
    let msg = http::raw_error(&Refusal::new(
        Reason::ForeignDestination,
        format!("not forwarded to {}: {reason}", info.orig_dst),
    ));
    let _ = client.try_write(&msg);
    let _ = client.try_read(&mut [0u8; 4096]);
}

/// An accepted connection, secured or not.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Io {
    /// Serves HTTP on the connection until it closes; returns the request
    /// count.
    async fn serve(self, ctx: Arc<ConnCtx>, handler: Arc<dyn Handler>) -> u64 {
        match self {
            Io::Plain(s) => {
                // hyper closes a connection whose head does not arrive in time
                // without answering; the socket comes back so we answer 408.
                let (io, late) = reclaim::wrap(s);
                http::serve(io, Some(late), ctx, handler).await
            }
            Io::Tls(s) => http::serve(*s, None, ctx, handler).await,
        }
    }
}

/// `require_tls` and a plaintext client: one HTTP answer saying why, so a
/// misconfigured client gets more than a reset.
async fn refuse_plaintext(mut client: TcpStream, info: &ConnInfo, serving: &Serving) {
    use tokio::io::AsyncWriteExt;
    let reason = "this port requires TLS; plaintext refused";
    tracing::warn!(conn = info.id, client = %info.client, orig_dst = %info.orig_dst, "{reason}");
    serving.handler.on_refused(info, reason);
    let msg = http::raw_error(&Refusal::new(Reason::TlsRequired, reason));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.write_all(&msg)).await;
    let _ = client.shutdown().await;
}

/// The upstream client for a config: through the bypass in ebpf mode, TLS
/// to the upstreams whose rule says `upstream_tls`.
pub fn upstream_for(cfg: &Config) -> Result<Upstream, tls::TlsError> {
    let bypass = (cfg.intercept.mode == Mode::Ebpf).then_some(cfg.intercept.bypass_ports);
    let mut t = upstream::UpstreamTls::default();
    for rule in cfg.intercept.ports.iter().filter(|r| r.upstream_tls) {
        let name = rule.upstream_server_name.clone();
        match rule.upstream {
            Some(a) => t.by_addr.insert(a, name),
            None => t.by_port.insert(rule.port, name),
        };
    }
    if !t.by_addr.is_empty() || !t.by_port.is_empty() {
        t.config = Some(tls::client(&cfg.tls)?);
    }
    Ok(Upstream::new(
        bypass,
        std::time::Duration::from_millis(cfg.http.upstream_connect_timeout_ms),
        std::time::Duration::from_millis(cfg.http.upstream_response_timeout_ms),
        t,
        cfg.upstream_limits(),
    ))
}
