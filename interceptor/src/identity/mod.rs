//! Who is calling: every request is bound to a verified [`Caller`].
//!
//! Sources, in order: a bearer JWT from a configured OIDC issuer (per
//! request); else the connection's client certificate (verified at the
//! handshake, and again before every request against the CAs and CRLs in
//! force then, see `ConnCtx::recheck_cert`); else `anonymous` if allowed; else 401 with the MCP
//! authorization spec's `WWW-Authenticate` pointing at the protected
//! resource metadata (RFC 9728) the agent serves, so spec-following clients
//! can log in on their own. A bad token is refused even when a good
//! certificate is present: a credential that was offered must verify.
#![forbid(unsafe_code)]

pub mod credential;
pub mod oidc;
pub mod process;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    config::{CertField, Config},
    conn::{ConnInfo, PeerCert},
};
use credential::Credential;
use oidc::{Issuer, TokenError, VerifyError};
use process::{ProcessRules, Seen};

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// No credentials.
    Anonymous,
    /// A client certificate.
    Mtls,
    /// An OIDC bearer token.
    Oidc,
    /// A `[[identity.process.rules]]` entry matched the same-host process
    /// the kernel saw connect.
    Process,
}

impl AuthMethod {
    /// The method's name as logged and audited.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Mtls => "mtls",
            Self::Oidc => "oidc",
            Self::Process => "process",
        }
    }
}

/// A verified identity: what policy decides on and the audit records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caller {
    /// The caller's subject.
    pub subject: String,
    /// Token issuer, or the certificate issuer's DN.
    pub issuer: Option<String>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// The caller's OAuth scopes.
    pub scopes: Vec<String>,
    /// `jti` of the token.
    pub token_id: Option<String>,
    /// `azp` / `client_id` of the token: the software acting for the subject.
    pub client_id: Option<String>,
    /// The connection's client certificate, also when a token named the caller.
    pub cert: Option<Arc<PeerCert>>,
    /// The same-host process that opened the connection, whatever named
    /// the caller; `None` for remote callers.
    pub process: Option<Arc<Seen>>,
}

impl Caller {
    /// `subject` (of `issuer`), authenticated by `method`, with no groups,
    /// scopes, token facts or certificate yet.
    pub fn new(method: AuthMethod, subject: impl Into<String>, issuer: Option<String>) -> Self {
        Self {
            subject: subject.into(),
            issuer,
            method,
            groups: Vec::new(),
            scopes: Vec::new(),
            token_id: None,
            client_id: None,
            cert: None,
            process: None,
        }
    }

    /// What a session, a task handle or an MRTR round is bound to: same
    /// method, issuer and subject (the issuer escaped as in
    /// [`principal_key`], so no issuer text can end early).
    pub fn principal(&self) -> String {
        format!(
            "{}|{}",
            self.method.as_str(),
            principal_key(self.issuer.as_deref().unwrap_or(""), &self.subject)
        )
    }
}

