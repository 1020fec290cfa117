//! SIGHUP: re-read the config and apply what can change live. A config
//! that does not load, or that changes what only a restart can, is refused
//! as a whole and the running one stays (the log says why).

use std::{fmt::Display, path::Path, sync::Arc};

use tokio::sync::watch;

use super::{policy_watch, serving::serving, start::Stages, start::approval_mask};
use crate::{
    config::{Config, Mode},
    mcp::McpHandler,
    proxy::Serving,
    steer::Steering,
};

/// Re-reads the config; applies what can change live, keeps the old config
/// (and says why) when the new one is invalid. The new handler, if any.
pub(super) async fn reload(
    path: &Path,
    tx: &watch::Sender<Serving>,
    steering: Option<&mut Steering>,
    handler: &McpHandler,
    stages: &Stages,
) -> Option<McpHandler> {
    let new = Config::load(path).map_err(rejected).ok()?;
    // A signed bundle's settings take the place of the local ones.
    let new = stages.bundle.effective(new).map_err(rejected).ok()?;
    let old = tx.borrow().config.clone();
    if !live(&old, &new) {
        return None;
    }
    if new.audit != old.audit {
        tracing::warn!("audit settings changed; they apply at the next restart");
    }
    let next_mask = approval_mask(&new).map_err(rejected).ok()?;
    let (next, next_handler, loaded) = serving(Arc::new(new.clone()), Some(handler), stages)
        .await
        .map_err(rejected)
        .ok()?;
    if let Some(s) = steering
        && let Err(e) = s.apply(&new.intercept)
    {
        tracing::error!(error = %e, "reload failed applying steering rules");
        return None;
    }
    policy_watch::install(&stages.policies, loaded, &stages.events);
    *stages
        .approval_mask
        .write()
        .unwrap_or_else(|p| p.into_inner()) = next_mask;
    tracing::info!(
        ports = ?new.intercept.ports.iter().map(|r| r.port).collect::<Vec<_>>(),
        "config reloaded"
    );
    let _ = tx.send(next);
    Some(next_handler)
}

/// Whether `new` differs from `old` only in what applies live; logs why
/// not.
fn live(old: &Config, new: &Config) -> bool {
    let (o, n) = (&old.intercept, &new.intercept);
    if n.mode != o.mode
        || n.proxy_listen != o.proxy_listen
        || n.pin_dir != o.pin_dir
        || n.netns != o.netns
    {
        tracing::error!(
            "reload rejected: mode, proxy_listen, pin_dir and netns need a restart; \
             keeping the running config"
        );
        return false;
    }
    let (op, np) = (&old.policy, &new.policy);
    if (np.source.as_ref(), &np.bundle_keys, &np.bundle_cache)
        != (op.source.as_ref(), &op.bundle_keys, &op.bundle_cache)
    {
        tracing::error!(
            "reload rejected: policy.source, bundle_keys and bundle_cache need a restart"
        );
        return false;
    }
    if n.mode == Mode::Listen && n.ports != o.ports {
        tracing::error!("reload rejected: listen-mode ports need a restart");
        return false;
    }
    true
}

/// Logs a refused reload.
fn rejected(error: impl Display) {
    tracing::error!(error = %error, "reload rejected; keeping the running config");
}
