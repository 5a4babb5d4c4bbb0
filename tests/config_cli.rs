//! The `ferrymq` binary and the server skeleton as an operator meets them: start with no config file and
//! port 0, learn the ports from the logs, probe health, stop with SIGTERM (exit 0), get clear errors for bad
//! configuration, layer file < environment < flags, and serve AMQPS.

mod common;

use std::time::Duration;

use common::{BrokerProcess, TestBroker, TestCerts, ferrymq_command, http_get, output_within};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EXIT_WAIT: Duration = Duration::from_secs(30);
const IO_WAIT: Duration = Duration::from_secs(10);
/// AMQP 0-9-1 §4.2.2 protocol header.
const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("ferrymq.toml");
    std::fs::write(&path, text).expect("write config file");
    path
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn binary_with_no_config_and_port_zero_logs_its_listeners_and_is_healthy() {
    let broker = BrokerProcess::start();
    let logs = broker.logs();
    assert!(logs.contains("listener=\"amqp\""), "{logs}");
    assert!(logs.contains("listener=\"http\""), "{logs}");
    assert!(
        !logs.contains("listener=\"amqps\""),
        "no TLS listener without a certificate: {logs}"
    );
    assert_ne!(broker.amqp_addr().port(), 0);
    assert_ne!(broker.http_addr().port(), 0);

    assert_eq!(
        http_get(broker.http_addr(), "/health/live").await,
        (200, "ok".to_owned())
    );
    assert_eq!(
        http_get(broker.http_addr(), "/health/ready").await,
        (200, "ok".to_owned())
    );
    assert_eq!(http_get(broker.http_addr(), "/nope").await.0, 404);
    TcpStream::connect(broker.amqp_addr())
        .await
        .expect("the AMQP port accepts connections");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut broker = BrokerProcess::start();
    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "logs:\n{}", broker.logs());
    let logs = broker.logs();
    assert!(
        logs.contains("SIGTERM") && logs.contains("ferrymq stopped"),
        "{logs}"
    );
}

#[tokio::test]
async fn sigterm_with_an_open_amqp_connection_still_exits_zero() {
    let mut broker = BrokerProcess::start();
    let mut client = TcpStream::connect(broker.amqp_addr())
        .await
        .expect("connect");
    client
        .write_all(AMQP_HEADER)
        .await
        .expect("send protocol header");
    let mut start = [0u8; 7];
    tokio::time::timeout(IO_WAIT, client.read_exact(&mut start))
        .await
        .expect("in time")
        .expect("connection.start");

    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "logs:\n{}", broker.logs());
    let mut rest = Vec::new();
    // Ends with EOF or a reset, either way promptly.
    let _ = tokio::time::timeout(IO_WAIT, client.read_to_end(&mut rest))
        .await
        .expect("connection ends with the process");
}

#[test]
fn invalid_config_value_exits_non_zero_naming_the_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(&dir, "[amqp]\nframe_max = 1024\n");
    let mut command = ferrymq_command();
    command
        .arg("--config")
        .arg(&path)
        .args(["--data-dir"])
        .arg(dir.path().join("data"));
    let output = output_within(command, EXIT_WAIT);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("amqp.frame_max") && stderr.contains("4096"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created for an invalid configuration"
    );
}

#[test]
fn unknown_config_key_exits_non_zero_naming_the_key_and_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(&dir, "[amqp]\nchanel_max = 10\n");
    let mut command = ferrymq_command();
    command.arg("--config").arg(&path);
    let output = output_within(command, EXIT_WAIT);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("chanel_max") && stderr.contains(&*path.to_string_lossy()),
        "{stderr}"
    );
}

#[test]
fn invalid_environment_value_exits_non_zero_naming_the_variable() {
    let mut command = ferrymq_command();
    command.env("FERRYMQ_AMQP_PORT", "not-a-port");
    let output = output_within(command, EXIT_WAIT);
    let stderr = stderr_of(&output);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("not-a-port") && stderr.contains("--amqp-port"),
        "{stderr}"
    );
}

#[test]
fn missing_tls_certificate_fails_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = ferrymq_command();
    command
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--amqp-port", "0", "--http-port", "0", "--amqps-port", "0"])
        .args([
            "--tls-cert",
            "/nonexistent/server.pem",
            "--tls-key",
            "/nonexistent/server.key",
        ]);
    let output = output_within(command, EXIT_WAIT);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/server.pem"), "{stderr}");
    assert!(
        !stderr.contains("listening"),
        "no listener opens when TLS cannot be set up: {stderr}"
    );
}

