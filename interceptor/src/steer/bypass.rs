//! The agent's own upstream connections, which the program must not steer
//! back to the proxy.
//!
//! Mechanism: the proxy connects to a local upstream *from the upstream's
//! own address* and from a source port in `intercept.bypass_ports`, a range
//! of privileged ports (below `net.ipv4.ip_unprivileged_port_start`, 1024 by
//! default). The program passes a connection unsteered only when both hold.
//!
//! Trust boundary:
//! - a local process without `CAP_NET_BIND_SERVICE` cannot bind a port in
//!   the range (EACCES), so it cannot use the bypass; root and holders of
//!   that capability can, and they could detach the program anyway;
//! - a remote peer can pick any source port, but not the destination's own
//!   address: a packet arriving from outside with a local source address is
//!   dropped as martian (IPv4), and even where it is not, the SYN-ACK goes to
//!   the local address, so the handshake never completes;
//! - `doctor` fails if the namespace's `ip_unprivileged_port_start` would put
//!   the range within reach of unprivileged processes.
//!
//! Source ports are shared across upstreams with SO_REUSEADDR: the kernel
//! keeps 4-tuples unique at connect time (EADDRNOTAVAIL), so the range caps
//! concurrent connections per upstream address and port, not in total. A
//! free-port queue per upstream hands each connection its port and takes it
//! back when the connection closes.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpSocket, TcpStream},
    sync::Notify,
};

use crate::config::PortRange;

/// The ports of the range not held by a live connection to one upstream.
/// Connecting takes one, closing the connection gives it back: with many
/// concurrent requests the range is the limit, and a connect waits for a
/// port instead of trying every port in turn (which burned CPU) or failing.
struct Free {
    ports: Mutex<VecDeque<u16>>,
    returned: Notify,
}

type Pools = Mutex<HashMap<(SocketAddr, u16, u16), Arc<Free>>>;

fn pool(upstream: SocketAddr, range: PortRange) -> Arc<Free> {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    pools
        .entry((upstream, range.start, range.end))
        .or_insert_with(|| {
            Arc::new(Free {
                ports: Mutex::new((range.start..=range.end).collect()),
                returned: Notify::new(),
            })
        })
        .clone()
}

impl Free {
    fn take(&self) -> Option<u16> {
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    fn give(&self, port: u16) {
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(port);
        self.returned.notify_one();
    }
}

/// A TCP socket lent out as IO (to hyper, to the upstream pool) by an
/// owner that takes something back when the loan is dropped.
pub trait Lender: Send + Unpin {
    /// The socket; `None` once the owner has taken it back.
    fn socket(&mut self) -> Option<&mut TcpStream>;
    /// The socket, read-only.
    fn socket_ref(&self) -> Option<&TcpStream>;
}

/// A [`Lender`]'s socket as tokio IO: every call goes to the socket.
pub struct Lent<L>(L);

impl<L: Lender> Lent<L> {
    /// `lender`'s socket as IO.
    pub fn new(lender: L) -> Self {
        Self(lender)
    }

    fn io(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        self.get_mut()
            .0
            .socket()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl<L: Lender> AsyncRead for Lent<L> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<L: Lender> AsyncWrite for Lent<L> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.socket_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// An upstream connection; returns its bypass port when dropped.
pub type BypassStream = Lent<Bypass>;

/// An upstream socket and the bypass port it holds (none: a plain
/// connection).
pub struct Bypass {
    inner: TcpStream,
    slot: Option<(u16, Arc<Free>)>,
}

impl Lender for Bypass {
    fn socket(&mut self) -> Option<&mut TcpStream> {
        Some(&mut self.inner)
    }

    fn socket_ref(&self) -> Option<&TcpStream> {
        Some(&self.inner)
    }
}

impl Drop for Bypass {
    fn drop(&mut self) {
        if let Some((port, free)) = self.slot.take() {
            free.give(port);
        }
    }
}

impl BypassStream {
    /// The underlying TCP stream.
    pub fn stream(&self) -> &TcpStream {
        &self.0.inner
    }
}

/// A plain connection (listen mode, or an upstream that is not local).
pub async fn plain(upstream: SocketAddr) -> io::Result<BypassStream> {
    Ok(Lent::new(Bypass {
        inner: TcpStream::connect(upstream).await?,
        slot: None,
    }))
}

/// Connects to `upstream` from `(upstream.ip(), p)` for a free `p` in
/// `range`, waiting for one if all are in use. If the upstream address is
/// not local (cannot be bound), the connection leaves the host and is never
/// seen by this namespace's `sk_lookup`, so a plain connect is used. The
/// caller bounds the wait with its connect timeout.
pub async fn connect(upstream: SocketAddr, range: PortRange) -> io::Result<BypassStream> {
    let free = pool(upstream, range);
    loop {
        // A port just released may still be in TIME_WAIT towards this
        // upstream (EADDRNOTAVAIL): it goes to the back of the queue and the
        // next one is tried; after a full round, wait for a release.
        let mut tried = 0;
        while let Some(port) = free.take() {
            tried += 1;
            match attempt(upstream, port).await {
                Ok(inner) => {
                    return Ok(Lent::new(Bypass {
                        inner,
                        slot: Some((port, free)),
                    }));
                }
                Err(Attempt::NotLocal) => {
                    free.give(port);
                    return plain(upstream).await;
                }
                Err(Attempt::Busy) => {
                    free.give(port);
                    if tried >= range.count() {
                        break;
                    }
                }
                Err(Attempt::Failed(e)) => {
                    free.give(port);
                    return Err(e);
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), free.returned.notified()).await;
    }
}

enum Attempt {
    /// The upstream address is not ours to bind.
    NotLocal,
    /// This port cannot be used for this upstream right now.
    Busy,
    Failed(io::Error),
}

async fn attempt(upstream: SocketAddr, port: u16) -> Result<TcpStream, Attempt> {
    let sock = new_socket(upstream.ip()).map_err(Attempt::Failed)?;
    sock.set_reuseaddr(true).map_err(Attempt::Failed)?;
    match sock.bind(SocketAddr::new(upstream.ip(), port)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => return Err(Attempt::NotLocal),
        // In use by a listener, or by a socket without SO_REUSEADDR.
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(Attempt::Busy),
        Err(e) => return Err(Attempt::Failed(e)),
    }
    match sock.connect(upstream).await {
        Ok(s) => Ok(s),
        // This 4-tuple is taken (or in TIME_WAIT).
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Err(Attempt::Busy),
        Err(e) => Err(Attempt::Failed(e)),
    }
}

fn new_socket(ip: IpAddr) -> io::Result<TcpSocket> {
    match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
}
