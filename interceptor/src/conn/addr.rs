//! Address newtypes, so a client address can never be passed where the
//! original destination is meant (linkerd's `Remote<ClientAddr>` idea).

use std::{fmt, net::SocketAddr};

/// The peer that opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The destination the client asked for: the accepted socket's local
/// address, which `sk_lookup` steering preserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrigDst(pub SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for OrigDst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) back to IPv4, as a dual-stack socket
/// reports IPv4 peers.
pub fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}
