//! AMQP 0-9-1 in and out of the core's message model, in one place: basic properties and field tables to the
//! neutral [`Properties`] and [`Headers`] on publish, and back on delivery.
//!
//! A message published over AMQP keeps its encoded properties as its [`Native`] form, so delivering it to an
//! AMQP consumer writes them back byte for byte with no conversion; only a message the core changed
//! (dead-lettered, BCC removed) or one from another protocol is converted on the way out. The broker's
//! annotations appear to AMQP consumers as RabbitMQ's headers: `x-death`, `x-first-death-*`,
//! `x-last-death-*`.
//!
//! Also here: the reader for journal format 1, whose messages and arguments were stored in AMQP terms.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ferrymq_amqp_codec::{BasicProperties, EncodeProperties, FieldTable, FieldValue};

use super::error::{AmqpError, code};
use crate::core::LegacyReader;
use crate::core::message::{
    Annotations, DeathSite, Expiry, Headers, Message, Native, Properties, Protocol, TextProperties,
    Value,
};

// ---- tables ----

/// A field table as neutral headers (exact: every AMQP type has its own value kind).
pub(crate) fn table_in(table: FieldTable) -> Headers {
    let mut out = Headers::with_capacity(table.len());
    for (k, v) in table.0 {
        out.push(k, value_in(v));
    }
    out
}

fn value_in(v: FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(b),
        FieldValue::I8(n) => Value::I8(n),
        FieldValue::U8(n) => Value::U8(n),
        FieldValue::I16(n) => Value::I16(n),
        FieldValue::U16(n) => Value::U16(n),
        FieldValue::I32(n) => Value::I32(n),
        FieldValue::U32(n) => Value::U32(n),
        FieldValue::I64(n) => Value::I64(n),
        FieldValue::F32(n) => Value::F32(n),
        FieldValue::F64(n) => Value::F64(n),
        FieldValue::Decimal { scale, value } => Value::Decimal { scale, value },
        FieldValue::LongStr(b) => Value::Text(b),
        FieldValue::Array(items) => Value::Array(items.into_iter().map(value_in).collect()),
        FieldValue::Timestamp(t) => Value::Timestamp(t),
        FieldValue::Table(t) => Value::Map(table_in(t)),
        FieldValue::Void => Value::Null,
        FieldValue::Bytes(b) => Value::Binary(b),
    }
}

/// Neutral headers as a field table (type labels have no AMQP form and are dropped).
pub(crate) fn table_out(headers: &Headers) -> FieldTable {
    FieldTable(
        headers
            .iter()
            .map(|h| (h.name.clone(), value_out(&h.value)))
            .collect(),
    )
}

fn value_out(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::I8(n) => FieldValue::I8(*n),
        Value::U8(n) => FieldValue::U8(*n),
        Value::I16(n) => FieldValue::I16(*n),
        Value::U16(n) => FieldValue::U16(*n),
        Value::I32(n) => FieldValue::I32(*n),
        Value::U32(n) => FieldValue::U32(*n),
        Value::I64(n) => FieldValue::I64(*n),
        // AMQP 0-9-1 has no unsigned 64-bit type: a value above i64::MAX goes as its decimal text.
        Value::U64(n) => match i64::try_from(*n) {
            Ok(n) => FieldValue::I64(n),
            Err(_) => FieldValue::LongStr(Bytes::from(n.to_string())),
        },
        Value::F32(n) => FieldValue::F32(*n),
        Value::F64(n) => FieldValue::F64(*n),
        Value::Decimal { scale, value } => FieldValue::Decimal {
            scale: *scale,
            value: *value,
        },
        Value::Text(b) => FieldValue::LongStr(b.clone()),
        Value::Binary(b) => FieldValue::Bytes(b.clone()),
        Value::Timestamp(t) => FieldValue::Timestamp(*t),
        Value::Array(items) => FieldValue::Array(items.iter().map(value_out).collect()),
        Value::Map(m) => FieldValue::Table(table_out(m)),
    }
}

// ---- messages in ----

