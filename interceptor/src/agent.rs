//! Start order, reload and shutdown of `mcp-interceptor run`.
//!
//! Start: open the audit, build the first config's handler and the admin
//! API, bind the proxy sockets, then (ebpf mode) load, register and attach
//! steering, then accept. SIGHUP re-reads the config file and applies the
//! intercept rules and fail mode to the live maps (no program reload).
//! SIGTERM/SIGINT: close the listeners (the kernel then drops them from the
//! SockMap and the pinned program applies the fail mode to new
//! connections), drain connections in flight for a bounded time, seal the
//! audit, exit. The pins stay: see `steer` for why.
//!
//! Each step of [`run`] has its file: `start` (the audit and what outlives
//! reloads), `serving` (one config's handler and phases), `bind` (sockets
//! and steering), `serve` (accept, and reload on SIGHUP: `reload`),
//! `shutdown`; `watchdog` pings systemd while serving works.

use std::{net::SocketAddr, path::PathBuf};

mod bind;
pub mod bundle_watch;
pub mod heartbeat;
mod notify;
mod policy_watch;
mod reload;
mod serve;
mod serving;
mod shutdown;
mod start;
mod watchdog;

use crate::{admin, config::Config, steer};

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The proxy listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address it tried to bind.
        addr: SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Attaching or configuring eBPF steering failed.
    #[error(transparent)]
    Steer(#[from] steer::SteerError),
    /// Installing a signal handler failed.
    #[error("installing signal handler: {0}")]
    Signal(std::io::Error),
    /// The JSON-lines event file could not be opened.
    #[error("opening events file {path}: {source}")]
    Events {
        /// The event file's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The audit log could not be opened or written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Uploading the audit files to S3 failed.
    #[error("S3 upload: {0}")]
    Upload(String),
    /// The TLS configuration could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::proxy::tls::TlsError),
    /// An upstream credential could not be loaded.
    #[error("upstream credential: {0}")]
    Credential(#[from] crate::identity::credential::CredentialError),
    /// The policies could not be loaded.
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// The masking configuration is invalid.
    #[error("mask: {0}")]
    Mask(crate::mask::MaskError),
    /// The approval store could not be opened.
    #[error("approvals: {0}")]
    Approvals(#[from] crate::approval::ApprovalError),
    /// The admin API could not start.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// No good signed policy bundle (`[policy] source`), or one unusable.
    #[error("policy bundle: {0}")]
    Bundle(String),
}

/// Runs the agent until a stop signal. `config_path` is re-read on SIGHUP.
pub async fn run(config_path: PathBuf, cfg: Config) -> Result<(), AgentError> {
    // The audit opens (and recovers what a crash left) before any traffic.
    let stages = start::start_audit(&cfg)?;
    let (bundle, metrics, events) = (&stages.bundle, &stages.metrics, &stages.events);
    let watched = bundle_watch::first(&cfg, &config_path, bundle, metrics, events).await?;
    let cfg = (bundle.effective(cfg)).map_err(|e| AgentError::Bundle(e.to_string()))?;
    let first = serving::first(&cfg, &stages).await?;
    let bound = bind::bind(&cfg.intercept)?;
    let (listeners, steering) = bind::attach(&cfg.intercept, bound)?;
    let uploader = start::Uploader::spawn(&cfg, &stages)?;
    let beat = heartbeat::spawn(
        cfg.audit.heartbeat_seconds,
        stages.policies.policies.clone(),
        events.clone(),
        steering.as_ref().map(|s| s.pin_dir().to_path_buf()),
    );
    let mut agent = serve::serve(config_path, &cfg, first, listeners, steering, &stages);
    if let Some(w) = watched {
        let rx = agent.serving.subscribe();
        bundle_watch::spawn(w, rx, bundle.clone(), metrics.clone(), events.clone());
    }
    let stopped = agent.until_stopped(&stages).await;
    // No beat after the audit's last file.
    if let Some(b) = beat {
        b.abort();
    }
    stopped?;
    shutdown::shutdown(agent, uploader, &stages).await;
    Ok(())
}
