//! `audit verify`: the reader side of the chain.
//!
//! Anchoring. A chain whose oldest entries were deleted, together with
//! their files, is still a consistent chain: every `prev` of what is left
//! matches. So a chain is accepted only from an anchor: entry 0 with an
//! empty `prev` (its genesis), or a [`Checkpoint`] the auditor kept from an
//! earlier verify (the entry's number and the SHA-256 of its file, which is
//! what the next entry's `prev` commits to). Entries before a checkpoint
//! may be gone (retention); those present must chain into it.
//!
//! Completeness. Athena (and every other engine over the prefix) reads
//! every object under `events/`, whatever its name: a hidden file, a
//! `.tmp`, a `.json` or a file in a new subdirectory is read as data too.
//! So every file under `events/` must be listed by an entry, or verify
//! fails and names it. Symbolic links are objects, never followed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Serialize;

use super::{Entry, PUBLIC_KEY_FILE, entry_files, sha256_file, sha256_hex};

/// The first thing wrong with an audit directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Break {
    /// The file where the chain breaks.
    pub path: String,
    /// Why the chain breaks there.
    pub reason: String,
}

fn brk(path: &Path, reason: impl Into<String>) -> Break {
    Break {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// A point of one host's chain the auditor holds: entry `seq` of `host`,
/// whose file has SHA-256 `sha256`. Written `HOST:SEQ:SHA256`, or
/// `SEQ:SHA256` when the directory has a single host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The host whose chain the checkpoint is on, if given.
    pub host: Option<String>,
    /// The sequence number the checkpoint pins.
    pub seq: u64,
    /// The SHA-256 expected at that sequence number.
    pub sha256: String,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "{h}:")?;
        }
        write!(f, "{}:{}", self.seq, self.sha256)
    }
}

impl FromStr for Checkpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("checkpoint {s:?}: expected HOST:SEQ:SHA256 or SEQ:SHA256");
        let mut parts = s.trim().rsplitn(3, ':');
        let sha = parts.next().ok_or_else(bad)?;
        let seq = parts.next().ok_or_else(bad)?;
        let host = parts.next().map(str::to_string);
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{}: the SHA-256 is not 64 hex digits", bad()));
        }
        Ok(Self {
            host: host.filter(|h| !h.is_empty()),
            seq: seq.parse().map_err(|_| bad())?,
            sha256: sha.to_ascii_lowercase(),
        })
    }
}

/// What a successful verification covered.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The hosts whose chains were verified.
    pub hosts: Vec<String>,
    /// How many chain entries were verified.
    pub entries: u64,
    /// How many files were verified.
    pub files: u64,
    /// How many rows those files hold.
    pub rows: i64,
    /// Each host's newest entry, to keep for the next verify.
    pub heads: Vec<Checkpoint>,
}

/// Checks every host's chain from its genesis, and every object under
/// `events/`. `public_key`: the pinned key (hex); without it each host's
/// stored key.
pub fn verify(audit_dir: &Path, public_key: Option<&str>) -> Result<Report, Break> {
    verify_from(audit_dir, public_key, &[])
}

/// [`verify`], with chains anchored at `checkpoints` where given (a host
/// without one must start at its genesis).
pub fn verify_from(
    audit_dir: &Path,
    public_key: Option<&str>,
    checkpoints: &[Checkpoint],
) -> Result<Report, Break> {
    let manifest = audit_dir.join("manifest");
    let mut report = Report::default();
    let mut listed = BTreeSet::new();
    let hosts =
        std::fs::read_dir(&manifest).map_err(|e| brk(&manifest, format!("no manifest: {e}")))?;
    let mut host_dirs: Vec<PathBuf> = hosts
        .filter_map(|h| h.ok().map(|h| h.path()))
        .filter(|p| p.is_dir())
        .collect();
    host_dirs.sort();
    let anchors = anchors(&manifest, &host_dirs, checkpoints)?;
    for dir in &host_dirs {
        let host = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let key = host_key(dir, public_key)?;
        let anchor = anchors.get(&host);
        verify_host(audit_dir, dir, &key, anchor, &mut report, &mut listed)?;
        report.hosts.push(host);
    }
    for obj in objects(&audit_dir.join("events")) {
        if !listed.contains(&obj) {
            return Err(brk(
                &obj,
                "not in any manifest entry (added; Athena would read it)",
            ));
        }
    }
    Ok(report)
}

/// Checkpoints by host; a host-less one needs a single host, and each
/// must name a host that has a chain here.
fn anchors<'a>(
    manifest: &Path,
    host_dirs: &[PathBuf],
    checkpoints: &'a [Checkpoint],
) -> Result<BTreeMap<String, &'a Checkpoint>, Break> {
    let names: Vec<String> = host_dirs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let mut out = BTreeMap::new();
    for c in checkpoints {
        let host = match (&c.host, names.as_slice()) {
            (Some(h), _) => h.clone(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return Err(brk(
                    manifest,
                    format!(
                        "checkpoint {c} names no host, and there are {} hosts: write HOST:SEQ:SHA256",
                        names.len()
                    ),
                ));
            }
        };
        if !names.contains(&host) {
            return Err(brk(
                &manifest.join(&host),
                format!("checkpoint {c} names host {host:?}, whose chain is missing (deleted?)"),
            ));
        }
        if out.insert(host.clone(), c).is_some() {
            return Err(brk(manifest, format!("two checkpoints for host {host:?}")));
        }
    }
    Ok(out)
}

