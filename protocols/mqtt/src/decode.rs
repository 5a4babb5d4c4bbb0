//! Decoding (spec §2 and §3): the fixed header first, its remaining length checked against the maximum packet
//! size before anything is buffered or parsed, then the whole packet from one contiguous slice. "Not enough
//! bytes yet" is `Ok(None)`, never an error, so the caller keeps the partial packet in its read buffer and calls
//! again after the next read (split-at-every-byte safe).

use bytes::{Buf, BytesMut};

use crate::packet::*;
use crate::properties::{Properties, PropertyContext as Ctx};
use crate::wire::Reader;
use crate::{DecodeError, ReasonCode};

/// The fixed header (§2.1): packet type, flags and remaining length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type, 1-15.
    pub kind: u8,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// Remaining length: the bytes after the fixed header.
    pub remaining_len: usize,
    /// Bytes the fixed header itself takes (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// The whole packet's size in bytes.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Parses a fixed header from the front of `buf` and checks the packet's size against `max_packet_size`;
/// `Ok(None)` while the remaining length is incomplete.
pub fn decode_fixed_header(
    buf: &[u8],
    max_packet_size: usize,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining_len = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining_len |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::BadRemainingLength); // not minimal [MQTT-1.5.5-1]
            }
            let header = FixedHeader {
                kind: first >> 4,
                flags: first & 0x0F,
                remaining_len,
                header_len: 2 + i,
            };
            if header.packet_len() > max_packet_size {
                return Err(DecodeError::PacketTooLarge {
                    size: header.packet_len(),
                    max: max_packet_size,
                });
            }
            return Ok(Some(header));
        }
    }
    Err(DecodeError::BadRemainingLength)
}

/// Decodes one packet from the front of `buf`, removing its bytes; `Ok(None)` when `buf` holds less than a
/// packet. `version` is the connection's negotiated version (CONNECT carries its own and ignores it).
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = decode_fixed_header(buf, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header.packet_len() {
        buf.reserve(header.packet_len() - buf.len());
        return Ok(None);
    }
    check_flags(header.kind, header.flags)?;
    buf.advance(header.header_len);
    let body = buf.split_to(header.remaining_len).freeze();
    let mut r = Reader::new(body);
    let packet = decode_body(header, version, &mut r)?;
    if !r.is_empty() {
        return Err(DecodeError::Length("bytes after the last field"));
    }
    Ok(Some(packet))
}

