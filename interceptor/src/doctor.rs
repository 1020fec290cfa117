//! `mcp-interceptor doctor`: one line per check, a fix hint for each
//! failure, non-zero exit when anything fails.
//!
//! It runs as its own process, so it reads the agent's state from the pins
//! (maps, link) and from the kernel, never from the agent's memory; that is
//! also what lets it say "agent down" after a crash.
//!
//! Two scopes: [`Scope::Running`] checks a running agent (its pins, its
//! registered sockets, its counters) and so fails before the first start;
//! [`Scope::Preflight`] checks what a start needs and passes on a host
//! that is ready for one, so `doctor --preflight && systemctl enable --now`
//! can gate a first start.

use std::{fmt, path::Path};

mod approvals;
mod evidence;
mod identity;
mod maps;
mod preflight;
mod s3;
mod steered;

use crate::{
    config::{Config, FailMode, Mode},
    steer::{self, bpffs, pins},
};

/// Which state the checks expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A running agent: its pins, link, sockets, rules and counters.
    Running,
    /// Before a start: what the start needs (free ports, writable state,
    /// bpffs that can be mounted), nothing only a running agent has.
    Preflight,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All is well.
    Ok,
    /// It works, but something deserves a look.
    Warn,
    /// It will not work.
    Fail,
}

/// One doctor check and its outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, and how to fix it.
    pub detail: String,
    /// What to do about a failure or warning.
    pub hint: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{s} {:<18} {}", self.name, self.detail)?;
        if let Some(h) = &self.hint {
            write!(f, "\n     {:<18} fix: {h}", "")?;
        }
        Ok(())
    }
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail: detail.into(),
        hint: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
    with_hint(name, Status::Fail, detail, hint)
}

fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
    with_hint(name, Status::Warn, detail, hint)
}

/// A check that failed or warns, with what to do about it.
fn with_hint(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

/// Runs every check of `scope` for the config at `path`.
pub fn run(path: &Path, scope: Scope) -> Vec<Check> {
    let mut out = vec![kernel(), btf()];
    let cfg = match Config::load(path) {
        Ok(c) => {
            out.push(capabilities(&c));
            out.push(ok("config", format!("{} is valid", path.display())));
            c
        }
        Err(e) => {
            out.push(capabilities(&Config::default()));
            out.push(fail(
                "config",
                e.to_string(),
                format!(
                    "fix the file (every key: {EXAMPLE}), then `mcp-interceptor check-config -c {}`",
                    path.display()
                ),
            ));
            return out;
        }
    };
    if let Some(ns) = &cfg.intercept.netns {
        match steer::netns::enter(ns) {
            Ok(()) => out.push(ok("netns", format!("{}", ns.display()))),
            Err(e) => {
                out.push(fail(
                    "netns",
                    e.to_string(),
                    "create it (ip netns add NAME) or fix intercept.netns",
                ));
                return out;
            }
        }
    }
    out.extend(identity::checks(&cfg));
    out.extend(evidence::checks(&cfg));
    out.extend(s3::checks(&cfg));
    out.extend(approvals::checks(&cfg));
    if scope == Scope::Preflight {
        out.extend(preflight::state(&cfg));
        let live = pins::read(&cfg.intercept.pin_dir).ok();
        out.extend(preflight::ports(&cfg, live.as_ref()));
    }
    if cfg.intercept.mode == Mode::Listen {
        out.push(ok("mode", "listen: no eBPF steering to check"));
        return out;
    }
    out.push(unprivileged_ports(&cfg));
    out.push(process_capture(&cfg));
    let pin_dir = &cfg.intercept.pin_dir;
    let on_bpffs = bpffs::is_bpffs(pin_dir);
    out.push(bpffs_check(&cfg, scope, on_bpffs));
    if on_bpffs {
        out.push(pins_last(&cfg));
    }
    out.extend(steered::listeners(&cfg));
    if scope == Scope::Preflight || !on_bpffs {
        // Before a start, pins an earlier run left are the fail mode at
        // work, not a problem: only whether the config fits the maps.
        out.extend(maps::checks(&cfg, None));
        return out;
    }
    let state = pins::read(pin_dir);
    out.extend(pinned(&cfg, pin_dir, &state));
    out.extend(maps::checks(&cfg, state.as_ref().ok()));
    out
}

/// Where every key of the config and its default is described, as the
/// package installs it.
pub const EXAMPLE: &str = "/usr/share/mcp-interceptor/config.example.toml";

/// Whether the pin directory is on bpffs. Before a start, bpffs not
/// mounted yet is fine where the agent mounts it itself.
fn bpffs_check(cfg: &Config, scope: Scope, on_bpffs: bool) -> Check {
    let pin_dir = &cfg.intercept.pin_dir;
    if on_bpffs {
        return ok("bpffs", format!("{}", pin_dir.display()));
    }
    let own_mount = bpffs::in_host_mount_ns() && pin_dir.starts_with(bpffs::DEFAULT_MOUNT);
    if scope == Scope::Preflight && own_mount {
        return ok(
            "bpffs",
            format!(
                "not mounted yet; the agent mounts bpffs at {} when it starts",
                bpffs::DEFAULT_MOUNT
            ),
        );
    }
    let hint = if own_mount {
        "mount -t bpf bpf /sys/fs/bpf (the agent does this itself when it starts)"
    } else if bpffs::in_host_mount_ns() {
        "choose an intercept.pin_dir below /sys/fs/bpf, or mount bpffs at the one you chose"
    } else {
        // A bpffs mounted here would be private and die with the agent.
        bpffs::FIX
    };
    fail(
        "bpffs",
        format!("{} is not on a bpf filesystem", pin_dir.display()),
        hint,
    )
}

/// Whether the pins outlive the agent (see `steer::bpffs`).
fn pins_last(cfg: &Config) -> Check {
    match bpffs::lasting(&cfg.intercept.pin_dir) {
        Ok(why) => ok("pins last", why),
        Err(why) => Check {
            name: "pins last",
            status: if cfg.intercept.fail == FailMode::Closed {
                Status::Fail
            } else {
                Status::Warn
            },
            detail: format!("pins would go away with the agent: {why}"),
            hint: Some(bpffs::FIX.into()),
        },
    }
}

fn kernel() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let v = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if v >= (5, 9) {
        ok("kernel", format!("{release} (sk_lookup needs 5.9+)"))
    } else {
        fail(
            "kernel",
            format!("{release:?} is older than 5.9"),
            "use listen mode, or a newer kernel",
        )
    }
}

