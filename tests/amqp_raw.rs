//! Raw-socket AMQP tests: what real clients never send, or send only by chance (frames that arrive in one read).
//! Each error case must end in the right connection.close reply code (or the protocol header for a wrong header)
//! and leave the broker serving other clients.

mod common;
mod raw;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::TestBroker;
use ferrymq_amqp_codec::{self as codec, Frame, Method};
use raw::{Raw, WAIT, publish, still_serving};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn wrong_protocol_header_is_answered_with_ours() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker).await;
    raw.send(b"AMQP\x01\x01\x00\x0a").await;
    let mut reply = [0u8; 8];
    tokio::time::timeout(WAIT, raw.stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"AMQP\x00\x00\x09\x01");
    let n = tokio::time::timeout(WAIT, raw.stream.read(&mut reply))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed after the header");
    still_serving(&broker).await;
}

#[tokio::test]
async fn http_request_on_the_amqp_port_gets_the_protocol_header() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker).await;
    raw.send(b"GET / HTTP/1.1\r\n\r\n").await;
    let mut reply = [0u8; 8];
    tokio::time::timeout(WAIT, raw.stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"AMQP\x00\x00\x09\x01");
}

#[tokio::test]
async fn oversize_frame_is_a_frame_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    // A method frame header announcing 100 MB: refused from the header alone, nothing buffered.
    raw.send(&[1, 0, 1, 0x05, 0xF5, 0xE1, 0x00]).await;
    assert_eq!(raw.close_code().await, 501);
    still_serving(&broker).await;
}

#[tokio::test]
async fn bad_frame_end_is_a_frame_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    let mut out = BytesMut::new();
    codec::encode_method(1, &Method::ChannelOpen, &mut out);
    let last = out.len() - 1;
    out[last] = 0x00;
    raw.send(&out).await;
    assert_eq!(raw.close_code().await, 501);
}

#[tokio::test]
async fn method_on_an_unopened_channel_is_a_channel_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(
        7,
        Method::BasicQos(codec::BasicQos {
            prefetch_size: 0,
            prefetch_count: 1,
            global: false,
        }),
    )
    .await;
    assert_eq!(raw.close_code().await, 504);
}

#[tokio::test]
async fn unknown_method_is_not_implemented() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    // class 60 (basic), method 999, on channel 0
    raw.send(&[1, 0, 0, 0, 0, 0, 4, 0, 60, 0x03, 0xE7, 0xCE])
        .await;
    assert_eq!(raw.close_code().await, 540);
}

#[tokio::test]
async fn content_header_without_publish_is_an_unexpected_frame() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(1, Method::ChannelOpen).await;
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(1, Method::ChannelOpenOk))
    ));
    let mut out = BytesMut::new();
    let header = codec::ContentHeader {
        class_id: 60,
        body_size: 3,
        properties: Default::default(),
        ..Default::default()
    };
    codec::encode_frame(&Frame::Header(1, Box::new(header)), &mut out);
    raw.send(&out).await;
    assert_eq!(raw.close_code().await, 505);
}

#[tokio::test]
async fn method_in_the_middle_of_content_is_an_unexpected_frame() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(1, Method::ChannelOpen).await;
    raw.frame().await;
    let publish = codec::BasicPublish {
        exchange: "".into(),
        routing_key: "q".into(),
        mandatory: false,
        immediate: false,
    };
    raw.method(1, Method::BasicPublish(publish)).await;
    raw.method(
        1,
        Method::BasicQos(codec::BasicQos {
            prefetch_size: 0,
            prefetch_count: 1,
            global: false,
        }),
    )
    .await;
    assert_eq!(raw.close_code().await, 505);
}

#[tokio::test]
async fn channel_beyond_channel_max_is_refused() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(17, Method::ChannelOpen).await;
    assert_eq!(raw.close_code().await, 530);
}

#[tokio::test]
async fn heartbeat_on_a_channel_is_a_frame_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.send(&[8, 0, 1, 0, 0, 0, 0, 0xCE]).await;
    assert_eq!(raw.close_code().await, 501);
}

#[tokio::test]
async fn message_larger_than_the_limit_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(1, Method::ChannelOpen).await;
    raw.frame().await;
    let publish = codec::BasicPublish {
        exchange: "".into(),
        routing_key: "q".into(),
        mandatory: false,
        immediate: false,
    };
    raw.method(1, Method::BasicPublish(publish)).await;
    let mut out = BytesMut::new();
    let header = codec::ContentHeader {
        class_id: 60,
        body_size: 1 << 40,
        properties: Default::default(),
        ..Default::default()
    };
    codec::encode_frame(&Frame::Header(1, Box::new(header)), &mut out);
    raw.send(&out).await;
    let Some(Frame::Method(1, Method::ChannelClose(close))) = raw.frame().await else {
        panic!("expected channel.close")
    };
    assert_eq!(close.reply_code, 406);
    assert!(
        close.reply_text.contains("larger than configured max size"),
        "{}",
        close.reply_text
    );
    raw.method(1, Method::ChannelCloseOk).await;
    // The connection is still usable: reopen the channel.
    raw.method(1, Method::ChannelOpen).await;
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(1, Method::ChannelOpenOk))
    ));
}

#[tokio::test]
async fn bad_credentials_with_auth_failure_close_get_403() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker).await;
    raw.send(&codec::PROTOCOL_HEADER).await;
    raw.frame().await;
    let mut caps = codec::FieldTable::default();
    caps.insert(
        "authentication_failure_close",
        codec::FieldValue::Bool(true),
    );
    let mut props = codec::FieldTable::default();
    props.insert("capabilities", codec::FieldValue::Table(caps));
    raw.method(
        0,
        Method::ConnectionStartOk(codec::ConnectionStartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: Bytes::from_static(b"\0guest\0wrong"),
            locale: "en_US".into(),
        }),
    )
    .await;
    assert_eq!(raw.close_code().await, 403);
}

