//! Encoding (spec §2 and §3): each packet's variable header and payload are written into a scratch buffer,
//! then the fixed header with the remaining length and the body into the caller's write buffer. What a
//! version lacks (properties, reason codes before v5) is not written.

use bytes::{BufMut, BytesMut};

use crate::packet::*;
use crate::wire::{self, put_binary, put_string};
use crate::{Properties, ReasonCode};

/// Appends `packet` as `version` encodes it to `out`; returns the bytes written.
pub fn encode_packet(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> usize {
    let mut body = BytesMut::new();
    let flags = encode_body(packet, version, &mut body);
    let start = out.len();
    out.put_u8(packet.kind() << 4 | flags);
    wire::put_varint(out, body.len());
    out.put_slice(&body);
    out.len() - start
}

/// The size `packet` takes encoded as `version`.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let mut body = BytesMut::new();
    encode_body(packet, version, &mut body);
    1 + wire::varint_len(body.len()) + body.len()
}

/// Writes the variable header and payload; returns the fixed-header flags.
fn encode_body(packet: &Packet, v: ProtocolVersion, out: &mut BytesMut) -> u8 {
    match packet {
        Packet::Connect(c) => connect(c, out),
        Packet::ConnAck(c) => connack(c, v, out),
        Packet::Publish(p) => return publish(p, v, out),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => ack(a, v, out),
        Packet::PubRel(a) => {
            ack(a, v, out);
            return 0b0010;
        }
        Packet::Subscribe(s) => {
            subscribe(s, v, out);
            return 0b0010;
        }
        Packet::SubAck(s) => suback(s, v, true, out),
        Packet::Unsubscribe(u) => {
            unsubscribe(u, v, out);
            return 0b0010;
        }
        Packet::UnsubAck(s) => suback(s, v, v.is_v5(), out),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) | Packet::Auth(d) => disconnect(d, v, out),
    }
    0
}

fn put_properties(props: &Properties, v: ProtocolVersion, out: &mut BytesMut) {
    if v.is_v5() {
        props.encode(out);
    }
}

fn connect(c: &Connect, out: &mut BytesMut) {
    let v = c.version;
    put_string(out, v.name());
    out.put_u8(v.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    put_properties(&c.properties, v, out);
    put_string(out, &c.client_id);
    if let Some(will) = &c.will {
        put_properties(&will.properties, v, out);
        put_string(out, &will.topic);
        put_binary(out, &will.payload);
    }
    if let Some(username) = &c.username {
        put_string(out, username);
    }
    if let Some(password) = &c.password {
        put_binary(out, password);
    }
}

fn connack(c: &ConnAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u8(u8::from(c.session_present));
    out.put_u8(if v.is_v5() {
        c.reason.0
    } else {
        c.reason.v3_connack()
    });
    put_properties(&c.properties, v, out);
}

fn publish(p: &Publish, v: ProtocolVersion, out: &mut BytesMut) -> u8 {
    put_string(out, &p.topic);
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id.unwrap_or(0));
    }
    put_properties(&p.properties, v, out);
    out.put_slice(&p.payload);
    u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
}

fn ack(a: &Ack, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(a.packet_id);
    if !v.is_v5() || (a.reason == ReasonCode::SUCCESS && a.properties.is_empty()) {
        return; // [MQTT-3.4.2.1]: the short form when the code is success and there are no properties
    }
    out.put_u8(a.reason.0);
    if !a.properties.is_empty() {
        a.properties.encode(out);
    }
}

fn subscribe(s: &Subscribe, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    put_properties(&s.properties, v, out);
    for (filter, o) in &s.filters {
        put_string(out, filter);
        let mut byte = o.qos as u8;
        if v.is_v5() {
            byte |= u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | (o.retain_handling as u8) << 4;
        }
        out.put_u8(byte);
    }
}

fn suback(s: &SubAck, v: ProtocolVersion, with_codes: bool, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    put_properties(&s.properties, v, out);
    if with_codes {
        out.extend(
            s.reasons
                .iter()
                .map(|r| if v.is_v5() || r.0 < 0x80 { r.0 } else { 0x80 }),
        );
    }
}

fn unsubscribe(u: &Unsubscribe, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(u.packet_id);
    put_properties(&u.properties, v, out);
    for filter in &u.filters {
        put_string(out, filter);
    }
}

fn disconnect(d: &Disconnect, v: ProtocolVersion, out: &mut BytesMut) {
    if !v.is_v5() || (d.reason == ReasonCode::SUCCESS && d.properties.is_empty()) {
        return;
    }
    out.put_u8(d.reason.0);
    if !d.properties.is_empty() {
        d.properties.encode(out);
    }
}