fn btf() -> Check {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        ok("btf", "/sys/kernel/btf/vmlinux present")
    } else {
        fail(
            "btf",
            "no /sys/kernel/btf/vmlinux",
            "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
    }
}

/// Whether the kernel supports the hook the process capture uses (BTF
/// tracepoint `inet_sock_set_state`) and has every field it reads.
fn process_capture(cfg: &Config) -> Check {
    if !cfg.intercept.process_capture {
        return ok(
            "process capture",
            "off (intercept.process_capture = false): same-host callers carry no process facts",
        );
    }
    match steer::process::supported() {
        Ok(()) => ok(
            "process capture",
            "the kernel's BTF has the inet_sock_set_state tracepoint (tp_btf) and the task, \
             sock, mm and inode fields the capture reads",
        ),
        Err(e) => fail(
            "process capture",
            e.to_string(),
            "the agent will refuse to start; see the fix above",
        ),
    }
}

/// What the agent needs (deploy/systemd/README.md says why each):
/// CAP_PERFMON for the verifier to accept the steering program,
/// CAP_SYS_ADMIN only to enter `intercept.netns`, CAP_CHOWN only for
/// `admin.socket_group`.
fn capabilities(cfg: &Config) -> Check {
    let mut need: Vec<(u32, &str)> = vec![
        (39, "CAP_BPF"),
        (38, "CAP_PERFMON"),
        (12, "CAP_NET_ADMIN"),
        (10, "CAP_NET_BIND_SERVICE"),
    ];
    if cfg.intercept.netns.is_some() {
        need.push((21, "CAP_SYS_ADMIN"));
    }
    if cfg.admin.socket_group.is_some() {
        need.push((0, "CAP_CHOWN"));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = need
        .iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, n)| *n)
        .collect();
    let names: Vec<&str> = need.iter().map(|(_, n)| *n).collect();
    if missing.is_empty() {
        ok("capabilities", names.join(" "))
    } else {
        fail(
            "capabilities",
            format!("missing {}", missing.join(" ")),
            "run as root, or grant them (the unit's CapabilityBoundingSet and AmbientCapabilities: \
             systemctl cat mcp-interceptor)",
        )
    }
}

fn unprivileged_ports(cfg: &Config) -> Check {
    let p = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let start: Option<u32> = std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let end = u32::from(cfg.intercept.bypass_ports.end);
    match start {
        Some(s) if s > end => ok(
            "bypass",
            format!(
                "ports {}-{end} are privileged (unprivileged start {s})",
                cfg.intercept.bypass_ports.start
            ),
        ),
        Some(s) => fail(
            "bypass",
            format!(
                "ip_unprivileged_port_start={s}: unprivileged processes could bind bypass port {end}"
            ),
            format!(
                "sysctl -w net.ipv4.ip_unprivileged_port_start={} or lower intercept.bypass_ports",
                end + 1
            ),
        ),
        None => fail("bypass", format!("cannot read {p}"), "is /proc mounted?"),
    }
}

