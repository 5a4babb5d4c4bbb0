//! Log injection, against the real binary's stderr: a client-supplied string (here a PLAIN user name with a
//! newline and a forged log line in it) must stay inside the one line that logs it, escaped, so the text log
//! never shows a line the broker did not write.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::BrokerProcess;
use ferrymq_amqp_codec::{self as codec, Frame, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO ferrymq::amqp::connection: AMQP connection opened user=admin";

/// Send the protocol header and a start-ok with PLAIN `response`, then wait for the connection to end.
async fn log_in(addr: std::net::SocketAddr, response: Bytes) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(&codec::PROTOCOL_HEADER)
        .await
        .expect("header");
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = codec::decode_frame(&mut buf, 131_072).expect("valid frames") {
            assert!(matches!(
                frame,
                Frame::Method(0, Method::ConnectionStart(_))
            ));
            break;
        }
        assert_ne!(
            stream.read_buf(&mut buf).await.expect("read"),
            0,
            "closed early"
        );
    }
    let mut out = BytesMut::new();
    let start_ok = codec::ConnectionStartOk {
        client_properties: codec::FieldTable::default(),
        mechanism: "PLAIN".into(),
        response,
        locale: "en_US".into(),
    };
    codec::encode_method(0, &Method::ConnectionStartOk(start_ok), &mut out);
    stream.write_all(&out).await.expect("start-ok");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
}

#[tokio::test]
async fn a_newline_in_a_user_name_cannot_forge_a_log_line() {
    let broker = BrokerProcess::start();
    let user = format!("mallory\n{FORGED}");
    log_in(
        broker.amqp_addr(),
        Bytes::from(format!("\0{user}\0wrong").into_bytes()),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = broker.logs();
        if logs.contains("AMQP login refused") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let refused = logs
        .lines()
        .find(|l| l.contains("AMQP login refused"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{logs}"));
    assert!(
        refused.contains("mallory\\n2026-01-01") || refused.contains("mallory\\u{a}2026-01-01"),
        "the newline is escaped inside the one line: {refused}"
    );
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-01-01")),
        "no forged line:\n{logs}"
    );
}
