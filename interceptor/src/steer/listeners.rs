//! The servers' listening sockets in the steered namespace, read from
//! `/proc/thread-self/net/tcp{,6}`, to find what steering does not cover:
//! a server bound wider than its rule's `addresses` (0.0.0.0 while only
//! 127.0.0.2 is steered) is reachable unsteered at every other address.

use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::config::{Intercept, Mode};

/// A listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Owner of the socket.
    pub uid: u32,
}

/// Every listening TCP socket of the current thread's network namespace.
pub fn read() -> std::io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        let path = format!("/proc/thread-self/net/{file}");
        match std::fs::read_to_string(&path) {
            Ok(text) => out.extend(text.lines().skip(1).filter_map(parse)),
            // No IPv6 in this kernel or namespace.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == "tcp6" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `   0: 0100007F:1F90 00000000:0000 0A ... 1000 0 12345 ...`: LISTEN is
/// state 0A; addresses are words in host order, as the kernel prints them.
fn parse(line: &str) -> Option<Listener> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.get(3) != Some(&"0A") {
        return None;
    }
    let (addr, port) = f.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut o = [0u8; 16];
            for (i, chunk) in o.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(Listener {
        addr: SocketAddr::new(ip, port),
        uid: f.get(7)?.parse().ok()?,
    })
}

fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

/// A server socket that accepts connections steering does not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wider {
    /// The listener's address.
    pub listener: SocketAddr,
    /// The rule's `addresses`.
    pub steered: Vec<IpAddr>,
}

impl fmt::Display for Wider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steered: Vec<String> = self.steered.iter().map(ToString::to_string).collect();
        write!(
            f,
            "the server socket {} accepts connections at addresses the rule for port {} does \
             not steer (addresses = [{}]): they reach the server unguarded. Fix: remove \
             `addresses` from the rule (steer every address), or bind the server to the \
             steered addresses only",
            self.listener,
            self.listener.port(),
            steered.join(", ")
        )
    }
}

/// Listeners on steered ports bound wider than their rule's `addresses`.
pub fn wider(cfg: &Intercept, listeners: &[Listener]) -> Vec<Wider> {
    if cfg.mode != Mode::Ebpf {
        return Vec::new();
    }
    let mut out = Vec::new();
    for rule in cfg.ports.iter().filter(|r| !r.addresses.is_empty()) {
        let mut seen = BTreeSet::new();
        for l in listeners.iter().filter(|l| l.addr.port() == rule.port) {
            // A wildcard accepts at every local address (`::` at IPv4 ones
            // too, unless V6ONLY, which /proc does not show); a specific
            // address is covered only if the rule lists it.
            let covered = !l.addr.ip().is_unspecified() && rule.addresses.contains(&l.addr.ip());
            if !covered && seen.insert(l.addr) {
                out.push(Wider {
                    listener: l.addr,
                    steered: rule.addresses.clone(),
                });
            }
        }
    }
    out
}

/// Steered ports (forwarded to the original destination) with listening
/// sockets of more than one owner: a connection to the other owner's
/// address is forwarded there, upstream credential included.
pub fn shared_ports(cfg: &Intercept, listeners: &[Listener]) -> Vec<(u16, Vec<Listener>)> {
    if cfg.mode != Mode::Ebpf {
        return Vec::new();
    }
    let mut out = Vec::new();
    for rule in cfg.ports.iter().filter(|r| r.upstream.is_none()) {
        let on: Vec<Listener> = listeners
            .iter()
            .filter(|l| l.addr.port() == rule.port)
            .cloned()
            .collect();
        let owners: BTreeSet<u32> = on.iter().map(|l| l.uid).collect();
        if owners.len() > 1 {
            out.push((rule.port, on));
        }
    }
    out
}

/// Logs one warning per listener steering does not cover (at start and on
/// reload); quiet when the sockets cannot be read.
pub fn warn_uncovered(cfg: &Intercept) {
    let Ok(all) = read() else { return };
    for w in wider(cfg, &all) {
        tracing::warn!(listener = %w.listener, port = w.listener.port(), "{w}");
    }
    for (port, on) in shared_ports(cfg, &all) {
        let socks: Vec<String> = on
            .iter()
            .map(|l| format!("{} (uid {})", l.addr, l.uid))
            .collect();
        tracing::warn!(
            port,
            "sockets of more than one owner listen on steered port {port}: {}; calls to each \
             address are forwarded there with the upstream credential. Fix: set the rule's \
             `upstream` to the server's address",
            socks.join(", ")
        );
    }
}

#[cfg(test)]
mod tests;
