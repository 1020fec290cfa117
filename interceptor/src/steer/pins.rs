//! Read-only view of the pinned maps, for `doctor` and `status`, which run
//! as separate processes while (or after) the agent runs.

use std::path::{Path, PathBuf};

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuHashMap},
    programs::links::{FdLink, PinnedLink},
};
use interceptor_common::{
    DestKey, DestRule, MAP_COUNTERS, MAP_PORTS, MAP_SETTINGS, MAP_SOCKETS, PortCounters, SLOT_V4,
    SLOT_V6, Settings,
};
use serde::Serialize;

use super::{LINK_PIN, SteerError, key_addr, sockmap};

/// Everything `status` reports, in a form tests and operators can parse.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub pin_dir: PathBuf,
    pub link_pinned: bool,
    /// Kernel id of the attached program (0: no link): unchanged across
    /// reloads, which only touch the maps.
    pub program_id: u32,
    pub link_id: u32,
    pub fail: &'static str,
    pub bypass_ports: (u16, u16),
    pub agent_pid: u32,
    pub agent_alive: bool,
    pub proxy_v4_registered: bool,
    pub proxy_v6_registered: bool,
    pub rules: Vec<Rule>,
    pub counters: Vec<Counters>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rule {
    pub port: u16,
    /// `None`: any destination address.
    pub address: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub port: u16,
    pub steered: u64,
    pub dropped: u64,
    pub bypassed: u64,
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
    let ports_map = Map::HashMap(open(pin_dir, MAP_PORTS)?);
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
    let counters = read_counters(&Map::PerCpuHashMap(open(pin_dir, MAP_COUNTERS)?))?
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
        proxy_v4_registered: occupied(SLOT_V4)?,
        proxy_v6_registered: occupied(SLOT_V6)?,
        rules,
        counters,
    })
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
