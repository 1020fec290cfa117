//! `[tls]` and `[identity]`: how callers prove who they are.

use std::path::PathBuf;

use educe::Educe;
use serde::{Deserialize, Serialize};

use super::ValidationError::{self, Conflict, Invalid};

/// TLS on steered ports (server side) and to upstreams (client side).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// Server certificate chain (PEM). With `key`, turns TLS on: a client
    /// whose first byte is a TLS handshake gets TLS, others plaintext
    /// (unless `require_tls`). Reloaded on SIGHUP.
    pub cert: Option<PathBuf>,
    /// The private key for the certificate.
    pub key: Option<PathBuf>,
    /// Refuse plaintext clients (the connection is closed, logged, audited).
    /// Implied by `client_auth = "required"`.
    pub require_tls: bool,
    /// mTLS: CA bundles (PEM) client certificates must chain to; empty: no
    /// client certificate is asked for.
    pub client_ca: Vec<PathBuf>,
    /// Certificate revocation lists (PEM) for client certificates.
    pub client_crl: Vec<PathBuf>,
    /// Whether and how to ask clients for certificates.
    pub client_auth: ClientAuth,
    /// CA bundles (PEM) that verify upstreams marked `upstream_tls`; empty:
    /// the platform's roots.
    pub upstream_ca: Vec<PathBuf>,
    /// A TLS connection is closed this long after its handshake (after the
    /// request in flight, with `Connection: close`), so the client proves
    /// its identity again in a fresh handshake.
    #[educe(Default = 3600)]
    pub max_connection_age_seconds: u64,
}

impl Tls {
    /// Whether TLS is served (a server certificate is configured).
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// Whether to ask clients for certificates.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Ask for a certificate; a client without one may still present a
    /// bearer token. A certificate that is offered must verify.
    #[default]
    Optional,
    /// No certificate, no TLS session; implies `require_tls`, since a
    /// plaintext client has no certificate either.
    Required,
}

/// Which certificate field names the caller.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertField {
    /// The first URI SAN (a SPIFFE ID such as `spiffe://corp/ns/x/sa/y`).
    SanUri,
    /// The first email SAN.
    SanEmail,
    /// The first DNS SAN.
    SanDns,
    /// The subject's common name.
    Cn,
}

/// How callers are authenticated.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    /// Serve requests that carry no identity (as subject `anonymous`).
    /// Off by default: no identity, no service (401).
    pub allow_anonymous: bool,
    /// Certificate fields tried in order; the first present names the
    /// caller.
    #[educe(Default(expression = vec![
        CertField::SanUri,
        CertField::SanEmail,
        CertField::SanDns,
        CertField::Cn,
    ]))]
    pub cert_subject: Vec<CertField>,
    /// The MCP resource URI (RFC 8707/9728) named in the protected-resource
    /// metadata; unset: scheme, Host and path of the request.
    pub resource: Option<String>,
    /// OIDC issuers whose bearer JWTs are accepted.
    pub oidc: Vec<OidcIssuer>,
    /// The credential the agent presents upstream in place of the caller's.
    pub upstream_credential: Option<UpstreamCredential>,
    /// Same-host callers named by the process that connected.
    pub process: super::ProcessIdentity,
}

/// One trusted issuer of bearer JWTs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// Compared exactly with the token's `iss` and the discovery document.
    pub issuer: String,
    /// The token's `aud` must contain one of these (the MCP resource URI).
    pub audiences: Vec<String>,
    /// Unset: `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Unset: the discovery document's `jwks_uri`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms; `none` and HMAC are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Dotted path of the claim holding groups (`groups`,
    /// `realm_access.roles`): an array of strings or one string.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim that holds the caller's subject.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Scopes every token must carry (`scope` string or `scp` array); a
    /// token without them gets 403 `insufficient_scope`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Clock skew tolerated on exp / nbf / iat.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// A token naming an unknown key refetches the JWKS at most this often.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_seconds: u64,
    /// The JWKS is refetched in the background after this long.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_seconds: u64,
    /// While refetches fail, keys past `jwks_max_age_seconds` are still
    /// trusted this much longer (HTTP's max-stale); then the issuer's tokens
    /// are refused (503) until a refetch succeeds.
    #[serde(default = "default_jwks_max_stale")]
    pub jwks_max_stale_seconds: u64,
}

fn default_algorithms() -> Vec<String> {
    [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ]
    .map(String::from)
    .to_vec()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_min_refresh() -> u64 {
    10
}
fn default_jwks_max_age() -> u64 {
    3600
}
/// One hour past max-age: an outage of the issuer alone outlasts no token
/// issued before it (access tokens rarely live longer than an hour), and a
/// key the issuer withdrew stays trusted at most two hours after it was
/// last fetched, even for someone who can also cut the agent off from it.
fn default_jwks_max_stale() -> u64 {
    3600
}

/// Where the upstream credential comes from: exactly one of `value_file`
/// and `command`. The value is sent as header `header`; callers never see
/// it, and their own `Authorization` never reaches the server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCredential {
    /// The header the credential is sent in.
    #[serde(default = "default_credential_header")]
    pub header: String,
    /// A file holding the whole header value (e.g. `Bearer abc`); reread
    /// every `refresh_seconds`.
    #[serde(default)]
    pub value_file: Option<PathBuf>,
    /// A command (argv) whose stdout is the header value; rerun every
    /// `refresh_seconds`.
    #[serde(default)]
    pub command: Vec<String>,
    /// How often to reload the credential.
    #[serde(default = "default_credential_refresh")]
    pub refresh_seconds: u64,
}

fn default_credential_header() -> String {
    "authorization".into()
}
fn default_credential_refresh() -> u64 {
    300
}

