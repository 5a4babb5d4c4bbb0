//! MQTT durability on the journal store: a persistent session (its queue and subscriptions), the QoS 1
//! messages queued for it while offline, and retained messages survive a restart; and, with the real binary
//! SIGKILLed at random points while a client publishes QoS 1 messages, every message the broker PUBACKed is
//! there after the restart (the MQTT side of the crash test in `store_crash.rs`).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::mqtt::{self, connack4, puback4, publish4, suback4};
use common::{BrokerProcess, TestBroker};
use ferrymq_mqtt_codec::{
    self as codec, Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

#[tokio::test]
async fn a_persistent_session_its_queued_messages_and_retained_messages_survive_a_restart() {
    let broker = TestBroker::journal().await;
    let (sub, mut events) = mqtt::v4(broker.mqtt_addr(), "durable-sub", |o| {
        o.set_clean_session(false);
    });
    connack4(&mut events).await;
    sub.subscribe("d/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    suback4(&mut events).await;
    sub.disconnect().await.unwrap();
    events.error().await;
    let (publisher, mut pub_events) = mqtt::v4(broker.mqtt_addr(), "durable-pub", |_| {});
    connack4(&mut pub_events).await;
    publisher
        .publish("d/r", rumqttc::QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    puback4(&mut pub_events).await;
    publisher
        .publish("d/m", rumqttc::QoS::AtLeastOnce, false, "queued")
        .await
        .unwrap();
    puback4(&mut pub_events).await;
    drop(pub_events);

    let broker = broker.restart().await;
    let (_back, mut back_events) = mqtt::v4(broker.mqtt_addr(), "durable-sub", |o| {
        o.set_clean_session(false);
    });
    assert!(
        connack4(&mut back_events).await,
        "the session is present after the restart"
    );
    let mut got = BTreeSet::new();
    for _ in 0..2 {
        got.insert(back_events.next_matching(publish4).await.payload);
    }
    assert_eq!(
        got,
        BTreeSet::from([Bytes::from("kept"), Bytes::from("queued")])
    );
    let (_fresh, mut fresh_events) = mqtt::v4(broker.mqtt_addr(), "fresh", |_| {});
    connack4(&mut fresh_events).await;
    _fresh
        .subscribe("d/+", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let retained = fresh_events.next_matching(publish4).await;
    assert!(retained.retain);
    assert_eq!(&retained.payload[..], b"kept");
}

/// A raw MQTT 3.1.1 connection (the crash test must see exactly which publishes were acknowledged).
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr, client_id: &str, clean_start: bool) -> Option<Raw> {
        let stream = TcpStream::connect(addr).await.ok()?;
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
        };
        let connect = Connect {
            version: V3,
            clean_start,
            keep_alive: 0,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        raw.send(&Packet::Connect(Box::new(connect))).await.ok()?;
        matches!(raw.next().await?, Packet::ConnAck(_)).then_some(raw)
    }

    async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        codec::encode_packet(packet, V3, &mut out);
        self.stream.write_all(&out).await
    }

    /// The next packet; `None` when the connection ended or nothing came for two seconds.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = codec::decode_packet(&mut self.buf, V3, 1 << 20).ok()? {
                return Some(p);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(2), self.stream.read_buf(&mut self.buf));
            if read.await.ok()?.ok()? == 0 {
                return None;
            }
        }
    }
}

fn body(seq: u64) -> Bytes {
    let mut b = seq.to_be_bytes().to_vec();
    b.resize(256, (seq % 251) as u8);
    Bytes::from(b)
}

type Acked = Arc<Mutex<BTreeSet<u64>>>;

/// Publishes QoS 1 messages from `first_seq` in windows of 64 until the connection fails; adds what was
/// PUBACKed to `acked`. Returns the next sequence number.
async fn publish_until_killed(addr: SocketAddr, mut next_seq: u64, acked: Acked) -> u64 {
    let Some(mut raw) = Raw::connect(addr, "crash-pub", true).await else {
        return next_seq;
    };
    loop {
        let first = next_seq;
        for seq in first..first + 64 {
            let publish = Publish {
                qos: QoS::AtLeastOnce,
                topic: "crash/t".into(),
                packet_id: Some((seq % 60_000 + 1) as u16),
                payload: body(seq),
                ..Publish::default()
            };
            if raw.send(&Packet::Publish(publish)).await.is_err() {
                return next_seq + 64;
            }
        }
        next_seq += 64;
        for _ in 0..64 {
            let Some(Packet::PubAck(ack)) = raw.next().await else {
                return next_seq;
            };
            let seq = (first..first + 64)
                .find(|s| (s % 60_000 + 1) as u16 == ack.packet_id)
                .unwrap();
            acked.lock().unwrap().insert(seq);
        }
    }
}

/// Everything the persistent session `crash-sub` holds, acknowledged as it comes.
async fn drain(addr: SocketAddr) -> BTreeSet<u64> {
    let mut raw = Raw::connect(addr, "crash-sub", false).await.unwrap();
    let mut seen = BTreeSet::new();
    while let Some(packet) = raw.next().await {
        let Packet::Publish(p) = packet else { continue };
        let seq = u64::from_be_bytes(p.payload[..8].try_into().unwrap());
        assert_eq!(p.payload, body(seq), "a delivered body is damaged");
        seen.insert(seq);
        let ack = Ack {
            packet_id: p.packet_id.unwrap(),
            ..Ack::default()
        };
        raw.send(&Packet::PubAck(ack)).await.unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_a_puback_ed_qos_1_publish() {
    let mut broker = BrokerProcess::start_with(&["--store", "journal"]);
    let mut sub = Raw::connect(broker.mqtt_addr(), "crash-sub", false)
        .await
        .unwrap();
    let subscribe = Subscribe {
        packet_id: 1,
        filters: vec![(
            "crash/#".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
        properties: Properties::default(),
    };
    sub.send(&Packet::Subscribe(subscribe)).await.unwrap();
    assert!(matches!(sub.next().await, Some(Packet::SubAck(_))));
    drop(sub);
    let (mut next_seq, acked) = (0u64, Acked::default());
    for _ in 0..6 {
        let publisher = tokio::spawn(publish_until_killed(
            broker.mqtt_addr(),
            next_seq,
            acked.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(100..600))).await;
        broker.kill9(); // while the publisher is mid-stream
        next_seq = publisher.await.unwrap();
        broker.restart(); // on the same data dir
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 64,
        "the publisher got PUBACKs: {}",
        acked.len()
    );
    let seen = drain(broker.mqtt_addr()).await;
    let lost: Vec<_> = acked.difference(&seen).collect();
    eprintln!(
        "{} publishes PUBACKed over 6 SIGKILLs, {} delivered after the last restart",
        acked.len(),
        seen.len()
    );
    assert!(
        lost.is_empty(),
        "{} PUBACKed messages lost of {}: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
}
