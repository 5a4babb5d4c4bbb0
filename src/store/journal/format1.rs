//! What the store must know of journal format 1 to recover it without the core: the priority and the TTL of a
//! format 1 message, found in the AMQP 0-9-1 basic properties that format stored (spec §4.2.6.1: a flags word,
//! then the present properties in flag order). Only the properties in front of `expiration` are walked over;
//! nothing is decoded into a protocol type, and the rest of the metadata stays opaque for the core's legacy
//! reader. No other part of the store reads a protocol encoding.

/// The fields of a format 1 message the store needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Fields {
    pub(crate) priority: u8,
    pub(crate) ttl_ms: Option<u64>,
}

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const CONTINUATION: u16 = 1;

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("format 1 properties: truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn shortstr(&mut self) -> Result<&'a [u8], String> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn table(&mut self) -> Result<(), String> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(n).map(|_| ())
    }
}

/// Priority and TTL of the encoded basic properties `props` of a format 1 publish.
pub(crate) fn fields(props: &[u8]) -> Result<Fields, String> {
    let mut c = Cursor(props);
    let flags = c.u16()?;
    let mut more = flags & CONTINUATION != 0;
    while more {
        more = c.u16()? & CONTINUATION != 0;
    }
    let has = |bit: u16| flags & bit != 0;
    let mut out = Fields::default();
    if has(CONTENT_TYPE) {
        c.shortstr()?;
    }
    if has(CONTENT_ENCODING) {
        c.shortstr()?;
    }
    if has(HEADERS) {
        c.table()?;
    }
    if has(DELIVERY_MODE) {
        c.u8()?;
    }
    if has(PRIORITY) {
        out.priority = c.u8()?;
    }
    if has(CORRELATION_ID) {
        c.shortstr()?;
    }
    if has(REPLY_TO) {
        c.shortstr()?;
    }
    if has(EXPIRATION) {
        let text = c.shortstr()?;
        out.ttl_ms = std::str::from_utf8(text).ok().and_then(|t| t.parse().ok());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_and_ttl_are_found_behind_earlier_properties() {
        // content-type "a", headers {} (4-byte empty table), priority 7, reply-to "r", expiration "1500".
        let flags = CONTENT_TYPE | HEADERS | PRIORITY | REPLY_TO | EXPIRATION;
        let mut p = flags.to_be_bytes().to_vec();
        p.extend_from_slice(&[1, b'a', 0, 0, 0, 0, 7, 1, b'r', 4]);
        p.extend_from_slice(b"1500");
        assert_eq!(
            fields(&p),
            Ok(Fields {
                priority: 7,
                ttl_ms: Some(1500)
            })
        );
        assert!(fields(&p[..p.len() - 1]).is_err());
        assert_eq!(fields(&[0, 0]), Ok(Fields::default()));
    }
}
