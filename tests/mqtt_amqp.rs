//! MQTT and AMQP 0-9-1 meet in one core: an MQTT publish to `a/b/c` reaches AMQP queues bound to `amq.topic`
//! with `a.b.c`, `a.*.c` and `a.#`, and an AMQP publish to `amq.topic` with key `a.b.c` reaches an MQTT
//! subscriber of `a/+/c`, with payload, user properties / headers and QoS intact (lapin and rumqttc together).

#![allow(clippy::unwrap_used)]

mod common;

use common::TestBroker;
use common::mqtt::{self, connack5, puback5, publish5, suback5};
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use rumqttc::v5::mqttbytes::v5::PublishProperties;

type QoS = rumqttc::v5::mqttbytes::QoS;

#[tokio::test]
async fn an_mqtt_publish_reaches_amqp_queues_bound_with_matching_patterns() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for pattern in ["a.b.c", "a.*.c", "a.#"] {
        let queue = format!("q-{pattern}");
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            queue.as_str().into(),
            "amq.topic".into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let (publisher, mut events) = mqtt::v5(broker.mqtt_addr(), "mqtt-pub", |_| {});
    connack5(&mut events).await;
    let props = PublishProperties {
        user_properties: vec![("origin".into(), "mqtt".into())],
        ..PublishProperties::default()
    };
    publisher
        .publish_with_properties("a/b/c", QoS::AtLeastOnce, false, "from mqtt", props)
        .await
        .unwrap();
    puback5(&mut events).await;
    for pattern in ["a.b.c", "a.*.c", "a.#"] {
        let queue = format!("q-{pattern}");
        let got = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect(&queue);
        assert_eq!(got.delivery.data, b"from mqtt");
        assert_eq!(got.delivery.routing_key.as_str(), "a.b.c");
        let headers = got.delivery.properties.headers().clone().unwrap();
        let origin = headers.inner().get(&ShortString::from("origin")).cloned();
        assert_eq!(
            origin,
            Some(AMQPValue::LongString("mqtt".into())),
            "user property as a header"
        );
        assert_eq!(
            *got.delivery.properties.delivery_mode(),
            Some(2),
            "QoS 1 is persistent"
        );
    }
}

#[tokio::test]
async fn an_amqp_publish_to_amq_topic_reaches_an_mqtt_wildcard_subscriber() {
    let broker = TestBroker::start().await;
    let (sub, mut events) = mqtt::v5(broker.mqtt_addr(), "mqtt-sub", |_| {});
    connack5(&mut events).await;
    sub.subscribe("a/+/c", QoS::ExactlyOnce).await.unwrap();
    suback5(&mut events).await;
    let (_conn, ch) = broker.channel().await;
    let mut headers = FieldTable::default();
    headers.insert("origin".into(), AMQPValue::LongString("amqp".into()));
    let persistent = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let transient = BasicProperties::default();
    for (body, props) in [("persistent", persistent), ("transient", transient)] {
        ch.basic_publish(
            "amq.topic".into(),
            "a.b.c".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap();
    }
    let first = events.next_matching(publish5).await;
    assert_eq!(
        (&first.topic[..], &first.payload[..]),
        (&b"a/b/c"[..], &b"persistent"[..])
    );
    assert_eq!(
        first.qos,
        QoS::AtLeastOnce,
        "a persistent AMQP message counts as QoS 1"
    );
    let user = first.properties.unwrap().user_properties;
    assert_eq!(
        user,
        vec![("origin".to_owned(), "amqp".to_owned())],
        "headers as user properties"
    );
    let second = events.next_matching(publish5).await;
    assert_eq!(
        (&second.payload[..], second.qos),
        (&b"transient"[..], QoS::AtMostOnce)
    );
}
