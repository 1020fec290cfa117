//! Kernel steering: load the `sk_lookup` program, pin it, fill its maps.
//!
//! Lifecycle (why the pins): the program, its link and its maps are pinned
//! under `intercept.pin_dir`. While the agent runs, the program hands new
//! connections for configured destinations to the proxy's sockets. When the
//! agent goes away, cleanly or by `kill -9`, the kernel removes the proxy
//! sockets from the SockMap, but the pinned link keeps the program attached,
//! so it keeps applying the fail mode stored in the pinned settings map:
//! closed drops, open passes to the real server. A restarted agent reuses the
//! pinned maps (same rules, same counters), registers its new sockets, then
//! swaps the pinned link: there is no moment in which the port is unguarded.
//! `mcp-interceptor detach` removes the pins, which detaches the program.

pub mod bpffs;
pub mod bypass;
pub mod capacity;
pub mod dests;
pub mod listeners;
pub mod netns;
pub mod pins;
pub mod process;
mod sockmap;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapError, PerCpuHashMap},
    programs::{
        ProgramError, SkLookup,
        links::{FdLink, PinnedLink},
    },
};
use interceptor_common::{
    DestKey, DestRule, FAMILY_V4, FAMILY_V6, MAP_COUNTERS, MAP_PORTS, MAP_SETTINGS, MAP_SOCKETS,
    PROGRAM_NAME, PortCounters, SLOT_V4, SLOT_V6, Settings,
};

use crate::config::{FailMode, Intercept};

/// The object built by `build.rs` from `interceptor-ebpf/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mcpi.bpf.o"));

/// File name of the pinned link inside `pin_dir`.
pub const LINK_PIN: &str = "link";

/// Why eBPF steering could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// The object could not be loaded (verifier, BTF, map creation or reuse).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// Loading or attaching the program failed.
    #[error("sk_lookup program: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("eBPF map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The map error.
        source: MapError,
    },
    /// A map or program the object must contain is not there.
    #[error("the embedded object has no {0}")]
    Missing(&'static str),
    /// Pinning or filesystem work under `pin_dir` failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Entering the configured network namespace failed.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace's path.
        path: PathBuf,
        /// The underlying error.
        source: nix::Error,
    },
    /// With `fail = "closed"`, pins that would not outlive the agent: a
    /// kill -9 would detach the program and leave the ports unguarded.
    #[error(
        "refusing to start with fail = \"closed\": pins under {path} would not outlive the \
         agent ({reason}); after a crash the program would detach and connections would reach \
         the servers directly. Fix: {fix}"
    )]
    PinsWouldNotLast {
        /// The path involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// The process capture program could not be attached.
    #[error("process capture: {0}")]
    Capture(#[from] process::CaptureError),
    /// The config needs more entries in a fixed-size map than it holds;
    /// checked before any write, so the maps were left as they were.
    #[error(
        "the config needs {need} entries in eBPF map {map}, which holds {capacity}; \
         refused, the kernel keeps the rules it had. Fix: {fix}"
    )]
    Capacity {
        /// The map.
        map: &'static str,
        /// Entries needed.
        need: u32,
        /// Entries the map holds.
        capacity: u32,
        /// How to fix it.
        fix: &'static str,
    },
}

impl SteerError {
    fn map(map: &'static str) -> impl FnOnce(MapError) -> SteerError {
        move |source| SteerError::Map { map, source }
    }
}

/// The keys the steering table should hold for a config.
pub fn desired_keys(cfg: &Intercept) -> BTreeSet<KeyOrd> {
    let mut keys = BTreeSet::new();
    for rule in &cfg.ports {
        if rule.addresses.is_empty() {
            keys.insert(KeyOrd(DestKey::any(rule.port)));
        }
        for addr in &rule.addresses {
            keys.insert(KeyOrd(dest_key(*addr, rule.port)));
        }
    }
    keys
}

/// `DestKey` ordered for set arithmetic (the shared type stays minimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOrd(pub DestKey);

impl PartialOrd for KeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let k = |d: &DestKey| (d.port, d.family, d.addr);
        k(&self.0).cmp(&k(&other.0))
    }
}

