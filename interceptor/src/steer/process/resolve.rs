//! From a kernel record to [`ProcessFacts`]: the cgroup path, the
//! executable's path and SHA-256. Blocking file system work; the proxy runs
//! it on the blocking pool.
//!
//! The executable path is given only when it provably belongs to the
//! recorded process: `/proc/<pid>/exe` is opened, its (device, inode) must
//! be the ones the kernel recorded, and `/proc/<pid>/stat`, read after the
//! open, must show the recorded start time (a PID can only be reused after
//! its process is gone, so a live process with the recorded start time at
//! that moment was the same process at the open). Otherwise (the process
//! exec'd or exited, the PID was reused) the path and hash stay `None`.

use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
    sync::{Mutex, OnceLock},
};

use interceptor_common::ProcRecord;
use sha2::{Digest, Sha256};

use crate::conn::ProcessFacts;

/// Entries per cache before it is cleared (bounded memory under churn).
const CACHE_MAX: usize = 4096;
/// Directories visited at most when searching the cgroup tree for an id.
const WALK_MAX: usize = 20_000;

/// `cgroup id -> path` (cgroup2 ids are never reused while the system runs).
static CGROUPS: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);
/// `(dev, ino, ctime s, ctime ns) -> sha256 hex` of executables.
type ExeKey = (u64, u64, i64, i64);
static HASHES: Mutex<Option<HashMap<ExeKey, String>>> = Mutex::new(None);

/// The facts of `rec`, resolved now.
pub fn facts(rec: &ProcRecord) -> ProcessFacts {
    let exe_dev = user_dev(rec.exe_dev);
    let (exe_path, exe_sha256) = exe(rec, exe_dev).unwrap_or((None, None));
    let nul = rec
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(rec.comm.len());
    ProcessFacts {
        pid: rec.pid,
        tid: rec.tid,
        uid: rec.uid,
        gid: rec.gid,
        login_uid: (rec.login_uid != u32::MAX).then_some(rec.login_uid),
        comm: String::from_utf8_lossy(&rec.comm[..nul]).into_owned(),
        cgroup_id: rec.cgroup_id,
        cgroup_path: cgroup_path(rec.pid, rec.cgroup_id),
        exe_path,
        exe_ino: rec.exe_ino,
        exe_dev,
        exe_sha256,
        start_time_ns: rec.start_boottime,
    }
}

/// The kernel's `dev_t` (`major << 20 | minor`) as stat(2) reports it.
pub fn user_dev(kdev: u32) -> u64 {
    let (major, minor) = (u64::from(kdev >> 20), u64::from(kdev & 0xf_ffff));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// Path and hash of the recorded executable, if the process is still the
/// recorded one; `None` otherwise.
fn exe(rec: &ProcRecord, dev: u64) -> Option<(Option<String>, Option<String>)> {
    if rec.exe_ino == 0 {
        return None;
    }
    let file = File::open(format!("/proc/{}/exe", rec.pid)).ok()?;
    let meta = file.metadata().ok()?;
    if meta.dev() != dev || meta.ino() != rec.exe_ino {
        return None;
    }
    // After the open: see the module doc for why this order proves it.
    if start_ticks(rec.pid)? != rec.start_boottime / ns_per_tick() {
        return None;
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
        .map(|p: PathBuf| p.to_string_lossy().into_owned());
    Some((path, sha256(file, &meta)))
}

/// `starttime` (clock ticks since boot) of `/proc/<pid>/stat`.
pub(super) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'. starttime is field 22; after ')' comes field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

fn ns_per_tick() -> u64 {
    static TICK: OnceLock<u64> = OnceLock::new();
    *TICK.get_or_init(|| {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&h| h > 0)
            .unwrap_or(100);
        1_000_000_000 / hz as u64
    })
}

/// SHA-256 of the open executable, cached by (dev, ino, ctime): a rewrite
/// in place changes ctime, so a cached hash is never served for new bytes.
fn sha256(mut file: File, meta: &std::fs::Metadata) -> Option<String> {
    let key = (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec());
    if let Some(h) = cached(&HASHES, &key) {
        return Some(h);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    let hex = hex::encode(hasher.finalize());
    remember(&HASHES, key, hex.clone());
    Some(hex)
}

/// The cgroup path of `id` under the cgroup2 mount, e.g.
/// `/system.slice/ai-agent.service`.
fn cgroup_path(pid: u32, id: u64) -> Option<String> {
    if let Some(p) = cached(&CGROUPS, &id) {
        return Some(p);
    }
    let root = cgroup2_root()?;
    // Fast path: where /proc says the process is now, if that is the id.
    let now = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(String::from))
        });
    let found = now
        .filter(|p| ino(&root.join(p.trim_start_matches('/'))) == Some(id))
        .or_else(|| walk(&root, id));
    if let Some(p) = &found {
        remember(&CGROUPS, id, p.clone());
    }
    found
}

fn ino(p: &std::path::Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

/// Searches the cgroup2 tree for the directory whose inode is `id`.
fn walk(root: &std::path::Path, id: u64) -> Option<String> {
    if ino(root) == Some(id) {
        return Some("/".into());
    }
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > WALK_MAX {
                return None;
            }
            let Ok(m) = e.metadata() else { continue };
            if !m.is_dir() {
                continue;
            }
            if m.ino() == id {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                return Some(format!("/{rel}"));
            }
            stack.push(e.path());
        }
    }
    None
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on hybrid hosts), from this process's mount table.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let point = pre.split(' ').nth(4)?;
        (post.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(point))
    })
}

fn cached<K: std::hash::Hash + Eq, V: Clone>(
    cache: &Mutex<Option<HashMap<K, V>>>,
    k: &K,
) -> Option<V> {
    cache.lock().ok()?.as_ref()?.get(k).cloned()
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<Option<HashMap<K, V>>>, k: K, v: V) {
    if let Ok(mut c) = cache.lock() {
        let map = c.get_or_insert_with(HashMap::new);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(k, v);
    }
}
