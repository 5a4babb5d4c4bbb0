//! Raw-socket MQTT tests: what real clients never send. Each case asserts the exact answer the spec's
//! normative statements ask for (a v5 DISCONNECT or CONNACK with its reason code, a v3 CONNACK return code, or
//! a close without an answer for v3 [MQTT-4.8.0-1]) and that the broker keeps serving other clients.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::TestBroker;
use ferrymq_mqtt_codec::{
    self as codec, Connect, Packet, Properties, ProtocolVersion, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Raw {
    async fn connect(broker: &TestBroker, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(broker.mqtt_addr()).await.unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Connected and logged in as `client_id` (CONNACK read and checked).
    async fn logged_in(broker: &TestBroker, version: ProtocolVersion, client_id: &str) -> Raw {
        let mut raw = Raw::connect(broker, version).await;
        raw.packet(&connect(version, client_id)).await;
        let Packet::ConnAck(ack) = raw.next().await.expect("CONNACK") else {
            panic!("not a CONNACK")
        };
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn packet(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        codec::encode_packet(packet, self.version, &mut out);
        self.send(&out).await;
    }

    /// The next packet from the broker, `None` once it closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = codec::decode_packet(&mut self.buf, self.version, 1 << 20).unwrap() {
                return Some(p);
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .unwrap()
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Asserts the broker closes the connection without sending anything more.
    async fn closed_silently(&mut self) {
        assert_eq!(self.next().await, None);
    }

    /// Asserts a v5 DISCONNECT with `reason`, then the close.
    async fn disconnected_with(&mut self, reason: ReasonCode) {
        match self.next().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason, "DISCONNECT reason"),
            other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
        }
        assert_eq!(self.next().await, None, "closed after DISCONNECT");
    }
}

fn connect(version: ProtocolVersion, client_id: &str) -> Packet {
    Packet::Connect(Box::new(Connect {
        version,
        clean_start: true,
        keep_alive: 30,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }))
}

fn subscribe(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter.into(), SubscriptionOptions::default())],
        properties: Properties::default(),
    })
}

/// Another client can still log in, subscribe and ping.
async fn still_serving(broker: &TestBroker) {
    let mut raw = Raw::logged_in(broker, V3, "still-serving").await;
    raw.packet(&Packet::PingReq).await;
    assert_eq!(raw.next().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn malformed_remaining_length_closes_v3_and_disconnects_v5_with_0x81() {
    let broker = TestBroker::start().await;
    let mut v3 = Raw::logged_in(&broker, V3, "rl3").await;
    v3.send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    v3.closed_silently().await;
    let mut v5 = Raw::logged_in(&broker, V5, "rl5").await;
    v5.send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    v5.disconnected_with(ReasonCode::MALFORMED_PACKET).await;
    still_serving(&broker).await;
}

#[tokio::test]
async fn reserved_fixed_header_flags_are_a_malformed_packet() {
    let broker = TestBroker::start().await;
    let mut v3 = Raw::logged_in(&broker, V3, "flags3").await;
    v3.send(&[0xC1, 0x00]).await; // PINGREQ with flag bit 0 set [MQTT-2.2.2-2]
    v3.closed_silently().await;
    let mut v5 = Raw::logged_in(&broker, V5, "flags5").await;
    v5.send(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00])
        .await; // SUBSCRIBE without 0010 [MQTT-3.8.1-1]
    v5.disconnected_with(ReasonCode::MALFORMED_PACKET).await;
    still_serving(&broker).await;
}

#[tokio::test]
async fn a_second_connect_is_a_protocol_error() {
    let broker = TestBroker::start().await;
    let mut v3 = Raw::logged_in(&broker, V3, "twice3").await;
    v3.packet(&connect(V3, "twice3")).await;
    v3.closed_silently().await;
    let mut v5 = Raw::logged_in(&broker, V5, "twice5").await;
    v5.packet(&connect(V5, "twice5")).await;
    v5.disconnected_with(ReasonCode::PROTOCOL_ERROR).await; // [MQTT-3.1.0-2]
    still_serving(&broker).await;
}

#[tokio::test]
async fn a_packet_over_the_maximum_is_refused_from_its_fixed_header() {
    let broker = TestBroker::with(|c| c.mqtt.max_packet_size = 1024).await;
    let mut v5 = Raw::logged_in(&broker, V5, "big5").await;
    v5.send(&[0x30, 0xD0, 0x0F]).await; // a PUBLISH announcing 2000 bytes; none of them sent
    v5.disconnected_with(ReasonCode::PACKET_TOO_LARGE).await;
    let mut v3 = Raw::logged_in(&broker, V3, "big3").await;
    v3.send(&[0x30, 0xD0, 0x0F]).await;
    v3.closed_silently().await;
    still_serving(&broker).await;
}

#[tokio::test]
async fn subscribing_to_an_invalid_filter_is_refused_in_suback() {
    let broker = TestBroker::start().await;
    let mut v3 = Raw::logged_in(&broker, V3, "filter3").await;
    v3.packet(&subscribe("a/#/b")).await;
    let expected = SubAck {
        packet_id: 1,
        reasons: vec![ReasonCode(0x80)],
        ..SubAck::default()
    };
    assert_eq!(
        v3.next().await,
        Some(Packet::SubAck(expected)),
        "3.1.1 failure code [MQTT-3.9.3-2]"
    );
    let mut v5 = Raw::logged_in(&broker, V5, "filter5").await;
    v5.packet(&subscribe("a+")).await;
    let expected = SubAck {
        packet_id: 1,
        reasons: vec![ReasonCode::TOPIC_FILTER_INVALID],
        ..SubAck::default()
    };
    assert_eq!(v5.next().await, Some(Packet::SubAck(expected)));
    still_serving(&broker).await;
}

#[tokio::test]
async fn an_unsupported_protocol_level_gets_connack_return_code_1() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker, V3).await;
    raw.send(&[
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x00,
    ])
    .await;
    match raw.next().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason.v3_connack(), 1, "[MQTT-3.1.2-2]"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    raw.closed_silently().await;
    still_serving(&broker).await;
}

