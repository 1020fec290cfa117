use std::os::unix::fs::MetadataExt;

use interceptor_common::OFFSET_ABSENT;

use super::*;

/// The offsets come from this kernel's BTF, and the ones every kernel since
/// 5.x has at a fixed place agree with the C layout.
#[test]
fn offsets_resolve_on_this_kernel() {
    let btf = offsets::vmlinux().expect("tests run on a kernel with BTF");
    let o = offsets::compute(&btf, 7).expect("every field the programs read");
    assert_eq!((o.enabled, o.netns), (1, 7));
    // struct sock_common starts with skc_daddr, skc_rcv_saddr (a union of
    // be32 pairs), then skc_hash, then skc_dport/skc_num.
    assert_eq!(
        (o.sk_daddr, o.sk_rcv_saddr, o.sk_dport, o.sk_num),
        (0, 4, 12, 14)
    );
    for (name, off) in [
        ("mm", o.task_mm),
        ("start_boottime", o.task_start_boottime),
        ("exe_file", o.mm_exe_file),
        ("f_inode", o.file_inode),
        ("i_sb", o.inode_sb),
    ] {
        assert!(
            off != 0 && off != OFFSET_ABSENT && off < 16384,
            "{name}: {off}"
        );
    }
    assert!(supported().is_ok());
}

/// The kernel's dev_t encoding converts to what stat(2) reports, for a
/// real file's device.
#[test]
fn kernel_dev_converts_to_stat_dev() {
    let dev = std::fs::metadata("/proc/self/exe").unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let kdev = ((major << 20) | minor) as u32;
    assert_eq!(resolve::user_dev(kdev), dev);
}

/// IPv4 keys are IPv4-mapped, as the kernel program stores them, and the
/// words keep network byte order.
#[test]
fn keys_map_ipv4_into_ipv6() {
    let k = key(
        3,
        "10.0.0.1:40000".parse().unwrap(),
        "[::ffff:10.0.0.2]:8080".parse().unwrap(),
    );
    let mapped = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    assert_eq!(k.saddr, [0, 0, mapped, u32::from_ne_bytes([10, 0, 0, 1])]);
    assert_eq!(k.daddr, [0, 0, mapped, u32::from_ne_bytes([10, 0, 0, 2])]);
    assert_eq!((k.netns, k.sport, k.dport), (3, 40000, 8080));
}

/// `starttime` is read past the command name, whatever it holds.
#[test]
fn start_ticks_reads_this_process() {
    let me = std::process::id();
    let t = resolve::start_ticks(me).expect("own stat");
    assert!(t > 0);
    assert_eq!(resolve::start_ticks(me), Some(t));
    assert_eq!(resolve::start_ticks(u32::MAX), None);
}
