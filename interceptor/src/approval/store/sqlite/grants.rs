//! Grants in SQLite: standing permissions for a subject (of one issuer)
//! to call matching tools without approval, until they expire or are
//! revoked.

use rusqlite::{Params, Row, params};

use super::{Sqlite, Store};
use crate::approval::store::Grants;
use crate::approval::{ApprovalError, Grant, Revocation};

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
        revocation: Revocation {
            revoked_us: r.get(8)?,
            revoked_by: r.get(9)?,
            revoke_reason: r.get(10)?,
        },
        issuer: r.get(11)?,
    })
}

impl Store {
    /// The grants `where_` selects.
    fn grants_where(&self, where_: &str, p: impl Params) -> Result<Vec<Grant>, ApprovalError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE {where_}");
        self.all(&sql, p, grant_row)
    }
}

impl Grants for Sqlite {
    fn insert_grant(&self, g: &Grant) -> Result<(), ApprovalError> {
        let s = self.db();
        s.db.execute(
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
                g.revocation.revoked_us,
                g.revocation.revoked_by,
                g.revocation.revoke_reason,
                g.issuer
            ],
        )?;
        Ok(())
    }

    fn grants(&self, now_us: i64, all: bool) -> Result<Vec<Grant>, ApprovalError> {
        let s = self.db();
        s.grants_where(
            "?2 OR (revoked_us IS NULL AND expires_us > ?1) ORDER BY created_us",
            params![now_us, all],
        )
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>, ApprovalError> {
        let s = self.db();
        Ok(s.grants_where("id = ?1", [id])?.into_iter().next())
    }

    fn revoke_grant(&self, id: &str, by: &str, why: &str, now: i64) -> Result<bool, ApprovalError> {
        let s = self.db();
        let n = s.db.execute(
            "UPDATE grants SET revoked_us = ?2, revoked_by = ?3, revoke_reason = ?4, ended_recorded = 1 \
             WHERE id = ?1 AND revoked_us IS NULL AND expires_us > ?2",
            params![id, now, by, why],
        )?;
        Ok(n == 1)
    }

    fn take_expired_grants(&self, now_us: i64) -> Result<Vec<Grant>, ApprovalError> {
        let s = self.db();
        let mut gs = s.grants_where("ended_recorded = 0 AND expires_us <= ?1", [now_us])?;
        // Conditional, so of two agents sharing the file one records each.
        let mut won = Vec::with_capacity(gs.len());
        for g in gs.drain(..) {
            let n = s.db.execute(
                "UPDATE grants SET ended_recorded = 1 WHERE id = ?1 AND ended_recorded = 0",
                [&g.id],
            )?;
            if n == 1 {
                won.push(g);
            }
        }
        Ok(won)
    }
}