#[tokio::test]
async fn server_sends_heartbeats_and_drops_a_silent_peer() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_with_heartbeat(&broker, 1).await;
    let started = std::time::Instant::now();
    assert!(
        matches!(raw.frame().await, Some(Frame::Heartbeat(0))),
        "a heartbeat within the interval"
    );
    // We send nothing: after two missed intervals the broker closes the socket.
    loop {
        match raw.frame().await {
            Some(Frame::Heartbeat(0)) => continue,
            None => break,
            Some(other) => panic!("unexpected frame {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
}

#[tokio::test]
async fn memory_alarm_blocks_publishers_until_consumers_drain() {
    // The mark is above what the two connections' own buffers take (they count too).
    let broker = TestBroker::with(|c| c.memory.high_water = 1 << 20).await;
    let mut caps = codec::FieldTable::default();
    caps.insert("connection.blocked", codec::FieldValue::Bool(true));
    let mut props = codec::FieldTable::default();
    props.insert("capabilities", codec::FieldValue::Table(caps));
    let mut raw = Raw::open_with(&broker, 0, props).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "mem").await;
    let body = vec![0u8; 256 * 1024];
    for _ in 0..5 {
        raw.send(&raw::publish(1, "", "mem", &body)).await;
    }
    let Some(Frame::Method(0, Method::ConnectionBlocked(b))) = raw.frame().await else {
        panic!("expected connection.blocked")
    };
    assert_eq!(b.reason, "low on memory");
    // Another connection drains the queue; the alarm clears and the publisher is unblocked.
    let mut drain = Raw::open(&broker).await;
    drain.open_channel(1).await;
    drain
        .method(
            1,
            Method::QueuePurge(codec::QueuePurge {
                queue: "mem".into(),
                no_wait: false,
            }),
        )
        .await;
    assert!(matches!(
        drain.frame().await,
        Some(Frame::Method(1, Method::QueuePurgeOk(_)))
    ));
    assert!(matches!(
        raw.frame().await,
        Some(Frame::Method(0, Method::ConnectionUnblocked))
    ));
}

#[tokio::test]
async fn truncated_method_arguments_are_a_syntax_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(1, Method::ChannelOpen).await;
    raw.frame().await;
    // queue.declare (50, 10) whose payload stops inside the queue name's shortstr.
    raw.send(&[1, 0, 1, 0, 0, 0, 7, 0, 50, 0, 10, 0, 0, 9, 0xCE])
        .await;
    assert_eq!(raw.close_code().await, 502);
}

#[tokio::test]
async fn a_method_only_servers_send_is_command_invalid() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(1, Method::ChannelOpen).await;
    raw.frame().await;
    raw.method(1, Method::BasicGetEmpty).await;
    assert_eq!(raw.close_code().await, 503);
    still_serving(&broker).await;
}

/// Publishes wait in their channel's outbox until the frames of a read are handled (`core::publish`); a
/// method that arrives in the same read after them must still find them queued.
#[tokio::test]
async fn a_get_in_the_same_read_as_the_publishes_before_it_finds_them_queued() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.open_channel(1).await;
    raw.open_channel(2).await;
    raw.declare_queue(1, "pipelined").await;
    let mut out = BytesMut::new();
    for body in [&b"m0"[..], b"m1", b"m2"] {
        out.extend_from_slice(&publish(1, "", "pipelined", body));
    }
    let get = codec::BasicGet {
        queue: "pipelined".into(),
        no_ack: true,
    };
    codec::encode_method(2, &Method::BasicGet(get), &mut out);
    raw.send(&out).await;
    let (ch, method) = raw.next_method().await;
    let Method::BasicGetOk(ok) = method else {
        panic!("expected basic.get-ok, got {method:?}");
    };
    assert_eq!(ch, 2);
    assert_eq!(ok.message_count, 2, "the two others are queued behind it");
    assert!(matches!(raw.frame().await, Some(Frame::Header(2, _))));
    assert_eq!(
        raw.frame().await,
        Some(Frame::Body(2, Bytes::from_static(b"m0")))
    );
}

/// A thousand publishes in one write cross many outbox flushes and delivery events (64 and 128 messages): the
/// consumer gets every one, in publish order.
#[tokio::test]
async fn batched_publishes_and_deliveries_keep_publish_order() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.open_channel(1).await;
    raw.declare_queue(1, "ordered").await;
    let consume = codec::BasicConsume {
        queue: "ordered".into(),
        consumer_tag: "c".into(),
        no_ack: true,
        ..Default::default()
    };
    raw.method(1, Method::BasicConsume(consume)).await;
    assert!(matches!(
        raw.next_method().await,
        (1, Method::BasicConsumeOk(_))
    ));
    let mut out = BytesMut::new();
    for i in 0..1000u32 {
        out.extend_from_slice(&publish(1, "", "ordered", &i.to_be_bytes()));
    }
    raw.send(&out).await;
    for i in 0..1000u32 {
        assert!(matches!(
            raw.next_method().await,
            (1, Method::BasicDeliver(_))
        ));
        assert!(matches!(raw.frame().await, Some(Frame::Header(1, _))));
        assert_eq!(
            raw.frame().await,
            Some(Frame::Body(1, Bytes::copy_from_slice(&i.to_be_bytes()))),
            "message {i} in publish order"
        );
    }
}
