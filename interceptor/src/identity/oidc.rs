//! Bearer JWTs from OIDC issuers: discovery, JWKS, signature and claims.
//!
//! Why jsonwebtoken and not openidconnect's `IdTokenVerifier`: the agent is
//! a resource server. It checks access tokens (RFC 9068) as well as ID
//! tokens, where `aud` is the MCP resource (RFC 8707) and `azp` names the
//! real client; openidconnect's verifier requires `azp` to equal its
//! client id, checks no `nbf`, and has no hook for refetching the JWKS on
//! an unknown `kid`. jsonwebtoken verifies on aws-lc-rs, already linked.
//!
//! `token` reads what a token says (header, claims, refusals), `keys`
//! fetches the issuer's keys and decides how long to trust them; this file
//! verifies a token against them and remembers the result.
//!
//! Defences, each with a test in `identity/tests.rs`,
//! `tests/tests/identity_oidc.rs` or `tests/tests/identity_oidc_issuers.rs`:
//! - `alg: none` and HMAC (`HS*`, the public-key-as-secret confusion) are
//!   refused from the header, before any key is chosen;
//! - the key must carry the header's `kid` and, if it names one, the same
//!   `alg`; key type and algorithm family must match (jsonwebtoken);
//! - `iss` exact, `aud` one of the configured audiences, `exp` required,
//!   `nbf` and `iat` checked, each with the configured skew;
//! - an unknown `kid` refetches the JWKS at most every
//!   `jwks_min_refresh_seconds`, so forged kids cannot hammer the issuer;
//! - fetched keys are trusted for `jwks_max_age_seconds` plus, while every
//!   refetch fails, `jwks_max_stale_seconds`; past that the issuer's tokens
//!   are refused (cached verifications too) until a refetch succeeds, so
//!   whoever cuts the agent off from the issuer cannot keep a withdrawn
//!   key trusted for ever (`tests/tests/faults.rs`).

mod keys;
mod token;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

pub use keys::FetchError;
pub use token::{JwtHeader, TokenError, peek};

use crate::{config::OidcIssuer, identity::Caller};

/// One trusted issuer: its settings and its cached keys.
pub struct Issuer {
    /// The issuer's configuration.
    pub cfg: OidcIssuer,
    http: reqwest::Client,
    keys: RwLock<keys::Keys>,
    refresh: tokio::sync::Mutex<()>,
    /// Tokens already verified, by their exact text, with their `exp`: a
    /// client sends the same token on every request, and an RSA check
    /// costs more than the rest of the request. Emptied when the key set
    /// changes, bounded by `VERIFIED_CACHE`.
    verified: std::sync::Mutex<HashMap<String, (Arc<Caller>, u64)>>,
}

/// How many verified tokens an issuer remembers.
const VERIFIED_CACHE: usize = 8192;

impl Issuer {
    /// Builds a verifier for one issuer.
    pub fn new(cfg: OidcIssuer) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            cfg,
            http,
            keys: RwLock::new(keys::Keys::default()),
            refresh: tokio::sync::Mutex::new(()),
            verified: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Verifies `token` whose header is `header`, for the MCP audiences.
    pub async fn verify(
        &self,
        token: &str,
        header: &JwtHeader,
    ) -> Result<Arc<Caller>, VerifyError> {
        self.verify_for(token, header, None).await
    }

    /// [`Self::verify`] against `audiences` instead of the configured ones
    /// (the admin API's own). Such a check skips the cache of verified
    /// tokens, which holds tokens verified for the MCP audiences only.
    pub async fn verify_for(
        &self,
        token: &str,
        header: &JwtHeader,
        audiences: Option<&[String]>,
    ) -> Result<Arc<Caller>, VerifyError> {
        let alg = token::algorithm(&self.cfg, &header.alg)?;
        // Before the cache of verified tokens: stale keys vouch for none.
        self.ensure_trusted().await?;
        let now = jsonwebtoken::get_current_timestamp();
        if audiences.is_none()
            && let Some(v) = self.cached(token, now)
        {
            return Ok(v);
        }
        let key = self.key_or_refetch(header, alg).await?;
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(audiences.unwrap_or(&self.cfg.audiences));
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway_seconds;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| token::map_error(e.kind()))?;
        let verified = Arc::new(token::verified(&self.cfg, &data.claims)?);
        if audiences.is_none() {
            let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
            self.remember(token, &verified, exp, now);
        }
        Ok(verified)
    }

    /// Refetches keys that are missing or stale; refuses while none may be
    /// used.
    async fn ensure_trusted(&self) -> Result<(), VerifyError> {
        if self.trusted().is_err() {
            if let Err(e) = self.refetch(false).await {
                tracing::debug!(issuer = %self.cfg.issuer, error = %e, "JWKS not refetched");
            }
            if let Err(why) = self.trusted() {
                self.note_stale(&why);
                return Err(VerifyError::Unavailable(why));
            }
        }
        Ok(())
    }

    /// `token` as verified before, unless it has expired since.
    fn cached(&self, token: &str, now: u64) -> Option<Arc<Caller>> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let (v, exp) = cache.get(token)?;
        (now < exp + self.cfg.leeway_seconds).then(|| v.clone())
    }

    /// The key for `header`, refetching the JWKS once (rate-limited) if no
    /// fetched key fits.
    async fn key_or_refetch(
        &self,
        header: &JwtHeader,
        alg: Algorithm,
    ) -> Result<DecodingKey, TokenError> {
        if let Some(k) = self.key_for(header, alg) {
            return Ok(k);
        }
        // Rotation: a new kid appears before our cached set has it.
        if let Err(e) = self.refetch(false).await {
            tracing::debug!(issuer = %self.cfg.issuer, error = %e, "JWKS not refetched");
        }
        self.key_for(header, alg)
            .ok_or_else(|| TokenError::UnknownKey(header.kid.clone().unwrap_or_default()))
    }

    /// Caches a verified token until its `exp`. A full cache first drops
    /// expired entries, then everything.
    fn remember(&self, token: &str, verified: &Arc<Caller>, exp: u64, now: u64) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.retain(|_, (_, e)| now < *e + self.cfg.leeway_seconds);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), (verified.clone(), exp));
    }
}

/// A token failed, or the issuer's keys could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is invalid.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The issuer's keys could not be fetched.
    #[error("issuer keys unavailable: {0}")]
    Unavailable(String),
}
