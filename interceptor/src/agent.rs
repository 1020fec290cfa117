//! Start order, reload and shutdown of `mcp-interceptor run`.
//!
//! Start: bind the proxy sockets, then (ebpf mode) load, register and attach
//! steering, then accept. SIGHUP re-reads the config file and applies the
//! intercept rules and fail mode to the live maps (no program reload).
//! SIGTERM/SIGINT: close the listeners (the kernel then drops them from the
//! SockMap and the pinned program applies the fail mode to new connections),
//! drain connections in flight for a bounded time, exit. The pins stay: see
//! `steer` for why.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpSocket},
    signal::unix::{SignalKind, signal},
    sync::watch,
};

mod notify;
mod policy_watch;

use crate::{
    admin::{
        self,
        metrics::{Metrics, MetricsPhase},
    },
    approval::{Approvals, phase::ApprovalPhase},
    audit::{Audit, AuditPhase},
    config::{Config, Mode},
    identity::Identity,
    mask::{Masker, phase::MaskPhase},
    mcp::McpHandler,
    pipeline::{Events, LifecycleEvent, LifecycleSink, Phase, Pipeline, TextMask, sink::JsonLines},
    policy::{phase::PolicyPhase, tool_pins::PinPhase},
    proxy::{self, Drain, Serving},
    steer::{self, Steering},
};

/// A held request waits at most this long beyond the approval timeout
/// (which decides first; this only bounds a phase that never answers).
const HOLD_SLACK: Duration = Duration::from_secs(30);

/// How long a stopping agent waits for connections in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

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
}

/// What outlives config reloads: pending approvals and grants, counters,
/// call budgets.
struct Stages {
    approvals: Arc<Approvals>,
    budgets: crate::policy::budget::Table,
    /// Tool and prompt names the servers listed, kept across reloads.
    known: Arc<crate::policy::names::Known>,
    metrics: Arc<Metrics>,
    /// How approvals mask what they store; replaced on reload so a changed
    /// `[mask]` applies to them as it does to the audit.
    approval_mask: Arc<RwLock<crate::approval::MaskFn>>,
    /// The one way events made outside an exchange (tool pins, approvals,
    /// policy loads, start and stop) reach the audit.
    events: Events,
}

/// The phases for a config, in pipeline order. The audit comes first so
/// that, when it cannot write, requests are refused before anything else.
fn phases(
    cfg: &Arc<Config>,
    audit: Option<&Audit>,
    policies: &policy_watch::Running,
    stages: &Stages,
) -> Result<Vec<Arc<dyn Phase>>, AgentError> {
    let approvals = &stages.approvals;
    let mut phases: Vec<Arc<dyn Phase>> = Vec::new();
    if let Some(a) = audit {
        phases.push(Arc::new(AuditPhase(a.clone())));
    }
    if !cfg.policy.files.is_empty() {
        phases.push(Arc::new(
            PolicyPhase::new(cfg.clone(), policies.policies.clone())
                .with_approvals(approvals.clone())
                .with_budget_table(&stages.budgets)
                .with_known(&stages.known),
        ));
    }
    // Tool pinning runs whether or not the audit does: `on_tool_change =
    // "block"` is enforcement and must not lapse with the audit. After
    // policy, so it fingerprints what callers may see and a caller who may
    // not use a tool never learns that it changed.
    phases.push(Arc::new(PinPhase::new(cfg.clone(), stages.events.clone())));
    // Masking after pinning (fingerprints are of what the server sent) and
    // before the sinks; its `prepare_record` runs before every `record`.
    if cfg.mask.enabled {
        let key = Masker::load_key(&cfg.mask_key_path()).map_err(AgentError::Mask)?;
        let masker = Masker::new(&cfg.mask, key).map_err(AgentError::Mask)?;
        phases.push(Arc::new(MaskPhase::new(Arc::new(masker))));
    }
    // After masking: a call waits for approval only once everything that
    // could refuse it has had its say.
    if !cfg.policy.files.is_empty() {
        phases.push(Arc::new(ApprovalPhase::new(cfg.clone(), approvals.clone())));
    }
    if let Some(path) = &cfg.events.jsonl {
        let sink = JsonLines::open(path).map_err(|source| AgentError::Events {
            path: path.clone(),
            source,
        })?;
        phases.push(Arc::new(sink));
    }
    phases.push(Arc::new(MetricsPhase(stages.metrics.clone())));
    Ok(phases)
}

