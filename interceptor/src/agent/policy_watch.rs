//! The running policy set: installed at start and reload, and reloaded
//! when its files change. A set that does not load is never installed; the
//! running one stays, and the log says why (never falls open).

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use crate::{
    audit::Audit,
    policy::{Policies, phase},
    proxy::Serving,
};

pub type Shared = phase::Shared;

/// Before any policy loads: an empty set, which denies everything (it is
/// only consulted when `[policy] files` is set, and then replaced first).
pub fn empty() -> Shared {
    let none = Policies::from_sources(&[]).expect("an empty policy set always loads");
    Arc::new(RwLock::new(Arc::new(none)))
}

/// Swaps `loaded` in and records it.
pub fn install(shared: &Shared, loaded: Option<Arc<Policies>>, audit: Option<&Audit>) {
    let Some(p) = loaded else { return };
    let (version, count) = (p.version.clone(), p.count);
    *shared.write().unwrap_or_else(|e| e.into_inner()) = p;
    tracing::info!(policies = count, %version, "policy set installed");
    if let Some(a) = audit {
        a.append(a.stamp().lifecycle(
            "policy_loaded",
            format!("{count} policies, version {version}"),
        ));
    }
}

/// What identifies the files' current contents: path, size and mtime of
/// every file (directories: their `*.cedar` entries).
fn stamp(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
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

/// Polls the current config's policy files every `reload_poll_seconds`.
pub fn spawn(cfg: watch::Receiver<Serving>, shared: Shared, audit: Option<Audit>) {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let (files, every) = {
                let c = &cfg.borrow().config;
                (c.policy.files.clone(), c.policy.reload_poll_seconds)
            };
            if every == 0 || files.is_empty() {
                last = None;
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            let now = stamp(&files);
            match &last {
                None => last = Some(now),
                Some(prev) if *prev != now => {
                    last = Some(now);
                    match Policies::load(&files) {
                        Ok(p) => install(&shared, Some(Arc::new(p)), audit.as_ref()),
                        Err(e) => {
                            tracing::error!(error = %e, "policy files changed but do not load; keeping the running policy set");
                            if let Some(a) = &audit {
                                a.append(a.stamp().lifecycle(
                                    "policy_rejected",
                                    format!("changed policy files refused: {e}"),
                                ));
                            }
                        }
                    }
                }
                Some(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(every)).await;
        }
    });
}
