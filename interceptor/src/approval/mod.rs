//! Human approval of high-risk calls and just-in-time grants (NIST AC-6,
//! AC-2(2)).
//!
//! An approval is bound to the exact call: issuer and subject, server,
//! method, target, a digest of the canonical arguments and the policy
//! version ("alice" of another issuer is someone else). It waits for
//! `quorum` distinct approvers from the groups the policy names
//! (`@approval`), never the caller itself (compared by subject across
//! issuers, the safe side); one "no" denies it. In `hold`
//! mode the call waits (kept alive by the transport); in `retry` mode the
//! caller gets the approval's id at once and the identical call passes
//! once after approval. Grants let a subject's (of one issuer) calls to
//! matching tools be permitted by policies that look at `context.grants`,
//! until they expire by themselves; nobody grants to themselves. Callers
//! see their own requests and grants and the requests their groups may
//! approve, nothing else. Everything lives in SQLite (`store`) and every step is an
//! audit row.
#![forbid(unsafe_code)]

mod grants;
pub mod phase;
pub mod store;
mod view;
mod vote;
mod webhook;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use store::{Approval, Grant, Status, Vote};
pub use view::{MAX_PAGE, Page, PageQuery};

use crate::{
    config::Config,
    pipeline::{ApprovalMode, ApprovalRule, Events, LifecycleEvent, event::now_us},
};
use store::Store;

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The approval store failed.
    #[error("approvals database: {0}")]
    Store(String),
    /// No approval has this id.
    #[error("no approval {0}")]
    NotFound(String),
    /// The approval is no longer pending (its id and current status).
    #[error("approval {0} is {1}, not pending")]
    NotPending(String, &'static str),
    /// The requester tried to approve their own call.
    #[error("{0} asked for this call and cannot approve it")]
    SelfApproval(String),
    /// The actor is in none of the approver groups of the request.
    #[error("{who} is not in an approver group of this request ({groups})")]
    NotApprover {
        /// The actor.
        who: String,
        /// The approver groups, listed.
        groups: String,
    },
    /// The approver has already voted on this approval.
    #[error("{0} already voted on this request")]
    AlreadyVoted(String),
    /// No active grant has this id.
    #[error("no grant {0} is active")]
    NoGrant(String),
    /// The actor may not add or revoke grants.
    #[error("{0} may not add or revoke grants (not in approvals.grant_groups)")]
    NotGranter(String),
    /// A granter named themselves: a grant to oneself would sidestep the
    /// rule that nobody approves their own calls.
    #[error("{0} cannot grant to themselves; another member of approvals.grant_groups must")]
    SelfGrant(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The caller has `approvals.max_pending_per_caller` requests pending.
    #[error(
        "{0} pending approval requests of this caller already wait (approvals.max_pending_per_caller); wait for a decision before asking again"
    )]
    Cap(u32),
    /// The real arguments of a masked call are no longer held: nobody can
    /// see what they would approve.
    #[error(
        "the real arguments of approval {0} are no longer held (the agent restarted, or the request was decided): approving it would be blind; deny it, or have the caller ask again (retry mode refreshes them)"
    )]
    ValuesGone(String),
}

impl From<rusqlite::Error> for ApprovalError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.to_string())
    }
}

/// Someone acting on approvals or grants: an OIDC caller of the admin
/// API, or a local user of the admin socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The actor's authenticated subject.
    pub subject: String,
    /// The token's issuer; "" for a local user of the admin socket.
    pub issuer: String,
    /// The actor's groups, checked against the approver groups.
    pub groups: Vec<String>,
    /// `oidc:<issuer>` or `local:<user>`.
    pub via: String,
    /// The human behind this name ([`human_key`]): a local user linked to
    /// an OIDC identity (`oidc_issuer`, `oidc_subject`) is that identity.
    pub human: String,
}

/// One key per human: the OIDC issuer and subject (a caller's, or the one
/// a local user is linked to); an unlinked local user has issuer "".
pub fn human_key(issuer: &str, subject: &str) -> String {
    serde_json::json!([issuer, subject]).to_string()
}

