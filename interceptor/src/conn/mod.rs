//! Facts about one client connection, as the proxy accepted it: its
//! addresses and what its TLS handshake negotiated.
//!
//! A leaf module: the proxy fills these in, and identity, the pipeline's
//! phases and the audit read them without knowing the proxy. It imports
//! nothing from the rest of the crate.
#![forbid(unsafe_code)]

pub mod addr;

use std::{net::SocketAddr, sync::Arc};

use rustls_pki_types::CertificateDer;

pub use addr::{ClientAddr, OrigDst};

/// Facts about one client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Unique within this agent run, for correlating log lines and events.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The address the client connected to, before steering.
    pub orig_dst: SocketAddr,
    /// Set when the client spoke TLS.
    pub tls: Option<Arc<TlsInfo>>,
    /// The local process that opened the connection, as the kernel saw it
    /// at connect time; `None` for remote clients (none is ever invented).
    pub process: Option<Arc<ProcessFacts>>,
}

/// The process on this host that opened a connection, captured in the
/// kernel when it called connect(2) (issue 23). It names the opener, not
/// whoever holds the socket later (SCM_RIGHTS), and an exec after connect
/// keeps the old record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessFacts {
    /// Thread-group id (the PID users see).
    pub pid: u32,
    /// Thread id of the task that connected.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Audit login uid, when set (not `u32::MAX`).
    pub login_uid: Option<u32>,
    /// The task's command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// The cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// The cgroup path under the cgroup2 mount (e.g.
    /// `/system.slice/ai-agent.service`), resolved from `cgroup_id`.
    pub cgroup_path: Option<String>,
    /// The executable's path, as resolved when the connection was accepted.
    pub exe_path: Option<String>,
    /// The executable's inode number, from the kernel at connect time.
    pub exe_ino: u64,
    /// The executable's device number, from the kernel at connect time.
    pub exe_dev: u64,
    /// SHA-256 of the executable (lowercase hex), hashed by the agent at
    /// first sight and cached by device, inode and change time; `None`
    /// when it could not be read.
    pub exe_sha256: Option<String>,
    /// The task's start time (ns since boot): with `pid`, it names one
    /// process even after the PID is reused.
    pub start_time_ns: u64,
}

#[cfg(test)]
impl ConnInfo {
    /// A plain loopback connection (127.0.0.1:1 to 127.0.0.1:2), for unit
    /// tests.
    pub(crate) fn loopback() -> Self {
        Self::between(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        )
    }

    /// A plaintext connection (id 1) from `client` to `orig_dst`, with no
    /// process facts, for unit tests.
    pub(crate) fn between(client: SocketAddr, orig_dst: SocketAddr) -> Self {
        Self {
            id: 1,
            client,
            orig_dst,
            tls: None,
            process: None,
        }
    }
}

/// What a TLS connection negotiated.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// Protocol version, cipher suite and ALPN: what the audit records.
    pub negotiated: Negotiated,
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The client's certificate, if it sent one.
    pub peer: Option<Arc<PeerCert>>,
    /// The certificates the client presented, leaf first; empty: none.
    /// `peer` is parsed from its first entry, so a connection with a peer
    /// always has a chain to re-verify (the proxy's `tls::recheck`).
    pub chain: Arc<[CertificateDer<'static>]>,
}

/// The parameters a TLS handshake settled, as the audit's `tls_*`
/// columns record them (the evidence for SC-8, transmission
/// confidentiality).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite by its rustls name (the IANA name, TLS 1.3 suites
    /// prefixed `TLS13_`), e.g. `TLS13_AES_128_GCM_SHA256`; rustls names
    /// one after every completed handshake.
    pub cipher: Option<String>,
    /// The ALPN protocol agreed (`h2`, `http/1.1`); `None` when the client
    /// offered none.
    pub alpn: Option<String>,
}

/// The verified client certificate of a connection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerCert {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// Serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// The certificate's subject DN.
    pub subject: String,
    /// The certificate's issuer DN.
    pub issuer: String,
    /// The subject's common name.
    pub common_name: Option<String>,
    /// Subject OU values: the caller's groups when a certificate names it.
    pub organizational_units: Vec<String>,
    /// The subject alternative names (`san_*` keys at the top level in
    /// JSON).
    #[serde(flatten)]
    pub sans: SubjectAltNames,
}

/// A certificate's subject alternative names of the kinds a caller may be
/// named by (`identity.cert_subject`); other kinds are not read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubjectAltNames {
    /// URI names (e.g. SPIFFE ids).
    #[serde(rename = "san_uris")]
    pub uris: Vec<String>,
    /// Email (RFC 822) names.
    #[serde(rename = "san_emails")]
    pub emails: Vec<String>,
    /// DNS names.
    #[serde(rename = "san_dns")]
    pub dns: Vec<String>,
}

/// Why a connection's client certificate no longer stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertCheckError {
    /// The certificate has expired.
    #[error("client certificate expired")]
    Expired,
    /// The certificate is not yet valid.
    #[error("client certificate not yet valid")]
    NotYetValid,
    /// The certificate is revoked.
    #[error("client certificate revoked")]
    Revoked,
    /// Anything else the verifier in force now refuses (its CA was removed,
    /// no CRL of its issuer is configured any more, mTLS was turned off).
    #[error("client certificate no longer verifies: {0}")]
    Rejected(String),
}
