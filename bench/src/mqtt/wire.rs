//! The few MQTT 3.1.1 packets the benchmark sends and reads, encoded and decoded by hand on `bytes`: CONNECT,
//! SUBSCRIBE, PUBLISH and the acknowledgements. Nothing here allocates per message: a PUBLISH is appended to
//! the caller's write buffer from a pre-encoded template, and received packets are decoded in place.
//! It is a load generator's codec, not a conforming one: it trusts the broker's packets to be well formed
//! and reports anything else as an error.

use anyhow::{Context as _, bail};
use bytes::{Buf as _, BufMut as _, BytesMut};

/// Packet types (MQTT 3.1.1 §2.2.1).
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBACK: u8 = 9;

/// Appends the remaining-length varint (§2.2.3).
fn put_len(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            return;
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// CONNECT, MQTT 3.1.1, clean session, the given keep-alive (0 turns it off).
pub fn connect(client_id: &str, keep_alive: u16) -> BytesMut {
    let mut body = BytesMut::new();
    put_str(&mut body, "MQTT");
    body.put_u8(4);
    body.put_u8(0x02);
    body.put_u16(keep_alive);
    put_str(&mut body, client_id);
    packet(0x10, &body)
}

/// SUBSCRIBE packet id 1 to one filter at `qos`.
pub fn subscribe(filter: &str, qos: u8) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u16(1);
    put_str(&mut body, filter);
    body.put_u8(qos);
    packet(0x82, &body)
}

fn packet(header: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(header);
    put_len(&mut out, body.len());
    out.put_slice(body);
    out
}

/// An acknowledgement of `kind` (PUBACK, PUBREC, PUBREL or PUBCOMP) for `id`.
pub fn put_ack(out: &mut BytesMut, kind: u8, id: u16) {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    out.put_slice(&[(kind << 4) | flags, 2]);
    out.put_u16(id);
}

/// A PUBLISH template: the whole packet for one topic, QoS and payload size, with the offsets of the packet
/// id and of the payload so each message patches them in place.
#[derive(Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    id_at: Option<usize>,
    payload_at: usize,
}

impl PublishTemplate {
    pub fn new(topic: &str, qos: u8, size: usize) -> Self {
        let id_len = if qos > 0 { 2 } else { 0 };
        let mut out = BytesMut::new();
        out.put_u8(0x30 | (qos << 1));
        put_len(&mut out, 2 + topic.len() + id_len + size);
        put_str(&mut out, topic);
        let id_at = (qos > 0).then(|| out.len());
        out.put_slice(&vec![0; id_len]);
        let payload_at = out.len();
        out.put_slice(&vec![b'x'; size]);
        Self {
            bytes: out.to_vec(),
            id_at,
            payload_at,
        }
    }

    /// Appends one PUBLISH with packet id `id` (ignored at QoS 0) and the send time in its first 8 payload
    /// bytes (when the payload has room).
    pub fn put(&self, out: &mut BytesMut, id: u16, sent_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(at) = self.id_at {
            out[start + at..start + at + 2].copy_from_slice(&id.to_be_bytes());
        }
        let payload = start + self.payload_at;
        if out.len() - payload >= 8 {
            out[payload..payload + 8].copy_from_slice(&sent_ns.to_be_bytes());
        }
    }
}

/// One packet read from the broker, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A PUBLISH: its QoS, packet id (0 at QoS 0) and the send time from its payload, if it has one.
    Publish {
        qos: u8,
        id: u16,
        sent_ns: Option<u64>,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP (the kind) with its packet id.
    Ack { kind: u8, id: u16 },
    /// CONNACK with its return code.
    ConnAck { code: u8 },
    /// SUBACK with the granted QoS (or 0x80 for failure).
    SubAck { granted: u8 },
    /// Anything else (PINGRESP, ...).
    Other(u8),
}

/// Decodes the packet at the start of `buf` and removes it; `Ok(None)` while it is incomplete.
pub fn next(buf: &mut BytesMut) -> anyhow::Result<Option<Incoming>> {
    let Some((len, header_len)) = remaining_length(buf)? else {
        return Ok(None);
    };
    if buf.len() < header_len + len {
        return Ok(None);
    }
    let first = buf[0];
    let body = &buf[header_len..header_len + len];
    let incoming = decode(first, body)?;
    buf.advance(header_len + len);
    Ok(Some(incoming))
}

fn remaining_length(buf: &[u8]) -> anyhow::Result<Option<(usize, usize)>> {
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((len, 2 + i)));
        }
    }
    bail!("malformed remaining length from the broker")
}

fn decode(first: u8, body: &[u8]) -> anyhow::Result<Incoming> {
    let kind = first >> 4;
    let u16_at = |at: usize| -> anyhow::Result<u16> {
        let b = body
            .get(at..at + 2)
            .context("short packet from the broker")?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    };
    Ok(match kind {
        PUBLISH => {
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(u16_at(0)?);
            let mut at = 2 + topic_len;
            let id = if qos > 0 { u16_at(at)? } else { 0 };
            if qos > 0 {
                at += 2;
            }
            let sent_ns = body
                .get(at..at + 8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
            Incoming::Publish { qos, id, sent_ns }
        }
        PUBACK | PUBREC | PUBREL | PUBCOMP => Incoming::Ack {
            kind,
            id: u16_at(0)?,
        },
        CONNACK => Incoming::ConnAck {
            code: *body.get(1).context("short CONNACK")?,
        },
        SUBACK => Incoming::SubAck {
            granted: *body.get(2).context("short SUBACK")?,
        },
        other => Incoming::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_from_the_template_decodes_with_its_id_and_time() {
        let template = PublishTemplate::new("bench/t", 1, 64);
        let mut buf = BytesMut::new();
        template.put(&mut buf, 7, 123_456);
        template.put(&mut buf, 8, 99);
        assert_eq!(
            next(&mut buf).expect("valid"),
            Some(Incoming::Publish {
                qos: 1,
                id: 7,
                sent_ns: Some(123_456)
            })
        );
        assert!(matches!(
            next(&mut buf).expect("valid"),
            Some(Incoming::Publish { id: 8, .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_packet_is_incomplete_until_its_last_byte() {
        let template = PublishTemplate::new("t", 0, 300);
        let mut whole = BytesMut::new();
        template.put(&mut whole, 0, 5);
        for end in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..end]);
            assert_eq!(next(&mut part).expect("valid prefix"), None, "{end} bytes");
        }
    }

    #[test]
    fn acks_round_trip() {
        let mut buf = BytesMut::new();
        put_ack(&mut buf, PUBREL, 513);
        assert_eq!(buf[0], 0x62, "PUBREL has flags 0010 (§3.6.1)");
        assert_eq!(
            next(&mut buf).expect("valid"),
            Some(Incoming::Ack {
                kind: PUBREL,
                id: 513
            })
        );
    }
}