/// The pinned steering state against the config: program, agent, proxy
/// sockets, rules, fail mode and counters.
fn pinned(
    cfg: &Config,
    pin_dir: &Path,
    state: &Result<pins::State, steer::SteerError>,
) -> Vec<Check> {
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            return vec![fail(
                "program",
                format!("nothing pinned under {} ({e})", pin_dir.display()),
                "start the agent: systemctl start mcp-interceptor (before the first start, \
                 `mcp-interceptor doctor --preflight` checks what a start needs)",
            )];
        }
    };
    let mut out = vec![program(pin_dir, state), agent(state)];
    out.extend(proxy_sockets(cfg, state));
    out.push(rules(cfg, state));
    out.push(fail_mode(cfg, state));
    for c in &state.counters {
        out.push(ok(
            "counters",
            format!(
                "port {}: steered {} dropped {} bypassed {} failed_open {}",
                c.port, c.steered, c.dropped, c.bypassed, c.failed_open
            ),
        ));
    }
    out
}

/// The program's link: without it the maps are pinned but nothing steers.
fn program(pin_dir: &Path, state: &pins::State) -> Check {
    if state.link_pinned {
        ok(
            "program",
            format!("sk_lookup attached, link pinned in {}", pin_dir.display()),
        )
    } else {
        fail(
            "program",
            "maps pinned but no link: steering is off",
            "restart the agent",
        )
    }
}

/// Whether the pid the agent pinned is still running.
fn agent(state: &pins::State) -> Check {
    if state.agent_alive {
        ok("agent", format!("pid {} running", state.agent_pid))
    } else {
        fail(
            "agent",
            format!("not running (last pid {})", state.agent_pid),
            "systemctl start mcp-interceptor; journalctl -u mcp-interceptor says why it stopped",
        )
    }
}

/// One check per address family the proxy listens on: is its socket
/// registered for steering, and if not, what that means under the fail
/// mode.
fn proxy_sockets(cfg: &Config, state: &pins::State) -> Vec<Check> {
    let ports: Vec<u16> = cfg.intercept.ports.iter().map(|r| r.port).collect();
    let consequence = match cfg.intercept.fail {
        FailMode::Closed => format!("connections to {ports:?} are refused (fail closed)"),
        FailMode::Open => {
            format!("connections to {ports:?} reach the servers unprotected (fail open)")
        }
    };
    let listen = &cfg.intercept.proxy_listen;
    [
        (
            listen.iter().any(|a| a.is_ipv4()),
            state.proxy_v4_registered,
            "IPv4",
        ),
        (
            listen.iter().any(|a| a.is_ipv6()),
            state.proxy_v6_registered,
            "IPv6",
        ),
    ]
    .into_iter()
    .filter(|(want, _, _)| *want)
    .map(|(_, registered, fam)| {
        if registered {
            ok("proxy socket", format!("{fam} listener registered"))
        } else {
            fail(
                "proxy socket",
                format!("no {fam} listener registered: {consequence}"),
                "start the agent",
            )
        }
    })
    .collect()
}

/// The kernel's rule table against the rules the config asks for.
fn rules(cfg: &Config, state: &pins::State) -> Check {
    let mut want: Vec<pins::Rule> = steer::desired_keys(&cfg.intercept)
        .into_iter()
        .map(|k| pins::Rule {
            port: k.0.port,
            address: steer::key_addr(&k.0),
        })
        .collect();
    // Both in address order: the key order of `desired_keys` compares
    // address words as integers, which is not address order.
    want.sort_by_key(|r| (r.port, r.address));
    let mut have = state.rules.clone();
    have.sort_by_key(|r| (r.port, r.address));
    if have == want {
        return ok("rules", format!("{} rule(s) match the config", have.len()));
    }
    fail(
        "rules",
        format!(
            "kernel table ({} rule(s)) differs from config ({}): missing {}; extra {}",
            have.len(),
            want.len(),
            sample(want.iter().filter(|r| !have.contains(r))),
            sample(have.iter().filter(|r| !want.contains(r))),
        ),
        "reload the agent: systemctl reload mcp-interceptor (SIGHUP)",
    )
}

/// The kernel's fail mode against the config's.
fn fail_mode(cfg: &Config, state: &pins::State) -> Check {
    let fail_mode = if cfg.intercept.fail == FailMode::Open {
        "open"
    } else {
        "closed"
    };
    if state.fail == fail_mode {
        ok("fail mode", state.fail)
    } else {
        fail(
            "fail mode",
            format!("kernel has {}, config says {fail_mode}", state.fail),
            "reload the agent",
        )
    }
}

/// A few rules and how many in all: a table of a thousand stays readable.
fn sample<'a>(rules: impl Iterator<Item = &'a pins::Rule>) -> String {
    let all: Vec<String> = rules
        .map(|r| match r.address {
            Some(a) => format!("{a} port {}", r.port),
            None => format!("port {}", r.port),
        })
        .collect();
    match all.len() {
        0 => "none".into(),
        n if n <= 5 => all.join(", "),
        n => format!("{} and {} more", all[..5].join(", "), n - 5),
    }
}