/// The call an approval is asked for.
#[derive(Debug, Clone)]
pub struct Call {
    /// The requesting caller's subject.
    pub subject: String,
    /// The caller's issuer ("" for anonymous): "alice" of one issuer is
    /// not "alice" of another, nor a certificate CN "alice".
    pub issuer: String,
    /// The requesting caller's groups.
    pub groups: Vec<String>,
    /// The server the call is addressed to.
    pub server: String,
    /// The JSON-RPC method of the call.
    pub method: String,
    /// The tool, resource or prompt the call names.
    pub target: Option<String>,
    /// The call's arguments, hashed to bind the approval to them.
    pub arguments: Option<Value>,
    /// The policy set version that asked for approval.
    pub policy_version: String,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// Who may approve and how many must.
    pub rule: ApprovalRule,
}

impl Call {
    /// What a retry must match exactly.
    pub fn digest(&self) -> String {
        let args = self
            .arguments
            .as_ref()
            .map(crate::jsonrpc::canonical)
            .unwrap_or_default();
        let mut h = Sha256::new();
        for part in [
            self.issuer.as_str(),
            self.subject.as_str(),
            &self.server,
            &self.method,
            self.target.as_deref().unwrap_or(""),
            &args,
            &self.policy_version,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// Masks values before they are stored or shown (the audit's profile).
pub type MaskFn = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A new grant, as `grants add` asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// The subject the grant is for.
    pub subject: String,
    /// Default: the agent's only OIDC issuer (see [`Approvals::open`]).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The server the grant covers.
    #[serde(default = "any_server")]
    pub server: String,
    /// The tool the grant covers.
    pub tool: String,
    /// How long the grant lasts.
    pub ttl_seconds: u64,
    /// Why the grant was given, for the audit.
    pub reason: String,
}

fn any_server() -> String {
    "*".into()
}

/// The approval queue and grants, backed by the SQLite store.
pub struct Approvals {
    store: Mutex<Store>,
    cfg: crate::config::Approvals,
    waiters: Mutex<HashMap<String, watch::Sender<Status>>>,
    /// Grants in force (re-read after every change), for the policy context.
    grants: RwLock<Arc<Vec<Grant>>>,
    /// Where every step is recorded (the audit, through its one sink).
    events: Events,
    mask: MaskFn,
    /// Real arguments of pending requests, in memory only.
    held: Mutex<view::Held>,
    webhook: Option<webhook::Webhook>,
    /// The issuer a grant is for when it names none: the only
    /// `[[identity.oidc]]` issuer, if the agent has one and no client CA.
    default_issuer: Option<String>,
}

impl Approvals {
    /// Opens the database. Calls held when the agent stopped can never be
    /// released now (their callers are gone): they are marked interrupted.
    pub fn open(cfg: &Config, events: Events, mask: MaskFn) -> Result<Arc<Self>, ApprovalError> {
        let store = Store::open(&cfg.approvals_db_path())?;
        let webhook = cfg
            .approvals
            .webhook
            .as_ref()
            .map(|w| webhook::Webhook::new(w, cfg.approvals.approve_url.as_deref()))
            .transpose()?;
        let this = Arc::new(Self {
            store: Mutex::new(store),
            cfg: cfg.approvals.clone(),
            waiters: Mutex::new(HashMap::new()),
            grants: RwLock::new(Arc::new(Vec::new())),
            events,
            mask,
            held: Mutex::new(view::Held::default()),
            webhook,
            default_issuer: match (cfg.identity.oidc.as_slice(), cfg.tls.client_ca.is_empty()) {
                ([only], true) => Some(only.issuer.clone()),
                _ => None,
            },
        });
        let held = this.db().pending_holds()?;
        for id in held {
            this.finish(
                &id,
                Status::Pending,
                Status::Interrupted,
                "the agent restarted while the call was held; the caller was refused",
            )?;
        }
        this.refresh_grants()?;
        Ok(this)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The approvals configuration in force.
    pub fn config(&self) -> &crate::config::Approvals {
        &self.cfg
    }

    /// Where approvers act, for messages.
    pub fn how_to_approve(&self, id: &str) -> String {
        match &self.cfg.approve_url {
            Some(u) => format!("{}/{id}", u.trim_end_matches('/')),
            None => format!("mcp-interceptor approvals approve {id} --reason ..."),
        }
    }

    /// Creates a pending approval for `call` and announces it.
    pub fn request(&self, call: &Call) -> Result<Approval, ApprovalError> {
        let now = now_us();
        let wait = match call.rule.mode {
            ApprovalMode::Hold => self.cfg.hold_timeout_seconds,
            ApprovalMode::Retry => self.cfg.pending_seconds,
        };
        let arguments_sha256 = call
            .arguments
            .as_ref()
            .map(|a| hex::encode(Sha256::digest(crate::jsonrpc::canonical(a).as_bytes())))
            .unwrap_or_default();
        let a = Approval {
            id: new_id("apr"),
            status: Status::Pending,
            mode: call.rule.mode,
            subject: call.subject.clone(),
            issuer: call.issuer.clone(),
            groups: call.groups.clone(),
            server: call.server.clone(),
            method: call.method.clone(),
            target: call.target.clone(),
            arguments: call.arguments.as_ref().map(|v| (self.mask)(v)),
            arguments_sha256,
            digest: call.digest(),
            policy_version: call.policy_version.clone(),
            policies: call.policies.clone(),
            approver_groups: call.rule.groups.clone(),
            quorum: call.rule.quorum,
            created_us: now,
            expires_us: now + secs_us(wait),
            decided_us: None,
            valid_until_us: None,
            reason: None,
            votes: Vec::new(),
        };
        {
            // Counted and inserted under one lock: concurrent requests
            // cannot both slip under the cap.
            let db = self.db();
            let cap = self.cfg.max_pending_per_caller;
            if db.pending_of(&a.issuer, &a.subject, now)? >= cap {
                tracing::warn!(subject = %a.subject, issuer = %a.issuer, cap, "approval request refused: caller at its cap of pending requests");
                return Err(ApprovalError::Cap(cap));
            }
            db.insert(&a)?;
        }
        self.hold_values(&a.id, call);
        tracing::info!(approval = %a.id, subject = %a.subject, target = ?a.target, approvers = ?a.approver_groups, "approval requested");
        self.record(
            "approval_requested",
            &a,
            None,
            format!(
                "{} asks for {}; needs {} approver(s) from {}",
                a.subject,
                what(&a),
                a.quorum,
                a.approver_groups.join(", ")
            ),
        );
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
        if a.valid_until_us.is_some_and(|v| v <= now_us()) {
            self.finish(
                &a.id,
                Status::Approved,
                Status::Expired,
                "approved but not used in time",
            )?;
            return Ok(None);
        }
        self.take(&a.id)
    }

    /// Marks an approved approval used; `None` if it no longer was approved.
    pub fn take(&self, id: &str) -> Result<Option<Approval>, ApprovalError> {
        if !self.db().transition(
            id,
            Status::Approved,
            Status::Used,
            now_us(),
            None,
            "the approved call was made",
        )? {
            return Ok(None);
        }
        let a = self.get(id)?;
        self.record(
            "approval_used",
            &a,
            None,
            format!("the approved call was released: {}", what(&a)),
        );
        Ok(Some(a))
    }

    /// Follows an approval's status (for a held call).
    pub fn subscribe(&self, id: &str) -> watch::Receiver<Status> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(id.to_string())
            .or_insert_with(|| watch::channel(Status::Pending).0)
            .subscribe()
    }

    fn notify(&self, id: &str, s: Status) {
        if s != Status::Pending {
            self.drop_values(id);
        }
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = w.get(id) {
            let _ = tx.send(s);
        }
        if s != Status::Pending && s != Status::Approved {
            w.remove(id);
        }
    }

    /// Looks up one approval by id.
    pub fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        self.db()
            .get(id)?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// How many approvals are in `status` (pending ones past their
    /// deadline are expired first).
    pub fn count(&self, status: Status) -> Result<u64, ApprovalError> {
        self.sweep();
        self.db().count(status)
    }

    /// One approval, if `who` may see it (else: not found, so ids of other
    /// callers' requests are not confirmed either).
    pub fn get_for(&self, who: &Actor, id: &str) -> Result<Approval, ApprovalError> {
        self.get(id)
            .ok()
            .filter(|a| vote::may_see(who, a))
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))
    }

