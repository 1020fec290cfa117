//! Bearer JWTs from OIDC issuers: discovery, JWKS, signature and claims.
//!
//! Why jsonwebtoken and not openidconnect's `IdTokenVerifier`: the agent is
//! a resource server. It checks access tokens (RFC 9068) as well as ID
//! tokens, where `aud` is the MCP resource (RFC 8707) and `azp` names the
//! real client; openidconnect's verifier requires `azp` to equal its
//! client id, checks no `nbf`, and has no hook for refetching the JWKS on
//! an unknown `kid`. jsonwebtoken verifies on aws-lc-rs, already linked.
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

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::Jwk};
use serde_json::{Map, Value};

use crate::config::OidcIssuer;

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

/// The verified facts of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The token's issuer.
    pub issuer: String,
    /// The caller's subject.
    pub subject: String,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// The caller's scopes.
    pub scopes: Vec<String>,
    /// The token's `jti`.
    pub token_id: Option<String>,
    /// The OAuth client id.
    pub client_id: Option<String>,
}

/// The keys of one issuer, as last fetched.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    /// Keys without a `kid` (usable only when the token names none).
    anonymous: Vec<(DecodingKey, Option<Algorithm>)>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Why the last fetch failed; cleared by a success. Refusals say it.
    last_error: Option<String>,
    /// The stale keys were logged (once per outage).
    stale_logged: bool,
    jwks_uri: Option<String>,
}

/// One trusted issuer: its settings and its cached keys.
pub struct Issuer {
    /// The issuer's configuration.
    pub cfg: OidcIssuer,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    refresh: tokio::sync::Mutex<()>,
    /// Tokens already verified, by their exact text, with their `exp`: a
    /// client sends the same token on every request, and an RSA check
    /// costs more than the rest of the request. Emptied when the key set
    /// changes, bounded by `VERIFIED_CACHE`.
    verified: std::sync::Mutex<HashMap<String, (Arc<Verified>, u64)>>,
}

const VERIFIED_CACHE: usize = 8192;

