//! Approvals, votes and grants in SQLite, so pending approvals and grants
//! survive a restart. WAL journal with `synchronous = FULL`: a vote or a
//! grant acknowledged to its author is on disk.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::ApprovalError;
use crate::pipeline::ApprovalMode;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  mode TEXT NOT NULL,
  subject TEXT NOT NULL,
  groups TEXT NOT NULL,
  server TEXT NOT NULL,
  method TEXT NOT NULL,
  target TEXT,
  arguments TEXT,
  arguments_sha256 TEXT NOT NULL,
  digest TEXT NOT NULL,
  policy_version TEXT NOT NULL,
  policies TEXT NOT NULL,
  approver_groups TEXT NOT NULL,
  quorum INTEGER NOT NULL,
  created_us INTEGER NOT NULL,
  expires_us INTEGER NOT NULL,
  decided_us INTEGER,
  valid_until_us INTEGER,
  reason TEXT
);
CREATE INDEX IF NOT EXISTS approvals_digest ON approvals(digest, status);
CREATE INDEX IF NOT EXISTS approvals_listing ON approvals(status, created_us, id);
CREATE TABLE IF NOT EXISTS votes (
  approval_id TEXT NOT NULL,
  approver TEXT NOT NULL,
  approve INTEGER NOT NULL,
  reason TEXT NOT NULL,
  at_us INTEGER NOT NULL,
  PRIMARY KEY (approval_id, approver)
);
CREATE TABLE IF NOT EXISTS grants (
  id TEXT PRIMARY KEY,
  subject TEXT NOT NULL,
  server TEXT NOT NULL,
  tool TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  expires_us INTEGER NOT NULL,
  granted_by TEXT NOT NULL,
  reason TEXT NOT NULL,
  revoked_us INTEGER,
  revoked_by TEXT,
  revoke_reason TEXT,
  ended_recorded INTEGER NOT NULL DEFAULT 0
);
";

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for approvers.
    Pending,
    /// Enough approvers said yes (retry mode: not used yet).
    Approved,
    /// An approver said no.
    Denied,
    /// No decision in time (or, approved in retry mode, not used in time).
    Expired,
    /// Retry mode: the approved call was made (single use).
    Used,
    /// Hold mode: the caller went away before a decision.
    Abandoned,
    /// Hold mode: the agent restarted while the call was held; the caller
    /// was refused, and the call can never be released.
    Interrupted,
}

impl Status {
    /// The status's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Used => "used",
            Self::Abandoned => "abandoned",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "used" => Self::Used,
            "abandoned" => Self::Abandoned,
            "interrupted" => Self::Interrupted,
            _ => Self::Expired,
        }
    }
}

/// One approver's vote on an approval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vote {
    /// The approver's subject.
    pub approver: String,
    /// The human behind `approver` ([`super::human_key`]); "" for votes
    /// stored before it was recorded.
    pub human: String,
    /// Whether the vote approves (else it rejects).
    pub approve: bool,
    /// The approver's stated reason.
    pub reason: String,
    /// When the vote was cast (microseconds since the epoch).
    pub at_us: i64,
}

/// One approval request, bound to the exact call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    /// The approval's id.
    pub id: String,
    /// Where the approval stands.
    pub status: Status,
    /// How votes are counted.
    pub mode: ApprovalMode,
    /// The requesting caller's subject.
    pub subject: String,
    /// The caller's issuer (token issuer or certificate issuer DN; "" for
    /// anonymous): with `subject`, who asked.
    pub issuer: String,
    /// The requesting caller's groups.
    pub groups: Vec<String>,
    /// The server the call is addressed to.
    pub server: String,
    /// The JSON-RPC method of the call.
    pub method: String,
    /// The tool, resource or prompt the call names.
    pub target: Option<String>,
    /// The arguments as the audit stores them (masked).
    pub arguments: Option<Value>,
    /// SHA-256 of the call's arguments, binding the approval to them.
    pub arguments_sha256: String,
    /// SHA-256 over issuer, subject, server, method, target, canonical
    /// arguments and policy version: what a retry must match.
    pub digest: String,
    /// The policy set version that asked for approval.
    pub policy_version: String,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// The groups whose members may vote.
    pub approver_groups: Vec<String>,
    /// How many approving votes are needed.
    pub quorum: u32,
    /// When the approval was requested (microseconds since the epoch).
    pub created_us: i64,
    /// When the approval lapses if undecided (microseconds since the epoch).
    pub expires_us: i64,
    /// When the approval was decided, if it was.
    pub decided_us: Option<i64>,
    /// Retry mode: the approved call may be made once until then.
    pub valid_until_us: Option<i64>,
    /// Why it was decided so, if a reason was given.
    pub reason: Option<String>,
    /// The votes cast so far.
    pub votes: Vec<Vote>,
}