#[tokio::test]
async fn a_first_packet_other_than_connect_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker, V3).await;
    raw.packet(&Packet::PingReq).await;
    raw.closed_silently().await; // [MQTT-3.1.0-1]
    still_serving(&broker).await;
}

#[tokio::test]
async fn wrong_credentials_and_anonymous_clients_are_refused_when_so_configured() {
    let broker = TestBroker::with(|c| c.mqtt.allow_anonymous = false).await;
    let mut anonymous = Raw::connect(&broker, V3).await;
    anonymous.packet(&connect(V3, "anon")).await;
    let Some(Packet::ConnAck(ack)) = anonymous.next().await else {
        panic!("CONNACK")
    };
    assert_eq!(ack.reason.v3_connack(), 5, "not authorized");
    let mut wrong = Raw::connect(&broker, V5).await;
    let Packet::Connect(mut c) = connect(V5, "wrong") else {
        unreachable!()
    };
    c.username = Some("guest".into());
    c.password = Some("nope".into());
    wrong.packet(&Packet::Connect(c)).await;
    let Some(Packet::ConnAck(ack)) = wrong.next().await else {
        panic!("CONNACK")
    };
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let mut right = Raw::connect(&broker, V3).await;
    let Packet::Connect(mut c) = connect(V3, "right") else {
        unreachable!()
    };
    c.username = Some("guest".into());
    c.password = Some("guest".into());
    right.packet(&Packet::Connect(c)).await;
    let Some(Packet::ConnAck(ack)) = right.next().await else {
        panic!("CONNACK")
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn a_silent_client_is_disconnected_after_one_and_a_half_keep_alives() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker, V5).await;
    let Packet::Connect(mut c) = connect(V5, "sleepy") else {
        unreachable!()
    };
    c.keep_alive = 1;
    raw.packet(&Packet::Connect(c)).await;
    assert!(matches!(raw.next().await, Some(Packet::ConnAck(_))));
    raw.disconnected_with(ReasonCode::KEEP_ALIVE_TIMEOUT).await; // [MQTT-3.1.2-22]
}

#[tokio::test]
async fn mqtts_completes_the_tls_handshake_and_answers_connect() {
    let certs = common::TestCerts::generate();
    let broker = TestBroker::with(|config| certs.configure(config)).await;
    let tcp = TcpStream::connect(broker.listener("mqtts")).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(certs.client_config());
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(server_name, tcp))
        .await
        .unwrap()
        .unwrap();
    let mut out = BytesMut::new();
    codec::encode_packet(&connect(V5, "tls"), V5, &mut out);
    tls.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let connack = loop {
        if let Some(p) = codec::decode_packet(&mut buf, V5, 1 << 20).unwrap() {
            break p;
        }
        assert!(
            tokio::time::timeout(WAIT, tls.read_buf(&mut buf))
                .await
                .unwrap()
                .unwrap()
                > 0
        );
    };
    let Packet::ConnAck(ack) = connack else {
        panic!("expected CONNACK, got {connack:?}")
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}