#[test]
fn port_in_use_fails_start_up_naming_the_listener() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = ferrymq_command();
    command.arg("--data-dir").arg(dir.path()).args([
        "--bind",
        "127.0.0.1",
        "--amqp-port",
        &port,
        "--http-port",
        "0",
    ]);
    let output = output_within(command, EXIT_WAIT);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot listen for amqp") && stderr.contains(&port),
        "{stderr}"
    );
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(
        &dir,
        "[amqp]\nport = 1111\ntls_port = 1112\n[http]\nport = 1113\n",
    );
    let printed = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = ferrymq_command();
        command
            .arg("--config")
            .arg(&path)
            .arg("--print-config")
            .args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = output_within(command, EXIT_WAIT);
        assert!(output.status.success(), "{}", stderr_of(&output));
        let text = String::from_utf8(output.stdout).expect("utf-8");
        ferrymq::config::Config::from_toml(&text).expect("printed config parses")
    };

    let from_file = printed(&[], &[]);
    assert_eq!(
        (
            from_file.amqp.port,
            from_file.amqp.tls_port,
            from_file.http.port
        ),
        (1111, 1112, 1113)
    );

    let from_env = printed(
        &[("FERRYMQ_AMQP_PORT", "2221"), ("FERRYMQ_HTTP_PORT", "2223")],
        &[],
    );
    assert_eq!(
        (
            from_env.amqp.port,
            from_env.amqp.tls_port,
            from_env.http.port
        ),
        (2221, 1112, 2223)
    );

    let from_flags = printed(
        &[("FERRYMQ_AMQP_PORT", "2221"), ("FERRYMQ_HTTP_PORT", "2223")],
        &["--amqp-port", "3331"],
    );
    assert_eq!(
        (
            from_flags.amqp.port,
            from_flags.amqp.tls_port,
            from_flags.http.port
        ),
        (3331, 1112, 2223)
    );

    let config_from_env = {
        let mut command = ferrymq_command();
        command
            .env("FERRYMQ_CONFIG", &path)
            .env("FERRYMQ_STORE", "memory")
            .arg("--print-config");
        let output = output_within(command, EXIT_WAIT);
        assert!(output.status.success(), "{}", stderr_of(&output));
        ferrymq::config::Config::from_toml(&String::from_utf8_lossy(&output.stdout))
            .expect("parses")
    };
    assert_eq!(
        config_from_env.amqp.port, 1111,
        "FERRYMQ_CONFIG names the file"
    );
    assert_eq!(
        config_from_env.store.kind,
        ferrymq::config::StoreKind::Memory
    );
}

#[test]
fn json_log_format_still_reports_listeners() {
    let broker = BrokerProcess::start_with(&["--log-format", "json"]);
    let logs = broker.logs();
    let listening = logs
        .lines()
        .find(|l| l.contains("\"listener\":\"amqp\""))
        .expect("a JSON listening line");
    let parsed: serde_json::Value = serde_json::from_str(listening).expect("log lines are JSON");
    assert_eq!(parsed["message"], "listening");
    assert_eq!(parsed["addr"], broker.amqp_addr().to_string());
    assert_eq!(parsed["level"], "INFO");
}

