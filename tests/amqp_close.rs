//! Channel and connection close sequences, and channel.flow, with raw frames. The rule both closes share
//! (AMQP 0-9-1 channel.close and connection.close): "After sending this method, any received methods except
//! Close and Close-OK MUST be discarded. The response to receiving a Close after sending Close must be to send
//! Close-Ok." Where the spec leaves a choice (channel.open on a channel still closing, a close-ok nobody asked
//! for, channel.flow active=false) the broker answers as RabbitMQ does. Each test also checks that what
//! should survive does: the connection's other channels, or the broker.

mod common;
mod raw;

use bytes::BytesMut;
use common::TestBroker;
use ferrymq_amqp_codec::{self as codec, Frame, Method};
use raw::{Raw, basic_qos, channel_close, connection_close, publish, queue_declare, still_serving};

/// An exchange no test declares: publishing to it closes the channel with 404.
const MISSING: &str = "no-such-exchange";

fn failing_publish(ch: u16) -> BytesMut {
    publish(ch, MISSING, "k", b"lost")
}

async fn expect_channel_close(raw: &mut Raw, ch: u16) -> codec::ChannelClose {
    match raw.next_method().await {
        (c, Method::ChannelClose(close)) if c == ch => close,
        other => panic!("expected channel.close on channel {ch}, got {other:?}"),
    }
}

/// Channel 1 was closed by the broker with 404 for the failing publish.
async fn expect_not_found_close(raw: &mut Raw) {
    let close = expect_channel_close(raw, 1).await;
    assert_eq!(close.reply_code, 404, "{}", close.reply_text);
    assert_eq!(
        close.reply_text,
        format!("NOT_FOUND - no exchange '{MISSING}' in vhost '/'")
    );
}

/// After the broker's close and the client's close crossed on channel 1: the broker answers the client's
/// close with close-ok, the client answers the broker's close as the rule says, which frees the channel
/// number; channel 2 lived through it all.
async fn answer_crossed_close(raw: &mut Raw) {
    assert_eq!(raw.next_method().await, (1, Method::ChannelCloseOk));
    raw.method(1, Method::ChannelCloseOk).await;
    raw.open_channel(1).await;
    raw.declare_queue(2, "alive").await;
}

/// A connection with channels 1 and 2 open.
async fn two_channels(broker: &TestBroker) -> Raw {
    let mut raw = Raw::open(broker).await;
    raw.open_channel(1).await;
    raw.open_channel(2).await;
    raw
}

async fn flow(raw: &mut Raw, ch: u16, active: bool) {
    raw.method(ch, Method::ChannelFlow(codec::ChannelFlow { active }))
        .await;
}

/// Open channel 1 and send channel.flow active=false on it: the broker closes the connection (540).
async fn provoke_connection_close(raw: &mut Raw) -> codec::ConnectionClose {
    raw.open_channel(1).await;
    flow(raw, 1, false).await;
    let close = raw.connection_close().await;
    assert_eq!(close.reply_code, 540, "{}", close.reply_text);
    close
}

/// Answer the broker's connection.close: it closes the socket and goes on serving other clients.
async fn answer_close(mut raw: Raw, broker: &TestBroker) {
    raw.method(0, Method::ConnectionCloseOk).await;
    raw.expect_eof().await;
    still_serving(broker).await;
}

#[tokio::test]
async fn channel_flow_inactive_is_refused_with_540_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    let close = provoke_connection_close(&mut raw).await;
    assert_eq!(close.reply_text, "NOT_IMPLEMENTED - active=false");
    assert_eq!((close.class_id, close.method_id), (20, 20), "channel.flow");
    answer_close(raw, &broker).await;
}

#[tokio::test]
async fn channel_flow_active_is_confirmed() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.open_channel(1).await;
    flow(&mut raw, 1, true).await;
    assert_eq!(
        raw.next_method().await,
        (
            1,
            Method::ChannelFlowOk(codec::ChannelFlowOk { active: true })
        )
    );
}

