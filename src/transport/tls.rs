//! TLS termination: load a PEM certificate chain and private key and build the rustls acceptor every TLS
//! listener (AMQPS, MQTTS, MQTT over WSS) shares; with a client CA file, ask clients for a certificate
//! (optional) and verify it against those CAs, so a front end can log a client in by its certificate's common
//! name ([`common_name`], parsed with `x509-parser`).
//!
//! PEM parsing uses `rustls-pki-types` (not the unmaintained `rustls-pemfile`); the crypto provider is
//! `ring`, passed explicitly so the process-wide default provider never matters. Errors name the file at
//! fault and say what was expected, because a misconfigured certificate is the most common TLS problem.
//! The handshake itself runs in each connection's task (see `tcp`), never in an accept loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the TLS certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or not PEM.
    #[error("cannot read TLS certificate file {path}: {source}")]
    ReadCert { path: PathBuf, source: pem::Error },
    /// The certificate file holds no certificate.
    #[error(
        "TLS certificate file {path} contains no certificate (expected a `-----BEGIN CERTIFICATE-----` block)"
    )]
    NoCert { path: PathBuf },
    /// The key file is missing, unreadable or not PEM.
    #[error("cannot read TLS private key file {path}: {source}")]
    ReadKey { path: PathBuf, source: pem::Error },
    /// The key file holds no private key.
    #[error(
        "TLS private key file {path} contains no private key (expected a `-----BEGIN PRIVATE KEY-----`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
    )]
    NoKey { path: PathBuf },
    /// The client CA file holds a certificate rustls cannot use as a trust anchor.
    #[error("TLS client CA file {path} cannot be used: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    /// rustls refused the pair (the key does not match the certificate, unsupported algorithm, ...).
    #[error("TLS certificate {cert} and key {key} cannot be used: {source}")]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Load `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or SEC1) into a TLS acceptor. With
/// `client_ca` (PEM certificates), clients are asked for a certificate: one that is presented must chain to
/// those CAs or the handshake fails; a client that presents none is still accepted.
pub fn load_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let chain = load_cert_chain(cert)?;
    let private_key = load_private_key(key)?;
    let rustls_error = |source| TlsError::Rustls {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca_error = |reason: String| TlsError::ClientCa {
                path: path.to_owned(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for ca in load_cert_chain(path)? {
                roots.add(ca).map_err(|e| ca_error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, private_key)
        .map_err(rustls_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject common name (CN) of a DER certificate, if it has one that is a string.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::ReadCert {
        path: path.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        source => TlsError::ReadKey {
            path: path.to_owned(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).expect("write file");
            path
        }
    }

    fn load_error(cert: &Path, key: &Path) -> TlsError {
        match load_acceptor(cert, key, None) {
            Ok(_) => panic!(
                "loading {} and {} should fail",
                cert.display(),
                key.display()
            ),
            Err(e) => e,
        }
    }

    fn self_signed() -> (String, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("generate");
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn loads_a_generated_certificate_and_key() {
        let files = Files::new();
        let (cert, key) = self_signed();
        load_acceptor(
            &files.write("c.pem", &cert),
            &files.write("k.pem", &key),
            None,
        )
        .expect("loads");
    }

    #[test]
    fn missing_certificate_file_names_the_path() {
        let files = Files::new();
        let (_, key) = self_signed();
        let err = load_error(
            Path::new("/nonexistent/cert.pem"),
            &files.write("k.pem", &key),
        );
        assert!(matches!(err, TlsError::ReadCert { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn key_in_the_certificate_slot_is_reported_as_no_certificate() {
        let files = Files::new();
        let (_, key) = self_signed();
        let key_path = files.write("k.pem", &key);
        let err = load_error(&key_path, &key_path);
        assert!(matches!(err, TlsError::NoCert { .. }), "{err}");
    }

    #[test]
    fn certificate_in_the_key_slot_is_reported_as_no_key() {
        let files = Files::new();
        let (cert, _) = self_signed();
        let cert_path = files.write("c.pem", &cert);
        let err = load_error(&cert_path, &cert_path);
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let files = Files::new();
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let err = load_error(
            &files.write("c.pem", &cert),
            &files.write("k.pem", &other_key),
        );
        assert!(matches!(err, TlsError::Rustls { .. }), "{err}");
    }
}
