//! A grant as stored and shown, whichever store keeps it.

use serde::Serialize;

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
    /// The revocation, if any (its keys stand at the top level in JSON).
    #[serde(flatten)]
    pub revocation: Revocation,
}

/// When, by whom and why a grant was revoked: all three are set together
/// by a store's `revoke_grant`, and all are `None` while the grant stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Revocation {
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
        self.revocation.revoked_us.is_none() && now_us < self.expires_us
    }
}
