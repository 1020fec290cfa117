//! The bundle at start (source, else cache, else refuse to start) and the
//! poll that follows.

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::watch;

use super::{Active, Current, Source, SourceError};
use crate::{
    admin::metrics::Metrics,
    agent::AgentError,
    config::Config,
    pipeline::{Events, LifecycleEvent},
    proxy::Serving,
};

/// Logs, counts and audits a refused bundle.
fn refused(e: &SourceError, metrics: &Metrics, events: &Events) {
    metrics.bundle_refused(e.reason());
    tracing::error!(error = %e, reason = e.reason(), "policy bundle refused; keeping the one in force");
    events.emit(LifecycleEvent::new(
        "policy_bundle_rejected",
        format!("policy bundle refused ({}): {e}", e.reason()),
    ));
}

fn taken(a: &Active, metrics: &Metrics, from: &str) {
    let v = &a.verified;
    metrics.bundle_installed(v.manifest.version);
    tracing::info!(version = v.manifest.version, signer = %v.signer, from, "policy bundle taken");
}

/// At start: the bundle from `cfg`'s source, else the cached last good
/// one (checked again), else an error naming the fix. Returns the source
/// for [`spawn`], and the ETag of what was fetched.
pub async fn first(
    cfg: &Config,
    config_path: &Path,
    current: &Current,
    metrics: &Metrics,
    events: &Events,
) -> Result<Option<(Source, Option<String>)>, AgentError> {
    let fail = |why: String| AgentError::Bundle(why);
    let Some(src) = Source::new(cfg, config_path).map_err(|e| fail(e.to_string()))? else {
        return Ok(None);
    };
    let cached = match std::fs::read(&src.cache) {
        Ok(bytes) => match src.check(&bytes, None) {
            Ok(a) => Some(a),
            Err(e) => {
                refused(&e, metrics, events);
                None
            }
        },
        Err(_) => None,
    };
    let running = cached.as_ref().map(|a| a.verified.manifest.version);
    let (fetched, etag) = match src.fetch(None).await {
        Ok(Some((bytes, etag))) => {
            let same = cached.as_ref().map(|a| a.digest) == Some(sha(&bytes));
            let r = if same { Err(None) } else { Ok(bytes) };
            (r, etag)
        }
        Ok(None) => (Err(None), None),
        Err(e) => (Err(Some(e)), None),
    };
    let from_source = match fetched {
        Ok(bytes) => match src.check(&bytes, running) {
            Ok(a) => {
                src.keep(&bytes);
                Some(a)
            }
            Err(e) => {
                refused(&e, metrics, events);
                None
            }
        },
        Err(Some(e)) => {
            metrics.bundle_refused(e.reason());
            tracing::error!(error = %e, "policy bundle source unreachable at start");
            None
        }
        Err(None) => None,
    };
    let (active, from) = match (from_source, cached) {
        (Some(a), _) => (a, "source"),
        (None, Some(a)) => (a, "cache"),
        (None, None) => {
            return Err(fail(format!(
                "no good policy bundle: none could be taken from {} and no good one is cached at {}. \
                 Fix: make the source reachable (endpoint, credentials), publish a bundle signed by a \
                 key in [policy] bundle_keys with `mcp-interceptor policy publish DIR --key KEY --to {}`, \
                 or use local [policy] files",
                src.url,
                src.cache.display(),
                cfg.policy.source.as_deref().unwrap_or_default(),
            )));
        }
    };
    taken(&active, metrics, from);
    // Taken before serving: not news for the agent's loop.
    current.set(active);
    Ok(Some((src, etag)))
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// One poll: fetch if the ETag moved; take or refuse what came. Returns
/// the ETag now seen (a refused one is logged once, not at every poll).
async fn poll(
    src: &Source,
    etag: Option<String>,
    current: &Current,
    metrics: &Metrics,
    events: &Events,
) -> Option<String> {
    let (bytes, tag) = match src.fetch(etag.as_deref()).await {
        Ok(Some(got)) => got,
        Ok(None) => return etag,
        Err(e) => {
            metrics.bundle_refused(e.reason());
            tracing::warn!(error = %e, "policy bundle source unreachable; keeping the one in force");
            return etag;
        }
    };
    let running = current.get();
    if running.as_ref().map(|a| a.digest) == Some(sha(&bytes)) {
        return tag;
    }
    match src.check(&bytes, running.map(|a| a.verified.manifest.version)) {
        Ok(a) => {
            src.keep(&bytes);
            taken(&a, metrics, "source");
            current.set(a);
            current.changed.notify_one();
        }
        Err(e) => refused(&e, metrics, events),
    }
    tag
}

/// Polls the source every `reload_poll_seconds` of the running config.
pub fn spawn(
    (src, etag): (Source, Option<String>),
    cfg: watch::Receiver<Serving>,
    current: Current,
    metrics: Arc<Metrics>,
    events: Events,
) {
    tokio::spawn(async move {
        let mut etag = etag;
        loop {
            let every = cfg.borrow().config.policy.reload_poll_seconds;
            if every == 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            tokio::time::sleep(Duration::from_secs(every)).await;
            etag = poll(&src, etag, &current, &metrics, &events).await;
        }
    });
}
