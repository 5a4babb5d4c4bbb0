//! Backlogs beyond memory, through AMQP on the journal store: a queue keeps only a budget of bodies loaded
//! (4096 messages or 8 MiB) and pages the rest out to the journal, reading them back ahead of consumers; after a
//! restart, recovery leaves most bodies on disk. Every message must still arrive intact and in order, including
//! from priority queues, after requeues and through dead-lettering of paged messages; what leaves a paged
//! backlog without being delivered (purge, expiry) must stay gone after a restart.

mod common;

use std::time::{Duration, Instant};

use common::TestBroker;
use ferrymq::core::QueueStats;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// The per-queue budget of loaded bodies (`core::queue::actor::PAGE_BUDGET_MESSAGES`).
const BUDGET: u32 = 4096;
/// Loaded entries may exceed the budget by one small read-ahead batch, for a priority level whose loaded head
/// ran empty while lower levels hold the budget (`core::queue::actor::READ_STARVED_MESSAGES`).
const READ_AHEAD: u32 = 64;
const WAIT: Duration = Duration::from_secs(30);

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), durable, args)
        .await
        .expect("declare");
}

async fn stats(broker: &TestBroker, queue: &str) -> QueueStats {
    broker
        .broker()
        .queue_stats("/", queue)
        .await
        .expect("stats of an existing queue")
}

fn body(i: u32, size: usize) -> Vec<u8> {
    let mut b = format!("message {i:08} ").into_bytes();
    b.resize(size.max(b.len()), b'.');
    b
}

/// Publishes persistent messages with confirms (all in flight, then every confirm awaited).
async fn publish_all(ch: &Channel, queue: &str, messages: impl Iterator<Item = (Vec<u8>, u8)>) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let mut confirms = Vec::new();
    for (payload, priority) in messages {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(priority);
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &payload,
                props,
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for c in confirms {
        assert!(c.await.expect("confirm").is_ack(), "publish nacked");
    }
}

/// Consumes `count` messages (acking each) and returns their bodies in delivery order, checking the queue's
/// loaded count stays within the budget while it drains.
async fn drain(broker: &TestBroker, ch: &Channel, queue: &str, count: usize) -> Vec<Vec<u8>> {
    drain_with(broker, ch, queue, count, 0).await
}

