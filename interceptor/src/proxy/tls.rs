//! TLS on steered ports and to upstreams (rustls, aws-lc-rs provider).
//!
//! One port serves TLS and plaintext clients alike: the first byte of a
//! TLS connection is a handshake record (0x16), which no HTTP method
//! starts with. Client certificates are verified by webpki against the
//! configured CAs and CRLs; the verified leaf is parsed once per
//! connection into a [`PeerCert`] that the identity stage maps to a caller.

use std::{
    fs,
    io::{self, ErrorKind},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, pem::PemObject,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::{
    config::{ClientAuth, Tls},
    conn::{CertCheckError, Negotiated, PeerCert, SubjectAltNames, TlsInfo},
};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file's path.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificate, key or verifier settings.
    #[error("TLS settings: {0}")]
    Config(String),
}

/// What serves TLS on steered ports, rebuilt on every reload.
pub struct TlsServer {
    /// Accepts TLS connections.
    pub acceptor: TlsAcceptor,
    /// `tls.require_tls`, or implied by `client_auth = "required"`.
    pub require_tls: bool,
    /// The client certificate verifier of this config (mTLS on), which
    /// also re-checks established connections per request.
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// A TLS connection is closed (after the request in flight) this long
    /// after its handshake, so its client proves its identity again.
    pub max_connection_age: Duration,
}

/// Re-verifies a connection's client certificate chain, as a handshake
/// now would: against `verifier` (the CAs and CRLs in force after the last
/// reload; `None`: mTLS is off now) and the current time. A chain that
/// verified at the handshake can expire or be revoked on a kept-alive
/// connection; each request is judged by this, not by the handshake.
pub fn recheck(
    verifier: Option<&dyn ClientCertVerifier>,
    chain: &[CertificateDer<'static>],
    now: rustls_pki_types::UnixTime,
) -> Result<(), CertCheckError> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    let Some(v) = verifier else {
        return Err(CertCheckError::Rejected(
            "client certificates are no longer accepted (no tls.client_ca)".into(),
        ));
    };
    use rustls::{CertificateError as E, Error};
    match v.verify_client_cert(leaf, intermediates, now) {
        Ok(_) => Ok(()),
        Err(Error::InvalidCertificate(E::Expired | E::ExpiredContext { .. })) => {
            Err(CertCheckError::Expired)
        }
        Err(Error::InvalidCertificate(E::NotValidYet | E::NotValidYetContext { .. })) => {
            Err(CertCheckError::NotYetValid)
        }
        Err(Error::InvalidCertificate(E::Revoked)) => Err(CertCheckError::Revoked),
        Err(e) => Err(CertCheckError::Rejected(e.to_string())),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn pem_err(path: &Path, message: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads every certificate in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_pem_blocks(path, "CERTIFICATE")
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = fs::read(path).map_err(|e| pem_err(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_err(path, format!("no private key: {e}")))
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    read_pem_blocks(path, "X509 CRL")
}

/// Every PEM block of type `T` (`label`, for the error) in a file: at
/// least one.
fn read_pem_blocks<T: PemObject>(path: &Path, label: &str) -> Result<Vec<T>, TlsError> {
    let bytes = fs::read(path).map_err(|e| pem_err(path, e))?;
    let blocks = T::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, format!("bad PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(pem_err(path, format!("no {label} block")));
    }
    Ok(blocks)
}

fn roots(paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for p in paths {
        for c in read_certs(p)? {
            store
                .add(c)
                .map_err(|e| pem_err(p, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(store)
}

/// The server side for `[tls]`, or `None` when TLS is off.
pub fn server(cfg: &Tls) -> Result<Option<Arc<TlsServer>>, TlsError> {
    let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
        return Ok(None);
    };
    let chain = read_certs(cert)?;
    let key = read_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = if cfg.client_ca.is_empty() {
        None
    } else {
        Some(client_verifier(cfg)?)
    };
    let builder = match &verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v.clone()),
    };
    let mut sc = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
    // hyper serves HTTP/1.1 only; say so instead of letting ALPN pick h2.
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    if verifier.is_some() {
        // A resumed session skips certificate verification: rustls restores
        // the client certificate from the session, so a certificate that
        // expired (or was revoked) since would come back as verified. No
        // tickets, no session cache: every connection is a full handshake.
        sc.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        sc.ticketer = Arc::new(NoTickets);
        sc.send_tls13_tickets = 0;
    }
    Ok(Some(Arc::new(TlsServer {
        acceptor: TlsAcceptor::from(Arc::new(sc)),
        require_tls: requires_tls(cfg),
        verifier,
        max_connection_age: Duration::from_secs(cfg.max_connection_age_seconds),
    })))
}

/// Whether plaintext is refused: `require_tls`, or `client_auth =
/// "required"`, which promises that every caller has a certificate (a
/// plaintext client can have none).
pub fn requires_tls(cfg: &Tls) -> bool {
    cfg.require_tls || (cfg.enabled() && cfg.client_auth == ClientAuth::Required)
}

/// One line on what plaintext clients get, for the log, doctor and
/// check-config (`client_auth = "required"` implying `require_tls` is
/// said, not silent).
pub fn plaintext_policy(cfg: &Tls) -> &'static str {
    match (cfg.require_tls, requires_tls(cfg)) {
        (true, _) => "plaintext clients refused (require_tls)",
        (false, true) => {
            "plaintext clients refused: client_auth = \"required\" implies require_tls"
        }
        (false, false) => "plaintext clients served alongside TLS (require_tls = false)",
    }
}

/// A ticketer that issues nothing, whatever rustls's default becomes.
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

fn client_verifier(cfg: &Tls) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = Arc::new(roots(&cfg.client_ca)?);
    let mut crls = Vec::new();
    for p in &cfg.client_crl {
        crls.extend(read_crls(p)?);
    }
    let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider());
    if !crls.is_empty() {
        // Leaf revocation only: CAs are trusted by configuration, and a
        // leaf whose CA publishes no CRL here fails (unknown status).
        b = b.with_crls(crls).only_check_end_entity_revocation();
    }
    if cfg.client_auth == ClientAuth::Optional {
        b = b.allow_unauthenticated();
    }
    b.build()
        .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))
}

