//! MQTT to core and back: topics and filters to routing keys and patterns on `amq.topic` (`/` and `.`
//! swapped, `+` to `*`, `#` stays, as RabbitMQ's MQTT plugin maps them), and PUBLISH packets to
//! `core::message::Message` and back. v5 user properties become text headers, correlation data
//! `correlation_id`, response topic `reply_to`, content type `content_type`, message expiry an `Expiry`,
//! payload format indicator 1 the content encoding `utf-8`, retain and QoS the MQTT annotations.

use std::sync::Arc;

use bytes::Bytes;
use ferrymq_mqtt_codec::{Properties, Publish, QoS};

use crate::core::Message;
use crate::core::message::{Expiry, Protocol, Value, now_ms};

/// The exchange every MQTT topic lives on.
pub const EXCHANGE: &str = "amq.topic";

/// MQTT `a/b.c` is routing key `a.b/c`: levels become words.
pub fn topic_to_key(topic: &str) -> String {
    topic.chars().map(swap_separator).collect()
}

/// The inverse of [`topic_to_key`].
pub fn key_to_topic(key: &str) -> String {
    topic_to_key(key)
}

/// MQTT filter `a/+/#` is binding pattern `a.*.#`.
pub fn filter_to_pattern(filter: &str) -> String {
    filter
        .chars()
        .map(|c| if c == '+' { '*' } else { swap_separator(c) })
        .collect()
}

fn swap_separator(c: char) -> char {
    match c {
        '/' => '.',
        '.' => '/',
        other => other,
    }
}

/// The core message for a PUBLISH to `topic` (the alias already resolved) from connection `publisher`.
pub fn incoming(publish: &Publish, topic: &str, publisher: u32) -> Message {
    let mut message = Message::new(EXCHANGE, topic_to_key(topic), publish.payload.clone());
    message.properties.durable = publish.qos != QoS::AtMostOnce;
    message.properties.publisher = publisher;
    message.annotations.origin = Protocol::Mqtt;
    message.annotations.retain = publish.retain;
    message.annotations.qos = publish.qos as u8;
    let props = &publish.properties;
    if let Some(secs) = props.message_expiry_interval {
        message.properties.expiry = Some(Expiry::from_now(u64::from(secs) * 1000));
    }
    set_text_properties(&mut message, props);
    for (name, value) in &props.user_properties {
        message.headers.push(name.as_str(), Value::text(value));
    }
    message
}

fn set_text_properties(message: &mut Message, props: &Properties) {
    let wanted = props.content_type.is_some()
        || props.response_topic.is_some()
        || props.correlation_data.is_some()
        || props.payload_format_indicator == Some(1);
    if !wanted {
        return;
    }
    let text = message.properties.text_mut();
    text.content_type = props.content_type.clone();
    text.reply_to = props.response_topic.clone();
    text.correlation_id = props.correlation_data.clone();
    if props.payload_format_indicator == Some(1) {
        text.content_encoding = Some("utf-8".to_owned());
    }
}

/// The QoS a message was published with: its MQTT QoS, or for other protocols 1 when persistent, else 0.
pub fn published_qos(message: &Message) -> QoS {
    let qos = match message.annotations.origin {
        Protocol::Mqtt => message.annotations.qos,
        _ => u8::from(message.is_persistent()),
    };
    QoS::from_bits(qos).unwrap_or(QoS::AtLeastOnce)
}

/// The PUBLISH that delivers `message` (packet id, DUP and subscription identifiers set by the caller).
pub fn outgoing(message: &Arc<Message>, qos: QoS, retain: bool) -> Publish {
    let mut properties = Properties::default();
    let text = message.properties.text();
    properties.content_type = text.content_type.clone();
    properties.response_topic = text.reply_to.clone();
    properties.correlation_data = text.correlation_id.clone();
    if text.content_encoding.as_deref() == Some("utf-8") {
        properties.payload_format_indicator = Some(1);
    }
    if let Some(expiry) = message.properties.expiry {
        let secs = expiry.remaining_ms(now_ms()).div_ceil(1000);
        properties.message_expiry_interval = Some(u32::try_from(secs).unwrap_or(u32::MAX));
    }
    properties.user_properties = message
        .headers
        .iter()
        .filter_map(|h| Some((h.name.clone(), header_text(&h.value)?)))
        .collect();
    Publish {
        dup: false,
        qos,
        retain,
        topic: key_to_topic(&message.routing_key),
        packet_id: None,
        properties,
        payload: Bytes::clone(&message.body),
    }
}

/// A header value as a user property: text as it is, integers and booleans written out; others are left out.
fn header_text(value: &Value) -> Option<String> {
    if let Some(text) = value.as_str() {
        return Some(text.to_owned());
    }
    if let Some(n) = value.as_i64() {
        return Some(n.to_string());
    }
    value.as_bool().map(|b| b.to_string())
}
