//! What a bearer token says: its header and issuer before verification
//! (they pick the issuer and the key), its claims after, and why a token
//! is refused. No I/O and no keys here.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::{
    config::OidcIssuer,
    identity::{AuthMethod, Caller},
};

/// Why a bearer token was refused (all 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url JSON segments.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `none`, HMAC, or a name this build does not know.
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// An asymmetric algorithm the issuer entry's `algorithms` leaves out.
    #[error("token algorithm {alg:?} is not accepted: this issuer's algorithms are [{allowed}]")]
    AlgorithmNotAllowed {
        /// The token's algorithm.
        alg: String,
        /// The algorithms the issuer entry accepts.
        allowed: String,
    },
    /// `iss` names no configured issuer.
    #[error("token issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    /// No key with the token's `kid`, even after refetching the JWKS.
    #[error("token key {0:?} is not in the issuer's JWKS")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token is not yet valid.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// The token was issued in the future.
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    /// The token is not for this audience.
    #[error("token audience is not this resource")]
    Audience,
    /// The token's issuer is not the configured one.
    #[error("token issuer does not match")]
    Issuer,
    /// A required claim is missing or has the wrong type.
    #[error("token claims: {0}")]
    Claims(String),
}

/// The JOSE header fields the agent looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtHeader {
    /// The signing algorithm.
    pub alg: String,
    /// The id of the signing key.
    pub kid: Option<String>,
}

/// Splits a compact JWS and reads its header and (unverified) `iss`, which
/// only selects the issuer whose keys then verify everything.
pub fn peek(token: &str) -> Result<(JwtHeader, String), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let seg = |s: &str, what: &str| -> Result<Value, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::Malformed(format!("{what} is not JSON")))
    };
    let header = seg(h, "header")?;
    let payload = seg(p, "payload")?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| TokenError::Malformed("header has no alg".into()))?
        .to_string();
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| TokenError::Claims("missing iss".into()))?
        .to_string();
    Ok((JwtHeader { alg, kid }, iss))
}

/// The token's algorithm, if `cfg` accepts it. `none` and HMAC (`HS*`,
/// the public-key-as-secret confusion) are refused from the header, before
/// any key is chosen.
pub(super) fn algorithm(cfg: &OidcIssuer, alg: &str) -> Result<Algorithm, TokenError> {
    let refused = || TokenError::Algorithm(alg.to_string());
    if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") {
        return Err(refused());
    }
    if !cfg.algorithms.iter().any(|a| a == alg) {
        return Err(TokenError::AlgorithmNotAllowed {
            alg: alg.to_string(),
            allowed: cfg.algorithms.join(", "),
        });
    }
    alg.parse::<Algorithm>().map_err(|_| refused())
}

/// The caller verified claims name: `iat` not in the future, a non-empty
/// subject at `subject_claim`, groups at `groups_claim`, scopes from
/// `scope` and `scp`; no certificate (the connection adds its own).
pub(super) fn verified(cfg: &OidcIssuer, c: &Map<String, Value>) -> Result<Caller, TokenError> {
    let now = jsonwebtoken::get_current_timestamp();
    if let Some(iat) = c.get("iat").and_then(Value::as_u64)
        && iat > now + cfg.leeway_seconds
    {
        return Err(TokenError::IssuedInFuture);
    }
    let subject = match claim_path(c, &cfg.subject_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(TokenError::Claims(format!(
                "no string claim {:?} (the subject)",
                cfg.subject_claim
            )));
        }
    };
    let groups = strings(claim_path(c, &cfg.groups_claim), false);
    let mut scopes = strings(c.get("scope"), true);
    scopes.extend(strings(c.get("scp"), true));
    let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Caller {
        groups,
        scopes,
        token_id: text("jti"),
        client_id: text("azp").or_else(|| text("client_id")),
        ..Caller::new(AuthMethod::Oidc, subject, Some(cfg.issuer.clone()))
    })
}

/// jsonwebtoken's refusal as ours.
pub(super) fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::Algorithm("mismatch with key".into())
        }
        ErrorKind::MissingRequiredClaim(c) => TokenError::Claims(format!("missing {c}")),
        ErrorKind::InvalidClaimFormat(c) => TokenError::Claims(format!("bad {c}")),
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

/// A claim at a dotted path (`realm_access.roles`).
fn claim_path<'a>(c: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = c.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// An array of strings, or one string (split on spaces when `split`).
fn strings(v: Option<&Value>, split: bool) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) if split => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}
