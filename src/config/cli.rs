//! The command line of the `ferrymq` binary and how its flags (and `FERRYMQ_*` variables) override the file.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{Config, LogFormat, StoreKind, SyncPolicy};

/// Command line of the `ferrymq` binary. Every option can also come from the environment variable shown.
#[derive(Clone, Debug, Default, Parser)]
#[command(
    name = "ferrymq",
    version,
    about = "FerryMQ: an open-protocol message broker"
)]
pub struct Cli {
    /// TOML config file (see config/ferrymq.toml); embedded defaults when not given.
    #[arg(long, env = "FERRYMQ_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory for the store and other state.
    #[arg(long, env = "FERRYMQ_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address every listener binds to (AMQP, AMQPS, MQTT, MQTTS, MQTT over WS/WSS, HTTP and AWS).
    #[arg(long, env = "FERRYMQ_BIND", value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Plain AMQP port (0 picks a free one).
    #[arg(long, env = "FERRYMQ_AMQP_PORT", value_name = "PORT")]
    pub amqp_port: Option<u16>,
    /// AMQPS port, used when a TLS certificate is configured (0 picks a free one).
    #[arg(long, env = "FERRYMQ_AMQPS_PORT", value_name = "PORT")]
    pub amqps_port: Option<u16>,
    /// Plain MQTT port (0 picks a free one).
    #[arg(long, env = "FERRYMQ_MQTT_PORT", value_name = "PORT")]
    pub mqtt_port: Option<u16>,
    /// MQTT over TLS port, used when a TLS certificate is configured (0 picks a free one).
    #[arg(long, env = "FERRYMQ_MQTTS_PORT", value_name = "PORT")]
    pub mqtts_port: Option<u16>,
    /// MQTT over WebSocket port (0 picks a free one).
    #[arg(long, env = "FERRYMQ_MQTT_WS_PORT", value_name = "PORT")]
    pub mqtt_ws_port: Option<u16>,
    /// MQTT over secure WebSocket port, used when a TLS certificate is configured (0 picks a free one).
    #[arg(long, env = "FERRYMQ_MQTT_WSS_PORT", value_name = "PORT")]
    pub mqtt_wss_port: Option<u16>,
    /// HTTP port for health endpoints (0 picks a free one).
    #[arg(long, env = "FERRYMQ_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Port of the AWS-compatible APIs (SQS, STS; 0 picks a free one).
    #[arg(long, env = "FERRYMQ_AWS_PORT", value_name = "PORT")]
    pub aws_port: Option<u16>,
    /// PEM certificate chain for the TLS listeners.
    #[arg(long, env = "FERRYMQ_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long, env = "FERRYMQ_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Store kind.
    #[arg(long, env = "FERRYMQ_STORE", value_name = "KIND")]
    pub store: Option<StoreKind>,
    /// When the journal syncs.
    #[arg(long, env = "FERRYMQ_STORE_SYNC", value_name = "POLICY")]
    pub store_sync: Option<SyncPolicy>,
    /// Memory high-water mark in bytes for what the broker holds for clients (0 disables the alarm).
    #[arg(long, env = "FERRYMQ_MEMORY_HIGH_WATER", value_name = "BYTES")]
    pub memory_high_water: Option<u64>,
    /// Bytes of unfinished and uncommitted messages one connection may hold (0 = no cap).
    #[arg(long, env = "FERRYMQ_MEMORY_MAX_PER_CONNECTION", value_name = "BYTES")]
    pub memory_max_per_connection: Option<u64>,
    /// Maximum number of open AMQP connections.
    #[arg(long, env = "FERRYMQ_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Log format.
    #[arg(long, env = "FERRYMQ_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Cli {
    /// Apply the command-line (and environment) overrides on top of `config`.
    pub(super) fn apply(&self, config: &mut Config) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        set(&mut config.data_dir, &self.data_dir);
        if let Some(bind) = self.bind {
            config.amqp.bind = bind;
            config.mqtt.bind = bind;
            config.websocket.bind = bind;
            config.http.bind = bind;
            config.aws.bind = bind;
        }
        set(&mut config.amqp.port, &self.amqp_port);
        set(&mut config.amqp.tls_port, &self.amqps_port);
        set(&mut config.mqtt.port, &self.mqtt_port);
        set(&mut config.mqtt.tls_port, &self.mqtts_port);
        set(&mut config.websocket.mqtt_port, &self.mqtt_ws_port);
        set(&mut config.websocket.mqtt_tls_port, &self.mqtt_wss_port);
        set(&mut config.http.port, &self.http_port);
        set(&mut config.aws.port, &self.aws_port);
        if self.tls_cert.is_some() {
            config.tls.cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            config.tls.key = self.tls_key.clone();
        }
        set(&mut config.store.kind, &self.store);
        set(&mut config.store.sync, &self.store_sync);
        set(&mut config.amqp.max_connections, &self.max_connections);
        set(&mut config.memory.high_water, &self.memory_high_water);
        set(
            &mut config.memory.max_per_connection,
            &self.memory_max_per_connection,
        );
        set(&mut config.log.format, &self.log_format);
    }
}
