//! Test harness shared by the integration tests: start FerryMQ on 127.0.0.1 with every port 0 and a fresh
//! temporary data dir, and hand tests the addresses it picked.
//!
//! - [`TestBroker`] runs the broker in-process through `server::start` (fast; use it by default).
//! - [`BrokerProcess`] runs the real `ferrymq` binary and learns its ports from the `listening` log lines;
//!   use it for what only a process can show: exit codes, signals, `kill -9` and restart on the same data dir.
//! - [`TestCerts`] generates a throwaway CA and server certificate (rcgen) for TLS tests.
//! - [`http_get`] is a minimal HTTP/1.1 client for the health endpoints.
//! - [`mqtt`] wraps rumqttc's v4 and v5 clients for the MQTT tests.
//!
//! Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod mqtt;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ferrymq::config::{
    AmqpConfig, AwsConfig, Config, HttpConfig, MqttConfig, StoreConfig, StoreKind, WebSocketConfig,
};
use ferrymq::core::Broker;
use ferrymq::server::{self, RunningServer};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a broker process may take to log that it started.
const PROCESS_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a broker process may take to exit after SIGTERM (drain timeout plus margin).
const PROCESS_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Log test-side tracing output (captured per test) when a test starts a broker; `RUST_LOG` filters it.
fn init_test_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The configuration every test broker starts from: loopback only, every port 0, memory store, data in `dir`.
pub fn test_config(dir: &Path) -> Config {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    Config {
        data_dir: dir.to_owned(),
        amqp: AmqpConfig {
            bind: loopback,
            port: 0,
            tls_port: 0,
            ..AmqpConfig::default()
        },
        mqtt: MqttConfig {
            bind: loopback,
            port: 0,
            tls_port: 0,
            ..MqttConfig::default()
        },
        websocket: WebSocketConfig {
            bind: loopback,
            mqtt_port: 0,
            mqtt_tls_port: 0,
            ..WebSocketConfig::default()
        },
        http: HttpConfig {
            bind: loopback,
            port: 0,
        },
        aws: AwsConfig {
            bind: loopback,
            port: 0,
            ..AwsConfig::default()
        },
        store: StoreConfig {
            kind: StoreKind::Memory,
            ..StoreConfig::default()
        },
        ..Config::default()
    }
}

/// FerryMQ running in this process on 127.0.0.1 with ephemeral ports and a temporary data dir (removed when
/// the `TestBroker` is dropped). Dropping without [`TestBroker::stop`] is fine: listeners and connections
/// are cancelled.
pub struct TestBroker {
    server: RunningServer,
    config: Config,
    dir: Arc<TempDir>,
}

impl TestBroker {
    /// Start with [`test_config`] (memory store).
    pub async fn start() -> TestBroker {
        Self::with(|_| {}).await
    }

    /// Start with [`test_config`] changed by `customise`, e.g. `|c| c.store.kind = StoreKind::Journal`.
    pub async fn with(customise: impl FnOnce(&mut Config)) -> TestBroker {
        let dir = Arc::new(tempfile::tempdir().expect("create temp data dir"));
        let mut config = test_config(dir.path());
        customise(&mut config);
        Self::start_config(config, dir).await
    }

    async fn start_config(config: Config, dir: Arc<TempDir>) -> TestBroker {
        init_test_tracing();
        let server = server::start(config.clone())
            .await
            .expect("test broker starts");
        TestBroker {
            server,
            config,
            dir,
        }
    }

    /// Graceful shutdown, then start again on the same data dir and configuration. The ports are new unless
    /// the configuration fixed them.
    pub async fn restart(self) -> TestBroker {
        self.restart_after(Duration::ZERO).await
    }

    /// [`TestBroker::restart`], with the broker down for `downtime` in between.
    pub async fn restart_after(self, downtime: Duration) -> TestBroker {
        let TestBroker {
            server,
            config,
            dir,
        } = self;
        server.shutdown().await;
        tokio::time::sleep(downtime).await;
        Self::start_config(config, dir).await
    }

