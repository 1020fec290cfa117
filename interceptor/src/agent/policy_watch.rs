//! The running policy set: installed at start and reload, and reloaded
//! when its files change. A set that does not load is never installed; the
//! running one stays, and the log says why (never falls open).
//!
//! Each read of the files is stamped (path, size, mtime of every file)
//! before it starts, and the stamp is kept with what was installed: a poll
//! reloads whenever the files differ from the last read, including a
//! change made between the start-up load and the first poll.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use crate::{
    config::Mask as MaskConfig,
    pipeline::{Events, LifecycleEvent},
    policy::{
        Policies, PolicyError,
        bundle::{Origin, Origins},
        phase,
    },
    proxy::Serving,
};

/// What identifies the files' contents: path, size and mtime of every file
/// (directories: their entries).
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The running set, and the stamp of the files as last read.
#[derive(Clone)]
pub struct Running {
    pub policies: phase::Shared,
    /// Set by every install and every refused read: a poll reloads when
    /// the files differ from it.
    seen: Arc<Mutex<Option<Stamp>>>,
    /// Which bundle each installed set came from (shared with the audit).
    origins: Origins,
}

impl Running {
    fn seen(&self) -> std::sync::MutexGuard<'_, Option<Stamp>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version of the running set.
    #[cfg(test)]
    fn version(&self) -> String {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .version
            .clone()
    }
}

/// A set read from files, with the stamp taken just before the read.
pub struct Loaded {
    policies: Arc<Policies>,
    stamp: Stamp,
    /// The signed bundle the set came from, if any.
    origin: Option<Origin>,
}

impl Loaded {
    /// Refuses the set if a `@mask("...")` names no profile of `mask`.
    pub fn check_mask_profiles(self, mask: &MaskConfig) -> Result<Self, PolicyError> {
        self.policies
            .check_mask_profiles(|name| mask.has_profile(name))?;
        Ok(self)
    }
}

/// Reads and validates the set in `files`.
pub fn load(files: &[PathBuf]) -> Result<Loaded, PolicyError> {
    // Stamped first: a change during the read then differs from the stamp
    // at the next poll, which reads again.
    let stamp = stamp(files);
    Ok(Loaded {
        policies: Arc::new(Policies::load(files)?),
        stamp,
        origin: None,
    })
}

/// Reads and validates a signed bundle's policies (name, text).
pub fn load_bundle(sources: &[(String, String)], origin: Origin) -> Result<Loaded, PolicyError> {
    Ok(Loaded {
        policies: Arc::new(Policies::from_sources(sources)?),
        stamp: Stamp::new(),
        origin: Some(origin),
    })
}

/// Before any policy loads: an empty set, which denies everything (it is
/// only consulted when `[policy] files` is set, and then replaced first).
pub fn empty(origins: Origins) -> Running {
    let none = Policies::from_sources(&[]).expect("an empty policy set always loads");
    Running {
        policies: Arc::new(RwLock::new(Arc::new(none))),
        seen: Arc::default(),
        origins,
    }
}

/// Swaps `loaded` in and records it.
pub fn install(running: &Running, loaded: Option<Loaded>, events: &Events) {
    let Some(Loaded {
        policies: p,
        stamp,
        origin,
    }) = loaded
    else {
        return;
    };
    let (version, count) = (p.version.clone(), p.count);
    let from = origin.as_ref().map_or(String::new(), |o| {
        format!(", bundle {} signed by {}", o.version, o.signer)
    });
    if let Some(o) = origin {
        tracing::info!(bundle_version = o.version, signer = %o.signer, "policy bundle in force");
        // Before the swap: every row decided by the new set finds it.
        running.origins.record(&version, o);
    }
    *running.policies.write().unwrap_or_else(|e| e.into_inner()) = p;
    *running.seen() = Some(stamp);
    tracing::info!(policies = count, %version, "policy set installed");
    events.emit(LifecycleEvent::new(
        "policy_loaded",
        format!("{count} policies, version {version}{from}"),
    ));
}

fn stamp(paths: &[PathBuf]) -> Stamp {
    let mut out = Vec::new();
    for p in paths {
        let mut files = vec![p.clone()];
        if p.is_dir() {
            files = std::fs::read_dir(p)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.sort();
        }
        for f in files {
            let m = std::fs::metadata(&f).ok();
            out.push((
                f,
                m.as_ref().map_or(0, |m| m.len()),
                m.and_then(|m| m.modified().ok()),
            ));
        }
    }
    out
}

/// Reloads `files` if they differ from the last read; true when a new set
/// was installed. `mask`: the running config's, which `@mask` must name.
fn poll(running: &Running, files: &[PathBuf], mask: &MaskConfig, events: &Events) -> bool {
    let now = stamp(files);
    if running.seen().as_ref() == Some(&now) {
        return false;
    }
    match load(files).and_then(|l| l.check_mask_profiles(mask)) {
        Ok(loaded) => {
            install(running, Some(loaded), events);
            true
        }
        Err(e) => {
            // Remembered, so the refusal is logged once per change.
            *running.seen() = Some(now);
            tracing::error!(error = %e, "policy files changed but do not load; keeping the running policy set");
            events.emit(LifecycleEvent::new(
                "policy_rejected",
                format!("changed policy files refused: {e}"),
            ));
            false
        }
    }
}

/// Polls the current config's policy files every `reload_poll_seconds`.
pub fn spawn(cfg: watch::Receiver<Serving>, running: Running, events: Events) {
    tokio::spawn(async move {
        loop {
            let (files, every, mask) = {
                let c = &cfg.borrow().config;
                let p = &c.policy;
                (p.files.clone(), p.reload_poll_seconds, c.mask.clone())
            };
            if every == 0 || files.is_empty() {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            poll(&running, &files, &mask, &events);
            tokio::time::sleep(Duration::from_secs(every)).await;
        }
    });
}

#[cfg(test)]
mod tests;
