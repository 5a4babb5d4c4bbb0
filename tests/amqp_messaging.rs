//! AMQP 0-9-1 messaging against the real broker with lapin: publish/consume, confirms, returns, get, acks,
//! requeue, prefetch, transactions, exchanges of every type, dead-lettering, TTL, limits and priorities.

mod common;

use std::time::Duration;

use common::TestBroker;
use futures_lite::StreamExt;
use lapin::Confirmation;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

const WAIT: Duration = Duration::from_secs(5);

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .expect("queue.declare");
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("publish confirm");
}

async fn get_body(ch: &Channel, queue: &str) -> Option<Vec<u8>> {
    let msg = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")?;
    Some(msg.delivery.data.clone())
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
    .expect("queue.bind");
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

#[tokio::test]
async fn publish_then_consume_through_the_default_exchange() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "hello", FieldTable::default()).await;
    let mut consumer = ch
        .basic_consume(
            "hello".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..100u32 {
        publish(
            &ch,
            "",
            "hello",
            &i.to_be_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    for i in 0..100u32 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.data, i.to_be_bytes(), "messages arrive in publish order");
        assert!(!d.redelivered);
        assert_eq!(d.routing_key.as_str(), "hello");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn large_message_spans_many_frames_and_arrives_intact() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "big", FieldTable::default()).await;
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", "big", &body, BasicProperties::default()).await;
    assert_eq!(get_body(&ch, "big").await.unwrap(), body);
}

#[tokio::test]
async fn confirms_ack_every_publish() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare(&ch, "confirmed", FieldTable::default()).await;
    let mut confirms = Vec::new();
    for _ in 0..500 {
        let c = ch
            .basic_publish(
                "".into(),
                "confirmed".into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(c);
    }
    for c in confirms {
        assert!(matches!(c.await.unwrap(), Confirmation::Ack(None)));
    }
    let q = ch
        .queue_declare(
            "confirmed".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 500);
}

#[tokio::test]
async fn mandatory_unroutable_message_is_returned_with_no_route() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let Confirmation::Ack(Some(returned)) = confirm else {
        panic!("expected ack with a returned message, got {confirm:?}")
    };
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"lost");
}

#[tokio::test]
async fn basic_get_returns_messages_then_get_empty() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "g", FieldTable::default()).await;
    publish(&ch, "", "g", b"one", BasicProperties::default()).await;
    publish(&ch, "", "g", b"two", BasicProperties::default()).await;
    let first = ch
        .basic_get("g".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.delivery.data, b"one");
    assert_eq!(first.message_count, 1);
    first
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(get_body(&ch, "g").await.unwrap(), b"two");
    assert!(
        ch.basic_get("g".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn nack_with_requeue_redelivers_with_the_redelivered_flag() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "rq", FieldTable::default()).await;
    publish(&ch, "", "rq", b"again", BasicProperties::default()).await;
    let m = ch
        .basic_get("rq".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(!m.delivery.redelivered);
    m.delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    let again = ch
        .basic_get("rq".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery.data, b"again");
    assert!(again.delivery.redelivered);
}

#[tokio::test]
async fn unacked_messages_return_in_order_when_the_channel_closes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "order", FieldTable::default()).await;
    for i in 0..10u8 {
        publish(&ch, "", "order", &[i], BasicProperties::default()).await;
    }
    let ch2 = conn.create_channel().await.unwrap();
    let mut consumer = ch2
        .basic_consume(
            "order".into(),
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
    ch2.close(200, "bye".into()).await.unwrap();
    for i in 0..10u8 {
        let m = ch
            .basic_get("order".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("requeued");
        assert_eq!(m.delivery.data, [i]);
        assert!(m.delivery.redelivered);
    }
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries_per_consumer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "pf", FieldTable::default()).await;
    for i in 0..20u8 {
        publish(&ch, "", "pf", &[i], BasicProperties::default()).await;
    }
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "pf".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(WAIT, consumer.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "a 4th delivery exceeded prefetch 3"
    );
    got[0].ack(BasicAckOptions::default()).await.unwrap();
    let fourth = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(fourth.data, [3]);
}