    /// Graceful shutdown (connections get 320 CONNECTION_FORCED, the store is flushed).
    pub async fn stop(self) {
        self.server.shutdown().await;
    }

    /// Start with the durable journal store instead of the memory store.
    pub async fn journal() -> TestBroker {
        Self::with(|c| c.store.kind = StoreKind::Journal).await
    }

    /// A lapin connection as guest to vhost `/` and one channel on it.
    pub async fn channel(&self) -> (lapin::Connection, lapin::Channel) {
        let conn =
            lapin::Connection::connect(&self.amqp_url(), lapin::ConnectionProperties::default())
                .await
                .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    }

    /// The plain AMQP listener.
    pub fn amqp_addr(&self) -> SocketAddr {
        self.listener("amqp")
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`
    pub fn amqp_url(&self) -> String {
        amqp_url(self.amqp_addr())
    }

    /// The AMQPS listener (only when TLS was configured).
    pub fn amqps_addr(&self) -> SocketAddr {
        self.listener("amqps")
    }

    /// The HTTP listener (health endpoints).
    pub fn http_addr(&self) -> SocketAddr {
        self.listener("http")
    }

    /// The plain MQTT listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.listener("mqtt")
    }

    /// Where the listener `name` is bound (`amqps` only when TLS was configured).
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.server
            .addr(name)
            .unwrap_or_else(|| panic!("the test broker runs no {name} listener"))
    }

    /// The broker's data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration the broker was started with (before `resolve`).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The broker core, for assertions that no client can make.
    pub fn broker(&self) -> &Broker {
        self.server.broker()
    }

    /// The running server.
    pub fn server(&self) -> &RunningServer {
        &self.server
    }
}

/// `amqp://guest:guest@HOST:PORT/%2f` for a listener address.
pub fn amqp_url(addr: SocketAddr) -> String {
    format!("amqp://guest:guest@{addr}/%2f")
}

/// The addresses a broker process logged.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessAddrs {
    pub amqp: Option<SocketAddr>,
    pub amqps: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub mqtt: Option<SocketAddr>,
}

/// The real `ferrymq` binary, started with `--data-dir X --bind 127.0.0.1` and every port 0 (plus any extra
/// arguments), `RUST_LOG=info` and no other `FERRYMQ_*` variables. Killed when dropped.
pub struct BrokerProcess {
    child: Option<Child>,
    dir: TempDir,
    /// A command the binary runs under, e.g. `prlimit --nofile=1024:1024` (empty: run it directly).
    wrapper: Vec<String>,
    extra_args: Vec<String>,
    addrs: ProcessAddrs,
    logs: Arc<Mutex<String>>,
}

impl BrokerProcess {
    /// Start the binary with the default arguments and wait until it logs that it started.
    pub fn start() -> BrokerProcess {
        Self::start_with(&[])
    }

    /// Start with extra command-line arguments (they come last, so they override the defaults).
    pub fn start_with(extra_args: &[&str]) -> BrokerProcess {
        Self::start_under(&[], extra_args)
    }

