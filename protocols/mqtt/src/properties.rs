//! MQTT 5.0 properties (spec §2.2.2 and the property table in §2.2.2.2): one struct with every property, the
//! table of which packet may carry which, and their decoding and encoding. A property a packet may not carry,
//! or a single-valued one given twice, is a protocol error [MQTT-2.2.2-2]; an unknown identifier is a
//! malformed packet. Only User Property (and Subscription Identifier in PUBLISH) may repeat.

use bytes::{BufMut, Bytes, BytesMut};

use crate::DecodeError;
use crate::wire::{self, Reader};

/// Where a property list stands: which packet (or the will in CONNECT) it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyContext {
    /// CONNECT's own properties.
    Connect,
    /// The will properties in CONNECT's payload.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PropertyContext {
    fn packet_type(self) -> u8 {
        match self {
            Self::Connect | Self::Will => 1,
            Self::ConnAck => 2,
            Self::Publish => 3,
            Self::Ack => 4,
            Self::Subscribe => 8,
            Self::SubAck => 9,
            Self::Unsubscribe => 10,
            Self::UnsubAck => 11,
            Self::Disconnect => 14,
            Self::Auth => 15,
        }
    }
}

/// Every MQTT 5.0 property; `None` (or empty) where absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: 1 when the payload is UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02: seconds until the message expires.
    pub message_expiry_interval: Option<u32>,
    /// 0x03.
    pub content_type: Option<String>,
    /// 0x08.
    pub response_topic: Option<String>,
    /// 0x09.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: one in SUBSCRIBE, any number in PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11: seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12.
    pub assigned_client_identifier: Option<String>,
    /// 0x13: seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15.
    pub authentication_method: Option<String>,
    /// 0x16.
    pub authentication_data: Option<Bytes>,
    /// 0x17: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18: seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A.
    pub response_information: Option<String>,
    /// 0x1C.
    pub server_reference: Option<String>,
    /// 0x1F.
    pub reason_string: Option<String>,
    /// 0x21: not zero.
    pub receive_maximum: Option<u16>,
    /// 0x22.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23.
    pub topic_alias: Option<u16>,
    /// 0x24: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26: in order, repeats kept.
    pub user_properties: Vec<(String, String)>,
    /// 0x27: not zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

/// Which contexts each property identifier is allowed in (§2.2.2.2), `None` for an unknown identifier.
fn allowed(id: u8, ctx: PropertyContext) -> Option<bool> {
    use PropertyContext as C;
    let ok = match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(ctx, C::Publish | C::Will),
        0x0B => matches!(ctx, C::Publish | C::Subscribe),
        0x11 => matches!(ctx, C::Connect | C::ConnAck | C::Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => ctx == C::ConnAck,
        0x15 | 0x16 => matches!(ctx, C::Connect | C::ConnAck | C::Auth),
        0x17 | 0x19 => ctx == C::Connect,
        0x18 => ctx == C::Will,
        0x1C => matches!(ctx, C::ConnAck | C::Disconnect),
        0x1F => !matches!(
            ctx,
            C::Connect | C::Will | C::Publish | C::Subscribe | C::Unsubscribe
        ),
        0x21 | 0x22 | 0x27 => matches!(ctx, C::Connect | C::ConnAck),
        0x23 => ctx == C::Publish,
        0x26 => true,
        _ => return None,
    };
    Some(ok)
}

fn set_once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(id: u8, value: u8) -> Result<u8, DecodeError> {
    if value > 1 {
        return Err(DecodeError::PropertyValue(id));
    }
    Ok(value)
}

fn nonzero_u16(id: u8, value: u16) -> Result<u16, DecodeError> {
    if value == 0 {
        return Err(DecodeError::PropertyValue(id));
    }
    Ok(value)
}