#[tokio::test]
async fn topic_fanout_and_headers_exchanges_route_as_rabbitmq() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for q in ["t-star", "t-hash", "fan1", "fan2", "h-all", "h-any"] {
        declare(&ch, q, FieldTable::default()).await;
    }
    bind(
        &ch,
        "t-star",
        "amq.topic",
        "sensors.*.temp",
        FieldTable::default(),
    )
    .await;
    bind(
        &ch,
        "t-hash",
        "amq.topic",
        "sensors.#",
        FieldTable::default(),
    )
    .await;
    publish(
        &ch,
        "amq.topic",
        "sensors.room1.temp",
        b"a",
        BasicProperties::default(),
    )
    .await;
    publish(
        &ch,
        "amq.topic",
        "sensors.room1.humidity.x",
        b"b",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(get_body(&ch, "t-star").await.unwrap(), b"a");
    assert!(get_body(&ch, "t-star").await.is_none());
    assert_eq!(get_body(&ch, "t-hash").await.unwrap(), b"a");
    assert_eq!(get_body(&ch, "t-hash").await.unwrap(), b"b");

    ch.exchange_declare(
        "fan".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for q in ["fan1", "fan2"] {
        bind(&ch, q, "fan", "", FieldTable::default()).await;
    }
    publish(&ch, "fan", "ignored", b"f", BasicProperties::default()).await;
    assert_eq!(get_body(&ch, "fan1").await.unwrap(), b"f");
    assert_eq!(get_body(&ch, "fan2").await.unwrap(), b"f");

    let all = args(&[("x-match", text("all")), ("a", text("1")), ("b", text("2"))]);
    let any = args(&[("x-match", text("any")), ("a", text("1")), ("b", text("2"))]);
    bind(&ch, "h-all", "amq.headers", "", all).await;
    bind(&ch, "h-any", "amq.headers", "", any).await;
    let only_a = BasicProperties::default().with_headers(args(&[("a", text("1"))]));
    publish(&ch, "amq.headers", "", b"h", only_a).await;
    assert!(get_body(&ch, "h-all").await.is_none());
    assert_eq!(get_body(&ch, "h-any").await.unwrap(), b"h");
}

#[tokio::test]
async fn exchange_to_exchange_binding_and_alternate_exchange() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.exchange_declare(
        "src".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "dst".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "ae".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "with-ae".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args(&[("alternate-exchange", text("ae"))]),
    )
    .await
    .unwrap();
    declare(&ch, "via-e2e", FieldTable::default()).await;
    declare(&ch, "unrouted", FieldTable::default()).await;
    ch.exchange_bind(
        "dst".into(),
        "src".into(),
        "k".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    bind(&ch, "via-e2e", "dst", "", FieldTable::default()).await;
    bind(&ch, "unrouted", "ae", "", FieldTable::default()).await;
    publish(&ch, "src", "k", b"e2e", BasicProperties::default()).await;
    publish(&ch, "src", "other", b"dropped", BasicProperties::default()).await;
    publish(&ch, "with-ae", "nobody", b"alt", BasicProperties::default()).await;
    assert_eq!(get_body(&ch, "via-e2e").await.unwrap(), b"e2e");
    assert!(get_body(&ch, "via-e2e").await.is_none());
    assert_eq!(get_body(&ch, "unrouted").await.unwrap(), b"alt");
}

#[tokio::test]
async fn rejected_message_is_dead_lettered_with_x_death() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", FieldTable::default()).await;
    declare(
        &ch,
        "work",
        args(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("dlq")),
        ]),
    )
    .await;
    publish(&ch, "", "work", b"bad", BasicProperties::default()).await;
    let m = ch
        .basic_get("work".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let dead = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = ch
                .basic_get("dlq".into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(dead.delivery.data, b"bad");
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .expect("x-death headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death: {headers:?}")
    };
    let AMQPValue::FieldTable(first) = &deaths.as_slice()[0] else {
        panic!("x-death entry is not a table")
    };
    assert_eq!(first.inner().get("reason"), Some(&text("rejected")));
    assert_eq!(first.inner().get("queue"), Some(&text("work")));
}