    /// Ends a request: moves it `from` → `to`, records it, wakes its waiter.
    pub fn finish(
        &self,
        id: &str,
        from: Status,
        to: Status,
        why: &str,
    ) -> Result<bool, ApprovalError> {
        if !self.db().transition(id, from, to, now_us(), None, why)? {
            return Ok(false);
        }
        let a = self.get(id)?;
        tracing::info!(approval = %id, status = to.as_str(), why, "approval ended");
        self.record(
            &format!("approval_{}", to.as_str()),
            &a,
            None,
            why.to_string(),
        );
        self.notify(id, to);
        Ok(true)
    }

    /// Expires what is due: pending requests past their deadline, approved
    /// ones not used in time, grants past their TTL (one row each).
    pub fn sweep(&self) {
        let now = now_us();
        let due = |s| self.db().due(s, now).unwrap_or_default();
        for id in due(Status::Pending) {
            let _ = self.finish(
                &id,
                Status::Pending,
                Status::Expired,
                "no decision before the deadline",
            );
        }
        for id in due(Status::Approved) {
            let _ = self.finish(
                &id,
                Status::Approved,
                Status::Expired,
                "approved but not used in time",
            );
        }
        let ended = self.db().take_expired_grants(now).unwrap_or_default();
        if !ended.is_empty() {
            for g in &ended {
                tracing::info!(grant = %g.id, subject = %g.subject, tool = %g.tool, "grant expired");
                self.record_grant(
                    "grant_expired",
                    g,
                    None,
                    format!(
                        "grant of {} on {} to {} expired",
                        g.tool, g.server, g.subject
                    ),
                );
            }
            let _ = self.refresh_grants();
        }
    }

