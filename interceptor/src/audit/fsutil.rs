//! Durable, private file operations: audit files are never world-readable
//! (a leaked audit must not be a data breach) and a reader never sees half
//! a file.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

/// `mkdir -p` with mode 0750 for what it creates.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o750).create(dir)
}

/// Makes a rename or create in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` via a temporary name, fsync, rename, fsync of
/// the directory: the file appears whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] of what `fill` writes to the (temporary) file, so a
/// big file is streamed rather than built in memory first.
pub fn write_atomic_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = create_private(&tmp)?;
    let out = fill(&mut f)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok(out)
}

fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o640)
        .open(path)
}

/// Writes `bytes` to `path` (created with mode 0640, or truncated) and
/// fsyncs the file; publishing it (a rename, a link) and syncing the
/// directory are the caller's.
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