/// Why fetching the issuer's keys failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

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
            keys: RwLock::new(Keys::default()),
            refresh: tokio::sync::Mutex::new(()),
            verified: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Fetches keys now and then every `jwks_max_age_seconds` (retrying
    /// sooner after a failure) until the issuer is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                let wait = match this.refetch(true).await {
                    Ok(()) => Duration::from_secs(this.cfg.jwks_max_age_seconds.max(1)),
                    Err(e) => {
                        tracing::warn!(issuer = %this.cfg.issuer, error = %e, "issuer keys unavailable; retrying");
                        if let Err(why) = this.trusted() {
                            this.note_stale(&why);
                        }
                        Duration::from_secs(this.cfg.jwks_min_refresh_seconds.clamp(1, 30))
                    }
                };
                drop(this);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Fetches discovery and keys now (doctor); returns the key count.
    pub async fn probe(&self) -> Result<usize, FetchError> {
        self.refetch(true).await?;
        let k = self.keys();
        Ok(k.by_kid.len() + k.anonymous.len())
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the issuer's keys have been fetched.
    pub fn has_keys(&self) -> bool {
        self.keys().fetched.is_some()
    }

    /// How long fetched keys may be used: max-age, then max-stale.
    fn trust_window(&self) -> Duration {
        Duration::from_secs(
            self.cfg
                .jwks_max_age_seconds
                .saturating_add(self.cfg.jwks_max_stale_seconds),
        )
    }

    /// `Err(why)` when no key may be used: none fetched yet, or fetched
    /// longer ago than the trust window (no refetch succeeded since).
    fn trusted(&self) -> Result<(), String> {
        let k = self.keys();
        let cause = k
            .last_error
            .as_deref()
            .unwrap_or("the refetch has not completed");
        match k.fetched {
            None => Err(format!("no keys fetched yet: {cause}")),
            Some(t) if t.elapsed() > self.trust_window() => Err(format!(
                "cached keys are stale (fetched {}s ago; jwks_max_age_seconds + \
                 jwks_max_stale_seconds = {}s) and the issuer is unreachable: {cause}",
                t.elapsed().as_secs(),
                self.trust_window().as_secs()
            )),
            Some(_) => Ok(()),
        }
    }

    /// Logs once per outage that keys we had are no longer trusted (an
    /// issuer never reached is logged by every failed retry already).
    fn note_stale(&self, why: &str) {
        let mut k = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if k.fetched.is_none() || k.stale_logged {
            return;
        }
        k.stale_logged = true;
        drop(k);
        tracing::warn!(issuer = %self.cfg.issuer, error = why, "issuer keys are stale and the issuer is unreachable: its tokens are refused until the keys can be fetched");
    }

    async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError(format!("GET {url}: {}", with_causes(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError(format!("GET {url}: HTTP {status}")));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| FetchError(format!("GET {url}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| FetchError(format!("GET {url}: not JSON: {e}")))
    }

    /// Refetches discovery (if needed) and the JWKS. Unless `force`, at
    /// most once per `jwks_min_refresh_seconds`.
    async fn refetch(&self, force: bool) -> Result<(), FetchError> {
        let _one = self.refresh.lock().await;
        let min = Duration::from_secs(self.cfg.jwks_min_refresh_seconds);
        let last = self.keys().last_attempt;
        if !force && last.is_some_and(|t| t.elapsed() < min) {
            return Err(FetchError("JWKS refetched recently; not again yet".into()));
        }
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .last_attempt = Some(Instant::now());
        let result = self.fetch_keys().await;
        if let Err(e) = &result {
            self.keys
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .last_error = Some(e.0.clone());
        }
        result
    }

    /// Discovery (unless known) and the JWKS; installs the new key set.
    async fn fetch_keys(&self) -> Result<(), FetchError> {
        let known = self.keys().jwks_uri.clone();
        let jwks_uri = match (&self.cfg.jwks_url, known) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) => u,
            (None, None) => self.discover().await?,
        };
        let set = self.get_json(&jwks_uri).await?;
        let (by_kid, anonymous) = parse_jwks(&set, &self.cfg.issuer);
        if by_kid.is_empty() && anonymous.is_empty() {
            return Err(FetchError(format!("{jwks_uri}: no usable signing keys")));
        }
        tracing::info!(issuer = %self.cfg.issuer, keys = by_kid.len() + anonymous.len(), kids = ?by_kid.keys().collect::<Vec<_>>(), "issuer keys fetched");
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let mut k = self.keys.write().unwrap_or_else(|p| p.into_inner());
        k.by_kid = by_kid;
        k.anonymous = anonymous;
        k.fetched = Some(Instant::now());
        k.jwks_uri = Some(jwks_uri);
        k.last_error = None;
        if std::mem::take(&mut k.stale_logged) {
            drop(k);
            tracing::info!(issuer = %self.cfg.issuer, "issuer reachable again: its tokens are accepted");
        }
        Ok(())
    }

    /// Reads the discovery document; returns its `jwks_uri`.
    async fn discover(&self) -> Result<String, FetchError> {
        let url = self.cfg.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                self.cfg.issuer.trim_end_matches('/')
            )
        });
        let doc = self.get_json(&url).await?;
        // OIDC Discovery 4.3: the document must name exactly this issuer,
        // or an attacker-controlled document could vouch for other keys.
        let iss = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if iss != self.cfg.issuer {
            return Err(FetchError(format!(
                "{url}: issuer {iss:?} is not the configured {:?}",
                self.cfg.issuer
            )));
        }
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| FetchError(format!("{url}: no jwks_uri")))
    }

    /// Verifies `token` whose header is `header`, for the MCP audiences.
    pub async fn verify(
        &self,
        token: &str,
        header: &JwtHeader,
    ) -> Result<Arc<Verified>, VerifyError> {
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
    ) -> Result<Arc<Verified>, VerifyError> {
        let alg = self.algorithm(&header.alg)?;
        // Before the cache of verified tokens: stale keys vouch for none.
        if self.trusted().is_err() {
            if let Err(e) = self.refetch(false).await {
                tracing::debug!(issuer = %self.cfg.issuer, error = %e, "JWKS not refetched");
            }
            if let Err(why) = self.trusted() {
                self.note_stale(&why);
                return Err(VerifyError::Unavailable(why));
            }
        }
        let now = jsonwebtoken::get_current_timestamp();
        if audiences.is_none()
            && let Some((v, exp)) = self
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(token)
            && now < exp + self.cfg.leeway_seconds
        {
            return Ok(v.clone());
        }
        let key = match self.key_for(header, alg) {
            Some(k) => k,
            None => {
                // Rotation: a new kid appears before our cached set has it.
                if let Err(e) = self.refetch(false).await {
                    tracing::debug!(issuer = %self.cfg.issuer, error = %e, "JWKS not refetched");
                }
                self.key_for(header, alg)
                    .ok_or_else(|| TokenError::UnknownKey(header.kid.clone().unwrap_or_default()))?
            }
        };
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(audiences.unwrap_or(&self.cfg.audiences));
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway_seconds;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| map_error(e.kind()))?;
        let verified = Arc::new(self.claims(&data.claims)?);
        if audiences.is_some() {
            return Ok(verified);
        }
        let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.retain(|_, (_, e)| now < *e + self.cfg.leeway_seconds);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), (verified.clone(), exp));
        Ok(verified)
    }

    fn algorithm(&self, alg: &str) -> Result<Algorithm, TokenError> {
        let refused = || TokenError::Algorithm(alg.to_string());
        if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") {
            return Err(refused());
        }
        if !self.cfg.algorithms.iter().any(|a| a == alg) {
            return Err(TokenError::AlgorithmNotAllowed {
                alg: alg.to_string(),
                allowed: self.cfg.algorithms.join(", "),
            });
        }
        alg.parse::<Algorithm>().map_err(|_| refused())
    }

    fn key_for(&self, header: &JwtHeader, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys();
        let fits = |k: &(DecodingKey, Option<Algorithm>)| k.1.is_none_or(|a| a == alg);
        match &header.kid {
            Some(kid) => keys
                .by_kid
                .get(kid)
                .filter(|k| fits(k))
                .map(|k| k.0.clone()),
            None => {
                // No kid: only unambiguous when exactly one key fits.
                let mut it = keys
                    .by_kid
                    .values()
                    .chain(&keys.anonymous)
                    .filter(|k| fits(k));
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(k.0.clone()),
                    _ => None,
                }
            }
        }
    }

    fn claims(&self, c: &Map<String, Value>) -> Result<Verified, TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(iat) = c.get("iat").and_then(Value::as_u64)
            && iat > now + self.cfg.leeway_seconds
        {
            return Err(TokenError::IssuedInFuture);
        }
        let subject = match claim_path(c, &self.cfg.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(TokenError::Claims(format!(
                    "no string claim {:?} (the subject)",
                    self.cfg.subject_claim
                )));
            }
        };
        let groups = strings(claim_path(c, &self.cfg.groups_claim), false);
        let mut scopes = strings(c.get("scope"), true);
        scopes.extend(strings(c.get("scp"), true));
        let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Verified {
            issuer: self.cfg.issuer.clone(),
            subject,
            groups,
            scopes,
            token_id: text("jti"),
            client_id: text("azp").or_else(|| text("client_id")),
        })
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

fn map_error(kind: &ErrorKind) -> TokenError {
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

type KeyList = Vec<(DecodingKey, Option<Algorithm>)>;

/// Usable signature keys of a JWKS; encryption keys and key types this
/// build cannot use are skipped (logged), not fatal.
fn parse_jwks(
    set: &Value,
    issuer: &str,
) -> (HashMap<String, (DecodingKey, Option<Algorithm>)>, KeyList) {
    let mut by_kid = HashMap::new();
    let mut anonymous = Vec::new();
    for raw in set
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if raw.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        let jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!(issuer, error = %e, "JWKS key skipped");
                continue;
            }
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::debug!(issuer, kid = ?jwk.common.key_id, "JWKS key unusable; skipped");
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        match jwk.common.key_id {
            Some(kid) => {
                by_kid.insert(kid, (key, alg));
            }
            None => anonymous.push((key, alg)),
        }
    }
    (by_kid, anonymous)
}

/// An error and its sources: reqwest's own message omits the cause
/// ("connection refused"), which is what an operator needs.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    out
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
