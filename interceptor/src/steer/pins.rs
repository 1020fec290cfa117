//! Read-only view of the pinned maps, for `doctor` and `status`, which run
//! as separate processes while (or after) the agent runs.

use std::path::{Path, PathBuf};

use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap},
    programs::links::{FdLink, PinnedLink},
};
use interceptor_common::{
    DestKey, DestRule, ERR_ASSIGN, ERR_COUNTERS_FULL, MAP_COUNTERS, MAP_ERRORS, MAP_PORTS,
    MAP_SETTINGS, MAP_SOCKETS, PortCounters, SLOT_V4, SLOT_V6, Settings,
};
use serde::Serialize;

use super::{LINK_PIN, SteerError, capacity::Usage, key_addr, sockmap};

/// Everything `status` reports, in a form tests and operators can parse.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    /// The bpffs pin directory.
    pub pin_dir: PathBuf,
    /// Whether the program link is pinned.
    pub link_pinned: bool,
    /// Kernel id of the attached program (0: no link): unchanged across
    /// reloads, which only touch the maps.
    pub program_id: u32,
    /// The link's id.
    pub link_id: u32,
    /// The fail mode in force.
    pub fail: &'static str,
    /// The local ports of the agent's own upstream sockets, which steering lets
    /// through (first, last).
    pub bypass_ports: (u16, u16),
    /// The agent's process id.
    pub agent_pid: u32,
    /// Whether the agent is alive.
    pub agent_alive: bool,
    /// Whether the IPv4 proxy socket is registered.
    pub proxy_v4_registered: bool,
    /// Whether the IPv6 proxy socket is registered.
    pub proxy_v6_registered: bool,
    /// The steered port rules.
    pub rules: Vec<Rule>,
    /// Per-port counters.
    pub counters: Vec<Counters>,
    /// Entries in use against capacity, per map that has a fixed size.
    pub maps: Vec<Usage>,
    /// `None`: no `MCPI_ERRORS` pinned (maps left by an older agent).
    pub errors: Option<KernelErrors>,
}

/// Failures the program counted (since the maps were created).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct KernelErrors {
    /// Connections dropped because the kernel refused the registered proxy
    /// socket.
    pub assign_refused: u64,
    /// Connection outcomes not counted per port: `MCPI_COUNTERS` was full.
    pub counters_full: u64,
}

/// A steered port.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rule {
    /// The port.
    pub port: u16,
    /// `None`: any destination address.
    pub address: Option<std::net::IpAddr>,
}

/// Per-port steering counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// The port.
    pub port: u16,
    /// Connections steered to the proxy.
    pub steered: u64,
    /// Connections dropped (agent down, fail closed).
    pub dropped: u64,
    /// Connections let through (bypass).
    pub bypassed: u64,
    /// Connections let through because the agent was down (fail open).
    pub failed_open: u64,
}

/// The error of reading pinned map `map`.
fn map_err(map: &'static str) -> impl Fn(MapError) -> SteerError + Copy {
    move |source| SteerError::Map { map, source }
}

/// Opens the map pinned as `name` under `pin_dir`.
fn open(pin_dir: &Path, name: &'static str) -> Result<MapData, SteerError> {
    MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))
}

/// A map's capacity (its `max_entries`).
fn capacity(map: &MapData, name: &'static str) -> Result<u32, SteerError> {
    map.info().map(|i| i.max_entries()).map_err(map_err(name))
}

/// Reads the pinned state under `pin_dir`. Fails when nothing is pinned.
pub fn read(pin_dir: &Path) -> Result<State, SteerError> {
    let settings = read_settings(pin_dir)?;
    let (rules, ports_cap) = read_rules(pin_dir)?;
    let (counters, counters_cap) = read_port_counters(pin_dir)?;
    let ((v4, v6), socks_cap) = read_proxy_sockets(pin_dir)?;
    let (link_id, program_id) = link_ids(pin_dir);
    let usage = |map, entries: usize, capacity| Usage {
        map,
        entries: entries as u32,
        capacity,
    };
    let maps = vec![
        usage(MAP_PORTS, rules.len(), ports_cap),
        usage(MAP_COUNTERS, counters.len(), counters_cap),
        usage(MAP_SOCKETS, usize::from(v4) + usize::from(v6), socks_cap),
    ];
    Ok(State {
        pin_dir: pin_dir.to_path_buf(),
        link_pinned: link_id != 0,
        program_id,
        link_id,
        fail: if settings.fail_open != 0 {
            "open"
        } else {
            "closed"
        },
        bypass_ports: (settings.bypass_port_lo, settings.bypass_port_hi),
        agent_pid: settings.agent_pid,
        agent_alive: agent_alive(settings.agent_pid),
        proxy_v4_registered: v4,
        proxy_v6_registered: v6,
        rules,
        counters,
        maps,
        errors: read_errors(pin_dir)?,
    })
}

