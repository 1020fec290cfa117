//! The systemd watchdog (`WatchdogSec=`): `WATCHDOG=1` goes out from the
//! agent's signal loop, and only while serving is seen to work, so that a
//! hung agent falls silent and systemd restarts it (with `fail = "closed"`
//! a hung agent would otherwise leave the MCP ports dead for good).
//!
//! A ping needs, at each tick (half of `WatchdogSec=`):
//! - every accept loop still running: one that ended (a panic) leaves its
//!   port unserved while the process lives on;
//! - the probe task spawned at the previous tick to have run. It runs on
//!   the runtime's worker threads, which run every connection: workers all
//!   stuck (a deadlock, audit writes blocked on a hung disk) leave it
//!   waiting, and the ping is withheld.
//!
//! The tick is the runtime's own timer, which only advances while the
//! runtime does. A timer thread of its own would ping through all of this.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    task::JoinHandle,
    time::{Interval, MissedTickBehavior},
};

use super::notify;

/// Pings systemd's watchdog while the accept loops and the workers live.
pub(super) struct Watchdog {
    /// Half of `WatchdogSec=`.
    every: Interval,
    /// The accept loops (`proxy::serve`), one per listener.
    accepting: Vec<JoinHandle<()>>,
    /// Set by the last probe task once a worker ran it.
    probed: Arc<AtomicBool>,
    /// Whether the last tick pinged, to log each change once.
    pinging: bool,
}

impl Watchdog {
    /// The watchdog systemd asked for, if it did; `accepting` are the
    /// accept loops it watches.
    pub fn from_env(accepting: Vec<JoinHandle<()>>) -> Option<Self> {
        let every = notify::watchdog_interval()?;
        tracing::info!(every = ?every, "systemd watchdog: pinging while serving works");
        let mut every = tokio::time::interval(every);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(Self {
            every,
            accepting,
            probed: Arc::new(AtomicBool::new(true)),
            pinging: true,
        })
    }

    /// Waits for the next tick, then pings if serving worked since the
    /// last one; without a watchdog, never returns.
    pub async fn tick(dog: &mut Option<Self>) {
        match dog {
            Some(d) => {
                d.every.tick().await;
                d.check();
            }
            None => std::future::pending().await,
        }
    }

    fn check(&mut self) {
        let ended = self.accepting.iter().filter(|h| h.is_finished()).count();
        let probed = self.probed.load(Ordering::Acquire);
        if probed {
            // The next probe; an unrun one stays queued, not doubled.
            self.probed.store(false, Ordering::Release);
            let flag = self.probed.clone();
            tokio::spawn(async move { flag.store(true, Ordering::Release) });
        }
        let alive = probed && ended == 0;
        if alive {
            notify::watchdog();
        }
        if alive != self.pinging {
            self.pinging = alive;
            if alive {
                tracing::warn!("serving works again: systemd watchdog pings resume");
            } else {
                tracing::error!(
                    accept_loops_ended = ended,
                    workers_stuck = !probed,
                    "serving is stuck: systemd watchdog ping withheld (systemd restarts \
                     the agent after WatchdogSec=)"
                );
            }
        }
    }
}
