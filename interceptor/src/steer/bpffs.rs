//! The BPF filesystem that holds the pins. Many distributions mount it at
//! `/sys/fs/bpf` at boot; some hosts (and these build machines) do not.

use std::path::{Path, PathBuf};

use nix::{mount::MsFlags, sys::statfs::statfs};

use super::SteerError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

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
