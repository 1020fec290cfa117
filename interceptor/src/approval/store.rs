//! Where approvals, votes, grants and the `requestState` key live: a
//! [`Backend`]. SQLite (`sqlite`, one agent's own file) is the default;
//! DynamoDB (`dynamo`, one table) is the queue a fleet of agents shares.
//!
//! Every change of a request's status is a compare-and-set ([`Move`]): of
//! two moves racing on one request, on one agent or on two, one wins and
//! the other sees `false`. Grants end once: a revocation or the record
//! of an expiry is a conditional write, so exactly one agent audits it.

pub mod dynamo;
mod grant;
mod sqlite;

use std::time::Duration;

pub use dynamo::{DynamoDb, DynamoError};
pub use grant::{Grant, Revocation};
pub use sqlite::Sqlite;

/// The SQLite store, by the name it had before stores were a [`Backend`].
pub type Store = Sqlite;

use super::{
    Approval, ApprovalError, Vote,
    state::{Approved, Move, Pending, Status},
};
use crate::config::{ApprovalStore, Config};

/// A page of the approval listing ([`Backend::page`]): up to `limit`
/// approvals with `status` (all when `None`) after `after` (created_us,
/// id) in that order: oldest first, or newest first when `newest_first`
/// (then "after" means older).
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Only approvals in this status; `None`: all.
    pub status: Option<Status>,
    /// The (created_us, id) the page starts after.
    pub after: (i64, &'a str),
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many.
    pub limit: u32,
}

/// The grants half of a store ([`Backend`]), apart so that each store
/// keeps its grants in a file of their own.
pub trait Grants {
    /// Stores a new grant.
    fn insert_grant(&self, g: &Grant) -> Result<(), ApprovalError>;
    /// Grants still in force at `now_us`, or all when `all`, oldest first.
    fn grants(&self, now_us: i64, all: bool) -> Result<Vec<Grant>, ApprovalError>;
    /// One grant by id.
    fn grant(&self, id: &str) -> Result<Option<Grant>, ApprovalError>;
    /// Revokes an active grant; false when it was not active.
    fn revoke_grant(&self, id: &str, by: &str, why: &str, now: i64) -> Result<bool, ApprovalError>;
    /// Grants that expired and whose end is not yet recorded; marks them
    /// recorded (each is returned to one caller only).
    fn take_expired_grants(&self, now_us: i64) -> Result<Vec<Grant>, ApprovalError>;
}

/// The operations the approval queue makes on its store. Synchronous, as
/// the whole approvals API is; an implementation that talks to a network
/// bounds every call (see `dynamo`).
pub trait Backend: Grants + Send + Sync {
    /// The key of the agent's own `requestState` (`super::sealed`): made
    /// once, at random, by whichever agent comes first, and the same for
    /// every agent of the store afterwards.
    fn state_key(&self) -> Result<[u8; 32], ApprovalError>;
    /// Stores a new approval (held by this store's host, in hold mode).
    fn insert(&self, a: &Approval) -> Result<(), ApprovalError>;
    /// One approval by id, with its votes (a consistent read).
    fn get(&self, id: &str) -> Result<Option<Approval>, ApprovalError>;
    /// The approvals of window `w`.
    fn page(&self, w: &Window<'_>) -> Result<Vec<Approval>, ApprovalError>;
    /// How many approvals are in `status`.
    fn count(&self, status: Status) -> Result<u64, ApprovalError>;
    /// Pending requests of one caller still within their deadline.
    fn pending_of(&self, issuer: &str, subject: &str, now_us: i64) -> Result<u32, ApprovalError>;
    /// The newest approval for `digest` in `status`.
    fn by_digest(&self, digest: &str, status: Status) -> Result<Option<Approval>, ApprovalError>;
    /// Records a vote; a second vote of one approver is refused.
    fn add_vote(&self, id: &str, v: &Vote) -> Result<(), ApprovalError>;
    /// Makes move `m` on request `id`; false when it no longer had the
    /// status the move leaves (someone else moved it first).
    fn transition(&self, id: &str, m: &Move, reason: &str) -> Result<bool, ApprovalError>;
    /// Pending requests whose deadline is before `now_us`.
    fn due_pending(&self, now_us: i64) -> Result<Vec<Pending>, ApprovalError>;
    /// Approved requests not used before their `valid_until_us`.
    fn due_approved(&self, now_us: i64) -> Result<Vec<Approved>, ApprovalError>;
    /// Whether this agent sweeps at `now_us`: always, unless the store is
    /// shared and another agent has the turn (`dynamo::lease`).
    fn sweep_turn(&self, now_us: i64) -> Result<bool, ApprovalError> {
        let _ = now_us;
        Ok(true)
    }
    /// Pending hold-mode requests held by this store's host (their callers
    /// are gone after it restarts; other hosts' callers are not).
    fn pending_holds(&self) -> Result<Vec<Pending>, ApprovalError>;
}

/// What a move of `super::state` is made on: a store, or a reference to
/// one (so `&approvals.db()` serves as well as `approvals.db()`).
pub trait AsBackend {
    /// The store itself.
    fn backend(&self) -> &dyn Backend;
}

impl<B: Backend> AsBackend for B {
    fn backend(&self) -> &dyn Backend {
        self
    }
}

impl AsBackend for dyn Backend + '_ {
    fn backend(&self) -> &dyn Backend {
        self
    }
}

impl AsBackend for &(dyn Backend + '_) {
    fn backend(&self) -> &dyn Backend {
        *self
    }
}

/// The store `cfg` names, for host `host`, and how often a shared one is
/// polled for what other hosts did (`None`: nobody else writes to it).
pub fn open(
    cfg: &Config,
    host: &str,
) -> Result<(Box<dyn Backend>, Option<Duration>), ApprovalError> {
    let kind = cfg.approvals.store_kind().map_err(ApprovalError::Invalid)?;
    match kind {
        ApprovalStore::Sqlite => Ok((Box::new(Sqlite::open(&cfg.approvals_db_path())?), None)),
        ApprovalStore::DynamoDb { table } => {
            let d = &cfg.approvals.dynamodb;
            let store = DynamoDb::open(&dynamo::Target::resolve(&table, d), host, cfg)?;
            Ok((Box::new(store), Some(Duration::from_millis(d.poll_ms))))
        }
    }
}
