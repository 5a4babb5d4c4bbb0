//! Primitive AMQP data fields (spec §4.2.5): big-endian integers, packed bits, shortstr and longstr.
//!
//! Reads come from a `Bytes` cursor (so longstr values are zero-copy slices of the frame payload) and are
//! all bounds-checked: running out of bytes is [`CodecError::Malformed`], because a frame is only parsed once
//! it is wholly buffered. Writes go into a `BytesMut` and cannot fail. [`ArgReader`] and [`ArgWriter`] add the
//! bit packing of method arguments (spec §4.2.5.2). Nothing here knows about methods, tables or frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Longest shortstr the wire allows (length is one octet, spec §4.2.5.3).
pub(crate) const SHORTSTR_MAX: usize = u8::MAX as usize;

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), CodecError> {
    need_in(buf.remaining(), n, what)
}

fn need_in(left: usize, n: usize, what: &str) -> Result<(), CodecError> {
    if left < n {
        return Err(CodecError::Malformed(format!(
            "truncated {what}: need {n} bytes, {left} left"
        )));
    }
    Ok(())
}

/// The same reads from a borrowed slice, for decoding a frame where it lies in the read buffer: the hot frames
/// (basic.publish, content headers) then cost no reference counting on the shared buffer. Errors read as the
/// `Bytes` readers' do.
pub(crate) struct SliceReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SliceReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Moves past `n` bytes read by other means.
    pub(crate) fn skip(&mut self, n: usize, what: &str) -> Result<(), CodecError> {
        self.take(n, what).map(|_| ())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        need_in(self.left(), n, what)?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1, "octet")?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2, "short")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, "longlong")?);
        Ok(u64::from_be_bytes(b))
    }

    /// shortstr (spec §4.2.5.3), as [`get_shortstr`].
    pub(crate) fn shortstr(&mut self) -> Result<String, CodecError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len, "shortstr")?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CodecError::malformed("shortstr is not valid UTF-8"))
    }
}

pub(crate) fn get_u8(buf: &mut Bytes) -> Result<u8, CodecError> {
    need(buf, 1, "octet")?;
    Ok(buf.get_u8())
}

pub(crate) fn get_u16(buf: &mut Bytes) -> Result<u16, CodecError> {
    need(buf, 2, "short")?;
    Ok(buf.get_u16())
}

pub(crate) fn get_u32(buf: &mut Bytes) -> Result<u32, CodecError> {
    need(buf, 4, "long")?;
    Ok(buf.get_u32())
}

pub(crate) fn get_u64(buf: &mut Bytes) -> Result<u64, CodecError> {
    need(buf, 8, "longlong")?;
    Ok(buf.get_u64())
}

/// Splits `len` bytes off the front of `buf` without copying.
pub(crate) fn get_slice(buf: &mut Bytes, len: usize, what: &str) -> Result<Bytes, CodecError> {
    need(buf, len, what)?;
    Ok(buf.split_to(len))
}

/// shortstr: one length octet, then that many bytes, which must be UTF-8 (spec §4.2.5.3).
pub(crate) fn get_shortstr(buf: &mut Bytes) -> Result<String, CodecError> {
    let len = usize::from(get_u8(buf)?);
    need(buf, len, "shortstr")?;
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|_| CodecError::malformed("shortstr is not valid UTF-8"))?
        .to_owned();
    buf.advance(len);
    Ok(s)
}

/// Skips a shortstr without validating it (for reserved fields).
pub(crate) fn skip_shortstr(buf: &mut Bytes) -> Result<(), CodecError> {
    let len = usize::from(get_u8(buf)?);
    need(buf, len, "shortstr")?;
    buf.advance(len);
    Ok(())
}

/// longstr: a 32-bit length, then that many bytes, returned zero-copy (spec §4.2.5.3).
pub(crate) fn get_longstr(buf: &mut Bytes) -> Result<Bytes, CodecError> {
    let len = get_u32(buf)?;
    let len = usize::try_from(len).map_err(|_| CodecError::malformed("longstr too long"))?;
    get_slice(buf, len, "longstr")
}

/// Cuts `s` to at most `max` bytes on a char boundary, so the result stays valid UTF-8.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a shortstr. A string longer than 255 bytes cannot be represented; it is cut at the last char
/// boundary within 255 bytes (callers validate names before they get here, as RabbitMQ does).
pub(crate) fn put_shortstr(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, SHORTSTR_MAX);
    // Cannot truncate: `truncate_utf8` bounded the length by 255.
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

/// Writes a longstr (a 32-bit length prefix, then the bytes). Values over 4 GiB are cut to 4 GiB - 1.
pub(crate) fn put_longstr(out: &mut BytesMut, b: &[u8]) {
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_slice(&b[..len as usize]);
}

/// Reserves a 32-bit length slot; [`patch_u32_len`] fills it in once the body is written.
pub(crate) fn put_u32_len_slot(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_u32(0);
    at
}

/// Writes the number of bytes written after the 4-byte slot at `at` into that slot.
pub(crate) fn patch_u32_len(out: &mut BytesMut, at: usize) {
    let len = out.len() - at - 4;
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads method arguments in spec order, unpacking consecutive bit fields from shared octets
/// (spec §4.2.5.2: up to 8 bits per octet, first bit in the low-order bit; any other field ends the run).
pub(crate) struct ArgReader<'a> {
    buf: &'a mut Bytes,
    bits: u8,
    bits_left: u8,
}

