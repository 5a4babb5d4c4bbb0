//! `[websocket]`: the WebSocket listeners (MQTT over WS and WSS today; STOMP's later), the upgrade path, and
//! the bounds on the upgrade request and on frames and messages.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{ConfigError, KIB, MAX_MESSAGE_SIZE_LIMIT, MIB};

/// See the module docs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Address the WebSocket listeners bind to.
    pub bind: IpAddr,
    /// The request path clients upgrade on (`ws://host:15675/ws`).
    pub path: String,
    /// MQTT over WebSocket port (0 picks a free port).
    pub mqtt_port: u16,
    /// MQTT over secure WebSocket port, used only when TLS is configured (0 picks a free port).
    pub mqtt_tls_port: u16,
    /// The largest upgrade request (request line and headers), in bytes; beyond it the answer is 431.
    pub max_request_bytes: usize,
    /// The largest binary message accepted, in bytes; beyond it the connection closes with 1009.
    pub max_message_size: usize,
    /// The largest single frame accepted, in bytes; beyond it the connection closes with 1009.
    pub max_frame_size: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            path: "/ws".to_owned(),
            mqtt_port: 15675,
            mqtt_tls_port: 15676,
            max_request_bytes: (8 * KIB) as usize,
            max_message_size: (16 * MIB) as usize,
            max_frame_size: (16 * MIB) as usize,
        }
    }
}

impl WebSocketConfig {
    /// Where the MQTT-over-WebSocket listener binds.
    pub fn mqtt_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.mqtt_port)
    }

    /// Where the MQTT-over-secure-WebSocket listener binds (when TLS is configured).
    pub fn mqtt_tls_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.mqtt_tls_port)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return Err(ConfigError::invalid(
                "websocket.path",
                format!(
                    "{:?} must be an absolute path without query or fragment",
                    self.path
                ),
            ));
        }
        if self.max_request_bytes < 256 {
            return Err(ConfigError::invalid(
                "websocket.max_request_bytes",
                "must be at least 256 (a browser's upgrade request is 400 to 2000 bytes)",
            ));
        }
        for (option, value) in [
            ("websocket.max_message_size", self.max_message_size),
            ("websocket.max_frame_size", self.max_frame_size),
        ] {
            if value == 0 || value as u64 > MAX_MESSAGE_SIZE_LIMIT {
                return Err(ConfigError::invalid(
                    option,
                    format!(
                        "{value} is out of range: must be between 1 and {MAX_MESSAGE_SIZE_LIMIT} (512 MiB)"
                    ),
                ));
            }
        }
        Ok(())
    }
}
