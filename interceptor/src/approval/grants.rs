//! Just-in-time grants: added and revoked by members of
//! `approvals.grant_groups`, expired by the sweeper, and offered to the
//! policy context (`context.grants`) while in force.

use std::sync::Arc;

use super::{Actor, ApprovalError, Approvals, Grant, NewGrant, Revocation, new_id, secs_us};
use crate::{
    pipeline::{About, LifecycleEvent, event::now_us},
    policy::{budget::glob, phase::Grants},
};

impl Approvals {
    /// Adds a standing grant, if the actor may grant.
    pub fn grant_add(&self, by: &Actor, g: NewGrant) -> Result<Grant, ApprovalError> {
        self.may_grant(by)?;
        if g.subject.trim().is_empty() || g.tool.trim().is_empty() || g.server.trim().is_empty() {
            return Err(ApprovalError::Invalid(
                "subject, server and tool must not be empty".into(),
            ));
        }
        // The two-person rule: a grant to oneself is self-approval by
        // another door. Compared by subject across issuers, the safe side.
        if g.subject == by.subject {
            self.refuse_self_grant(by, &g);
            return Err(ApprovalError::SelfGrant(by.subject.clone()));
        }
        let issuer = match g.issuer.clone().or_else(|| self.default_issuer.clone()) {
            Some(i) if !i.trim().is_empty() => i,
            _ => {
                return Err(ApprovalError::Invalid(
                    "name the issuer the subject is of (--issuer): the agent has more than one \
                     identity source, and a subject alone is ambiguous"
                        .into(),
                ));
            }
        };
        if g.reason.trim().is_empty() {
            return Err(ApprovalError::Invalid(
                "a reason is required (e.g. the incident id)".into(),
            ));
        }
        if g.ttl_seconds == 0 || g.ttl_seconds > self.cfg.max_grant_ttl_seconds {
            return Err(ApprovalError::Invalid(format!(
                "ttl must be between 1 s and approvals.max_grant_ttl_seconds ({} s)",
                self.cfg.max_grant_ttl_seconds
            )));
        }
        let now = now_us();
        let grant = Grant {
            id: new_id("grt"),
            subject: g.subject,
            issuer,
            server: g.server,
            tool: g.tool,
            created_us: now,
            expires_us: now + secs_us(g.ttl_seconds),
            granted_by: by.subject.clone(),
            reason: g.reason,
            revocation: Revocation::default(),
        };
        self.db().insert_grant(&grant)?;
        self.refresh_grants()?;
        tracing::info!(grant = %grant.id, subject = %grant.subject, tool = %grant.tool, by = %by.subject, "grant added");
        self.record_grant(
            "grant_added",
            &grant,
            Some(by),
            format!(
                "{} granted {} on {} to {} ({}) for {} s: {}",
                by.subject,
                grant.tool,
                grant.server,
                grant.subject,
                grant.issuer,
                g.ttl_seconds,
                grant.reason
            ),
        );
        Ok(grant)
    }

    /// Revokes a grant, if the actor may grant.
    pub fn grant_revoke(&self, by: &Actor, id: &str, reason: &str) -> Result<Grant, ApprovalError> {
        self.may_grant(by)?;
        if !self.db().revoke_grant(id, &by.subject, reason, now_us())? {
            return Err(ApprovalError::NoGrant(id.to_string()));
        }
        self.refresh_grants()?;
        let g = self
            .db()
            .grant(id)?
            .ok_or_else(|| ApprovalError::NoGrant(id.to_string()))?;
        self.record_grant(
            "grant_revoked",
            &g,
            Some(by),
            format!("{} revoked the grant: {reason}", by.subject),
        );
        Ok(g)
    }

    /// Grants `who` may see: all of them for a member of the grant
    /// groups, else only its own.
    pub fn grants_list(&self, who: &Actor, all: bool) -> Result<Vec<Grant>, ApprovalError> {
        self.sweep();
        let mut gs = self.db().grants(now_us(), all)?;
        if self.may_grant(who).is_err() {
            gs.retain(|g| {
                g.subject == who.subject && (who.issuer.is_empty() || who.issuer == g.issuer)
            });
        }
        Ok(gs)
    }

    /// Audits and logs a refused self-grant (no grant exists to name).
    fn refuse_self_grant(&self, by: &Actor, g: &NewGrant) {
        tracing::warn!(by = %by.subject, via = %by.via, tool = %g.tool, "self-grant refused");
        let mut r = LifecycleEvent::new(
            "grant_refused",
            format!(
                "{} ({}) tried to grant {} on {} to themselves; refused: grants need a \
                 second person",
                by.subject, by.via, g.tool, g.server
            ),
        );
        r.about = About::Grant {
            id: None,
            subject: g.subject.clone(),
            tool: g.tool.clone(),
        };
        r.approvers = vec![by.subject.clone()];
        r.decision = Some("refused".into());
        self.events.emit(r);
    }

    fn may_grant(&self, by: &Actor) -> Result<(), ApprovalError> {
        if by.groups.iter().any(|g| self.cfg.grant_groups.contains(g)) {
            Ok(())
        } else {
            Err(ApprovalError::NotGranter(by.subject.clone()))
        }
    }

    /// Records the end of every grant past its TTL (once each).
    pub(super) fn expire_grants(&self, now_us: i64) {
        let ended = self.db().take_expired_grants(now_us).unwrap_or_default();
        if ended.is_empty() {
            return;
        }
        for g in &ended {
            tracing::info!(grant = %g.id, subject = %g.subject, tool = %g.tool, "grant expired");
            let message = format!(
                "grant of {} on {} to {} expired",
                g.tool, g.server, g.subject
            );
            self.record_grant("grant_expired", g, None, message);
        }
        let _ = self.refresh_grants();
    }

    pub(super) fn refresh_grants(&self) -> Result<(), ApprovalError> {
        let active = self.db().grants(now_us(), false)?;
        *self.grants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(active);
        Ok(())
    }

    pub(super) fn record_grant(&self, kind: &str, g: &Grant, who: Option<&Actor>, message: String) {
        let mut r = LifecycleEvent::new(kind, message);
        r.about = About::Grant {
            id: Some(g.id.clone()),
            subject: g.subject.clone(),
            tool: g.tool.clone(),
        };
        r.approvers = vec![who.map_or_else(|| g.granted_by.clone(), |w| w.subject.clone())];
        self.events.emit(r);
    }
}

impl Grants for Approvals {
    fn covering(&self, issuer: &str, subject: &str, server: &str, tool: &str) -> Vec<String> {
        let grants = self
            .grants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if grants.is_empty() {
            return Vec::new();
        }
        let now = now_us();
        let mut out: Vec<String> = grants
            .iter()
            .filter(|g| {
                g.subject == subject
                    && !g.issuer.is_empty()
                    && g.issuer == issuer
                    && g.active(now)
                    && (g.server == "*" || g.server == server)
                    && glob(&g.tool, tool)
            })
            .map(|g| g.tool.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
