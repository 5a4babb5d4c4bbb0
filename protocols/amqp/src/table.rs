//! Field tables and field values (spec §4.2.5.5), with RabbitMQ's field-type tags.
//!
//! The 0-9-1 spec's own tag table disagrees with what every real client sends; RabbitMQ's errata table
//! (`t b B s u I i l f d D S A T F V x`) is the one clients use, so it is the one implemented here. Tables
//! keep their entries in wire order, duplicate keys included, so a table decoded and re-encoded is
//! byte-identical. Long strings and byte arrays are zero-copy slices of the frame payload. Nesting is limited
//! to [`MAX_NESTING_DEPTH`] so a hostile frame cannot exhaust the stack. This module knows nothing about
//! methods, properties or frames.

use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::wire::{
    get_longstr, get_shortstr, get_slice, get_u8, get_u16, get_u32, get_u64, patch_u32_len,
    put_longstr, put_shortstr, put_u32_len_slot,
};

/// A shortstr (spec §4.2.5.3): at most 255 bytes on the wire. Decoding rejects invalid UTF-8
/// ([`CodecError::Malformed`]); encoding cuts longer strings at a char boundary within 255 bytes.
pub type ShortStr = String;

/// Deepest nesting of tables and arrays inside one field table that [`decode_field_table`] accepts;
/// deeper input is [`CodecError::Malformed`].
pub const MAX_NESTING_DEPTH: usize = 64;

/// One value in a field table or field array (spec §4.2.5.5), tagged as in RabbitMQ's field-type table.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`: boolean, one octet (0 = false).
    Bool(bool),
    /// `b`: signed 8-bit integer.
    I8(i8),
    /// `B`: unsigned 8-bit integer.
    U8(u8),
    /// `s`: signed 16-bit integer.
    I16(i16),
    /// `u`: unsigned 16-bit integer.
    U16(u16),
    /// `I`: signed 32-bit integer.
    I32(i32),
    /// `i`: unsigned 32-bit integer.
    U32(u32),
    /// `l`: signed 64-bit integer.
    I64(i64),
    /// `f`: IEEE-754 single-precision float.
    F32(f32),
    /// `d`: IEEE-754 double-precision float.
    F64(f64),
    /// `D`: decimal, `value / 10^scale`.
    Decimal {
        /// Number of decimal digits after the point.
        scale: u8,
        /// The unscaled value.
        value: u32,
    },
    /// `S`: long string, 32-bit length prefix; arbitrary bytes (usually UTF-8).
    LongStr(Bytes),
    /// `A`: field array, 32-bit byte length then tagged values.
    Array(Vec<FieldValue>),
    /// `T`: timestamp, 64-bit POSIX seconds (spec §4.2.5.4).
    Timestamp(u64),
    /// `F`: nested field table.
    Table(FieldTable),
    /// `V`: no value.
    Void,
    /// `x`: byte array, 32-bit length prefix (RabbitMQ extension).
    Bytes(Bytes),
}

