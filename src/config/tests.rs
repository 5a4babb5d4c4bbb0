//! Tests of loading, overriding and validating the configuration.

use super::*;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

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
    let (_dir, path) = write_config("[amqp]\nport = 5673\ntls_port = 5674\n[http]\nport = 8080\n");
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
        "--memory-max-per-connection",
        "20000000",
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
    assert_eq!(config.memory.max_per_connection, 20_000_000);
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
    let config = Config::load(&cli(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])).expect("valid");
    assert_eq!(
        config.tls.files(),
        Some((Path::new("c.pem"), Path::new("k.pem")))
    );
}

#[test]
fn a_client_ca_needs_tls() {
    let mut config = Config::default();
    config.tls.client_ca = Some("ca.pem".into());
    let Err(ConfigError::Invalid { option, .. }) = config.validate() else {
        panic!("a client CA without TLS is accepted")
    };
    assert_eq!(option, "tls.client_ca");
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
    config.memory.max_per_connection = 0;
    config.resolve().expect("the limit itself is fine");
}

#[test]
fn a_connection_may_hold_at_least_one_message_of_the_largest_size() {
    let mut config = Config::default();
    config.memory.max_per_connection = config.amqp.max_message_size - 1;
    assert_eq!(
        invalid_option(config.clone().resolve()),
        "memory.max_per_connection"
    );
    config.memory.max_per_connection = config.amqp.max_message_size;
    config.clone().resolve().expect("one message fits");
    config.memory.max_per_connection = 0;
    config.resolve().expect("0 means no cap");
}

#[test]
fn zero_limits_are_rejected_with_the_option_name() {
    type Breakage = fn(&mut Config);
    let cases: [(&str, Breakage); 6] = [
        ("amqp.channel_max", |c| c.amqp.channel_max = 0),
        ("amqp.max_connections", |c| c.amqp.max_connections = 0),
        ("amqp.max_handshakes", |c| c.amqp.max_handshakes = 0),
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
    Config::load(&cli(&["--amqp-port", "0", "--http-port", "0"])).expect("port 0 never clashes");
}

#[test]
fn unknown_keys_and_wrong_types_name_the_offender() {
    let (_dir, path) = write_config("[amqp]\nframe_maks = 8192\n");
    let err =
        Config::load(&cli(&["--config", path.to_str().expect("utf-8 path")])).expect_err("typo");
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
    let err = Config::load(&cli(&["--config", "/nonexistent/ferrymq.toml"])).expect_err("missing");
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
    let base = "[auth]\n[[auth.users]]\nname = \"app\"\npassword = \"p\"\n[[auth.permissions]]\n";
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

#[test]
fn mqtt_defaults_use_the_conventional_ports_and_bad_values_name_the_option() {
    let config = Config::load(&Cli::default()).expect("defaults are valid");
    assert_eq!((config.mqtt.port, config.mqtt.tls_port), (1883, 8883));
    assert!(config.mqtt.allow_anonymous);
    let err = Config::load(&cli(&["--mqtt-port", "5672"])).expect_err("clash with amqp");
    assert_eq!(
        err.to_string(),
        "invalid configuration: mqtt.port: port 5672 is already used by amqp.port"
    );
    let (_dir, path) = write_config("[mqtt]\nmax_packet_size = 10\n");
    let path = path.to_str().expect("utf-8 path");
    assert_eq!(
        invalid_option(Config::load(&cli(&["--config", path]))),
        "mqtt.max_packet_size"
    );
    let (_dir, path) = write_config("[mqtt]\nmax_inflight = 0\n");
    let path = path.to_str().expect("utf-8 path");
    assert_eq!(
        invalid_option(Config::load(&cli(&["--config", path]))),
        "mqtt.max_inflight"
    );
}

#[test]
fn a_topic_permission_needs_a_permission_in_its_vhost_and_valid_regexes() {
    let (_dir, path) =
        write_config("[[auth.topic_permissions]]\nuser = \"nobody\"\nexchange = \"amq.topic\"\n");
    let path = path.to_str().expect("utf-8 path");
    assert_eq!(
        invalid_option(Config::load(&cli(&["--config", path]))),
        "auth.topic_permissions"
    );
    let (_dir, path) = write_config(
        "[[auth.topic_permissions]]\nuser = \"guest\"\nexchange = \"amq.topic\"\nread = \"(\"\n",
    );
    let path = path.to_str().expect("utf-8 path");
    assert_eq!(
        invalid_option(Config::load(&cli(&["--config", path]))),
        "auth.topic_permissions"
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mqtt-interop.toml");
    Config::load(&cli(&["--config", shipped.to_str().expect("utf-8 path")]))
        .expect("the interop config is valid");
}
