//! Raw-socket MQTT tests: what real clients never send. Each case asserts the exact answer the spec's
//! normative statements ask for (a v5 DISCONNECT or CONNACK with its reason code, a v3 CONNACK return code, or
//! a close without an answer for v3 [MQTT-4.8.0-1]) and that the broker keeps serving other clients.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::TestBroker;
use ferrymq_mqtt_codec::{
    self as codec, Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    SubAck, Subscribe, SubscriptionOptions,
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

/// Sends `connect` over a TLS connection made with `client` and returns the CONNACK's reason code, or the
/// handshake's error.
async fn connack_over_tls(
    broker: &TestBroker,
    client: std::sync::Arc<rustls::ClientConfig>,
    connect: Packet,
) -> std::io::Result<ReasonCode> {
    let tcp = TcpStream::connect(broker.listener("mqtts")).await?;
    let connector = tokio_rustls::TlsConnector::from(client);
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(server_name, tcp)).await??;
    let version = match &connect {
        Packet::Connect(c) => c.version,
        _ => unreachable!(),
    };
    let mut out = BytesMut::new();
    codec::encode_packet(&connect, version, &mut out);
    tls.write_all(&out).await?;
    let mut buf = BytesMut::new();
    loop {
        if let Some(p) = codec::decode_packet(&mut buf, version, 1 << 20).unwrap() {
            let Packet::ConnAck(ack) = p else {
                panic!("expected CONNACK, got {p:?}")
            };
            return Ok(ack.reason);
        }
        // TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
        if tokio::time::timeout(WAIT, tls.read_buf(&mut buf)).await?? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

#[tokio::test]
async fn mqtts_completes_the_tls_handshake_and_answers_connect() {
    let certs = common::TestCerts::generate();
    let broker = TestBroker::with(|config| certs.configure(config)).await;
    let reason = connack_over_tls(&broker, certs.client_config(), connect(V5, "tls")).await;
    assert_eq!(reason.unwrap(), ReasonCode::SUCCESS);
}

#[tokio::test]
async fn a_verified_client_certificate_logs_in_as_its_common_name() {
    use ferrymq::config::{PermissionConfig, UserConfig};
    let certs = common::TestCerts::generate();
    let broker = TestBroker::with(|config| {
        certs.configure(config);
        config.tls.client_ca = Some(certs.ca_path());
        config.mqtt.certificate_login = true;
        config.mqtt.allow_anonymous = false;
        for name in ["device-7", "stranger"] {
            config.auth.users.push(UserConfig {
                name: name.into(),
                password: "secret".into(),
                tags: Vec::new(),
            });
        }
        config.auth.permissions.push(PermissionConfig {
            user: "device-7".into(),
            vhost: "/".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        });
    })
    .await;
    let with_cert = |name: &str| certs.client_config_with(certs.client_identity(name));
    let with_login = |version, id: &str, user: &str, password: &str| {
        let Packet::Connect(mut c) = connect(version, id) else {
            unreachable!()
        };
        c.username = Some(user.into());
        c.password = Some(password.as_bytes().to_vec().into());
        Packet::Connect(c)
    };
    // Anonymous clients are refused, yet the certificate of an existing user logs in without a user name...
    let reason = connack_over_tls(&broker, with_cert("device-7"), connect(V5, "d7")).await;
    assert_eq!(reason.unwrap(), ReasonCode::SUCCESS);
    // ... and a user name and password sent with it are not what is checked.
    let c = with_login(V3, "d7b", "guest", "wrong");
    let reason = connack_over_tls(&broker, with_cert("device-7"), c).await;
    assert_eq!(reason.unwrap(), ReasonCode::SUCCESS);
    // The certificate names the user: one with no access to the vhost, or none at all, is refused.
    let reason = connack_over_tls(&broker, with_cert("stranger"), connect(V5, "s")).await;
    assert_eq!(reason.unwrap(), ReasonCode::NOT_AUTHORIZED);
    let reason = connack_over_tls(&broker, with_cert("ghost"), connect(V5, "g")).await;
    assert_eq!(reason.unwrap(), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // Without a certificate, the usual login applies.
    let reason = connack_over_tls(&broker, certs.client_config(), connect(V5, "anon")).await;
    assert_eq!(reason.unwrap(), ReasonCode::NOT_AUTHORIZED);
    let c = with_login(V5, "pw", "device-7", "secret");
    let reason = connack_over_tls(&broker, certs.client_config(), c).await;
    assert_eq!(reason.unwrap(), ReasonCode::SUCCESS);
    // A certificate from another CA does not get through the handshake.
    let other = common::TestCerts::generate();
    let foreign = certs.client_config_with(other.client_identity("device-7"));
    let refused = connack_over_tls(&broker, foreign, connect(V5, "f")).await;
    assert!(
        refused.is_err(),
        "foreign certificate accepted: {refused:?}"
    );
    // The broker keeps serving.
    let reason = connack_over_tls(&broker, with_cert("device-7"), connect(V3, "after")).await;
    assert_eq!(reason.unwrap(), ReasonCode::SUCCESS);
}

#[tokio::test]
async fn a_resumed_session_resends_unacknowledged_publishes_with_their_packet_ids_and_dup() {
    let broker = TestBroker::start().await;
    let persistent = |version| {
        let Packet::Connect(mut c) = connect(version, "resender") else {
            unreachable!()
        };
        c.clean_start = false;
        Packet::Connect(c)
    };
    let mut sub = Raw::connect(&broker, V3).await;
    sub.packet(&persistent(V3)).await;
    assert!(matches!(sub.next().await, Some(Packet::ConnAck(_))));
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    sub.packet(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("r/t".into(), options)],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(sub.next().await, Some(Packet::SubAck(_))));
    let mut publisher = Raw::logged_in(&broker, V3, "pub").await;
    for i in 0..4u8 {
        publisher
            .packet(&Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: "r/t".into(),
                packet_id: Some(u16::from(i) + 1),
                payload: vec![i].into(),
                ..Publish::default()
            }))
            .await;
        assert!(matches!(publisher.next().await, Some(Packet::PubAck(_))));
    }
    let mut first = Vec::new();
    for _ in 0..4 {
        let Some(Packet::Publish(p)) = sub.next().await else {
            panic!("PUBLISH")
        };
        assert!(!p.dup);
        first.push((p.packet_id.unwrap(), p.payload.to_vec()));
    }
    // Acknowledge the second only, then drop the connection without DISCONNECT.
    sub.packet(&Packet::PubAck(Ack {
        packet_id: first[1].0,
        ..Ack::default()
    }))
    .await;
    // A PINGRESP shows the PUBACK was read before the connection goes.
    sub.packet(&Packet::PingReq).await;
    assert_eq!(sub.next().await, Some(Packet::PingResp));
    drop(sub);
    // The session resumes on a v5 connection: the three unacknowledged messages come again, with DUP and the
    // packet ids they had [MQTT-4.4.0-1].
    let mut again = Raw::connect(&broker, V5).await;
    again.packet(&persistent(V5)).await;
    let Some(Packet::ConnAck(ack)) = again.next().await else {
        panic!("CONNACK")
    };
    assert!(ack.session_present);
    let mut resent = Vec::new();
    for _ in 0..3 {
        let Some(Packet::Publish(p)) = again.next().await else {
            panic!("PUBLISH")
        };
        assert!(p.dup, "a resent PUBLISH carries DUP");
        resent.push((p.packet_id.unwrap(), p.payload.to_vec()));
    }
    resent.sort();
    let mut want = vec![first[0].clone(), first[2].clone(), first[3].clone()];
    want.sort();
    assert_eq!(resent, want);
}

