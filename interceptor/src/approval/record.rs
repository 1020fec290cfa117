//! An approval request as stored and shown: the call it is bound to, who
//! may decide, where it stands, and the votes cast.

use serde::{Deserialize, Serialize, Serializer, ser::SerializeStruct};
use serde_json::Value;

use super::state::{Approved, Pending, Status};
use crate::pipeline::{ApprovalRule, CallFacts};

/// One approver's vote on an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// The approval's id.
    pub id: String,
    /// Where the approval stands.
    pub status: Status,
    /// Who may approve, how many must, and how the caller waits (the
    /// policy's `@approval` rule).
    pub rule: ApprovalRule,
    /// Who asked for what: the call the approval is bound to.
    pub call: CallFacts,
    /// The arguments as the audit stores them (masked).
    pub arguments: Option<Value>,
    /// SHA-256 over issuer, subject, server, method, target, canonical
    /// arguments and policy version: what a retry must match.
    pub digest: String,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
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

    /// The request as a pending state, if it was pending when read.
    pub fn pending(&self) -> Option<Pending> {
        (self.status == Status::Pending).then(|| Pending::stored(self.id.clone()))
    }

    /// The request as an approved state, if it was approved when read.
    pub fn approved(&self) -> Option<Approved> {
        (self.status == Status::Approved).then(|| Approved::stored(self.id.clone()))
    }

    /// `tools/call on db.drop`.
    pub fn what(&self) -> String {
        match &self.call.target {
            Some(t) => format!("{} on {t}", self.call.method),
            None => self.call.method.clone(),
        }
    }
}

/// The JSON of the admin API and `approvals list/show`: the call's facts
/// inline, keys in the order clients have always seen.
impl Serialize for Approval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = &self.call;
        let mut m = s.serialize_struct("Approval", 22)?;
        m.serialize_field("id", &self.id)?;
        m.serialize_field("status", &self.status)?;
        m.serialize_field("mode", &self.rule.mode)?;
        m.serialize_field("subject", &c.subject)?;
        m.serialize_field("issuer", &c.issuer)?;
        m.serialize_field("groups", &c.groups)?;
        m.serialize_field("server", &c.server)?;
        m.serialize_field("method", &c.method)?;
        m.serialize_field("target", &c.target)?;
        m.serialize_field("arguments", &self.arguments)?;
        m.serialize_field("arguments_sha256", &c.arguments_sha256)?;
        m.serialize_field("digest", &self.digest)?;
        m.serialize_field("policy_version", &c.policy_version)?;
        m.serialize_field("policies", &self.policies)?;
        m.serialize_field("approver_groups", &self.rule.groups)?;
        m.serialize_field("quorum", &self.rule.quorum)?;
        m.serialize_field("created_us", &self.created_us)?;
        m.serialize_field("expires_us", &self.expires_us)?;
        m.serialize_field("decided_us", &self.decided_us)?;
        m.serialize_field("valid_until_us", &self.valid_until_us)?;
        m.serialize_field("reason", &self.reason)?;
        m.serialize_field("votes", &self.votes)?;
        m.end()
    }
}