impl Approval {
    /// Who approved, in vote order.
    pub fn approvers(&self) -> Vec<String> {
        self.votes
            .iter()
            .filter(|v| v.approve)
            .map(|v| v.approver.clone())
            .collect()
    }
}

/// A standing permission for a subject to call one tool without approval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    /// The grant's id.
    pub id: String,
    /// The subject the grant is for.
    pub subject: String,
    /// The issuer `subject` is of (token issuer URL or certificate issuer
    /// DN): a grant to "alice" of one issuer is not one to "alice" of
    /// another. Grants stored before issuers were recorded have "" and
    /// cover nobody.
    pub issuer: String,
    /// Server name (port rule `name`) or `*`.
    pub server: String,
    /// Tool name glob.
    pub tool: String,
    /// When the grant was added (microseconds since the epoch).
    pub created_us: i64,
    /// When the grant lapses (microseconds since the epoch).
    pub expires_us: i64,
    /// Who added the grant.
    pub granted_by: String,
    /// Why the grant was added.
    pub reason: String,
    /// When the grant was revoked, if it was.
    pub revoked_us: Option<i64>,
    /// Who revoked the grant, if anyone did.
    pub revoked_by: Option<String>,
    /// Why the grant was revoked, if it was.
    pub revoke_reason: Option<String>,
}

impl Grant {
    /// Whether the grant is in force at `now_us`.
    pub fn active(&self, now_us: i64) -> bool {
        self.revoked_us.is_none() && now_us < self.expires_us
    }
}

/// The SQLite store of approvals, votes and grants.
pub struct Store {
    db: Connection,
}

fn json_list(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

const APPROVAL_COLUMNS: &str = "id, status, mode, subject, groups, server, method, target, \
     arguments, arguments_sha256, digest, policy_version, policies, approver_groups, quorum, \
     created_us, expires_us, decided_us, valid_until_us, reason, issuer";

fn approval_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    let mode: String = r.get(2)?;
    let args: Option<String> = r.get(8)?;
    Ok(Approval {
        id: r.get(0)?,
        status: Status::parse(&r.get::<_, String>(1)?),
        mode: if mode == "retry" {
            ApprovalMode::Retry
        } else {
            ApprovalMode::Hold
        },
        subject: r.get(3)?,
        groups: json_list(r.get(4)?),
        server: r.get(5)?,
        method: r.get(6)?,
        target: r.get(7)?,
        arguments: args.and_then(|a| serde_json::from_str(&a).ok()),
        arguments_sha256: r.get(9)?,
        digest: r.get(10)?,
        policy_version: r.get(11)?,
        policies: json_list(r.get(12)?),
        approver_groups: json_list(r.get(13)?),
        quorum: r.get(14)?,
        created_us: r.get(15)?,
        expires_us: r.get(16)?,
        decided_us: r.get(17)?,
        valid_until_us: r.get(18)?,
        reason: r.get(19)?,
        issuer: r.get(20)?,
        votes: Vec::new(),
    })
}

const GRANT_COLUMNS: &str = "id, subject, server, tool, created_us, expires_us, granted_by, \
     reason, revoked_us, revoked_by, revoke_reason, issuer";

fn grant_row(r: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        subject: r.get(1)?,
        server: r.get(2)?,
        tool: r.get(3)?,
        created_us: r.get(4)?,
        expires_us: r.get(5)?,
        granted_by: r.get(6)?,
        reason: r.get(7)?,
        revoked_us: r.get(8)?,
        revoked_by: r.get(9)?,
        revoke_reason: r.get(10)?,
        issuer: r.get(11)?,
    })
}

