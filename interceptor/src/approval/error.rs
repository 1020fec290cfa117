//! Why an approval operation failed.

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The approval store failed.
    #[error("approvals database: {0}")]
    Store(String),
    /// The shared store (DynamoDB) cannot be used: the agent refuses to
    /// start (the error names the table, region, endpoint and the fix).
    #[error(transparent)]
    Unusable(Box<super::store::DynamoError>),
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
