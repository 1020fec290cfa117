//! Votes on approval requests, and who counts as whom: one human votes
//! once and never on their own call, under whichever name they act (a
//! local user linked to an OIDC identity is that identity).

use super::{
    Actor, Approval, ApprovalError, Approvals, Vote, human_key, secs_us,
    state::{Pending, State, Status},
};
use crate::pipeline::event::now_us;

/// The caller who asked (same subject and issuer; a local user by
/// subject, or by the OIDC identity it is linked to), or an approver of
/// the request.
pub(super) fn may_see(who: &Actor, a: &Approval) -> bool {
    own(who, a) || who.groups.iter().any(|g| a.rule.groups.contains(g))
}

/// `who` is the caller of `a` under some name.
fn own(who: &Actor, a: &Approval) -> bool {
    let c = &a.call;
    (who.subject == c.subject && (who.issuer.is_empty() || who.issuer == c.issuer))
        || who.human == human_key(&c.issuer, &c.subject)
}

/// `who` asked for `a` under any name: the subject (across issuers, the
/// safe side) or the human the name is linked to.
fn is_caller(who: &Actor, a: &Approval) -> bool {
    let c = &a.call;
    who.subject == c.subject || who.human == human_key(&c.issuer, &c.subject)
}

/// `who`'s human (or name) already has a vote on `a`.
fn has_voted(who: &Actor, a: &Approval) -> bool {
    a.votes
        .iter()
        .any(|v| v.approver == who.subject || (!v.human.is_empty() && v.human == who.human))
}

impl Approvals {
    /// One approver's vote. The caller never approves its own call; each
    /// human votes once; `quorum` yes votes approve, one no denies. A yes
    /// on a call whose real arguments the agent no longer holds is refused
    /// (it would be blind).
    pub fn vote(
        &self,
        id: &str,
        who: &Actor,
        approve: bool,
        reason: &str,
    ) -> Result<Approval, ApprovalError> {
        self.sweep();
        let a = self.get(id)?;
        let pending = self.may_vote(&a, who)?;
        if reason.trim().is_empty() {
            return Err(ApprovalError::Invalid("a reason is required".into()));
        }
        if approve && let Err(e) = self.values_known(&a) {
            self.record(
                "approval_refused",
                &a,
                Some(who),
                format!(
                    "{} ({}) tried to approve a call whose real arguments are no longer held",
                    who.subject, who.via
                ),
            );
            return Err(e);
        }
        let vote = Vote {
            approver: who.subject.clone(),
            human: who.human.clone(),
            approve,
            reason: reason.to_string(),
            at_us: now_us(),
        };
        self.db().add_vote(id, &vote)?;
        let a = self.get(id)?;
        self.record(
            if approve {
                "approval_vote_approve"
            } else {
                "approval_vote_deny"
            },
            &a,
            Some(who),
            format!(
                "{} ({}) voted {}: {reason}",
                who.subject,
                who.via,
                if approve { "approve" } else { "deny" }
            ),
        );
        let yes = a.votes.iter().filter(|v| v.approve).count() as u32;
        tracing::info!(approval = %id, approver = %who.subject, approve, yes, quorum = a.rule.quorum, "approval vote");
        if !approve {
            let why = format!("denied by {}: {reason}", who.subject);
            self.settle(&why, |db, why| pending.deny(db, why))?;
        } else if yes >= a.rule.quorum {
            self.approve(pending, &a, who)?;
        }
        self.get(id)
    }

    /// The pending request a vote may move; refuses (and records) a vote
    /// by the caller under any name, by a non-approver, or by a human
    /// already counted.
    fn may_vote(&self, a: &Approval, who: &Actor) -> Result<Pending, ApprovalError> {
        let Some(pending) = a.pending() else {
            return Err(ApprovalError::NotPending(a.id.clone(), a.status.as_str()));
        };
        // Past its deadline but not yet swept (a shared store's sweep looks
        // back a bounded window): as good as expired.
        if a.expires_us <= now_us() {
            return Err(ApprovalError::NotPending(
                a.id.clone(),
                Status::Expired.as_str(),
            ));
        }
        if is_caller(who, a) {
            self.record(
                "approval_refused",
                a,
                Some(who),
                format!(
                    "{} ({}) tried to approve their own call (asked as {})",
                    who.subject, who.via, a.call.subject
                ),
            );
            return Err(ApprovalError::SelfApproval(who.subject.clone()));
        }
        if !who.groups.iter().any(|g| a.rule.groups.contains(g)) {
            self.record(
                "approval_refused",
                a,
                Some(who),
                format!("{} is not an approver of this request", who.subject),
            );
            return Err(ApprovalError::NotApprover {
                who: who.subject.clone(),
                groups: a.rule.groups.join(", "),
            });
        }
        if has_voted(who, a) {
            self.record(
                "approval_refused",
                a,
                Some(who),
                format!(
                    "{} ({}) already voted on this request under this or a linked name",
                    who.subject, who.via
                ),
            );
            return Err(ApprovalError::AlreadyVoted(who.subject.clone()));
        }
        Ok(pending)
    }

    /// The quorum is reached: pending → approved (once), recorded, and the
    /// held call woken.
    fn approve(&self, pending: Pending, a: &Approval, who: &Actor) -> Result<(), ApprovalError> {
        let valid = now_us() + secs_us(self.cfg.valid_seconds);
        let by = format!("approved by {}", a.approvers().join(", "));
        let moved = pending.approve(self.db(), valid, &by)?;
        if let Some(ok) = moved {
            let a = self.get(ok.id())?;
            self.record("approval_approved", &a, Some(who), by);
            self.notify(ok.id(), Status::Approved);
        }
        Ok(())
    }
}
