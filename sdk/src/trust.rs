//! Which server certificate the SDK accepts (design §2: a cert file or a pinned
//! fingerprint; never a blanket "accept any cert" outside tests).
//!
//! A broker without a configured certificate makes a self-signed one and logs its
//! SHA-256 fingerprint, so the two realistic choices are trusting that certificate
//! (file or DER bytes) or pinning its fingerprint.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::error::{Result, SdkError};

/// How to authenticate the broker's TLS certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust the certificate(s) in this file, PEM or DER, as roots. The broker's
    /// certificate must chain to one of them and name the configured server name.
    CertFile(PathBuf),
    /// Trust this DER certificate as a root (same rules as [`Trust::CertFile`]).
    CertDer(Vec<u8>),
    /// Accept exactly the server whose end-entity certificate DER has this SHA-256
    /// hash, whatever name or issuer it has. The handshake signature is still
    /// verified, so the server must hold the certificate's private key.
    Fingerprint([u8; 32]),
    /// Accepts any certificate; only for tests. Build it with
    /// [`Trust::insecure_accept_any_cert_for_tests`] so that its use stands out.
    #[doc(hidden)]
    InsecureAcceptAnyCertForTests,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::CertFile(path) => f.debug_tuple("CertFile").field(path).finish(),
            Trust::CertDer(der) => write!(f, "CertDer({} bytes)", der.len()),
            Trust::Fingerprint(fp) => write!(f, "Fingerprint({})", hex::encode(fp)),
            Trust::InsecureAcceptAnyCertForTests => f.write_str("InsecureAcceptAnyCertForTests"),
        }
    }
}

impl Trust {
    /// Accepts any server certificate. The connection is encrypted but not
    /// authenticated: anyone on the path can impersonate the broker. Tests only.
    pub fn insecure_accept_any_cert_for_tests() -> Self {
        Trust::InsecureAcceptAnyCertForTests
    }

    /// Parses a SHA-256 fingerprint as printed by the broker: 64 hex digits, either
    /// case, optionally separated by `:` (as `openssl x509 -fingerprint` prints it).
    pub fn fingerprint_hex(text: &str) -> Result<Self> {
        let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
        if digits.len() != 64 {
            return Err(SdkError::InvalidTrust(format!(
                "a SHA-256 fingerprint has 64 hex digits, got {}",
                digits.len()
            )));
        }
        let mut fingerprint = [0u8; 32];
        hex::decode_to_slice(&digits, &mut fingerprint)
            .map_err(|e| SdkError::InvalidTrust(format!("fingerprint is not hex: {e}")))?;
        Ok(Trust::Fingerprint(fingerprint))
    }

