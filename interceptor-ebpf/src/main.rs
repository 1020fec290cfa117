//! `sk_lookup` program: hands new TCP connections for configured MCP
//! destinations to the agent's proxy socket.
//!
//! Runs when the kernel looks for the socket a new connection (SYN) should
//! reach, in the network namespace it is attached to, for remote and
//! loopback clients alike. The accepted socket keeps the original
//! destination, so the proxy knows where the client meant to go.
//!
//! Decision, in order:
//! 1. not TCP, or destination not in `MCPI_PORTS`: pass (not ours);
//! 2. the agent's own upstream (source port in the bypass range *and* source
//!    address == destination address): pass to the real server;
//! 3. proxy socket registered: assign it (steered); if the kernel refuses
//!    it, drop and count the error (the agent is up, the setup is broken:
//!    failing open here would be a bypass);
//! 4. none registered: drop (fail closed) or pass (fail open) per settings.
//!
//! Failures that would otherwise be silent go to `MCPI_ERRORS`, which
//! `doctor`, `status` and `/metrics` read: a refused assign, and a port
//! whose counter entry could not be created because `MCPI_COUNTERS` is full.
//!
//! During a restart the old and the new link are both attached for a few
//! system calls, so two instances of this program run for one lookup; both
//! read the same pinned maps. The second sees the socket the first chose:
//! it assigns the same one again (`BPF_SK_LOOKUP_F_REPLACE`, else the
//! kernel answers EEXIST) and does not count the connection twice.
//!
//! `process` holds the connect-time capture of local callers (issue 23).
//!
//! The maps are pinned by name, so the same table, counters and settings
//! survive an agent restart, and a pinned link keeps this program attached
//! (and fail-closed dropping) after the agent is gone.
#![no_std]
#![no_main]

mod process;

