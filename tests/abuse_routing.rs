//! Routing under abuse, with lapin against the real broker: exchange-to-exchange graphs wider and deeper
//! than any fixed limit, cycles and diamonds. Every exchange in the graph is visited once per publish, so a
//! message reaches every queue bound anywhere below the exchange it was published to, exactly once, and a
//! graph that reaches no queue still returns a mandatory message (AMQP 0-9-1 basic.return, 312 NO_ROUTE).

mod common;

use common::TestBroker;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

async fn fanout(ch: &Channel, name: &str) {
    ch.exchange_declare(
        name.into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
}

/// Bind exchange `destination` below exchange `source`.
async fn link(ch: &Channel, source: &str, destination: &str) {
    ch.exchange_bind(
        destination.into(),
        source.into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.bind");
}

/// Declare queue `name` and bind it below exchange `exchange`.
async fn queue_below(ch: &Channel, exchange: &str, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    ch.queue_bind(
        name.into(),
        exchange.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
}

/// A confirmed, mandatory publish; the confirmation says whether it came back unroutable.
async fn publish_mandatory(ch: &Channel, exchange: &str) -> Confirmation {
    ch.basic_publish(
        exchange.into(),
        "k".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"m",
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish")
    .await
    .expect("confirm")
}

async fn depth(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive queue.declare")
    .message_count()
}

async fn confirmed_channel(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    (conn, ch)
}

#[tokio::test]
async fn a_fanout_over_twenty_fanouts_reaches_all_twenty_queues() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirmed_channel(&broker).await;
    fanout(&ch, "root").await;
    for i in 0..20 {
        let leaf = format!("leaf-{i}");
        fanout(&ch, &leaf).await;
        link(&ch, "root", &leaf).await;
        queue_below(&ch, &leaf, &format!("q-{i}")).await;
    }
    let confirm = publish_mandatory(&ch, "root").await;
    assert!(
        matches!(confirm, Confirmation::Ack(None)),
        "routed: acked and not returned, got {confirm:?}"
    );
    for i in 0..20 {
        assert_eq!(depth(&ch, &format!("q-{i}")).await, 1, "queue q-{i}");
    }
}

#[tokio::test]
async fn a_chain_of_forty_exchanges_reaches_the_queue_at_its_end() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirmed_channel(&broker).await;
    fanout(&ch, "chain-0").await;
    for i in 1..40 {
        fanout(&ch, &format!("chain-{i}")).await;
        link(&ch, &format!("chain-{}", i - 1), &format!("chain-{i}")).await;
    }
    queue_below(&ch, "chain-39", "end").await;
    let confirm = publish_mandatory(&ch, "chain-0").await;
    assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    assert_eq!(depth(&ch, "end").await, 1);
}

#[tokio::test]
async fn a_cycle_delivers_once_and_a_cycle_without_queues_returns_the_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirmed_channel(&broker).await;
    for name in ["a", "b", "c"] {
        fanout(&ch, name).await;
    }
    link(&ch, "a", "b").await;
    link(&ch, "b", "c").await;
    link(&ch, "c", "a").await;
    let unroutable = publish_mandatory(&ch, "a").await;
    let Confirmation::Ack(Some(returned)) = unroutable else {
        panic!("a cycle with no queue must return the message, got {unroutable:?}")
    };
    assert_eq!(returned.reply_code, 312);

    queue_below(&ch, "c", "in-cycle").await;
    let confirm = publish_mandatory(&ch, "b").await;
    assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    assert_eq!(depth(&ch, "in-cycle").await, 1, "delivered exactly once");
}

#[tokio::test]
async fn a_diamond_delivers_once_to_the_queue_below_both_paths() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirmed_channel(&broker).await;
    for name in ["top", "left", "right", "bottom"] {
        fanout(&ch, name).await;
    }
    link(&ch, "top", "left").await;
    link(&ch, "top", "right").await;
    link(&ch, "left", "bottom").await;
    link(&ch, "right", "bottom").await;
    queue_below(&ch, "bottom", "below").await;
    queue_below(&ch, "right", "beside").await;
    let confirm = publish_mandatory(&ch, "top").await;
    assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    assert_eq!(depth(&ch, "below").await, 1, "one copy, not one per path");
    assert_eq!(depth(&ch, "beside").await, 1);
}
