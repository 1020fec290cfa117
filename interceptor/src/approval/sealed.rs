//! The agent's own MCP 2026-07-28 `requestState`, sealed (AES-256-GCM,
//! aws-lc-rs, the crypto library the binary already links for rustls).
//!
//! When the agent answers an approval-required call in band (`inband`),
//! the client must echo this state on its retry. The state says which
//! approval the agent asked for, for whom (issuer and subject) and for
//! which call (server, method, target, arguments digest), and until when.
//! The client cannot read it (it is encrypted) nor change it (the tag
//! fails), so a retry cannot claim another caller's or another call's
//! approval through it.
//!
//! Security reasoning (which attack, which defence, which test):
//! - Tampering or forging: AEAD tag over the whole token, the format
//!   version bound as associated data (`tests::tampered_states_are_forged`).
//! - Replaying another caller's state: issuer and subject are inside and
//!   compared (`tests::another_callers_state_is_refused`).
//! - Replaying a state on another call: the call key is inside and compared
//!   (`tests::another_calls_state_is_refused`).
//! - Keeping a state forever: it carries its expiry
//!   (`tests::expired_states_are_refused`).
//! - The state is not the authority: a call is released only when the
//!   store holds an approved approval whose digest is this call's, so even
//!   a forged state (by someone who read the key from `approvals.db`)
//!   releases nothing that was not approved.
//!
//! The key is 32 random bytes kept in the approvals database beside the
//! approvals it names: a pending approval survives a restart, and so must
//! the state a waiting client holds for it.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::CallFacts;

/// Every state the agent seals starts with this (its format version, also
/// bound as associated data); a `requestState` without it is the server's.
pub const PREFIX: &str = "mcpi1.";

/// Why a `requestState` of the agent's form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not sealed by this agent's key, or changed since (also: not decodable).
    #[error("the requestState was not issued by this agent or was altered")]
    Forged,
    /// Sealed by this agent, but past its expiry.
    #[error("the requestState has expired")]
    Expired,
    /// Issued to another caller (issuer and subject differ).
    #[error("the requestState was issued to another caller")]
    OtherCaller,
    /// Issued for another call (server, method, target or arguments differ).
    #[error("the requestState was issued for another call")]
    OtherCall,
}

impl StateError {
    /// A stable name for `data.request_state` in the refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forged => "forged",
            Self::Expired => "expired",
            Self::OtherCaller => "other_caller",
            Self::OtherCall => "other_call",
        }
    }
}

/// What a sealed state says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The approval the agent asked the client to wait for.
    pub approval: String,
    /// The caller's issuer ("" for certificates and anonymous callers).
    pub issuer: String,
    /// The caller's subject.
    pub subject: String,
    /// [`call_key`] of the call.
    pub call: String,
    /// Unusable from then on (microseconds since the epoch).
    pub expires_us: i64,
}

impl Claims {
    /// Checks the claims against the retry in hand: who sends it, which
    /// call it is, and when.
    pub fn check(&self, facts: &CallFacts, now_us: i64) -> Result<(), StateError> {
        if self.expires_us <= now_us {
            return Err(StateError::Expired);
        }
        if self.issuer != facts.issuer || self.subject != facts.subject {
            return Err(StateError::OtherCaller);
        }
        if self.call != call_key(facts) {
            return Err(StateError::OtherCall);
        }
        Ok(())
    }
}

/// The call a state is for: server, method, target and arguments digest.
/// Neither the caller (checked on its own, for a clearer refusal) nor the
/// policy version (a reload between the rounds asks for a new approval
/// instead of refusing the client's state) is part of it.
pub fn call_key(facts: &CallFacts) -> String {
    let mut h = Sha256::new();
    for part in [
        facts.server.as_str(),
        &facts.method,
        facts.target.as_deref().unwrap_or(""),
        &facts.arguments_sha256,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The agent's key for its own `requestState`.
pub struct StateKey(LessSafeKey);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

/// 32 random bytes, for a new key.
pub fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    // aws-lc's RNG fails only if the OS has no entropy source at all.
    aws_lc_rs::rand::fill(&mut k).expect("the system random number generator");
    k
}

impl StateKey {
    /// The key of these 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        let k = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key");
        Self(LessSafeKey::new(k))
    }

    /// `claims` as an opaque token: [`PREFIX`] then base64url of a random
    /// nonce and the ciphertext with its tag.
    pub fn seal(&self, claims: &Claims) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random number generator");
        let mut data = serde_json::to_vec(claims).unwrap_or_default();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(PREFIX.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM seals any message this small");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The claims of a token this key sealed, unchanged; else `Forged`.
    pub fn open(&self, token: &str) -> Result<Claims, StateError> {
        let raw = token
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or(StateError::Forged)?;
        if raw.len() < NONCE_LEN {
            return Err(StateError::Forged);
        }
        let (n, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| StateError::Forged)?;
        let mut data = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(PREFIX.as_bytes()), &mut data)
            .map_err(|_| StateError::Forged)?;
        serde_json::from_slice(plain).map_err(|_| StateError::Forged)
    }
}

/// Whether `state` has the agent's form (else it is the server's).
pub fn is_ours(state: &str) -> bool {
    state.starts_with(PREFIX)
}

#[cfg(test)]
mod tests;
