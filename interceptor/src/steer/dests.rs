//! Which original destinations the proxy may forward to.
//!
//! A rule without `upstream` forwards each steered connection to where the
//! client meant to go. With `addresses = []` that is any local address on
//! the port, so a user who binds another address on it (127.0.0.2:8080, or
//! [::1]:8080 with V6ONLY, while the server has 127.0.0.1:8080) would be
//! handed the calls, upstream credential included. The owners (uids) of a
//! port's listeners when steering attached are the server; a destination
//! whose receiving socket belongs to anyone else is refused. Ports with
//! listeners of more than one owner at attach time are ambiguous: refused.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Mutex, OnceLock},
};

use super::listeners::{self, Listener};
use crate::config::{Intercept, Mode};

/// What is known of one port's server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Server {
    /// Owners of its listeners; empty: none seen yet (learned at the first
    /// connection).
    owners: BTreeSet<u32>,
    /// Destinations already found to reach one of its sockets.
    known: BTreeSet<SocketAddr>,
}

fn table() -> &'static Mutex<HashMap<u16, Server>> {
    static T: OnceLock<Mutex<HashMap<u16, Server>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Learns the servers of the rules that forward to the original
/// destination (at attach and reload); other ports are forgotten.
pub fn learn(cfg: &Intercept) {
    if cfg.mode != Mode::Ebpf {
        return;
    }
    let all = listeners::read().unwrap_or_default();
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    let ports: BTreeSet<u16> = cfg
        .ports
        .iter()
        .filter(|r| r.upstream.is_none())
        .map(|r| r.port)
        .collect();
    t.retain(|p, _| ports.contains(p));
    for port in ports {
        let on: Vec<&Listener> = all.iter().filter(|l| l.addr.port() == port).collect();
        let s = t.entry(port).or_default();
        if s.owners.is_empty() {
            s.owners = on.iter().map(|l| l.uid).collect();
        }
    }
}

/// Whether the proxy may forward a steered connection to `dst`; `Err`
/// says why not.
pub fn check(dst: SocketAddr) -> Result<(), String> {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    let Some(s) = t.get_mut(&dst.port()) else {
        return Ok(());
    };
    if s.owners.len() <= 1 && s.known.contains(&dst) {
        return Ok(());
    }
    // A destination not seen before: who would receive it now?
    let all = listeners::read().map_err(|e| format!("cannot read listening sockets: {e}"))?;
    decide(s, &all, dst)
}

fn decide(s: &mut Server, all: &[Listener], dst: SocketAddr) -> Result<(), String> {
    let Some(r) = receiver(all, dst) else {
        // Nobody listens there: the connect is refused, nothing leaks.
        return Ok(());
    };
    if s.owners.is_empty() {
        s.owners = all
            .iter()
            .filter(|l| l.addr.port() == dst.port())
            .map(|l| l.uid)
            .collect();
    }
    let owners: Vec<String> = s.owners.iter().map(ToString::to_string).collect();
    if s.owners.len() > 1 {
        return Err(format!(
            "sockets of more than one owner (uids {}) listen on steered port {}: which is the \
             server is unknown. Fix: set the rule's `upstream` to the server's address",
            owners.join(", "),
            dst.port()
        ));
    }
    if !s.owners.contains(&r.uid) {
        return Err(format!(
            "the socket {} that would receive {dst} belongs to uid {}, not to the server on \
             port {} (uid {}): not forwarded. Fix: set the rule's `upstream`, or stop that socket",
            r.addr,
            r.uid,
            dst.port(),
            owners.join(", ")
        ));
    }
    s.known.insert(dst);
    Ok(())
}

/// The listener the kernel would hand a connection to `dst`: one bound
/// to that address, else a wildcard of its family, else `::` (dual stack).
fn receiver(all: &[Listener], dst: SocketAddr) -> Option<&Listener> {
    let on = || all.iter().filter(|l| l.addr.port() == dst.port());
    on().find(|l| l.addr.ip() == dst.ip())
        .or_else(|| {
            on().find(|l| l.addr.ip().is_unspecified() && l.addr.is_ipv4() == dst.is_ipv4())
        })
        .or_else(|| on().find(|l| l.addr.ip().is_unspecified() && l.addr.is_ipv6()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(addr: &str, uid: u32) -> Listener {
        Listener {
            addr: addr.parse().unwrap(),
            uid,
        }
    }

    #[test]
    fn another_owners_socket_on_the_port_is_not_forwarded_to() {
        let all = [
            l("127.0.0.1:8080", 0),
            l("127.0.0.2:8080", 1000),
            l("[::1]:8080", 1000),
        ];
        let mut s = Server {
            owners: [0].into(),
            known: BTreeSet::new(),
        };
        assert_eq!(
            decide(&mut s, &all, "127.0.0.1:8080".parse().unwrap()),
            Ok(())
        );
        for stolen in ["127.0.0.2:8080", "[::1]:8080"] {
            let err = decide(&mut s, &all, stolen.parse().unwrap()).unwrap_err();
            assert!(err.contains("belongs to uid 1000"), "{err}");
        }
        // Nobody there: let the connect fail.
        assert_eq!(
            decide(&mut s, &all, "127.0.0.3:8080".parse().unwrap()),
            Ok(())
        );
    }

    #[test]
    fn a_wildcard_server_receives_every_address_and_two_owners_are_ambiguous() {
        let all = [l("[::]:8080", 0)];
        let mut s = Server::default();
        assert_eq!(
            decide(&mut s, &all, "127.0.0.9:8080".parse().unwrap()),
            Ok(())
        );
        assert_eq!(s.owners, [0].into());
        let two = [l("0.0.0.0:8080", 0), l("[::1]:8080", 7)];
        let mut s = Server {
            owners: [0, 7].into(),
            known: BTreeSet::new(),
        };
        let err = decide(&mut s, &two, "127.0.0.1:8080".parse().unwrap()).unwrap_err();
        assert!(err.contains("more than one owner"), "{err}");
    }
}
