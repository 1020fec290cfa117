//! Process capture (issue 23): which local task opened each connection to a
//! steered port, recorded at connect time, in process context.
//!
//! One BTF tracepoint, `inet_sock_set_state`, in three steps:
//! 1. `-> SYN_SENT` runs inside connect(2) (or a fast-open sendmsg) of the
//!    connecting task: the current task is the opener. Its facts are kept
//!    in `MCPI_PENDING` under the socket's address, because the source port
//!    is bound only after this transition.
//! 2. `SYN_SENT -> ESTABLISHED` (the SYN-ACK arrived, possibly in softirq):
//!    the 4-tuple is complete, and the pending facts move to `MCPI_PROCS`
//!    under it. This precedes the client's ACK, hence the proxy's accept.
//! 3. `-> CLOSE` removes what is left: a pending record, or, when the server
//!    side (the proxy's accepted socket, or the real server's) closes, the
//!    client's record. The client socket's own close does not: a client
//!    that writes and closes at once reaches TCP_CLOSE before the proxy
//!    accepts, and its request must still be attributed.
//!
//! fentry on `tcp_connect` would need one step less, but needs BPF
//! trampolines, which some kernels refuse (see the agent's docs).
//!
//! aya has no CO-RE for these programs, so every kernel struct offset comes
//! from `MCPI_PROC_OFFS`, which the agent computes from the running kernel's
//! BTF; fields are read with `bpf_probe_read_kernel`.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use interceptor_common::{
    ConnKey, DestKey, FAMILY_V4, FAMILY_V6, MAX_PROCS, OFFSET_ABSENT, PROC_FULL, PROC_READ_FAILED,
    PROC_RECORDED, PROC_REMOVED, PROC_SLOTS, ProcOffsets, ProcRecord,
};

use crate::{PORTS, SETTINGS};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;

#[map(name = "MCPI_PROCS")]
static PROCS: HashMap<ConnKey, ProcRecord> = HashMap::with_max_entries(MAX_PROCS, 0);

/// Facts captured at SYN_SENT, by socket address, until the port is known.
#[map(name = "MCPI_PENDING")]
static PENDING: HashMap<u64, ProcRecord> = HashMap::with_max_entries(MAX_PROCS, 0);

#[map(name = "MCPI_PROC_OFFS")]
static OFFS: Array<ProcOffsets> = Array::with_max_entries(1, 0);

#[map(name = "MCPI_PROC_CNT")]
static COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PROC_SLOTS, 0);

/// Word 2 of an IPv4-mapped IPv6 address (`::ffff:0:0/96`), as stored.
const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn mcpi_sock_state(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    match (old, new) {
        (_, TCP_SYN_SENT) => {
            try_capture(sk);
        }
        (TCP_SYN_SENT, TCP_ESTABLISHED) => {
            try_record(sk);
        }
        (_, TCP_CLOSE) => {
            try_remove(sk, old);
        }
        _ => {}
    }
    0
}

/// Reads a `T` at `base + off`; `None` for a null base, an absent field or
/// a failed read.
#[inline(always)]
fn rd<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == OFFSET_ABSENT {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies from any kernel address and
    // fails cleanly (non-zero) on a bad one; nothing is dereferenced here.
    match unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            bump(PROC_READ_FAILED);
            None
        }
    }
}

/// The socket's (local address, local port, remote address, remote port),
/// IPv4 mapped into IPv6; `None` when it is not in the agent's namespace.
#[inline(always)]
fn endpoints(sk: u64, o: &ProcOffsets) -> Option<([u32; 4], u16, [u32; 4], u16)> {
    let net: u64 = rd(sk, o.sk_net)?;
    let inum: u32 = rd(net, o.net_inum)?;
    if inum != o.netns {
        return None;
    }
    let family: u16 = rd(sk, o.sk_family)?;
    let lport: u16 = rd(sk, o.sk_num)?;
    let rport = u16::from_be(rd::<u16>(sk, o.sk_dport)?);
    let v4 = |sk: u64| -> Option<([u32; 4], [u32; 4])> {
        let l: u32 = rd(sk, o.sk_rcv_saddr)?;
        let r: u32 = rd(sk, o.sk_daddr)?;
        Some(([0, 0, MAPPED, l], [0, 0, MAPPED, r]))
    };
    let (local, remote) = match family {
        AF_INET => v4(sk)?,
        AF_INET6 => {
            let r: [u32; 4] = rd(sk, o.sk_v6_daddr)?;
            if r[0] == 0 && r[1] == 0 && r[2] == MAPPED {
                // A dual-stack socket connecting to an IPv4 peer: the v6
                // source is filled in only after tcp_connect returns.
                v4(sk)?
            } else {
                (rd(sk, o.sk_v6_rcv_saddr)?, r)
            }
        }
        _ => return None,
    };
    Some((local, lport, remote, rport))
}

