//! A request's life: asked for, found again by a retry, released once
//! approved, and ended by the sweeper, a vote, or the caller going away.
//! Every end is a move of its typed state ([`super::state`]), recorded
//! and announced to the held call by [`Approvals::settle`].

use std::{sync::Arc, time::Duration};

use super::{
    Approval, ApprovalError, Approvals, Call, new_id, secs_us,
    state::{Approved, Moved, State, Status},
    store::Backend,
};
use crate::pipeline::{ApprovalMode, event::now_us};

impl Approvals {
    /// Creates a pending approval for `call` and announces it.
    pub fn request(&self, call: &Call) -> Result<Approval, ApprovalError> {
        let now = now_us();
        let wait = match call.rule.mode {
            ApprovalMode::Hold => self.cfg.hold_timeout_seconds,
            ApprovalMode::Retry => self.cfg.pending_seconds,
        };
        let a = Approval {
            id: new_id("apr"),
            status: Status::Pending,
            rule: call.rule.clone(),
            call: call.facts.clone(),
            arguments: call.arguments.as_ref().map(|v| (self.mask)(v)),
            digest: call.digest(),
            policies: call.policies.clone(),
            created_us: now,
            expires_us: now + secs_us(wait),
            decided_us: None,
            valid_until_us: None,
            reason: None,
            votes: Vec::new(),
        };
        let (subject, issuer) = (&a.call.subject, &a.call.issuer);
        {
            // Counted and inserted under one lock: concurrent requests
            // cannot both slip under the cap (on this agent; agents sharing
            // a store each count, so the cap can be passed by one request
            // per agent racing).
            let _one = self.asking.lock().unwrap_or_else(|p| p.into_inner());
            let db = self.db();
            let cap = self.cfg.max_pending_per_caller;
            if db.pending_of(issuer, subject, now)? >= cap {
                tracing::warn!(%subject, %issuer, cap, "approval request refused: caller at its cap of pending requests");
                return Err(ApprovalError::Cap(cap));
            }
            db.insert(&a)?;
        }
        self.hold_values(&a.id, call);
        tracing::info!(approval = %a.id, %subject, target = ?a.call.target, approvers = ?a.rule.groups, "approval requested");
        let message = format!(
            "{subject} asks for {}; needs {} approver(s) from {}",
            a.what(),
            a.rule.quorum,
            a.rule.groups.join(", ")
        );
        self.record("approval_requested", &a, None, message);
        if let Some(w) = &self.webhook {
            w.announce(&a, &self.how_to_approve(&a.id));
        }
        Ok(a)
    }

    /// A pending approval for exactly this call (retry mode re-asks); its
    /// real arguments are held again (they are lost on restart).
    pub fn pending_for(&self, call: &Call) -> Result<Option<Approval>, ApprovalError> {
        let a = self.db().by_digest(&call.digest(), Status::Pending)?;
        let a = a.filter(|a| a.expires_us > now_us());
        if let Some(a) = &a {
            self.hold_values(&a.id, call);
        }
        Ok(a)
    }

    /// Retry mode: takes the approved, unused approval of exactly this call.
    pub fn consume(&self, digest: &str) -> Result<Option<Approval>, ApprovalError> {
        let Some(a) = self.db().by_digest(digest, Status::Approved)? else {
            return Ok(None);
        };
        let Some(ok) = a.approved() else {
            return Ok(None);
        };
        if a.valid_until_us.is_some_and(|v| v <= now_us()) {
            self.settle("approved but not used in time", |db, why| {
                ok.expire(db, why)
            })?;
            return Ok(None);
        }
        self.take(ok)
    }

    /// Marks an approved approval used; `None` if it no longer was approved.
    pub fn take(&self, ok: Approved) -> Result<Option<Approval>, ApprovalError> {
        let moved = ok.use_once(self.db(), "the approved call was made")?;
        let Some(used) = moved else {
            return Ok(None);
        };
        let a = self.get(used.id())?;
        let message = format!("the approved call was released: {}", a.what());
        self.record("approval_used", &a, None, message);
        Ok(Some(a))
    }

    /// Makes one move under the store's lock, then, if it won, records
    /// where the request arrived (`approval_<status>`, `why`) and wakes
    /// its held call. False when another move won.
    pub(super) fn settle<S: State>(
        &self,
        why: &str,
        step: impl FnOnce(&dyn Backend, &str) -> Moved<S>,
    ) -> Result<bool, ApprovalError> {
        let moved = step(self.db(), why)?;
        let Some(s) = moved else {
            return Ok(false);
        };
        let (id, to) = (s.id(), S::STATUS);
        let a = self.get(id)?;
        tracing::info!(approval = %id, status = to.as_str(), why, "approval ended");
        self.record(&format!("approval_{}", to.as_str()), &a, None, why.into());
        self.notify(id, to);
        Ok(true)
    }

    /// Expires what is due: pending requests past their deadline, approved
    /// ones not used in time, grants past their TTL (one row each).
    pub fn sweep(&self) {
        let now = now_us();
        // A shared store is swept by one agent of the fleet at a time; the
        // others' listings and counts lag it by at most a second.
        if !self.db().sweep_turn(now).unwrap_or(true) {
            return;
        }
        let pending = self.db().due_pending(now).unwrap_or_default();
        for p in pending {
            let _ = self.settle("no decision before the deadline", |db, why| {
                p.expire(db, why)
            });
        }
        let approved = self.db().due_approved(now).unwrap_or_default();
        for ok in approved {
            let _ = self.settle("approved but not used in time", |db, why| {
                ok.expire(db, why)
            });
        }
        self.expire_grants(now);
    }

    /// Every held call is refused now (the agent is stopping).
    pub fn interrupt_holds(&self) {
        let held = self.db().pending_holds().unwrap_or_default();
        for p in held {
            let _ = self.settle("the agent stopped while the call was held", |db, why| {
                p.interrupt(db, why)
            });
        }
    }

    /// Runs `sweep` every second until the process ends, on the blocking
    /// pool: with a shared store a sweep is three network round trips,
    /// which must not hold a runtime thread that serves connections.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(a) = this.upgrade() else { return };
                if tokio::task::spawn_blocking(move || a.sweep())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}