/// [`drain`] for a queue that also holds up to `transient` messages that are never paged.
async fn drain_with(
    broker: &TestBroker,
    ch: &Channel,
    queue: &str,
    count: usize,
    transient: u32,
) -> Vec<Vec<u8>> {
    ch.basic_qos(300, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", got.len()))
            .expect("consumer open")
            .expect("delivery");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        got.push(delivery.data);
        if got.len().is_multiple_of(1000) {
            let s = stats(broker, queue).await;
            assert!(
                s.loaded <= BUDGET + READ_AHEAD + transient,
                "loaded {} while draining",
                s.loaded
            );
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_budget_is_paged_and_delivered_intact_in_order() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "backlog", FieldTable::default()).await;
    let n = 6000u32;
    publish_all(&ch, "backlog", (0..n).map(|i| (body(i, 200), 0))).await;
    let s = stats(&broker, "backlog").await;
    assert_eq!(s.messages, n);
    assert!(s.loaded <= BUDGET, "loaded {} of {n}", s.loaded);
    assert!(s.loaded < n, "nothing was paged");
    let got = drain(&broker, &ch, "backlog", n as usize).await;
    let want: Vec<Vec<u8>> = (0..n).map(|i| body(i, 200)).collect();
    assert!(got == want, "messages out of order or damaged");
    assert_eq!(stats(&broker, "backlog").await.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_budget_pages_large_messages_too() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "big", FieldTable::default()).await;
    let n = 100u32;
    let size = 256 * 1024; // 25 MiB in all: over the 8 MiB budget long before the message budget
    publish_all(&ch, "big", (0..n).map(|i| (body(i, size), 0))).await;
    let s = stats(&broker, "big").await;
    assert!(s.loaded <= 32, "loaded {} bodies of 256 KiB", s.loaded);
    let got = drain(&broker, &ch, "big", n as usize).await;
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == body(i as u32, size)),
        "messages out of order or damaged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_priority_queue_delivers_highest_priority_first_in_publish_order() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-max-priority"),
        AMQPValue::ShortShortInt(4),
    );
    declare(&ch, "prio", args).await;
    let n = 6000u32;
    let priority = |i: u32| (i % 5) as u8;
    publish_all(&ch, "prio", (0..n).map(|i| (body(i, 100), priority(i)))).await;
    let s = stats(&broker, "prio").await;
    assert_eq!(s.messages, n);
    assert!(s.loaded <= BUDGET, "loaded {}", s.loaded);
    let got = drain(&broker, &ch, "prio", n as usize).await;
    let mut want: Vec<u32> = (0..n).collect();
    want.sort_by_key(|i| std::cmp::Reverse(priority(*i))); // stable: publish order within a level
    let want: Vec<Vec<u8>> = want.into_iter().map(|i| body(i, 100)).collect();
    assert!(got == want, "priority order broken after paging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_messages_that_expire_are_dead_lettered_with_their_bodies() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dead", FieldTable::default()).await;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        AMQPValue::LongString("dead".into()),
    );
    args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongInt(3000));
    declare(&ch, "expiring", args).await;
    let n = 6000u32;
    publish_all(&ch, "expiring", (0..n).map(|i| (body(i, 100), 0))).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(&broker, "dead").await;
        if s.messages == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} dead-lettered",
            s.messages
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats(&broker, "expiring").await.messages, 0);
    let got = drain(&broker, &ch, "dead", n as usize).await;
    let want: Vec<Vec<u8>> = (0..n).map(|i| body(i, 100)).collect();
    assert!(
        got == want,
        "dead-lettered messages out of order or damaged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_large_backlog_stays_mostly_on_disk_and_is_delivered_in_order() {
    let broker = TestBroker::journal().await;
    let n = 3000u32;
    let size = 8 * 1024; // 24 MiB: three times what recovery and a queue keep loaded
    {
        let (conn, ch) = broker.channel().await;
        declare(&ch, "restart", FieldTable::default()).await;
        publish_all(&ch, "restart", (0..n).map(|i| (body(i, size), 0))).await;
        conn.close(200, "bye".into()).await.expect("close");
    }
    let broker = broker.restart().await;
    let s = stats(&broker, "restart").await;
    assert_eq!(s.messages, n);
    assert!(
        s.loaded * 2 < n,
        "most bodies should stay on disk after recovery: {} of {n} loaded",
        s.loaded
    );
    let (_conn, ch) = broker.channel().await;
    let got = drain(&broker, &ch, "restart", n as usize).await;
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == body(i as u32, size)),
        "messages out of order or damaged after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_go_back_ahead_of_the_paged_backlog() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "requeue", FieldTable::default()).await;
    let n = 6000u32;
    publish_all(&ch, "requeue", (0..n).map(|i| (body(i, 100), 0))).await;
    ch.basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            "requeue".into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut last = None;
    for _ in 0..100 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("delivery in time")
            .expect("consumer open")
            .expect("delivery");
        last = Some(d);
    }
    ch.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    let last = last.expect("a delivery");
    last.nack(BasicNackOptions {
        multiple: true,
        requeue: true,
    })
    .await
    .expect("nack");
    let (_conn2, ch2) = broker.channel().await;
    let got = drain(&broker, &ch2, "requeue", n as usize).await;
    let want: Vec<Vec<u8>> = (0..n).map(|i| body(i, 100)).collect();
    assert!(got == want, "requeued messages out of place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_paged_backlog_does_not_come_back_after_a_restart() {
    let broker = TestBroker::journal().await;
    let n = 8000u32;
    {
        let (conn, ch) = broker.channel().await;
        declare(&ch, "purged", FieldTable::default()).await;
        publish_all(&ch, "purged", (0..n).map(|i| (body(i, 100), 0))).await;
        let if_empty = QueueDeleteOptions {
            if_empty: true,
            ..Default::default()
        };
        assert!(
            ch.queue_delete("purged".into(), if_empty).await.is_err(),
            "a paged backlog is not empty"
        );
        let ch = conn.create_channel().await.expect("channel");
        let purged = ch
            .queue_purge("purged".into(), QueuePurgeOptions::default())
            .await
            .expect("purge");
        assert_eq!(purged, n);
        conn.close(200, "bye".into()).await.expect("close");
    }
    let broker = broker.restart().await;
    assert_eq!(stats(&broker, "purged").await.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_messages_that_expire_without_a_dead_letter_exchange_stay_gone_after_a_restart() {
    let broker = TestBroker::journal().await;
    let n = 6000u32;
    {
        let (conn, ch) = broker.channel().await;
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongInt(300));
        declare(&ch, "ttl", args).await;
        publish_all(&ch, "ttl", (0..n).map(|i| (body(i, 100), 0))).await;
        let deadline = Instant::now() + WAIT;
        while stats(&broker, "ttl").await.messages > 0 {
            assert!(Instant::now() < deadline, "paged messages did not expire");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        conn.close(200, "bye".into()).await.expect("close");
    }
    let broker = broker.restart().await;
    assert_eq!(stats(&broker, "ttl").await.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_priority_backlog_with_transient_messages_drains_in_priority_then_publish_order() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-max-priority"),
        AMQPValue::ShortShortInt(2),
    );
    declare(&ch, "mixed", args).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    // Low priority fills the budget first; then high priority, every tenth message transient.
    let n = 9000u32;
    let priority = |i: u32| if i < 4500 { 0 } else { 2 };
    let mut confirms = Vec::new();
    for i in 0..n {
        let mode = if i % 10 == 0 { 1 } else { 2 };
        let props = BasicProperties::default()
            .with_delivery_mode(mode)
            .with_priority(priority(i));
        let confirm = ch
            .basic_publish(
                "".into(),
                "mixed".into(),
                BasicPublishOptions::default(),
                &body(i, 100),
                props,
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for c in confirms {
        assert!(c.await.expect("confirm").is_ack());
    }
    let s = stats(&broker, "mixed").await;
    assert_eq!(s.messages, n);
    assert!(s.loaded <= BUDGET + n / 10, "loaded {}", s.loaded);
    let got = drain_with(&broker, &ch, "mixed", n as usize, n / 10).await;
    let want: Vec<Vec<u8>> = (4500..n).chain(0..4500).map(|i| body(i, 100)).collect();
    assert!(got == want, "order broken");
}

/// Measurement tool, not a test: fills or drains a durable queue `backlog` on a running broker (the bench
/// deletes its queues when it finishes, so it cannot leave a backlog behind). Run with
/// `FERRYMQ_URL=amqp://guest:guest@127.0.0.1:5699/%2f BACKLOG_MODE=publish|drain BACKLOG_COUNT=1000000
/// cargo test --release --test store_paging backlog_tool -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement tool; needs a running broker (see the doc comment)"]
async fn backlog_tool() {
    let url = std::env::var("FERRYMQ_URL").expect("FERRYMQ_URL");
    let mode = std::env::var("BACKLOG_MODE").unwrap_or_else(|_| "publish".into());
    let count: u64 = std::env::var("BACKLOG_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1_000_000);
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, "backlog", FieldTable::default()).await;
    let started = Instant::now();
    if mode == "publish" {
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let payload = vec![b'x'; 1024];
        let mut window = std::collections::VecDeque::new();
        for _ in 0..count {
            let props = BasicProperties::default().with_delivery_mode(2);
            let confirm = ch
                .basic_publish(
                    "".into(),
                    "backlog".into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props,
                )
                .await
                .expect("publish");
            window.push_back(confirm);
            if window.len() >= 4096
                && let Some(c) = window.pop_front()
            {
                assert!(c.await.expect("confirm").is_ack());
            }
        }
        for c in window {
            assert!(c.await.expect("confirm").is_ack());
        }
    } else {
        ch.basic_qos(2000, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = ch
            .basic_consume(
                "backlog".into(),
                "drain".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut got = 0u64;
        while got < count {
            let d = consumer.next().await.expect("open").expect("delivery");
            got += 1;
            if got.is_multiple_of(500) || got == count {
                d.ack(BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backlog_tool mode={mode} count={count} seconds={secs:.1} rate={:.0}/s",
        count as f64 / secs
    );
}
