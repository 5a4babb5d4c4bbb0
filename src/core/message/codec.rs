//! The core's own versioned binary encoding of what the store keeps opaque: a message's metadata (everything
//! but the body) and a table of typed values (queue, exchange and binding arguments).
//!
//! Layout of a message's metadata: a version octet ([`META_VERSION`]), exchange and routing key, a presence
//! word and the present properties, the headers, the annotations, then the native encoding if there is one.
//! Integers are little-endian; strings and byte strings carry a `u32` length; a table is a `u32` count of
//! entries, each a name, an optional label and a tagged value. Decoding checks every length against the bytes
//! left before allocating and limits nesting to [`MAX_DEPTH`]; a future version is an error, never a guess.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use std::num::NonZeroU64;

use super::{
    Annotations, Death, DeathReason, DeathSite, DeathSites, Expiry, Headers, Message, Native,
    Properties, Protocol, TextProperties, Value,
};

/// The metadata format this build writes and the newest it reads.
pub const META_VERSION: u8 = 1;
/// The table format this build writes and the newest it reads.
pub const TABLE_VERSION: u8 = 1;
/// Annotation flag: a delivery time (`Annotations::deliver_at`) follows the flags.
const DELAYED: u8 = 0x08;
/// Deepest nesting of arrays and maps accepted.
pub const MAX_DEPTH: usize = 64;

/// Metadata or a table that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable message metadata: {0}")]
pub struct DecodeError(String);

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

// ---- message metadata ----

/// Encodes everything of `m` but its body.
pub fn encode_meta(m: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + m.exchange.len() + m.routing_key.len());
    out.put_u8(META_VERSION);
    put_str(&mut out, &m.exchange);
    put_str(&mut out, &m.routing_key);
    put_properties(&mut out, &m.properties);
    put_headers(&mut out, &m.headers);
    put_annotations(&mut out, &m.annotations);
    match &m.native {
        None => out.put_u8(0),
        Some(n) => {
            out.put_u8(1);
            out.put_u8(n.protocol.code());
            put_bytes(&mut out, &n.bytes);
        }
    }
    out.freeze()
}

/// Decodes what [`encode_meta`] wrote and attaches `body`.
pub fn decode_meta(meta: &[u8], body: Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader(meta);
    let version = r.u8()?;
    if version != META_VERSION {
        return Err(bad(format!("metadata version {version}")));
    }
    let exchange = r.string()?;
    let routing_key = r.string()?;
    let properties = r.properties()?;
    let headers = r.headers(0)?;
    let annotations = r.annotations()?;
    let native = match r.u8()? {
        0 => None,
        _ => {
            let protocol = Protocol::from_code(r.u8()?).ok_or_else(|| bad("protocol"))?;
            Some(Native {
                protocol,
                bytes: Bytes::copy_from_slice(r.bytes()?),
            })
        }
    };
    r.end()?;
    Ok(Message {
        exchange,
        routing_key,
        properties,
        headers,
        annotations,
        body,
        native,
    })
}

const P_DURABLE: u16 = 1;
const P_PRIORITY: u16 = 1 << 1;
const P_EXPIRY: u16 = 1 << 2;
const P_TIMESTAMP: u16 = 1 << 3;
const P_MESSAGE_ID: u16 = 1 << 4;
const P_CORRELATION_ID: u16 = 1 << 5;
const P_REPLY_TO: u16 = 1 << 6;
const P_CONTENT_TYPE: u16 = 1 << 7;
const P_CONTENT_ENCODING: u16 = 1 << 8;
const P_USER_ID: u16 = 1 << 9;
const P_KIND: u16 = 1 << 10;
const P_APP_ID: u16 = 1 << 11;
const P_CLUSTER_ID: u16 = 1 << 12;

fn put_properties(out: &mut BytesMut, p: &Properties) {
    let t = p.text();
    let strings = [
        (P_MESSAGE_ID, &t.message_id),
        (P_REPLY_TO, &t.reply_to),
        (P_CONTENT_TYPE, &t.content_type),
        (P_CONTENT_ENCODING, &t.content_encoding),
        (P_USER_ID, &t.user_id),
        (P_KIND, &t.kind),
        (P_APP_ID, &t.app_id),
        (P_CLUSTER_ID, &t.cluster_id),
    ];
    let mut flags = 0;
    let mut set = |present: bool, bit: u16| flags |= if present { bit } else { 0 };
    set(p.durable, P_DURABLE);
    set(p.priority.is_some(), P_PRIORITY);
    set(p.expiry.is_some(), P_EXPIRY);
    set(p.timestamp_ms.is_some(), P_TIMESTAMP);
    set(t.correlation_id.is_some(), P_CORRELATION_ID);
    for (bit, s) in &strings {
        set(s.is_some(), *bit);
    }
    out.put_u16_le(flags);
    if let Some(v) = p.priority {
        out.put_u8(v);
    }
    if let Some(e) = p.expiry {
        out.put_u64_le(e.at_ms);
        out.put_u64_le(e.ttl_ms);
    }
    if let Some(t) = p.timestamp_ms {
        out.put_u64_le(t);
    }
    if let Some(c) = &t.correlation_id {
        put_bytes(out, c);
    }
    for (_, s) in strings {
        if let Some(s) = s {
            put_str(out, s);
        }
    }
}

