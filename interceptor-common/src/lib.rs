//! Types shared by the `sk_lookup` program (kernel) and the agent (user space).
//!
//! Every map key and value is `#[repr(C)]`, `Copy`, with padding written out
//! as fields so both compilers agree on the layout byte for byte; the size
//! checks at the bottom fail the build of either side if a field moves.
//! Map names are constants here so the loader and `doctor` cannot drift from
//! the program. Kernel object names are at most 15 bytes.
#![no_std]

/// Steering table: which destinations go to the proxy. `DestKey -> DestRule`.
pub const MAP_PORTS: &str = "MCPI_PORTS";
/// The proxy's listening sockets: slot [`SLOT_V4`] and [`SLOT_V6`].
pub const MAP_SOCKETS: &str = "MCPI_SOCKETS";
/// Per-port counters, per CPU: `u32 port -> PortCounters`.
pub const MAP_COUNTERS: &str = "MCPI_COUNTERS";
/// One [`Settings`] record at index 0.
pub const MAP_SETTINGS: &str = "MCPI_SETTINGS";
/// Kernel-side failures, per CPU: `u32` index ([`ERR_ASSIGN`],
/// [`ERR_COUNTERS_FULL`]) `-> u64` count. Pinned, so counts outlive agents.
pub const MAP_ERRORS: &str = "MCPI_ERRORS";
/// Name of the program in the object file.
pub const PROGRAM_NAME: &str = "mcpi_steer";

/// SockMap slot of the IPv4 proxy listener.
pub const SLOT_V4: u32 = 0;
/// SockMap slot of the IPv6 proxy listener.
pub const SLOT_V6: u32 = 1;

/// Capacity of the steering table and of the counters map, as this build
/// creates them. A pinned map keeps the size it was created with, so user
/// space reads the real capacity from the kernel, not from here.
pub const MAX_RULES: u32 = 1024;

/// A registered proxy socket that `bpf_sk_assign` refused (wrong state,
/// protocol or family): the connection was dropped whatever the fail mode,
/// since the agent is up and only a broken setup gets here.
pub const ERR_ASSIGN: u32 = 0;
/// A steered port with no counter entry that could not get one because
/// `MCPI_COUNTERS` is full: that connection's outcome went uncounted.
pub const ERR_COUNTERS_FULL: u32 = 1;
/// Number of slots in `MCPI_ERRORS`.
pub const ERR_SLOTS: u32 = 2;

/// `DestKey::family` for a rule that matches every destination address.
pub const FAMILY_ANY: u8 = 0;
/// `DestKey::family` for an IPv4 address rule.
pub const FAMILY_V4: u8 = 4;
/// `DestKey::family` for an IPv6 address rule.
pub const FAMILY_V6: u8 = 6;

/// A steered destination. The program looks up the exact (family, address,
/// port) first and then the wildcard (`FAMILY_ANY`, zero address, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestKey {
    /// Address words exactly as `bpf_sk_lookup.local_ip4/local_ip6` hold
    /// them (network byte order); IPv4 uses word 0, the rest stay zero.
    pub addr: [u32; 4],
    /// Destination port, host byte order.
    pub port: u16,
    /// [`FAMILY_ANY`], [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    pub _pad: u8,
}

impl DestKey {
    pub const fn any(port: u16) -> Self {
        Self {
            addr: [0; 4],
            port,
            family: FAMILY_ANY,
            _pad: 0,
        }
    }
}

/// What to do with a matching destination. Reserved flags keep the value
/// extensible without a map layout change.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DestRule {
    pub flags: u32,
}

/// Per-port connection counters (one copy per CPU; user space sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// New connections handed to the proxy socket.
    pub steered: u64,
    /// New connections refused because no proxy socket was registered and
    /// the fail mode is closed.
    pub dropped: u64,
    /// New connections that came from the agent's own upstream bypass.
    pub bypassed: u64,
    /// New connections passed to the real server because no proxy socket
    /// was registered and the fail mode is open.
    pub failed_open: u64,
}

impl PortCounters {
    pub fn add(&mut self, other: &PortCounters) {
        self.steered += other.steered;
        self.dropped += other.dropped;
        self.bypassed += other.bypassed;
        self.failed_open += other.failed_open;
    }
}

/// Global settings, written by the agent, read by the program on every
/// lookup, and kept in a pinned map so they outlive the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Non-zero: pass connections to the real server when no proxy socket
    /// is registered. Zero (the default): drop them (fail closed).
    pub fail_open: u32,
    /// Inclusive source-port range of the agent's upstream connections.
    /// Only honoured when the source address equals the destination address,
    /// which a remote peer cannot complete a handshake with.
    pub bypass_port_lo: u16,
    pub bypass_port_hi: u16,
    /// PID of the agent that last wrote the settings (for `doctor`).
    pub agent_pid: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<DestKey>() == 20);
const _: () = assert!(core::mem::size_of::<DestRule>() == 4);
const _: () = assert!(core::mem::size_of::<PortCounters>() == 32);
const _: () = assert!(core::mem::size_of::<Settings>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is repr(C), Copy, with explicit padding fields and
    // no pointers, so any byte pattern the kernel hands back is valid.
    unsafe impl aya::Pod for super::DestKey {}
    unsafe impl aya::Pod for super::DestRule {}
    unsafe impl aya::Pod for super::PortCounters {}
    unsafe impl aya::Pod for super::Settings {}
}