/// The core message for a basic.publish. `raw` is the properties as they arrived (in a buffer of their own:
/// see `ContentHeader::raw_properties`), when the adapter did not change them; they travel as the message's
/// native form. An `expiration` that is not a number of
/// milliseconds is refused as RabbitMQ does.
pub(crate) fn message_in(
    exchange: String,
    routing_key: String,
    properties: &mut BasicProperties,
    raw: Option<Bytes>,
    body: Bytes,
) -> Result<Arc<Message>, AmqpError> {
    let expiry = match &properties.expiration {
        None => None,
        Some(e) => Some(Expiry::from_now(e.parse::<u64>().map_err(|_| {
            AmqpError::channel(
                code::PRECONDITION_FAILED,
                format!("invalid expiration '{e}'"),
            )
        })?)),
    };
    let native = raw.map(|bytes| Native {
        protocol: Protocol::Amqp091,
        bytes,
    });
    Ok(Arc::new(from_basic(
        exchange,
        routing_key,
        properties,
        expiry,
        body,
        native,
    )))
}

/// The neutral form of a message with basic properties (`expiry` already worked out from `expiration`); the
/// properties are taken out of `p`.
fn from_basic(
    exchange: String,
    routing_key: String,
    p: &mut BasicProperties,
    expiry: Option<Expiry>,
    body: Bytes,
    native: Option<Native>,
) -> Message {
    let mut properties = Properties {
        durable: p.delivery_mode == Some(2),
        priority: p.priority,
        expiry,
        timestamp_ms: p.timestamp.map(|s| s.saturating_mul(1000)),
        ..Properties::default()
    };
    if let Some(text) = text_in(p) {
        properties.set_text(text);
    }
    Message {
        exchange,
        routing_key,
        properties,
        headers: p.headers.take().map(table_in).unwrap_or_default(),
        annotations: Annotations {
            origin: Protocol::Amqp091,
            ..Annotations::default()
        },
        body,
        native,
    }
}

/// The text properties of basic properties, taken out of them; `None` when there is none (the common case,
/// which then builds nothing).
fn text_in(p: &mut BasicProperties) -> Option<TextProperties> {
    let any = p.message_id.is_some()
        || p.correlation_id.is_some()
        || p.reply_to.is_some()
        || p.content_type.is_some()
        || p.content_encoding.is_some()
        || p.user_id.is_some()
        || p.kind.is_some()
        || p.app_id.is_some()
        || p.cluster_id.is_some();
    any.then(|| TextProperties {
        message_id: p.message_id.take(),
        correlation_id: p.correlation_id.take().map(Bytes::from),
        reply_to: p.reply_to.take(),
        content_type: p.content_type.take(),
        content_encoding: p.content_encoding.take(),
        user_id: p.user_id.take(),
        kind: p.kind.take(),
        app_id: p.app_id.take(),
        cluster_id: p.cluster_id.take(),
    })
}

// ---- messages out ----

/// A message's properties as an AMQP consumer sees them (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a>(pub &'a Message);

impl EncodeProperties for Outgoing<'_> {
    fn encode_properties(&self, out: &mut BytesMut) {
        match self.0.native_for(Protocol::Amqp091) {
            Some(raw) => out.put_slice(raw),
            None => to_basic(self.0).encode(out),
        }
    }
}

/// The basic properties of a message that has no (valid) AMQP native form.
pub(crate) fn to_basic(m: &Message) -> BasicProperties {
    let p = &m.properties;
    let t = p.text();
    let mut headers = table_out(&m.headers);
    annotate(&m.annotations, &mut headers);
    BasicProperties {
        content_type: t.content_type.clone(),
        content_encoding: t.content_encoding.clone(),
        headers: (!headers.is_empty()).then_some(headers),
        delivery_mode: Some(if p.durable { 2 } else { 1 }),
        priority: p.priority,
        correlation_id: t
            .correlation_id
            .as_ref()
            .map(|c| String::from_utf8_lossy(c).into_owned()),
        reply_to: t.reply_to.clone(),
        expiration: p.expiry.map(|e| e.ttl_ms.to_string()),
        message_id: t.message_id.clone(),
        timestamp: p.timestamp_ms.map(|ms| ms / 1000),
        kind: t.kind.clone(),
        user_id: t.user_id.clone(),
        app_id: t.app_id.clone(),
        cluster_id: t.cluster_id.clone(),
    }
}

