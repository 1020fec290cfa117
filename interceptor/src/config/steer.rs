//! Validation of the steering keys that can leave a path unguarded, and
//! the upstream budgets derived from the bypass range.

use super::ValidationError::{self, Conflict, Invalid};
use super::{Config, FailMode, Mode};

/// How many requests may be in flight to one upstream, and per caller:
/// long-lived GET streams and other requests have separate budgets, so
/// streams can never take the slots POSTs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// GET streams to one upstream, all callers together.
    pub streams: usize,
    /// Other requests to one upstream, all callers together.
    pub requests: usize,
    /// GET streams of one caller to one upstream.
    pub streams_per_caller: usize,
    /// Other requests of one caller to one upstream.
    pub requests_per_caller: usize,
}

/// What one upstream can take at once: in ebpf mode each connection to it
/// needs its own port of the bypass range; in listen mode the default
/// range's size keeps the same defaults.
fn per_upstream(cfg: &Config) -> usize {
    cfg.intercept.bypass_ports.count() as usize
}

impl Config {
    /// The upstream budgets, unset keys filled in from the bypass range
    /// (two fifths for streams, the rest for requests).
    pub fn upstream_limits(&self) -> UpstreamLimits {
        let h = &self.http;
        let total = per_upstream(self);
        let streams = h.max_upstream_streams.unwrap_or((total * 2 / 5).max(1));
        let requests = h
            .max_upstream_requests
            .unwrap_or(total.saturating_sub(streams).max(1));
        UpstreamLimits {
            streams,
            requests,
            streams_per_caller: h.max_upstream_streams_per_caller.min(streams),
            requests_per_caller: h.max_upstream_requests_per_caller.min(requests),
        }
    }
}

pub(super) fn validate(cfg: &Config) -> Result<(), ValidationError> {
    fail_open_families(cfg)?;
    let h = &cfg.http;
    for (name, v) in [
        ("max_upstream_streams", h.max_upstream_streams.unwrap_or(1)),
        (
            "max_upstream_requests",
            h.max_upstream_requests.unwrap_or(1),
        ),
        (
            "max_upstream_streams_per_caller",
            h.max_upstream_streams_per_caller,
        ),
        (
            "max_upstream_requests_per_caller",
            h.max_upstream_requests_per_caller,
        ),
    ] {
        if v == 0 {
            return Err(Invalid(format!("http.{name} must be greater than 0")));
        }
    }
    let l = cfg.upstream_limits();
    let total = per_upstream(cfg);
    if cfg.intercept.mode == Mode::Ebpf && l.streams + l.requests > total {
        // More would wait for a source port: streams could then hold every
        // port and starve requests again.
        return Err(Conflict(format!(
            "http.max_upstream_streams ({}) + http.max_upstream_requests ({}) exceed the {} \
             ports of intercept.bypass_ports, which bound connections per upstream: lower \
             them or widen the range",
            l.streams, l.requests, total
        )));
    }
    Ok(())
}

/// With `fail = "open"`, a family without a proxy socket is never steered:
/// the program finds no socket and passes every such connection to the
/// server, also while the agent runs. Refused for each family a rule can
/// steer (a rule without `addresses` steers both).
fn fail_open_families(cfg: &Config) -> Result<(), ValidationError> {
    let i = &cfg.intercept;
    if i.mode != Mode::Ebpf || i.fail != FailMode::Open {
        return Ok(());
    }
    for (v6, fam, example) in [
        (false, "IPv4", "127.0.0.1:15001"),
        (true, "IPv6", "[::1]:15001"),
    ] {
        if i.proxy_listen.iter().any(|a| a.is_ipv6() == v6) {
            continue;
        }
        let rule = i
            .ports
            .iter()
            .find(|r| r.addresses.is_empty() || r.addresses.iter().any(|a| a.is_ipv6() == v6));
        if let Some(r) = rule {
            return Err(Conflict(format!(
                "intercept.proxy_listen has no {fam} address while fail = \"open\": {fam} \
                 connections to port {} would reach the server unguarded even while the agent \
                 runs. Fix: add an {fam} address to proxy_listen (e.g. \"{example}\"), or set \
                 fail = \"closed\", or limit the rule's `addresses` to the other family",
                r.port
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