fn put_annotations(out: &mut BytesMut, a: &Annotations) {
    out.put_u8(a.origin.code());
    // One byte: bit 0 retain, bits 1-2 the MQTT QoS (0 for other protocols, so older records read as QoS 0),
    // bit 3 a delivery time follows (older records have none).
    let delayed = if a.deliver_at.is_some() { DELAYED } else { 0 };
    out.put_u8(u8::from(a.retain) | (a.qos & 0x03) << 1 | delayed);
    if let Some(at) = a.deliver_at {
        out.put_u64_le(at.get());
    }
    out.put_u32_le(a.delivery_count);
    out.put_u32_le(a.deaths.len() as u32);
    for d in &a.deaths {
        put_str(out, &d.queue);
        put_str(out, d.reason.as_str());
        put_str(out, &d.exchange);
        out.put_u32_le(d.routing_keys.len() as u32);
        d.routing_keys.iter().for_each(|k| put_str(out, k));
        out.put_u64_le(d.count);
        out.put_u64_le(d.time);
        match d.original_expiration_ms {
            None => out.put_u8(0),
            Some(ms) => {
                out.put_u8(1);
                out.put_u64_le(ms);
            }
        }
    }
    let sites = a.death_sites.as_deref();
    for site in [sites.map(|s| &s.first), sites.map(|s| &s.last)] {
        match site {
            None => out.put_u8(0),
            Some(s) => {
                out.put_u8(1);
                put_str(out, &s.queue);
                put_str(out, s.reason.as_str());
                put_str(out, &s.exchange);
            }
        }
    }
}

// ---- tables ----

/// Encodes a table of arguments (versioned, for the store's definitions).
pub fn encode_table(t: &Headers) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(TABLE_VERSION);
    put_headers(&mut out, t);
    out.freeze()
}

/// Decodes what [`encode_table`] wrote.
pub fn decode_table(bytes: &[u8]) -> Result<Headers, DecodeError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != TABLE_VERSION {
        return Err(bad(format!("table version {version}")));
    }
    let t = r.headers(0)?;
    r.end()?;
    Ok(t)
}

fn put_headers(out: &mut BytesMut, t: &Headers) {
    out.put_u32_le(t.len() as u32);
    for h in t.iter() {
        put_str(out, &h.name);
        match &h.label {
            None => out.put_u8(0),
            Some(l) => {
                out.put_u8(1);
                put_str(out, l);
            }
        }
        put_value(out, &h.value);
    }
}

