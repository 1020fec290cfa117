//! Same-host callers identified by the kernel (issue 23): attach the
//! capture programs, look up the record of an accepted connection, and
//! resolve it into [`ProcessFacts`].
//!
//! The kernel records, at connect(2) time, which task opened each
//! connection to a steered port in the agent's network namespace, keyed by
//! the 4-tuple the proxy sees (see `interceptor-ebpf/src/process.rs`). The
//! proxy takes the record out on accept ([`facts`]); what the kernel cannot
//! know cheaply (cgroup path, executable path and hash) is resolved off the
//! async threads, and only when the process is provably the one recorded.
//! A remote client has no record and gets none.

mod offsets;
mod resolve;

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::fs::MetadataExt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::BtfTracePoint,
};
use interceptor_common::{
    ConnKey, HOOK_SOCK_STATE, MAP_PROC_COUNTS, MAP_PROC_OFFSETS, MAP_PROCS, PROC_FULL,
    PROC_READ_FAILED, PROC_RECORDED, PROC_REMOVED, PROGRAM_SOCK_STATE, ProcOffsets, ProcRecord,
};

use crate::conn::ProcessFacts;

pub use offsets::VMLINUX;

/// How to get the capture where it is refused.
pub const FIX: &str = "run a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y, 5.5+), and the agent \
     with CAP_BPF and CAP_PERFMON (an LSM may refuse tracing programs); or set \
     intercept.process_capture = false (same-host callers then carry no process facts)";

/// Why the capture program could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The kernel publishes no BTF.
    #[error("no {VMLINUX}: the kernel has no BTF. Fix: {FIX}")]
    NoBtf,
    /// The BTF could not be parsed.
    #[error("reading {VMLINUX}: {0}. Fix: {FIX}")]
    Btf(String),
    /// The tracepoint is missing from the kernel's BTF.
    #[error("the kernel's BTF has no {0} to attach to. Fix: {FIX}")]
    NoHook(String),
    /// A kernel struct field the program reads is missing.
    #[error("the kernel's BTF has no field {0}. Fix: {FIX}")]
    NoField(String),
    /// Loading or attaching the program failed (capabilities, an LSM).
    #[error("attaching {program} to {hook}: {source}. Fix: {FIX}")]
    Attach {
        /// The program.
        program: &'static str,
        /// Where it was attached.
        hook: &'static str,
        /// aya's error.
        source: aya::programs::ProgramError,
    },
    /// A map of the embedded object is missing or unusable.
    #[error("eBPF map {map}: {detail}")]
    Map {
        /// The map.
        map: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The agent's network namespace could not be named.
    #[error("reading /proc/thread-self/ns/net: {0}")]
    Netns(std::io::Error),
}

/// What the capture program counted since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureCounts {
    /// Connections recorded.
    pub recorded: u64,
    /// Connections not recorded because a map was full.
    pub map_full: u64,
    /// Kernel reads that failed (that fact left zero).
    pub read_failed: u64,
    /// Records the kernel removed when their connection closed or failed.
    pub removed: u64,
    /// Records the proxy took out on accept.
    pub taken: u64,
}

/// The attached program's user-space side.
struct Kernel {
    records: Mutex<HashMap<MapData, ConnKey, ProcRecord>>,
    counts: PerCpuArray<MapData, u64>,
    offsets: Mutex<Array<MapData, ProcOffsets>>,
    netns: u32,
    taken: AtomicU64,
}

static KERNEL: OnceLock<Kernel> = OnceLock::new();

/// Whether this kernel supports the capture: its BTF has the tracepoint
/// and every field the program reads (what `doctor` reports).
pub fn supported() -> Result<(), CaptureError> {
    offsets::compute(&offsets::vmlinux()?, 0).map(|_| ())
}

