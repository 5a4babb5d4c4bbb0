//! A data directory written by the release before the core had its own message encoding (journal format 1,
//! `tests/fixtures/format1`) opens and recovers: definitions with their arguments, persistent messages with
//! every property and header, priorities, a dead-lettered copy with its format 1 `x-death`, and bindings whose
//! arguments can still be matched and removed (and stay removed across the next restart).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestBroker, message_count};
use ferrymq::config::StoreKind;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};

const WAIT: Duration = Duration::from_secs(10);

fn copy_fixture(store_dir: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/store");
    std::fs::create_dir_all(store_dir).expect("test setup");
    for entry in std::fs::read_dir(from).expect("test setup") {
        let entry = entry.expect("test setup");
        std::fs::copy(entry.path(), store_dir.join(entry.file_name())).expect("test setup");
    }
}

async fn start() -> TestBroker {
    TestBroker::with(|c| {
        c.store.kind = StoreKind::Journal;
        c.store.dir = c.data_dir.join("store");
        copy_fixture(&c.store.dir);
    })
    .await
}

async fn get(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    tokio::time::timeout(
        WAIT,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get answers")
    .expect("test setup")
    .expect("a message")
}

async fn publish_kind_args(ch: &Channel) {
    let mut headers = FieldTable::default();
    headers.insert("kind".into(), AMQPValue::LongString("args".into()));
    ch.basic_publish(
        "fx.headers".into(),
        "".into(),
        BasicPublishOptions::default(),
        b"new",
        BasicProperties::default().with_headers(headers),
    )
    .await
    .expect("test setup")
    .await
    .expect("test setup");
}

#[tokio::test]
async fn a_format1_data_dir_recovers_messages_properties_and_definitions() {
    let broker = start().await;
    let (_conn, ch) = broker.channel().await;
    assert_eq!(
        message_count(&ch, "fx.plain").await,
        8,
        "two of ten were acked"
    );
    assert_eq!(
        message_count(&ch, "fx.args").await,
        3,
        "one of four was rejected"
    );
    assert_eq!(message_count(&ch, "fx.dead").await, 1, "and dead-lettered");

    let plain = get(&ch, "fx.plain").await;
    assert_eq!(plain.delivery.data, b"plain 2");
    let p = &plain.delivery.properties;
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(p.priority(), &Some(3));
    assert_eq!(p.content_type(), &Some(ShortString::from("text/plain")));
    assert_eq!(p.correlation_id(), &Some(ShortString::from("corr-1")));
    assert_eq!(p.message_id(), &Some(ShortString::from("m-1")));
    assert_eq!(p.timestamp(), &Some(1_700_000_000));
    assert_eq!(p.app_id(), &Some(ShortString::from("fixture")));
    let headers = p.headers().clone().expect("headers");
    let headers = headers.inner();
    assert_eq!(
        headers.get("h-str"),
        Some(&AMQPValue::LongString("v".into()))
    );
    assert!(
        matches!(headers.get("h-list"), Some(AMQPValue::FieldArray(a)) if a.as_slice().len() == 2)
    );
    assert!(matches!(
        headers.get("h-table"),
        Some(AMQPValue::FieldTable(_))
    ));

    let first = get(&ch, "fx.args").await;
    assert_eq!(first.delivery.data, b"args 2", "highest priority first");

    let dead = get(&ch, "fx.dead").await;
    assert_eq!(dead.delivery.data, b"args 3");
    let h = dead.delivery.properties.headers().clone().expect("headers");
    assert!(
        matches!(h.inner().get("x-death"), Some(AMQPValue::FieldArray(a)) if !a.as_slice().is_empty()),
        "format 1 x-death kept"
    );

    // The headers binding recovered with its arguments routes, and can be removed with the same arguments.
    publish_kind_args(&ch).await;
    assert_eq!(message_count(&ch, "fx.args").await, 3);
    let mut args = FieldTable::default();
    args.insert("x-match".into(), AMQPValue::LongString("any".into()));
    args.insert("kind".into(), AMQPValue::LongString("args".into()));
    ch.queue_unbind("fx.args".into(), "fx.headers".into(), "".into(), args)
        .await
        .unwrap();
    drop(ch);
    drop(_conn);
    let broker = broker.restart().await;
    let (_conn, ch) = broker.channel().await;
    publish_kind_args(&ch).await;
    assert_eq!(
        message_count(&ch, "fx.args").await,
        3,
        "the unbind of a format 1 binding outlives a restart"
    );
    assert_eq!(message_count(&ch, "fx.plain").await, 7);
}
