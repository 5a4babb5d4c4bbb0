//! `[mqtt]`: the MQTT 3.1 / 3.1.1 / 5.0 listeners (plain and TLS), login for clients that send no user name,
//! and the bounds every MQTT session is held to (packet size, topic length, subscriptions, in-flight and
//! queued messages, session expiry).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{ConfigError, KIB, MAX_MESSAGE_SIZE_LIMIT, MIB};

/// See the module docs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address both MQTT listeners bind to.
    pub bind: IpAddr,
    /// Plain MQTT port (0 picks a free port).
    pub port: u16,
    /// MQTT over TLS port, used only when TLS is configured (0 picks a free port).
    pub tls_port: u16,
    /// Whether a client that sends no user name logs in as `default_user` (RabbitMQ's `mqtt.allow_anonymous`).
    pub allow_anonymous: bool,
    /// The user anonymous clients log in as.
    pub default_user: String,
    /// That user's password.
    pub default_pass: String,
    /// Whether a client whose TLS certificate was verified (`tls.client_ca`) logs in as the user named by the
    /// certificate's subject common name, without a password (mosquitto's `use_identity_as_username`,
    /// RabbitMQ's `mqtt.ssl_cert_login`). Clients without a certificate log in as usual.
    pub certificate_login: bool,
    /// The vhost every MQTT session lives in.
    pub vhost: String,
    /// Largest packet accepted from a logged-in client, fixed header included [MQTT-3.2.2-15].
    pub max_packet_size: u32,
    /// Largest packet accepted before CONNECT is done (the CONNECT itself).
    pub max_packet_size_unauthenticated: u32,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Unacknowledged QoS 1/2 messages in flight to one client (the lower of this and its receive maximum),
    /// and the receive maximum the broker announces for messages from the client.
    pub max_inflight: u16,
    /// Messages one session's queue may hold; beyond it the oldest are dropped.
    pub max_queued: u64,
    /// Longest session expiry interval a client may ask for, in seconds (v5; v3 persistent sessions get it).
    pub max_session_expiry_secs: u32,
    /// Longest keep-alive a v5 client may ask for, in seconds; a longer one is lowered to it and announced as
    /// Server Keep Alive (§3.2.2.3.14). v3 clients keep theirs (they cannot be told).
    pub max_keep_alive_secs: u16,
    /// Topic aliases a client may use towards the broker (v5 Topic Alias Maximum; 0 turns them off).
    pub topic_alias_maximum: u16,
    /// Logged-in MQTT connections (plain and TLS together).
    pub max_connections: usize,
    /// Connections that have not sent CONNECT yet; the oldest is dropped when one more arrives.
    pub max_handshakes: usize,
    /// Seconds a client has for the TLS handshake, and again to send CONNECT.
    pub handshake_timeout_secs: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 1883,
            tls_port: 8883,
            allow_anonymous: true,
            default_user: "guest".to_owned(),
            default_pass: "guest".to_owned(),
            certificate_login: false,
            vhost: "/".to_owned(),
            max_packet_size: (16 * MIB) as u32,
            max_packet_size_unauthenticated: (64 * KIB) as u32,
            max_topic_length: 4096,
            max_subscriptions: 1000,
            max_inflight: 64,
            max_queued: 100_000,
            max_session_expiry_secs: 86_400,
            max_keep_alive_secs: u16::MAX,
            topic_alias_maximum: 16,
            max_connections: 10_000,
            max_handshakes: 1_000,
            handshake_timeout_secs: 10,
        }
    }
}

impl MqttConfig {
    /// Where the plain MQTT listener binds.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Where the MQTT-over-TLS listener binds (when TLS is configured).
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.tls_port)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_packet_size < 64 || u64::from(self.max_packet_size) > MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "mqtt.max_packet_size",
                format!(
                    "{} is out of range: 64 to {MAX_MESSAGE_SIZE_LIMIT}",
                    self.max_packet_size
                ),
            ));
        }
        if self.max_packet_size_unauthenticated < 64 {
            return Err(ConfigError::invalid(
                "mqtt.max_packet_size_unauthenticated",
                "must be at least 64",
            ));
        }
        if self.max_topic_length == 0 || self.max_topic_length > usize::from(u16::MAX) {
            return Err(ConfigError::invalid(
                "mqtt.max_topic_length",
                "must be between 1 and 65535",
            ));
        }
        for (option, value) in [
            ("mqtt.max_subscriptions", self.max_subscriptions as u64),
            ("mqtt.max_inflight", u64::from(self.max_inflight)),
            ("mqtt.max_queued", self.max_queued),
            ("mqtt.max_connections", self.max_connections as u64),
            ("mqtt.max_handshakes", self.max_handshakes as u64),
            ("mqtt.handshake_timeout_secs", self.handshake_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(option, "must be at least 1"));
            }
        }
        if self.vhost.is_empty() {
            return Err(ConfigError::invalid("mqtt.vhost", "must not be empty"));
        }
        Ok(())
    }
}
