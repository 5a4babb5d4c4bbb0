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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

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
    /// Certificate for the TLS listeners (AMQPS); TLS is off unless both files are set.
    pub tls: TlsConfig,
    /// The HTTP listener for health (and later metrics) endpoints.
    pub http: HttpConfig,
    /// The default user created at start-up.
    pub auth: AuthConfig,
    /// Message and definition storage.
    pub store: StoreConfig,
    /// Memory alarm for messages held by queues.
    pub memory: MemoryConfig,
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
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            memory: MemoryConfig::default(),
            log: LogConfig::default(),
        }
    }
}

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
    /// Open AMQP connections (plain and TLS together) beyond which new ones are closed at once.
    pub max_connections: usize,
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
}

impl TlsConfig {
    /// The certificate and key paths when TLS is enabled (both set).
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

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

/// Users, vhosts and permissions created at every start, and who may log in only from loopback.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Name of the user created at start-up with full permissions on vhost `/`.
    pub default_user: String,
    /// Its password.
    pub default_pass: String,
    /// Users allowed to connect only from a loopback address (RabbitMQ's `loopback_users`); `[]` lifts it.
    pub loopback_users: Vec<String>,
    /// Vhosts created at start-up besides `/`.
    pub vhosts: Vec<String>,
    /// Users created at start-up besides the default user.
    pub users: Vec<UserConfig>,
    /// Permissions granted at start-up.
    pub permissions: Vec<PermissionConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            default_user: "guest".to_owned(),
            default_pass: "guest".to_owned(),
            loopback_users: vec!["guest".to_owned()],
            vhosts: Vec::new(),
            users: Vec::new(),
            permissions: Vec::new(),
        }
    }
}

/// A user created at start-up (`[[auth.users]]`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Tags, as RabbitMQ's (`administrator`, `monitoring`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A permission granted at start-up (`[[auth.permissions]]`): RabbitMQ's configure / write / read regexes on
/// resource names in one vhost.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    /// The user (the default user or one of `users`).
    pub user: String,
    /// The vhost (`/` or one of `vhosts`); default `/`.
    #[serde(default = "PermissionConfig::default_vhost")]
    pub vhost: String,
    /// Regex of resources the user may declare and delete; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub configure: String,
    /// Regex of resources the user may publish to; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub write: String,
    /// Regex of resources the user may consume from; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub read: String,
}

impl PermissionConfig {
    fn default_vhost() -> String {
        "/".to_owned()
    }

    fn everything() -> String {
        ".*".to_owned()
    }
}

/// Which store keeps definitions and persistent messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The durable journal under `<data_dir>/store` (ARCHITECTURE.md §5).
    #[default]
    Journal,
    /// Nothing is written to disk; everything is lost at exit (tests, throwaway brokers).
    Memory,
}

/// When the journal syncs to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SyncPolicy {
    /// Sync as soon as the previous sync returns, covering everything written meanwhile (group commit).
    #[default]
    Always,
    /// Additionally wait up to `batch_window_us` after the first pending write so that more writes share a sync.
    BatchWindow,
}

/// Settings of the message store, read by the store implementation.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which store to use.
    pub kind: StoreKind,
    /// Size in bytes at which the journal starts a new segment file.
    pub segment_size: u64,
    /// When the journal syncs.
    pub sync: SyncPolicy,
    /// With `sync = "batch-window"`: microseconds to gather writes before syncing.
    pub batch_window_us: u64,
    /// Free disk space in bytes below which publishers are blocked and the broker reports not ready.
    pub disk_low_water: u64,
    /// Directory of the store's files: always `<data_dir>/store` (derived by [`Config::resolve`], not an
    /// option of its own).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::for_data_dir(Path::new("data"))
    }
}

impl StoreConfig {
    fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            kind: StoreKind::default(),
            segment_size: 64 * MIB,
            sync: SyncPolicy::default(),
            batch_window_us: 200,
            disk_low_water: crate::store::journal::DEFAULT_DISK_LOW_WATER,
            dir: data_dir.join(STORE_SUBDIR),
        }
    }
}

