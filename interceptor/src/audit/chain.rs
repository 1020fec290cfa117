//! Tamper evidence, the way CloudTrail does log-file integrity.
//!
//! Every closed Parquet file gets a manifest entry: its path, SHA-256, row
//! count and time range, the SHA-256 of the previous entry's file, signed
//! with the agent's Ed25519 key. Entries are small immutable files,
//! `manifest/<host>/<seq:012>.json`, numbered without gaps. A period with
//! no events still gets an entry (no file, zero rows), so a deleted hour
//! shows as a hole, not as silence.
//!
//! What `verify` detects, from the files alone: a changed byte in a data
//! file (hash), a deleted data file (entry without file), an added object
//! of any name under `events/` (not listed by an entry: Athena reads every
//! object under the prefix), a deleted, reordered or edited entry
//! (sequence, previous-hash or signature break), and deleted oldest entries
//! (the chain is anchored: it starts at entry 0 with an empty `prev`, or at
//! a checkpoint the auditor holds). What it cannot: truncation of the
//! newest entries together with their files, unless the auditor holds a
//! checkpoint at or after the cut (each `verify` prints one per host), or
//! the last entry is known from elsewhere (Object Lock); and a forger
//! holding the private key. Pin the public key (`--public-key`) rather
//! than trusting the copy stored beside the entries.

use std::{
    collections::BTreeSet,
    io::{self, Read},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fsutil::{create_private_dir, write_atomic};

/// The file in the audit directory that holds the signing public key.
pub const PUBLIC_KEY_FILE: &str = "public-key.hex";

/// One link of the hash chain: a sealed file and what it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The link's position in the chain.
    pub seq: u64,
    /// The host that wrote the file.
    pub host: String,
    /// What the link vouches for (its keys stand at the top level, as
    /// signed).
    #[serde(flatten)]
    pub sealed: Sealed,
    /// When the entry was written (Unix microseconds).
    pub written_us: i64,
    /// SHA-256 (hex) of the previous entry's file; empty for the first.
    pub prev: String,
    /// Ed25519 (hex) over this entry serialized with `signature` empty.
    pub signature: String,
}

/// What one link vouches for: the file sealed from a WAL segment and the
/// rows it held. The writer says this much; [`Chain::append`] adds the
/// position, host, previous hash and signature. The default is a
/// heartbeat: no segment, no file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sealed {
    /// The WAL segment the file was made from (`None` for a heartbeat).
    pub segment: Option<u64>,
    /// Path relative to the audit directory (`events/dt=…/hour=…/….parquet`).
    pub file: Option<String>,
    /// SHA-256 of the sealed file, if it was written.
    pub sha256: Option<String>,
    /// How many rows the file holds.
    pub rows: i64,
    /// The time of the file's first event.
    pub first_event_us: Option<i64>,
    /// The time of the file's last event.
    pub last_event_us: Option<i64>,
}

impl Entry {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature.clear();
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Loads the signing key, or creates one (0600) if the file is absent.
pub fn load_or_create_key(path: &Path) -> io::Result<SigningKey> {
    match std::fs::read(path) {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            let raw = hex::decode(text.trim()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            let seed: [u8; 32] = raw.try_into().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: expected 32 bytes of hex", path.display()),
                )
            })?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
            if let Some(dir) = path.parent() {
                create_private_dir(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(path)?;
            io::Write::write_all(&mut f, hex::encode(seed).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new audit signing key");
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(e),
    }
}

/// The writer side: appends signed entries.
pub struct Chain {
    dir: PathBuf,
    host: String,
    key: SigningKey,
    next_seq: u64,
    prev: String,
    /// Segments already recorded (conversion is idempotent across crashes).
    pub segments: BTreeSet<u64>,
}

impl Chain {
    /// Opens `<audit>/manifest/<host>/`, continuing after its last entry.
    pub fn open(audit_dir: &Path, host: &str, key: SigningKey) -> io::Result<Self> {
        let dir = audit_dir.join("manifest").join(host);
        create_private_dir(&dir)?;
        let public = hex::encode(key.verifying_key().to_bytes());
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        if std::fs::read_to_string(&pub_path)
            .map(|s| s.trim().to_string())
            .ok()
            .as_deref()
            != Some(public.as_str())
        {
            write_atomic(&pub_path, public.as_bytes())?;
        }
        let mut chain = Self {
            dir,
            host: host.into(),
            key,
            next_seq: 0,
            prev: String::new(),
            segments: BTreeSet::new(),
        };
        for (seq, path) in entry_files(&chain.dir)? {
            let bytes = std::fs::read(&path)?;
            if let Ok(e) = serde_json::from_slice::<Entry>(&bytes)
                && let Some(s) = e.sealed.segment
            {
                chain.segments.insert(s);
            }
            chain.next_seq = seq + 1;
            chain.prev = sha256_hex(&bytes);
        }
        Ok(chain)
    }

    /// The signing public key, in hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Writes the next entry, for `sealed` at `written_us` (Unix
    /// microseconds); returns its path relative to the audit dir.
    pub fn append(&mut self, sealed: Sealed, written_us: i64) -> io::Result<PathBuf> {
        let mut e = Entry {
            seq: self.next_seq,
            host: self.host.clone(),
            sealed,
            written_us,
            prev: self.prev.clone(),
            signature: String::new(),
        };
        e.signature = hex::encode(self.key.sign(&e.signed_bytes()).to_bytes());
        let bytes = serde_json::to_vec_pretty(&e).map_err(io::Error::other)?;
        let name = format!("{:012}.json", e.seq);
        write_atomic(&self.dir.join(&name), &bytes)?;
        self.prev = sha256_hex(&bytes);
        self.next_seq += 1;
        if let Some(s) = e.sealed.segment {
            self.segments.insert(s);
        }
        Ok(PathBuf::from("manifest").join(&self.host).join(name))
    }
}

fn entry_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name.strip_suffix(".json").and_then(|n| n.parse().ok()) {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

mod verify;
pub use verify::{
    Break, Bucket, Checkpoint, Dir, HostVerdict, Objects, Report, Verdict, data_files, objects,
    verify, verify_from, verify_objects,
};

#[cfg(test)]
mod tests;
