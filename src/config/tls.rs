//! `[tls]`: the certificate and key every TLS listener serves; TLS is off unless both are set.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Server certificate and key for every TLS listener. Both set: TLS listeners start; neither: they do not.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM file with the CAs that sign client certificates. When set, TLS listeners ask each client for a
    /// certificate (a client may present none) and refuse the handshake when one does not chain to these; see
    /// `mqtt.certificate_login` for logging in by certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key paths when TLS is enabled (both set).
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

impl TlsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(ConfigError::invalid(
                "tls.key",
                "tls.cert is set but tls.key is not; set both to enable TLS",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "tls.cert",
                "tls.key is set but tls.cert is not; set both to enable TLS",
            )),
            (None, None) if self.client_ca.is_some() => Err(ConfigError::invalid(
                "tls.client_ca",
                "tls.client_ca is set but TLS is not; set tls.cert and tls.key too",
            )),
            _ => Ok(()),
        }
    }
}
