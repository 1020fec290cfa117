//! The independent MCP implementations the e2e tests talk to, installed
//! into project-local folders:
//!
//! - `<root>/.venv`: a Python venv with `tests/peers/requirements.txt`
//!   (the official `mcp` SDK, which `tests/peers/mcp_client.py` drives);
//! - `<root>/.venv/duckdb-httpfs`: `tests/peers/requirements-httpfs.txt`
//!   (`pip install --target`): DuckDB 1.5 with its httpfs extension from
//!   PyPI, for the auditor reading a bucket over S3 (DuckDB 2.0 in the venv
//!   has no httpfs wheel yet, and nothing may be downloaded at run time);
//! - `<root>/tests/peers/node_modules`: `tests/peers/package-lock.json`
//!   (`@modelcontextprotocol/server-everything`, the reference server).
//!
//! Each install step runs only when its input file differs from the copy
//! kept beside the installed tree after the last successful install, so a
//! second run reads four small files and starts nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

const PEERS_DIR: &str = "tests/peers";
const VENV: &str = ".venv";
/// Copy of the requirements file of the last successful `pip install`.
const PY_STAMP: &str = ".requirements.txt.installed";
/// Copy of package.json + package-lock.json of the last successful `npm ci`;
/// inside node_modules, so `npm ci` (which empties it) also drops the stamp.
const NODE_STAMP: &str = ".mcp-interceptor-lock.installed";
/// Must exist beside the stamp (a hand-pruned node_modules is reinstalled).
const NODE_MARKER: &str = "@modelcontextprotocol/server-everything/package.json";

pub fn install(root: &Path) -> Result<()> {
    python(root)?;
    httpfs_reader(root)?;
    node(root)?;
    Ok(())
}

fn python(root: &Path) -> Result<()> {
    let venv = root.join(VENV);
    let py = venv.join("bin/python");
    let requirements = root.join(PEERS_DIR).join("requirements.txt");
    let wanted =
        fs::read(&requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join(PY_STAMP);

    // A venv whose interpreter no longer starts (its base Python moved or
    // was upgraded) is rebuilt from scratch.
    let usable = Command::new(&py)
        .args(["-c", "import sys"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        if venv.exists() {
            eprintln!("==> setup: {VENV} is broken, recreating it");
            fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
        }
        eprintln!("==> setup: creating python venv {VENV}");
        let python3 = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        crate::run_in(root, Command::new(python3).args(["-m", "venv"]).arg(&venv))?;
    } else if fs::read(&stamp).is_ok_and(|have| have == wanted) {
        eprintln!("==> setup: python peers present ({VENV})");
        return Ok(());
    }

    eprintln!("==> setup: installing python peers from {PEERS_DIR}/requirements.txt");
    // Drop the stamp first: an interrupted install must not look complete.
    remove_if_exists(&stamp)?;
    pip_install(root, None, &requirements)?;
    write_atomically(&stamp, &wanted)
}

/// `pip install -r requirements` with the venv's pip, into `target`
/// (`--target`) when given.
fn pip_install(root: &Path, target: Option<&Path>, requirements: &Path) -> Result<()> {
    let mut pip = Command::new(root.join(VENV).join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
    ]);
    if let Some(t) = target {
        pip.arg("--target").arg(t);
    }
    crate::run_in(root, pip.arg("-r").arg(requirements))
}

/// `.venv/duckdb-httpfs`, a `pip install --target` of
/// requirements-httpfs.txt with the venv's pip (after [`python`]).
fn httpfs_reader(root: &Path) -> Result<()> {
    let dir = root.join(VENV).join("duckdb-httpfs");
    let requirements = root.join(PEERS_DIR).join("requirements-httpfs.txt");
    let wanted =
        fs::read(&requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = dir.join(".requirements-httpfs.txt.installed");
    if fs::read(&stamp).is_ok_and(|have| have == wanted) {
        eprintln!("==> setup: DuckDB httpfs reader present ({VENV}/duckdb-httpfs)");
        return Ok(());
    }
    eprintln!("==> setup: installing the DuckDB httpfs reader into {VENV}/duckdb-httpfs");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    pip_install(root, Some(&dir), &requirements)?;
    write_atomically(&stamp, &wanted)
}

fn node(root: &Path) -> Result<()> {
    let dir = root.join(PEERS_DIR);
    let lock = dir.join("package-lock.json");
    let modules = dir.join("node_modules");
    let stamp = modules.join(NODE_STAMP);

    let manifest = fs::read(dir.join("package.json"))
        .with_context(|| format!("reading {PEERS_DIR}/package.json"))?;
    let locked = match fs::read(&lock) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", lock.display())),
    };
    if let Some(locked) = &locked
        && modules.join(NODE_MARKER).is_file()
        && fs::read(&stamp).is_ok_and(|have| have == stamp_contents(&manifest, locked))
    {
        eprintln!("==> setup: node peers present ({PEERS_DIR}/node_modules)");
        return Ok(());
    }

    remove_if_exists(&stamp)?;
    let verb = if locked.is_some() { "ci" } else { "install" };
    eprintln!("==> setup: installing node peers (npm {verb} in {PEERS_DIR})");
    crate::run_in(
        &dir,
        Command::new("npm").args([verb, "--no-audit", "--no-fund", "--loglevel=error"]),
    )?;
    // `npm install` has just written the lock; record what is installed.
    let locked = fs::read(&lock).with_context(|| format!("reading {}", lock.display()))?;
    write_atomically(&stamp, &stamp_contents(&manifest, &locked))
}

fn stamp_contents(manifest: &[u8], lock: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(manifest.len() + lock.len() + 1);
    out.extend_from_slice(manifest);
    out.push(0);
    out.extend_from_slice(lock);
    out
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
