//! Broker configuration: every listener, limit and tunable FerryMQ has, in one validated [`Config`].
//!
//! Values come from three layers, each overriding the one before: the embedded defaults (FerryMQ runs with no
//! config file at all, data under `./data`), an optional TOML file (`--config path`, documented option by
//! option in `config/ferrymq.toml`), then the command line [`Cli`], where every flag can also be given as a
//! `FERRYMQ_*` environment variable (a flag beats its variable). [`Config::resolve`] derives the paths that
//! follow from `data_dir` and checks every value, so a bad setting stops the broker at start-up with a message
//! naming the option, never half-way through the run.
//!
//! This module knows option names, defaults and limits; it opens no socket and no file other than the config
//! file itself.
//!
//! One module per section (`amqp`, `mqtt`, `websocket`, `aws`, `http`, `tls`, `auth`, `store`, `memory`, `limits`,
//! `log`) owns that section's struct, defaults and checks; `cli` owns the command line; this file owns the whole [`Config`], loading,
//! and the checks that span sections (ports shared by two listeners).

mod amqp;
mod auth;
mod aws;
mod cli;
mod http;
mod limits;
mod log;
mod memory;
mod mqtt;
mod store;
mod tls;
mod websocket;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use amqp::AmqpConfig;
pub use auth::{AuthConfig, PermissionConfig, TopicPermissionConfig, UserConfig};
pub use aws::{AwsConfig, AwsKeyConfig};
pub use cli::Cli;
pub use http::HttpConfig;
pub use limits::{LimitsConfig, UserLimits, VhostLimits};
pub use log::{LogConfig, LogFormat};
pub use memory::MemoryConfig;
pub use mqtt::MqttConfig;
pub use store::{StoreConfig, StoreKind, SyncPolicy};
pub use tls::TlsConfig;
pub use websocket::WebSocketConfig;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// AMQP 0-9-1 §4.2.3: `frame-min-size` is 4096 octets; peers must accept frames of that size.
pub const AMQP_FRAME_MIN_SIZE: u32 = 4096;
/// The largest message body FerryMQ accepts whatever the configuration (RabbitMQ's hard limit too).
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * MIB;
/// The name of the directory under `data_dir` that holds the store's files.
pub const STORE_SUBDIR: &str = "store";

/// Errors found while loading or validating the configuration. Each message names the option at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or inconsistent with another one.
    #[error("invalid configuration: {option}: {reason}")]
    Invalid {
        option: &'static str,
        reason: String,
    },
}

impl ConfigError {
    fn invalid(option: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            option,
            reason: reason.into(),
        }
    }
}

/// The whole broker configuration. `Default` is the embedded configuration used when nothing is given.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of everything FerryMQ writes (the store lives in `<data_dir>/store`).
    pub data_dir: PathBuf,
    /// AMQP 0-9-1 listeners and protocol limits.
    pub amqp: AmqpConfig,
    /// MQTT 3.1 / 3.1.1 / 5.0 listeners, anonymous login and session bounds.
    pub mqtt: MqttConfig,
    /// WebSocket listeners (MQTT over WS and WSS), the upgrade path and frame bounds.
    pub websocket: WebSocketConfig,
    /// Certificate for the TLS listeners (AMQPS); TLS is off unless both files are set.
    pub tls: TlsConfig,
    /// The HTTP listener for health (and later metrics) endpoints.
    pub http: HttpConfig,
    /// The AWS-compatible APIs (SQS, STS) on one HTTP listener.
    pub aws: AwsConfig,
    /// The default user created at start-up.
    pub auth: AuthConfig,
    /// Message and definition storage.
    pub store: StoreConfig,
    /// Memory alarm on what the broker holds for clients, and the cap per connection.
    pub memory: MemoryConfig,
    /// Per-user, per-vhost and per-queue limits.
    pub limits: LimitsConfig,
    /// Log output.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("data");
        Self {
            store: StoreConfig::for_data_dir(&data_dir),
            data_dir,
            amqp: AmqpConfig::default(),
            mqtt: MqttConfig::default(),
            websocket: WebSocketConfig::default(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            aws: AwsConfig::default(),
            auth: AuthConfig::default(),
            memory: MemoryConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Build the configuration the command line asks for: defaults, then the file named by `--config` (if
    /// any), then the flags and `FERRYMQ_*` variables; derived and validated.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        cli.apply(&mut config);
        config.resolve()
    }

    /// Read a TOML config file (not yet validated: call [`Config::resolve`]).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parse TOML text; unknown keys and wrongly typed values are errors.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// The effective configuration as TOML (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, string, path or table; TOML can represent all of them.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// Derive the values that follow from others (`store.dir` from `data_dir`) and check every option.
    /// The server calls this before using a config, so a hand-built `Config` is checked too.
    pub fn resolve(mut self) -> Result<Config, ConfigError> {
        self.store.dir = self.data_dir.join(STORE_SUBDIR);
        self.validate()?;
        Ok(self)
    }

    /// Check every option and the combinations that cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        self.amqp.validate()?;
        self.mqtt.validate()?;
        self.websocket.validate()?;
        self.tls.validate()?;
        self.auth.validate()?;
        self.aws.validate()?;
        self.store.validate()?;
        self.memory.validate(self.amqp.max_message_size)?;
        self.limits.validate()?;
        self.validate_ports()
    }

    /// Two listeners on the same fixed port would fail to bind; say which ones before trying.
    fn validate_ports(&self) -> Result<(), ConfigError> {
        let mut listeners = vec![
            ("amqp.port", self.amqp.addr()),
            ("mqtt.port", self.mqtt.addr()),
            ("websocket.mqtt_port", self.websocket.mqtt_addr()),
            ("http.port", self.http.addr()),
        ];
        if self.tls.files().is_some() {
            listeners.push(("amqp.tls_port", self.amqp.tls_addr()));
            listeners.push(("mqtt.tls_port", self.mqtt.tls_addr()));
            listeners.push(("websocket.mqtt_tls_port", self.websocket.mqtt_tls_addr()));
        }
        if self.aws.enabled {
            listeners.push(("aws.port", self.aws.addr()));
        }
        for (i, (name, addr)) in listeners.iter().enumerate() {
            for (other, other_addr) in &listeners[..i] {
                let overlap = addr.ip() == other_addr.ip()
                    || addr.ip().is_unspecified()
                    || other_addr.ip().is_unspecified();
                if addr.port() != 0 && addr.port() == other_addr.port() && overlap {
                    return Err(ConfigError::invalid(
                        name,
                        format!("port {} is already used by {other}", addr.port()),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
