//! Test certificates: a CA, server and client certificates it signs, and
//! its CRL, all as PEM files in one directory.
//!
//! Everything is generated fresh per test (ECDSA P-256), so no key material
//! lives in the repository and validity windows are relative to now.

use std::{
    io::Read,
    net::IpAddr,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tokio_rustls::rustls;

/// A certificate authority whose files live in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate: what a verifier is told to trust.
    pub ca_pem: PathBuf,
    /// The CA's current CRL; empty until [`Pki::revoke`].
    pub crl_pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    crl_number: u64,
}

/// A client certificate and what a verifier would log about it.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key.
    pub key: PathBuf,
    /// Lowercase hex, no separators; as `openssl x509 -serial` shows it,
    /// lowercased.
    pub serial_hex: String,
    /// Lowercase hex SHA-256 of the DER certificate.
    pub fingerprint_sha256: String,
    serial: Vec<u8>,
}

impl Pki {
    /// A rustls client that trusts only this CA and presents `me`. It
    /// keeps TLS sessions (rustls's default in-memory store), so a later
    /// connection with the same config offers resumption.
    pub fn client_config(&self, me: &ClientCert) -> std::sync::Arc<rustls::ClientConfig> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca_pem).expect("read CA") {
            roots.add(c.expect("CA PEM")).expect("add CA");
        }
        let chain = CertificateDer::pem_file_iter(&me.cert)
            .expect("read client cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("client cert PEM");
        let key = PrivateKeyDer::from_pem_file(&me.key).expect("client key PEM");
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("client auth"),
        )
    }

    /// A CA "mcpi test CA" written to `dir/ca.pem`, with an empty CRL in
    /// `dir/crl.pem`. For an unrelated CA use another directory, e.g.
    /// `Pki::new(&dir.join("other"))`.
    pub fn new(dir: &Path) -> Self {
        Self::with_name(dir, "mcpi test CA")
    }

    /// Like [`Pki::new`] with another common name, for tests that must tell
    /// two CAs apart by name as well as by key.
    pub fn with_name(dir: &Path, common_name: &str) -> Self {
        std::fs::create_dir_all(dir).expect("create pki dir");
        let key = KeyPair::generate().expect("generate CA key");
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30);
        let cert = params.self_signed(&key).expect("self-sign CA");
        let ca_pem = dir.join("ca.pem");
        write(&ca_pem, &cert.pem());
        let mut pki = Self {
            dir: dir.to_path_buf(),
            ca_pem,
            crl_pem: dir.join("crl.pem"),
            issuer: Issuer::new(params, key),
            crl_number: 0,
        };
        pki.revoke(&[]);
        pki
    }

    /// A server certificate for `ips` and `dns` names, signed by this CA,
    /// valid from an hour ago for 30 days. Writes `dir/<name>.pem` and
    /// `dir/<name>.key`; returns (certificate, key) paths.
    pub fn server(&self, name: &str, ips: &[IpAddr], dns: &[&str]) -> (PathBuf, PathBuf) {
        let now = OffsetDateTime::now_utc();
        let mut params = leaf_params(dns.first().copied().unwrap_or(name));
        params.subject_alt_names = ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .chain(dns.iter().map(|d| SanType::DnsName(ia5(d))))
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(30);
        let issued = self.issue(name, &params);
        (issued.cert, issued.key)
    }

    /// A client certificate (extended key usage clientAuth) for `cn`, with
    /// an optional URI SAN (e.g. `spiffe://example.org/alice`) and e-mail
    /// SAN. Valid from an hour ago for a day, or, when `expired`, from two
    /// days ago until an hour ago. Writes `dir/<name>.pem` and
    /// `dir/<name>.key`.
    pub fn client(
        &self,
        name: &str,
        cn: &str,
        san_uri: Option<&str>,
        email: Option<&str>,
        expired: bool,
    ) -> ClientCert {
        let now = OffsetDateTime::now_utc();
        let mut params = leaf_params(cn);
        params.subject_alt_names = san_uri
            .map(|u| SanType::URI(ia5(u)))
            .into_iter()
            .chain(email.map(|e| SanType::Rfc822Name(ia5(e))))
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        (params.not_before, params.not_after) = if expired {
            (now - Duration::days(2), now - Duration::hours(1))
        } else {
            (now - Duration::hours(1), now + Duration::days(1))
        };
        self.issue(name, &params)
    }

    /// A client certificate for `cn` (no SAN) valid from an hour ago until
    /// `secs` seconds from now: one that expires while a test watches.
    pub fn client_expiring_in(&self, name: &str, cn: &str, secs: i64) -> ClientCert {
        let now = OffsetDateTime::now_utc();
        let mut params = leaf_params(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::seconds(secs);
        self.issue(name, &params)
    }

    /// Rewrites `crl_pem`, signed by this CA, listing exactly `revoked`
    /// (earlier revocations are not carried over: pass every certificate
    /// that should stay revoked). The CRL number increases with each call;
    /// the next update is a day ahead.
    pub fn revoke(&mut self, revoked: &[&ClientCert]) {
        // A minute back, so a verifier whose clock is a little behind does
        // not see a CRL (or a revocation) from the future.
        let now = OffsetDateTime::now_utc() - Duration::minutes(1);
        self.crl_number += 1;
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from_slice(&self.crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&c.serial),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("sign CRL");
        write(&self.crl_pem, &crl.pem().expect("CRL to PEM"));
    }

    fn issue(&self, name: &str, params: &CertificateParams) -> ClientCert {
        let key = KeyPair::generate().expect("generate key");
        let mut params = params.clone();
        let serial = random_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&key, &self.issuer).expect("sign cert");
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        write(&cert_path, &cert.pem());
        write(&key_path, &key.serialize_pem());
        ClientCert {
            cert: cert_path,
            key: key_path,
            serial_hex: hex(&serial),
            fingerprint_sha256: hex(&Sha256::digest(cert.der())),
            serial,
        }
    }
}

fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Lets verifiers (openssl) pick the issuer by key, so a certificate from
    // another CA with the same name is reported as an unknown issuer.
    params.use_authority_key_identifier_extension = true;
    params
}

/// 16 random bytes read as a positive integer with no leading zero byte,
/// so DER stores exactly these bytes and [`hex`] matches openssl's output.
fn random_serial() -> Vec<u8> {
    let mut serial = vec![0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut serial))
        .expect("read /dev/urandom");
    serial[0] = (serial[0] & 0x7f).max(1);
    serial
}

fn ia5(s: &str) -> rcgen::string::Ia5String {
    s.try_into()
        .unwrap_or_else(|e| panic!("{s:?} is not IA5: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::TempDir;

    /// `openssl verify` against `pki`'s CA and CRL: (success, combined output).
    fn verify(pki: &Pki, cert: &Path) -> (bool, String) {
        let out = Command::new("openssl")
            .args(["verify", "-crl_check", "-CAfile"])
            .arg(&pki.ca_pem)
            .arg("-CRLfile")
            .arg(&pki.crl_pem)
            .arg(cert)
            .output()
            .expect("run openssl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `openssl x509 -noout <flag>` value after `=`, lowercased, colons gone.
    fn x509_field(cert: &Path, flags: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-in"])
            .arg(cert)
            .args(flags)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let (_, value) = text.trim().split_once('=').expect("key=value");
        value.replace(':', "").to_lowercase()
    }

    #[test]
    fn openssl_agrees_on_validity_revocation_and_identity() {
        let tmp = TempDir::new("pki");
        let mut pki = Pki::new(tmp.path());
        let other = Pki::new(&tmp.path().join("other"));

        let alice = pki.client(
            "alice",
            "alice",
            Some("spiffe://example.org/alice"),
            Some("alice@example.org"),
            false,
        );
        let bob = pki.client("bob", "bob", None, None, false);
        let old = pki.client("old", "old", None, None, true);
        let stranger = other.client("stranger", "alice", None, None, false);
        let (server, _) = pki.server("server", &["127.0.0.1".parse().unwrap()], &["localhost"]);

        for cert in [&alice.cert, &bob.cert, &server] {
            let (ok, out) = verify(&pki, cert);
            assert!(ok && out.contains("OK"), "{}: {out}", cert.display());
        }
        let (ok, out) = verify(&pki, &old.cert);
        assert!(!ok && out.contains("expired"), "{out}");
        let (ok, out) = verify(&pki, &stranger.cert);
        assert!(!ok, "other CA's cert verified: {out}");
        let (ok, out) = verify(&other, &stranger.cert);
        assert!(ok, "other CA rejects its own cert: {out}");

        pki.revoke(&[&bob]);
        let (ok, out) = verify(&pki, &bob.cert);
        assert!(!ok && out.contains("revoked"), "{out}");
        let (ok, out) = verify(&pki, &alice.cert);
        assert!(ok, "alice not revoked: {out}");
        // A later CRL replaces the list: bob is back, alice is out.
        pki.revoke(&[&alice]);
        assert!(verify(&pki, &bob.cert).0);
        assert!(!verify(&pki, &alice.cert).0);

        for c in [&alice, &bob, &old, &stranger] {
            assert_eq!(x509_field(&c.cert, &["-serial"]), c.serial_hex);
            assert_eq!(
                x509_field(&c.cert, &["-fingerprint", "-sha256"]),
                c.fingerprint_sha256
            );
            assert_eq!(c.serial_hex.len(), 32);
        }
        assert_ne!(alice.serial_hex, bob.serial_hex);

        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&alice.cert)
            .output()
            .expect("run openssl");
        let text = String::from_utf8_lossy(&text.stdout);
        for needle in [
            "Subject: CN = alice",
            "URI:spiffe://example.org/alice",
            "email:alice@example.org",
            "TLS Web Client Authentication",
            "Issuer: CN = mcpi test CA",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
    }
}