/// Everything that serves connections for one config. Certificates, keys
/// and credentials are read here, so a reload with a broken one is refused
/// as a whole.
async fn serving(
    cfg: Arc<Config>,
    previous: Option<&McpHandler>,
    audit: Option<&Audit>,
    policies: &policy_watch::Running,
    stages: &Stages,
) -> Result<(Serving, McpHandler, Option<policy_watch::Loaded>), AgentError> {
    // Loaded here, swapped in by the caller only if everything else loads.
    let loaded = if cfg.policy.files.is_empty() {
        None
    } else {
        Some(policy_watch::load(&cfg.policy.files)?.check_mask_profiles(&cfg.mask)?)
    };
    let tls = proxy::tls::server(&cfg.tls)?;
    if tls.is_some() {
        tracing::info!("tls: {}", proxy::tls::plaintext_policy(&cfg.tls));
    }
    let upstream = proxy::upstream_for(&cfg)?;
    let identity = Arc::new(Identity::new(&cfg, previous.map(|p| p.identity().as_ref())).await?);
    let hold_limit = Duration::from_secs(cfg.approvals.hold_timeout_seconds) + HOLD_SLACK;
    let pipeline = Pipeline::new(phases(&cfg, audit, policies, stages)?, hold_limit);
    let keepalive = (!cfg.policy.files.is_empty())
        .then(|| Duration::from_secs(cfg.approvals.keepalive_seconds));
    let handler = match previous {
        Some(p) => McpHandler::with_sessions(pipeline, identity, p),
        None => McpHandler::new(pipeline, identity),
    }
    .with_keepalive(keepalive);
    Ok((
        Serving {
            config: cfg,
            handler: Arc::new(handler.clone()),
            upstream,
            tls,
        },
        handler,
        loaded,
    ))
}

