//! The mount that covers a path, from `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// One line of mountinfo, the fields the pin check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    /// A member of a peer group (`shared:N`) or a slave of one
    /// (`master:N`): mounts and unmounts propagate from elsewhere.
    pub shared: bool,
}

/// The mount `path` is on: the longest mount point that is a prefix of it,
/// the last listed winning (a later mount on the same point hides the
/// earlier one).
pub fn covering(path: &Path) -> Option<Mount> {
    let path = path.canonicalize().ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    pick(&text, &path)
}

fn pick(text: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for m in text.lines().filter_map(parse) {
        if !path.starts_with(&m.point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| m.point.components().count() >= b.point.components().count());
        if longer {
            best = Some(m);
        }
    }
    best
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
fn parse(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let fields: Vec<&str> = pre.split(' ').collect();
    let point = unescape(fields.get(4)?);
    let shared = fields
        .iter()
        .skip(6)
        .any(|f| f.starts_with("shared:") || f.starts_with("master:"));
    let fstype = post.split(' ').next()?.to_string();
    Some(Mount {
        point: PathBuf::from(point),
        fstype,
        shared,
    })
}

/// Octal escapes (`\040` for a space) as the kernel writes them.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 27 0:22 / /sys rw,relatime shared:2 - sysfs sysfs rw
50 23 0:40 / /sys/fs/bpf rw,relatime master:7 - bpf bpf rw
60 27 0:41 / /my\\040dir rw - tmpfs tmpfs rw
61 23 0:42 / /sys/fs/bpf rw - bpf bpf rw
";

    #[test]
    fn the_last_longest_mount_point_covers_the_path() {
        let m = pick(INFO, Path::new("/sys/fs/bpf/mcpi")).unwrap();
        // The later, private mount on the same point hides the slave one.
        assert_eq!(m.point, PathBuf::from("/sys/fs/bpf"));
        assert_eq!((m.fstype.as_str(), m.shared), ("bpf", false));
        let first_only: String = INFO.lines().take(3).map(|l| format!("{l}\n")).collect();
        let m = pick(&first_only, Path::new("/sys/fs/bpf/x")).unwrap();
        assert!(m.shared, "master:7 is a slave of another namespace's mount");
        assert_eq!(
            pick(INFO, Path::new("/sys/fs/bpfx")).unwrap().fstype,
            "sysfs"
        );
        let m = pick(INFO, Path::new("/my dir/a")).unwrap();
        assert_eq!(m.fstype, "tmpfs");
    }
}
