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
//! concurrent connections per upstream address and port, not in total.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicU32, Ordering},
};

use tokio::net::{TcpSocket, TcpStream};

use crate::config::PortRange;

/// Rotates the first port tried so concurrent connects spread out.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Connects to `upstream` from `(upstream.ip(), p)` for some `p` in `range`.
/// If the upstream address is not local (cannot be bound), the connection
/// leaves the host and is never seen by this namespace's `sk_lookup`, so a
/// plain connect is used.
pub async fn connect(upstream: SocketAddr, range: PortRange) -> io::Result<TcpStream> {
    let n = range.count();
    let first = NEXT.fetch_add(1, Ordering::Relaxed) % n;
    let mut last_err = None;
    for i in 0..n {
        let port = range.start + ((first + i) % n) as u16;
        let sock = new_socket(upstream.ip())?;
        sock.set_reuseaddr(true)?;
        match sock.bind(SocketAddr::new(upstream.ip(), port)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                return TcpStream::connect(upstream).await;
            }
            // In use by a listener, or by a socket without SO_REUSEADDR.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        }
        match sock.connect(upstream).await {
            Ok(s) => return Ok(s),
            // This 4-tuple is taken (or in TIME_WAIT): try the next port.
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("bypass port range exhausted")))
}

fn new_socket(ip: IpAddr) -> io::Result<TcpSocket> {
    match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
}