/// The longest `tls.max_connection_age_seconds`: a day.
const MAX_CONNECTION_AGE: u64 = 86_400;

/// Cross-field checks for `[tls]`, `[identity]` and per-port TLS keys.
///
/// The checks run in a fixed order, so a config with several faults always
/// reports the same (first) one.
pub(super) fn validate(cfg: &super::Config) -> Result<(), ValidationError> {
    let (tls, id) = (&cfg.tls, &cfg.identity);
    validate_tls(tls)?;
    validate_identity(id, tls)?;
    super::process::validate(&id.process)?;
    for (n, o) in id.oidc.iter().enumerate() {
        validate_oidc(n, o)?;
    }
    if id.oidc.len()
        != id
            .oidc
            .iter()
            .map(|o| &o.issuer)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    {
        return Err(Invalid("identity.oidc: an issuer is listed twice".into()));
    }
    if let Some(c) = &id.upstream_credential {
        validate_upstream_credential(c)?;
    }
    for rule in &cfg.intercept.ports {
        if rule.upstream_server_name.is_some() && !rule.upstream_tls {
            return Err(Conflict(format!(
                "intercept.ports port {}: upstream_server_name needs upstream_tls = true",
                rule.port
            )));
        }
    }
    Ok(())
}

/// `[tls]` on its own: key pairs, what mTLS needs, the connection age.
fn validate_tls(tls: &Tls) -> Result<(), ValidationError> {
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(Conflict(
            "tls: set both `cert` and `key`, or neither".into(),
        ));
    }
    if !tls.enabled() && (tls.require_tls || !tls.client_ca.is_empty()) {
        return Err(Conflict(
            "tls: require_tls and client_ca need a server `cert` and `key`".into(),
        ));
    }
    if !tls.client_crl.is_empty() && tls.client_ca.is_empty() {
        return Err(Conflict(
            "tls.client_crl without tls.client_ca: no client certificates to check".into(),
        ));
    }
    if tls.client_auth == ClientAuth::Required && tls.client_ca.is_empty() {
        return Err(Conflict(
            "tls.client_auth = \"required\" needs tls.client_ca".into(),
        ));
    }
    if !(1..=MAX_CONNECTION_AGE).contains(&tls.max_connection_age_seconds) {
        return Err(Invalid(format!(
            "tls.max_connection_age_seconds must be 1..={MAX_CONNECTION_AGE} (a day)"
        )));
    }
    Ok(())
}

/// `[identity]`'s own keys: some way to identify callers, a subject field,
/// an http(s) resource URI.
fn validate_identity(id: &Identity, tls: &Tls) -> Result<(), ValidationError> {
    if !id.allow_anonymous
        && id.oidc.is_empty()
        && tls.client_ca.is_empty()
        && id.process.rules.is_empty()
    {
        return Err(Conflict(
            "identity: no way to identify callers: configure [[identity.oidc]], \
             tls.client_ca (mTLS) or [[identity.process.rules]], or set \
             identity.allow_anonymous = true"
                .into(),
        ));
    }
    if id.cert_subject.is_empty() {
        return Err(Invalid("identity.cert_subject is empty".into()));
    }
    if let Some(r) = &id.resource
        && !(r.starts_with("https://") || r.starts_with("http://"))
    {
        return Err(Invalid(format!(
            "identity.resource {r:?} must be an http(s) URI"
        )));
    }
    Ok(())
}

/// One `[[identity.oidc]]` entry (the `n`th): issuer URL, audiences,
/// asymmetric algorithms only, claim names, a bounded leeway.
fn validate_oidc(n: usize, o: &OidcIssuer) -> Result<(), ValidationError> {
    let at = format!("identity.oidc[{n}] ({})", o.issuer);
    if !(o.issuer.starts_with("https://") || o.issuer.starts_with("http://")) {
        return Err(Invalid(format!("{at}: issuer must be an http(s) URL")));
    }
    if o.audiences.is_empty() || o.audiences.iter().any(String::is_empty) {
        return Err(Invalid(format!(
            "{at}: audiences is empty: name the MCP resource URI (RFC 8707)"
        )));
    }
    if o.algorithms.is_empty() {
        return Err(Invalid(format!("{at}: algorithms is empty")));
    }
    for a in &o.algorithms {
        if !default_algorithms().contains(a) {
            return Err(Invalid(format!(
                "{at}: algorithm {a:?} is not allowed (asymmetric only: {})",
                default_algorithms().join(", ")
            )));
        }
    }
    if o.groups_claim.is_empty() || o.subject_claim.is_empty() {
        return Err(Invalid(format!(
            "{at}: groups_claim and subject_claim must be set"
        )));
    }
    if o.leeway_seconds > 300 {
        return Err(Invalid(format!(
            "{at}: leeway_seconds above 300 is not a skew"
        )));
    }
    Ok(())
}

/// `[identity.upstream_credential]`: exactly one source, a valid header
/// name, a non-zero refresh.
fn validate_upstream_credential(c: &UpstreamCredential) -> Result<(), ValidationError> {
    if c.value_file.is_some() != c.command.is_empty() {
        return Err(Conflict(
            "identity.upstream_credential: set exactly one of value_file and command".into(),
        ));
    }
    if http::HeaderName::from_bytes(c.header.as_bytes()).is_err() {
        return Err(Invalid(format!(
            "identity.upstream_credential.header {:?} is not a header name",
            c.header
        )));
    }
    if c.refresh_seconds == 0 {
        return Err(Invalid(
            "identity.upstream_credential.refresh_seconds must be > 0".into(),
        ));
    }
    Ok(())
}