use core::{cell::UnsafeCell, ptr::read_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_NOEXIST, BPF_SK_LOOKUP_F_REPLACE, bpf_map_def, bpf_map_type::BPF_MAP_TYPE_SOCKMAP,
        sk_action::SK_DROP, sk_action::SK_PASS,
    },
    helpers::{bpf_map_lookup_elem, bpf_sk_assign, bpf_sk_release},
    macros::{map, sk_lookup},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::SkLookupContext,
};
use aya_log_ebpf::warn;
use interceptor_common::{
    DestKey, DestRule, ERR_ASSIGN, ERR_COUNTERS_FULL, ERR_SLOTS, FAMILY_V4, FAMILY_V6, MAX_RULES,
    PortCounters, SLOT_V4, SLOT_V6, Settings,
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;

#[map(name = "MCPI_PORTS")]
static PORTS: HashMap<DestKey, DestRule> = HashMap::pinned(MAX_RULES, 0);

/// A SockMap with 8-byte values. aya-ebpf's `SockMap` uses 4-byte values,
/// with which the kernel refuses every user-space lookup (ENOSPC), so
/// `doctor` could not tell a registered proxy socket from a missing one;
/// with 8 bytes a lookup returns the socket cookie, or ENOENT.
#[repr(transparent)]
struct SockMap64(UnsafeCell<bpf_map_def>);
// SAFETY: the kernel owns the map; this static is only its definition.
unsafe impl Sync for SockMap64 {}

#[unsafe(link_section = "maps")]
#[unsafe(export_name = "MCPI_SOCKETS")]
static SOCKETS: SockMap64 = SockMap64(UnsafeCell::new(bpf_map_def {
    type_: BPF_MAP_TYPE_SOCKMAP,
    key_size: 4,
    value_size: 8,
    max_entries: 2,
    map_flags: 0,
    id: 0,
    pinning: 1, // by name, under the loader's pin directory
}));

/// What assigning the proxy socket of one slot came to.
enum Assign {
    Done,
    /// The slot is empty: no agent (or none for this family).
    NoSocket,
    /// The kernel refused the registered socket (negative errno).
    Refused(i64),
}

impl SockMap64 {
    #[inline(always)]
    fn assign(&self, ctx: &SkLookupContext, slot: u32) -> Assign {
        // SAFETY: lookup in a SOCKMAP returns a referenced socket or null;
        // it is released on every path after the assign.
        unsafe {
            let sk = bpf_map_lookup_elem(self.0.get().cast(), (&slot as *const u32).cast());
            if sk.is_null() {
                return Assign::NoSocket;
            }
            let ret = bpf_sk_assign(ctx.as_ptr().cast(), sk, BPF_SK_LOOKUP_F_REPLACE as u64);
            bpf_sk_release(sk);
            if ret == 0 {
                Assign::Done
            } else {
                Assign::Refused(ret)
            }
        }
    }
}

#[map(name = "MCPI_COUNTERS")]
static COUNTERS: PerCpuHashMap<u32, PortCounters> = PerCpuHashMap::pinned(MAX_RULES, 0);

#[map(name = "MCPI_SETTINGS")]
static SETTINGS: Array<Settings> = Array::pinned(1, 0);

#[map(name = "MCPI_ERRORS")]
static ERRORS: PerCpuArray<u64> = PerCpuArray::pinned(ERR_SLOTS, 0);

#[derive(Clone, Copy)]
enum Outcome {
    Steered,
    Dropped,
    Bypassed,
    FailedOpen,
}

#[sk_lookup]
pub fn mcpi_steer(ctx: SkLookupContext) -> u32 {
    try_steer(&ctx)
}

#[inline(always)]
fn try_steer(ctx: &SkLookupContext) -> u32 {
    let l = ctx.lookup;
    // Context fields are read one by one with constant offsets: the verifier
    // refuses a context pointer the compiler has offset and shared between
    // the IPv4 and IPv6 branches. SAFETY: the kernel hands every sk_lookup
    // program a valid context.
    let (protocol, fam) = unsafe { (read_volatile(&(*l).protocol), read_volatile(&(*l).family)) };
    if protocol != IPPROTO_TCP {
        return SK_PASS;
    }
    let port = unsafe { read_volatile(&(*l).local_port) } as u16;
    let remote_port = u16::from_be(unsafe { read_volatile(&(*l).remote_port) });
    let (family, local, remote) = match fam {
        AF_INET => unsafe {
            let local = read_volatile(&(*l).local_ip4);
            let remote = read_volatile(&(*l).remote_ip4);
            (FAMILY_V4, [local, 0, 0, 0], [remote, 0, 0, 0])
        },
        AF_INET6 => unsafe {
            let local = [
                read_volatile(&(*l).local_ip6[0]),
                read_volatile(&(*l).local_ip6[1]),
                read_volatile(&(*l).local_ip6[2]),
                read_volatile(&(*l).local_ip6[3]),
            ];
            let remote = [
                read_volatile(&(*l).remote_ip6[0]),
                read_volatile(&(*l).remote_ip6[1]),
                read_volatile(&(*l).remote_ip6[2]),
                read_volatile(&(*l).remote_ip6[3]),
            ];
            (FAMILY_V6, local, remote)
        },
        _ => return SK_PASS,
    };
    let exact = DestKey {
        addr: local,
        port,
        family,
        _pad: 0,
    };
    if PORTS.get_ptr(&exact).is_none() && PORTS.get_ptr(DestKey::any(port)).is_none() {
        return SK_PASS;
    }

    let settings = match SETTINGS.get(0) {
        Some(s) => *s,
        // Unreachable for an Array, but the verifier wants the branch: fail
        // closed, the safe answer for a port we were told to guard.
        None => Settings::default(),
    };

    // The agent's upstream connection: a privileged source port (which an
    // unprivileged local process cannot bind) from the destination address
    // itself (which a remote peer cannot complete a handshake from).
    if remote_port >= settings.bypass_port_lo
        && remote_port <= settings.bypass_port_hi
        && settings.bypass_port_lo != 0
        && remote == local
    {
        count(port, Outcome::Bypassed);
        return SK_PASS;
    }

    let slot = if family == FAMILY_V4 {
        SLOT_V4
    } else {
        SLOT_V6
    };
    // SAFETY: as above; `sk` is the socket an earlier program selected for
    // this lookup, or null. Only compared with null, never dereferenced.
    let chosen_before =
        unsafe { !read_volatile(&(*l).__bindgen_anon_1.__bindgen_anon_1.sk).is_null() };
    match SOCKETS.assign(ctx, slot) {
        Assign::Done => {
            if !chosen_before {
                count(port, Outcome::Steered);
            }
            SK_PASS
        }
        Assign::Refused(err) => {
            error(ERR_ASSIGN);
            warn!(
                ctx,
                "mcp port {} refused: the kernel would not assign the proxy socket (err {})",
                port,
                err
            );
            SK_DROP
        }
        Assign::NoSocket if settings.fail_open != 0 => {
            count(port, Outcome::FailedOpen);
            SK_PASS
        }
        Assign::NoSocket => {
            count(port, Outcome::Dropped);
            warn!(ctx, "mcp port {} refused: no proxy socket", port);
            SK_DROP
        }
    }
}

#[inline(always)]
fn error(slot: u32) {
    if let Some(p) = ERRORS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, this CPU's copy; no other writer runs here.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn count(port: u16, outcome: Outcome) {
    let key = port as u32;
    let ptr = match COUNTERS.get_ptr_mut(key) {
        Some(p) => p,
        None => {
            // The agent pre-creates an entry per port; a missing one (port
            // added by hand to the table) is created here. NOEXIST: another
            // CPU may have just created it, and its count must stay.
            let _ = COUNTERS.insert(key, PortCounters::default(), BPF_NOEXIST as u64);
            match COUNTERS.get_ptr_mut(key) {
                Some(p) => p,
                None => {
                    // The map is full (E2BIG): say so rather than lose it.
                    error(ERR_COUNTERS_FULL);
                    return;
                }
            }
        }
    };
    // SAFETY: per-CPU value, this CPU's copy; no other writer runs here.
    let c = unsafe { &mut *ptr };
    match outcome {
        Outcome::Steered => c.steered += 1,
        Outcome::Dropped => c.dropped += 1,
        Outcome::Bypassed => c.bypassed += 1,
        Outcome::FailedOpen => c.failed_open += 1,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
