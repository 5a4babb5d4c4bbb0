//! Durability through AMQP with the journal store: what survives a clean restart (durable definitions and
//! persistent messages in durable queues, unacked ones as redelivered) and what does not (transient ones);
//! confirms in confirm mode only after the sync; transactions committed durably; TTLs that keep counting from the
//! publish while the broker is down.

mod common;

use std::time::Duration;

use common::TestBroker;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};

const WAIT: Duration = Duration::from_secs(10);

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn count(ch: &Channel, queue: &str) -> Option<u32> {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), opts, FieldTable::default())
        .await
        .ok()
        .map(|q| q.message_count())
}

/// A channel in confirm mode.
async fn confirming_channel(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    (conn, ch)
}

#[tokio::test]
async fn durable_definitions_and_persistent_messages_survive_a_restart() {
    let broker = TestBroker::journal().await;
    {
        let (conn, ch) = confirming_channel(&broker).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            "dx".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.exchange_declare(
            "tx-ex".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_declare("dq".into(), durable, FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare(
            "tq".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "dq".into(),
            "dx".into(),
            "a.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        for i in 0..50u32 {
            ch.basic_publish(
                "dx".into(),
                "a.b".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        ch.basic_publish(
            "dx".into(),
            "a.b".into(),
            BasicPublishOptions::default(),
            b"transient",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        ch.basic_publish(
            "".into(),
            "tq".into(),
            BasicPublishOptions::default(),
            b"in a transient queue",
            persistent(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        // Take ten and leave them unacked: they come back, flagged redelivered.
        ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch
            .basic_consume(
                "dq".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in 0..10 {
            tokio::time::timeout(WAIT, consumer.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        // Ack nothing; close the connection after the restart begins.
        drop(consumer);
        let _ = conn;
        let broker = broker.restart().await;
        let (_conn, ch) = broker.channel().await;
        assert_eq!(
            count(&ch, "dq").await,
            Some(50),
            "every persistent message is back, the transient one is not"
        );
        let (_c2, ch2) = broker.channel().await;
        assert_eq!(count(&ch2, "tq").await, None, "the transient queue is gone");
        let (_c3, ch3) = broker.channel().await;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        ch3.exchange_declare(
            "dx".into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await
        .expect("durable exchange back");
        let err = ch3
            .exchange_declare(
                "tx-ex".into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await;
        assert!(err.is_err(), "the transient exchange is gone");
        // The binding is back: publish through it again.
        let (_c4, ch4) = broker.channel().await;
        ch4.basic_publish(
            "dx".into(),
            "a.z".into(),
            BasicPublishOptions::default(),
            b"via binding",
            persistent(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        assert_eq!(count(&ch4, "dq").await, Some(51));
        let mut seen = Vec::new();
        let mut redelivered = 0;
        while let Some(m) = ch4
            .basic_get("dq".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            redelivered += usize::from(m.delivery.redelivered);
            seen.push(m.delivery.data.clone());
        }
        assert_eq!(seen.len(), 51);
        assert_eq!(
            redelivered, 50,
            "recovered messages are flagged redelivered"
        );
        assert_eq!(seen[0], 0u32.to_be_bytes(), "recovered in publish order");
        broker.stop().await;
    }
}

/// Waits until `queue` holds `want` messages (expiry runs on the queue's timer, not at the declare).
async fn wait_for_count(ch: &Channel, queue: &str, want: u32, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = count(ch, queue).await;
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} holds {got:?} messages, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn queue_and_message_ttls_count_from_the_publish_across_a_restart() {
    let ttl_ms = 3_000;
    let broker = TestBroker::journal().await;
    {
        let (conn, ch) = confirming_channel(&broker).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let queues = [
            ("short", Some(ttl_ms)),
            ("long", Some(600_000)),
            ("per-message", None),
            ("plain", None),
        ];
        for (queue, ttl) in queues {
            let mut args = FieldTable::default();
            if let Some(ttl) = ttl {
                args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongInt(ttl));
            }
            ch.queue_declare(queue.into(), durable, args).await.unwrap();
        }
        let mut confirms = Vec::new();
        for i in 0..50u32 {
            for (queue, _) in queues {
                let mut props = persistent();
                if queue == "per-message" {
                    // A per-message TTL as long as the short queue's.
                    props = props.with_expiration(ttl_ms.to_string().into());
                }
                let c = ch
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &i.to_be_bytes(),
                        props,
                    )
                    .await
                    .unwrap();
                confirms.push(c);
            }
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
        conn.close(200, "bye".into()).await.unwrap();
    }
    // Down for longer than the short TTL: what had 3 s to live when published is dead when the broker is back,
    // instead of getting 3 s more from the recovery; the rest is all there.
    let broker = broker
        .restart_after(Duration::from_millis(ttl_ms as u64 + 500))
        .await;
    let (_conn, ch) = broker.channel().await;
    let within = Duration::from_millis(ttl_ms as u64 / 2);
    wait_for_count(&ch, "short", 0, within).await;
    wait_for_count(&ch, "per-message", 0, within).await;
    for queue in ["long", "plain"] {
        assert_eq!(count(&ch, queue).await, Some(50), "{queue}");
    }
}

#[tokio::test]
async fn acked_messages_stay_acked_after_a_restart() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        "acked".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..20u8 {
        ch.basic_publish(
            "".into(),
            "acked".into(),
            BasicPublishOptions::default(),
            &[i],
            persistent(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    for _ in 0..15 {
        let m = ch
            .basic_get("acked".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(count(&ch, "acked").await, Some(5));
    let first = ch
        .basic_get("acked".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.delivery.data, [15]);
    broker.stop().await;
}

#[tokio::test]
async fn deleted_durable_queue_stays_deleted_after_a_restart() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        "gone".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "gone".into(),
        BasicPublishOptions::default(),
        b"x",
        persistent(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    ch.queue_delete("gone".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(count(&ch, "gone").await, None);
    broker.stop().await;
}

#[tokio::test]
async fn transaction_commit_waits_for_the_journal() {
    let broker = TestBroker::journal().await;
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        "txd".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.tx_select().await.unwrap();
    for i in 0..10u8 {
        ch.basic_publish(
            "".into(),
            "txd".into(),
            BasicPublishOptions::default(),
            &[i],
            persistent(),
        )
        .await
        .unwrap();
    }
    ch.tx_commit().await.unwrap();
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(count(&ch, "txd").await, Some(10));
    broker.stop().await;
}
