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

/// Process records: `ConnKey -> ProcRecord`, one per local connection to a
/// steered port, written at connect time (issue 23). Not pinned: the
/// tracing links that fill it go with the agent, and so do its records.
pub const MAP_PROCS: &str = "MCPI_PROCS";
/// One [`ProcOffsets`] record at index 0: the kernel struct offsets the
/// capture programs read with, computed from BTF by the agent.
pub const MAP_PROC_OFFSETS: &str = "MCPI_PROC_OFFS";
/// Capture counters, per CPU: `u32` index ([`PROC_RECORDED`], ...) `-> u64`.
pub const MAP_PROC_COUNTS: &str = "MCPI_PROC_CNT";
/// Facts captured at SYN_SENT, by socket address, until the source port
/// is known: `u64 -> ProcRecord`. Not pinned either.
pub const MAP_PENDING: &str = "MCPI_PENDING";
/// The BTF tracepoint program that captures, records and removes.
pub const PROGRAM_SOCK_STATE: &str = "mcpi_sock_state";
/// Tracepoint [`PROGRAM_SOCK_STATE`] attaches to.
pub const HOOK_SOCK_STATE: &str = "inet_sock_set_state";

/// Capacity of `MCPI_PROCS` (and of `MCPI_PENDING`): local connections
/// opened but not yet accepted (or closed). A plain hash map, so nothing is evicted silently: a full
/// map fails the insert and counts [`PROC_FULL`].
pub const MAX_PROCS: u32 = 16384;

/// A connection recorded in `MCPI_PROCS`.
pub const PROC_RECORDED: u32 = 0;
/// A connection not recorded because `MCPI_PROCS` or `MCPI_PENDING` was full: its caller
/// looks remote to the proxy (no process facts).
pub const PROC_FULL: u32 = 1;
/// A kernel read (`bpf_probe_read_kernel`) failed: that fact is zero.
pub const PROC_READ_FAILED: u32 = 2;
/// A record removed by the kernel when its connection closed (or failed).
pub const PROC_REMOVED: u32 = 3;
/// Number of slots in `MCPI_PROC_CNT`.
pub const PROC_SLOTS: u32 = 4;

/// `ProcOffsets` value of a field this kernel does not have.
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// One connection as the proxy sees its accepted socket: client address and
/// port, original destination address and port, in the agent's network
/// namespace. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`), so
/// a dual-stack socket connecting to a mapped address gets the same key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ConnKey {
    /// Inode number of the network namespace (`stat /proc/self/ns/net`).
    pub netns: u32,
    /// Client port, host byte order.
    pub sport: u16,
    /// Destination port, host byte order.
    pub dport: u16,
    /// Client address, network byte order words.
    pub saddr: [u32; 4],
    /// Destination address, network byte order words.
    pub daddr: [u32; 4],
}

/// What the kernel knew about the task that called connect(2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ProcRecord {
    /// Thread-group id (the PID).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid, as `bpf_get_current_uid_gid` reports it.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Audit login uid; `u32::MAX` when unset or not compiled in.
    pub login_uid: u32,
    /// The executable's device, kernel encoding (`major << 20 | minor`).
    pub exe_dev: u32,
    /// cgroup v2 id (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// The executable's inode number; 0 when the task has no mm.
    pub exe_ino: u64,
    /// `task->start_boottime` of the thread-group leader, ns since boot.
    pub start_boottime: u64,
    /// `comm`, NUL-padded.
    pub comm: [u8; 16],
}

/// Offsets (bytes) into kernel structs, from BTF; [`OFFSET_ABSENT`] for a
/// field this kernel lacks. Zero `enabled`: the programs do nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ProcOffsets {
    /// Non-zero once the agent wrote the record.
    pub enabled: u32,
    /// The agent's network namespace inode: only its connections count.
    pub netns: u32,
    /// `sock_common.skc_family` (u16).
    pub sk_family: u32,
    /// `sock_common.skc_daddr` (be32).
    pub sk_daddr: u32,
    /// `sock_common.skc_rcv_saddr` (be32).
    pub sk_rcv_saddr: u32,
    /// `sock_common.skc_dport` (be16).
    pub sk_dport: u32,
    /// `sock_common.skc_num` (u16, host order).
    pub sk_num: u32,
    /// `sock_common.skc_net` (a `struct net *`).
    pub sk_net: u32,
    /// `sock_common.skc_v6_daddr`.
    pub sk_v6_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`.
    pub sk_v6_rcv_saddr: u32,
    /// `net.ns.inum`.
    pub net_inum: u32,
    /// `task_struct.group_leader`.
    pub task_group_leader: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `task_struct.loginuid` (absent without CONFIG_AUDIT).
    pub task_loginuid: u32,
    /// `task_struct.start_boottime`.
    pub task_start_boottime: u32,
    /// `mm_struct.exe_file`.
    pub mm_exe_file: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `inode.i_ino`.
    pub inode_ino: u32,
    /// `inode.i_sb`.
    pub inode_sb: u32,
    /// `super_block.s_dev`.
    pub sb_dev: u32,
}

const _: () = assert!(core::mem::size_of::<DestKey>() == 20);
const _: () = assert!(core::mem::size_of::<DestRule>() == 4);
const _: () = assert!(core::mem::size_of::<PortCounters>() == 32);
const _: () = assert!(core::mem::size_of::<Settings>() == 16);
const _: () = assert!(core::mem::size_of::<ConnKey>() == 40);
const _: () = assert!(core::mem::size_of::<ProcRecord>() == 64);
const _: () = assert!(core::mem::size_of::<ProcOffsets>() == 80);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is repr(C), Copy, with explicit padding fields and
    // no pointers, so any byte pattern the kernel hands back is valid.
    unsafe impl aya::Pod for super::DestKey {}
    unsafe impl aya::Pod for super::DestRule {}
    unsafe impl aya::Pod for super::PortCounters {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::ProcRecord {}
    unsafe impl aya::Pod for super::ProcOffsets {}
}
