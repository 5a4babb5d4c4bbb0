//! What the memory tests share: the real `ferrymq` binary with a 50 MB high-water mark, its resident set
//! (VmRSS from /proc), a raw client that floods the broker until the broker stops reading it (or a volume is
//! sent), content frames built by hand, and the check that a normal client is still served afterwards.
//!
//! The abusive clients negotiate a 1 s heartbeat and never read: once the broker blocks them it stops reading
//! their sockets (as RabbitMQ does), so it learns that a dropped one is gone when a heartbeat it writes fails.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec::{self as codec, ContentHeader, Frame, Method};
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{BrokerProcess, amqp_url};
use crate::raw::Raw;

/// The high-water mark the broker runs with: 50 MB.
pub const MARK: u64 = 50_000_000;
/// What the broker's resident set may exceed the mark by: the process itself, allocator slack, one read
/// chunk and one write buffer per connection.
pub const MARGIN: u64 = 150_000_000;
pub const MIB: usize = 1 << 20;
/// What each scenario tries to make the broker hold (it used to hold all of it).
pub const VOLUME: usize = 400 * MIB;
/// A write that makes no progress for this long means the broker stopped reading (socket buffers are full).
const STALL: Duration = Duration::from_secs(3);
/// Body bytes per body frame (the broker's default frame_max, less the framing).
const BODY_FRAME: usize = 131_072 - codec::FRAME_OVERHEAD;
/// How long the final check may take (a broker that still blocks would hang it).
const CHECK_WITHIN: Duration = Duration::from_secs(30);

/// The real binary with the memory store and a [`MARK`] high-water mark.
pub fn broker() -> BrokerProcess {
    BrokerProcess::start_with(&[
        "--memory-high-water",
        &MARK.to_string(),
        "--store",
        "memory",
    ])
}