fn put_value(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Null => out.put_u8(0),
        Value::Bool(b) => {
            out.put_u8(1);
            out.put_u8(u8::from(*b));
        }
        Value::I8(n) => {
            out.put_u8(2);
            out.put_i8(*n);
        }
        Value::U8(n) => {
            out.put_u8(3);
            out.put_u8(*n);
        }
        Value::I16(n) => {
            out.put_u8(4);
            out.put_i16_le(*n);
        }
        Value::U16(n) => {
            out.put_u8(5);
            out.put_u16_le(*n);
        }
        Value::I32(n) => {
            out.put_u8(6);
            out.put_i32_le(*n);
        }
        Value::U32(n) => {
            out.put_u8(7);
            out.put_u32_le(*n);
        }
        Value::I64(n) => {
            out.put_u8(8);
            out.put_i64_le(*n);
        }
        Value::U64(n) => {
            out.put_u8(9);
            out.put_u64_le(*n);
        }
        Value::F32(n) => {
            out.put_u8(10);
            out.put_f32_le(*n);
        }
        Value::F64(n) => {
            out.put_u8(11);
            out.put_f64_le(*n);
        }
        Value::Decimal { scale, value } => {
            out.put_u8(12);
            out.put_u8(*scale);
            out.put_u32_le(*value);
        }
        Value::Text(b) => {
            out.put_u8(13);
            put_bytes(out, b);
        }
        Value::Binary(b) => {
            out.put_u8(14);
            put_bytes(out, b);
        }
        Value::Timestamp(t) => {
            out.put_u8(15);
            out.put_u64_le(*t);
        }
        Value::Array(items) => {
            out.put_u8(16);
            out.put_u32_le(items.len() as u32);
            items.iter().for_each(|i| put_value(out, i));
        }
        Value::Map(m) => {
            out.put_u8(17);
            put_headers(out, m);
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

// ---- reading ----

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn need(&self, n: usize, what: &str) -> Result<(), DecodeError> {
        if self.0.len() < n {
            return Err(bad(format!("truncated {what}")));
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1, "octet")?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2, "u16")?;
        Ok(self.0.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4, "u32")?;
        Ok(self.0.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8, "u64")?;
        Ok(self.0.get_u64_le())
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.need(n, "byte string")?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("string is not UTF-8"))
    }

    /// A count of items each taking at least `min` bytes: checked against what is left before allocating.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(bad("count larger than the data"));
        }
        Ok(n)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing bytes"))
        }
    }

    fn properties(&mut self) -> Result<Properties, DecodeError> {
        let flags = self.u16()?;
        let has = |bit: u16| flags & bit != 0;
        let mut p = Properties {
            durable: has(P_DURABLE),
            ..Properties::default()
        };
        if has(P_PRIORITY) {
            p.priority = Some(self.u8()?);
        }
        if has(P_EXPIRY) {
            p.expiry = Some(Expiry {
                at_ms: self.u64()?,
                ttl_ms: self.u64()?,
            });
        }
        if has(P_TIMESTAMP) {
            p.timestamp_ms = Some(self.u64()?);
        }
        let mut t = TextProperties::default();
        if has(P_CORRELATION_ID) {
            t.correlation_id = Some(Bytes::copy_from_slice(self.bytes()?));
        }
        for (bit, slot) in [
            (P_MESSAGE_ID, &mut t.message_id),
            (P_REPLY_TO, &mut t.reply_to),
            (P_CONTENT_TYPE, &mut t.content_type),
            (P_CONTENT_ENCODING, &mut t.content_encoding),
            (P_USER_ID, &mut t.user_id),
            (P_KIND, &mut t.kind),
            (P_APP_ID, &mut t.app_id),
            (P_CLUSTER_ID, &mut t.cluster_id),
        ] {
            if has(bit) {
                *slot = Some(self.string()?);
            }
        }
        p.set_text(t);
        Ok(p)
    }

    fn reason(&mut self) -> Result<DeathReason, DecodeError> {
        DeathReason::parse(&self.string()?).ok_or_else(|| bad("death reason"))
    }

    fn site(&mut self) -> Result<Option<DeathSite>, DecodeError> {
        if self.u8()? == 0 {
            return Ok(None);
        }
        Ok(Some(DeathSite {
            queue: self.string()?,
            reason: self.reason()?,
            exchange: self.string()?,
        }))
    }

    fn annotations(&mut self) -> Result<Annotations, DecodeError> {
        let origin = Protocol::from_code(self.u8()?).ok_or_else(|| bad("origin protocol"))?;
        let flags = self.u8()?;
        let (retain, qos) = (flags & 0x01 != 0, (flags >> 1) & 0x03);
        let deliver_at = if flags & DELAYED != 0 {
            Some(NonZeroU64::new(self.u64()?).ok_or_else(|| bad("delivery time 0"))?)
        } else {
            None
        };
        let delivery_count = self.u32()?;
        let n = self.count(37)?;
        let mut deaths = Vec::with_capacity(n);
        for _ in 0..n {
            let queue = self.string()?;
            let reason = self.reason()?;
            let exchange = self.string()?;
            let keys = self.count(4)?;
            let routing_keys = (0..keys).map(|_| self.string()).collect::<Result<_, _>>()?;
            let count = self.u64()?;
            let time = self.u64()?;
            let original_expiration_ms = match self.u8()? {
                0 => None,
                _ => Some(self.u64()?),
            };
            deaths.push(Death {
                queue,
                reason,
                exchange,
                routing_keys,
                count,
                time,
                original_expiration_ms,
            });
        }
        Ok(Annotations {
            deaths,
            death_sites: match (self.site()?, self.site()?) {
                (Some(first), last) => Some(Box::new(DeathSites {
                    last: last.unwrap_or_else(|| first.clone()),
                    first,
                })),
                (None, _) => None,
            },
            deliver_at,
            delivery_count,
            origin,
            retain,
            qos,
        })
    }

    fn headers(&mut self, depth: usize) -> Result<Headers, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(bad("nested too deeply"));
        }
        let n = self.count(6)?;
        let mut t = Headers::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            let label = match self.u8()? {
                0 => None,
                _ => Some(self.string()?.into_boxed_str()),
            };
            let value = self.value(depth)?;
            t.push_labeled(name, value, label);
        }
        Ok(t)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(self.u8()? != 0),
            2 => Value::I8(self.u8()? as i8),
            3 => Value::U8(self.u8()?),
            4 => Value::I16(self.u16()? as i16),
            5 => Value::U16(self.u16()?),
            6 => Value::I32(self.u32()? as i32),
            7 => Value::U32(self.u32()?),
            8 => Value::I64(self.u64()? as i64),
            9 => Value::U64(self.u64()?),
            10 => Value::F32(f32::from_bits(self.u32()?)),
            11 => Value::F64(f64::from_bits(self.u64()?)),
            12 => Value::Decimal {
                scale: self.u8()?,
                value: self.u32()?,
            },
            13 => Value::Text(Bytes::copy_from_slice(self.bytes()?)),
            14 => Value::Binary(Bytes::copy_from_slice(self.bytes()?)),
            15 => Value::Timestamp(self.u64()?),
            16 => {
                if depth >= MAX_DEPTH {
                    return Err(bad("nested too deeply"));
                }
                let n = self.count(1)?;
                let items = (0..n)
                    .map(|_| self.value(depth + 1))
                    .collect::<Result<_, _>>()?;
                Value::Array(items)
            }
            17 => Value::Map(self.headers(depth + 1)?),
            tag => return Err(bad(format!("value tag {tag}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Message {
        let mut headers = Headers::new();
        headers.push("k", Value::text("v"));
        headers.push("k", Value::I16(-3));
        headers.push_labeled("price", Value::text("1.5"), Some("Number.float".into()));
        headers.push(
            "nested",
            Value::Array(vec![
                Value::Map(headers.clone()),
                Value::Binary(Bytes::from_static(b"\0\xff")),
            ]),
        );
        let mut properties = Properties {
            durable: true,
            priority: Some(4),
            expiry: Some(Expiry {
                at_ms: 123_456,
                ttl_ms: 1000,
            }),
            timestamp_ms: Some(99_000),
            ..Properties::default()
        };
        properties.set_text(TextProperties {
            message_id: Some("m".into()),
            correlation_id: Some(Bytes::from(vec![0u8; 70_000])),
            reply_to: Some("r".into()),
            content_type: Some("text/plain".into()),
            content_encoding: None,
            user_id: Some("guest".into()),
            kind: None,
            app_id: Some("a".into()),
            cluster_id: None,
        });
        Message {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            properties,
            headers,
            annotations: Annotations {
                deaths: vec![Death {
                    queue: "q".into(),
                    reason: DeathReason::Expired,
                    exchange: "ex".into(),
                    routing_keys: vec!["rk".into(), "cc".into()],
                    count: 2,
                    time: 17,
                    original_expiration_ms: Some(5),
                }],
                death_sites: Some(Box::new(DeathSites {
                    first: DeathSite {
                        queue: "q".into(),
                        reason: DeathReason::Expired,
                        exchange: "ex".into(),
                    },
                    last: DeathSite {
                        queue: "q2".into(),
                        reason: DeathReason::Rejected,
                        exchange: "".into(),
                    },
                })),
                deliver_at: NonZeroU64::new(1_700_000_000_123),
                delivery_count: 3,
                origin: Protocol::Mqtt,
                retain: true,
                qos: 2,
            },
            body: Bytes::from_static(b"body"),
            native: Some(Native {
                protocol: Protocol::Amqp091,
                bytes: Bytes::from_static(b"\x80\x00"),
            }),
        }
    }

    #[test]
    fn metadata_round_trips() -> Result<(), DecodeError> {
        let m = full();
        let meta = encode_meta(&m);
        assert_eq!(decode_meta(&meta, m.body.clone())?, m);
        let empty = Message::default();
        assert_eq!(decode_meta(&encode_meta(&empty), Bytes::new())?, empty);
        Ok(())
    }

    #[test]
    fn truncated_or_future_metadata_is_an_error() {
        let meta = encode_meta(&full());
        for cut in 0..meta.len() {
            assert!(
                decode_meta(&meta[..cut], Bytes::new()).is_err(),
                "cut at {cut}"
            );
        }
        let mut future = meta.to_vec();
        future[0] = META_VERSION + 1;
        assert!(decode_meta(&future, Bytes::new()).is_err());
    }

    #[test]
    fn tables_round_trip_and_refuse_absurd_counts() -> Result<(), DecodeError> {
        let t = full().headers;
        assert_eq!(decode_table(&encode_table(&t))?, t);
        let absurd = [TABLE_VERSION, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_table(&absurd).is_err());
        Ok(())
    }
}
