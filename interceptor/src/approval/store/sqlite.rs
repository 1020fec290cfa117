//! Approvals, votes and grants in SQLite (the default store: one agent's
//! own file), so pending approvals and grants survive a restart. WAL
//! journal with `synchronous = FULL`: a vote or a grant acknowledged to
//! its author is on disk. A request's status changes only through a
//! [`Move`] of its typed state (`crate::approval::state`).

mod grants;

use std::{
    path::Path,
    sync::{Mutex, MutexGuard},
};

use rusqlite::{Connection, Params, Row, params};
use serde::Serialize;

use super::{Backend, Window};
use crate::approval::{
    Approval, ApprovalError, Vote,
    state::{Approved, Move, Pending, Status},
};
use crate::pipeline::{ApprovalMode, ApprovalRule, CallFacts, event::now_us};

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
CREATE TABLE IF NOT EXISTS secrets (
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
";

/// One connection to the SQLite file; [`Sqlite`] serializes its users.
struct Store {
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
        rule: ApprovalRule {
            groups: json_list(r.get(13)?),
            quorum: r.get(14)?,
            mode: if mode == "retry" {
                ApprovalMode::Retry
            } else {
                ApprovalMode::Hold
            },
        },
        call: CallFacts {
            subject: r.get(3)?,
            issuer: r.get(20)?,
            groups: json_list(r.get(4)?),
            server: r.get(5)?,
            method: r.get(6)?,
            target: r.get(7)?,
            arguments_sha256: r.get(9)?,
            policy_version: r.get(11)?,
        },
        arguments: args.and_then(|a| serde_json::from_str(&a).ok()),
        digest: r.get(10)?,
        policies: json_list(r.get(12)?),
        created_us: r.get(15)?,
        expires_us: r.get(16)?,
        decided_us: r.get(17)?,
        valid_until_us: r.get(18)?,
        reason: r.get(19)?,
        votes: Vec::new(),
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

    /// Every row `sql` selects, read by `row`.
    fn all<T>(
        &self,
        sql: &str,
        p: impl Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, ApprovalError> {
        let mut st = self.db.prepare_cached(sql)?;
        let rows = st.query_map(p, row)?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The approvals `where_` selects (a `WHERE ...` clause and what
    /// follows), with their votes.
    fn approvals(&self, where_: &str, p: impl Params) -> Result<Vec<Approval>, ApprovalError> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals {where_}");
        let rows = self.all(&sql, p, approval_row)?;
        rows.into_iter().map(|a| self.with_votes(a)).collect()
    }

    fn with_votes(&self, mut a: Approval) -> Result<Approval, ApprovalError> {
        a.votes = self.all(
            "SELECT approver, approve, reason, at_us, human FROM votes WHERE approval_id = ?1 ORDER BY at_us",
            [&a.id],
            |r| {
                Ok(Vote {
                    approver: r.get(0)?,
                    approve: r.get::<_, i64>(1)? != 0,
                    reason: r.get(2)?,
                    at_us: r.get(3)?,
                    human: r.get(4)?,
                })
            },
        )?;
        Ok(a)
    }

    fn due(
        &self,
        deadline: &str,
        status: Status,
        now_us: i64,
    ) -> Result<Vec<String>, ApprovalError> {
        self.all(
            &format!("SELECT id FROM approvals WHERE status = ?1 AND {deadline} <= ?2"),
            params![status.as_str(), now_us],
            |r| r.get(0),
        )
    }
}

/// The SQLite store of approvals, votes and grants: one connection, used
/// by one caller at a time.
pub struct Sqlite(Mutex<Store>);

impl Sqlite {
    /// Opens (and creates if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ApprovalError> {
        Ok(Self(Mutex::new(Store::open(path)?)))
    }

    fn db(&self) -> MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for Sqlite {
    fn state_key(&self) -> Result<[u8; 32], ApprovalError> {
        let s = self.db();
        let fresh = crate::approval::sealed::random_key();
        // Of two agents opening one new database, the first insert wins.
        s.db.execute(
            "INSERT OR IGNORE INTO secrets (name, value) VALUES ('request_state_key', ?1)",
            params![fresh.as_slice()],
        )?;
        let v: Vec<u8> = s.db.query_row(
            "SELECT value FROM secrets WHERE name = 'request_state_key'",
            [],
            |r| r.get(0),
        )?;
        v.try_into()
            .map_err(|_| ApprovalError::Store("the requestState key is not 32 bytes".into()))
    }

    fn insert(&self, a: &Approval) -> Result<(), ApprovalError> {
        let s = self.db();
        s.db.execute(
            &format!(
                "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
            ),
            params![
                a.id,
                a.status.as_str(),
                if a.rule.mode == ApprovalMode::Retry { "retry" } else { "hold" },
                a.call.subject,
                to_json(&a.call.groups),
                a.call.server,
                a.call.method,
                a.call.target,
                a.arguments.as_ref().map(to_json),
                a.call.arguments_sha256,
                a.digest,
                a.call.policy_version,
                to_json(&a.policies),
                to_json(&a.rule.groups),
                a.rule.quorum,
                a.created_us,
                a.expires_us,
                a.decided_us,
                a.valid_until_us,
                a.reason,
                a.call.issuer,
            ],
        )?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Approval>, ApprovalError> {
        let s = self.db();
        Ok(s.approvals("WHERE id = ?1", [id])?.into_iter().next())
    }

    fn page(&self, w: &Window<'_>) -> Result<Vec<Approval>, ApprovalError> {
        let (status, after, newest_first, limit) = (w.status, w.after, w.newest_first, w.limit);
        let s = self.db();
        let (cmp, order) = if newest_first {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        s.approvals(
            &format!(
                "WHERE (?1 IS NULL OR status = ?1) \
                 AND (created_us {cmp} ?2 OR (created_us = ?2 AND id {cmp} ?3)) \
                 ORDER BY created_us {order}, id {order} LIMIT ?4"
            ),
            params![status.map(Status::as_str), after.0, after.1, limit],
        )
    }

    fn count(&self, status: Status) -> Result<u64, ApprovalError> {
        let s = self.db();
        let n: i64 = s.db.query_row(
            "SELECT COUNT(*) FROM approvals WHERE status = ?1",
            [status.as_str()],
            |r| r.get(0),
        )?;
        Ok(n.unsigned_abs())
    }

    fn pending_of(&self, issuer: &str, subject: &str, now_us: i64) -> Result<u32, ApprovalError> {
        let s = self.db();
        Ok(s.db.query_row(
            "SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND issuer = ?1 \
             AND subject = ?2 AND expires_us > ?3",
            params![issuer, subject, now_us],
            |r| r.get(0),
        )?)
    }

    fn by_digest(&self, digest: &str, status: Status) -> Result<Option<Approval>, ApprovalError> {
        let s = self.db();
        let found = s.approvals(
            "WHERE digest = ?1 AND status = ?2 ORDER BY created_us DESC LIMIT 1",
            params![digest, status.as_str()],
        )?;
        Ok(found.into_iter().next())
    }

    fn add_vote(&self, id: &str, v: &Vote) -> Result<(), ApprovalError> {
        let s = self.db();
        let r = s.db.execute(
            "INSERT INTO votes (approval_id, approver, approve, reason, at_us, human) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, v.approver, v.approve as i64, v.reason, v.at_us, v.human],
        );
        match r {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApprovalError::AlreadyVoted(v.approver.clone()))
            }
            r => r.map(drop).map_err(Into::into),
        }
    }

    fn transition(&self, id: &str, m: &Move, reason: &str) -> Result<bool, ApprovalError> {
        let s = self.db();
        let n = s.db.execute(
            "UPDATE approvals SET status = ?3, decided_us = COALESCE(decided_us, ?4), \
             valid_until_us = COALESCE(?5, valid_until_us), reason = ?6 \
             WHERE id = ?1 AND status = ?2",
            params![
                id,
                m.from().as_str(),
                m.to().as_str(),
                now_us(),
                m.valid_until_us(),
                reason
            ],
        )?;
        Ok(n == 1)
    }

    fn due_pending(&self, now_us: i64) -> Result<Vec<Pending>, ApprovalError> {
        let s = self.db();
        Ok(s.due("expires_us", Status::Pending, now_us)?
            .into_iter()
            .map(Pending::stored)
            .collect())
    }

    fn due_approved(&self, now_us: i64) -> Result<Vec<Approved>, ApprovalError> {
        let s = self.db();
        Ok(s.due("valid_until_us", Status::Approved, now_us)?
            .into_iter()
            .map(Approved::stored)
            .collect())
    }

    fn pending_holds(&self) -> Result<Vec<Pending>, ApprovalError> {
        let s = self.db();
        s.all(
            "SELECT id FROM approvals WHERE status = 'pending' AND mode = 'hold'",
            [],
            |r| r.get(0).map(Pending::stored),
        )
    }
}