/// The settings the agent wrote (`MCPI_SETTINGS`).
fn read_settings(pin_dir: &Path) -> Result<Settings, SteerError> {
    let map = Map::Array(open(pin_dir, MAP_SETTINGS)?);
    Array::<_, Settings>::try_from(&map)
        .and_then(|a| a.get(&0, 0))
        .map_err(map_err(MAP_SETTINGS))
}

/// The steered port rules, sorted, and the map's capacity.
fn read_rules(pin_dir: &Path) -> Result<(Vec<Rule>, u32), SteerError> {
    let data = open(pin_dir, MAP_PORTS)?;
    let cap = capacity(&data, MAP_PORTS)?;
    let map = Map::HashMap(data);
    let ports: HashMap<_, DestKey, DestRule> =
        HashMap::try_from(&map).map_err(map_err(MAP_PORTS))?;
    let mut rules: Vec<Rule> = ports
        .keys()
        .filter_map(Result::ok)
        .map(|k| Rule {
            port: k.port,
            address: key_addr(&k),
        })
        .collect();
    rules.sort_by_key(|r| (r.port, r.address));
    Ok((rules, cap))
}

/// The per-port counters, and the map's capacity.
fn read_port_counters(pin_dir: &Path) -> Result<(Vec<Counters>, u32), SteerError> {
    let data = open(pin_dir, MAP_COUNTERS)?;
    let cap = capacity(&data, MAP_COUNTERS)?;
    let counters = read_counters(&Map::PerCpuHashMap(data))?
        .into_iter()
        .map(|(port, c)| Counters {
            port,
            steered: c.steered,
            dropped: c.dropped,
            bypassed: c.bypassed,
            failed_open: c.failed_open,
        })
        .collect();
    Ok((counters, cap))
}

/// Whether the IPv4 and IPv6 proxy sockets are registered, and the
/// socket map's capacity.
fn read_proxy_sockets(pin_dir: &Path) -> Result<((bool, bool), u32), SteerError> {
    let socks = open(pin_dir, MAP_SOCKETS)?;
    let cap = capacity(&socks, MAP_SOCKETS)?;
    let occupied = |slot| {
        sockmap::occupied(&socks, slot).map_err(|source| SteerError::Io {
            what: "looking up",
            path: pin_dir.join(MAP_SOCKETS),
            source,
        })
    };
    Ok(((occupied(SLOT_V4)?, occupied(SLOT_V6)?), cap))
}

/// The pinned link's id and its program's; `(0, 0)` without a link.
fn link_ids(pin_dir: &Path) -> (u32, u32) {
    PinnedLink::from_pin(pin_dir.join(LINK_PIN))
        .ok()
        .map(FdLink::from)
        .and_then(|l| l.info().ok())
        .map_or((0, 0), |i| (i.id(), i.program_id()))
}

/// The program's error counts summed over CPUs; `None` if not pinned.
fn read_errors(pin_dir: &Path) -> Result<Option<KernelErrors>, SteerError> {
    let data = match MapData::from_pin(pin_dir.join(MAP_ERRORS)) {
        Ok(d) => d,
        // Only a missing pin means "not there"; anything else is an error.
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(source) => return Err(map_err(MAP_ERRORS)(source)),
    };
    let err = map_err(MAP_ERRORS);
    let map = Map::PerCpuArray(data);
    let errors: PerCpuArray<_, u64> = PerCpuArray::try_from(&map).map_err(err)?;
    let sum =
        |slot| -> Result<u64, SteerError> { Ok(errors.get(&slot, 0).map_err(err)?.iter().sum()) };
    Ok(Some(KernelErrors {
        assign_refused: sum(ERR_ASSIGN)?,
        counters_full: sum(ERR_COUNTERS_FULL)?,
    }))
}

/// Per-port counters summed over CPUs, sorted by port.
pub fn read_counters(map: &Map) -> Result<Vec<(u16, PortCounters)>, SteerError> {
    let err = map_err(MAP_COUNTERS);
    let counters: PerCpuHashMap<_, u32, PortCounters> =
        PerCpuHashMap::try_from(map).map_err(err)?;
    let mut out = Vec::new();
    for item in counters.iter() {
        let (port, per_cpu) = item.map_err(err)?;
        let mut total = PortCounters::default();
        for c in per_cpu.iter() {
            total.add(c);
        }
        out.push((port as u16, total));
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}

/// Whether `pid` is a live (not zombie) mcp-interceptor process; a recycled
/// pid running something else does not count.
fn agent_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Fields after the parenthesised comm: the first is the state letter.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    let comm = stat
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(')'))
        .map(|(c, _)| c);
    !matches!(state, None | Some('Z') | Some('X'))
        && comm.is_some_and(|c| "mcp-interceptor".starts_with(c) && c.len() >= 4)
}
