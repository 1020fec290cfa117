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

use super::{Entry, PUBLIC_KEY_FILE, sha256_hex};

mod bucket;
mod source;
pub use bucket::Bucket;
pub use source::{Dir, Objects, entries};

/// The first thing wrong with an audit directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Break {
    /// The file where the chain breaks.
    pub path: String,
    /// Why the chain breaks there.
    pub reason: String,
}

fn brk(path: impl Into<String>, reason: impl Into<String>) -> Break {
    Break {
        path: path.into(),
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

/// One host's verdict: what its chain covered, or where it broke.
#[derive(Debug, Clone)]
pub struct HostVerdict {
    /// The host (its name under `manifest/`).
    pub host: String,
    /// Its chain's figures (one host's), or its first break.
    pub result: Result<Report, Break>,
}

/// Every host's verdict, and the objects under `events/` no entry lists.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// One per host, in name order.
    pub hosts: Vec<HostVerdict>,
    /// Objects under `events/` that no entry of any host lists.
    pub unlisted: Vec<Break>,
}

impl Verdict {
    /// The figures of the whole trail, or its first break (hosts in name
    /// order, then unlisted objects).
    pub fn into_result(self) -> Result<Report, Break> {
        let mut all = Report::default();
        for h in self.hosts {
            let r = h.result?;
            all.hosts.push(h.host);
            all.entries += r.entries;
            all.files += r.files;
            all.rows += r.rows;
            all.heads.extend(r.heads);
        }
        match self.unlisted.into_iter().next() {
            Some(b) => Err(b),
            None => Ok(all),
        }
    }
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
    let dir = Dir(audit_dir.to_path_buf());
    verify_objects(&dir, public_key, checkpoints)?.into_result()
}

/// Each host's chain in `objs` on its own, and which objects under
/// `events/` no entry lists. Errors that concern no one host: no
/// `manifest/`, nothing to verify, checkpoints that name no chain, or a
/// listing that fails.
pub fn verify_objects(
    objs: &dyn Objects,
    public_key: Option<&str>,
    checkpoints: &[Checkpoint],
) -> Result<Verdict, Break> {
    let hosts = objs
        .hosts()
        .map_err(|e| brk(objs.name("manifest"), format!("no manifest: {e}")))?;
    let events =
        (objs.list("events")).map_err(|e| brk(objs.name("events"), format!("cannot list: {e}")))?;
    if hosts.is_empty() && events.is_empty() {
        return Err(brk(
            objs.name(""),
            "nothing to verify: no manifest entries and no data files",
        ));
    }
    let anchors = anchors(objs, &hosts, checkpoints)?;
    let mut verdict = Verdict::default();
    let mut listed = BTreeSet::new();
    for host in hosts {
        let result = verify_host(objs, &host, public_key, anchors.get(&host), &mut listed);
        verdict.hosts.push(HostVerdict { host, result });
    }
    verdict.unlisted = (events.iter())
        .filter(|o| !listed.contains(*o))
        .map(|o| {
            brk(
                objs.name(o),
                "not in any manifest entry (added; Athena would read it)",
            )
        })
        .collect();
    Ok(verdict)
}

/// Checkpoints by host; a host-less one needs a single host, and each
/// must name a host that has a chain here.
fn anchors<'a>(
    objs: &dyn Objects,
    names: &[String],
    checkpoints: &'a [Checkpoint],
) -> Result<BTreeMap<String, &'a Checkpoint>, Break> {
    let manifest = objs.name("manifest");
    let mut out = BTreeMap::new();
    for c in checkpoints {
        let host = match (&c.host, names) {
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
                objs.name(&format!("manifest/{host}")),
                format!("checkpoint {c} names host {host:?}, whose chain is missing (deleted?)"),
            ));
        }
        if out.insert(host.clone(), c).is_some() {
            return Err(brk(manifest, format!("two checkpoints for host {host:?}")));
        }
    }
    Ok(out)
}