#[tokio::test]
async fn packets_in_the_same_write_as_connect_are_answered() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker, V3).await;
    let mut out = BytesMut::new();
    for packet in [connect(V3, "eager"), subscribe("e/t"), Packet::PingReq] {
        codec::encode_packet(&packet, V3, &mut out);
    }
    raw.send(&out).await;
    assert!(matches!(raw.next().await, Some(Packet::ConnAck(_))));
    assert!(matches!(raw.next().await, Some(Packet::SubAck(_))));
    assert_eq!(raw.next().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn a_resumed_session_sends_pubrel_again_for_an_unfinished_qos_2_delivery() {
    let broker = TestBroker::start().await;
    let persistent = |client_id: &str| {
        let Packet::Connect(mut c) = connect(V3, client_id) else {
            unreachable!()
        };
        c.clean_start = false;
        Packet::Connect(c)
    };
    let mut sub = Raw::connect(&broker, V3).await;
    sub.packet(&persistent("q2-sub")).await;
    assert!(matches!(sub.next().await, Some(Packet::ConnAck(_))));
    let options = SubscriptionOptions {
        qos: codec::QoS::ExactlyOnce,
        ..SubscriptionOptions::default()
    };
    let subscribe = Subscribe {
        packet_id: 1,
        filters: vec![("q2/t".into(), options)],
        properties: Properties::default(),
    };
    sub.packet(&Packet::Subscribe(subscribe)).await;
    assert!(matches!(sub.next().await, Some(Packet::SubAck(_))));
    let mut publisher = Raw::logged_in(&broker, V3, "q2-pub").await;
    let publish = codec::Publish {
        qos: codec::QoS::ExactlyOnce,
        topic: "q2/t".into(),
        packet_id: Some(9),
        payload: "once".into(),
        ..codec::Publish::default()
    };
    publisher.packet(&Packet::Publish(publish)).await;
    let Some(Packet::Publish(delivered)) = sub.next().await else {
        panic!("PUBLISH")
    };
    let id = delivered.packet_id.unwrap();
    sub.packet(&Packet::PubRec(codec::Ack {
        packet_id: id,
        ..codec::Ack::default()
    }))
    .await;
    assert_eq!(
        sub.next().await,
        Some(Packet::PubRel(codec::Ack {
            packet_id: id,
            ..codec::Ack::default()
        }))
    );
    drop(sub); // gone before PUBCOMP
    let mut back = Raw::connect(&broker, V3).await;
    back.packet(&persistent("q2-sub")).await;
    let Some(Packet::ConnAck(ack)) = back.next().await else {
        panic!("CONNACK")
    };
    assert!(ack.session_present);
    assert_eq!(
        back.next().await,
        Some(Packet::PubRel(codec::Ack {
            packet_id: id,
            ..codec::Ack::default()
        })),
        "[MQTT-4.4.0-1]"
    );
    back.packet(&Packet::PubComp(codec::Ack {
        packet_id: id,
        ..codec::Ack::default()
    }))
    .await;
    back.packet(&Packet::PingReq).await;
    assert_eq!(
        back.next().await,
        Some(Packet::PingResp),
        "the message itself is not sent again"
    );
}

#[tokio::test]
async fn v5_connect_asking_for_enhanced_authentication_or_response_information() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker, V5).await;
    let Packet::Connect(mut c) = connect(V5, "auth-method") else {
        unreachable!()
    };
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    raw.packet(&Packet::Connect(c)).await;
    let Some(Packet::ConnAck(ack)) = raw.next().await else {
        panic!("CONNACK")
    };
    assert_eq!(
        ack.reason,
        ReasonCode::BAD_AUTHENTICATION_METHOD,
        "[MQTT-4.12.0-1]"
    );
    let mut raw = Raw::connect(&broker, V5).await;
    let Packet::Connect(mut c) = connect(V5, "asker") else {
        unreachable!()
    };
    c.properties.request_response_information = Some(1);
    raw.packet(&Packet::Connect(c)).await;
    let Some(Packet::ConnAck(ack)) = raw.next().await else {
        panic!("CONNACK")
    };
    assert_eq!(
        ack.properties.response_information.as_deref(),
        Some("response/asker")
    );
}