/// The key for one destination address, laid out as the kernel presents
/// `local_ip4` / `local_ip6` (network byte order words).
pub fn dest_key(addr: IpAddr, port: u16) -> DestKey {
    let mut words = [0u32; 4];
    let family = match addr {
        IpAddr::V4(a) => {
            words[0] = u32::from_ne_bytes(a.octets());
            FAMILY_V4
        }
        IpAddr::V6(a) => {
            for (w, chunk) in words.iter_mut().zip(a.octets().chunks_exact(4)) {
                *w = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
            FAMILY_V6
        }
    };
    DestKey {
        addr: words,
        port,
        family,
        _pad: 0,
    }
}

/// The inverse of [`dest_key`], for display; `None` for a wildcard key.
pub fn key_addr(key: &DestKey) -> Option<IpAddr> {
    match key.family {
        FAMILY_V4 => Some(IpAddr::from(key.addr[0].to_ne_bytes())),
        FAMILY_V6 => {
            let mut o = [0u8; 16];
            for (chunk, w) in o.chunks_exact_mut(4).zip(key.addr) {
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}

/// The settings record for a config.
pub fn settings_for(cfg: &Intercept) -> Settings {
    Settings {
        fail_open: u32::from(cfg.fail == FailMode::Open),
        bypass_port_lo: cfg.bypass_ports.start,
        bypass_port_hi: cfg.bypass_ports.end,
        agent_pid: std::process::id(),
        _pad: 0,
    }
}

/// The loaded, attached and pinned program with its maps.
pub struct Steering {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Steering {
    /// Loads the program (reusing pinned maps), writes settings and rules,
    /// registers the proxy sockets, then attaches and pins a new link in the
    /// current network namespace, replacing any earlier pinned link only
    /// after the new one is live.
    pub fn attach(
        cfg: &Intercept,
        v4: Option<&impl AsRawFd>,
        v6: Option<&impl AsRawFd>,
    ) -> Result<Self, SteerError> {
        bpffs::ensure(&cfg.pin_dir)?;
        check_lasting(cfg)?;
        let pin_dir = cfg.pin_dir.clone();
        std::fs::create_dir_all(&pin_dir).map_err(|source| SteerError::Io {
            what: "creating",
            path: pin_dir.clone(),
            source,
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(OBJECT)?;
        // Kept alive past `load()`: the log ring buffer must stay open.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "eBPF log bridge unavailable");
                None
            }
        };
        let mut this = Self { ebpf, pin_dir };
        this.apply(cfg)?;
        this.register(SLOT_V4, v4)?;
        this.register(SLOT_V6, v6)?;
        if cfg.process_capture {
            // Before the link goes live: a steered connection accepted
            // after start-up always had its opener recorded.
            process::attach(&mut this.ebpf)?;
            tracing::info!("process capture attached (tp_btf inet_sock_set_state)");
        }

        let prog: &mut SkLookup = this
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(SteerError::Missing("program"))?
            .try_into()?;
        prog.load()?;
        let netns_path = Path::new("/proc/self/ns/net");
        let netns = std::fs::File::open(netns_path).map_err(|source| SteerError::Io {
            what: "opening",
            path: netns_path.into(),
            source,
        })?;
        let link_id = prog.attach(&netns)?;
        let link: FdLink = prog.take_link(link_id)?.into();

        let link_path = this.pin_dir.join(LINK_PIN);
        // Hold the old link by fd while its pin is replaced: it stays
        // attached until the new one is pinned, then detaches on drop.
        let old = match PinnedLink::from_pin(&link_path) {
            Ok(old) => Some(old.unpin().map_err(|source| SteerError::Io {
                what: "unpinning",
                path: link_path.clone(),
                source,
            })?),
            Err(_) => None,
        };
        link.pin(&link_path).map_err(|e| SteerError::Io {
            what: "pinning",
            path: link_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        drop(old);
        if let Some(logger) = logger {
            spawn_log_bridge(logger);
        }
        Ok(this)
    }

    /// Writes settings and rules for `cfg` (also used on reload): the
    /// program reads them on its next lookup, no reload needed. A config
    /// that does not fit the maps is refused before anything is written.
    pub fn apply(&mut self, cfg: &Intercept) -> Result<(), SteerError> {
        capacity::check(cfg, |map| capacity::pinned(&self.pin_dir, map))?;
        let settings = settings_for(cfg);
        let mut arr: Array<_, Settings> = Array::try_from(
            self.ebpf
                .map_mut(MAP_SETTINGS)
                .ok_or(SteerError::Missing(MAP_SETTINGS))?,
        )
        .map_err(SteerError::map(MAP_SETTINGS))?;
        arr.set(0, settings, 0)
            .map_err(SteerError::map(MAP_SETTINGS))?;

        let want = desired_keys(cfg);
        let mut ports: HashMap<_, DestKey, DestRule> = HashMap::try_from(
            self.ebpf
                .map_mut(MAP_PORTS)
                .ok_or(SteerError::Missing(MAP_PORTS))?,
        )
        .map_err(SteerError::map(MAP_PORTS))?;
        let have: BTreeSet<KeyOrd> = ports.keys().filter_map(Result::ok).map(KeyOrd).collect();
        for stale in have.difference(&want) {
            ports.remove(&stale.0).map_err(SteerError::map(MAP_PORTS))?;
        }
        for new in want.difference(&have) {
            ports
                .insert(new.0, DestRule::default(), 0)
                .map_err(SteerError::map(MAP_PORTS))?;
        }

        let wanted_ports: BTreeSet<u32> = want.iter().map(|k| u32::from(k.0.port)).collect();
        let mut counters: PerCpuHashMap<_, u32, PortCounters> = PerCpuHashMap::try_from(
            self.ebpf
                .map_mut(MAP_COUNTERS)
                .ok_or(SteerError::Missing(MAP_COUNTERS))?,
        )
        .map_err(SteerError::map(MAP_COUNTERS))?;
        let counted: BTreeSet<u32> = counters.keys().filter_map(Result::ok).collect();
        for gone in counted.difference(&wanted_ports) {
            counters
                .remove(gone)
                .map_err(SteerError::map(MAP_COUNTERS))?;
        }
        for port in wanted_ports.difference(&counted) {
            let zero = vec![PortCounters::default(); aya::util::nr_cpus().unwrap_or(1)];
            let values = aya::maps::PerCpuValues::try_from(zero).map_err(|e| SteerError::Map {
                map: MAP_COUNTERS,
                source: MapError::from(e),
            })?;
            counters
                .insert(port, values, 0)
                .map_err(SteerError::map(MAP_COUNTERS))?;
        }
        tracing::info!(
            rules = want.len(),
            fail = ?cfg.fail,
            bypass = %format!("{}-{}", cfg.bypass_ports.start, cfg.bypass_ports.end),
            "steering rules applied"
        );
        listeners::warn_uncovered(cfg);
        dests::learn(cfg);
        // Off on reload stops recording; on again needs the programs
        // attached at start.
        process::set_enabled(cfg.process_capture);
        Ok(())
    }

    fn register(&mut self, slot: u32, sock: Option<&impl AsRawFd>) -> Result<(), SteerError> {
        // No socket for a family: a slot left by an earlier agent pointed at
        // a socket that closed with it, and the kernel already emptied it.
        let Some(sock) = sock else { return Ok(()) };
        let map = self
            .ebpf
            .map(MAP_SOCKETS)
            .and_then(sockmap::data)
            .ok_or(SteerError::Missing(MAP_SOCKETS))?;
        sockmap::set(map, slot, sock.as_raw_fd()).map_err(|source| SteerError::Io {
            what: "registering the proxy socket in",
            path: MAP_SOCKETS.into(),
            source,
        })
    }

    /// Summed counters per port, for logs and tests.
    pub fn counters(&self) -> Result<Vec<(u16, PortCounters)>, SteerError> {
        pins::read_counters(
            self.ebpf
                .map(MAP_COUNTERS)
                .ok_or(SteerError::Missing(MAP_COUNTERS))?,
        )
    }

    /// The bpffs directory the maps and links are pinned in.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
}

/// Refuses (fail closed) or warns (fail open) when the pins would go
/// away with the agent.
fn check_lasting(cfg: &Intercept) -> Result<(), SteerError> {
    match bpffs::lasting(&cfg.pin_dir) {
        Ok(why) => {
            tracing::info!(pin_dir = %cfg.pin_dir.display(), "pins outlive the agent: {why}");
            Ok(())
        }
        Err(reason) if cfg.fail == FailMode::Closed => Err(SteerError::PinsWouldNotLast {
            path: cfg.pin_dir.clone(),
            reason,
            fix: bpffs::FIX,
        }),
        Err(reason) => {
            tracing::warn!(
                pin_dir = %cfg.pin_dir.display(),
                "pins will not outlive the agent ({reason}); with fail = \"open\" the servers \
                 are reached directly after a crash anyway. Fix: {}",
                bpffs::FIX
            );
            Ok(())
        }
    }
}

/// Forwards aya-log records (the `log` crate) into tracing.
fn spawn_log_bridge(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns the ring buffer's fd, which stays open and
    // unchanged for as long as the AsyncFd (which owns the logger) lives.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "eBPF log bridge unavailable");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "eBPF log bridge stopped");
                    return;
                }
            }
        }
    });
}

/// Removes every pin under `pin_dir`: the program detaches, the maps go
/// when nothing else holds them. Returns what was removed.
pub fn detach(pin_dir: &Path) -> Result<Vec<PathBuf>, SteerError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(pin_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(source) => {
            return Err(SteerError::Io {
                what: "reading",
                path: pin_dir.into(),
                source,
            });
        }
    };
    // The link first: once it is gone the program no longer runs, so the
    // maps can go in any order.
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort_by_key(|p| p.file_name() != Some(std::ffi::OsStr::new(LINK_PIN)));
    for p in paths {
        std::fs::remove_file(&p).map_err(|source| SteerError::Io {
            what: "removing",
            path: p.clone(),
            source,
        })?;
        removed.push(p);
    }
    std::fs::remove_dir(pin_dir).map_err(|source| SteerError::Io {
        what: "removing",
        path: pin_dir.into(),
        source,
    })?;
    Ok(removed)
}

#[cfg(test)]
mod tests;
