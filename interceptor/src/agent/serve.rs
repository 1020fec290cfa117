//! Accepting on the bound sockets, and the signal loop: SIGHUP reloads,
//! SIGTERM and SIGINT end it.

use std::{path::PathBuf, sync::Arc};

use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use super::{
    AgentError, notify, policy_watch, reload, serving::First, start::Stages, watchdog::Watchdog,
};
use crate::{
    admin,
    config::Config,
    mcp::McpHandler,
    pipeline::LifecycleEvent,
    proxy::{self, Drain, Serving},
    steer::Steering,
};

/// The serving agent: what the signal loop reloads and shutdown stops.
pub(super) struct Agent {
    /// Re-read on SIGHUP.
    config_path: PathBuf,
    /// The current config's serving state, which every listener follows.
    pub serving: watch::Sender<Serving>,
    /// Turned true to close the listeners.
    pub stop: watch::Sender<bool>,
    /// Kernel steering (ebpf mode).
    pub steering: Option<Steering>,
    /// The current config's MCP handler.
    handler: McpHandler,
    /// The admin API's state, which follows reloads.
    admin: Arc<admin::State>,
    /// Connections in flight.
    pub drain: Drain,
    /// systemd's watchdog, when the unit sets `WatchdogSec=`.
    watchdog: Option<Watchdog>,
}

/// Starts accepting on `listeners` and watching the policy files.
pub(super) fn serve(
    config_path: PathBuf,
    cfg: &Config,
    first: First,
    listeners: Vec<TcpListener>,
    steering: Option<Steering>,
    stages: &Stages,
) -> Agent {
    let (serving, serving_rx) = watch::channel(first.serving);
    let (stop, stop_rx) = watch::channel(false);
    stages.events.emit(LifecycleEvent::new(
        "agent_start",
        format!("pid {} mode {:?}", std::process::id(), cfg.intercept.mode),
    ));
    let mut accepting = Vec::new();
    for l in listeners {
        tracing::info!(listen = ?l.local_addr().ok(), mode = ?cfg.intercept.mode, "proxy listening");
        accepting.push(tokio::spawn(proxy::serve(
            l,
            serving_rx.clone(),
            stop_rx.clone(),
            first.drain.clone(),
        )));
    }
    policy_watch::spawn(serving_rx, stages.policies.clone(), stages.events.clone());
    tracing::info!(pid = std::process::id(), "agent ready");
    Agent {
        config_path,
        serving,
        stop,
        steering,
        handler: first.handler,
        admin: first.admin,
        drain: first.drain,
        watchdog: Watchdog::from_env(accepting),
    }
}

impl Agent {
    /// Serves until SIGTERM or SIGINT, reloading on each SIGHUP.
    pub async fn until_stopped(&mut self, stages: &Stages) -> Result<(), AgentError> {
        let mut hup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
        // After the handlers: systemd may send SIGHUP (reload) as soon as it
        // reads READY=1, and SIGHUP's default action would end the agent.
        notify::ready();
        loop {
            tokio::select! {
                _ = hup.recv() => self.reload(stages).await,
                // A new signed bundle: reloaded like SIGHUP, with it.
                () = stages.bundle.changed() => self.reload(stages).await,
                _ = term.recv() => break,
                _ = int.recv() => break,
                () = Watchdog::tick(&mut self.watchdog) => {}
            }
        }
        notify::stopping();
        Ok(())
    }

    /// One SIGHUP: the new config, or the running one kept.
    async fn reload(&mut self, stages: &Stages) {
        notify::reloading();
        // The old config serves meanwhile: a slow reload (OIDC discovery,
        // policy files) is no hang, so the watchdog goes on ticking.
        let next = {
            let reloading = reload::reload(
                &self.config_path,
                &self.serving,
                self.steering.as_mut(),
                &self.handler,
                stages,
            );
            tokio::pin!(reloading);
            loop {
                tokio::select! {
                    next = &mut reloading => break next,
                    () = Watchdog::tick(&mut self.watchdog) => {}
                }
            }
        };
        if let Some(h) = next {
            self.admin
                .update(h.identity().clone(), &self.serving.borrow().config.admin);
            self.handler = h;
            notify::status("running; config reloaded");
        } else {
            notify::status("running the previous config: the reload was rejected (see the log)");
        }
        notify::ready();
    }
}