impl Store {
    /// Opens (and creates if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ApprovalError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ApprovalError::Store(format!("{}: {e}", dir.display())))?;
        }
        let db = Connection::open(path)
            .map_err(|e| ApprovalError::Store(format!("{}: {e}", path.display())))?;
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        db.execute_batch(SCHEMA)?;
        // Databases from before issuers were recorded: the column is added
        // empty (such grants cover nobody; such approvals match no retry).
        // Votes from before humans were recorded: "" (matched by name only).
        for (table, column) in [
            ("approvals", "issuer"),
            ("grants", "issuer"),
            ("votes", "human"),
        ] {
            let has: bool = db.query_row(
                &format!(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = '{column}'"
                ),
                [],
                |r| r.get(0),
            )?;
            if !has {
                db.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"
                ))?;
            }
        }
        Ok(Self { db })
    }

    /// Stores a new approval.
    pub fn insert(&self, a: &Approval) -> Result<(), ApprovalError> {
        self.db.execute(
            &format!(
                "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
            ),
            params![
                a.id,
                a.status.as_str(),
                if a.mode == ApprovalMode::Retry { "retry" } else { "hold" },
                a.subject,
                to_json(&a.groups),
                a.server,
                a.method,
                a.target,
                a.arguments.as_ref().map(to_json),
                a.arguments_sha256,
                a.digest,
                a.policy_version,
                to_json(&a.policies),
                to_json(&a.approver_groups),
                a.quorum,
                a.created_us,
                a.expires_us,
                a.decided_us,
                a.valid_until_us,
                a.reason,
                a.issuer,
            ],
        )?;
        Ok(())
    }

    /// Looks up one approval by id.
    pub fn get(&self, id: &str) -> Result<Option<Approval>, ApprovalError> {
        let a = self
            .db
            .query_row(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"),
                [id],
                approval_row,
            )
            .optional()?;
        a.map(|a| self.with_votes(a)).transpose()
    }

    fn with_votes(&self, mut a: Approval) -> Result<Approval, ApprovalError> {
        let mut st = self.db.prepare_cached(
            "SELECT approver, approve, reason, at_us, human FROM votes WHERE approval_id = ?1 ORDER BY at_us",
        )?;
        a.votes = st
            .query_map([&a.id], |r| {
                Ok(Vote {
                    approver: r.get(0)?,
                    approve: r.get::<_, i64>(1)? != 0,
                    reason: r.get(2)?,
                    at_us: r.get(3)?,
                    human: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(a)
    }

    /// Up to `limit` approvals with `status` (all when `None`) after
    /// `after` (created_us, id) in that order: oldest first, or newest
    /// first when `newest_first` (then "after" means older).
    pub fn page(
        &self,
        status: Option<Status>,
        after: (i64, &str),
        newest_first: bool,
        limit: u32,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let (cmp, order) = if newest_first {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut st = self.db.prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE (?1 IS NULL OR status = ?1) \
             AND (created_us {cmp} ?2 OR (created_us = ?2 AND id {cmp} ?3)) \
             ORDER BY created_us {order}, id {order} LIMIT ?4"
        ))?;
        let rows: Vec<Approval> = st
            .query_map(
                params![status.map(Status::as_str), after.0, after.1, limit],
                approval_row,
            )?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(|a| self.with_votes(a)).collect()
    }

    /// Approvals in `status`.
    pub fn count(&self, status: Status) -> Result<u64, ApprovalError> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM approvals WHERE status = ?1",
            [status.as_str()],
            |r| r.get(0),
        )?;
        Ok(n.unsigned_abs())
    }

    /// Pending requests of one caller still within their deadline.
    pub fn pending_of(
        &self,
        issuer: &str,
        subject: &str,
        now_us: i64,
    ) -> Result<u32, ApprovalError> {
        Ok(self.db.query_row(
            "SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND issuer = ?1 \
             AND subject = ?2 AND expires_us > ?3",
            params![issuer, subject, now_us],
            |r| r.get(0),
        )?)
    }

    /// The newest approval for `digest` in `status`.
    pub fn by_digest(
        &self,
        digest: &str,
        status: Status,
    ) -> Result<Option<Approval>, ApprovalError> {
        let a = self
            .db
            .query_row(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE digest = ?1 AND status = ?2 \
                     ORDER BY created_us DESC LIMIT 1"
                ),
                params![digest, status.as_str()],
                approval_row,
            )
            .optional()?;
        a.map(|a| self.with_votes(a)).transpose()
    }

    /// Records a vote on an approval.
    pub fn add_vote(&self, id: &str, v: &Vote) -> Result<(), ApprovalError> {
        self.db.execute(
            "INSERT INTO votes (approval_id, approver, approve, reason, at_us, human) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, v.approver, v.approve as i64, v.reason, v.at_us, v.human],
        )?;
        Ok(())
    }

    /// Moves `id` from `from` to `to`; false when it was not in `from`
    /// (someone else decided first).
    pub fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        at_us: i64,
        valid_until_us: Option<i64>,
        reason: &str,
    ) -> Result<bool, ApprovalError> {
        let n = self.db.execute(
            "UPDATE approvals SET status = ?3, decided_us = COALESCE(decided_us, ?4), \
             valid_until_us = COALESCE(?5, valid_until_us), reason = ?6 \
             WHERE id = ?1 AND status = ?2",
            params![
                id,
                from.as_str(),
                to.as_str(),
                at_us,
                valid_until_us,
                reason
            ],
        )?;
        Ok(n == 1)
    }

    /// Ids in `status` whose deadline (`expires_us`, or for approved ones
    /// `valid_until_us`) is before `now_us`.
    pub fn due(&self, status: Status, now_us: i64) -> Result<Vec<String>, ApprovalError> {
        let col = if status == Status::Approved {
            "valid_until_us"
        } else {
            "expires_us"
        };
        let mut st = self.db.prepare(&format!(
            "SELECT id FROM approvals WHERE status = ?1 AND {col} <= ?2"
        ))?;
        let ids = st
            .query_map(params![status.as_str(), now_us], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Pending hold-mode approvals (their callers are gone after a restart).
    pub fn pending_holds(&self) -> Result<Vec<String>, ApprovalError> {
        let mut st = self
            .db
            .prepare("SELECT id FROM approvals WHERE status = 'pending' AND mode = 'hold'")?;
        let ids = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Stores a new grant.
    pub fn insert_grant(&self, g: &Grant) -> Result<(), ApprovalError> {
        self.db.execute(
            &format!(
                "INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                g.id,
                g.subject,
                g.server,
                g.tool,
                g.created_us,
                g.expires_us,
                g.granted_by,
                g.reason,
                g.revoked_us,
                g.revoked_by,
                g.revoke_reason,
                g.issuer
            ],
        )?;
        Ok(())
    }

    /// Grants still in force at `now_us`, or all when `all`.
    pub fn grants(&self, now_us: i64, all: bool) -> Result<Vec<Grant>, ApprovalError> {
        let mut st = self.db.prepare(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE ?2 OR (revoked_us IS NULL AND expires_us > ?1) \
             ORDER BY created_us"
        ))?;
        let gs = st
            .query_map(params![now_us, all], grant_row)?
            .collect::<Result<_, _>>()?;
        Ok(gs)
    }

    /// Looks up one grant by id.
    pub fn grant(&self, id: &str) -> Result<Option<Grant>, ApprovalError> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"),
                [id],
                grant_row,
            )
            .optional()?)
    }

    /// Revokes an active grant; false when it was not active.
    pub fn revoke_grant(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now_us: i64,
    ) -> Result<bool, ApprovalError> {
        let n = self.db.execute(
            "UPDATE grants SET revoked_us = ?2, revoked_by = ?3, revoke_reason = ?4, ended_recorded = 1 \
             WHERE id = ?1 AND revoked_us IS NULL AND expires_us > ?2",
            params![id, now_us, by, reason],
        )?;
        Ok(n == 1)
    }

    /// Grants that expired and whose end is not yet in the audit; marks
    /// them recorded.
    pub fn take_expired_grants(&self, now_us: i64) -> Result<Vec<Grant>, ApprovalError> {
        let mut st = self.db.prepare(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE ended_recorded = 0 AND expires_us <= ?1"
        ))?;
        let gs: Vec<Grant> = st
            .query_map([now_us], grant_row)?
            .collect::<Result<_, _>>()?;
        for g in &gs {
            self.db.execute(
                "UPDATE grants SET ended_recorded = 1 WHERE id = ?1",
                [&g.id],
            )?;
        }
        Ok(gs)
    }
}