impl Properties {
    /// Reads a property length and the properties it covers.
    pub(crate) fn decode(r: &mut Reader, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        let mut r = Reader::new(r.take(len, "properties")?);
        let mut props = Self::default();
        while !r.is_empty() {
            let id = r.varint()?;
            let id = u8::try_from(id).map_err(|_| DecodeError::UnknownProperty(0xFF))?;
            match allowed(id, ctx) {
                None => return Err(DecodeError::UnknownProperty(id)),
                Some(false) => {
                    return Err(DecodeError::PropertyNotAllowed {
                        id,
                        kind: ctx.packet_type(),
                    });
                }
                Some(true) => props.read_one(id, &mut r, ctx)?,
            }
        }
        Ok(props)
    }

    fn read_one(
        &mut self,
        id: u8,
        r: &mut Reader,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        const P: &str = "property";
        match id {
            0x01 => set_once(&mut self.payload_format_indicator, id, flag(id, r.u8(P)?)?),
            0x02 => set_once(&mut self.message_expiry_interval, id, r.u32(P)?),
            0x03 => set_once(&mut self.content_type, id, r.string(P)?),
            0x08 => set_once(&mut self.response_topic, id, r.string(P)?),
            0x09 => set_once(&mut self.correlation_data, id, r.binary(P)?),
            0x0B => self.read_subscription_identifier(r, ctx),
            0x11 => set_once(&mut self.session_expiry_interval, id, r.u32(P)?),
            0x12 => set_once(&mut self.assigned_client_identifier, id, r.string(P)?),
            0x13 => set_once(&mut self.server_keep_alive, id, r.u16(P)?),
            0x15 => set_once(&mut self.authentication_method, id, r.string(P)?),
            0x16 => set_once(&mut self.authentication_data, id, r.binary(P)?),
            0x17 => set_once(
                &mut self.request_problem_information,
                id,
                flag(id, r.u8(P)?)?,
            ),
            0x18 => set_once(&mut self.will_delay_interval, id, r.u32(P)?),
            0x19 => set_once(
                &mut self.request_response_information,
                id,
                flag(id, r.u8(P)?)?,
            ),
            0x1A => set_once(&mut self.response_information, id, r.string(P)?),
            0x1C => set_once(&mut self.server_reference, id, r.string(P)?),
            0x1F => set_once(&mut self.reason_string, id, r.string(P)?),
            0x21 => set_once(&mut self.receive_maximum, id, nonzero_u16(id, r.u16(P)?)?),
            0x22 => set_once(&mut self.topic_alias_maximum, id, r.u16(P)?),
            0x23 => set_once(&mut self.topic_alias, id, r.u16(P)?),
            0x24 => set_once(&mut self.maximum_qos, id, flag(id, r.u8(P)?)?),
            0x25 => set_once(&mut self.retain_available, id, flag(id, r.u8(P)?)?),
            0x26 => {
                let pair = (r.string(P)?, r.string(P)?);
                self.user_properties.push(pair);
                Ok(())
            }
            0x27 => {
                let max = r.u32(P)?;
                if max == 0 {
                    return Err(DecodeError::PropertyValue(id));
                }
                set_once(&mut self.maximum_packet_size, id, max)
            }
            0x28 => set_once(
                &mut self.wildcard_subscription_available,
                id,
                flag(id, r.u8(P)?)?,
            ),
            0x29 => set_once(
                &mut self.subscription_identifier_available,
                id,
                flag(id, r.u8(P)?)?,
            ),
            0x2A => set_once(
                &mut self.shared_subscription_available,
                id,
                flag(id, r.u8(P)?)?,
            ),
            _ => Err(DecodeError::UnknownProperty(id)),
        }
    }

    fn read_subscription_identifier(
        &mut self,
        r: &mut Reader,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        let value = r.varint()?;
        if value == 0 {
            return Err(DecodeError::PropertyValue(0x0B));
        }
        if ctx == PropertyContext::Subscribe && !self.subscription_identifiers.is_empty() {
            return Err(DecodeError::DuplicateProperty(0x0B));
        }
        self.subscription_identifiers.push(value);
        Ok(())
    }