/// Loads and attaches the capture program of `ebpf` (already loaded with
/// the steering maps) for this network namespace, and keeps its maps for
/// [`facts`]. Its link lives as long as the agent.
pub(super) fn attach(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    let netns = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(CaptureError::Netns)?
        .ino() as u32;
    let btf = offsets::vmlinux()?;
    let offs = offsets::compute(&btf, netns)?;
    let mut offsets: Array<MapData, ProcOffsets> = take(ebpf, MAP_PROC_OFFSETS)?;
    offsets.set(0, offs, 0).map_err(map_err(MAP_PROC_OFFSETS))?;
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| CaptureError::Btf(e.to_string()))?;
    let prog: &mut BtfTracePoint = program(ebpf, PROGRAM_SOCK_STATE)?;
    prog.load(HOOK_SOCK_STATE, &aya_btf)
        .and_then(|()| prog.attach().map(drop))
        .map_err(|source| CaptureError::Attach {
            program: PROGRAM_SOCK_STATE,
            hook: HOOK_SOCK_STATE,
            source,
        })?;
    let kernel = Kernel {
        records: Mutex::new(take(ebpf, MAP_PROCS)?),
        counts: take(ebpf, MAP_PROC_COUNTS)?,
        offsets: Mutex::new(offsets),
        netns,
        taken: AtomicU64::new(0),
    };
    if KERNEL.set(kernel).is_err() {
        tracing::warn!("process capture attached twice; the first stays in use");
    }
    Ok(())
}

/// Turns recording on or off (reload) without detaching the programs.
pub fn set_enabled(on: bool) {
    let Some(k) = KERNEL.get() else { return };
    let Ok(mut offsets) = k.offsets.lock() else {
        return;
    };
    if let Ok(mut o) = offsets.get(&0, 0)
        && (o.enabled != 0) != on
    {
        o.enabled = u32::from(on);
        if let Err(e) = offsets.set(0, o, 0) {
            tracing::warn!(error = %e, "process capture: could not switch recording");
        }
    }
}

/// Whether the capture program is attached in this agent.
pub fn attached() -> bool {
    KERNEL.get().is_some()
}

/// The program's counts, summed over CPUs; `None` when not attached.
pub fn counts() -> Option<CaptureCounts> {
    let k = KERNEL.get()?;
    let sum = |slot: u32| k.counts.get(&slot, 0).map_or(0, |v| v.iter().sum());
    Some(CaptureCounts {
        recorded: sum(PROC_RECORDED),
        map_full: sum(PROC_FULL),
        read_failed: sum(PROC_READ_FAILED),
        removed: sum(PROC_REMOVED),
        taken: k.taken.load(Ordering::Relaxed),
    })
}

/// The local process that opened the connection from `client` to
/// `orig_dst`, as the kernel recorded it; `None` for a remote client, or
/// when the capture is off. The record is taken out of the map.
pub async fn facts(client: SocketAddr, orig_dst: SocketAddr) -> Option<Arc<ProcessFacts>> {
    let k = KERNEL.get()?;
    let key = key(k.netns, client, orig_dst);
    let rec = {
        // Two bpf(2) calls on a hash map: microseconds, no I/O.
        let mut map = k.records.lock().ok()?;
        let rec = map.get(&key, 0).ok()?;
        if map.remove(&key).is_ok() {
            k.taken.fetch_add(1, Ordering::Relaxed);
        }
        rec
    };
    let facts = tokio::task::spawn_blocking(move || resolve::facts(&rec))
        .await
        .ok()?;
    Some(Arc::new(facts))
}

/// The map key for a connection (IPv4 as IPv4-mapped, as the kernel keys).
fn key(netns: u32, client: SocketAddr, orig_dst: SocketAddr) -> ConnKey {
    ConnKey {
        netns,
        sport: client.port(),
        dport: orig_dst.port(),
        saddr: words(client.ip()),
        daddr: words(orig_dst.ip()),
    }
}

fn words(ip: IpAddr) -> [u32; 4] {
    let v6 = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let o = v6.octets();
    std::array::from_fn(|i| {
        u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

fn map_err<E: std::fmt::Display>(map: &'static str) -> impl FnOnce(E) -> CaptureError {
    move |e| CaptureError::Map {
        map,
        detail: e.to_string(),
    }
}

/// Takes map `name` out of `ebpf` as a typed map.
fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, CaptureError> {
    let map = ebpf.take_map(name).ok_or(CaptureError::Map {
        map: name,
        detail: "not in the embedded object".into(),
    })?;
    T::try_from(map).map_err(map_err(name))
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, CaptureError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(CaptureError::Map {
        map: name,
        detail: "program not in the embedded object".into(),
    })?;
    p.try_into().map_err(map_err(name))
}

#[cfg(test)]
mod tests;
