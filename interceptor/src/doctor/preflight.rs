//! Checks only `doctor --preflight` runs: what a start needs that a
//! running agent would already hold. The addresses the agent binds must be
//! free (a second agent, or a server moved onto the proxy's port, stops a
//! start), and the places it writes must be writable.

use std::{
    collections::BTreeSet,
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
};

use nix::unistd::{AccessFlags, access};

use super::{Check, fail, ok, warn};
use crate::{
    config::{Config, Mode},
    steer::pins::State,
};

/// Where the shipped unit lets the agent keep state (`StateDirectory=`,
/// `LogsDirectory=`, `RuntimeDirectory=`, `ReadWritePaths=`); anything
/// else is read-only under `ProtectSystem=strict`, and /tmp is private to
/// the unit (`PrivateTmp=`) and gone at its stop.
const UNIT_WRITABLE: &[&str] = &[
    "/var/lib/mcp-interceptor",
    "/var/log/mcp-interceptor",
    "/run/mcp-interceptor",
    "/sys/fs/bpf",
];

/// One check per directory the agent writes to: it exists and is
/// writable, or the agent can create it.
pub fn state(cfg: &Config) -> Vec<Check> {
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let parent = |p: &Path| p.parent().map(Path::to_path_buf);
    if cfg.audit.enabled {
        dirs.insert(cfg.audit.dir.clone());
        dirs.extend(parent(&cfg.audit.signing_key));
    }
    dirs.extend(parent(&cfg.pins_path()));
    dirs.extend(parent(&cfg.approvals_db_path()));
    dirs.extend(parent(&cfg.admin.socket));
    if let Some(j) = &cfg.events.jsonl {
        dirs.extend(parent(j));
    }
    dirs.iter().map(|d| writable(d)).collect()
}

/// Whether the agent (root, under the shipped unit) can write in `dir`.
fn writable(dir: &Path) -> Check {
    let Some(at) = dir.ancestors().find(|p| p.exists()) else {
        return fail(
            "state dir",
            format!("{}: no ancestor exists", dir.display()),
            "fix the path",
        );
    };
    let what = if at == dir {
        format!("{} is writable", dir.display())
    } else {
        format!("{} will be created in {}", dir.display(), at.display())
    };
    if let Err(e) = access(at, AccessFlags::W_OK) {
        return fail(
            "state dir",
            format!("{} is not writable: {e}", at.display()),
            format!(
                "make {} writable by root (a read-only mount?), or point the config elsewhere",
                at.display()
            ),
        );
    }
    if !UNIT_WRITABLE.iter().any(|w| dir.starts_with(w)) {
        return warn(
            "state dir",
            format!(
                "{what}, but under the shipped unit it is read-only (ProtectSystem=strict) \
                 or private (PrivateTmp=)"
            ),
            format!(
                "keep state under /var/lib/mcp-interceptor, or add ReadWritePaths={} with \
                 `systemctl edit mcp-interceptor`",
                dir.display()
            ),
        );
    }
    ok("state dir", what)
}

/// The addresses the agent binds at start, and the config key each comes
/// from.
fn binds(cfg: &Config) -> Vec<(SocketAddr, &'static str)> {
    let mut out = Vec::new();
    match cfg.intercept.mode {
        Mode::Ebpf => out.extend(
            cfg.intercept
                .proxy_listen
                .iter()
                .map(|a| (*a, "intercept.proxy_listen")),
        ),
        Mode::Listen => {
            for r in &cfg.intercept.ports {
                if r.listen.is_empty() {
                    let any = SocketAddr::from(([0, 0, 0, 0], r.port));
                    out.push((any, "intercept.ports.listen"));
                }
                out.extend(r.listen.iter().map(|a| (*a, "intercept.ports.listen")));
            }
        }
    }
    if let Some(a) = cfg.admin.listen {
        out.push((a, "admin.listen"));
    }
    out
}

/// One check per address the agent binds: free now (tried with a bind,
/// in the agent's network namespace, which doctor has entered).
pub fn ports(cfg: &Config, live: Option<&State>) -> Vec<Check> {
    binds(cfg)
        .into_iter()
        .map(|(addr, key)| match TcpListener::bind(addr) {
            Ok(_) => ok("port", format!("{addr} ({key}) is free")),
            Err(e) if e.kind() == ErrorKind::AddrInUse => match live.filter(|s| s.agent_alive) {
                Some(s) => warn(
                    "port",
                    format!("{addr} ({key}) is in use while the agent runs (pid {})", s.agent_pid),
                    "the agent holds it while it runs; stop it to test a start",
                ),
                None => fail(
                    "port",
                    format!("{addr} ({key}) is in use: the agent could not start"),
                    format!(
                        "stop what listens there (ss -ltnp 'sport = :{}' names it), or change {key}",
                        addr.port()
                    ),
                ),
            },
            Err(e) if e.kind() == ErrorKind::PermissionDenied => warn(
                "port",
                format!("{addr} ({key}) not tested: {e}"),
                "run doctor as root (the agent has CAP_NET_BIND_SERVICE)",
            ),
            Err(e) => fail(
                "port",
                format!("{addr} ({key}) cannot be bound: {e}"),
                format!("use an address this host (or intercept.netns) has, in {key}"),
            ),
        })
        .collect()
}
