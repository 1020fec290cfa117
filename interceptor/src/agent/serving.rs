//! What serves connections for one config: its handler and the phases of
//! its pipeline, built at start and again at each reload; and, at start,
//! the admin API over them.

use std::{sync::Arc, time::Duration};

use super::{
    AgentError, policy_watch,
    start::{Stages, masker},
};
use crate::{
    admin::{
        self,
        metrics::{MetricsPhase, Sources},
    },
    approval::phase::ApprovalPhase,
    audit::AuditPhase,
    config::{Config, Mode},
    identity::Identity,
    mask::phase::MaskPhase,
    mcp::McpHandler,
    pipeline::{Phase, PhaseSlot, Pipeline, sink::JsonLines},
    policy::{phase::PolicyPhase, tool_pins::PinPhase},
    proxy::{self, Drain, Serving},
};

/// A held request waits at most this long beyond the approval timeout
/// (which decides first; this only bounds a phase that never answers).
const HOLD_SLACK: Duration = Duration::from_secs(30);

/// The first config's serving state, and the admin API serving over it.
pub(super) struct First {
    /// What the proxy serves with.
    pub serving: Serving,
    /// The MCP handler, which the next reload builds on.
    pub handler: McpHandler,
    /// The admin API's state, updated on reload.
    pub admin: Arc<admin::State>,
    /// Connections in flight.
    pub drain: Drain,
}

/// Builds the first config's serving state, starts the admin API, and
/// installs the policy set.
pub(super) async fn first(cfg: &Config, stages: &Stages) -> Result<First, AgentError> {
    let (serving, handler, loaded) = serving(Arc::new(cfg.clone()), None, stages).await?;
    let drain = Drain::default();
    let sources = Sources {
        audit: stages.audit.clone(),
        approvals: stages.approvals.clone(),
        pin_dir: (cfg.intercept.mode == Mode::Ebpf).then(|| cfg.intercept.pin_dir.clone()),
        connections: drain.clone(),
    };
    let state = admin::State::new(
        handler.identity().clone(),
        &cfg.admin,
        stages.metrics.clone(),
        sources,
    );
    admin::serve_socket(&cfg.admin, state.clone())?;
    if let Some(addr) = cfg.admin.listen {
        admin::serve_tcp(addr, proxy::tls::server(&cfg.tls)?, state.clone()).await?;
    }
    policy_watch::install(&stages.policies, loaded, &stages.events);
    if !cfg.policy.enforced() {
        tracing::warn!("no [policy] files: every identified caller may call anything");
    }
    Ok(First {
        serving,
        handler,
        admin: state,
        drain,
    })
}

/// Everything that serves connections for one config. Certificates, keys
/// and credentials are read here, so a reload with a broken one is refused
/// as a whole.
pub(super) async fn serving(
    cfg: Arc<Config>,
    previous: Option<&McpHandler>,
    stages: &Stages,
) -> Result<(Serving, McpHandler, Option<policy_watch::Loaded>), AgentError> {
    // Loaded here, swapped in by the caller only if everything else loads.
    let loaded = if cfg.policy.source.is_some() {
        (stages.bundle.load(&cfg)).map_err(|e| AgentError::Bundle(e.to_string()))?
    } else if cfg.policy.files.is_empty() {
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
    // Tool pinning runs whether or not the audit does: `on_tool_change =
    // "block"` is enforcement and must not lapse with the audit. The
    // handler reads the tools it recorded (stateless `Mcp-Param-*`).
    let pins = Arc::new(PinPhase::new(cfg.clone(), stages.events.clone()));
    let pipeline = pipeline(&cfg, stages, pins.clone())?;
    let keepalive =
        (cfg.policy.enforced()).then(|| Duration::from_secs(cfg.approvals.keepalive_seconds));
    let handler = match previous {
        Some(p) => McpHandler::with_sessions(pipeline, identity, p),
        None => McpHandler::new(pipeline, identity),
    }
    .with_keepalive(keepalive)
    .with_tools(pins);
    let serving = Serving {
        config: cfg,
        handler: Arc::new(handler.clone()),
        upstream,
        tls,
    };
    Ok((serving, handler, loaded))
}

/// The phases a config turns on, each in its slot; `PhaseSlot` sets the
/// order they run in.
fn pipeline(
    cfg: &Arc<Config>,
    stages: &Stages,
    pins: Arc<PinPhase>,
) -> Result<Pipeline, AgentError> {
    let guarded = cfg.policy.enforced();
    let hold_limit = Duration::from_secs(cfg.approvals.hold_timeout_seconds) + HOLD_SLACK;
    let audit = stages.audit.as_ref().map(|a| phase(AuditPhase(a.clone())));
    let policy = guarded.then(|| {
        phase(
            PolicyPhase::new(cfg.clone(), stages.policies.policies.clone())
                .with_approvals(stages.approvals.clone())
                .with_budget_table(&stages.budgets)
                .with_known(&stages.known),
        )
    });
    let mask = if cfg.mask.enabled {
        Some(phase(MaskPhase::new(Arc::new(masker(cfg)?))))
    } else {
        None
    };
    let approval =
        guarded.then(|| phase(ApprovalPhase::new(cfg.clone(), stages.approvals.clone())));
    let events = (cfg.events.jsonl.as_ref())
        .map(|path| {
            JsonLines::open(path)
                .map(phase)
                .map_err(|source| AgentError::Events {
                    path: path.clone(),
                    source,
                })
        })
        .transpose()?;
    Ok(Pipeline::builder(hold_limit)
        .slot(PhaseSlot::Audit, audit)
        .slot(PhaseSlot::Policy, policy)
        .slot(PhaseSlot::ToolPins, Some(pins as Arc<dyn Phase>))
        .slot(PhaseSlot::Mask, mask)
        .slot(PhaseSlot::Approval, approval)
        .slot(PhaseSlot::EventsJsonl, events)
        .slot(
            PhaseSlot::Metrics,
            phase(MetricsPhase(stages.metrics.clone())),
        )
        .build())
}

fn phase(p: impl Phase) -> Arc<dyn Phase> {
    Arc::new(p)
}
