//! The first step: the audit, and what outlives config reloads (approvals,
//! budgets, counters, the lifecycle events handle), before any traffic.
//! Also the audit's uploader, which stops after the audit's last file.

use std::sync::{Arc, RwLock};

use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use super::{AgentError, bundle_watch, policy_watch};
use crate::{
    admin::metrics::Metrics,
    approval::{Approvals, MaskFn},
    audit::{Audit, upload},
    config::Config,
    mask::Masker,
    pipeline::{Events, LifecycleSink, TextMask},
};

/// What outlives config reloads: the audit, the running policy set,
/// pending approvals and grants, counters, call budgets.
pub(super) struct Stages {
    /// The audit log; `None` when `audit.enabled = false`.
    pub audit: Option<Audit>,
    /// Woken when the audit has a file for the uploader.
    pub upload_notify: Arc<Notify>,
    /// The running policy set, replaced by reloads and the file watcher.
    pub policies: policy_watch::Running,
    /// The signed policy bundle in force (`[policy] source`).
    pub bundle: bundle_watch::Current,
    /// Pending approvals and grants.
    pub approvals: Arc<Approvals>,
    /// Call budgets, which a reload does not refill.
    pub budgets: crate::policy::budget::Table,
    /// Tool and prompt names the servers listed, kept across reloads.
    pub known: Arc<crate::policy::names::Known>,
    /// Counters the metrics endpoint exports.
    pub metrics: Arc<Metrics>,
    /// How approvals mask what they store; replaced on reload so a changed
    /// `[mask]` applies to them as it does to the audit.
    pub approval_mask: Arc<RwLock<MaskFn>>,
    /// The one way events made outside an exchange (tool pins, approvals,
    /// policy loads, start and stop) reach the audit.
    pub events: Events,
}

/// Opens the audit (recovering what a crash left), then the approvals that
/// write through it.
pub(super) fn start_audit(cfg: &Config) -> Result<Stages, AgentError> {
    // Said before anything runs: these controls will read short of met in
    // `report nist` whatever traffic comes, and the fix is in the config.
    for g in crate::config::evidence::gaps(cfg) {
        tracing::warn!(control = g.control, "no evidence for {g}");
    }
    let upload_notify = Arc::new(Notify::new());
    let audit = if cfg.audit.enabled {
        let notify = cfg.audit.s3.as_ref().map(|_| upload_notify.clone());
        Some(Audit::start(&cfg.audit, notify)?)
    } else {
        tracing::warn!("audit disabled (audit.enabled = false): exchanges are not recorded");
        None
    };
    let origins = audit
        .as_ref()
        .map(Audit::bundle_origins)
        .unwrap_or_default();
    let policies = policy_watch::empty(origins);
    let approval_mask = Arc::new(RwLock::new(approval_mask(cfg)?));
    let current_mask = approval_mask.clone();
    let mask: MaskFn = Arc::new(move |v: &serde_json::Value| {
        let f = current_mask
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        f(v)
    });
    let events = lifecycle_events(audit.as_ref(), &mask);
    let approvals = Approvals::open(cfg, events.clone(), mask)?;
    approvals.spawn_sweeper();
    Ok(Stages {
        audit,
        upload_notify,
        policies,
        bundle: Default::default(),
        approvals,
        budgets: Default::default(),
        known: Default::default(),
        metrics: Arc::new(Metrics::default()),
        approval_mask,
        events,
    })
}

/// The lifecycle events handle: into the audit (if on), names and messages
/// masked with the approvals' masker, which follows `[mask]` on reload.
fn lifecycle_events(audit: Option<&Audit>, mask: &MaskFn) -> Events {
    let mask = mask.clone();
    let text: TextMask =
        Arc::new(
            move |s: &str| match mask(&serde_json::Value::String(s.to_owned())) {
                serde_json::Value::String(m) => (m != s).then_some(m),
                _ => Some(String::new()),
            },
        );
    let sink = audit.map(|a| Arc::new(a.clone()) as Arc<dyn LifecycleSink>);
    Events::new(sink, Some(text))
}

/// What approvals store and show of arguments: masked like the audit.
pub(super) fn approval_mask(cfg: &Config) -> Result<MaskFn, AgentError> {
    if !cfg.mask.enabled {
        return Ok(Arc::new(|v: &serde_json::Value| v.clone()));
    }
    let masker = Arc::new(masker(cfg)?);
    Ok(Arc::new(move |v: &serde_json::Value| {
        let mut v = v.clone();
        masker
            .profile(None)
            .mask_json(&mut v, &mut Default::default());
        v
    }))
}

/// The masker `[mask]` describes, with its key.
pub(super) fn masker(cfg: &Config) -> Result<Masker, AgentError> {
    let key = Masker::load_key(&cfg.mask_key_path()).map_err(AgentError::Mask)?;
    Masker::new(&cfg.mask, key).map_err(AgentError::Mask)
}

/// The audit's S3 uploader, running until told to stop.
pub(super) struct Uploader {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Uploader {
    /// Starts the uploader if the audit is on and `audit.s3` is set.
    pub fn spawn(cfg: &Config, stages: &Stages) -> Result<Option<Self>, AgentError> {
        let (Some(audit), Some(s3)) = (&stages.audit, &cfg.audit.s3) else {
            return Ok(None);
        };
        let up = upload::Uploader::new(audit.dir(), s3)
            .map_err(|e| AgentError::Upload(e.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(up.run(stages.upload_notify.clone(), stop_rx));
        Ok(Some(Self { stop, task }))
    }

    /// Stops it after one more bounded drain; what is left stays in the
    /// outbox for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
    }
}