    /// Start the binary under `wrapper` (e.g. `["prlimit", "--nofile=1024:1024"]`) with extra arguments.
    pub fn start_under(wrapper: &[&str], extra_args: &[&str]) -> BrokerProcess {
        let dir = tempfile::tempdir().expect("create temp data dir");
        let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect();
        let mut process = BrokerProcess {
            child: None,
            dir,
            wrapper: owned(wrapper),
            extra_args: owned(extra_args),
            addrs: ProcessAddrs::default(),
            logs: Arc::new(Mutex::new(String::new())),
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let mut command = ferrymq_command_under(&self.wrapper);
        command
            .arg("--data-dir")
            .arg(self.dir.path())
            .args([
                "--bind",
                "127.0.0.1",
                "--amqp-port",
                "0",
                "--amqps-port",
                "0",
                "--http-port",
                "0",
                "--mqtt-port",
                "0",
                "--mqtts-port",
                "0",
                "--aws-port",
                "0",
                "--mqtt-ws-port",
                "0",
                "--mqtt-wss-port",
                "0",
            ])
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn ferrymq");
        let lines = follow_output(&mut child, self.logs.clone());
        self.child = Some(child);
        self.addrs = self.wait_until_started(lines);
    }

    /// Read log lines until "ferrymq started", collecting the `listening` addresses.
    fn wait_until_started(&mut self, lines: mpsc::Receiver<String>) -> ProcessAddrs {
        let deadline = Instant::now() + PROCESS_START_TIMEOUT;
        let mut addrs = ProcessAddrs::default();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some((listener, addr)) = parse_listening(&line) {
                        match listener.as_str() {
                            "amqp" => addrs.amqp = Some(addr),
                            "amqps" => addrs.amqps = Some(addr),
                            "http" => addrs.http = Some(addr),
                            "mqtt" => addrs.mqtt = Some(addr),
                            _ => {}
                        }
                    }
                    if line.contains("ferrymq started") {
                        return addrs;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "ferrymq did not start within {PROCESS_START_TIMEOUT:?}; logs:\n{}",
                        self.logs()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self
                        .child
                        .as_mut()
                        .and_then(|c| wait_timeout(c, Duration::from_secs(5)));
                    panic!(
                        "ferrymq exited before it started ({status:?}); logs:\n{}",
                        self.logs()
                    )
                }
            }
        }
    }

