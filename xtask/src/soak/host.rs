//! The soak's footprint on the host: its network namespace, its pins,
//! its child processes; each removed or ended on drop, and what a run
//! killed outright left behind removed by the next.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A network namespace with `lo` up, deleted on drop.
pub struct NetNs(String);

impl NetNs {
    pub fn add(name: &str) -> Result<Self> {
        ip(&["netns", "add", name])?;
        let ns = Self(name.into());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Namespaces and pins of soak runs whose process is gone.
pub fn remove_stale() {
    let dead = |name: &str| {
        name.strip_prefix("mcpi-soak-")
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for dir in ["/sys/fs/bpf", "/run/netns"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !dead(&name) {
                continue;
            }
            eprintln!("==> soak: removing {dir}/{name} of an earlier run");
            if dir == "/run/netns" {
                let _ = ip(&["netns", "del", &name]);
            } else {
                remove_pins(&e.path());
            }
        }
    }
}

/// The pinned link first (that detaches the program), then the maps.
fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort_by_key(|p| !p.ends_with("link"));
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A child process killed on drop, its output in files.
pub struct Proc {
    name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self { name, child, log })
    }

    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if let Some(s) = self.child.try_wait()? {
                bail!("{} exited ({s}) before {needle:?}:\n{text}", self.name);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {limit:?}:\n{text}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then a bounded wait; SIGKILL on drop if still running.
    pub fn terminate(&mut self, limit: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while self.alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Detaches the agent's pins on drop, after the agent is gone.
pub struct Pins(pub PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        remove_pins(&self.0);
    }
}