/// The broker's resident set in bytes (VmRSS).
pub fn rss(broker: &BrokerProcess) -> u64 {
    let pid = broker.pid().expect("the broker is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// Reports the broker's resident set after `sent` bytes of `scenario`, and asserts it is within the mark plus
/// [`MARGIN`].
pub fn assert_bounded(broker: &BrokerProcess, scenario: &str, sent: usize) {
    let rss = rss(broker);
    eprintln!(
        "{scenario}: sent {} MiB, broker VmRSS {} MiB (mark {} MB)",
        sent / MIB,
        rss >> 20,
        MARK / 1_000_000
    );
    assert!(
        rss < MARK + MARGIN,
        "{scenario}: the broker holds {} MiB after {} MiB sent; the mark is {} MB",
        rss >> 20,
        sent / MIB,
        MARK / 1_000_000
    );
}

/// A raw connection with a 1 s heartbeat, up to 2047 channels, and channel 1 open.
pub async fn client(addr: SocketAddr) -> Raw {
    let mut raw = Raw::open_at(addr, 1, 2047, codec::FieldTable::default()).await;
    open_channel(&mut raw, 1).await;
    raw
}

/// The next method the broker sends, past its heartbeats.
pub async fn next_method(raw: &mut Raw) -> (u16, Method) {
    loop {
        match raw.frame().await {
            Some(Frame::Method(ch, m)) => return (ch, m),
            Some(Frame::Heartbeat(_)) => continue,
            other => panic!("expected a method frame, got {other:?}"),
        }
    }
}

/// `method` on `channel`, and the broker's answer.
pub async fn call(raw: &mut Raw, channel: u16, method: Method) -> (u16, Method) {
    raw.method(channel, method).await;
    next_method(raw).await
}

/// channel.open, answered with open-ok.
pub async fn open_channel(raw: &mut Raw, channel: u16) {
    let answer = call(raw, channel, Method::ChannelOpen).await;
    assert_eq!(answer, (channel, Method::ChannelOpenOk));
}

/// [`flood`]s the broker through `raw` until it stops reading, then asserts it holds no more than the mark
/// plus [`MARGIN`] (see [`assert_bounded`]).
pub async fn flood_until_blocked(
    broker: &BrokerProcess,
    raw: &mut Raw,
    scenario: &str,
    piece: impl FnMut(usize) -> Bytes,
) {
    let sent = flood(&mut raw.stream, VOLUME, piece).await;
    assert_bounded(broker, scenario, sent);
    assert!(
        sent < VOLUME,
        "{scenario}: the broker never stopped reading"
    );
}

/// Writes `piece(0)`, `piece(1)`, ... until `volume` bytes are sent or a write stalls for [`STALL`] (the
/// broker stopped reading); returns the bytes sent.
pub async fn flood(
    stream: &mut TcpStream,
    volume: usize,
    mut piece: impl FnMut(usize) -> Bytes,
) -> usize {
    let mut sent = 0;
    let mut i = 0;
    while sent < volume {
        let bytes = piece(i);
        match tokio::time::timeout(STALL, stream.write_all(&bytes)).await {
            Ok(Ok(())) => sent += bytes.len(),
            Ok(Err(e)) => panic!("the broker dropped the connection after {sent} bytes: {e}"),
            Err(_) => break,
        }
        i += 1;
    }
    sent
}

/// One method frame.
pub fn method(channel: u16, method: Method) -> BytesMut {
    let mut out = BytesMut::new();
    codec::encode_method(channel, &method, &mut out);
    out
}

/// basic.publish to the default exchange with routing key `queue`.
pub fn basic_publish(queue: &str) -> Method {
    Method::BasicPublish(codec::BasicPublish {
        exchange: String::new(),
        routing_key: queue.into(),
        mandatory: false,
        immediate: false,
    })
}

/// A content header announcing `body_size` bytes.
pub fn header(channel: u16, body_size: u64) -> BytesMut {
    let header = ContentHeader {
        class_id: 60,
        body_size,
        ..ContentHeader::default()
    };
    let mut out = BytesMut::new();
    codec::encode_frame(&Frame::Header(channel, Box::new(header)), &mut out);
    out
}

/// `len` zero bytes of body, in frames of the broker's default frame_max.
pub fn bodies(channel: u16, len: usize) -> BytesMut {
    let mut out = BytesMut::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(BODY_FRAME);
        let frame = Frame::Body(channel, Bytes::from(vec![0u8; n]));
        codec::encode_frame(&frame, &mut out);
        left -= n;
    }
    out
}

/// basic.consume of `queue` with no-ack, tag `sleeper`.
pub fn consume_no_ack(queue: &str) -> Method {
    Method::BasicConsume(codec::BasicConsume {
        queue: queue.into(),
        consumer_tag: "sleeper".into(),
        no_local: false,
        no_ack: true,
        exclusive: false,
        no_wait: false,
        arguments: Default::default(),
    })
}

/// queue.delete of `queue`, unconditionally.
pub fn queue_delete(queue: &str) -> Method {
    Method::QueueDelete(codec::QueueDelete {
        queue: queue.into(),
        if_unused: false,
        if_empty: false,
        no_wait: false,
    })
}

/// A whole message of `len` zero bytes to `queue` (publish, header, bodies).
pub fn message(channel: u16, queue: &str, len: usize) -> BytesMut {
    let mut out = method(channel, basic_publish(queue));
    out.extend_from_slice(&header(channel, len as u64));
    out.extend_from_slice(&bodies(channel, len));
    out
}

/// queue.declare (non-durable) of `name` on channel 1; the number of messages it holds.
pub async fn declare(raw: &mut Raw, name: &str) -> u32 {
    match call(raw, 1, crate::raw::queue_declare(name, false)).await {
        (1, Method::QueueDeclareOk(ok)) => ok.message_count,
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

/// A normal client (lapin) can still use the broker once `delete` is deleted (what the scenario left queued
/// keeps the alarm up): it publishes a message and gets it back.
pub async fn still_serves(addr: SocketAddr, delete: &[&str]) {
    tokio::time::timeout(CHECK_WITHIN, async {
        delete_queues(addr, delete).await;
        round_trip(addr).await;
    })
    .await
    .expect("a normal client is served after the abuse");
}

/// Deletes queues with a raw client: lapin sends nothing at all while the broker says it is blocked, but the
/// broker reads connections that do not publish whatever the alarm.
async fn delete_queues(addr: SocketAddr, queues: &[&str]) {
    let mut raw = Raw::open_at(addr, 0, 1, codec::FieldTable::default()).await;
    open_channel(&mut raw, 1).await;
    for queue in queues {
        let answer = call(&mut raw, 1, queue_delete(queue)).await;
        assert!(
            matches!(answer, (1, Method::QueueDeleteOk(_))),
            "{answer:?}"
        );
    }
}

async fn round_trip(addr: SocketAddr) {
    let conn = Connection::connect(&amqp_url(addr), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "after".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    ch.basic_publish(
        "".into(),
        "after".into(),
        BasicPublishOptions::default(),
        b"still here",
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish");
    loop {
        let got = ch
            .basic_get("after".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        if let Some(message) = got {
            assert_eq!(message.delivery.data, b"still here");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