impl<'a> ArgReader<'a> {
    pub(crate) fn new(buf: &'a mut Bytes) -> Self {
        Self {
            buf,
            bits: 0,
            bits_left: 0,
        }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, CodecError> {
        if self.bits_left == 0 {
            self.bits = get_u8(self.buf)?;
            self.bits_left = 8;
        }
        let v = self.bits & 1 != 0;
        self.bits >>= 1;
        self.bits_left -= 1;
        Ok(v)
    }

    fn field(&mut self) -> &mut Bytes {
        self.bits_left = 0;
        self.buf
    }

    pub(crate) fn octet(&mut self) -> Result<u8, CodecError> {
        get_u8(self.field())
    }

    pub(crate) fn short(&mut self) -> Result<u16, CodecError> {
        get_u16(self.field())
    }

    pub(crate) fn long(&mut self) -> Result<u32, CodecError> {
        get_u32(self.field())
    }

    pub(crate) fn longlong(&mut self) -> Result<u64, CodecError> {
        get_u64(self.field())
    }

    pub(crate) fn shortstr(&mut self) -> Result<String, CodecError> {
        get_shortstr(self.field())
    }

    pub(crate) fn skip_shortstr(&mut self) -> Result<(), CodecError> {
        skip_shortstr(self.field())
    }

    pub(crate) fn longstr(&mut self) -> Result<Bytes, CodecError> {
        get_longstr(self.field())
    }

    pub(crate) fn table(&mut self) -> Result<crate::FieldTable, CodecError> {
        crate::decode_field_table(self.field())
    }
}

/// Writes method arguments in spec order, packing consecutive bit fields into shared octets
/// (spec §4.2.5.2).
pub(crate) struct ArgWriter<'a> {
    out: &'a mut BytesMut,
    /// Index of the octet currently collecting bits, if a run of bits is open.
    bit_octet: usize,
    bits_used: u8,
}

impl<'a> ArgWriter<'a> {
    pub(crate) fn new(out: &'a mut BytesMut) -> Self {
        Self {
            out,
            bit_octet: 0,
            bits_used: 8,
        }
    }

    pub(crate) fn bit(&mut self, v: bool) {
        if self.bits_used == 8 {
            self.bit_octet = self.out.len();
            self.out.put_u8(0);
            self.bits_used = 0;
        }
        if v {
            self.out[self.bit_octet] |= 1 << self.bits_used;
        }
        self.bits_used += 1;
    }

    fn field(&mut self) -> &mut BytesMut {
        self.bits_used = 8;
        self.out
    }

    pub(crate) fn octet(&mut self, v: u8) {
        self.field().put_u8(v);
    }

    pub(crate) fn short(&mut self, v: u16) {
        self.field().put_u16(v);
    }

    pub(crate) fn long(&mut self, v: u32) {
        self.field().put_u32(v);
    }

    pub(crate) fn longlong(&mut self, v: u64) {
        self.field().put_u64(v);
    }

    pub(crate) fn shortstr(&mut self, v: &str) {
        put_shortstr(self.field(), v);
    }

    pub(crate) fn longstr(&mut self, v: &[u8]) {
        put_longstr(self.field(), v);
    }

    pub(crate) fn table(&mut self, v: &crate::FieldTable) {
        crate::encode_field_table(v, self.field());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_pack_low_order_first_and_any_other_field_ends_the_octet() {
        let mut out = BytesMut::new();
        let mut w = ArgWriter::new(&mut out);
        w.bit(true);
        w.bit(false);
        w.bit(true);
        w.short(7);
        w.bit(true);
        assert_eq!(&out[..], &[0b101, 0, 7, 1]);

        let mut buf = out.freeze();
        let mut r = ArgReader::new(&mut buf);
        assert!(r.bit().unwrap());
        assert!(!r.bit().unwrap());
        assert!(r.bit().unwrap());
        assert_eq!(r.short().unwrap(), 7);
        assert!(r.bit().unwrap());
        assert!(buf.is_empty());
    }

    #[test]
    fn a_ninth_bit_starts_a_new_octet() {
        let mut out = BytesMut::new();
        let mut w = ArgWriter::new(&mut out);
        for i in 0..9 {
            w.bit(i % 2 == 0);
        }
        assert_eq!(&out[..], &[0b0101_0101, 0b1]);
        let mut buf = out.freeze();
        let mut r = ArgReader::new(&mut buf);
        for i in 0..9 {
            assert_eq!(r.bit().unwrap(), i % 2 == 0);
        }
    }

    #[test]
    fn overlong_shortstr_is_cut_on_a_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let mut out = BytesMut::new();
        put_shortstr(&mut out, &s);
        assert_eq!(out[0], 254);
        let mut buf = out.freeze();
        assert_eq!(get_shortstr(&mut buf).unwrap(), "é".repeat(127));
    }

    #[test]
    fn invalid_utf8_shortstr_is_malformed() {
        let mut buf = Bytes::from_static(&[2, 0xff, 0xfe]);
        assert!(matches!(
            get_shortstr(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_reads_are_malformed_not_panics() {
        let mut buf = Bytes::from_static(&[0, 0, 0, 9, 1]);
        assert!(matches!(
            get_longstr(&mut buf),
            Err(CodecError::Malformed(_))
        ));
        let mut buf = Bytes::from_static(&[5, b'a']);
        assert!(matches!(
            get_shortstr(&mut buf),
            Err(CodecError::Malformed(_))
        ));
        let mut buf = Bytes::from_static(&[1, 2, 3]);
        assert!(matches!(get_u64(&mut buf), Err(CodecError::Malformed(_))));
    }
}
