//! `[limits]` beyond connections, refused in RabbitMQ's words and codes with lapin: queues per vhost (406 on the
//! channel), consumers per queue (406 on the channel), channels per user (530 closes the connection); the
//! connection or the broker keeps serving afterwards.

mod common;

use common::TestBroker;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

async fn declare(ch: &Channel, name: &str) -> Result<(), lapin::Error> {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .map(|_| ())
}

/// A consumer on `queue`; it stays registered while the returned value lives (lapin cancels on drop).
async fn consume(ch: &Channel, queue: &str) -> Result<lapin::Consumer, lapin::Error> {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
}

fn reply(e: lapin::Error) -> String {
    e.to_string()
}

#[tokio::test]
async fn a_vhost_at_its_queue_limit_refuses_another_queue_with_406() {
    let broker = TestBroker::with(|c| c.limits.max_queues_per_vhost = 2).await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q1").await.expect("first queue");
    declare(&ch, "q2").await.expect("second queue");
    declare(&ch, "q1")
        .await
        .expect("redeclaring an existing queue is not a new one");
    let refused = reply(declare(&ch, "q3").await.expect_err("third queue refused"));
    assert!(refused.contains("PRECONDITION_FAILED"), "{refused}");
    assert!(
        refused.contains("queue limit in vhost '/' (2) is reached"),
        "{refused}"
    );
    let ch2 = conn
        .create_channel()
        .await
        .expect("the connection lives on");
    declare(&ch2, "q2")
        .await
        .expect("existing queues stay usable");
}

#[tokio::test]
async fn a_queue_at_its_consumer_limit_refuses_another_consumer_with_406() {
    let broker = TestBroker::with(|c| c.limits.max_consumers_per_queue = 1).await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "work").await.expect("queue");
    let _first = consume(&ch, "work").await.expect("first consumer");
    let ch2 = conn.create_channel().await.expect("channel");
    let refused = reply(
        consume(&ch2, "work")
            .await
            .expect_err("second consumer refused"),
    );
    assert!(refused.contains("PRECONDITION_FAILED"), "{refused}");
    assert!(
        refused.contains("consumer limit (1) is reached"),
        "{refused}"
    );
    let ch3 = conn
        .create_channel()
        .await
        .expect("the connection lives on");
    declare(&ch3, "other").await.expect("queue");
    let _other = consume(&ch3, "other")
        .await
        .expect("other queues take consumers");
}

#[tokio::test]
async fn a_user_at_its_channel_limit_is_refused_with_530_and_gets_the_place_back() {
    let broker = TestBroker::with(|c| c.limits.max_channels_per_user = 2).await;
    let (conn, _ch) = broker.channel().await;
    let second = conn.create_channel().await.expect("second channel");
    let refused = reply(
        conn.create_channel()
            .await
            .expect_err("third channel refused"),
    );
    assert!(refused.contains("NOT_ALLOWED"), "{refused}");
    assert!(
        refused.contains("maximum allowed user limit of (2)"),
        "{refused}"
    );
    drop(second);
    // The refusal closed that connection; its channels were given back, so a new one gets its two.
    let again = Connection::connect(&broker.amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("connect again");
    again.create_channel().await.expect("first channel");
    again.create_channel().await.expect("second channel");
}
