//! An issuer's signing keys: found by discovery and the JWKS, trusted for
//! `jwks_max_age_seconds` plus `jwks_max_stale_seconds`, refetched on an
//! unknown `kid` at most every `jwks_min_refresh_seconds`, and picked for
//! a token by `kid` and algorithm.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, jwk::Jwk};
use serde_json::Value;

use super::{Issuer, JwtHeader};

/// The keys of one issuer, as last fetched.
#[derive(Default)]
pub(super) struct Keys {
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

/// Why fetching the issuer's keys failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

impl Issuer {
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

    /// The current key set (read lock).
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
    pub(super) fn trusted(&self) -> Result<(), String> {
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
    pub(super) fn note_stale(&self, why: &str) {
        let mut k = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if k.fetched.is_none() || k.stale_logged {
            return;
        }
        k.stale_logged = true;
        drop(k);
        tracing::warn!(issuer = %self.cfg.issuer, error = why, "issuer keys are stale and the issuer is unreachable: its tokens are refused until the keys can be fetched");
    }

    /// GETs `url` as JSON (no redirects, 5 s timeout).
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
    pub(super) async fn refetch(&self, force: bool) -> Result<(), FetchError> {
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

    /// The fetched key that verifies a token with this header: the
    /// header's `kid` (and `alg`, if the key names one), or with no `kid`
    /// the one key that fits.
    pub(super) fn key_for(&self, header: &JwtHeader, alg: Algorithm) -> Option<DecodingKey> {
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