/// A principal as one string, for Cedar's `Mcp::User` id (grants and
/// approvals keep issuer and subject as two fields). The issuer (token
/// issuer URL, or certificate issuer DN; "" for anonymous) with `\` and
/// `|` escaped, a `|`, then the subject: "alice" of one issuer, "alice" of
/// another and a certificate CN "alice" are three keys, and no issuer
/// text can end early.
pub fn principal_key(issuer: &str, subject: &str) -> String {
    let mut out = String::with_capacity(issuer.len() + subject.len() + 1);
    for c in issuer.chars() {
        if c == '\\' || c == '|' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('|');
    out.push_str(subject);
    out
}

/// Why a request has no identity. Comparable, so tests assert the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, no certificate, and anonymous callers are not allowed.
    #[error("authentication required: present a bearer token or a client certificate")]
    Missing,
    /// `Authorization` is present but not `Bearer <token>`.
    #[error("Authorization header must be `Bearer <token>`")]
    NotBearer,
    /// The bearer token was rejected.
    #[error("invalid bearer token: {0}")]
    Token(#[from] TokenError),
    /// The token is valid but lacks scopes the issuer entry requires.
    #[error("token lacks required scope(s): {0}")]
    InsufficientScope(String),
    /// The issuer's keys could not be fetched: the agent cannot judge.
    #[error("cannot verify tokens of {0} now: {1}")]
    IssuerUnavailable(String, String),
    /// The certificate verified but has none of the configured fields.
    #[error("client certificate has none of the fields in identity.cert_subject")]
    CertUnmapped,
    /// A same-host caller with no credential that no process rule admits
    /// (and anonymous callers are not allowed): names the process and a
    /// rule that would admit it.
    #[error("no credential, and no [identity.process] rule admits the calling process: {}", .0.describe())]
    ProcessUnmatched(Box<Seen>),
    /// The connection's certificate verified at the handshake but not now
    /// (expired, revoked, its CA withdrawn): whatever else the request
    /// carries, the connection is done.
    #[error("{0}")]
    Cert(#[from] crate::conn::CertCheckError),
}

impl AuthError {
    /// The refusal answering this failure.
    pub fn refusal(&self) -> crate::error::Refusal {
        use crate::error::{Reason, Refusal};
        let reason = match self {
            Self::InsufficientScope(_) => Reason::InsufficientScope,
            Self::IssuerUnavailable(..) => Reason::IdentityUnavailable,
            Self::ProcessUnmatched(seen) => {
                return Refusal::new(Reason::ProcessUnmatched, self.to_string())
                    .with("process", seen.summary())
                    .with("rule", seen.suggested_rule());
            }
            _ => Reason::Unauthenticated,
        };
        Refusal::new(reason, self.to_string())
    }

    /// The HTTP status of this failure's answer.
    pub fn status(&self) -> u16 {
        self.refusal().status().as_u16()
    }
}

/// The identity stage for one config.
pub struct Identity {
    cfg: crate::config::Identity,
    issuers: Vec<Arc<Issuer>>,
    credential: Option<Arc<Credential>>,
    process: ProcessRules,
    /// Whether the caller's `Authorization` stops at the agent (see
    /// [`Identity::new`]).
    consume_authorization: bool,
}

impl Identity {
    /// Builds the stage; issuers whose settings did not change keep their
    /// cached keys across a reload.
    pub async fn new(
        cfg: &Config,
        previous: Option<&Identity>,
    ) -> Result<Self, credential::CredentialError> {
        let issuers = cfg
            .identity
            .oidc
            .iter()
            .map(|o| {
                previous
                    .and_then(|p| p.issuers.iter().find(|i| i.cfg == *o).cloned())
                    .unwrap_or_else(|| {
                        let i = Issuer::new(o.clone());
                        i.spawn_refresher();
                        i
                    })
            })
            .collect();
        let credential = match &cfg.identity.upstream_credential {
            Some(c) => Some(Credential::start(c).await?),
            None => None,
        };
        // The MCP spec forbids token passthrough: once the agent is an
        // identity boundary (it verifies tokens or certificates, injects its
        // own credential, or refuses anonymous callers), the caller's
        // credential is the agent's and never the server's. Only an agent
        // that identifies nobody (anonymous callers, no issuer, no client
        // CA, no upstream credential) leaves `Authorization` to the server,
        // which then does its own authentication.
        let id = &cfg.identity;
        let boundary = !id.oidc.is_empty()
            || !cfg.tls.client_ca.is_empty()
            || credential.is_some()
            || !id.allow_anonymous;
        Ok(Self {
            consume_authorization: boundary,
            cfg: cfg.identity.clone(),
            issuers,
            credential,
            process: ProcessRules::new(&cfg.identity.process),
        })
    }

    /// The caller of one request. A token, else a certificate, names it;
    /// a same-host caller without either is named by the first process
    /// rule that admits it. The process, when the kernel saw one, is
    /// recorded beside whatever named the caller.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        conn: &ConnInfo,
    ) -> Result<Arc<Caller>, AuthError> {
        let seen = match &conn.process {
            Some(f) => Some(Arc::new(self.process.seen(f).await)),
            None => None,
        };
        let cert = conn.tls.as_ref().and_then(|t| t.peer.clone());
        if !self.issuers.is_empty()
            && let Some(auth) = headers.get(header::AUTHORIZATION)
        {
            let token = bearer(auth).ok_or(AuthError::NotBearer)?;
            let v = self.verify(token).await?;
            return Ok(oidc_caller(v, cert, seen));
        }
        if let Some(c) = cert {
            let subject =
                cert_subject(&c, &self.cfg.cert_subject).ok_or(AuthError::CertUnmapped)?;
            let issuer = Some(c.issuer.clone());
            return Ok(Arc::new(Caller {
                groups: c.organizational_units.clone(),
                cert: Some(c),
                process: seen,
                ..Caller::new(AuthMethod::Mtls, subject, issuer)
            }));
        }
        self.uncredentialed(seen)
    }

    /// A caller with neither token nor certificate: its process's rule,
    /// else `anonymous` where allowed, else refused (naming the process
    /// when the kernel saw one).
    fn uncredentialed(&self, seen: Option<Arc<Seen>>) -> Result<Arc<Caller>, AuthError> {
        if let Some(s) = &seen
            && let Some(rule) = self.process.admit(s)
        {
            return Ok(Arc::new(Caller {
                groups: rule.groups.clone(),
                process: seen.clone(),
                ..Caller::new(
                    AuthMethod::Process,
                    rule.subject.clone(),
                    Some(process::ISSUER.to_string()),
                )
            }));
        }
        if self.cfg.allow_anonymous {
            return Ok(Arc::new(Caller {
                process: seen,
                ..Caller::new(AuthMethod::Anonymous, "anonymous", None)
            }));
        }
        match seen {
            Some(s) => Err(AuthError::ProcessUnmatched(Box::new((*s).clone()))),
            None => Err(AuthError::Missing),
        }
    }

    /// The caller named by a bearer token alone, for `audiences` (the
    /// admin API's, never the MCP ones: a token an AI agent holds for the
    /// MCP servers must not approve calls). Certificates and anonymous
    /// callers do not count.
    pub async fn bearer_caller(
        &self,
        headers: &HeaderMap,
        audiences: &[String],
    ) -> Result<Arc<Caller>, AuthError> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let token = bearer(auth).ok_or(AuthError::NotBearer)?;
        let v = self.verify_for(token, Some(audiences)).await?;
        Ok(v)
    }

    async fn verify(&self, token: &str) -> Result<Arc<Caller>, AuthError> {
        self.verify_for(token, None).await
    }

    async fn verify_for(
        &self,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<Arc<Caller>, AuthError> {
        let (header, iss) = oidc::peek(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or(TokenError::UnknownIssuer(iss))?;
        let v = issuer
            .verify_for(token, &header, audiences)
            .await
            .map_err(|e| match e {
                VerifyError::Token(t) => AuthError::Token(t),
                VerifyError::Unavailable(why) => {
                    AuthError::IssuerUnavailable(issuer.cfg.issuer.clone(), why)
                }
            })?;
        let missing: Vec<&str> = issuer
            .cfg
            .required_scopes
            .iter()
            .filter(|s| !v.scopes.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::InsufficientScope(missing.join(" ")));
        }
        Ok(v)
    }

    /// Removes the caller's credential and adds the agent's upstream one:
    /// for requests the agent judged (MCP, after identity).
    pub fn rewrite_upstream_headers(&self, headers: &mut HeaderMap) {
        self.strip_caller_credential(headers);
        if let Some(c) = &self.credential
            && let Some(v) = c.value()
        {
            headers.insert(c.header.clone(), v);
        }
    }

    /// Removes the caller's credential (when the agent is an identity
    /// boundary) and anything in the upstream credential's header, adding
    /// nothing: for requests passed through unjudged.
    pub fn strip_caller_credential(&self, headers: &mut HeaderMap) {
        if self.consume_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(c) = &self.credential {
            headers.remove(&c.header);
        }
    }

    /// Whether clients can log in on their own (an OIDC issuer is set).
    pub fn has_oauth(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The resource URI of an MCP endpoint reached at `origin` + `path`.
    pub fn resource(&self, origin: &str, path: &str) -> String {
        self.cfg
            .resource
            .clone()
            .unwrap_or_else(|| format!("{origin}{path}"))
    }

    /// RFC 9728 section 3: the well-known URI is inserted between the
    /// resource's origin and its path.
    pub fn metadata_url(&self, origin: &str, path: &str) -> String {
        let resource = self.resource(origin, path);
        match split_origin(&resource) {
            Some((o, p)) if p != "/" && !p.is_empty() => {
                format!("{o}/.well-known/oauth-protected-resource{p}")
            }
            Some((o, _)) => format!("{o}/.well-known/oauth-protected-resource"),
            None => format!("{origin}/.well-known/oauth-protected-resource{path}"),
        }
    }

    /// The protected resource metadata document (RFC 9728 section 2).
    pub fn metadata(&self, resource: &str) -> Value {
        let mut scopes: Vec<&str> = self
            .issuers
            .iter()
            .flat_map(|i| i.cfg.required_scopes.iter().map(String::as_str))
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut doc = json!({
            "resource": resource,
            "authorization_servers": self.issuers.iter().map(|i| i.cfg.issuer.clone()).collect::<Vec<_>>(),
            "bearer_methods_supported": ["header"],
            "resource_name": "MCP server (protected by mcp-interceptor)",
        });
        if !scopes.is_empty() {
            doc["scopes_supported"] = json!(scopes);
        }
        doc
    }

    /// The `WWW-Authenticate` value for a refusal (RFC 6750 section 3, MCP
    /// authorization spec).
    pub fn challenge(&self, err: &AuthError, metadata_url: &str) -> HeaderValue {
        let mut v = format!("Bearer resource_metadata=\"{metadata_url}\"");
        let (code, desc) = match err {
            // Not the token's fault: a login on a new connection can work.
            AuthError::Missing | AuthError::Cert(_) | AuthError::ProcessUnmatched(_) => {
                (None, None)
            }
            AuthError::InsufficientScope(s) => {
                v.push_str(&format!(", scope=\"{s}\""));
                (Some("insufficient_scope"), Some(err.to_string()))
            }
            _ => (Some("invalid_token"), Some(err.to_string())),
        };
        if let Some(c) = code {
            v.push_str(&format!(", error=\"{c}\""));
        }
        if let Some(d) = desc {
            // RFC 6750: error_description is a quoted string of printable
            // ASCII without `"` or `\`.
            let d: String = d
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .filter(|c| *c != '"' && *c != '\\')
                .collect();
            v.push_str(&format!(", error_description=\"{d}\""));
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// The caller a verified token names, with the connection's certificate
/// and same-host process if it has them.
fn oidc_caller(
    v: Arc<Caller>,
    cert: Option<Arc<PeerCert>>,
    seen: Option<Arc<Seen>>,
) -> Arc<Caller> {
    if cert.is_none() && seen.is_none() {
        return v;
    }
    Arc::new(Caller {
        cert,
        process: seen,
        ..(*v).clone()
    })
}

fn bearer(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The subject named by the first configured field the certificate has.
pub fn cert_subject(c: &PeerCert, fields: &[CertField]) -> Option<String> {
    fields.iter().find_map(|f| match f {
        CertField::SanUri => c.sans.uris.first().cloned(),
        CertField::SanEmail => c.sans.emails.first().cloned(),
        CertField::SanDns => c.sans.dns.first().cloned(),
        CertField::Cn => c.common_name.clone(),
    })
}

/// `("https://host:port", "/path")` of an absolute http(s) URI.
fn split_origin(uri: &str) -> Option<(&str, &str)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let scheme_len = uri.len() - rest.len();
    match rest.find('/') {
        Some(i) => Some((&uri[..scheme_len + i], &uri[scheme_len + i..])),
        None => Some((uri, "")),
    }
}

#[cfg(test)]
mod tests;
