//! The BPF filesystem that holds the pins. Many distributions mount it at
//! `/sys/fs/bpf` at boot; some hosts (and these build machines) do not.
//!
//! Pins keep the program attached after the agent is gone (fail mode) only
//! while their bpffs stays mounted somewhere. A bpffs mounted inside a
//! private mount namespace (a container, `ip netns exec`, `unshare -m`)
//! goes away with the last process in it, often the agent itself: after a
//! kill -9 the program detaches and the ports are unguarded. [`lasting`]
//! tells the two apart.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nix::{mount::MsFlags, sys::statfs::statfs};

use super::SteerError;

mod mountinfo;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs is mounted by default.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// Inode of the initial mount namespace's nsfs file: fixed since Linux
/// 6.18 (`MNT_NS_INIT_INO`); earlier kernels number namespaces from
/// 0xF0000000 up, so no other namespace can have it.
const MNT_NS_INIT_INO: u64 = 0xEFFF_FFF8;
/// Inode of the initial PID namespace (`PROC_PID_INIT_INO`, fixed since 3.8).
const PID_NS_INIT_INO: u64 = 0xEFFF_FFFC;

/// The fix named wherever pins would not outlive the agent.
pub const FIX: &str = "mount the host's /sys/fs/bpf into the agent's mount namespace as a \
    shared or slave mount (docker: `-v /sys/fs/bpf:/sys/fs/bpf:rslave`; systemd: the shipped \
    unit, or BindPaths=/sys/fs/bpf), and steer another network namespace with intercept.netns \
    instead of running the agent under `ip netns exec`";

/// The nearest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// Whether `path` (or the nearest existing ancestor) lives on bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    existing_ancestor(path)
        .and_then(|p| statfs(p).ok())
        .is_some_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` can hold pins: mounts bpffs at `/sys/fs/bpf` when
/// the pin directory is below it and nothing is mounted there yet.
pub fn ensure(pin_dir: &Path) -> Result<(), SteerError> {
    if is_bpffs(pin_dir) {
        return Ok(());
    }
    let mount_point = Path::new(DEFAULT_MOUNT);
    if !pin_dir.starts_with(mount_point) {
        return Err(SteerError::Io {
            what: "pin_dir is not on a bpf filesystem:",
            path: pin_dir.to_path_buf(),
            source: std::io::Error::other("mount bpffs there or choose a path below /sys/fs/bpf"),
        });
    }
    nix::mount::mount(
        Some("bpf"),
        mount_point,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| SteerError::Io {
        what: "mounting bpffs at",
        path: PathBuf::from(DEFAULT_MOUNT),
        source: e.into(),
    })?;
    tracing::info!(path = DEFAULT_MOUNT, "mounted bpffs");
    Ok(())
}

/// Whether pins under `pin_dir` (on bpffs) outlive this process: `Ok`
/// says why they do, `Err` why they would not.
pub fn lasting(pin_dir: &Path) -> Result<String, String> {
    let Some(at) = existing_ancestor(pin_dir) else {
        return Err(format!("{} does not exist", pin_dir.display()));
    };
    let mount = mountinfo::covering(at)
        .ok_or_else(|| format!("no mount covers {} in /proc/self/mountinfo", at.display()))?;
    if mount.fstype != "bpf" {
        return Err(format!(
            "{} is on {}, not bpffs",
            at.display(),
            mount.fstype
        ));
    }
    let point = mount.point.display().to_string();
    if in_host_mount_ns() {
        return Ok(format!("bpffs at {point} in the host's mount namespace"));
    }
    if host_pid1() {
        // Does the host's init see this very filesystem at the same place?
        let rel = mount.point.strip_prefix("/").unwrap_or(&mount.point);
        let theirs = std::fs::metadata(Path::new("/proc/1/root").join(rel)).map(|m| m.dev());
        let ours = std::fs::metadata(&mount.point).map(|m| m.dev());
        match (theirs, ours) {
            (Ok(t), Ok(o)) if t == o => {
                return Ok(format!("bpffs at {point} is the host's (PID 1 sees it)"));
            }
            (Ok(_), Ok(_)) => {
                return Err(format!(
                    "bpffs at {point} is private to the agent's mount namespace (the host's \
                     {point} is another filesystem)"
                ));
            }
            // Not allowed to look (no CAP_SYS_PTRACE): decide by propagation.
            _ => {}
        }
    }
    if mount.shared {
        return Ok(format!(
            "bpffs at {point} is a shared or slave mount (propagated from another mount \
             namespace)"
        ));
    }
    Err(format!(
        "bpffs at {point} is a private mount in a mount namespace that is not the host's \
         (a container, `ip netns exec` or `unshare -m`): it and the pins on it go away with \
         the agent"
    ))
}

/// Whether PID 1 is the host's init (not a container's): we are in the
/// initial PID namespace and are not PID 1 ourselves.
fn host_pid1() -> bool {
    std::process::id() != 1 && ns_ino("pid") == Some(PID_NS_INIT_INO)
}

/// Whether this process is in the host's (initial) mount namespace, where
/// a bpffs it mounts stays mounted after it exits. `false` when unsure.
pub fn in_host_mount_ns() -> bool {
    ns_ino("mnt") == Some(MNT_NS_INIT_INO) || (host_pid1() && same_as_pid1("mnt") == Some(true))
}

/// The inode of `/proc/self/ns/<kind>`.
fn ns_ino(kind: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// Whether we share namespace `kind` with PID 1; `None` when PID 1's
/// cannot be read.
fn same_as_pid1(kind: &str) -> Option<bool> {
    let theirs = std::fs::metadata(format!("/proc/1/ns/{kind}")).ok()?;
    Some(ns_ino(kind) == Some(theirs.ino()))
}