fn long_str(s: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
}

/// RabbitMQ's dead-lettering headers for the death history.
fn annotate(a: &Annotations, headers: &mut FieldTable) {
    if a.deaths.is_empty() {
        return;
    }
    let deaths = a
        .deaths
        .iter()
        .map(|d| {
            let mut t = FieldTable::new();
            t.insert("count", FieldValue::I64(d.count as i64));
            t.insert("reason", long_str(d.reason.as_str()));
            t.insert("queue", long_str(&d.queue));
            t.insert("time", FieldValue::Timestamp(d.time));
            t.insert("exchange", long_str(&d.exchange));
            t.insert(
                "routing-keys",
                FieldValue::Array(d.routing_keys.iter().map(|k| long_str(k)).collect()),
            );
            if let Some(ms) = d.original_expiration_ms {
                t.insert("original-expiration", long_str(&ms.to_string()));
            }
            FieldValue::Table(t)
        })
        .collect();
    let site = |headers: &mut FieldTable, which: &str, s: &DeathSite| {
        headers.insert(
            format!("x-{which}-death-reason"),
            long_str(s.reason.as_str()),
        );
        headers.insert(format!("x-{which}-death-queue"), long_str(&s.queue));
        headers.insert(format!("x-{which}-death-exchange"), long_str(&s.exchange));
    };
    if let Some(sites) = &a.death_sites {
        site(headers, "first", &sites.first);
        site(headers, "last", &sites.last);
    }
    headers.insert("x-death", FieldValue::Array(deaths));
}

// ---- journal format 1 ----

/// Reads the messages and arguments journal format 1 stored in AMQP terms.
#[derive(Debug)]
pub(crate) struct Format1;

/// The one [`Format1`] reader, registered with the core at start-up.
pub(crate) static FORMAT1: Format1 = Format1;

impl LegacyReader for Format1 {
    fn message(&self, meta: &[u8], body: Bytes) -> Result<Message, String> {
        let mut r = meta;
        let mut field = |what: &str| -> Result<Vec<u8>, String> {
            if r.len() < 4 {
                return Err(format!("format 1 {what}: truncated"));
            }
            let n = r.get_u32_le() as usize;
            if r.len() < n {
                return Err(format!("format 1 {what}: truncated"));
            }
            let (head, rest) = r.split_at(n);
            r = rest;
            Ok(head.to_vec())
        };
        let exchange = String::from_utf8(field("exchange")?).map_err(|e| e.to_string())?;
        let routing_key = String::from_utf8(field("routing key")?).map_err(|e| e.to_string())?;
        let raw = field("properties")?;
        let raw = Bytes::from(raw);
        let mut properties =
            BasicProperties::decode(&mut raw.clone()).map_err(|e| e.to_string())?;
        let expiry = properties
            .expiration
            .as_deref()
            .and_then(|e| e.parse().ok())
            .map(Expiry::from_now);
        let native = Native {
            protocol: Protocol::Amqp091,
            bytes: raw,
        };
        Ok(from_basic(
            exchange,
            routing_key,
            &mut properties,
            expiry,
            body,
            Some(native),
        ))
    }

