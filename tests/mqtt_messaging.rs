//! MQTT against the real broker with rumqttc's v4 (3.1.1) and v5 clients: QoS 0/1/2 both ways, wildcards and
//! `$` topics, retained messages, persistent sessions, takeover, wills, keep-alive and the v5 properties.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestBroker;
use common::mqtt::{self, connack4, connack5, puback4, publish4, publish5, suback4, suback5};
use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties, RetainForwardRule};
use rumqttc::{QoS, SubscribeReasonCode};

type QoS5 = rumqttc::v5::mqttbytes::QoS;

const QUIET: Duration = Duration::from_millis(300);

async fn subscriber4(
    broker: &TestBroker,
    id: &str,
    filter: &str,
    qos: QoS,
) -> (rumqttc::AsyncClient, mqtt::Events<rumqttc::Event>) {
    let (client, mut events) = mqtt::v4(broker.mqtt_addr(), id, |_| {});
    connack4(&mut events).await;
    client.subscribe(filter, qos).await.unwrap();
    suback4(&mut events).await;
    (client, events)
}

#[tokio::test]
async fn qos_0_1_and_2_publishes_reach_a_subscriber_at_the_lower_of_both_qos() {
    let broker = TestBroker::start().await;
    let (_sub, mut events) = subscriber4(&broker, "sub", "q/#", QoS::AtLeastOnce).await;
    let (publisher, mut pub_events) = mqtt::v4(broker.mqtt_addr(), "pub", |_| {});
    connack4(&mut pub_events).await;
    let cases = [
        (QoS::AtMostOnce, "zero", QoS::AtMostOnce),
        (QoS::AtLeastOnce, "one", QoS::AtLeastOnce),
        (QoS::ExactlyOnce, "two", QoS::AtLeastOnce),
    ];
    for (qos, body, expected) in cases {
        publisher.publish("q/x", qos, false, body).await.unwrap();
        let got = events.next_matching(publish4).await;
        assert_eq!(got.payload, Bytes::from(body));
        assert_eq!(
            got.qos, expected,
            "the lower of publish and granted QoS [MQTT-3.8.4-8]"
        );
        assert_eq!(got.topic, "q/x");
    }
    pub_events
        .next_matching(|e| {
            matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_))).then_some(())
        })
        .await;
}

#[tokio::test]
async fn wildcards_match_levels_and_leading_wildcards_skip_dollar_topics() {
    let broker = TestBroker::start().await;
    let (sub, mut events) = subscriber4(&broker, "wild", "a/+/c", QoS::AtMostOnce).await;
    sub.subscribe("#", QoS::AtMostOnce).await.unwrap();
    suback4(&mut events).await;
    let (publisher, mut pub_events) = mqtt::v4(broker.mqtt_addr(), "pub", |_| {});
    connack4(&mut pub_events).await;
    publisher
        .publish("$SYS/x", QoS::AtMostOnce, false, "dollar")
        .await
        .unwrap();
    publisher
        .publish("a/b/c", QoS::AtMostOnce, false, "abc")
        .await
        .unwrap();
    let got = events.next_matching(publish4).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("a/b/c", &b"abc"[..]),
        "[MQTT-4.7.2-1]: # skips $SYS/x"
    );
    events.none_matching(QUIET, |e| publish4(e).is_some()).await;
}