/// Fixed-header flags each packet type requires [MQTT-2.1.3-1]; PUBLISH's are checked with its fields.
fn check_flags(kind: u8, flags: u8) -> Result<(), DecodeError> {
    let required = match kind {
        0 => return Err(DecodeError::ReservedPacketType(0)),
        3 => return Ok(()),
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != required {
        return Err(DecodeError::ReservedFlags { kind, flags });
    }
    Ok(())
}

fn decode_body(h: FixedHeader, v: ProtocolVersion, r: &mut Reader) -> Result<Packet, DecodeError> {
    Ok(match h.kind {
        1 => Packet::Connect(Box::new(connect(r)?)),
        2 => Packet::ConnAck(connack(v, r)?),
        3 => Packet::Publish(publish(h.flags, v, r)?),
        4 => Packet::PubAck(ack(v, r)?),
        5 => Packet::PubRec(ack(v, r)?),
        6 => Packet::PubRel(ack(v, r)?),
        7 => Packet::PubComp(ack(v, r)?),
        8 => Packet::Subscribe(subscribe(v, r)?),
        9 => Packet::SubAck(suback(v, Ctx::SubAck, r)?),
        10 => Packet::Unsubscribe(unsubscribe(v, r)?),
        11 => Packet::UnsubAck(suback(v, Ctx::UnsubAck, r)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(disconnect(v, Ctx::Disconnect, r)?),
        15 if v.is_v5() => Packet::Auth(disconnect(v, Ctx::Auth, r)?),
        kind => return Err(DecodeError::ReservedPacketType(kind)),
    })
}

fn v5_properties(v: ProtocolVersion, ctx: Ctx, r: &mut Reader) -> Result<Properties, DecodeError> {
    if v.is_v5() {
        Properties::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16("packet identifier")? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

fn version_of(name: &str, level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name, level) {
        ("MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        ("MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        ("MQTT", 5) => Ok(ProtocolVersion::V5),
        _ => Err(DecodeError::UnsupportedProtocol {
            name: name.to_owned(),
            level,
        }),
    }
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let version = version_of(&name, level)?;
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved connect flag")); // [MQTT-3.1.2-3]
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos =
        QoS::from_bits((flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let will_retain = flags & 0x20 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain without a will")); // [MQTT-3.1.2-11, -13, -15]
    }
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if has_password && !has_username && !version.is_v5() {
        return Err(DecodeError::Malformed("password without user name")); // [MQTT-3.1.2-22]
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = v5_properties(version, Ctx::Connect, r)?;
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = v5_properties(version, Ctx::Will, r)?;
        let topic = r.string("will topic")?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary("password")?)
    } else {
        None
    };
    Ok(Connect {
        version,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(v: ProtocolVersion, r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved acknowledge flags")); // [MQTT-3.2.2-1]
    }
    let code = r.u8("return code")?;
    let reason = if v.is_v5() {
        ReasonCode(code)
    } else {
        ReasonCode::from_v3_connack(code)
    };
    let properties = v5_properties(v, Ctx::ConnAck, r)?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason,
        properties,
    })
}

fn publish(flags: u8, v: ProtocolVersion, r: &mut Reader) -> Result<Publish, DecodeError> {
    let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("QoS 3"))?; // [MQTT-3.3.1-4]
    let dup = flags & 0x08 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP on a QoS 0 publish")); // [MQTT-3.3.1-2]
    }
    let topic = r.string("topic name")?;
    if topic.contains(['+', '#']) {
        return Err(DecodeError::TopicNameInvalid); // [MQTT-3.3.2-2]
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties = v5_properties(v, Ctx::Publish, r)?;
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload,
    })
}

fn ack(v: ProtocolVersion, r: &mut Reader) -> Result<Ack, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v.is_v5() || r.is_empty() {
        return Ok(Ack {
            packet_id,
            ..Ack::default()
        }); // [MQTT-3.4.2.1]: no reason code means success
    }
    let reason = ReasonCode(r.u8("reason code")?);
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, Ctx::Ack)?
    };
    Ok(Ack {
        packet_id,
        reason,
        properties,
    })
}

fn subscription_options(v: ProtocolVersion, byte: u8) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
    if byte & reserved != 0 {
        return Err(DecodeError::Malformed("reserved subscription option bits")); // [MQTT-3.8.3-5]
    }
    let qos = QoS::from_bits(byte & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Malformed("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn subscribe(v: ProtocolVersion, r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = v5_properties(v, Ctx::Subscribe, r)?;
    let filters = filters(r, |r| {
        let filter = r.string("topic filter")?;
        Ok((
            filter,
            subscription_options(v, r.u8("subscription options")?)?,
        ))
    })?;
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// The topic filters that fill the rest of a SUBSCRIBE or UNSUBSCRIBE: at least one [MQTT-3.8.3-3,
/// MQTT-3.10.3-2].
fn filters<T>(
    r: &mut Reader,
    mut one: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(one(r)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilter);
    }
    Ok(filters)
}

fn suback(v: ProtocolVersion, ctx: Ctx, r: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = v5_properties(v, ctx, r)?;
    let codes = r.rest();
    // 3.1/3.1.1 SUBACK return codes are 0x00, 0x01, 0x02 or 0x80; the others are reserved [MQTT-3.9.3-2].
    if !v.is_v5() && ctx == Ctx::SubAck && codes.iter().any(|c| !matches!(c, 0..=2 | 0x80)) {
        return Err(DecodeError::Malformed("reserved SUBACK return code"));
    }
    // A 3.1/3.1.1 UNSUBACK is its packet id alone (remaining length 2).
    if !v.is_v5() && ctx == Ctx::UnsubAck && !codes.is_empty() {
        return Err(DecodeError::Length("bytes after the last field"));
    }
    let reasons = codes.iter().map(|&code| ReasonCode(code)).collect();
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}

fn unsubscribe(v: ProtocolVersion, r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = v5_properties(v, Ctx::Unsubscribe, r)?;
    let filters = filters(r, |r| r.string("topic filter"))?;
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn disconnect(v: ProtocolVersion, ctx: Ctx, r: &mut Reader) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() || r.is_empty() {
        return Ok(Disconnect::default()); // [MQTT-3.14.2.1]: no reason code means normal disconnection
    }
    let reason = ReasonCode(r.u8("reason code")?);
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, ctx)?
    };
    Ok(Disconnect { reason, properties })
}
