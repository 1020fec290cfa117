//! Binding the proxy sockets, then (ebpf mode) attaching steering to them.
//! Bound first: steering registers the sockets it steers to, so they must
//! exist before the program is attached.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use super::AgentError;
use crate::{
    config::{Intercept, Mode},
    steer::Steering,
};

/// The proxy sockets of one intercept mode, bound but not yet accepting.
pub(super) enum Bound {
    /// The proxy sockets steering sends connections to, one per family.
    Ebpf {
        /// The IPv4 proxy socket.
        v4: Option<TcpListener>,
        /// The IPv6 proxy socket.
        v6: Option<TcpListener>,
    },
    /// One socket per listen address of every port rule.
    Listen(Vec<TcpListener>),
}

/// Binds the sockets `cfg` asks for.
pub(super) fn bind(cfg: &Intercept) -> Result<Bound, AgentError> {
    match cfg.mode {
        Mode::Ebpf => {
            let (mut v4, mut v6) = (None, None);
            for addr in &cfg.proxy_listen {
                let l = listener(*addr)?;
                if addr.is_ipv4() {
                    v4 = Some(l)
                } else {
                    v6 = Some(l)
                }
            }
            Ok(Bound::Ebpf { v4, v6 })
        }
        Mode::Listen => {
            let mut listeners = Vec::new();
            for rule in &cfg.ports {
                let addrs = if rule.listen.is_empty() {
                    vec![SocketAddr::from(([0, 0, 0, 0], rule.port))]
                } else {
                    rule.listen.clone()
                };
                for addr in addrs {
                    listeners.push(listener(addr)?);
                }
            }
            Ok(Bound::Listen(listeners))
        }
    }
}

/// Attaches steering to the ebpf mode's sockets (listen mode has none to
/// attach); the listeners to serve, and the steering to reload and read.
pub(super) fn attach(
    cfg: &Intercept,
    bound: Bound,
) -> Result<(Vec<TcpListener>, Option<Steering>), AgentError> {
    let (v4, v6) = match bound {
        Bound::Listen(listeners) => return Ok((listeners, None)),
        Bound::Ebpf { v4, v6 } => (v4, v6),
    };
    let s = Steering::attach(cfg, v4.as_ref(), v6.as_ref())?;
    tracing::info!(
        pin_dir = %s.pin_dir().display(),
        ports = ?cfg.ports.iter().map(|r| r.port).collect::<Vec<_>>(),
        fail = ?cfg.fail,
        "steering attached"
    );
    Ok((v4.into_iter().chain(v6).collect(), Some(s)))
}

/// A listening socket on `addr`, with `SO_REUSEADDR` so a restarted agent
/// binds while the old one's connections linger in TIME_WAIT.
fn listener(addr: SocketAddr) -> Result<TcpListener, AgentError> {
    let err = |source| AgentError::Bind { addr, source };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    sock.listen(1024).map_err(err)
}