fn host_key(dir: &Path, public_key: Option<&str>) -> Result<VerifyingKey, Break> {
    let key_hex = match public_key {
        Some(k) => k.to_string(),
        None => std::fs::read_to_string(dir.join(PUBLIC_KEY_FILE))
            .map_err(|e| brk(dir, format!("no public key: {e}")))?,
    };
    hex::decode(key_hex.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| brk(dir, "public key is not 32 bytes of hex"))
}

/// One host's chain: contiguous, signed, linked, anchored; its data files
/// hashed and added to `listed`.
fn verify_host(
    audit_dir: &Path,
    dir: &Path,
    key: &VerifyingKey,
    anchor: Option<&&Checkpoint>,
    report: &mut Report,
    listed: &mut BTreeSet<PathBuf>,
) -> Result<(), Break> {
    let files = entry_files(dir).map_err(|e| brk(dir, e.to_string()))?;
    let first_seq = files.first().map_or(0, |f| f.0);
    check_start(dir, first_seq, anchor, files.last().map(|f| f.0))?;
    let mut prev = String::new();
    for (i, (seq, path)) in files.iter().enumerate() {
        if *seq != first_seq + i as u64 {
            return Err(brk(
                path,
                format!("entry {} is missing (deleted?)", first_seq + i as u64),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| brk(path, e.to_string()))?;
        let e = signed_entry(path, &bytes, key)?;
        if e.seq != *seq {
            return Err(brk(path, format!("names itself entry {} (moved?)", e.seq)));
        }
        if *seq == 0 && !e.prev.is_empty() {
            return Err(brk(
                path,
                "entry 0 has a previous-entry hash: not a genesis",
            ));
        }
        if i > 0 && e.prev != prev {
            return Err(brk(
                path,
                "previous-entry hash does not match (entries reordered, replaced or removed)",
            ));
        }
        prev = sha256_hex(&bytes);
        if let Some(c) = anchor
            && c.seq == *seq
            && c.sha256 != prev
        {
            return Err(brk(
                path,
                format!("SHA-256 {prev} is not the held checkpoint {c} (chain replaced)"),
            ));
        }
        report.entries += 1;
        if let (Some(file), Some(sum)) = (&e.sealed.file, &e.sealed.sha256) {
            let data = audit_dir.join(file);
            let actual = sha256_file(&data).map_err(|err| {
                brk(
                    &data,
                    format!("listed in {} but unreadable: {err}", path.display()),
                )
            })?;
            if &actual != sum {
                return Err(brk(
                    &data,
                    "SHA-256 differs from its manifest entry (modified)",
                ));
            }
            listed.insert(data);
            report.files += 1;
            report.rows += e.sealed.rows;
        }
    }
    if let Some((seq, _)) = files.last() {
        report.heads.push(Checkpoint {
            host: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            seq: *seq,
            sha256: prev,
        });
    }
    Ok(())
}

/// The chain's first entry is its genesis (entry 0), or the held
/// checkpoint lies within what is there.
fn check_start(
    dir: &Path,
    first: u64,
    anchor: Option<&&Checkpoint>,
    last: Option<u64>,
) -> Result<(), Break> {
    let entry = |seq: u64| dir.join(format!("{seq:012}.json"));
    match (anchor, last) {
        (None, Some(_)) if first != 0 => Err(brk(
            &entry(first),
            format!(
                "entries 0 to {} are missing: the chain starts at entry {first}, not at its \
                 genesis (removed?); verify from a checkpoint you hold (--checkpoint \
                 HOST:SEQ:SHA256)",
                first - 1
            ),
        )),
        (Some(c), Some(last)) if c.seq < first || c.seq > last => Err(brk(
            &entry(c.seq),
            format!(
                "the held checkpoint {c} is not in the chain (entries {first}..={last} are): \
                 removed or truncated"
            ),
        )),
        (Some(c), None) => Err(brk(
            &entry(c.seq),
            format!("the held checkpoint {c} is not in the chain (no entries): removed"),
        )),
        _ => Ok(()),
    }
}

fn signed_entry(path: &Path, bytes: &[u8], key: &VerifyingKey) -> Result<Entry, Break> {
    let e: Entry =
        serde_json::from_slice(bytes).map_err(|e| brk(path, format!("not an entry: {e}")))?;
    let sig = hex::decode(&e.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| brk(path, "signature malformed"))?;
    key.verify(&e.signed_bytes(), &sig)
        .map_err(|_| brk(path, "signature does not verify (edited or forged)"))?;
    Ok(e)
}

/// Every `.parquet` file below `dir` (what readers of the data open).
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    objects(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && !hidden(p))
        .collect()
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Every object below `dir`: each file, hidden or not, whatever its name,
/// and each symbolic link (not followed), in sorted order.
pub fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                _ => out.push(p),
            }
        }
    }
    out.sort();
    out
}