/// The memory alarm: above the high-water mark, publishers are blocked (AMQP `connection.blocked`) until
/// consumers bring the memory held by queued messages back down.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Bytes of message data held by queues above which publishers are blocked; 0 disables the alarm.
    pub high_water: u64,
}

impl Default for MemoryConfig {
    /// 2 GiB: publishers are held back long before a backlog of transient messages exhausts a small host
    /// (RabbitMQ's `vm_memory_high_watermark` plays the same role).
    fn default() -> Self {
        Self {
            high_water: 2 << 30,
        }
    }
}

/// Log output settings. Verbosity comes from `RUST_LOG` (default `info`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line with `timestamp`, `level`, `target`, `message` and the fields.
    Json,
}

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
    /// Address every listener binds to (AMQP, AMQPS and HTTP).
    #[arg(long, env = "FERRYMQ_BIND", value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Plain AMQP port (0 picks a free one).
    #[arg(long, env = "FERRYMQ_AMQP_PORT", value_name = "PORT")]
    pub amqp_port: Option<u16>,
    /// AMQPS port, used when a TLS certificate is configured (0 picks a free one).
    #[arg(long, env = "FERRYMQ_AMQPS_PORT", value_name = "PORT")]
    pub amqps_port: Option<u16>,
    /// HTTP port for health endpoints (0 picks a free one).
    #[arg(long, env = "FERRYMQ_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,
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
    /// Memory high-water mark in bytes for queued messages (0 disables the alarm).
    #[arg(long, env = "FERRYMQ_MEMORY_HIGH_WATER", value_name = "BYTES")]
    pub memory_high_water: Option<u64>,
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
    fn apply(&self, config: &mut Config) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        set(&mut config.data_dir, &self.data_dir);
        if let Some(bind) = self.bind {
            config.amqp.bind = bind;
            config.http.bind = bind;
        }
        set(&mut config.amqp.port, &self.amqp_port);
        set(&mut config.amqp.tls_port, &self.amqps_port);
        set(&mut config.http.port, &self.http_port);
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
        set(&mut config.log.format, &self.log_format);
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
        self.tls.validate()?;
        self.auth.validate()?;
        self.store.validate()?;
        self.validate_ports()
    }

    /// Two listeners on the same fixed port would fail to bind; say which ones before trying.
    fn validate_ports(&self) -> Result<(), ConfigError> {
        let mut listeners = vec![
            ("amqp.port", self.amqp.addr()),
            ("http.port", self.http.addr()),
        ];
        if self.tls.files().is_some() {
            listeners.push(("amqp.tls_port", self.amqp.tls_addr()));
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

impl AmqpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "amqp.max_connections",
                "must be at least 1",
            ));
        }
        if self.handshake_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "amqp.handshake_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.product.trim().is_empty() {
            return Err(ConfigError::invalid("amqp.product", "must not be empty"));
        }
        Ok(())
    }
}

