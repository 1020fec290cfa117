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

fn open(pin_dir: &Path, name: &'static str) -> Result<MapData, SteerError> {
    MapData::from_pin(pin_dir.join(name)).map_err(|source| SteerError::Map { map: name, source })
}

/// Reads the pinned state under `pin_dir`. Fails when nothing is pinned.
pub fn read(pin_dir: &Path) -> Result<State, SteerError> {
    let settings_map = Map::Array(open(pin_dir, MAP_SETTINGS)?);
    let settings: Settings = Array::<_, Settings>::try_from(&settings_map)
        .and_then(|a| a.get(&0, 0))
        .map_err(|source| SteerError::Map {
            map: MAP_SETTINGS,
            source,
        })?;
    let ports_data = open(pin_dir, MAP_PORTS)?;
    let ports_cap = capacity(&ports_data, MAP_PORTS)?;
    let ports_map = Map::HashMap(ports_data);
    let ports: HashMap<_, DestKey, DestRule> =
        HashMap::try_from(&ports_map).map_err(|source| SteerError::Map {
            map: MAP_PORTS,
            source,
        })?;
    let mut rules: Vec<Rule> = ports
        .keys()
        .filter_map(Result::ok)
        .map(|k| Rule {
            port: k.port,
            address: key_addr(&k),
        })
        .collect();
    rules.sort_by_key(|r| (r.port, r.address));
    let counters_data = open(pin_dir, MAP_COUNTERS)?;
    let counters_cap = capacity(&counters_data, MAP_COUNTERS)?;
    let counters: Vec<Counters> = read_counters(&Map::PerCpuHashMap(counters_data))?
        .into_iter()
        .map(|(port, c)| Counters {
            port,
            steered: c.steered,
            dropped: c.dropped,
            bypassed: c.bypassed,
            failed_open: c.failed_open,
        })
        .collect();
    let socks = open(pin_dir, MAP_SOCKETS)?;
    let socks_cap = capacity(&socks, MAP_SOCKETS)?;
    let occupied = |slot| {
        sockmap::occupied(&socks, slot).map_err(|source| SteerError::Io {
            what: "looking up",
            path: pin_dir.join(MAP_SOCKETS),
            source,
        })
    };
    let agent_alive = agent_alive(settings.agent_pid);
    let (link_id, program_id) = PinnedLink::from_pin(pin_dir.join(LINK_PIN))
        .ok()
        .map(FdLink::from)
        .and_then(|l| l.info().ok())
        .map_or((0, 0), |i| (i.id(), i.program_id()));
    let (v4, v6) = (occupied(SLOT_V4)?, occupied(SLOT_V6)?);
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
        agent_alive,
        proxy_v4_registered: v4,
        proxy_v6_registered: v6,
        rules,
        counters,
        maps,
        errors: read_errors(pin_dir)?,
    })
}

fn capacity(map: &MapData, name: &'static str) -> Result<u32, SteerError> {
    map.info()
        .map(|i| i.max_entries())
        .map_err(|source| SteerError::Map { map: name, source })
}

/// The program's error counts summed over CPUs; `None` if not pinned.
fn read_errors(pin_dir: &Path) -> Result<Option<KernelErrors>, SteerError> {
    let data = match MapData::from_pin(pin_dir.join(MAP_ERRORS)) {
        Ok(d) => d,
        // Only a missing pin means "not there"; anything else is an error.
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(source) => {
            return Err(SteerError::Map {
                map: MAP_ERRORS,
                source,
            });
        }
    };
    let err = |source| SteerError::Map {
        map: MAP_ERRORS,
        source,
    };
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
    let err = |source| SteerError::Map {
        map: MAP_COUNTERS,
        source,
    };
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
