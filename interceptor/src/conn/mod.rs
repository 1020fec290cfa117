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
    pub client: SocketAddr,
    pub orig_dst: SocketAddr,
    /// Set when the client spoke TLS.
    pub tls: Option<Arc<TlsInfo>>,
}

/// What a TLS connection negotiated.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: &'static str,
    pub sni: Option<String>,
    pub peer: Option<Arc<PeerCert>>,
    /// The certificates the client presented, leaf first; empty: none.
    /// `peer` is parsed from its first entry, so a connection with a peer
    /// always has a chain to re-verify (the proxy's `tls::recheck`).
    pub chain: Arc<[CertificateDer<'static>]>,
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
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    /// Subject OU values: the caller's groups when a certificate names it.
    pub organizational_units: Vec<String>,
    pub san_uris: Vec<String>,
    pub san_emails: Vec<String>,
    pub san_dns: Vec<String>,
}

/// Why a connection's client certificate no longer stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertCheckError {
    #[error("client certificate expired")]
    Expired,
    #[error("client certificate not yet valid")]
    NotYetValid,
    #[error("client certificate revoked")]
    Revoked,
    /// Anything else the verifier in force now refuses (its CA was removed,
    /// no CRL of its issuer is configured any more, mTLS was turned off).
    #[error("client certificate no longer verifies: {0}")]
    Rejected(String),
}
