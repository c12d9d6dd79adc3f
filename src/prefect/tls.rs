//! TLS for the Prefect client: the platform's trusted roots plus an optional CA file, with the
//! roots loaded at the first TLS handshake rather than when the client is built.
//!
//! Loading the platform's roots reads and parses every certificate the system trusts (about 150
//! files on Debian). A client that only ever talks plain HTTP, as most self-hosted servers on a
//! private network do, never needs them; with the roots loaded up front, `credchain check`
//! against such a server spent a third of its heap on them. For the same reason a CA file
//! (`PREFECT_API_SSL_CERT_FILE`, `SSL_CERT_FILE`) is read at once only for an https API URL,
//! where a bad file is a configuration error worth reporting before any request.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The ALPN protocols the client offers: HTTP/2, then HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The CA certificates trusted besides the platform's.
#[derive(Debug)]
pub(crate) enum ExtraRoots {
    /// Read already.
    Loaded(Vec<CertificateDer<'static>>),
    /// To read from `path` (named by environment variable `var`) at the first handshake.
    Deferred { var: &'static str, path: String },
}

impl ExtraRoots {
    fn load(&self) -> Result<Vec<CertificateDer<'static>>, rustls::Error> {
        match self {
            ExtraRoots::Loaded(certs) => Ok(certs.clone()),
            ExtraRoots::Deferred { var, path } => super::transport::load_ca_file(var, path)
                .map_err(|e| rustls::Error::General(crate::exit::error_chain(&e))),
        }
    }
}

/// A client configuration whose certificate checks use the platform's roots and `extra_roots`;
/// with `insecure`, certificates are not checked at all (the handshake's signatures still are).
pub(crate) fn client_config(
    extra_roots: ExtraRoots,
    insecure: bool,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let check = if insecure {
        Check::Nothing
    } else {
        Check::PlatformRoots {
            extra_roots,
            verifier: OnceLock::new(),
        }
    };
    let verifier = Arc::new(Verifier {
        provider: provider.clone(),
        check,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Checks server certificates as [`Check`] says, and handshake signatures always.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    check: Check,
}

#[derive(Debug)]
enum Check {
    /// The platform verifier with extra roots, made at the first certificate it checks.
    PlatformRoots {
        extra_roots: ExtraRoots,
        verifier: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
    },
    /// Any certificate passes (`PREFECT_API_TLS_INSECURE_SKIP_VERIFY=true`, for tests only).
    Nothing,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Check::PlatformRoots {
            extra_roots,
            verifier,
        } = &self.check
        else {
            return Ok(ServerCertVerified::assertion());
        };
        let verifier = verifier.get_or_init(|| {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra_roots.load()?,
                self.provider.clone(),
            )
        });
        match verifier {
            Ok(verifier) => verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            Err(error) => Err(error.clone()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_not_loaded_before_a_handshake() {
        let config = client_config(ExtraRoots::Loaded(Vec::new()), false).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let verifier = Verifier {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            check: Check::PlatformRoots {
                extra_roots: ExtraRoots::Deferred {
                    var: "SSL_CERT_FILE",
                    path: "/nonexistent/ca.pem".into(),
                },
                verifier: OnceLock::new(),
            },
        };
        assert!(!verifier.supported_verify_schemes().is_empty());
        assert!(
            matches!(&verifier.check, Check::PlatformRoots { verifier, .. } if verifier.get().is_none())
        );
    }
}
