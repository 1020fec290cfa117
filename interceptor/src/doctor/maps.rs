//! Doctor checks for the fixed-size eBPF maps: does the config fit, is a
//! map full, did the program count failures it could not act on.
//!
//! They run whether or not anything is pinned: a config the agent refused
//! at start (too many rules) leaves nothing pinned, and that is exactly
//! when the operator needs the map named.

use super::{Check, fail, ok, warn};
use crate::{
    config::Config,
    steer::{
        capacity::{self, Usage},
        pins::State,
    },
};

/// One check per fillable map, then the program's error counts.
pub fn checks(cfg: &Config, state: Option<&State>) -> Vec<Check> {
    let mut out = Vec::new();
    for (map, need) in capacity::needs(&cfg.intercept) {
        let usage = state.and_then(|s| s.maps.iter().find(|u| u.map == map));
        out.push(map_check(map, need, usage));
    }
    if let Some(e) = state.and_then(|s| s.errors) {
        if e.assign_refused > 0 {
            out.push(warn(
                "kernel errors",
                format!(
                    "{} connection(s) dropped because the kernel refused the registered proxy socket",
                    e.assign_refused
                ),
                "the agent log names the errno (\"would not assign the proxy socket\"); \
                 restart the agent so it registers fresh listeners",
            ));
        }
        if e.counters_full > 0 {
            out.push(warn(
                "kernel errors",
                format!(
                    "{} connection outcome(s) went uncounted: MCPI_COUNTERS was full",
                    e.counters_full
                ),
                "reload the agent (SIGHUP): it removes counter entries of ports not in the config",
            ));
        }
        if e.assign_refused == 0 && e.counters_full == 0 {
            out.push(ok("kernel errors", "none counted by the program"));
        }
    }
    out
}

fn map_check(map: &'static str, need: u32, usage: Option<&Usage>) -> Check {
    let capacity = usage.map_or(capacity::COMPILED, |u| u.capacity);
    if need > capacity {
        return fail(
            map,
            format!(
                "the config needs {need} entries, the map holds {capacity}: \
                 the agent refuses this config (start and reload)"
            ),
            capacity::fix(map),
        );
    }
    let Some(u) = usage else {
        return ok(
            map,
            format!("the config needs {need} of {capacity} entries (nothing pinned yet)"),
        );
    };
    let used = format!("{}/{} entries in use", u.entries, u.capacity);
    if u.full() && u.entries != need {
        return fail(
            map,
            format!(
                "full ({used}), {} more than the config's {need}: entries were added \
                 by hand or by another tool, and nothing more fits",
                u.entries.saturating_sub(need)
            ),
            format!(
                "reload the agent (systemctl reload mcp-interceptor): it removes entries the \
                 config does not have; `bpftool map dump pinned <pin_dir>/{map}` shows them"
            ),
        );
    }
    if u.full() {
        return warn(
            map,
            format!("full ({used}): the config fits exactly, a reload that adds one is refused"),
            capacity::fix(map),
        );
    }
    if u.entries * 10 >= u.capacity * 9 {
        return warn(
            map,
            format!("nearly full ({used}, the config needs {need})"),
            capacity::fix(map),
        );
    }
    ok(map, format!("{used}, the config needs {need}"))
}

#[cfg(test)]
mod tests;