    /// Writes the property length and the properties.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::new();
        self.encode_body(&mut body);
        wire::put_varint(out, body.len());
        out.put_slice(&body);
    }

    fn encode_body(&self, out: &mut BytesMut) {
        put_u8(out, 0x01, self.payload_format_indicator);
        put_u32(out, 0x02, self.message_expiry_interval);
        put_str(out, 0x03, self.content_type.as_deref());
        put_str(out, 0x08, self.response_topic.as_deref());
        put_bin(out, 0x09, self.correlation_data.as_deref());
        for id in &self.subscription_identifiers {
            out.put_u8(0x0B);
            wire::put_varint(out, *id as usize);
        }
        put_u32(out, 0x11, self.session_expiry_interval);
        put_str(out, 0x12, self.assigned_client_identifier.as_deref());
        put_u16(out, 0x13, self.server_keep_alive);
        put_str(out, 0x15, self.authentication_method.as_deref());
        put_bin(out, 0x16, self.authentication_data.as_deref());
        put_u8(out, 0x17, self.request_problem_information);
        put_u32(out, 0x18, self.will_delay_interval);
        put_u8(out, 0x19, self.request_response_information);
        put_str(out, 0x1A, self.response_information.as_deref());
        put_str(out, 0x1C, self.server_reference.as_deref());
        put_str(out, 0x1F, self.reason_string.as_deref());
        put_u16(out, 0x21, self.receive_maximum);
        put_u16(out, 0x22, self.topic_alias_maximum);
        put_u16(out, 0x23, self.topic_alias);
        put_u8(out, 0x24, self.maximum_qos);
        put_u8(out, 0x25, self.retain_available);
        for (name, value) in &self.user_properties {
            out.put_u8(0x26);
            wire::put_string(out, name);
            wire::put_string(out, value);
        }
        put_u32(out, 0x27, self.maximum_packet_size);
        put_u8(out, 0x28, self.wildcard_subscription_available);
        put_u8(out, 0x29, self.subscription_identifier_available);
        put_u8(out, 0x2A, self.shared_subscription_available);
    }

    /// Drops every property that a packet of context `ctx` may not carry (§2.2.2.2), for forwarding
    /// properties received in one packet into another.
    pub fn keep_allowed(&mut self, ctx: PropertyContext) {
        macro_rules! keep {
            ($($id:literal => $field:ident),* $(,)?) => {
                $(if allowed($id, ctx) != Some(true) {
                    self.$field = Default::default();
                })*
            };
        }
        keep!(
            0x01 => payload_format_indicator, 0x02 => message_expiry_interval, 0x03 => content_type,
            0x08 => response_topic, 0x09 => correlation_data, 0x0B => subscription_identifiers,
            0x11 => session_expiry_interval, 0x12 => assigned_client_identifier, 0x13 => server_keep_alive,
            0x15 => authentication_method, 0x16 => authentication_data, 0x17 => request_problem_information,
            0x18 => will_delay_interval, 0x19 => request_response_information, 0x1A => response_information,
            0x1C => server_reference, 0x1F => reason_string, 0x21 => receive_maximum,
            0x22 => topic_alias_maximum, 0x23 => topic_alias, 0x24 => maximum_qos, 0x25 => retain_available,
            0x26 => user_properties, 0x27 => maximum_packet_size, 0x28 => wildcard_subscription_available,
            0x29 => subscription_identifier_available, 0x2A => shared_subscription_available,
        );
        if ctx == PropertyContext::Subscribe {
            self.subscription_identifiers.truncate(1);
        }
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn put_u8(out: &mut BytesMut, id: u8, value: Option<u8>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn put_u16(out: &mut BytesMut, id: u8, value: Option<u16>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn put_u32(out: &mut BytesMut, id: u8, value: Option<u32>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u32(v);
    }
}

fn put_str(out: &mut BytesMut, id: u8, value: Option<&str>) {
    if let Some(v) = value {
        out.put_u8(id);
        wire::put_string(out, v);
    }
}

fn put_bin(out: &mut BytesMut, id: u8, value: Option<&[u8]>) {
    if let Some(v) = value {
        out.put_u8(id);
        wire::put_binary(out, v);
    }
}
