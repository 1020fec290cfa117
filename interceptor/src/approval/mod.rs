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
//! approve, nothing else. Everything lives in a [`store::Backend`]:
//! SQLite, one agent's own file (the default), or one DynamoDB table a
//! fleet of agents shares (`fleet` then carries decisions and grants made
//! on one agent to the others); every step is an audit row.
//!
//! A request moves only through its typed state ([`state`]): `Pending`
//! becomes `Approved`, `Denied`, `Expired`, `Abandoned` or `Interrupted`;
//! `Approved` becomes `Used` or `Expired`. Each move consumes the state it
//! leaves, so no other can be written.
//!
//! Files: `request` (asking, retrying, releasing, sweeping), `vote`,
//! `grants`, `view` (listings and real values), `phase` (the pipeline
//! stage; `phase/inband` answers MCP 2026-07-28 clients in band),
//! `sealed` (the agent's own `requestState`), `record` (the stored
//! request), `store` (SQLite and DynamoDB), `fleet`, `webhook`.
#![forbid(unsafe_code)]

mod error;
mod fleet;
mod grants;
pub mod phase;
mod record;
mod request;
pub mod sealed;
pub mod state;
pub mod store;
mod view;
mod vote;
mod webhook;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use error::ApprovalError;
pub use record::{Approval, Vote};
pub use state::Status;
pub use store::{Grant, Revocation};
pub use view::{MAX_PAGE, Page, PageQuery};

use crate::{
    config::Config,
    pipeline::{About, ApprovalRule, CallFacts, Events, LifecycleEvent, call::arguments_sha256},
};
use store::Backend;

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
    /// Who asks for what; its `arguments_sha256` is of `arguments`
    /// ([`Call::new`] sets it).
    pub facts: CallFacts,
    /// The call's real arguments, hashed to bind the approval to them.
    pub arguments: Option<Value>,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// Who may approve and how many must.
    pub rule: ApprovalRule,
}

impl Call {
    /// The call of `facts` with `arguments`, whose digest it sets.
    pub fn new(
        mut facts: CallFacts,
        arguments: Option<Value>,
        policies: Vec<String>,
        rule: ApprovalRule,
    ) -> Self {
        facts.arguments_sha256 = arguments.as_ref().map(arguments_sha256).unwrap_or_default();
        Self {
            facts,
            arguments,
            policies,
            rule,
        }
    }

    /// What a retry must match exactly.
    pub fn digest(&self) -> String {
        let args = self
            .arguments
            .as_ref()
            .map(crate::jsonrpc::canonical)
            .unwrap_or_default();
        let c = &self.facts;
        let mut h = Sha256::new();
        for part in [
            c.issuer.as_str(),
            c.subject.as_str(),
            &c.server,
            &c.method,
            c.target.as_deref().unwrap_or(""),
            &args,
            &c.policy_version,
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

/// The approval queue and grants, backed by the store `approvals.store`
/// names.
pub struct Approvals {
    store: Box<dyn Backend>,
    /// Held while a request is counted against its caller's cap and stored.
    asking: Mutex<()>,
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
    /// Seals the agent's own MRTR `requestState` (in-band approvals); its
    /// key is kept in the store, so states outlive a restart as approvals do.
    state_key: sealed::StateKey,
}

impl Approvals {
    /// Opens the store `approvals.store` names, as this host (`audit.host`,
    /// else the kernel's host name). Calls this host held when the agent
    /// stopped can never be released now (their callers are gone): they
    /// are marked interrupted. A shared store that cannot be used is an
    /// error ([`ApprovalError::Unusable`]): the agent fails closed.
    pub fn open(cfg: &Config, events: Events, mask: MaskFn) -> Result<Arc<Self>, ApprovalError> {
        let host = cfg.audit.host_name();
        Self::open_as(cfg, &host, events, mask)
    }

    /// [`Approvals::open`] as host `host` (a fleet's agents share one
    /// store; each interrupts only the calls it held itself).
    pub fn open_as(
        cfg: &Config,
        host: &str,
        events: Events,
        mask: MaskFn,
    ) -> Result<Arc<Self>, ApprovalError> {
        let (store, poll) = store::open(cfg, host)?;
        Self::with_store(cfg, store, poll, events, mask)
    }

    /// The queue on `store` (which knows its host); a shared store is
    /// re-read every `poll` for what other agents did (see `fleet`).
    pub fn with_store(
        cfg: &Config,
        store: Box<dyn Backend>,
        poll: Option<std::time::Duration>,
        events: Events,
        mask: MaskFn,
    ) -> Result<Arc<Self>, ApprovalError> {
        let state_key = sealed::StateKey::new(&store.state_key()?);
        let webhook = cfg
            .approvals
            .webhook
            .as_ref()
            .map(|w| webhook::Webhook::new(w, cfg.approvals.approve_url.as_deref()))
            .transpose()?;
        let this = Arc::new(Self {
            store,
            asking: Mutex::new(()),
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
            state_key,
        });
        let held = this.db().pending_holds()?;
        for p in held {
            this.settle(
                "the agent restarted while the call was held; the caller was refused",
                |db, why| p.interrupt(db, why),
            )?;
        }
        this.refresh_grants()?;
        if let Some(every) = poll {
            fleet::watch(&this, every);
        }
        Ok(this)
    }

    fn db(&self) -> &dyn Backend {
        self.store.as_ref()
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

    fn record(&self, kind: &str, a: &Approval, who: Option<&Actor>, message: String) {
        self.events.emit(step(kind, a, who, message));
    }
}

/// The event of a step of `a`, by `who` (none: the agent itself).
fn step(kind: &str, a: &Approval, who: Option<&Actor>, message: String) -> LifecycleEvent {
    let mut r = LifecycleEvent::new(kind, message);
    r.about = About::Approval {
        id: a.id.clone(),
        call: a.call.clone(),
        arguments: a.arguments.as_ref().map(|v| v.to_string()),
        policies: a.policies.clone(),
    };
    r.approvers = match who {
        Some(w) if !a.votes.iter().any(|v| v.approver == w.subject) => vec![w.subject.clone()],
        _ => a.votes.iter().map(|v| v.approver.clone()).collect(),
    };
    r.decision = Some(a.status.as_str().into());
    r
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
