//! The memory high-water mark holds under abuse, against the real binary with a 50 MB mark: each scenario
//! tries to make the broker hold 400 MiB and asserts that its resident set (VmRSS) stays within the mark plus
//! a fixed margin, then that a normal client is still served. Before the broker counted every byte it holds
//! for a client and checked the alarm before each read, each of these held all that was sent.
//!
//! The scenarios: a fast publisher with no consumer; unfinished messages (a content header announcing
//! 16 MiB and part of its body) on 100 channels; publishes inside a transaction that is never committed;
//! small bodies read right after large frames (each used to pin its whole read buffer); and a no-ack consumer
//! that never reads its socket.

mod common;
mod memory;
mod raw;

use bytes::Bytes;
use ferrymq_amqp_codec::Method;
use memory::{MIB, VOLUME};

/// A publisher of 1 MiB messages to a queue nobody consumes is blocked once the queue holds the mark.
#[tokio::test]
async fn a_fast_publisher_without_consumer_is_stopped_at_the_mark() {
    let broker = memory::broker();
    let mut raw = memory::client(broker.amqp_addr()).await;
    memory::declare(&mut raw, "q").await;
    let message = memory::message(1, "q", MIB).freeze();
    let scenario = "1 MiB messages, no consumer";
    memory::flood_until_blocked(&broker, &mut raw, scenario, |_| message.clone()).await;
    drop(raw);
    memory::still_serves(broker.amqp_addr(), &["q"]).await;
}

/// Content headers announcing 16 MiB on 100 channels, each followed by 4 MiB of body and never finished:
/// the unfinished content counts against the mark.
#[tokio::test]
async fn unfinished_messages_on_many_channels_count_against_the_mark() {
    const CHANNELS: usize = 100;
    const DECLARED: u64 = 16 * MIB as u64;
    const PIECES: usize = VOLUME / CHANNELS / MIB; // 1 MiB pieces of body per channel
    let broker = memory::broker();
    let mut raw = memory::client(broker.amqp_addr()).await;
    for ch in 2..=CHANNELS as u16 {
        memory::open_channel(&mut raw, ch).await;
    }
    memory::declare(&mut raw, "q").await;
    let scenario = "unfinished 16 MiB messages on 100 channels";
    memory::flood_until_blocked(&broker, &mut raw, scenario, |i| {
        let ch = (i / PIECES + 1) as u16;
        let mut piece = bytes::BytesMut::new();
        if i % PIECES == 0 {
            piece.extend_from_slice(&memory::method(ch, memory::basic_publish("q")));
            piece.extend_from_slice(&memory::header(ch, DECLARED));
        }
        piece.extend_from_slice(&memory::bodies(ch, MIB));
        piece.freeze()
    })
    .await;
    drop(raw);
    memory::still_serves(broker.amqp_addr(), &[]).await;
}

/// Publishes inside a transaction that is never committed count against the mark.
#[tokio::test]
async fn uncommitted_publishes_count_against_the_mark() {
    let broker = memory::broker();
    let mut raw = memory::client(broker.amqp_addr()).await;
    memory::declare(&mut raw, "q").await;
    let answer = memory::call(&mut raw, 1, Method::TxSelect).await;
    assert_eq!(answer, (1, Method::TxSelectOk));
    let message = memory::message(1, "q", MIB).freeze();
    let scenario = "1 MiB publishes in an open transaction";
    memory::flood_until_blocked(&broker, &mut raw, scenario, |_| message.clone()).await;
    drop(raw);
    memory::still_serves(broker.amqp_addr(), &[]).await;
}

/// A 1-byte message read right after a 120 KiB one (which nothing routes) is copied out of the read buffer,
/// so the queued small messages do not keep every read buffer alive.
#[tokio::test]
async fn small_bodies_do_not_pin_large_read_buffers() {
    let broker = memory::broker();
    let mut raw = memory::client(broker.amqp_addr()).await;
    memory::declare(&mut raw, "q").await;
    let mut pair = memory::message(1, "nowhere", 120 * 1024);
    pair.extend_from_slice(&memory::message(1, "q", 1));
    let pair: Bytes = pair.freeze();
    let sent = memory::flood(&mut raw.stream, VOLUME, |_| pair.clone()).await;
    let pairs = sent / pair.len();
    raw.sync(1).await;
    let queued = memory::declare(&mut raw, "q").await;
    assert_eq!(queued as usize, pairs, "every small message is queued");
    memory::assert_bounded(&broker, "1-byte bodies after 120 KiB frames", sent);
    drop(raw);
    memory::still_serves(broker.amqp_addr(), &["q"]).await;
}

/// A no-ack consumer that never reads: what is handed to its connection is bounded in bytes and counted, so
/// the rest stays in the queue and the publisher is blocked at the mark.
#[tokio::test]
async fn a_no_ack_consumer_that_never_reads_holds_a_bounded_window() {
    let broker = memory::broker();
    let mut consumer = memory::client(broker.amqp_addr()).await;
    memory::declare(&mut consumer, "q").await;
    let answer = memory::call(&mut consumer, 1, memory::consume_no_ack("q")).await;
    assert!(matches!(answer, (1, Method::BasicConsumeOk(_))));
    let mut publisher = memory::client(broker.amqp_addr()).await;
    let message = memory::message(1, "q", MIB).freeze();
    let scenario = "no-ack consumer that never reads";
    memory::flood_until_blocked(&broker, &mut publisher, scenario, |_| message.clone()).await;
    drop(publisher);
    drop(consumer);
    memory::still_serves(broker.amqp_addr(), &["q"]).await;
}
