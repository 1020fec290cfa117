//! Stopping: close the listeners, refuse held calls, drain connections in
//! flight for a bounded time, then seal the audit and stop its uploader
//! last, so the final file is the one it ships.

use std::time::Duration;

use super::{
    serve::Agent,
    start::{Stages, Uploader},
};
use crate::{pipeline::LifecycleEvent, steer::Steering};

/// How long a stopping agent waits for connections in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Stops `agent`; the pinned steering stays, so the fail mode applies to
/// new connections while the agent is down.
pub(super) async fn shutdown(agent: Agent, uploader: Option<Uploader>, stages: &Stages) {
    tracing::info!(
        active = agent.drain.active(),
        "stopping: listeners closed, draining"
    );
    let _ = agent.stop.send(true);
    // Held calls are refused now, not cut off at the drain limit; their
    // approvals can no longer release anything.
    stages.approvals.interrupt_holds();
    let left = agent.drain.wait(DRAIN_LIMIT).await;
    if let Some(s) = &agent.steering {
        log_counters(s);
    }
    stages.events.emit(LifecycleEvent::new(
        "agent_stop",
        format!("stopped; {left} connection(s) cut off after the drain limit"),
    ));
    if let Some(a) = &stages.audit {
        // Closes and converts the open segment, then stops its threads.
        let a = a.clone();
        let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
    }
    if let Some(u) = uploader {
        u.stop().await;
    }
    tracing::info!(
        cut_off = left,
        fail = ?agent.serving.borrow().config.intercept.fail,
        "agent stopped; pinned steering stays (fail mode applies)"
    );
}

/// Logs what steering did per port, for the record of this run.
fn log_counters(steering: &Steering) {
    let Ok(counters) = steering.counters() else {
        return;
    };
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