fn host_key(
    objs: &dyn Objects,
    host: &str,
    public_key: Option<&str>,
) -> Result<VerifyingKey, Break> {
    let dir = format!("manifest/{host}");
    let key_hex = match public_key {
        Some(k) => k.to_string(),
        None => objs
            .read(&format!("{dir}/{PUBLIC_KEY_FILE}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| brk(objs.name(&dir), format!("no public key: {e}")))?,
    };
    hex::decode(key_hex.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| brk(objs.name(&dir), "public key is not 32 bytes of hex"))
}

/// One host's chain: contiguous, signed, linked, anchored; its data files
/// hashed and added to `listed`. After a break, the files the rest of its
/// entries name are still added (unverified): they are accounted for, and
/// the break is the host's verdict.
fn verify_host(
    objs: &dyn Objects,
    host: &str,
    public_key: Option<&str>,
    anchor: Option<&&Checkpoint>,
    listed: &mut BTreeSet<String>,
) -> Result<Report, Break> {
    let dir = format!("manifest/{host}");
    let files = entries(objs, host).map_err(|e| brk(objs.name(&dir), e.to_string()))?;
    let checked = walk_chain(objs, host, public_key, anchor, &files, listed);
    if checked.is_err() {
        for (_, rel) in &files {
            let named = objs
                .read(rel)
                .ok()
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok()?.sealed.file);
            listed.extend(named);
        }
    }
    checked
}

fn walk_chain(
    objs: &dyn Objects,
    host: &str,
    public_key: Option<&str>,
    anchor: Option<&&Checkpoint>,
    files: &[(u64, String)],
    listed: &mut BTreeSet<String>,
) -> Result<Report, Break> {
    let key = host_key(objs, host, public_key)?;
    let first_seq = files.first().map_or(0, |f| f.0);
    check_start(objs, host, first_seq, anchor, files.last().map(|f| f.0))?;
    let mut report = Report::default();
    let mut prev = String::new();
    for (i, (seq, rel)) in files.iter().enumerate() {
        let at = |reason: String| brk(objs.name(rel), reason);
        if *seq != first_seq + i as u64 {
            return Err(at(format!(
                "entry {} is missing (deleted?)",
                first_seq + i as u64
            )));
        }
        let bytes = objs.read(rel).map_err(|e| at(format!("unreadable: {e}")))?;
        let e = signed_entry(&objs.name(rel), &bytes, &key)?;
        if e.seq != *seq {
            return Err(at(format!("names itself entry {} (moved?)", e.seq)));
        }
        if *seq == 0 && !e.prev.is_empty() {
            return Err(at("entry 0 has a previous-entry hash: not a genesis".into()));
        }
        if i > 0 && e.prev != prev {
            return Err(at(
                "previous-entry hash does not match (entries reordered, replaced or removed)"
                    .into(),
            ));
        }
        prev = sha256_hex(&bytes);
        if let Some(c) = anchor
            && c.seq == *seq
            && c.sha256 != prev
        {
            return Err(at(format!(
                "SHA-256 {prev} is not the held checkpoint {c} (chain replaced)"
            )));
        }
        report.entries += 1;
        if let (Some(file), Some(sum)) = (&e.sealed.file, &e.sealed.sha256) {
            check_file(objs, rel, *seq, file, sum)?;
            listed.insert(file.clone());
            report.files += 1;
            report.rows += e.sealed.rows;
        }
    }
    report.hosts.push(host.to_string());
    if let Some((seq, _)) = files.last() {
        report.heads.push(Checkpoint {
            host: Some(host.to_string()),
            seq: *seq,
            sha256: prev,
        });
    }
    Ok(report)
}

/// The data file entry `seq` (at `entry`) lists has the SHA-256 it names.
fn check_file(
    objs: &dyn Objects,
    entry: &str,
    seq: u64,
    file: &str,
    sum: &str,
) -> Result<(), Break> {
    let actual = objs.sha256(file).map_err(|err| {
        brk(
            objs.name(file),
            format!("listed in {} but unreadable: {err}", objs.name(entry)),
        )
    })?;
    if actual != sum {
        return Err(brk(
            objs.name(file),
            format!("SHA-256 differs from its manifest entry {seq} (modified)"),
        ));
    }
    Ok(())
}

/// The chain's first entry is its genesis (entry 0), or the held
/// checkpoint lies within what is there.
fn check_start(
    objs: &dyn Objects,
    host: &str,
    first: u64,
    anchor: Option<&&Checkpoint>,
    last: Option<u64>,
) -> Result<(), Break> {
    let entry = |seq: u64| objs.name(&format!("manifest/{host}/{seq:012}.json"));
    match (anchor, last) {
        (None, Some(_)) if first != 0 => Err(brk(
            entry(first),
            format!(
                "entries 0 to {} are missing: the chain starts at entry {first}, not at its \
                 genesis (removed?); verify from a checkpoint you hold (--checkpoint \
                 HOST:SEQ:SHA256)",
                first - 1
            ),
        )),
        (Some(c), Some(last)) if c.seq < first || c.seq > last => Err(brk(
            entry(c.seq),
            format!(
                "the held checkpoint {c} is not in the chain (entries {first}..={last} are): \
                 removed or truncated"
            ),
        )),
        (Some(c), None) => Err(brk(
            entry(c.seq),
            format!("the held checkpoint {c} is not in the chain (no entries): removed"),
        )),
        _ => Ok(()),
    }
}

fn signed_entry(name: &str, bytes: &[u8], key: &VerifyingKey) -> Result<Entry, Break> {
    let e: Entry =
        serde_json::from_slice(bytes).map_err(|e| brk(name, format!("not an entry: {e}")))?;
    let sig = hex::decode(&e.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| brk(name, "signature malformed"))?;
    key.verify(&e.signed_bytes(), &sig)
        .map_err(|_| brk(name, "signature does not verify (edited or forged)"))?;
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
