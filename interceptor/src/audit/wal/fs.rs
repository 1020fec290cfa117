//! The few filesystem calls the WAL makes, behind a trait: production runs
//! them on `std::fs` (monomorphized, no dynamic dispatch), and the model
//! test on an in-memory filesystem that fails and crashes on purpose.

use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

/// An append-only file the WAL writes a segment to.
pub trait WalFile {
    /// Writes some prefix of `buf` (possibly short), as `write(2)` does.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Writes all of `buf`, retrying short and interrupted writes. On an
    /// error some prefix of `buf` may be in the file.
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `fdatasync(2)`.
    fn sync_data(&mut self) -> io::Result<()>;

    /// `fsync(2)`.
    fn sync_all(&mut self) -> io::Result<()>;

    /// Cuts the file to `len` bytes (takes a failed write's bytes back off).
    fn truncate(&mut self, len: u64) -> io::Result<()>;

    /// Another handle on the same file (`dup(2)`), to sync it with while
    /// the WAL goes on writing.
    fn try_clone(&self) -> io::Result<Self>
    where
        Self: Sized;
}

/// The directory operations of the WAL.
pub trait WalFs {
    /// The files this filesystem opens.
    type File: WalFile;

    /// `mkdir -p` with private permissions.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;

    /// Names of the entries directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// Creates `path`, failing if it exists, open for appending.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;

    /// Makes the entries created in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The whole content of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl WalFile for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }

    fn try_clone(&self) -> io::Result<Self> {
        File::try_clone(self)
    }
}

impl WalFs for OsFs {
    type File = File;

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        super::super::fsutil::create_private_dir(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        super::super::fsutil::sync_dir(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(path)?.read_to_end(&mut buf)?;
        Ok(buf)
    }
}
