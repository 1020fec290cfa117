//! Where `audit verify` reads a trail from: a local directory, or a bucket
//! prefix the uploader wrote (`bucket.rs`). Both name objects by their
//! path relative to the trail's root (`manifest/<host>/…`, `events/…`),
//! `/`-separated, as the uploader keys them.

use std::{io, path::PathBuf};

use super::{super::sha256_file, objects};

/// A trail's objects, read one at a time.
pub trait Objects {
    /// The hosts with a chain: the names under `manifest/`. An error when
    /// there is no `manifest/` at all.
    fn hosts(&self) -> io::Result<Vec<String>>;
    /// Every object below `dir` (relative, no trailing `/`), whatever its
    /// name, as relative paths in sorted order.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// The bytes of the object at `rel` (entries and keys: small).
    fn read(&self, rel: &str) -> io::Result<Vec<u8>>;
    /// The SHA-256 (hex) of the object at `rel`, read in chunks.
    fn sha256(&self, rel: &str) -> io::Result<String>;
    /// How a break names `rel`: a file path or an `s3://` URL.
    fn name(&self, rel: &str) -> String;
}

/// A trail in a local directory (`audit.dir`, or a copy synced from S3).
pub struct Dir(pub PathBuf);

impl Objects for Dir {
    fn hosts(&self) -> io::Result<Vec<String>> {
        let mut out: Vec<String> = std::fs::read_dir(self.0.join("manifest"))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(objects(&self.0.join(dir))
            .iter()
            .filter_map(|p| p.strip_prefix(&self.0).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect())
    }

    fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.0.join(rel))
    }

    fn sha256(&self, rel: &str) -> io::Result<String> {
        sha256_file(&self.0.join(rel))
    }

    fn name(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

/// The chain entries of `host` among `objs`: (seq, relative path), in
/// order. Other names beside them (the public key) are not entries.
pub fn entries(objs: &dyn Objects, host: &str) -> io::Result<Vec<(u64, String)>> {
    let dir = format!("manifest/{host}");
    let mut out: Vec<(u64, String)> = objs
        .list(&dir)?
        .into_iter()
        .filter_map(|rel| {
            let name = rel.strip_prefix(&dir)?.strip_prefix('/')?;
            let seq = name.strip_suffix(".json")?.parse().ok()?;
            Some((seq, rel))
        })
        .collect();
    out.sort();
    Ok(out)
}