#[tokio::test]
async fn an_invalid_filter_is_refused_in_suback_and_the_session_goes_on() {
    let broker = TestBroker::start().await;
    let (client, mut events) = mqtt::v4(broker.mqtt_addr(), "bad-filter", |_| {});
    connack4(&mut events).await;
    client.subscribe("a/#/c", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        suback4(&mut events).await,
        vec![SubscribeReasonCode::Failure]
    );
    client.subscribe("ok", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        suback4(&mut events).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}

#[tokio::test]
async fn a_retained_message_reaches_later_subscribers_until_an_empty_one_clears_it() {
    let broker = TestBroker::start().await;
    let (publisher, mut pub_events) = mqtt::v4(broker.mqtt_addr(), "pub", |_| {});
    connack4(&mut pub_events).await;
    publisher
        .publish("r/t", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    puback4(&mut pub_events).await;
    let (_sub, mut events) = subscriber4(&broker, "late", "r/+", QoS::AtLeastOnce).await;
    let got = events.next_matching(publish4).await;
    assert!(
        got.retain,
        "a retained message is sent with retain set [MQTT-3.3.1-8]"
    );
    assert_eq!(&got.payload[..], b"kept");
    publisher
        .publish("r/t", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let cleared = events.next_matching(publish4).await;
    assert!(
        cleared.payload.is_empty(),
        "the empty retained publish still reaches current subscribers"
    );
    let (_later, mut later_events) = subscriber4(&broker, "later", "r/+", QoS::AtLeastOnce).await;
    later_events
        .none_matching(QUIET, |e| publish4(e).is_some())
        .await;
}

#[tokio::test]
async fn a_persistent_session_keeps_its_subscription_and_gets_what_was_published_while_offline() {
    let broker = TestBroker::start().await;
    let (sub, mut events) = mqtt::v4(broker.mqtt_addr(), "keeper", |o| {
        o.set_clean_session(false);
    });
    assert!(!connack4(&mut events).await);
    sub.subscribe("p/t", QoS::AtLeastOnce).await.unwrap();
    suback4(&mut events).await;
    sub.disconnect().await.unwrap();
    events.error().await;
    let (publisher, mut pub_events) = mqtt::v4(broker.mqtt_addr(), "pub", |_| {});
    connack4(&mut pub_events).await;
    publisher
        .publish("p/t", QoS::AtLeastOnce, false, "while away")
        .await
        .unwrap();
    puback4(&mut pub_events).await;
    let (_back, mut back_events) = mqtt::v4(broker.mqtt_addr(), "keeper", |o| {
        o.set_clean_session(false);
    });
    assert!(
        connack4(&mut back_events).await,
        "session present [MQTT-3.2.2-2]"
    );
    let got = back_events.next_matching(publish4).await;
    assert_eq!(
        (&got.payload[..], got.qos),
        (&b"while away"[..], QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn a_clean_session_forgets_the_previous_one() {
    let broker = TestBroker::start().await;
    let (sub, mut events) = mqtt::v4(broker.mqtt_addr(), "forget", |o| {
        o.set_clean_session(false);
    });
    connack4(&mut events).await;
    sub.subscribe("f/t", QoS::AtLeastOnce).await.unwrap();
    suback4(&mut events).await;
    sub.disconnect().await.unwrap();
    events.error().await;
    let (_clean, mut clean_events) = mqtt::v4(broker.mqtt_addr(), "forget", |_| {});
    assert!(
        !connack4(&mut clean_events).await,
        "clean session: no session present [MQTT-3.2.2-1]"
    );
    let (publisher, mut pub_events) = mqtt::v4(broker.mqtt_addr(), "pub", |_| {});
    connack4(&mut pub_events).await;
    publisher
        .publish("f/t", QoS::AtMostOnce, false, "nobody")
        .await
        .unwrap();
    clean_events
        .none_matching(QUIET, |e| publish4(e).is_some())
        .await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_the_session_over_with_0x8e() {
    let broker = TestBroker::start().await;
    let (_first, mut first_events) = mqtt::v5(broker.mqtt_addr(), "twin", |_| {});
    connack5(&mut first_events).await;
    let (_second, mut second_events) = mqtt::v5(broker.mqtt_addr(), "twin", |_| {});
    connack5(&mut second_events).await;
    let error = first_events.error().await;
    assert!(
        error.contains("SessionTakenOver"),
        "rumqttc reports the server's DISCONNECT: {error}"
    );
}

#[tokio::test]
async fn the_will_is_published_when_the_connection_drops_and_not_after_disconnect() {
    let broker = TestBroker::start().await;
    let (_watcher, mut events) = subscriber4(&broker, "watcher", "will/#", QoS::AtLeastOnce).await;
    for (id, clean_close) in [("polite", true), ("rude", false)] {
        let (client, mut client_events) = mqtt::v4(broker.mqtt_addr(), id, |o| {
            o.set_last_will(rumqttc::LastWill::new(
                format!("will/{id}"),
                "gone",
                QoS::AtLeastOnce,
                false,
            ));
        });
        connack4(&mut client_events).await;
        if clean_close {
            client.disconnect().await.unwrap();
            client_events.error().await;
        } else {
            drop(client_events); // the event loop and its socket go without DISCONNECT
        }
    }
    let got = events.next_matching(publish4).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("will/rude", &b"gone"[..])
    );
    events.none_matching(QUIET, |e| publish4(e).is_some()).await;
}

#[tokio::test]
async fn v5_properties_reach_the_subscriber() {
    let broker = TestBroker::start().await;
    let (sub, mut events) = mqtt::v5(broker.mqtt_addr(), "props-sub", |_| {});
    connack5(&mut events).await;
    let props = rumqttc::v5::mqttbytes::v5::SubscribeProperties {
        id: Some(42),
        user_properties: vec![],
    };
    sub.subscribe_with_properties("v5/+", QoS5::AtLeastOnce, props)
        .await
        .unwrap();
    suback5(&mut events).await;
    let (publisher, mut pub_events) = mqtt::v5(broker.mqtt_addr(), "props-pub", |_| {});
    connack5(&mut pub_events).await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(600),
        content_type: Some("text/plain".into()),
        response_topic: Some("v5/reply".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 255])),
        user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
        ..PublishProperties::default()
    };
    publisher
        .publish_with_properties("v5/t", QoS5::AtLeastOnce, false, "hi", sent.clone())
        .await
        .unwrap();
    let got = events.next_matching(publish5).await;
    let p = got.properties.unwrap();
    assert_eq!(p.payload_format_indicator, Some(1));
    assert!(
        p.message_expiry_interval
            .is_some_and(|s| s > 590 && s <= 600)
    );
    assert_eq!(p.content_type, sent.content_type);
    assert_eq!(p.response_topic, sent.response_topic);
    assert_eq!(p.correlation_data, sent.correlation_data);
    assert_eq!(
        p.user_properties, sent.user_properties,
        "order and repeats kept"
    );
    assert_eq!(p.subscription_identifiers, vec![42]);
}

#[tokio::test]
async fn v5_connack_announces_the_limits_and_assigns_a_client_id() {
    let broker = TestBroker::start().await;
    let (_client, mut events) = mqtt::v5(broker.mqtt_addr(), "", |_| {});
    let connack = connack5(&mut events).await;
    let p = connack.properties.unwrap();
    let config = &broker.config().mqtt;
    assert_eq!(p.receive_max, Some(config.max_inflight));
    assert_eq!(p.max_packet_size, Some(config.max_packet_size));
    assert_eq!(p.topic_alias_max, Some(config.topic_alias_maximum));
    assert!(
        p.assigned_client_identifier
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test]
async fn v5_topic_aliases_from_the_client_resolve_to_their_topic() {
    let broker = TestBroker::start().await;
    let (_sub, mut events) = {
        let (c, mut e) = mqtt::v5(broker.mqtt_addr(), "alias-sub", |_| {});
        connack5(&mut e).await;
        c.subscribe("alias/t", QoS5::AtMostOnce).await.unwrap();
        suback5(&mut e).await;
        (c, e)
    };
    let (publisher, mut pub_events) = mqtt::v5(broker.mqtt_addr(), "alias-pub", |_| {});
    connack5(&mut pub_events).await;
    let alias = PublishProperties {
        topic_alias: Some(3),
        ..PublishProperties::default()
    };
    publisher
        .publish_with_properties("alias/t", QoS5::AtMostOnce, false, "first", alias.clone())
        .await
        .unwrap();
    publisher
        .publish_with_properties("", QoS5::AtMostOnce, false, "second", alias)
        .await
        .unwrap();
    for body in ["first", "second"] {
        let got = events.next_matching(publish5).await;
        assert_eq!(
            (&got.topic[..], &got.payload[..]),
            (&b"alias/t"[..], body.as_bytes())
        );
    }
}

#[tokio::test]
async fn v5_retain_as_published_keeps_the_retain_flag_on_a_live_delivery() {
    let broker = TestBroker::start().await;
    let (client, mut events) = mqtt::v5(broker.mqtt_addr(), "options", |_| {});
    connack5(&mut events).await;
    let filter = Filter {
        path: "opt/#".into(),
        qos: QoS5::AtLeastOnce,
        nolocal: false,
        preserve_retain: true,
        retain_forward_rule: RetainForwardRule::Never,
    };
    client.subscribe_many(vec![filter]).await.unwrap();
    suback5(&mut events).await;
    client
        .publish("opt/r", QoS5::AtLeastOnce, true, "retained")
        .await
        .unwrap();
    let got = events.next_matching(publish5).await;
    assert!(
        got.retain,
        "retain as published keeps the flag on a live delivery"
    );
}

async fn subscriber5(
    broker: &TestBroker,
    id: &str,
    filter: Filter,
    customise: impl FnOnce(&mut rumqttc::v5::MqttOptions),
) -> (rumqttc::v5::AsyncClient, mqtt::Events<rumqttc::v5::Event>) {
    let (client, mut events) = mqtt::v5(broker.mqtt_addr(), id, customise);
    connack5(&mut events).await;
    client.subscribe_many(vec![filter]).await.unwrap();
    suback5(&mut events).await;
    (client, events)
}

#[tokio::test]
async fn v5_shared_subscription_members_split_the_messages_between_them() {
    let broker = TestBroker::start().await;
    let filter = || Filter::new("$share/workers/jobs/#", QoS5::AtLeastOnce);
    let (_a, mut a) = subscriber5(&broker, "worker-a", filter(), |_| {}).await;
    let (_b, mut b) = subscriber5(&broker, "worker-b", filter(), |_| {}).await;
    let (publisher, mut pub_events) = mqtt::v5(broker.mqtt_addr(), "boss", |_| {});
    connack5(&mut pub_events).await;
    for i in 0..10 {
        publisher
            .publish("jobs/x", QoS5::AtLeastOnce, false, format!("job {i}"))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        tokio::select! {
            p = a.next_matching(publish5) => got.push(("a", p.payload)),
            p = b.next_matching(publish5) => got.push(("b", p.payload)),
        }
    }
    let mut bodies: Vec<_> = got.iter().map(|(_, body)| body.clone()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 10, "each job once [MQTT-4.8.2-4]");
    assert!(
        got.iter().any(|(w, _)| *w == "a") && got.iter().any(|(w, _)| *w == "b"),
        "both members get work"
    );
}

#[tokio::test]
async fn v5_no_local_skips_the_session_s_own_publishes() {
    let broker = TestBroker::start().await;
    let filter = Filter {
        nolocal: true,
        ..Filter::new("nl/t", QoS5::AtMostOnce)
    };
    let (client, mut events) = subscriber5(&broker, "no-local", filter, |_| {}).await;
    client
        .publish("nl/t", QoS5::AtMostOnce, false, "mine")
        .await
        .unwrap();
    let (other, mut other_events) = mqtt::v5(broker.mqtt_addr(), "other", |_| {});
    connack5(&mut other_events).await;
    other
        .publish("nl/t", QoS5::AtMostOnce, false, "theirs")
        .await
        .unwrap();
    let got = events.next_matching(publish5).await;
    assert_eq!(&got.payload[..], b"theirs", "[MQTT-3.8.3-3]");
    events.none_matching(QUIET, |e| publish5(e).is_some()).await;
}

#[tokio::test]
async fn v5_the_broker_uses_topic_aliases_when_the_client_allows_them() {
    let broker = TestBroker::start().await;
    let filter = Filter::new("ta/t", QoS5::AtMostOnce);
    let (client, mut events) = subscriber5(&broker, "aliased", filter, |o| {
        o.set_topic_alias_max(Some(4));
    })
    .await;
    for body in ["one", "two"] {
        client
            .publish("ta/t", QoS5::AtMostOnce, false, body)
            .await
            .unwrap();
    }
    let first = events.next_matching(publish5).await;
    let alias = first.properties.as_ref().and_then(|p| p.topic_alias);
    assert!(
        alias.is_some_and(|a| (1..=4).contains(&a)),
        "the first message sets an alias"
    );
    assert_eq!(&first.topic[..], b"ta/t");
    let second = events.next_matching(publish5).await;
    assert_eq!(second.properties.and_then(|p| p.topic_alias), alias);
    assert_eq!(
        &second.topic[..],
        b"ta/t",
        "rumqttc resolved the alias the broker used [MQTT-3.3.2-12]"
    );
}

#[tokio::test]
async fn v5_a_delayed_will_is_dropped_when_the_client_comes_back_in_time() {
    let broker = TestBroker::start().await;
    let filter = Filter::new("wd/#", QoS5::AtLeastOnce);
    let (_watcher, mut events) = subscriber5(&broker, "wd-watcher", filter, |_| {}).await;
    let will = |o: &mut rumqttc::v5::MqttOptions| {
        let props = rumqttc::v5::mqttbytes::v5::LastWillProperties {
            delay_interval: Some(2),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
            "wd/t",
            "gone",
            QoS5::AtLeastOnce,
            false,
            Some(props),
        ));
        o.set_clean_start(false);
        let connect = rumqttc::v5::mqttbytes::v5::ConnectProperties {
            session_expiry_interval: Some(60),
            ..Default::default()
        };
        o.set_connect_properties(connect);
    };
    let (_c, c_events) = mqtt::v5(broker.mqtt_addr(), "wd-client", will);
    let mut c_events = c_events;
    connack5(&mut c_events).await;
    drop(c_events); // gone without DISCONNECT: the will waits two seconds
    let (_back, mut back_events) = mqtt::v5(broker.mqtt_addr(), "wd-client", will);
    connack5(&mut back_events).await;
    events
        .none_matching(Duration::from_millis(2500), |e| publish5(e).is_some())
        .await; // [MQTT-3.1.3-9]
}

#[tokio::test]
async fn topic_permissions_refuse_subscribes_and_publishes_outside_them() {
    let broker = TestBroker::with(|c| {
        c.auth
            .topic_permissions
            .push(ferrymq::config::TopicPermissionConfig {
                user: "guest".into(),
                vhost: "/".into(),
                exchange: "amq.topic".into(),
                write: "^open\\.".into(),
                read: "^open\\.".into(),
            });
    })
    .await;
    let (client, mut events) = mqtt::v4(broker.mqtt_addr(), "limited", |_| {});
    connack4(&mut events).await;
    client
        .subscribe("secret/x", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        suback4(&mut events).await,
        vec![SubscribeReasonCode::Failure]
    );
    client.subscribe("open/x", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        suback4(&mut events).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let (v5, mut v5_events) = mqtt::v5(broker.mqtt_addr(), "limited5", |_| {});
    connack5(&mut v5_events).await;
    v5.publish("secret/x", QoS5::AtLeastOnce, false, "no")
        .await
        .unwrap();
    let error = v5_events.error().await; // rumqttc ends the connection on a refused PUBACK
    assert!(error.contains("NotAuthorized"), "PUBACK 0x87: {error}");
    client
        .publish("open/x", QoS::AtLeastOnce, false, "yes")
        .await
        .unwrap();
    let got = events.next_matching(publish4).await;
    assert_eq!(&got.payload[..], b"yes");
}
