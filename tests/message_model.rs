//! The protocol-neutral message model seen from AMQP clients: properties and headers that no AMQP shortstr
//! could hold survive the journal and a restart byte for byte; a dead-lettered message carries RabbitMQ's
//! death headers made from the core's annotations; dead-letter cycles end as RabbitMQ ends them.

mod common;

use std::time::Duration;

use common::{TestBroker, message_count};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};

const WAIT: Duration = Duration::from_secs(10);

async fn durable_queue(ch: &Channel, name: &str, args: FieldTable) {
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), opts, args)
        .await
        .expect("test setup");
}

async fn get(ch: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    tokio::time::timeout(
        WAIT,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get answers")
    .expect("test setup")
}

fn rich_properties() -> BasicProperties {
    let mut nested = FieldTable::default();
    nested.insert("depth".into(), AMQPValue::ShortInt(-2));
    let mut headers = FieldTable::default();
    headers.insert(
        "big".into(),
        AMQPValue::LongString(LongString::from(vec![b'h'; 64 * 1024])),
    );
    headers.insert("i8".into(), AMQPValue::ShortShortInt(-5));
    headers.insert("u16".into(), AMQPValue::ShortUInt(65_000));
    headers.insert("f".into(), AMQPValue::Double(1.5));
    headers.insert("nested".into(), AMQPValue::FieldTable(nested));
    headers.insert(
        "list".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::Boolean(true),
            AMQPValue::LongLongInt(-9),
        ])),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_priority(3)
        .with_content_type(ShortString::from("application/octet-stream"))
        .with_correlation_id(ShortString::from("corr-\u{e9}"))
        .with_message_id(ShortString::from("m-1"))
        .with_timestamp(1_700_000_000)
        .with_expiration(ShortString::from("3600000"))
        .with_headers(headers)
}

#[tokio::test]
async fn a_64_kib_header_and_every_property_survive_the_journal_and_a_restart() {
    let broker = TestBroker::journal().await;
    {
        let (_conn, ch) = broker.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        durable_queue(&ch, "rich", FieldTable::default()).await;
        ch.basic_publish(
            "".into(),
            "rich".into(),
            BasicPublishOptions::default(),
            b"payload",
            rich_properties(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    let got = get(&ch, "rich").await.expect("the message survived");
    assert_eq!(got.delivery.data, b"payload");
    assert_eq!(got.delivery.properties, rich_properties());
}

#[tokio::test]
async fn a_dead_lettered_message_carries_death_headers_after_a_restart() {
    let broker = TestBroker::journal().await;
    {
        let (_conn, ch) = broker.channel().await;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString("dead".into()),
        );
        durable_queue(&ch, "live", args).await;
        durable_queue(&ch, "dead", FieldTable::default()).await;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_expiration(ShortString::from("60000"));
        ch.basic_publish(
            "".into(),
            "live".into(),
            BasicPublishOptions::default(),
            b"x",
            props,
        )
        .await
        .unwrap();
        let d = tokio::time::timeout(
            WAIT,
            ch.basic_get("live".into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .unwrap()
        .unwrap()
        .expect("a message");
        d.reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        // The copy is journaled before the original is settled; wait until it is in place.
        let until = tokio::time::Instant::now() + WAIT;
        while message_count(&ch, "dead").await == 0 {
            assert!(tokio::time::Instant::now() < until, "dead-lettered copy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    let got = get(&ch, "dead")
        .await
        .expect("the dead-lettered copy survived");
    let headers = got
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let headers = headers.inner();
    let deaths = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        other => panic!("x-death missing: {other:?}"),
    };
    let AMQPValue::FieldTable(death) = &deaths[0] else {
        panic!("x-death entry is a table")
    };
    let text = |t: &FieldTable, k: &str| match t.inner().get(k) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(text(death, "queue"), "live");
    assert_eq!(text(death, "reason"), "rejected");
    assert_eq!(text(death, "original-expiration"), "60000");
    assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert!(
        got.delivery.properties.expiration().is_none(),
        "the per-message TTL is removed by dead-lettering"
    );
    let first_queue = match headers.get("x-first-death-queue") {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("x-first-death-queue: {other:?}"),
    };
    assert_eq!(first_queue, "live");
}

/// Two queues whose messages expire at once into each other (each dead-letter exchange also copies to an
/// observer queue): RabbitMQ drops a message on the second lap, so each observer sees it exactly once
/// instead of thousands of times a second.
#[tokio::test]
async fn a_dead_letter_cycle_without_rejection_ends_after_one_lap() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for (queue, dlx, observer) in [("c1", "dlx1", "obs1"), ("c2", "dlx2", "obs2")] {
        ch.exchange_declare(
            dlx.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(0));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        ch.queue_declare(queue.into(), QueueDeclareOptions::default(), args)
            .await
            .unwrap();
        ch.queue_declare(
            observer.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    for (dlx, targets) in [("dlx1", ["c2", "obs1"]), ("dlx2", ["c1", "obs2"])] {
        for t in targets {
            ch.queue_bind(
                t.into(),
                dlx.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
    }
    ch.basic_publish(
        "".into(),
        "c1".into(),
        BasicPublishOptions::default(),
        b"loop",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let until = tokio::time::Instant::now() + WAIT;
    while message_count(&ch, "obs2").await == 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the message reached obs2"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(message_count(&ch, "obs1").await, 1, "one death in c1");
    assert_eq!(
        message_count(&ch, "obs2").await,
        1,
        "one death in c2, then dropped"
    );
    assert_eq!(
        message_count(&ch, "c1").await + message_count(&ch, "c2").await,
        0
    );
}
