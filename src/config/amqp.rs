//! `[amqp]`: the AMQP 0-9-1 listeners (plain and TLS) and the limits negotiated with or enforced on clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{AMQP_FRAME_MIN_SIZE, ConfigError, MAX_MESSAGE_SIZE_LIMIT, MIB};

/// The AMQP 0-9-1 listeners (plain and TLS) and the limits negotiated with or enforced on clients.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Address both AMQP listeners bind to.
    pub bind: IpAddr,
    /// Plain AMQP port (0 picks a free port).
    pub port: u16,
    /// AMQPS port, used only when TLS is configured (0 picks a free port).
    pub tls_port: u16,
    /// Highest channel number a client may open (connection.tune channel-max).
    pub channel_max: u16,
    /// Largest frame in bytes, header and end octet included (connection.tune frame-max); at least 4096.
    pub frame_max: u32,
    /// Heartbeat interval the server proposes, in seconds (0 disables heartbeats).
    pub heartbeat_secs: u16,
    /// Largest message body accepted, in bytes (at most 512 MiB).
    pub max_message_size: u64,
    /// Logged-in AMQP connections (plain and TLS together); beyond it connection.open is refused with 530
    /// NOT_ALLOWED, as RabbitMQ does. Clamped at start-up to what the open-file limit allows.
    pub max_connections: usize,
    /// Connections still in their handshake (not logged in yet); when a new one would exceed it, the oldest
    /// is dropped, so silent sockets cannot lock real clients out.
    pub max_handshakes: usize,
    /// The `product` server property; some clients branch on it.
    pub product: String,
    /// Seconds a client has for the TLS handshake, and again for the AMQP handshake, before it is
    /// disconnected.
    pub handshake_timeout_secs: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 5672,
            tls_port: 5671,
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat_secs: 60,
            max_message_size: 16 * MIB,
            max_connections: 10_000,
            max_handshakes: 1_000,
            product: "FerryMQ".to_owned(),
            handshake_timeout_secs: 10,
        }
    }
}

impl AmqpConfig {
    /// Where the plain AMQP listener binds.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Where the AMQPS listener binds (when TLS is configured).
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.tls_port)
    }
}

impl AmqpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.frame_max < AMQP_FRAME_MIN_SIZE {
            return Err(ConfigError::invalid(
                "amqp.frame_max",
                format!(
                    "{} is below {AMQP_FRAME_MIN_SIZE}, the AMQP 0-9-1 minimum frame size",
                    self.frame_max
                ),
            ));
        }
        if self.channel_max == 0 {
            return Err(ConfigError::invalid(
                "amqp.channel_max",
                "must be at least 1 (65535 for the protocol maximum)",
            ));
        }
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "amqp.max_message_size",
                format!(
                    "{} is out of range: must be between 1 and {MAX_MESSAGE_SIZE_LIMIT} (512 MiB)",
                    self.max_message_size
                ),
            ));
        }
        for (option, value) in [
            ("amqp.max_connections", self.max_connections as u64),
            ("amqp.max_handshakes", self.max_handshakes as u64),
            ("amqp.handshake_timeout_secs", self.handshake_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(option, "must be at least 1"));
            }
        }
        if self.product.trim().is_empty() {
            return Err(ConfigError::invalid("amqp.product", "must not be empty"));
        }
        Ok(())
    }
}