#[tokio::test]
async fn client_close_arriving_after_the_server_close_gets_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = two_channels(&broker).await;
    raw.send(&failing_publish(1)).await;
    expect_not_found_close(&mut raw).await;
    // The client's own close crosses the server's: it is answered, not a reason to kill the connection.
    raw.method(1, channel_close()).await;
    answer_crossed_close(&mut raw).await;
}

#[tokio::test]
async fn client_close_sent_before_it_saw_the_server_close_gets_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = two_channels(&broker).await;
    // One write: the failing publish, then the client's close, sent before any answer could arrive.
    let mut out = failing_publish(1);
    codec::encode_method(1, &channel_close(), &mut out);
    raw.send(&out).await;
    expect_not_found_close(&mut raw).await;
    answer_crossed_close(&mut raw).await;
}

#[tokio::test]
async fn methods_and_content_on_a_closing_channel_are_discarded() {
    let broker = TestBroker::start().await;
    let mut raw = two_channels(&broker).await;
    raw.declare_queue(2, "kept").await;
    raw.send(&failing_publish(1)).await;
    // Before reading the server's close the client goes on using channel 1: a publish that would route,
    // a declare and a qos that would be answered.
    let mut out = publish(1, "", "kept", b"must not arrive");
    codec::encode_method(1, &queue_declare("discarded", false), &mut out);
    codec::encode_method(1, &basic_qos(1), &mut out);
    raw.send(&out).await;
    expect_not_found_close(&mut raw).await;
    raw.method(1, Method::ChannelCloseOk).await;
    let before = raw.sync(2).await;
    assert!(
        before.is_empty(),
        "nothing answered on channel 1: {before:?}"
    );
    assert_eq!(raw.declare_queue(2, "kept").await.message_count, 0);
    raw.method(2, queue_declare("discarded", true)).await;
    assert_eq!(expect_channel_close(&mut raw, 2).await.reply_code, 404);
}

#[tokio::test]
async fn body_frames_after_a_refused_content_header_are_discarded() {
    let broker = TestBroker::with(|c| c.amqp.max_message_size = 1024).await;
    let mut raw = two_channels(&broker).await;
    // The header announces 300 KiB: the broker closes channel 1 at the header, and the three body frames
    // already on their way arrive on a closing channel.
    raw.send(&publish(1, "", "q", &vec![7u8; 300 * 1024])).await;
    let close = expect_channel_close(&mut raw, 1).await;
    assert_eq!(close.reply_code, 406, "{}", close.reply_text);
    raw.method(1, Method::ChannelCloseOk).await;
    raw.open_channel(1).await;
    raw.declare_queue(2, "alive").await;
}

#[tokio::test]
async fn deliveries_stop_at_the_client_close_and_go_back_to_the_queue() {
    let broker = TestBroker::start().await;
    let mut raw = two_channels(&broker).await;
    raw.declare_queue(2, "work").await;
    for _ in 0..20 {
        raw.send(&publish(2, "", "work", b"job")).await;
    }
    raw.method(1, basic_qos(5)).await;
    assert_eq!(raw.next_method().await, (1, Method::BasicQosOk));
    let consume = codec::BasicConsume {
        queue: "work".into(),
        consumer_tag: "c1".into(),
        no_local: false,
        no_ack: false,
        exclusive: false,
        no_wait: false,
        arguments: Default::default(),
    };
    raw.method(1, Method::BasicConsume(consume)).await;
    assert!(matches!(
        raw.next_method().await,
        (1, Method::BasicConsumeOk(_))
    ));
    assert!(matches!(
        raw.next_method().await,
        (1, Method::BasicDeliver(_))
    ));
    // The client closes while the broker has deliveries for channel 1 in flight: whatever went out before
    // the close-ok may still arrive, nothing after it.
    raw.method(1, channel_close()).await;
    loop {
        match raw.frame().await {
            Some(Frame::Method(1, Method::ChannelCloseOk)) => break,
            Some(
                Frame::Method(1, Method::BasicDeliver(_)) | Frame::Header(1, _) | Frame::Body(1, _),
            ) => {}
            other => panic!("unexpected frame before channel.close-ok: {other:?}"),
        }
    }
    let after = raw.sync(2).await;
    assert!(after.is_empty(), "frames after channel.close-ok: {after:?}");
    // The unacknowledged deliveries went back to the queue, first in line and marked redelivered.
    raw.method(2, queue_declare("work", true)).await;
    let Method::QueueDeclareOk(ok) = raw.next_method().await.1 else {
        panic!("expected queue.declare-ok")
    };
    assert_eq!(ok.message_count, 20);
    raw.method(
        2,
        Method::BasicGet(codec::BasicGet {
            queue: "work".into(),
            no_ack: true,
        }),
    )
    .await;
    let Method::BasicGetOk(got) = raw.next_method().await.1 else {
        panic!("expected basic.get-ok")
    };
    assert!(got.redelivered);
}