    /// Every held call is refused now (the agent is stopping).
    pub fn interrupt_holds(&self) {
        let ids = self.db().pending_holds().unwrap_or_default();
        for id in ids {
            let _ = self.finish(
                &id,
                Status::Pending,
                Status::Interrupted,
                "the agent stopped while the call was held",
            );
        }
    }

    /// Runs `sweep` every second until the process ends.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(a) = this.upgrade() else { return };
                a.sweep();
            }
        });
    }

    fn record(&self, kind: &str, a: &Approval, who: Option<&Actor>, message: String) {
        self.events.emit(step(kind, a, who, message));
    }
}

/// The event of a step of `a`, by `who` (none: the agent itself).
fn step(kind: &str, a: &Approval, who: Option<&Actor>, message: String) -> LifecycleEvent {
    let mut r = LifecycleEvent::new(kind, message);
    r.subject = Some(a.subject.clone());
    r.groups = a.groups.clone();
    r.method = Some(a.method.clone());
    r.set_target(&a.method, a.target.clone());
    r.arguments = a.arguments.as_ref().map(|v| v.to_string());
    r.arguments_sha256 = (!a.arguments_sha256.is_empty()).then(|| a.arguments_sha256.clone());
    r.approval_id = Some(a.id.clone());
    r.approvers = match who {
        Some(w) if !a.votes.iter().any(|v| v.approver == w.subject) => vec![w.subject.clone()],
        _ => a.votes.iter().map(|v| v.approver.clone()).collect(),
    };
    r.rule_ids = a.policies.clone();
    r.policy_version = Some(a.policy_version.clone());
    r.decided_by = Some("approval".into());
    r.decision = Some(a.status.as_str().into());
    r
}

/// `tools/call on db.drop`.
pub fn what(a: &Approval) -> String {
    match &a.target {
        Some(t) => format!("{} on {t}", a.method),
        None => a.method.clone(),
    }
}

fn secs_us(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// `apr-` / `grt-` and 16 random hex digits.
fn new_id(prefix: &str) -> String {
    let u = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &u[16..])
}

#[cfg(test)]
mod tests;