#[tokio::test]
async fn amqps_completes_the_tls_handshake_and_answers_the_protocol_header() {
    let certs = TestCerts::generate();
    let broker = TestBroker::with(|config| certs.configure(config)).await;

    let tcp = TcpStream::connect(broker.amqps_addr())
        .await
        .expect("connect to AMQPS");
    let connector = tokio_rustls::TlsConnector::from(certs.client_config());
    let server_name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let mut tls = tokio::time::timeout(IO_WAIT, connector.connect(server_name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake with the test CA succeeds");

    tls.write_all(AMQP_HEADER)
        .await
        .expect("send protocol header");
    let mut frame_start = [0u8; 11];
    tokio::time::timeout(IO_WAIT, tls.read_exact(&mut frame_start))
        .await
        .expect("reply in time")
        .expect("read the server's first frame");
    assert_eq!(frame_start[0], 1, "a method frame");
    assert_eq!(&frame_start[1..3], &[0, 0], "on channel 0");
    assert_eq!(
        &frame_start[7..11],
        &[0, 10, 0, 10],
        "connection.start (class 10, method 10)"
    );

    assert_eq!(http_get(broker.http_addr(), "/health/live").await.0, 200);
    broker.stop().await;
}

#[tokio::test]
async fn amqps_rejects_a_client_that_does_not_trust_the_certificate() {
    let certs = TestCerts::generate();
    let other = TestCerts::generate();
    let broker = TestBroker::with(|config| certs.configure(config)).await;

    let tcp = TcpStream::connect(broker.amqps_addr())
        .await
        .expect("connect to AMQPS");
    let connector = tokio_rustls::TlsConnector::from(other.client_config());
    let server_name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let result = tokio::time::timeout(IO_WAIT, connector.connect(server_name, tcp))
        .await
        .expect("in time");
    assert!(
        result.is_err(),
        "a certificate from another CA must not verify"
    );

    // The listener keeps serving after a failed handshake.
    let tcp = TcpStream::connect(broker.amqps_addr())
        .await
        .expect("connect again");
    let connector = tokio_rustls::TlsConnector::from(certs.client_config());
    let server_name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(IO_WAIT, connector.connect(server_name, tcp))
        .await
        .expect("in time")
        .expect("a trusting client still connects");
}

#[tokio::test]
async fn in_process_broker_stops_and_restarts_on_the_same_data_dir() {
    let broker = TestBroker::start().await;
    let dir = broker.data_dir().to_owned();
    assert_eq!(
        http_get(broker.http_addr(), "/health/ready").await,
        (200, "ok".to_owned())
    );
    let broker = broker.restart().await;
    assert_eq!(broker.data_dir(), dir);
    assert_eq!(http_get(broker.http_addr(), "/health/ready").await.0, 200);
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_amqp_connections_with_320() {
    let broker = TestBroker::start().await;
    let conn =
        lapin::Connection::connect(&broker.amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("lapin connects");
    assert!(conn.status().connected());
    let mut events = Box::pin(conn.events_listener());
    tokio::time::timeout(Duration::from_secs(10), broker.stop())
        .await
        .expect("shutdown within the drain timeout");
    let err = tokio::time::timeout(IO_WAIT, async {
        loop {
            match events
                .next()
                .await
                .expect("the connection reports how it ended")
            {
                lapin::Event::Error(err) => return err,
                _ => continue,
            }
        }
    })
    .await
    .expect("lapin saw the close");
    let code = match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    };
    assert_eq!(code, Some(320), "expected 320 CONNECTION_FORCED, got {err}");
}

#[tokio::test]
async fn kill9_and_restart_reuse_the_data_dir_and_keep_confirmed_persistent_messages() {
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let mut broker = BrokerProcess::start();
    let data_dir = broker.data_dir().to_owned();
    {
        let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare("crash".into(), durable, FieldTable::default())
            .await
            .expect("declare");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                "".into(),
                "crash".into(),
                BasicPublishOptions::default(),
                b"survives",
                persistent,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(
            confirm.is_ack(),
            "the broker confirmed the persistent message"
        );
    }

    broker.kill9();
    broker.restart();
    assert_eq!(broker.data_dir(), data_dir, "restart reuses the data dir");
    assert_eq!(http_get(broker.http_addr(), "/health/ready").await.0, 200);

    let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
        .await
        .expect("reconnect");
    let ch = conn.create_channel().await.expect("channel");
    let message = ch
        .basic_get("crash".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("the confirmed persistent message survived kill -9");
    assert_eq!(message.delivery.data, b"survives");
}

#[tokio::test]
async fn lapin_publishes_and_consumes_over_amqps() {
    use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
    let certs = TestCerts::generate();
    let broker = TestBroker::with(|config| certs.configure(config)).await;
    let url = format!(
        "amqps://guest:guest@localhost:{}/%2f",
        broker.amqps_addr().port()
    );
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: Some(std::fs::read_to_string(certs.ca_path()).expect("CA pem")),
    };
    let runtime = lapin::runtime::default_runtime().expect("runtime");
    let conn = lapin::Connection::connect_with_config(
        &url,
        lapin::ConnectionProperties::default(),
        tls,
        runtime,
    )
    .await
    .expect("AMQPS connection trusted through the test CA");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "tls-q".into(),
        QueueDeclareOptions::default(),
        Default::default(),
    )
    .await
    .expect("declare");
    ch.basic_publish(
        "".into(),
        "tls-q".into(),
        BasicPublishOptions::default(),
        b"secret",
        Default::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("published");
    let got = ch
        .basic_get("tls-q".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert_eq!(got.expect("a message").delivery.data, b"secret");
    broker.stop().await;
}