impl TlsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(ConfigError::invalid(
                "tls.key",
                "tls.cert is set but tls.key is not; set both to enable TLS",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "tls.cert",
                "tls.key is set but tls.cert is not; set both to enable TLS",
            )),
            _ => Ok(()),
        }
    }
}

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.default_user.is_empty() {
            return Err(ConfigError::invalid(
                "auth.default_user",
                "must not be empty",
            ));
        }
        if let Some(vhost) = self.vhosts.iter().find(|v| v.is_empty() || v.len() > 255) {
            return Err(ConfigError::invalid(
                "auth.vhosts",
                format!("vhost name {vhost:?} must be 1 to 255 bytes long"),
            ));
        }
        let mut names = vec![self.default_user.as_str()];
        for user in &self.users {
            if user.name.is_empty() {
                return Err(ConfigError::invalid(
                    "auth.users",
                    "a user has an empty name",
                ));
            }
            if names.contains(&user.name.as_str()) {
                return Err(ConfigError::invalid(
                    "auth.users",
                    format!(
                        "user {:?} is defined twice (or is the default user)",
                        user.name
                    ),
                ));
            }
            names.push(&user.name);
        }
        for permission in &self.permissions {
            self.validate_permission(permission, &names)?;
        }
        Ok(())
    }

    fn validate_permission(
        &self,
        permission: &PermissionConfig,
        users: &[&str],
    ) -> Result<(), ConfigError> {
        const OPTION: &str = "auth.permissions";
        if !users.contains(&permission.user.as_str()) {
            return Err(ConfigError::invalid(
                OPTION,
                format!(
                    "user {:?} is neither auth.default_user nor in auth.users",
                    permission.user
                ),
            ));
        }
        if permission.vhost != "/" && !self.vhosts.contains(&permission.vhost) {
            return Err(ConfigError::invalid(
                OPTION,
                format!(
                    "vhost {:?} of user {:?} is neither \"/\" nor in auth.vhosts",
                    permission.vhost, permission.user
                ),
            ));
        }
        for (kind, pattern) in [
            ("configure", &permission.configure),
            ("write", &permission.write),
            ("read", &permission.read),
        ] {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(ConfigError::invalid(
                    OPTION,
                    format!(
                        "{kind} regex {pattern:?} of user {:?} is invalid: {e}",
                        permission.user
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl StoreConfig {
    /// Smallest segment accepted (one page; tests use small segments to exercise rolling and compaction).
    const MIN_SEGMENT_SIZE: u64 = 4 * KIB;
    /// Longest batch window accepted (ARCHITECTURE.md §5: "a few hundred microseconds of batching at most";
    /// anything beyond this is certainly a unit mistake).
    const MAX_BATCH_WINDOW_US: u64 = 100_000;

    fn validate(&self) -> Result<(), ConfigError> {
        if self.segment_size < Self::MIN_SEGMENT_SIZE {
            return Err(ConfigError::invalid(
                "store.segment_size",
                format!(
                    "{} bytes is below the minimum of {} (4 KiB)",
                    self.segment_size,
                    Self::MIN_SEGMENT_SIZE
                ),
            ));
        }
        if self.batch_window_us > Self::MAX_BATCH_WINDOW_US {
            return Err(ConfigError::invalid(
                "store.batch_window_us",
                format!(
                    "{} is above the maximum of {} (100 ms)",
                    self.batch_window_us,
                    Self::MAX_BATCH_WINDOW_US
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Journal => "journal",
            StoreKind::Memory => "memory",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["ferrymq"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("valid command line")
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ferrymq.toml");
        std::fs::write(&path, text).expect("write config");
        (dir, path)
    }

    fn invalid_option(result: Result<Config, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { option, .. }) => option,
            other => panic!("expected an invalid-option error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_need_no_file_and_use_the_conventional_ports() {
        let config = Config::load(&Cli::default()).expect("defaults are valid");
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.store.dir, PathBuf::from("data").join("store"));
        assert_eq!(config.amqp.port, 5672);
        assert_eq!(config.amqp.tls_port, 5671);
        assert_eq!(config.http.port, 15692);
        assert_eq!(config.amqp.frame_max, 131_072);
        assert_eq!(config.amqp.max_message_size, 16 * MIB);
        assert_eq!(config.store.kind, StoreKind::Journal);
        assert_eq!(config.store.sync, SyncPolicy::Always);
        assert_eq!(config.tls.files(), None);
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(
            Config::from_toml("").expect("empty is valid"),
            Config::default()
        );
    }

    #[test]
    fn shipped_config_file_documents_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ferrymq.toml");
        let shipped = Config::from_file(&path).expect("config/ferrymq.toml parses");
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn shipped_tls_example_parses_and_enables_tls() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tls.toml");
        let config = Config::from_file(&path)
            .expect("config/tls.toml parses")
            .resolve()
            .expect("valid");
        assert!(config.tls.files().is_some());
    }

    #[test]
    fn file_values_override_defaults_and_derive_the_store_dir() {
        let (_dir, path) = write_config(
            "data_dir = \"/var/lib/ferrymq\"\n[amqp]\nport = 5673\nproduct = \"RabbitMQ\"\n[store]\nkind = \"memory\"\nsync = \"batch-window\"\n",
        );
        let config =
            Config::load(&cli(&["--config", path.to_str().expect("utf-8 path")])).expect("valid");
        assert_eq!(config.amqp.port, 5673);
        assert_eq!(config.amqp.product, "RabbitMQ");
        assert_eq!(
            config.amqp.frame_max, 131_072,
            "unset options keep their defaults"
        );
        assert_eq!(config.store.kind, StoreKind::Memory);
        assert_eq!(config.store.sync, SyncPolicy::BatchWindow);
        assert_eq!(config.store.dir, PathBuf::from("/var/lib/ferrymq/store"));
    }

    #[test]
    fn flags_override_the_file() {
        let (_dir, path) =
            write_config("[amqp]\nport = 5673\ntls_port = 5674\n[http]\nport = 8080\n");
        let config = Config::load(&cli(&[
            "--config",
            path.to_str().expect("utf-8 path"),
            "--amqp-port",
            "0",
            "--data-dir",
            "/tmp/x",
            "--bind",
            "127.0.0.1",
            "--store",
            "memory",
            "--memory-high-water",
            "1000000",
        ]))
        .expect("valid");
        assert_eq!(config.amqp.port, 0);
        assert_eq!(
            config.amqp.tls_port, 5674,
            "the file still sets what no flag overrides"
        );
        assert_eq!(config.http.port, 8080);
        assert_eq!(config.amqp.bind, "127.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            config.http.bind, config.amqp.bind,
            "--bind applies to every listener"
        );
        assert_eq!(config.store.kind, StoreKind::Memory);
        assert_eq!(config.store.dir, PathBuf::from("/tmp/x/store"));
        assert_eq!(config.memory.high_water, 1_000_000);
    }

    #[test]
    fn tls_needs_both_cert_and_key() {
        assert_eq!(
            invalid_option(Config::load(&cli(&["--tls-cert", "c.pem"]))),
            "tls.key"
        );
        assert_eq!(
            invalid_option(Config::load(&cli(&["--tls-key", "k.pem"]))),
            "tls.cert"
        );
        let config =
            Config::load(&cli(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])).expect("valid");
        assert_eq!(
            config.tls.files(),
            Some((Path::new("c.pem"), Path::new("k.pem")))
        );
    }

    #[test]
    fn frame_max_below_the_protocol_minimum_is_rejected() {
        let mut config = Config::default();
        config.amqp.frame_max = 4095;
        let err = config.clone().resolve().expect_err("too small");
        assert_eq!(
            err.to_string(),
            "invalid configuration: amqp.frame_max: 4095 is below 4096, the AMQP 0-9-1 minimum frame size"
        );
        config.amqp.frame_max = 4096;
        config.resolve().expect("the minimum itself is fine");
    }

    #[test]
    fn message_size_is_limited_to_512_mib() {
        let mut config = Config::default();
        config.amqp.max_message_size = MAX_MESSAGE_SIZE_LIMIT + 1;
        assert_eq!(
            invalid_option(config.clone().resolve()),
            "amqp.max_message_size"
        );
        config.amqp.max_message_size = 0;
        assert_eq!(
            invalid_option(config.clone().resolve()),
            "amqp.max_message_size"
        );
        config.amqp.max_message_size = MAX_MESSAGE_SIZE_LIMIT;
        config.resolve().expect("the limit itself is fine");
    }

    #[test]
    fn zero_limits_are_rejected_with_the_option_name() {
        type Breakage = fn(&mut Config);
        let cases: [(&str, Breakage); 5] = [
            ("amqp.channel_max", |c| c.amqp.channel_max = 0),
            ("amqp.max_connections", |c| c.amqp.max_connections = 0),
            ("amqp.handshake_timeout_secs", |c| {
                c.amqp.handshake_timeout_secs = 0
            }),
            ("store.segment_size", |c| c.store.segment_size = 1024),
            ("store.batch_window_us", |c| {
                c.store.batch_window_us = 1_000_000
            }),
        ];
        for (option, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            assert_eq!(invalid_option(config.resolve()), option);
        }
    }

    #[test]
    fn two_listeners_on_one_fixed_port_are_rejected() {
        let err =
            Config::load(&cli(&["--amqp-port", "8000", "--http-port", "8000"])).expect_err("clash");
        assert_eq!(
            err.to_string(),
            "invalid configuration: http.port: port 8000 is already used by amqp.port"
        );
        Config::load(&cli(&["--amqp-port", "0", "--http-port", "0"]))
            .expect("port 0 never clashes");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_offender() {
        let (_dir, path) = write_config("[amqp]\nframe_maks = 8192\n");
        let err = Config::load(&cli(&["--config", path.to_str().expect("utf-8 path")]))
            .expect_err("typo");
        let message = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{message}");
        assert!(message.contains("frame_maks"), "{message}");

        let err = Config::from_toml("[store]\nkind = \"tape\"\n").expect_err("unknown kind");
        assert!(err.contains("tape") && err.contains("journal"), "{err}");

        let err = Config::from_toml("[amqp]\nport = 70000\n").expect_err("out of u16 range");
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn missing_config_file_is_a_read_error_naming_the_path() {
        let err =
            Config::load(&cli(&["--config", "/nonexistent/ferrymq.toml"])).expect_err("missing");
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/ferrymq.toml"),
            "{err}"
        );
    }

    #[test]
    fn users_vhosts_and_permissions_come_from_the_auth_section() {
        let config = Config::from_toml(
            "[auth]\nvhosts = [\"prod\"]\n\
             [[auth.users]]\nname = \"app\"\npassword = \"s3cret\"\n\
             [[auth.permissions]]\nuser = \"app\"\nvhost = \"prod\"\nconfigure = \"^app\\\\.\"\n",
        )
        .expect("parses")
        .resolve()
        .expect("valid");
        assert_eq!(config.auth.users[0].tags, Vec::<String>::new());
        let permission = &config.auth.permissions[0];
        assert_eq!(
            (permission.configure.as_str(), permission.write.as_str()),
            ("^app\\.", ".*")
        );
    }

    #[test]
    fn permissions_must_name_known_users_and_vhosts_and_valid_regexes() {
        let base =
            "[auth]\n[[auth.users]]\nname = \"app\"\npassword = \"p\"\n[[auth.permissions]]\n";
        for (permission, expected) in [
            ("user = \"nobody\"", "user \"nobody\" is neither"),
            ("user = \"app\"\nvhost = \"nowhere\"", "vhost \"nowhere\""),
            ("user = \"app\"\nread = \"(\"", "read regex \"(\""),
        ] {
            let err = Config::from_toml(&format!("{base}{permission}\n"))
                .expect("parses")
                .resolve()
                .expect_err("invalid permission");
            assert!(err.to_string().contains(expected), "{err}");
        }
        let twice = "[auth]\n[[auth.users]]\nname = \"guest\"\npassword = \"p\"\n";
        let err = Config::from_toml(twice)
            .expect("parses")
            .resolve()
            .expect_err("duplicate");
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn printed_config_reads_back_identically() {
        let mut config = Config::load(&cli(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--amqp-port",
            "1",
        ]))
        .expect("valid");
        config.auth.vhosts.push("prod".into());
        config.auth.users.push(UserConfig {
            name: "app".into(),
            password: "p".into(),
            tags: vec!["x".into()],
        });
        config.auth.permissions.push(PermissionConfig {
            user: "app".into(),
            vhost: "prod".into(),
            configure: "^$".into(),
            write: ".*".into(),
            read: ".*".into(),
        });
        let reread = Config::from_toml(&config.to_toml())
            .expect("printed config parses")
            .resolve()
            .expect("valid");
        assert_eq!(reread, config);
    }
}
