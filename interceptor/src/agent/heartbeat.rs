//! `audit.heartbeat_seconds`: a `heartbeat` row at that interval, through
//! the audit's one sink ([`Events`]). It names the host and agent version
//! (the row's stamp), the policy set in force (the audit adds the signed
//! bundle's version and signer) and the steering counters, so a fleet's
//! table shows which hosts are alive and on which bundle even when no
//! client calls.

use std::{path::PathBuf, time::Duration};

use tokio::task::JoinHandle;

use crate::{
    pipeline::{Events, LifecycleEvent},
    policy::phase::Shared,
    steer::pins,
};

/// The row kind.
pub const KIND: &str = "heartbeat";

/// Starts the heartbeat (none when `seconds` is 0). `pin_dir`: where the
/// steering maps are pinned, when steering.
pub fn spawn(
    seconds: u64,
    policies: Shared,
    events: Events,
    pin_dir: Option<PathBuf>,
) -> Option<JoinHandle<()>> {
    if seconds == 0 || !events.is_recorded() {
        return None;
    }
    let period = Duration::from_secs(seconds);
    Some(tokio::spawn(async move {
        // The first beat one period after the start: the agent_start row
        // already says the host is up.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let version = (policies.read().unwrap_or_else(|p| p.into_inner()))
                .version
                .clone();
            let mut e = LifecycleEvent::new(KIND, counters(pin_dir.as_deref()));
            e.policy_version = Some(version);
            events.emit(e);
        }
    }))
}

/// The steering counters per port as JSON (`{"steer": [...]}`), `null`
/// when not steering, or the error reading them.
fn counters(pin_dir: Option<&std::path::Path>) -> String {
    let v = match pin_dir.map(pins::read) {
        None => serde_json::json!({ "steer": null }),
        Some(Ok(state)) => serde_json::json!({ "steer": state.counters }),
        Some(Err(e)) => serde_json::json!({ "steer": null, "error": e.to_string() }),
    };
    v.to_string()
}