/// Runs the agent until a stop signal. `config_path` is re-read on SIGHUP.
pub async fn run(config_path: PathBuf, cfg: Config) -> Result<(), AgentError> {
    // The audit opens (and recovers what a crash left) before any traffic.
    let upload_notify = Arc::new(tokio::sync::Notify::new());
    let audit = if cfg.audit.enabled {
        let notify = cfg.audit.s3.as_ref().map(|_| upload_notify.clone());
        Some(Audit::start(&cfg.audit, notify)?)
    } else {
        tracing::warn!("audit disabled (audit.enabled = false): exchanges are not recorded");
        None
    };
    let policies = policy_watch::empty();
    let mask_cell = Arc::new(RwLock::new(approval_mask(&cfg)?));
    let current_mask = mask_cell.clone();
    let mask: crate::approval::MaskFn = Arc::new(move |v: &serde_json::Value| {
        let f = current_mask
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        f(v)
    });
    let events = lifecycle_events(audit.as_ref(), &mask);
    let approvals = Approvals::open(&cfg, events.clone(), mask)?;
    approvals.spawn_sweeper();
    let stages = Stages {
        approvals: approvals.clone(),
        budgets: Default::default(),
        known: Default::default(),
        metrics: Arc::new(Metrics::default()),
        approval_mask: mask_cell,
        events,
    };
    let (first, mut handler, loaded) = serving(
        Arc::new(cfg.clone()),
        None,
        audit.as_ref(),
        &policies,
        &stages,
    )
    .await?;
    let drain = Drain::default();
    let sources = admin::metrics::Sources {
        audit: audit.clone(),
        approvals: approvals.clone(),
        pin_dir: (cfg.intercept.mode == Mode::Ebpf).then(|| cfg.intercept.pin_dir.clone()),
        connections: drain.clone(),
    };
    let admin_state = admin::State::new(
        handler.identity().clone(),
        &cfg.admin,
        stages.metrics.clone(),
        sources,
    );
    admin::serve_socket(&cfg.admin, admin_state.clone())?;
    if let Some(addr) = cfg.admin.listen {
        admin::serve_tcp(addr, proxy::tls::server(&cfg.tls)?, admin_state.clone()).await?;
    }
    policy_watch::install(&policies, loaded, &stages.events);
    if cfg.policy.files.is_empty() {
        tracing::warn!("no [policy] files: every identified caller may call anything");
    }
    let (cfg_tx, cfg_rx) = watch::channel(first);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut listeners = Vec::new();
    let mut steering = None;
    match cfg.intercept.mode {
        Mode::Ebpf => {
            let mut v4 = None;
            let mut v6 = None;
            for addr in &cfg.intercept.proxy_listen {
                let l = bind(*addr)?;
                if addr.is_ipv4() {
                    v4 = Some(l)
                } else {
                    v6 = Some(l)
                }
            }
            let s = Steering::attach(&cfg.intercept, v4.as_ref(), v6.as_ref())?;
            tracing::info!(
                pin_dir = %s.pin_dir().display(),
                ports = ?cfg.intercept.ports.iter().map(|r| r.port).collect::<Vec<_>>(),
                fail = ?cfg.intercept.fail,
                "steering attached"
            );
            steering = Some(s);
            listeners.extend(v4.into_iter().chain(v6));
        }
        Mode::Listen => {
            for rule in &cfg.intercept.ports {
                let addrs = if rule.listen.is_empty() {
                    vec![SocketAddr::from(([0, 0, 0, 0], rule.port))]
                } else {
                    rule.listen.clone()
                };
                for addr in addrs {
                    listeners.push(bind(addr)?);
                }
            }
        }
    }
    // The uploader stops after the audit's last file, not with the proxy.
    let (up_stop_tx, up_stop_rx) = watch::channel(false);
    let mut uploader = None;
    if let (Some(a), Some(s3)) = (&audit, &cfg.audit.s3) {
        let up = crate::audit::upload::Uploader::new(a.dir(), s3)
            .map_err(|e| AgentError::Upload(e.to_string()))?;
        uploader = Some(tokio::spawn(up.run(upload_notify.clone(), up_stop_rx)));
    }
    stages.events.emit(LifecycleEvent::new(
        "agent_start",
        format!("pid {} mode {:?}", std::process::id(), cfg.intercept.mode),
    ));
    for l in listeners {
        tracing::info!(listen = ?l.local_addr().ok(), mode = ?cfg.intercept.mode, "proxy listening");
        tokio::spawn(proxy::serve(
            l,
            cfg_rx.clone(),
            stop_rx.clone(),
            drain.clone(),
        ));
    }
    policy_watch::spawn(cfg_rx.clone(), policies.clone(), stages.events.clone());
    tracing::info!(pid = std::process::id(), "agent ready");

    let mut hup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
    // After the handlers: systemd may send SIGHUP (reload) as soon as it
    // reads READY=1, and SIGHUP's default action would end the agent.
    notify::ready();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify::reloading();
                if let Some(h) = reload(&config_path, &cfg_tx, steering.as_mut(), &handler, audit.as_ref(), &policies, &stages).await {
                    admin_state.update(h.identity().clone(), &cfg_tx.borrow().config.admin);
                    handler = h;
                    notify::status("running; config reloaded");
                } else {
                    notify::status("running the previous config: the reload was rejected (see the log)");
                }
                notify::ready();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify::stopping();

    tracing::info!(
        active = drain.active(),
        "stopping: listeners closed, draining"
    );
    let _ = stop_tx.send(true);
    // Held calls are refused now, not cut off at the drain limit; their
    // approvals can no longer release anything.
    approvals.interrupt_holds();
    let left = drain.wait(DRAIN_LIMIT).await;
    if let Some(s) = &steering
        && let Ok(counters) = s.counters()
    {
        for (port, c) in counters {
            tracing::info!(
                port,
                steered = c.steered,
                dropped = c.dropped,
                bypassed = c.bypassed,
                failed_open = c.failed_open,
                "steering counters"
            );
        }
    }
    stages.events.emit(LifecycleEvent::new(
        "agent_stop",
        format!("stopped; {left} connection(s) cut off after the drain limit"),
    ));
    if let Some(a) = &audit {
        // Closes and converts the open segment, then stops its threads.
        let a = a.clone();
        let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
    }
    if let Some(u) = uploader {
        let _ = up_stop_tx.send(true);
        // The uploader drains once more when told to stop; bounded. What is
        // left stays in the outbox for the next start.
        let _ = tokio::time::timeout(Duration::from_secs(10), u).await;
    }
    tracing::info!(
        cut_off = left,
        fail = ?cfg_tx.borrow().config.intercept.fail,
        "agent stopped; pinned steering stays (fail mode applies)"
    );
    Ok(())
}