    /// Builds the certificate verifier for this trust choice.
    pub(crate) fn verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ServerCertVerifier>> {
        let roots = match self {
            Trust::Fingerprint(fingerprint) => {
                return Ok(Arc::new(PinVerifier {
                    pin: Some(*fingerprint),
                    provider: provider.clone(),
                }));
            }
            Trust::InsecureAcceptAnyCertForTests => {
                return Ok(Arc::new(PinVerifier {
                    pin: None,
                    provider: provider.clone(),
                }));
            }
            Trust::CertDer(der) => vec![CertificateDer::from(der.clone())],
            Trust::CertFile(path) => read_certs(&std::fs::read(path).map_err(|e| {
                SdkError::InvalidTrust(format!("cannot read {}: {e}", path.display()))
            })?)?,
        };
        let mut store = RootCertStore::empty();
        for cert in roots {
            store.add(cert)?;
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map(|verifier| verifier as Arc<dyn ServerCertVerifier>)
            .map_err(|e| SdkError::InvalidTrust(e.to_string()))
    }
}

/// The SHA-256 of a certificate's DER bytes: what [`Trust::Fingerprint`] pins.
pub fn sha256_fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Certificates from a file's bytes: every `CERTIFICATE` block if it is PEM, else the
/// whole content as one DER certificate.
fn read_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let is_pem = bytes.windows(11).any(|window| window == b"-----BEGIN ");
    if !is_pem {
        return Ok(vec![CertificateDer::from(bytes.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| SdkError::InvalidTrust(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(SdkError::InvalidTrust(
            "no CERTIFICATE block in the PEM file".into(),
        ));
    }
    Ok(certs)
}

/// Pins the end-entity certificate by hash. Names, issuers and validity dates are
/// deliberately not checked: the pin is the whole trust decision, which is what makes
/// a self-signed broker certificate usable. Signatures are checked like any verifier
/// does, so a peer replaying the certificate without its key fails the handshake.
///
/// `pin: None` accepts any certificate (still checking handshake signatures, so the
/// TLS machinery runs as in production); it is reachable only through
/// [`Trust::insecure_accept_any_cert_for_tests`].
#[derive(Debug)]
struct PinVerifier {
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let actual = sha256_fingerprint(end_entity.as_ref());
        // Compare without an early exit; the value is public, but it costs nothing.
        let diff = actual
            .iter()
            .zip(pin.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::warn!(
                expected = %hex::encode(pin),
                actual = %hex::encode(actual),
                "server certificate fingerprint mismatch"
            );
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn self_signed() -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap()
    }

    #[test]
    fn fingerprint_hex_accepts_plain_and_colon_separated() {
        let plain = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let Trust::Fingerprint(fp) = Trust::fingerprint_hex(plain).unwrap() else {
            panic!("not a fingerprint");
        };
        assert_eq!(fp[0], 0x00);
        assert_eq!(fp[1], 0x11);
        assert_eq!(fp[31], 0xff);

        let colons: String = plain
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            Trust::fingerprint_hex(&colons).unwrap(),
            Trust::Fingerprint(fp)
        );
    }

    #[test]
    fn fingerprint_hex_rejects_wrong_length_and_non_hex() {
        assert!(Trust::fingerprint_hex("abcd").is_err());
        assert!(Trust::fingerprint_hex(&"g".repeat(64)).is_err());
        assert!(Trust::fingerprint_hex(&"a".repeat(66)).is_err());
        assert!(Trust::fingerprint_hex("").is_err());
    }

    #[test]
    fn fingerprint_verifier_accepts_only_the_pinned_cert() {
        let pinned = self_signed();
        let other = self_signed();
        let der = pinned.cert.der();
        let trust = Trust::Fingerprint(sha256_fingerprint(der));
        let verifier = trust.verifier(&provider()).unwrap();
        let name = ServerName::try_from("anything.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(der, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert!(
            verifier
                .verify_server_cert(other.cert.der(), &[], &name, &[], UnixTime::now())
                .is_err()
        );
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    /// Serves `cert` but signs the handshake with `key`'s private key.
    #[derive(Debug)]
    struct FixedCert(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for FixedCert {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A full in-memory TLS handshake against a verifier built from `trust`.
    fn handshake(
        trust: &Trust,
        cert: &rcgen::CertifiedKey,
        key: &rcgen::CertifiedKey,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> std::result::Result<(), rustls::Error> {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let provider = provider();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pair.serialize_der()));
        let signing_key = provider.key_provider.load_private_key(key_der).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert.cert.der().clone()], signing_key);
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
        let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(trust.verifier(&provider).unwrap())
            .with_no_client_auth();
        let mut client = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn fingerprint_trust_completes_a_real_handshake_and_checks_signatures() {
        let pinned = self_signed();
        let impostor = self_signed();
        let trust = Trust::Fingerprint(sha256_fingerprint(pinned.cert.der()));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            handshake(&trust, &pinned, &pinned, version).unwrap();
            // The pinned certificate presented without its private key.
            let err = handshake(&trust, &pinned, &impostor, version).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(_)
                        | rustls::Error::PeerMisbehaved(_)
                        | rustls::Error::General(_)
                ),
                "{err:?}"
            );
            // Another certificate altogether.
            assert!(handshake(&trust, &impostor, &impostor, version).is_err());
        }
    }

    #[test]
    fn insecure_trust_accepts_any_cert_but_not_a_forged_signature() {
        let cert = self_signed();
        let other = self_signed();
        let trust = Trust::insecure_accept_any_cert_for_tests();
        handshake(&trust, &cert, &cert, &rustls::version::TLS13).unwrap();
        assert!(handshake(&trust, &cert, &other, &rustls::version::TLS13).is_err());
    }

    #[test]
    fn cert_der_trust_checks_the_server_name() {
        let cert = self_signed();
        let verifier = Trust::CertDer(cert.cert.der().to_vec())
            .verifier(&provider())
            .unwrap();
        let localhost = ServerName::try_from("localhost").unwrap();
        let elsewhere = ServerName::try_from("elsewhere.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(cert.cert.der(), &[], &localhost, &[], UnixTime::now())
                .is_ok()
        );
        assert!(
            verifier
                .verify_server_cert(cert.cert.der(), &[], &elsewhere, &[], UnixTime::now())
                .is_err()
        );
        let stranger = self_signed();
        assert!(
            verifier
                .verify_server_cert(stranger.cert.der(), &[], &localhost, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn cert_file_reads_pem_and_der() {
        let cert = self_signed();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("cert.pem");
        let der_path = dir.path().join("cert.der");
        std::fs::write(&pem_path, cert.cert.pem()).unwrap();
        std::fs::write(&der_path, cert.cert.der()).unwrap();
        let localhost = ServerName::try_from("localhost").unwrap();
        for path in [pem_path, der_path] {
            let verifier = Trust::CertFile(path).verifier(&provider()).unwrap();
            assert!(
                verifier
                    .verify_server_cert(cert.cert.der(), &[], &localhost, &[], UnixTime::now())
                    .is_ok()
            );
        }
        let empty_pem = dir.path().join("empty.pem");
        std::fs::write(
            &empty_pem,
            "-----BEGIN NOTHING-----\n-----END NOTHING-----\n",
        )
        .unwrap();
        assert!(Trust::CertFile(empty_pem).verifier(&provider()).is_err());
        assert!(
            Trust::CertFile(dir.path().join("missing.pem"))
                .verifier(&provider())
                .is_err()
        );
    }
}
