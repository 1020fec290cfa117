//! The fixed-size maps: what a config needs of each, what each holds, and
//! the refusal when a config needs more than fits.
//!
//! The kernel sizes a map once, when it is created (`max_entries`), and a
//! pinned map keeps that size across agent restarts and upgrades: the
//! capacity that counts is the pinned map's, read from the kernel, not the
//! constant this build creates maps with. Inserting into a full hash map
//! fails (E2BIG) after the entries before it went in, so the agent checks
//! the whole config against the capacities *before* it writes anything: a
//! config that does not fit is refused whole, at start and on reload, and
//! the kernel keeps steering the previous rules, never a part of the new.
//!
//! Maps with fixed slots (`MCPI_SOCKETS`: one IPv4 and one IPv6 listener;
//! `MCPI_SETTINGS`: one record; `MCPI_ERRORS`: one count per kind) cannot
//! fill up; the steering table and the per-port counters can.

use std::{collections::BTreeSet, path::Path};

use aya::maps::MapInfo;
use interceptor_common::{MAP_COUNTERS, MAP_PORTS, MAX_RULES};
use serde::Serialize;

use super::{SteerError, desired_keys};
use crate::config::Intercept;

/// Entries in use and room of one pinned map.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// The map.
    pub map: &'static str,
    /// Entries in use.
    pub entries: u32,
    /// Entries the map holds.
    pub capacity: u32,
}

impl Usage {
    /// Whether the map is full.
    pub fn full(&self) -> bool {
        self.entries >= self.capacity
    }
}

/// Entries `cfg` needs in each map that can fill up: one steering rule per
/// (port, address) pair, or one per port without addresses; one counter
/// entry per distinct port.
pub fn needs(cfg: &Intercept) -> [(&'static str, u32); 2] {
    let keys = desired_keys(cfg);
    let ports: BTreeSet<u16> = keys.iter().map(|k| k.0.port).collect();
    [
        (MAP_PORTS, keys.len() as u32),
        (MAP_COUNTERS, ports.len() as u32),
    ]
}

/// The capacity this build creates both fillable maps with: what applies
/// before anything is pinned.
pub const COMPILED: u32 = MAX_RULES;

/// The capacity of the map pinned as `name` under `pin_dir`.
pub fn pinned(pin_dir: &Path, name: &'static str) -> Result<u32, SteerError> {
    MapInfo::from_pin(pin_dir.join(name))
        .map(|i| i.max_entries())
        .map_err(SteerError::map(name))
}

/// Refuses `cfg` if any map cannot hold what it needs.
pub fn check(
    cfg: &Intercept,
    capacity: impl Fn(&'static str) -> Result<u32, SteerError>,
) -> Result<(), SteerError> {
    for (map, need) in needs(cfg) {
        let capacity = capacity(map)?;
        if need > capacity {
            return Err(SteerError::Capacity {
                map,
                need,
                capacity,
                fix: fix(map),
            });
        }
    }
    Ok(())
}

/// What to do when a config needs more entries of `map` than it holds.
pub fn fix(map: &str) -> &'static str {
    if map == MAP_PORTS {
        "each [[intercept.ports]] rule takes one entry per address in `addresses` \
         (one in all without `addresses`): list fewer addresses, or drop `addresses` \
         to steer the port on every address"
    } else {
        "each steered port takes one entry: steer fewer ports on this host"
    }
}