#[tokio::test]
async fn message_ttl_expires_messages_to_the_dead_letter_exchange() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "expired", FieldTable::default()).await;
    declare(
        &ch,
        "short",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(50)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("expired")),
        ]),
    )
    .await;
    publish(&ch, "", "short", b"ttl", BasicProperties::default()).await;
    publish(
        &ch,
        "",
        "short",
        b"per-message",
        BasicProperties::default().with_expiration("10".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(get_body(&ch, "short").await.is_none());
    assert_eq!(get_body(&ch, "expired").await.unwrap(), b"ttl");
    assert_eq!(get_body(&ch, "expired").await.unwrap(), b"per-message");
}

#[tokio::test]
async fn max_length_drops_head_or_nacks_publishes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "capped",
        args(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await;
    for b in [b"1", b"2", b"3"] {
        publish(&ch, "", "capped", b, BasicProperties::default()).await;
    }
    assert_eq!(get_body(&ch, "capped").await.unwrap(), b"2");
    assert_eq!(get_body(&ch, "capped").await.unwrap(), b"3");

    declare(
        &ch,
        "full",
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let first = ch
        .basic_publish(
            "".into(),
            "full".into(),
            BasicPublishOptions::default(),
            b"a",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let second = ch
        .basic_publish(
            "".into(),
            "full".into(),
            BasicPublishOptions::default(),
            b"b",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(first.is_ack());
    assert!(
        second.is_nack(),
        "reject-publish nacks the publish that does not fit"
    );
}

#[tokio::test]
async fn priority_queue_delivers_higher_priority_first() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "prio",
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
    )
    .await;
    for p in [1u8, 5, 9, 5] {
        publish(
            &ch,
            "",
            "prio",
            &[p],
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let order: Vec<u8> = futures_lite::stream::iter(0..4)
        .then(|_| get_body(&ch, "prio"))
        .map(|b| b.unwrap()[0])
        .collect()
        .await;
    assert_eq!(order, vec![9, 5, 5, 1]);
}

#[tokio::test]
async fn transactions_publish_on_commit_only() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "txq", FieldTable::default()).await;
    ch.tx_select().await.unwrap();
    publish(&ch, "", "txq", b"rolled back", BasicProperties::default()).await;
    ch.tx_rollback().await.unwrap();
    publish(&ch, "", "txq", b"committed", BasicProperties::default()).await;
    let before = ch
        .queue_declare(
            "txq".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(before.message_count(), 0);
    ch.tx_commit().await.unwrap();
    assert_eq!(get_body(&ch, "txq").await.unwrap(), b"committed");
    assert!(get_body(&ch, "txq").await.is_none());
}

/// An operation on a fresh channel that is expected to fail.
type ChannelOp = Box<dyn Fn(Channel) -> futures_lite::future::Boxed<Result<(), lapin::Error>>>;

#[tokio::test]
async fn errors_close_the_channel_with_rabbitmq_codes() {
    let broker = TestBroker::start().await;
    let (conn, _ch) = broker.channel().await;
    let cases: Vec<(u16, ChannelOp)> = vec![
        (
            404,
            Box::new(|ch| {
                Box::pin(async move {
                    ch.queue_declare(
                        "missing".into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map(|_| ())
                })
            }),
        ),
        (
            406,
            Box::new(|ch| {
                Box::pin(async move {
                    ch.exchange_declare(
                        "bad-type".into(),
                        ExchangeKind::Custom("zzz".into()),
                        ExchangeDeclareOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                })
            }),
        ),
        (
            406,
            Box::new(|ch| {
                Box::pin(async move {
                    ch.queue_declare(
                        "qq".into(),
                        QueueDeclareOptions::default(),
                        args(&[("x-queue-type", text("quorum"))]),
                    )
                    .await
                    .map(|_| ())
                })
            }),
        ),
        (
            403,
            Box::new(|ch| {
                Box::pin(async move {
                    ch.exchange_declare(
                        "amq.mine".into(),
                        ExchangeKind::Direct,
                        ExchangeDeclareOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                })
            }),
        ),
        (
            404,
            Box::new(|ch| {
                Box::pin(async move {
                    ch.confirm_select(ConfirmSelectOptions::default()).await?;
                    ch.basic_publish(
                        "no-such-exchange".into(),
                        "k".into(),
                        BasicPublishOptions::default(),
                        b"x",
                        BasicProperties::default(),
                    )
                    .await?
                    .await
                    .map(|_| ())
                })
            }),
        ),
    ];
    for (expected, op) in cases {
        let ch = conn.create_channel().await.unwrap();
        let err = op(ch).await.expect_err("operation should fail");
        assert_eq!(reply_code(&err), Some(expected), "{err:?}");
    }
    // The connection survives channel errors.
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "still-works", FieldTable::default()).await;
}

#[tokio::test]
async fn redeclare_with_different_properties_is_inequivalent() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "eq", FieldTable::default()).await;
    let err = ch
        .queue_declare(
            "eq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "eq", FieldTable::default()).await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection_and_deleted_with_it() {
    let broker = TestBroker::start().await;
    let (owner, ch) = broker.channel().await;
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (_other, ch2) = broker.channel().await;
    let err = ch2
        .basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(405));
    owner.close(200, "bye".into()).await.unwrap();
    let (_third, ch3) = broker.channel().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = ch3
        .queue_declare(
            "mine".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "doomed", FieldTable::default()).await;
    let mut consumer = ch
        .basic_consume(
            "doomed".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_delete("doomed".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let end = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("consumer notified");
    assert!(
        end.is_none() || end.unwrap().is_err(),
        "the consumer stream ends when the server cancels it"
    );
}

#[tokio::test]
async fn consumer_priorities_prefer_the_higher_priority_consumer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "cp", FieldTable::default()).await;
    let mut low = ch
        .basic_consume(
            "cp".into(),
            "low".into(),
            BasicConsumeOptions::default(),
            args(&[("x-priority", AMQPValue::LongInt(1))]),
        )
        .await
        .unwrap();
    let mut high = ch
        .basic_consume(
            "cp".into(),
            "high".into(),
            BasicConsumeOptions::default(),
            args(&[("x-priority", AMQPValue::LongInt(10))]),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        publish(&ch, "", "cp", b"m", BasicProperties::default()).await;
    }
    for _ in 0..5 {
        tokio::time::timeout(WAIT, high.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), low.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn direct_reply_to_routes_replies_to_the_requesting_channel() {
    let broker = TestBroker::start().await;
    let (_conn, client) = broker.channel().await;
    let (_s, server) = broker.channel().await;
    declare(&server, "rpc", FieldTable::default()).await;
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish(
        &client,
        "",
        "rpc",
        b"ping",
        BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await;
    let req = server
        .basic_get("rpc".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    let reply_to = req.delivery.properties.reply_to().clone().unwrap();
    assert!(reply_to.as_str().starts_with("amq.rabbitmq.reply-to."));
    publish(
        &server,
        "",
        reply_to.as_str(),
        b"pong",
        BasicProperties::default(),
    )
    .await;
    let reply = tokio::time::timeout(WAIT, replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.data, b"pong");
}

#[tokio::test]
async fn wrong_password_and_unknown_vhost_are_refused() {
    let broker = TestBroker::start().await;
    let addr = broker.amqp_addr();
    let bad_pass = Connection::connect(
        &format!("amqp://guest:nope@{addr}/%2f"),
        ConnectionProperties::default(),
    )
    .await;
    assert!(bad_pass.is_err());
    let bad_vhost = Connection::connect(
        &format!("amqp://guest:guest@{addr}/nope"),
        ConnectionProperties::default(),
    )
    .await;
    let err = bad_vhost.expect_err("unknown vhost");
    assert_eq!(reply_code(&err), Some(530), "{err:?}");
}

#[tokio::test]
async fn single_active_consumer_gets_everything_until_it_cancels() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "sac",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let first = ch
        .basic_consume(
            "sac".into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut second = ch
        .basic_consume(
            "sac".into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut first = first;
    for _ in 0..3 {
        publish(&ch, "", "sac", b"m", BasicProperties::default()).await;
    }
    for _ in 0..3 {
        let d = tokio::time::timeout(WAIT, first.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), second.next())
            .await
            .is_err()
    );
    ch.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish(&ch, "", "sac", b"next", BasicProperties::default()).await;
    let d = tokio::time::timeout(WAIT, second.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"next");
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer_and_x_expires_with_idleness() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.queue_declare(
        "ad".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_consume(
        "ad".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    declare(&ch, "idle", args(&[("x-expires", AMQPValue::LongInt(100))])).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for q in ["ad", "idle"] {
        let ch = conn.create_channel().await.unwrap();
        let err = ch
            .queue_declare(
                q.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(reply_code(&err), Some(404), "queue {q} should be gone");
    }
}

#[tokio::test]
async fn global_prefetch_limits_the_whole_channel() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "ga", FieldTable::default()).await;
    declare(&ch, "gb", FieldTable::default()).await;
    for q in ["ga", "gb"] {
        for _ in 0..5 {
            publish(&ch, "", q, b"m", BasicProperties::default()).await;
        }
    }
    ch.basic_qos(4, BasicQosOptions { global: true })
        .await
        .unwrap();
    let a = ch
        .basic_consume(
            "ga".into(),
            "a".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let b = ch
        .basic_consume(
            "gb".into(),
            "b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut merged = futures_lite::stream::or(a, b);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::time::timeout(WAIT, merged.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), merged.next())
            .await
            .is_err(),
        "channel limit 4 exceeded"
    );
    held.pop()
        .unwrap()
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, merged.next())
        .await
        .expect("one more after an ack")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn basic_recover_redelivers_unacked_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "rec", FieldTable::default()).await;
    publish(&ch, "", "rec", b"r", BasicProperties::default()).await;
    let mut consumer = ch
        .basic_consume(
            "rec".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.redelivered);
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let again = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(again.redelivered);
    assert_eq!(again.data, b"r");
}

#[tokio::test]
async fn dead_letter_on_max_length_overflow_and_cc_routing() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "overflowed", FieldTable::default()).await;
    declare(
        &ch,
        "one",
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("overflowed")),
        ]),
    )
    .await;
    publish(&ch, "", "one", b"old", BasicProperties::default()).await;
    publish(&ch, "", "one", b"new", BasicProperties::default()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get_body(&ch, "overflowed").await.unwrap(), b"old");
    assert_eq!(get_body(&ch, "one").await.unwrap(), b"new");

    declare(&ch, "cc-a", FieldTable::default()).await;
    declare(&ch, "cc-b", FieldTable::default()).await;
    let cc = BasicProperties::default().with_headers(args(&[(
        "CC",
        AMQPValue::FieldArray(vec![text("cc-b")].into()),
    )]));
    publish(&ch, "", "cc-a", b"both", cc).await;
    assert_eq!(get_body(&ch, "cc-a").await.unwrap(), b"both");
    assert_eq!(get_body(&ch, "cc-b").await.unwrap(), b"both");
}

#[tokio::test]
async fn deleting_missing_queues_and_exchanges_succeeds_as_in_rabbitmq() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let deleted = ch
        .queue_delete("never-declared".into(), QueueDeleteOptions::default())
        .await;
    assert_eq!(deleted.expect("delete-ok"), 0);
    ch.exchange_delete("never-declared".into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete-ok");
    declare(&ch, "after", FieldTable::default()).await;
}

#[tokio::test]
async fn routing_follows_binding_and_queue_changes_between_publishes_on_one_channel() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let (_admin_conn, admin) = broker.channel().await;
    declare(&ch, "rc-a", FieldTable::default()).await;
    bind(&ch, "rc-a", "amq.direct", "k", FieldTable::default()).await;
    publish(&ch, "amq.direct", "k", b"1", BasicProperties::default()).await;
    // Another connection changes the topology; the publishing channel must see it on its next publish.
    declare(&admin, "rc-b", FieldTable::default()).await;
    bind(&admin, "rc-b", "amq.direct", "k", FieldTable::default()).await;
    publish(&ch, "amq.direct", "k", b"2", BasicProperties::default()).await;
    admin
        .queue_unbind(
            "rc-a".into(),
            "amq.direct".into(),
            "k".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish(&ch, "amq.direct", "k", b"3", BasicProperties::default()).await;
    admin
        .queue_delete("rc-b".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    declare(&admin, "rc-b", FieldTable::default()).await;
    publish(&ch, "", "rc-b", b"4", BasicProperties::default()).await;
    assert_eq!(get_body(&ch, "rc-a").await.unwrap(), b"1");
    assert_eq!(get_body(&ch, "rc-a").await.unwrap(), b"2");
    assert!(get_body(&ch, "rc-a").await.is_none());
    assert_eq!(
        get_body(&ch, "rc-b").await.unwrap(),
        b"4",
        "the re-declared queue, not the deleted one"
    );
    assert!(get_body(&ch, "rc-b").await.is_none());
}
