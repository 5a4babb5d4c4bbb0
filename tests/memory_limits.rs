//! What one connection may hold, against the broker in this process with raw AMQP frames: unfinished
//! messages and uncommitted transactions are capped per connection (`memory.max_per_connection`; the channel
//! that would go beyond it is closed with 406 PRECONDITION_FAILED and the connection lives on), they are
//! counted in the memory gauge while held and given back when they go, and a no-ack consumer that does not
//! read its socket is handed a bounded window of bytes, the rest staying in the queue.

mod common;
mod memory;
mod raw;

use std::time::Duration;

use common::TestBroker;
use ferrymq_amqp_codec::{self as codec, Method};
use memory::MIB;
use raw::{Raw, WAIT};

/// The cap the tests configure: 8 MiB per connection, with messages of at most 4 MiB.
const CAP: u64 = 8 * MIB as u64;

/// A broker with no memory alarm (so that only the cap acts) and an 8 MiB cap per connection.
async fn capped_broker() -> TestBroker {
    TestBroker::with(|c| {
        c.memory.high_water = 0;
        c.memory.max_per_connection = CAP;
        c.amqp.max_message_size = 4 * MIB as u64;
    })
    .await
}

/// A raw connection with channels 1..=`channels` open and queue `q` declared.
async fn client(broker: &TestBroker, channels: u16) -> Raw {
    let mut raw = Raw::open(broker).await;
    for ch in 1..=channels {
        raw.open_channel(ch).await;
    }
    raw.declare_queue(1, "q").await;
    raw
}

/// basic.publish to `q`, a header announcing `declared` bytes, and `sent` bytes of body.
fn unfinished(ch: u16, declared: usize, sent: usize) -> bytes::BytesMut {
    let mut out = memory::method(ch, memory::basic_publish("q"));
    out.extend_from_slice(&memory::header(ch, declared as u64));
    out.extend_from_slice(&memory::bodies(ch, sent));
    out
}

/// The channel.close the broker sends next (skipping other frames); answered with close-ok.
async fn channel_closed(raw: &mut Raw) -> (u16, codec::ChannelClose) {
    loop {
        match raw.frame().await {
            Some(codec::Frame::Method(ch, Method::ChannelClose(close))) => {
                raw.method(ch, Method::ChannelCloseOk).await;
                return (ch, close);
            }
            Some(_) => continue,
            None => panic!("connection dropped instead of closing a channel"),
        }
    }
}

/// Waits until the gauge satisfies `ok` (connections report once per turn of their loop, and release what
/// they held when their task ends); returns what it counts.
async fn gauge_until(broker: &TestBroker, ok: impl Fn(u64) -> bool) -> u64 {
    let poll = async {
        loop {
            let used = broker.broker().memory().used();
            if ok(used) {
                return used;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let last = broker.broker().memory().used();
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("the gauge stayed at {last} bytes"))
}

#[tokio::test]
async fn unfinished_messages_beyond_the_connection_cap_close_the_channel_with_406() {
    let broker = capped_broker().await;
    let mut raw = client(&broker, 3).await;
    // Channels 1 and 2 each hold 3 MiB of a 4 MiB message; channel 3's header announces 4 MiB more.
    for ch in 1..=3 {
        raw.send(&unfinished(ch, 4 * MIB, 3 * MIB)).await;
    }
    let (ch, close) = channel_closed(&mut raw).await;
    assert_eq!((ch, close.reply_code), (3, 406));
    assert_eq!((close.class_id, close.method_id), (60, 40));
    assert!(
        close
            .reply_text
            .ends_with(&format!("larger than configured max size {CAP}")),
        "{}",
        close.reply_text
    );
    // The connection and the other channels live on: channel 1 finishes its message.
    raw.send(&memory::bodies(1, MIB)).await;
    raw.sync(1).await;
    assert_eq!(raw.declare_queue(1, "q").await.message_count, 1);
}

#[tokio::test]
async fn a_transaction_beyond_the_connection_cap_closes_the_channel_with_406() {
    let broker = capped_broker().await;
    let mut raw = client(&broker, 2).await;
    raw.method(1, Method::TxSelect).await;
    assert_eq!(raw.next_method().await, (1, Method::TxSelectOk));
    for _ in 0..10 {
        raw.send(&unfinished(1, MIB, MIB)).await;
    }
    let (ch, close) = channel_closed(&mut raw).await;
    assert_eq!((ch, close.reply_code), (1, 406));
    // Nothing was committed, and the connection still serves its other channel.
    raw.sync(2).await;
    let ok = raw.declare_queue(2, "q").await;
    assert_eq!(ok.message_count, 0);
}

#[tokio::test]
async fn held_content_is_counted_while_held_and_given_back() {
    let broker = TestBroker::with(|c| c.memory.high_water = 0).await;
    let mut raw = client(&broker, 2).await;
    raw.method(2, Method::TxSelect).await;
    assert_eq!(raw.next_method().await, (2, Method::TxSelectOk));
    // 3 MiB of an unfinished message on channel 1, a 2 MiB uncommitted publish on channel 2.
    raw.send(&unfinished(1, 4 * MIB, 3 * MIB)).await;
    raw.send(&unfinished(2, 2 * MIB, 2 * MIB)).await;
    raw.sync(2).await;
    let held = broker.broker().memory().used();
    assert!(held >= 5 * MIB as u64, "the gauge counts {held} bytes");
    // Rolled back: the transaction's share leaves the gauge.
    raw.method(2, Method::TxRollback).await;
    assert_eq!(raw.next_method().await, (2, Method::TxRollbackOk));
    raw.sync(2).await;
    let used = broker.broker().memory().used();
    // (Give or take the read buffer, which the connection also counts.)
    assert!(
        used < held - 2 * MIB as u64 + 256 * 1024,
        "after rollback the gauge counts {used} bytes (was {held})"
    );
    // The connection goes: everything it held goes with it.
    raw.method(0, raw::connection_close()).await;
    gauge_until(&broker, |used| used == 0).await;
}

#[tokio::test]
async fn a_no_ack_consumer_that_does_not_read_gets_a_bounded_window() {
    const MESSAGES: usize = 64;
    let broker = TestBroker::with(|c| c.memory.high_water = 0).await;
    let mut consumer = client(&broker, 1).await;
    consumer.method(1, memory::consume_no_ack("q")).await;
    assert!(matches!(
        consumer.next_method().await,
        (1, Method::BasicConsumeOk(_))
    ));
    let mut publisher = client(&broker, 1).await;
    for _ in 0..MESSAGES {
        publisher.send(&memory::message(1, "q", MIB)).await;
    }
    publisher.sync(1).await;
    // What the consumer's socket and the window take is far below 64 MiB: the rest stays queued.
    let ready = publisher.declare_queue(1, "q").await.message_count as usize;
    assert!(
        ready >= MESSAGES / 2,
        "only {ready} of {MESSAGES} messages stayed in the queue"
    );
    // Counted: the queued messages and what was handed out but not written.
    let used = broker.broker().memory().used();
    assert!(
        used >= (ready * MIB) as u64,
        "the gauge counts {used} bytes"
    );
    drop(consumer);
    publisher.method(1, memory::queue_delete("q")).await;
    assert!(matches!(
        publisher.next_method().await,
        (1, Method::QueueDeleteOk(_))
    ));
    drop(publisher);
    gauge_until(&broker, |used| used == 0).await;
}
