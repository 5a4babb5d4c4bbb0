//! `[http]`: the HTTP listener (health endpoints today; management and metrics later).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The HTTP listener serving `/health/live` and `/health/ready`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the HTTP listener binds to.
    pub bind: IpAddr,
    /// HTTP port (0 picks a free port).
    pub port: u16,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 15692,
        }
    }
}

impl HttpConfig {
    /// Where the HTTP listener binds.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}