/// Re-reads the config; applies what can change live, keeps the old config
/// (and says why) when the new one is invalid.
async fn reload(
    path: &Path,
    tx: &watch::Sender<Serving>,
    steering: Option<&mut Steering>,
    handler: &McpHandler,
    audit: Option<&Audit>,
    policies: &policy_watch::Running,
    stages: &Stages,
) -> Option<McpHandler> {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected; keeping the running config");
            return None;
        }
    };
    let old = tx.borrow().config.clone();
    if new.intercept.mode != old.intercept.mode
        || new.intercept.proxy_listen != old.intercept.proxy_listen
        || new.intercept.pin_dir != old.intercept.pin_dir
        || new.intercept.netns != old.intercept.netns
    {
        tracing::error!(
            "reload rejected: mode, proxy_listen, pin_dir and netns need a restart; \
             keeping the running config"
        );
        return None;
    }
    if new.intercept.mode == Mode::Listen && new.intercept.ports != old.intercept.ports {
        tracing::error!("reload rejected: listen-mode ports need a restart");
        return None;
    }
    if new.audit != old.audit {
        tracing::warn!("audit settings changed; they apply at the next restart");
    }
    let next_mask = match approval_mask(&new) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected; keeping the running config");
            return None;
        }
    };
    let (next, next_handler, loaded) = match serving(
        Arc::new(new.clone()),
        Some(handler),
        audit,
        policies,
        stages,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected; keeping the running config");
            return None;
        }
    };
    if let Some(s) = steering
        && let Err(e) = s.apply(&new.intercept)
    {
        tracing::error!(error = %e, "reload failed applying steering rules");
        return None;
    }
    policy_watch::install(policies, loaded, &stages.events);
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

/// The lifecycle events handle: into the audit (if on), names and messages
/// masked with the approvals' masker, which follows `[mask]` on reload.
fn lifecycle_events(audit: Option<&Audit>, mask: &crate::approval::MaskFn) -> Events {
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
fn approval_mask(cfg: &Config) -> Result<crate::approval::MaskFn, AgentError> {
    if !cfg.mask.enabled {
        return Ok(Arc::new(|v: &serde_json::Value| v.clone()));
    }
    let key = Masker::load_key(&cfg.mask_key_path()).map_err(AgentError::Mask)?;
    let masker = Arc::new(Masker::new(&cfg.mask, key).map_err(AgentError::Mask)?);
    Ok(Arc::new(move |v: &serde_json::Value| {
        let mut v = v.clone();
        masker
            .profile(None)
            .mask_json(&mut v, &mut Default::default());
        v
    }))
}

fn bind(addr: SocketAddr) -> Result<TcpListener, AgentError> {
    let err = |source| AgentError::Bind { addr, source };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    sock.listen(1024).map_err(err)
}
