//! The pins file on disk: private (0600, it says what each server offers),
//! replaced whole by rename, written only under `<file>.lock`.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

use nix::fcntl::{Flock, FlockArg};

use super::{FORMAT, PinFile};

/// Why the tool pin file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The file is not valid JSON.
    #[error("{path} is not a pins file: {source}")]
    Parse {
        /// The file's path.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    #[error(
        "{path}: format {found} is newer than this build understands ({FORMAT}); refusing to rewrite it"
    )]
    /// The file has a format version this agent does not know.
    Format {
        /// The file's path.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
    /// The file could not be locked.
    #[error("locking {path}: {source}")]
    Lock {
        /// The file's path.
        path: PathBuf,
        /// The lock error.
        source: nix::errno::Errno,
    },
    /// `repin` matched no server or tool (the message names the known ones).
    #[error("{0}")]
    NotFound(String),
}

/// Which file was read: a rename gives a new inode, so an edit within the
/// mtime granularity is still seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

impl FileStamp {
    /// `None` when the file does not exist (or cannot be looked at).
    pub(super) fn of(path: &Path) -> Option<Self> {
        fs::metadata(path).ok().map(|m| Self::from(&m))
    }

    fn from(m: &fs::Metadata) -> Self {
        Self {
            modified: m.modified().ok(),
            len: m.len(),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// The tool pin file on disk.
#[derive(Debug, Clone)]
pub struct PinStore {
    path: PathBuf,
}

impl PinStore {
    /// The pin file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The pin file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> PinError {
        PinError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The file as it is now; a missing file is an empty one.
    pub fn read(&self) -> Result<PinFile, PinError> {
        self.read_stamped().map(|(f, _)| f)
    }

    /// The file and the stamp of exactly what was read (fstat of the open
    /// file, not a second lookup that a rename could race).
    pub(super) fn read_stamped(&self) -> Result<(PinFile, Option<FileStamp>), PinError> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((PinFile::default(), None)),
            Err(e) => return Err(self.io(e)),
        };
        let stamp = FileStamp::from(&f.metadata().map_err(|e| self.io(e))?);
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(|e| self.io(e))?;
        let file: PinFile = serde_json::from_str(&text).map_err(|source| PinError::Parse {
            path: self.path.clone(),
            source,
        })?;
        if file.version > FORMAT {
            return Err(PinError::Format {
                path: self.path.clone(),
                found: file.version,
            });
        }
        Ok((file, Some(stamp)))
    }

    /// Read-modify-write under the lock; writes only if `f` changed
    /// something. A file that does not parse is an error, never replaced.
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut PinFile) -> Result<R, PinError>,
    ) -> Result<R, PinError> {
        self.update_stamped(f).map(|(r, _, _)| r)
    }

    /// `update`, also giving the file as written and its stamp (taken
    /// under the lock, so no other writer's file is mistaken for it).
    pub(super) fn update_stamped<R>(
        &self,
        f: impl FnOnce(&mut PinFile) -> Result<R, PinError>,
    ) -> Result<(R, PinFile, Option<FileStamp>), PinError> {
        let _lock = self.lock()?;
        let (mut file, mut stamp) = self.read_stamped()?;
        let before = file.clone();
        let r = f(&mut file)?;
        if file != before {
            file.version = FORMAT;
            self.write(&file)?;
            stamp = FileStamp::of(&self.path);
        }
        Ok((r, file, stamp))
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        }
    }

    /// A sibling file, not the pins file itself: the pins file is replaced
    /// by rename, and a lock on a replaced inode locks nothing.
    fn lock(&self) -> Result<Flock<File>, PinError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(self.dir())
            .map_err(|e| self.io(e))?;
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let path = PathBuf::from(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| PinError::Io {
                path: path.clone(),
                source,
            })?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, source)| PinError::Lock { path, source })
    }

    /// Temp file, fsync, rename, fsync of the directory: readers see the
    /// old file or the new one, never half of one. Called under the lock,
    /// so one temp name serves.
    fn write(&self, file: &PinFile) -> Result<(), PinError> {
        let mut bytes =
            serde_json::to_vec_pretty(file).map_err(|e| self.io(io::Error::other(e)))?;
        bytes.push(b'\n');
        let name = self
            .path
            .file_name()
            .ok_or_else(|| self.io(io::Error::other("pins_file has no file name")))?;
        let tmp = self.dir().join(format!(".{}.tmp", name.to_string_lossy()));
        // Left by a crash: its mode may not be ours.
        let _ = fs::remove_file(&tmp);
        let written = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &self.path))
            .and_then(|()| File::open(self.dir())?.sync_all());
        written.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io(e)
        })
    }
}
