//! `[aws]`: the listener for the AWS-compatible APIs (SQS and STS today; SNS and CloudWatch later), the
//! account and region they report, the SigV4 keys they accept, and the bound on a request's size.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{ConfigError, MIB};

/// One access key the AWS APIs accept (SigV4 signatures are verified with its secret).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKeyConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The AWS-compatible HTTP listener (one endpoint for every AWS API, dispatched per request).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Whether the listener runs at all.
    pub enabled: bool,
    /// Address it binds to.
    pub bind: IpAddr,
    /// Port (9324, the SQS emulators' port; 0 picks a free one).
    pub port: u16,
    /// The account id in queue URLs and ARNs.
    pub account_id: String,
    /// The region reported when a request names none (unsigned requests).
    pub region: String,
    /// Largest request body accepted, in bytes; larger ones are refused before they are read.
    pub max_request_bytes: u64,
    /// Concurrent connections (SDK clients keep theirs open between requests); more wait in the listen
    /// backlog. They are set aside from the open-file limit before the AMQP and MQTT budgets are fitted.
    pub max_connections: usize,
    /// How far a request's `X-Amz-Date` may be from the broker's clock, in seconds (AWS: 15 minutes).
    pub clock_skew_secs: u64,
    /// Keys whose signatures are verified. None: any key is accepted, from loopback clients only.
    pub keys: Vec<AwsKeyConfig>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 9324,
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            max_request_bytes: 4 * MIB,
            max_connections: 1024,
            clock_skew_secs: 900,
            keys: Vec::new(),
        }
    }
}

impl AwsConfig {
    /// Where the AWS listener binds.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::invalid(
                "aws.account_id",
                format!("'{}' is not 12 digits", self.account_id),
            ));
        }
        if self.region.is_empty() {
            return Err(ConfigError::invalid("aws.region", "must not be empty"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "aws.max_connections",
                "must be at least 1",
            ));
        }
        // SendMessageBatch carries up to 1 MiB of bodies; the Query form may percent-encode them to 3x.
        if self.max_request_bytes < MIB {
            return Err(ConfigError::invalid(
                "aws.max_request_bytes",
                format!(
                    "{} is below 1 MiB, the largest SQS message",
                    self.max_request_bytes
                ),
            ));
        }
        if self
            .keys
            .iter()
            .any(|k| k.access_key_id.is_empty() || k.secret_access_key.is_empty())
        {
            return Err(ConfigError::invalid(
                "aws.keys",
                "every key needs an access_key_id and a secret_access_key",
            ));
        }
        Ok(())
    }
}