impl FieldValue {
    /// The value as text if it is a long string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::LongStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value widened to `i64` if it is any integer type (`b B s u I i l`). Timestamps, decimals and
    /// floats are not integers here.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::U8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a boolean (`t`).
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The nested table if the value is one (`F`).
    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            Self::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The elements if the value is a field array (`A`).
    pub fn as_array(&self) -> Option<&[FieldValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The RabbitMQ field-type tag this value is written with.
    pub fn tag(&self) -> u8 {
        match self {
            Self::Bool(_) => b't',
            Self::I8(_) => b'b',
            Self::U8(_) => b'B',
            Self::I16(_) => b's',
            Self::U16(_) => b'u',
            Self::I32(_) => b'I',
            Self::U32(_) => b'i',
            Self::I64(_) => b'l',
            Self::F32(_) => b'f',
            Self::F64(_) => b'd',
            Self::Decimal { .. } => b'D',
            Self::LongStr(_) => b'S',
            Self::Array(_) => b'A',
            Self::Timestamp(_) => b'T',
            Self::Table(_) => b'F',
            Self::Void => b'V',
            Self::Bytes(_) => b'x',
        }
    }
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<i32> for FieldValue {
    fn from(v: i32) -> Self {
        Self::I32(v)
    }
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        Self::I64(v)
    }
}

impl From<&str> for FieldValue {
    /// A long string (`S`), as clients send text.
    fn from(v: &str) -> Self {
        Self::LongStr(Bytes::copy_from_slice(v.as_bytes()))
    }
}

impl From<String> for FieldValue {
    /// A long string (`S`), as clients send text.
    fn from(v: String) -> Self {
        Self::LongStr(Bytes::from(v))
    }
}

impl From<FieldTable> for FieldValue {
    fn from(v: FieldTable) -> Self {
        Self::Table(v)
    }
}

/// A field table (spec §4.2.5.5): shortstr keys and tagged values.
///
/// Order is preserved on decode and encode, and duplicate keys are kept as sent; lookups see the first
/// entry with a key, as RabbitMQ's do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `v`: replaces the first entry with that key in place (and drops any later duplicates),
    /// or appends a new entry.
    pub fn insert(&mut self, key: impl Into<String>, v: FieldValue) {
        let key = key.into();
        match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                self.0[i].1 = v;
                let mut seen = 0usize;
                self.0.retain(|(k, _)| {
                    if *k != key {
                        return true;
                    }
                    seen += 1;
                    seen == 1
                });
            }
            None => self.0.push((key, v)),
        }
    }

    /// Removes every entry named `key`, returning the value of the first.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        let (_, first) = self.0.remove(i);
        self.0.retain(|(k, _)| k != key);
        Some(first)
    }

    /// Entries in wire order, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// True if the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of entries, duplicates included.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K: Into<String>> FromIterator<(K, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, FieldValue)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Writes a field table: a 32-bit byte length, then each entry as shortstr key, tag octet, value
/// (spec §4.2.5.5).
pub fn encode_field_table(t: &FieldTable, out: &mut BytesMut) {
    let slot = put_u32_len_slot(out);
    for (k, v) in &t.0 {
        put_shortstr(out, k);
        encode_field_value(v, out);
    }
    patch_u32_len(out, slot);
}

/// Writes one tagged field value (spec §4.2.5.5).
pub fn encode_field_value(v: &FieldValue, out: &mut BytesMut) {
    out.put_u8(v.tag());
    match v {
        FieldValue::Bool(b) => out.put_u8(u8::from(*b)),
        FieldValue::I8(n) => out.put_i8(*n),
        FieldValue::U8(n) => out.put_u8(*n),
        FieldValue::I16(n) => out.put_i16(*n),
        FieldValue::U16(n) => out.put_u16(*n),
        FieldValue::I32(n) => out.put_i32(*n),
        FieldValue::U32(n) => out.put_u32(*n),
        FieldValue::I64(n) => out.put_i64(*n),
        FieldValue::F32(n) => out.put_f32(*n),
        FieldValue::F64(n) => out.put_f64(*n),
        FieldValue::Decimal { scale, value } => {
            out.put_u8(*scale);
            out.put_u32(*value);
        }
        FieldValue::LongStr(b) | FieldValue::Bytes(b) => put_longstr(out, b),
        FieldValue::Array(items) => {
            let slot = put_u32_len_slot(out);
            for item in items {
                encode_field_value(item, out);
            }
            patch_u32_len(out, slot);
        }
        FieldValue::Timestamp(t) => out.put_u64(*t),
        FieldValue::Table(t) => encode_field_table(t, out),
        FieldValue::Void => {}
    }
}

/// Reads a field table (spec §4.2.5.5), advancing `buf` past it. Keys must be valid UTF-8; unknown tags,
/// truncation and nesting deeper than [`MAX_NESTING_DEPTH`] are [`CodecError::Malformed`].
pub fn decode_field_table(buf: &mut Bytes) -> Result<FieldTable, CodecError> {
    decode_table_at(buf, 0)
}

/// Reads one tagged field value (spec §4.2.5.5), advancing `buf` past it.
pub fn decode_field_value(buf: &mut Bytes) -> Result<FieldValue, CodecError> {
    decode_value_at(buf, 0)
}

fn sized_body(buf: &mut Bytes, what: &str, depth: usize) -> Result<Bytes, CodecError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(CodecError::malformed("field table nested too deeply"));
    }
    let len = get_u32(buf)?;
    let len = usize::try_from(len).map_err(|_| CodecError::malformed("field table too long"))?;
    get_slice(buf, len, what)
}