#[tokio::test]
async fn channel_open_on_a_channel_still_closing_is_a_channel_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.open_channel(1).await;
    raw.send(&failing_publish(1)).await;
    expect_not_found_close(&mut raw).await;
    // channel.open before the close-ok: the number is still taken (RabbitMQ: 504 "second 'channel.open' seen").
    raw.method(1, Method::ChannelOpen).await;
    let close = raw.connection_close().await;
    assert_eq!(close.reply_code, 504, "{}", close.reply_text);
    assert!(close.reply_text.contains("second 'channel.open'"));
    answer_close(raw, &broker).await;
}

#[tokio::test]
async fn channel_close_ok_the_server_did_not_ask_for_is_command_invalid() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.open_channel(1).await;
    raw.method(1, Method::ChannelCloseOk).await;
    assert_eq!(raw.close_code().await, 503);
    still_serving(&broker).await;
}

#[tokio::test]
async fn connection_close_crossing_the_server_close_gets_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    provoke_connection_close(&mut raw).await;
    raw.method(0, connection_close()).await;
    assert_eq!(raw.next_method().await, (0, Method::ConnectionCloseOk));
    // The broker still waits for the answer to its own close, then closes the socket.
    answer_close(raw, &broker).await;
}

#[tokio::test]
async fn frames_after_the_server_connection_close_are_discarded() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    provoke_connection_close(&mut raw).await;
    let mut out = BytesMut::new();
    codec::encode_method(2, &Method::ChannelOpen, &mut out);
    codec::encode_method(1, &queue_declare("late", false), &mut out);
    out.extend_from_slice(&publish(1, "", "late", b"late"));
    raw.send(&out).await;
    answer_close(raw, &broker).await;
    // None of it took effect.
    let mut other = Raw::open(&broker).await;
    other.open_channel(1).await;
    other.method(1, queue_declare("late", true)).await;
    assert_eq!(expect_channel_close(&mut other, 1).await.reply_code, 404);
}

#[tokio::test]
async fn frames_after_the_client_connection_close_are_ignored() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    let mut out = BytesMut::new();
    codec::encode_method(0, &connection_close(), &mut out);
    codec::encode_method(1, &Method::ChannelOpen, &mut out);
    raw.send(&out).await;
    assert_eq!(raw.next_method().await, (0, Method::ConnectionCloseOk));
    raw.expect_eof().await;
    still_serving(&broker).await;
}

#[tokio::test]
async fn connection_close_ok_the_server_did_not_ask_for_is_a_channel_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.method(0, Method::ConnectionCloseOk).await;
    let close = raw.connection_close().await;
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (
            504,
            "CHANNEL_ERROR - unexpected method connection.close-ok in connection state running"
        )
    );
    answer_close(raw, &broker).await;
}
