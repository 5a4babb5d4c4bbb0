//! Basic-class content properties (spec §4.2.6.1; XML reference §1.8, class basic fields).
//!
//! A content header carries a 16-bit property-flags word (bit 15 = first property) followed by only the
//! properties whose flag is set, in flag order. Bit 0 of each flags word says another flags word follows
//! (spec §4.2.6.1); basic has 14 properties, so any flag beyond them is [`CodecError::Malformed`]. This
//! module knows the property list and its encoding, not the frame around it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::table::{FieldTable, ShortStr, decode_field_table, encode_field_table};
use crate::wire::{SliceReader, put_shortstr};

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const KIND: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
const CONTINUATION: u16 = 1;
/// Flags basic does not define (bit 1); set means a property we cannot parse.
const UNKNOWN: u16 = 1 << 1;

/// The properties of a basic-class message (XML reference §1.8, basic class fields), carried in the
/// content header frame (spec §4.2.6.1). `None` = flag clear, property absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicProperties {
    /// MIME content type (`content-type`).
    pub content_type: Option<ShortStr>,
    /// MIME content encoding (`content-encoding`).
    pub content_encoding: Option<ShortStr>,
    /// Application headers (`headers`), also used by headers exchanges.
    pub headers: Option<FieldTable>,
    /// 1 = non-persistent, 2 = persistent (`delivery-mode`).
    pub delivery_mode: Option<u8>,
    /// Message priority, 0 to 9 (`priority`).
    pub priority: Option<u8>,
    /// Application correlation identifier (`correlation-id`).
    pub correlation_id: Option<ShortStr>,
    /// Address to reply to (`reply-to`).
    pub reply_to: Option<ShortStr>,
    /// Per-message TTL in milliseconds, as a decimal string (`expiration`).
    pub expiration: Option<ShortStr>,
    /// Application message identifier (`message-id`).
    pub message_id: Option<ShortStr>,
    /// Message timestamp, POSIX seconds (`timestamp`, spec §4.2.5.4).
    pub timestamp: Option<u64>,
    /// Message type name (`type`).
    pub kind: Option<ShortStr>,
    /// Creating user id, validated by RabbitMQ against the connection's user (`user-id`).
    pub user_id: Option<ShortStr>,
    /// Creating application id (`app-id`).
    pub app_id: Option<ShortStr>,
    /// Cluster id (`cluster-id`; reserved in 0-9-1, still carried).
    pub cluster_id: Option<ShortStr>,
}

impl BasicProperties {
    fn flags(&self) -> u16 {
        let mut f = 0;
        let mut set = |present: bool, bit: u16| {
            if present {
                f |= bit;
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), KIND);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        f
    }