fn decode_table_at(buf: &mut Bytes, depth: usize) -> Result<FieldTable, CodecError> {
    let mut body = sized_body(buf, "field table", depth)?;
    let mut entries = Vec::new();
    while !body.is_empty() {
        let key = get_shortstr(&mut body)?;
        let value = decode_value_at(&mut body, depth)?;
        entries.push((key, value));
    }
    Ok(FieldTable(entries))
}

fn decode_array_at(buf: &mut Bytes, depth: usize) -> Result<Vec<FieldValue>, CodecError> {
    let mut body = sized_body(buf, "field array", depth)?;
    let mut items = Vec::new();
    while !body.is_empty() {
        items.push(decode_value_at(&mut body, depth)?);
    }
    Ok(items)
}

fn decode_value_at(buf: &mut Bytes, depth: usize) -> Result<FieldValue, CodecError> {
    let tag = get_u8(buf)?;
    Ok(match tag {
        b't' => FieldValue::Bool(get_u8(buf)? != 0),
        b'b' => FieldValue::I8(get_u8(buf)? as i8),
        b'B' => FieldValue::U8(get_u8(buf)?),
        b's' => FieldValue::I16(get_u16(buf)? as i16),
        b'u' => FieldValue::U16(get_u16(buf)?),
        b'I' => FieldValue::I32(get_u32(buf)? as i32),
        b'i' => FieldValue::U32(get_u32(buf)?),
        b'l' => FieldValue::I64(get_u64(buf)? as i64),
        b'f' => FieldValue::F32(f32::from_bits(get_u32(buf)?)),
        b'd' => FieldValue::F64(f64::from_bits(get_u64(buf)?)),
        b'D' => FieldValue::Decimal {
            scale: get_u8(buf)?,
            value: get_u32(buf)?,
        },
        b'S' => FieldValue::LongStr(get_longstr(buf)?),
        b'A' => FieldValue::Array(decode_array_at(buf, depth + 1)?),
        b'T' => FieldValue::Timestamp(get_u64(buf)?),
        b'F' => FieldValue::Table(decode_table_at(buf, depth + 1)?),
        b'V' => FieldValue::Void,
        b'x' => FieldValue::Bytes(get_longstr(buf)?),
        other => {
            return Err(CodecError::Malformed(format!(
                "unknown field value type tag {other:#04x}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_value_type() -> FieldTable {
        let mut inner = FieldTable::new();
        inner.insert(
            "deep",
            FieldValue::Array(vec![FieldValue::Void, FieldValue::from("x")]),
        );
        FieldTable(vec![
            ("bool".into(), FieldValue::Bool(true)),
            ("i8".into(), FieldValue::I8(-8)),
            ("u8".into(), FieldValue::U8(200)),
            ("i16".into(), FieldValue::I16(-16_000)),
            ("u16".into(), FieldValue::U16(60_000)),
            ("i32".into(), FieldValue::I32(-2_000_000_000)),
            ("u32".into(), FieldValue::U32(4_000_000_000)),
            ("i64".into(), FieldValue::I64(i64::MIN)),
            ("f32".into(), FieldValue::F32(1.5)),
            ("f64".into(), FieldValue::F64(-2.25e300)),
            (
                "dec".into(),
                FieldValue::Decimal {
                    scale: 2,
                    value: 12345,
                },
            ),
            (
                "str".into(),
                FieldValue::LongStr(Bytes::from_static(b"hello")),
            ),
            (
                "arr".into(),
                FieldValue::Array(vec![
                    FieldValue::I32(1),
                    FieldValue::Array(vec![FieldValue::Bool(false)]),
                    FieldValue::Table(inner.clone()),
                ]),
            ),
            ("ts".into(), FieldValue::Timestamp(1_700_000_000)),
            ("tbl".into(), FieldValue::Table(inner)),
            ("void".into(), FieldValue::Void),
            (
                "bytes".into(),
                FieldValue::Bytes(Bytes::from_static(&[0, 1, 2, 255])),
            ),
        ])
    }

    fn round_trip(t: &FieldTable) -> FieldTable {
        let mut out = BytesMut::new();
        encode_field_table(t, &mut out);
        let mut buf = out.freeze();
        let back = decode_field_table(&mut buf).unwrap();
        assert!(buf.is_empty(), "decoder must consume exactly the table");
        back
    }

    #[test]
    fn every_value_type_round_trips_with_nesting() {
        let t = every_value_type();
        assert_eq!(round_trip(&t), t);
    }

    #[test]
    fn order_and_duplicate_keys_are_preserved() {
        let t = FieldTable(vec![
            ("z".into(), FieldValue::I32(1)),
            ("a".into(), FieldValue::I32(2)),
            ("z".into(), FieldValue::I32(3)),
        ]);
        let back = round_trip(&t);
        assert_eq!(back, t);
        assert_eq!(
            back.get("z"),
            Some(&FieldValue::I32(1)),
            "lookup sees the first entry"
        );
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn exact_wire_bytes_for_a_small_table() {
        let t = FieldTable(vec![
            ("a".into(), FieldValue::Bool(true)),
            ("b".into(), FieldValue::U8(7)),
        ]);
        let mut out = BytesMut::new();
        encode_field_table(&t, &mut out);
        assert_eq!(&out[..], b"\x00\x00\x00\x08\x01at\x01\x01bB\x07");
    }

    #[test]
    fn insert_replaces_in_place_and_drops_duplicates_remove_drops_all() {
        let mut t = FieldTable(vec![
            ("k".into(), FieldValue::I32(1)),
            ("x".into(), FieldValue::I32(2)),
            ("k".into(), FieldValue::I32(3)),
        ]);
        t.insert("k", FieldValue::I32(9));
        assert_eq!(
            t.0,
            vec![
                ("k".into(), FieldValue::I32(9)),
                ("x".into(), FieldValue::I32(2))
            ]
        );
        t.insert("new", FieldValue::Void);
        assert_eq!(
            t.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["k", "x", "new"]
        );

        t.0.push(("k".into(), FieldValue::I32(4)));
        assert_eq!(t.remove("k"), Some(FieldValue::I32(9)));
        assert_eq!(t.get("k"), None);
        assert_eq!(t.remove("k"), None);
        assert!(!t.is_empty());
    }

    #[test]
    fn helpers_read_the_types_they_promise() {
        assert_eq!(FieldValue::from("q").as_str(), Some("q"));
        assert_eq!(
            FieldValue::LongStr(Bytes::from_static(&[0xff])).as_str(),
            None
        );
        assert_eq!(FieldValue::U32(7).as_i64(), Some(7));
        assert_eq!(FieldValue::I8(-7).as_i64(), Some(-7));
        assert_eq!(FieldValue::Timestamp(7).as_i64(), None);
        assert_eq!(FieldValue::Bool(true).as_bool(), Some(true));
        assert_eq!(FieldValue::I32(1).as_bool(), None);
    }

    #[test]
    fn unknown_tag_is_malformed() {
        let mut buf = Bytes::from_static(b"\x00\x00\x00\x03\x01aZ");
        assert!(matches!(
            decode_field_table(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_table_is_malformed() {
        let mut out = BytesMut::new();
        encode_field_table(&every_value_type(), &mut out);
        for cut in 0..out.len() {
            let mut buf = Bytes::copy_from_slice(&out[..cut]);
            assert!(
                matches!(decode_field_table(&mut buf), Err(CodecError::Malformed(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn value_overrunning_its_table_is_malformed() {
        // The table claims 3 bytes, but the I32 value inside needs 4 more after the key and tag.
        let mut buf = Bytes::from_static(b"\x00\x00\x00\x03\x01aI\x00\x00\x00\x01");
        assert!(matches!(
            decode_field_table(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn hostile_nesting_is_rejected_not_a_stack_overflow() {
        // 1_000 nested single-entry tables: {"": {"": {...}}}
        let depth = 1_000;
        let mut nested = FieldTable::new();
        for _ in 0..depth {
            nested = FieldTable(vec![(String::new(), FieldValue::Table(nested))]);
        }
        let mut out = BytesMut::new();
        encode_field_table(&nested, &mut out);
        let mut buf = out.freeze();
        assert!(matches!(
            decode_field_table(&mut buf),
            Err(CodecError::Malformed(_))
        ));
        // Drop iteratively to keep the test itself from overflowing the stack.
        let mut cur = nested;
        while let Some((_, FieldValue::Table(next))) = cur.0.pop() {
            cur = next;
        }
    }

    #[test]
    fn nesting_at_the_limit_is_accepted() {
        let mut nested = FieldTable::new();
        for _ in 0..MAX_NESTING_DEPTH {
            nested = FieldTable(vec![("n".into(), FieldValue::Table(nested))]);
        }
        assert_eq!(round_trip(&nested), nested);
    }
}
