//! The outbox: one mark per pending upload, in `<audit_dir>/outbox/`.
//!
//! A mark is named `<20-digit sequence>.mark` (wall clock in ns, kept
//! strictly increasing, so name order is enqueue order) and holds the file's
//! path relative to the audit directory. It is written under a temporary
//! name, fsynced, hard-linked to its final name (which never replaces an
//! existing mark) and the directory is fsynced: a reader sees it whole or
//! not at all, and it survives a crash once `enqueue` returns.

use std::{
    fs, io,
    path::{Component, Path},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use object_store::path::Path as Key;

use crate::audit::fsutil::{create_private_dir, sync_dir, write_synced};

/// A temporary mark older than this is a crash leftover.
const STALE_TMP: Duration = Duration::from_secs(60);

/// Durably marks `rel` (relative to `audit_dir`) for upload: the mark is
/// fsynced (file and directory) before this returns. Call it only once the
/// file itself is complete and durable.
pub fn enqueue(audit_dir: &Path, rel: &Path) -> io::Result<()> {
    let rel = rel_key(rel)?;
    let outbox = audit_dir.join("outbox");
    if !outbox.is_dir() {
        create_private_dir(&outbox)?;
        sync_dir(audit_dir)?;
    }
    static LAST: AtomicU64 = AtomicU64::new(0);
    loop {
        let seq = next_seq(&LAST, &outbox)?;
        let name = format!("{seq:020}.mark");
        let tmp = outbox.join(format!(".{name}.tmp"));
        write_synced(&tmp, rel.as_bytes())?;
        // A hard link publishes the mark whole and never replaces another.
        let linked = fs::hard_link(&tmp, outbox.join(&name));
        fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => return sync_dir(&outbox),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `rel` as an object key suffix: relative, only normal UTF-8 components
/// that are valid key segments, joined by `/`.
pub(super) fn rel_key(rel: &Path) -> io::Result<String> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("audit upload path {}: {why}", rel.display()),
        )
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| bad("not UTF-8"))?),
            Component::ParentDir => return Err(bad("contains ..")),
            Component::CurDir => return Err(bad("contains .")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("absolute")),
        }
    }
    if parts.is_empty() {
        return Err(bad("empty"));
    }
    let key = parts.join("/");
    Key::parse(&key).map_err(|e| bad(&e.to_string()))?;
    Ok(key)
}

/// The next mark sequence: the clock in nanoseconds, but strictly above
/// `last`, which starts (first call in the process) above the newest mark
/// already queued, so a clock that went back across a restart keeps order.
pub(super) fn next_seq(last: &AtomicU64, outbox: &Path) -> io::Result<u64> {
    if last.load(Ordering::SeqCst) == 0 {
        let newest = marks(outbox)?
            .iter()
            .filter_map(|n| n.trim_end_matches(".mark").parse().ok())
            .max();
        last.fetch_max(newest.unwrap_or(0), Ordering::SeqCst);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let now = u64::try_from(now).unwrap_or(u64::MAX);
    let next = |l: u64| l.saturating_add(1).max(now);
    match last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| Some(next(l))) {
        Ok(prev) | Err(prev) => Ok(next(prev)),
    }
}

/// Mark names in `outbox`, oldest first (none if it does not exist).
pub(super) fn marks(outbox: &Path) -> io::Result<Vec<String>> {
    let dir = match fs::read_dir(outbox) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        d => d?,
    };
    let mut names = Vec::new();
    for e in dir {
        let name = e?.file_name().into_string().unwrap_or_default();
        if name.ends_with(".mark") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Removes temporary marks left by an `enqueue` that crashed before linking
/// (old enough not to be one in progress right now).
pub(super) fn remove_stale_tmps(outbox: &Path) {
    let Ok(dir) = fs::read_dir(outbox) else {
        return;
    };
    for e in dir.flatten() {
        let tmp = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if tmp && age.is_some_and(|a| a > STALE_TMP) {
            let _ = fs::remove_file(e.path());
        }
    }
}