    fn table(&self, bytes: &[u8]) -> Result<Headers, String> {
        let mut b = Bytes::copy_from_slice(bytes);
        ferrymq_amqp_codec::decode_field_table(&mut b)
            .map(table_in)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(p: &impl EncodeProperties) -> Vec<u8> {
        let mut out = BytesMut::new();
        p.encode_properties(&mut out);
        out.to_vec()
    }

    #[test]
    fn a_native_message_is_delivered_byte_for_byte() -> Result<(), AmqpError> {
        let mut headers = FieldTable::new();
        headers.insert("k", FieldValue::I16(7));
        let mut p = BasicProperties {
            delivery_mode: Some(1),
            expiration: Some("0100".into()),
            headers: Some(headers),
            ..BasicProperties::default()
        };
        let raw = encoded(&p);
        let m = message_in(
            "ex".into(),
            "rk".into(),
            &mut p,
            Some(Bytes::from(raw.clone())),
            Bytes::new(),
        )?;
        assert_eq!(encoded(&Outgoing(&m)), raw);
        assert_eq!(m.properties.expiry.map(|e| e.ttl_ms), Some(100));
        Ok(())
    }

    #[test]
    fn an_invalid_expiration_is_a_precondition_failure() {
        let mut p = BasicProperties {
            expiration: Some("soon".into()),
            ..BasicProperties::default()
        };
        let e = message_in(String::new(), String::new(), &mut p, None, Bytes::new());
        assert!(e.is_err_and(|e| e.code == code::PRECONDITION_FAILED));
    }

    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = FieldValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(FieldValue::Bool),
            any::<i8>().prop_map(FieldValue::I8),
            any::<u8>().prop_map(FieldValue::U8),
            any::<i16>().prop_map(FieldValue::I16),
            any::<u16>().prop_map(FieldValue::U16),
            any::<i32>().prop_map(FieldValue::I32),
            any::<u32>().prop_map(FieldValue::U32),
            any::<i64>().prop_map(FieldValue::I64),
            any::<u32>().prop_map(|b| FieldValue::F32(f32::from_bits(b))),
            any::<u64>().prop_map(|b| FieldValue::F64(f64::from_bits(b))),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| FieldValue::LongStr(b.into())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| FieldValue::Bytes(b.into())),
            any::<u64>().prop_map(FieldValue::Timestamp),
            Just(FieldValue::Void),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(FieldValue::Array),
                proptest::collection::vec(("[a-z-]{0,8}", inner), 0..4)
                    .prop_map(|kv| FieldValue::Table(FieldTable(kv))),
            ]
        })
    }

    /// Tables with any keys, repeated ones included, in any order.
    fn table() -> impl Strategy<Value = FieldTable> {
        proptest::collection::vec(("[a-zA-Z0-9_.-]{0,12}", value()), 1..6).prop_map(FieldTable)
    }

    fn shortstr() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("\\PC{0,20}")
    }

    /// Properties as any client may send them.
    fn any_properties() -> impl Strategy<Value = BasicProperties> {
        (
            (shortstr(), shortstr(), proptest::option::of(table())),
            (
                proptest::option::of(any::<u8>()),
                proptest::option::of(any::<u8>()),
            ),
            (shortstr(), shortstr(), proptest::option::of("[0-9]{1,12}")),
            (shortstr(), proptest::option::of(any::<u64>()), shortstr()),
            (shortstr(), shortstr(), shortstr()),
        )
            .prop_map(|(a, b, c, d, e)| BasicProperties {
                content_type: a.0,
                content_encoding: a.1,
                headers: a.2,
                delivery_mode: b.0,
                priority: b.1,
                correlation_id: c.0,
                reply_to: c.1,
                expiration: c.2,
                message_id: d.0,
                timestamp: d.1,
                kind: d.2,
                user_id: e.0,
                app_id: e.1,
                cluster_id: e.2,
            })
    }

    proptest! {
        /// AMQP -> core -> AMQP is byte-identical for any properties and tables: the native form travels.
        #[test]
        fn amqp_to_core_to_amqp_is_byte_identical(mut p in any_properties()) {
            let raw = encoded(&p);
            let m = message_in(String::new(), "k".into(), &mut p, Some(Bytes::from(raw.clone())), Bytes::new()).unwrap();
            prop_assert_eq!(encoded(&Outgoing(&m)), raw);
        }

        /// Without the native form (a message the core changed), converting back still gives the same bytes
        /// for properties in canonical form: every table type, key order and repeated key is kept.
        #[test]
        fn the_neutral_form_converts_back_to_the_same_bytes(
            mut p in any_properties(),
            persistent in any::<bool>(),
            ttl in proptest::option::of(0u64..1_000_000_000),
            seconds in proptest::option::of(0u64..u64::MAX / 1000),
        ) {
            p.delivery_mode = Some(if persistent { 2 } else { 1 });
            p.expiration = ttl.map(|t| t.to_string());
            p.timestamp = seconds;
            let raw = encoded(&p);
            let m = message_in(String::new(), "k".into(), &mut p, None, Bytes::new()).unwrap();
            prop_assert!(m.native.is_none());
            prop_assert_eq!(encoded(&Outgoing(&m)), raw);
        }
    }
}