    /// Writes the property flags word and the present properties in flag order (spec §4.2.6.1).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.flags());
        let s = |out: &mut BytesMut, v: &Option<ShortStr>| {
            if let Some(v) = v {
                put_shortstr(out, v);
            }
        };
        s(out, &self.content_type);
        s(out, &self.content_encoding);
        if let Some(h) = &self.headers {
            encode_field_table(h, out);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        s(out, &self.correlation_id);
        s(out, &self.reply_to);
        s(out, &self.expiration);
        s(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        s(out, &self.kind);
        s(out, &self.user_id);
        s(out, &self.app_id);
        s(out, &self.cluster_id);
    }

    /// Reads the property flags (following continuation words) and the flagged properties, advancing
    /// `buf` past them (spec §4.2.6.1). Flags for properties basic does not define, truncation and bad
    /// field values are [`CodecError::Malformed`].
    pub fn decode(buf: &mut Bytes) -> Result<Self, CodecError> {
        let mut properties = Self::default();
        let used = properties.read_from(buf)?;
        buf.advance(used);
        Ok(properties)
    }

    /// Decodes the properties at the front of `raw` into `self` (whose properties must all be absent), in
    /// place: the struct is large and is not moved. Returns how many bytes were read; the headers table keeps
    /// zero-copy slices of `raw`.
    pub(crate) fn read_from(&mut self, raw: &Bytes) -> Result<usize, CodecError> {
        let mut r = SliceReader::new(raw);
        let flags = r.u16()?;
        let mut more = flags & CONTINUATION != 0;
        while more {
            let word = r.u16()?;
            if word & !CONTINUATION != 0 {
                return Err(CodecError::malformed(
                    "unknown basic property flag in continuation word",
                ));
            }
            more = word & CONTINUATION != 0;
        }
        if flags & UNKNOWN != 0 {
            return Err(CodecError::malformed("unknown basic property flag 0x0002"));
        }
        let has = |bit: u16| flags & bit != 0;
        let s = |r: &mut SliceReader, bit: u16| -> Result<Option<ShortStr>, CodecError> {
            if has(bit) {
                r.shortstr().map(Some)
            } else {
                Ok(None)
            }
        };
        let o = |r: &mut SliceReader, bit: u16| -> Result<Option<u8>, CodecError> {
            if has(bit) { r.u8().map(Some) } else { Ok(None) }
        };
        self.content_type = s(&mut r, CONTENT_TYPE)?;
        self.content_encoding = s(&mut r, CONTENT_ENCODING)?;
        if has(HEADERS) {
            let mut rest = raw.slice(r.pos()..);
            let before = rest.len();
            self.headers = Some(decode_field_table(&mut rest)?);
            r.skip(before - rest.len(), "field table")?;
        }
        self.delivery_mode = o(&mut r, DELIVERY_MODE)?;
        self.priority = o(&mut r, PRIORITY)?;
        self.correlation_id = s(&mut r, CORRELATION_ID)?;
        self.reply_to = s(&mut r, REPLY_TO)?;
        self.expiration = s(&mut r, EXPIRATION)?;
        self.message_id = s(&mut r, MESSAGE_ID)?;
        if has(TIMESTAMP) {
            self.timestamp = Some(r.u64()?);
        }
        self.kind = s(&mut r, KIND)?;
        self.user_id = s(&mut r, USER_ID)?;
        self.app_id = s(&mut r, APP_ID)?;
        self.cluster_id = s(&mut r, CLUSTER_ID)?;
        Ok(r.pos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldValue;

    fn all() -> BasicProperties {
        let mut headers = FieldTable::new();
        headers.insert("x-match", FieldValue::from("all"));
        BasicProperties {
            content_type: Some("application/json".into()),
            content_encoding: Some("gzip".into()),
            headers: Some(headers),
            delivery_mode: Some(2),
            priority: Some(5),
            correlation_id: Some("corr".into()),
            reply_to: Some("amq.rabbitmq.reply-to".into()),
            expiration: Some("60000".into()),
            message_id: Some("m-1".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("order.created".into()),
            user_id: Some("guest".into()),
            app_id: Some("ferry".into()),
            cluster_id: Some("c1".into()),
        }
    }

    fn round_trip(p: &BasicProperties) -> BasicProperties {
        let mut out = BytesMut::new();
        p.encode(&mut out);
        let mut buf = out.freeze();
        let back = BasicProperties::decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        back
    }

    #[test]
    fn all_properties_round_trip_with_every_flag_set() {
        let p = all();
        assert_eq!(p.flags(), 0xfffc);
        assert_eq!(round_trip(&p), p);
    }

    #[test]
    fn no_properties_is_just_a_zero_flags_word() {
        let mut out = BytesMut::new();
        BasicProperties::default().encode(&mut out);
        assert_eq!(&out[..], &[0, 0]);
        assert_eq!(
            round_trip(&BasicProperties::default()),
            BasicProperties::default()
        );
    }

    #[test]
    fn some_properties_are_written_in_flag_order() {
        let p = BasicProperties {
            content_type: Some("text/plain".into()),
            delivery_mode: Some(2),
            timestamp: Some(1),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        p.encode(&mut out);
        assert_eq!(
            &out[..],
            b"\x90\x40\x0atext/plain\x02\x00\x00\x00\x00\x00\x00\x00\x01"
        );
        assert_eq!(round_trip(&p), p);
    }

    #[test]
    fn empty_continuation_words_are_accepted() {
        // flags: delivery-mode + continuation, then two continuation words (the last one ends the chain).
        let mut buf = Bytes::from_static(b"\x10\x01\x00\x01\x00\x00\x02");
        let p = BasicProperties::decode(&mut buf).unwrap();
        assert_eq!(
            p,
            BasicProperties {
                delivery_mode: Some(2),
                ..Default::default()
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn flags_beyond_the_basic_class_are_malformed() {
        let mut buf = Bytes::from_static(b"\x00\x02");
        assert!(matches!(
            BasicProperties::decode(&mut buf),
            Err(CodecError::Malformed(_))
        ));
        let mut buf = Bytes::from_static(b"\x00\x01\x80\x00");
        assert!(matches!(
            BasicProperties::decode(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_properties_are_malformed() {
        let mut out = BytesMut::new();
        all().encode(&mut out);
        for cut in 0..out.len() {
            let mut buf = Bytes::copy_from_slice(&out[..cut]);
            assert!(
                matches!(
                    BasicProperties::decode(&mut buf),
                    Err(CodecError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
    }
}
