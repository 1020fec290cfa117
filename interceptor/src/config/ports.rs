//! Checks of `[intercept]`: the steered ports, the bypass range, the proxy
//! socket and each rule's paths.

use std::collections::BTreeSet;

use super::ValidationError::{self, Conflict, Invalid};
use super::{Intercept, Mode, PortRule};

/// Refuses port rules that would steer nothing, loop, or leave a path ambiguous.
pub(super) fn validate(i: &Intercept) -> Result<(), ValidationError> {
    if i.ports.is_empty() {
        return Err(Invalid(
            "intercept.ports is empty: name at least one MCP port".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for rule in &i.ports {
        if rule.port == 0 {
            return Err(Invalid("intercept.ports: port 0 is not a port".into()));
        }
        if !seen.insert(rule.port) {
            return Err(Invalid(format!(
                "intercept.ports: port {} listed twice",
                rule.port
            )));
        }
        if i.mode == Mode::Listen && rule.upstream.is_none() {
            return Err(Conflict(format!(
                "intercept.ports port {}: listen mode needs `upstream` (there is no \
                 original destination to forward to)",
                rule.port
            )));
        }
        if i.mode == Mode::Ebpf && !rule.listen.is_empty() {
            return Err(Conflict(format!(
                "intercept.ports port {}: `listen` applies to listen mode only",
                rule.port
            )));
        }
    }
    let r = i.bypass_ports;
    if r.start == 0 || r.start > r.end {
        return Err(Invalid(format!(
            "intercept.bypass_ports {}-{} is empty",
            r.start, r.end
        )));
    }
    if r.end >= 1024 {
        // Only privileged ports keep unprivileged local processes out of
        // the bypass; see steer::bypass.
        return Err(Invalid(format!(
            "intercept.bypass_ports must end below 1024 (privileged ports), not {}",
            r.end
        )));
    }
    if i.mode == Mode::Ebpf {
        if i.proxy_listen.is_empty() {
            return Err(Conflict(
                "intercept.proxy_listen is empty: ebpf mode needs a socket".into(),
            ));
        }
        let v4 = i.proxy_listen.iter().filter(|a| a.is_ipv4()).count();
        let v6 = i.proxy_listen.len() - v4;
        if v4 > 1 || v6 > 1 {
            return Err(Invalid(
                "intercept.proxy_listen: at most one IPv4 and one IPv6 address".into(),
            ));
        }
        for a in &i.proxy_listen {
            if seen.contains(&a.port()) {
                return Err(Conflict(format!(
                    "intercept.proxy_listen {a}: its port is a steered port (loop)"
                )));
            }
        }
    }
    for rule in &i.ports {
        check_paths(rule)?;
    }
    Ok(())
}

/// `mcp_paths` and `pass_through` entries are absolute paths with one
/// reading (see `reqpath`); only `pass_through` may end in `/*`.
fn check_paths(rule: &PortRule) -> Result<(), ValidationError> {
    let port = rule.port;
    let lists = [
        ("mcp_paths", &rule.mcp_paths),
        ("pass_through", &rule.pass_through),
    ];
    for (key, list) in lists {
        for p in list {
            let base = match p.strip_suffix("/*") {
                Some(b) if key == "pass_through" => {
                    if b.is_empty() {
                        "/"
                    } else {
                        b
                    }
                }
                _ => p.as_str(),
            };
            if base.contains('*') || base.contains('?') || base.contains('#') {
                return Err(Invalid(format!(
                    "intercept.ports port {port}: {key} entry {p:?}: only a final \"/*\" (pass_through) is a pattern; no '*', '?' or '#' elsewhere"
                )));
            }
            if let Err(e) = crate::reqpath::normalize(base) {
                return Err(Invalid(format!(
                    "intercept.ports port {port}: {key} entry {p:?} must be an absolute path ({e})"
                )));
            }
        }
    }
    Ok(())
}