    /// The plain MQTT listener.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.addrs
            .mqtt
            .expect("the broker logged its mqtt listener")
    }

    /// The plain AMQP listener.
    pub fn amqp_addr(&self) -> SocketAddr {
        self.addrs
            .amqp
            .expect("the broker logged its amqp listener")
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`
    pub fn amqp_url(&self) -> String {
        amqp_url(self.amqp_addr())
    }

    /// The AMQPS listener (only when started with `--tls-cert` and `--tls-key`).
    pub fn amqps_addr(&self) -> SocketAddr {
        self.addrs
            .amqps
            .expect("the broker logged an amqps listener (TLS configured)")
    }

    /// The HTTP listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.addrs
            .http
            .expect("the broker logged its http listener")
    }

    /// Every address the broker logged.
    pub fn addrs(&self) -> ProcessAddrs {
        self.addrs
    }

    /// The data dir, kept across restarts and removed when this value is dropped.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote to stdout and stderr so far (all runs).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Crash: SIGKILL, no chance to flush anything. Waits until the process is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL ferrymq");
            child.wait().expect("reap ferrymq");
        }
    }

    /// SIGTERM and wait for the exit status (the graceful drain).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("ferrymq is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
        match wait_timeout(&mut child, PROCESS_EXIT_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                panic!(
                    "ferrymq did not exit within {PROCESS_EXIT_TIMEOUT:?} of SIGTERM; logs:\n{}",
                    self.logs()
                )
            }
        }
    }

    /// Start the binary again on the same data dir with the same arguments (SIGKILLs it first if it is still
    /// running). Ports are picked afresh: read the addresses again afterwards.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// [`BrokerProcess::restart`], this time under `wrapper` (e.g. `prlimit --nofile=64:64`).
    pub fn restart_under(&mut self, wrapper: &[&str]) {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self.restart();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `Command` for the `ferrymq` binary with `RUST_LOG=info` and every `FERRYMQ_*` variable of the test's
/// own environment removed, so only what the test sets applies.
pub fn ferrymq_command() -> Command {
    ferrymq_command_under(&[])
}

/// [`ferrymq_command`] run under `wrapper` (a program and its arguments, the binary's path appended).
pub fn ferrymq_command_under(wrapper: &[String]) -> Command {
    let binary = env!("CARGO_BIN_EXE_ferrymq");
    let mut command = match wrapper.split_first() {
        None => Command::new(binary),
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
    };
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FERRYMQ_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

/// Run a command that is expected to exit by itself and collect its output; panics if it runs longer than
/// `timeout`.
pub fn output_within(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let Some(status) = wait_timeout(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("process still running after {timeout:?}");
    };
    let collect = |h: std::thread::JoinHandle<Vec<u8>>| h.join().expect("reader thread");
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

fn read_in_background(
    pipe: Option<impl std::io::Read + Send + 'static>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Poll for the child's exit for up to `timeout`.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copy the child's stdout and stderr, line by line, into `logs` and onto the returned channel.
fn follow_output(child: &mut Child, logs: Arc<Mutex<String>>) -> mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = mpsc::channel();
    let follow = |pipe: Box<dyn std::io::Read + Send>| {
        let tx = tx.clone();
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                {
                    let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                    logs.push_str(&line);
                    logs.push('\n');
                }
                let _ = tx.send(line);
            }
        });
    };
    if let Some(stdout) = child.stdout.take() {
        follow(Box::new(stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        follow(Box::new(stderr));
    }
    rx
}

/// Parse a `listening` log line, text (`listener="amqp" addr=127.0.0.1:5672`) or JSON
/// (`"listener":"amqp","addr":"127.0.0.1:5672"`), into the listener name and address.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r#"listener"?[=:]"?([a-z0-9_-]+)"?[\s,].*?addr"?[=:]"?([0-9a-fA-F.:\[\]]+)"#,
        )
        .expect("valid regex")
    });
    if !line.contains("listening") {
        return None;
    }
    let captures = pattern.captures(line)?;
    Some((captures[1].to_owned(), captures[2].parse().ok()?))
}

/// `GET path` over a fresh HTTP/1.1 connection; returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("HTTP response in time")
        .expect("read response");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("HTTP response has a header");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, body.to_owned())
}

/// A throwaway CA and a server certificate for `localhost` / `127.0.0.1` signed by it, written as PEM files
/// into a temporary directory.
pub struct TestCerts {
    dir: TempDir,
    /// The CA certificate clients should trust.
    pub ca: rustls_pki_types::CertificateDer<'static>,
    /// The CA, to sign client certificates with.
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCerts {
    /// Generate a fresh CA and server certificate.
    pub fn generate() -> TestCerts {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "FerryMQ test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("server certificate");

        let dir = tempfile::tempdir().expect("temp dir for certificates");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        std::fs::write(
            dir.path().join("server.pem"),
            leaf_cert.pem() + &ca_cert.pem(),
        )
        .expect("write server.pem");
        std::fs::write(dir.path().join("server.key"), leaf_key.serialize_pem())
            .expect("write server.key");
        TestCerts {
            dir,
            ca: ca_cert.der().clone(),
            issuer,
        }
    }

    /// A client certificate with subject common name `name`, signed by this CA, and its key.
    pub fn client_identity(
        &self,
        name: &str,
    ) -> (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key DER");
        (vec![cert.der().clone()], key)
    }

    /// A rustls client configuration that trusts only this CA and presents `identity` (see
    /// [`TestCerts::client_identity`]).
    pub fn client_config_with(
        &self,
        identity: (
            Vec<rustls_pki_types::CertificateDer<'static>>,
            rustls_pki_types::PrivateKeyDer<'static>,
        ),
    ) -> Arc<rustls::ClientConfig> {
        let config = self
            .client_builder()
            .with_client_auth_cert(identity.0, identity.1)
            .expect("client certificate");
        Arc::new(config)
    }

    /// A rustls client configuration builder that trusts only this CA.
    fn client_builder(
        &self,
    ) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("add test CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
    }

    /// The server certificate chain (PEM).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server private key (PEM).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The CA certificate (PEM), for clients that take a file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Point `config`'s TLS settings at these files (AMQPS then starts on `amqp.tls_port`).
    pub fn configure(&self, config: &mut Config) {
        config.tls.cert = Some(self.cert_path());
        config.tls.key = Some(self.key_path());
    }

    /// A rustls client configuration that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::new(self.client_builder().with_no_client_auth())
    }
}

/// The number of ready messages in `queue` (a passive queue.declare), which must exist.
pub async fn message_count(ch: &lapin::Channel, queue: &str) -> u32 {
    let opts = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), opts, lapin::types::FieldTable::default())
        .await
        .expect("the queue exists")
        .message_count()
}
