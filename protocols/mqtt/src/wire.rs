//! MQTT data representation (spec §1.5): two-byte integers, four-byte integers, variable byte integers,
//! UTF-8 strings, binary data and string pairs, read from a [`Bytes`] cursor (zero-copy for binary data) and
//! written into a [`BytesMut`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::DecodeError;

/// The largest value a variable byte integer holds (four bytes) [MQTT-1.5.5].
pub const VARINT_MAX: u32 = 268_435_455;

/// A cursor over one packet's bytes after the fixed header.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Length(what));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8("variable byte integer")?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadRemainingLength)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.binary(what)?;
        utf8(&raw)
    }
}

/// A well-formed MQTT UTF-8 string: valid UTF-8 without U+0000 [MQTT-1.5.4-1, MQTT-1.5.4-2].
pub(crate) fn utf8(raw: &[u8]) -> Result<String, DecodeError> {
    let text = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
    if text.contains('\0') {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(text.to_owned())
}

/// How many bytes `value` takes as a variable byte integer.
pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value & 0x7F) as u8; // masked to seven bits: the cast cannot truncate
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Length-prefixed bytes; the codec never holds more than 65,535 of them in one field (checked by the
/// caller's types: strings and binary data the broker makes are short), and truncates beyond that.
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    let len = data.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16); // clamped to u16::MAX just above
    out.put_slice(&data[..len]);
}

pub(crate) fn put_string(out: &mut BytesMut, text: &str) {
    put_binary(out, text.as_bytes());
}