/// Client settings for upstreams marked `upstream_tls`.
pub fn client(cfg: &Tls) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = if cfg.upstream_ca.is_empty() {
        let mut store = RootCertStore::empty();
        // The platform bundle (Debian's ca-certificates); absent: no roots,
        // and every TLS upstream fails verification, which doctor reports.
        if let Ok(certs) = read_certs(Path::new("/etc/ssl/certs/ca-certificates.crt")) {
            store.add_parsable_certificates(certs);
        }
        store
    } else {
        roots(&cfg.upstream_ca)?
    };
    let cc = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cc))
}

/// The name an upstream certificate is checked against.
pub fn server_name(name: Option<&str>, addr: SocketAddr) -> Result<ServerName<'static>, String> {
    match name {
        Some(n) => ServerName::try_from(n.to_string()).map_err(|e| format!("{n:?}: {e}")),
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    }
}

/// Whether the client opened with a TLS handshake; waits at most `limit`
/// for its first byte. `Err` when it closed or stayed silent.
pub async fn sniff(stream: &TcpStream, limit: Duration) -> io::Result<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limit, stream.peek(&mut first)).await {
        Ok(Ok(0)) => Err(ErrorKind::UnexpectedEof.into()),
        Ok(Ok(_)) => Ok(first[0] == 0x16),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ErrorKind::TimedOut.into()),
    }
}

/// What the handshake settled, with the verified leaf parsed.
pub fn info(conn: &rustls::ServerConnection) -> TlsInfo {
    let chain: Arc<[CertificateDer<'static>]> = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    let peer = chain
        .first()
        .and_then(|der| match parse_peer(der.as_ref()) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                // webpki accepted it, so this is a parser gap: the caller
                // falls back to other credentials, and we say why.
                tracing::warn!(error = %e, "verified client certificate could not be parsed");
                None
            }
        });
    TlsInfo {
        negotiated: negotiated(conn),
        sni: conn.server_name().map(str::to_owned),
        peer,
        chain,
    }
}

/// Version, cipher suite and ALPN of a completed handshake.
fn negotiated(conn: &rustls::ServerConnection) -> Negotiated {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    // Every suite rustls can negotiate has a name; the code point is the
    // fallback should a provider add one rustls does not know.
    let cipher = conn.negotiated_cipher_suite().map(|s| {
        let suite = s.suite();
        suite
            .as_str()
            .map_or_else(|| format!("{suite:?}"), str::to_owned)
    });
    Negotiated {
        version,
        cipher,
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    }
}

/// Parses the fields the identity stage and the audit need.
pub fn parse_peer(der: &[u8]) -> Result<PeerCert, String> {
    use x509_parser::{extensions::GeneralName, prelude::*};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut sans = SubjectAltNames::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) => sans.uris.push(u.to_string()),
                GeneralName::RFC822Name(e) => sans.emails.push(e.to_string()),
                GeneralName::DNSName(d) => sans.dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    let raw = cert.raw_serial();
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    Ok(PeerCert {
        fingerprint: hex::encode(Sha256::digest(der)),
        serial: hex::encode(&raw[first..]),
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        organizational_units: cert
            .subject()
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok())
            .map(str::to_owned)
            .collect(),
        sans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TLS on, with this certificate and key.
    fn with_files(cert: &str, key: &str) -> Tls {
        Tls {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..Default::default()
        }
    }

    #[test]
    fn missing_files_name_the_path() {
        let cfg = with_files("/nonexistent/server.pem", "/nonexistent/server.key");
        let err = server(&cfg).err().expect("must fail");
        assert!(err.to_string().contains("/nonexistent/server.pem"), "{err}");
    }

    #[test]
    fn no_tls_without_cert() {
        assert!(server(&Tls::default()).unwrap().is_none());
    }

    #[test]
    fn required_client_auth_implies_require_tls() {
        let on = with_files("/c.pem", "/k.pem");
        assert!(!requires_tls(&on));
        assert!(plaintext_policy(&on).contains("served"));
        let required = Tls {
            client_auth: ClientAuth::Required,
            ..on.clone()
        };
        assert!(requires_tls(&required));
        assert!(plaintext_policy(&required).contains("implies require_tls"));
        let explicit = Tls {
            require_tls: true,
            ..on
        };
        assert!(requires_tls(&explicit));
    }

    #[test]
    fn a_presented_certificate_without_a_verifier_is_refused() {
        let now = rustls_pki_types::UnixTime::now();
        assert_eq!(
            recheck(None, &[], now),
            Ok(()),
            "no certificate, nothing to judge"
        );
        let leaf = CertificateDer::from(vec![0x30, 0x00]);
        let err = recheck(None, &[leaf], now).expect_err("must fail closed");
        assert!(matches!(err, CertCheckError::Rejected(_)), "{err}");
    }
}