/// Whether (addr, port) is a steered destination.
#[inline(always)]
fn steered(addr: &[u32; 4], port: u16) -> bool {
    let exact = if addr[0] == 0 && addr[1] == 0 && addr[2] == MAPPED {
        DestKey {
            addr: [addr[3], 0, 0, 0],
            port,
            family: FAMILY_V4,
            _pad: 0,
        }
    } else {
        DestKey {
            addr: *addr,
            port,
            family: FAMILY_V6,
            _pad: 0,
        }
    };
    PORTS.get_ptr(&exact).is_some() || PORTS.get_ptr(DestKey::any(port)).is_some()
}

/// Step 1: the connecting task's facts, kept under the socket's address.
#[inline(always)]
fn try_capture(sk: u64) -> Option<()> {
    let o = OFFS.get(0)?;
    if o.enabled == 0 {
        return None;
    }
    // The source port is 0 here unless the socket was bound first.
    let (saddr, sport, daddr, dport) = endpoints(sk, o)?;
    if !steered(&daddr, dport) {
        return None;
    }
    // The agent's own upstream connection (bound in the bypass range, the
    // sk_lookup program lets it through): not a caller.
    if let Some(s) = SETTINGS.get(0)
        && s.bypass_port_lo != 0
        && sport >= s.bypass_port_lo
        && sport <= s.bypass_port_hi
        && saddr == daddr
    {
        return None;
    }
    let rec = facts(o);
    if PENDING.insert(&sk, &rec, u64::from(BPF_ANY)).is_err() {
        bump(PROC_FULL);
    }
    Some(())
}

/// Step 2: the 4-tuple is complete; the pending facts move under it.
#[inline(always)]
fn try_record(sk: u64) -> Option<()> {
    let o = OFFS.get(0)?;
    // SAFETY: a map value pointer, valid until this program returns; the
    // record is copied before the entry is removed.
    let rec = unsafe { *PENDING.get(&sk)? };
    let _ = PENDING.remove(&sk);
    let (saddr, sport, daddr, dport) = endpoints(sk, o)?;
    let key = ConnKey {
        netns: o.netns,
        sport,
        dport,
        saddr,
        daddr,
    };
    if PROCS.insert(&key, &rec, u64::from(BPF_ANY)).is_ok() {
        bump(PROC_RECORDED);
    } else {
        // Full: no record rather than a stale one a reused 4-tuple left.
        let _ = PROCS.remove(&key);
        bump(PROC_FULL);
    }
    Some(())
}

/// The current task's facts.
#[inline(always)]
fn facts(o: &ProcOffsets) -> ProcRecord {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: these helpers only read the current task.
    let (task, cgroup_id) = unsafe { (bpf_get_current_task(), bpf_get_current_cgroup_id()) };
    let leader: u64 = rd(task, o.task_group_leader).unwrap_or(task);
    let exe_inode = rd::<u64>(task, o.task_mm)
        .and_then(|mm| rd::<u64>(mm, o.mm_exe_file))
        .and_then(|f| rd::<u64>(f, o.file_inode));
    let exe_ino = exe_inode
        .and_then(|i| rd::<u64>(i, o.inode_ino))
        .unwrap_or(0);
    let exe_dev = exe_inode
        .and_then(|i| rd::<u64>(i, o.inode_sb))
        .and_then(|sb| rd::<u32>(sb, o.sb_dev))
        .unwrap_or(0);
    ProcRecord {
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        login_uid: rd(task, o.task_loginuid).unwrap_or(u32::MAX),
        exe_dev,
        cgroup_id,
        exe_ino,
        start_boottime: rd(leader, o.task_start_boottime).unwrap_or(0),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

#[inline(always)]
fn try_remove(sk: u64, old: i32) -> Option<()> {
    let o = OFFS.get(0)?;
    if old == TCP_SYN_SENT {
        // A connect that failed: only its pending facts exist.
        if PENDING.remove(&sk).is_ok() {
            bump(PROC_REMOVED);
        }
        return None;
    }
    let (local, lport, remote, rport) = endpoints(sk, o)?;
    let key = if steered(&local, lport) {
        // The server side of a steered connection: the client's record.
        ConnKey {
            netns: o.netns,
            sport: rport,
            dport: lport,
            saddr: remote,
            daddr: local,
        }
    } else {
        return None;
    };
    if PROCS.remove(&key).is_ok() {
        bump(PROC_REMOVED);
    }
    Some(())
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(p) = COUNTS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, this CPU's copy; no other writer runs here.
        unsafe { *p += 1 };
    }
}
