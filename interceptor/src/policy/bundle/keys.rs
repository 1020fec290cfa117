//! Bundle signing keys on disk: the private key is the 32-byte Ed25519
//! seed in hex (like the audit chain's key), in a file only its owner may
//! read; the public key is its hex, in `<file>.pub` and in the agents'
//! `[policy] bundle_keys`.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use ed25519_dalek::SigningKey;

use super::{BundleError, key_id};

fn key_err(path: &Path, what: impl std::fmt::Display) -> BundleError {
    BundleError::Key(format!("{}: {what}", path.display()))
}

/// Reads a private key; refuses one that group or others may read.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    let meta = fs::metadata(path).map_err(|e| key_err(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_err(
            path,
            format!(
                "the private key is readable by others (mode {mode:03o}); run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    let text = fs::read_to_string(path).map_err(|e| key_err(path, e))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| key_err(path, "expected an Ed25519 private key: 64 hex digits"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public key file beside a private key: `<key>.pub`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Makes a key pair: `path` (0600, never overwritten) and `path.pub`.
/// Returns the public key's hex.
pub fn generate(path: &Path) -> Result<String, BundleError> {
    let mut seed = [0u8; 32];
    aws_lc_rs::rand::fill(&mut seed).map_err(|_| key_err(path, "no randomness"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_err(path, e))?;
    f.write_all(hex::encode(seed).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(path, e))?;
    let public = key_id(&key.verifying_key());
    let pubp = public_path(path);
    fs::write(&pubp, format!("{public}\n")).map_err(|e| key_err(&pubp, e))?;
    Ok(public)
}
