//! The codec's one error type: what was wrong with the bytes, each error naming the MQTT 5.0 reason code the
//! spec prescribes for it, so the broker can answer a v5 client with CONNACK or DISCONNECT carrying that code
//! and close a v3 connection [MQTT-4.13.1-1].

use crate::ReasonCode;

/// A packet that could not be decoded (or encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length uses more than four bytes or a non-minimal final byte [MQTT-1.5.5-1].
    #[error("malformed remaining length")]
    BadRemainingLength,
    /// The packet (fixed header included) is larger than the configured maximum [MQTT-3.2.2-15].
    #[error("packet of {size} bytes is over the maximum of {max}")]
    PacketTooLarge {
        /// The packet's size in bytes.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// Packet type 0, or AUTH before MQTT 5.0.
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// Fixed-header flags other than the ones the packet type requires [MQTT-2.1.3-1].
    #[error("packet type {kind} with reserved flags {flags:#06b}")]
    ReservedFlags {
        /// The packet type.
        kind: u8,
        /// The flags received.
        flags: u8,
    },
    /// The packet ended before a field it must have, or has bytes after its last field.
    #[error("packet length does not match its contents: {0}")]
    Length(&'static str),
    /// A UTF-8 string that is not well-formed or contains U+0000 [MQTT-1.5.4-1, MQTT-1.5.4-2].
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// The protocol name is neither `MQTT` nor `MQIsdp`, or the level is unknown [MQTT-3.1.2-2].
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// The protocol name sent.
        name: String,
        /// The protocol level sent.
        level: u8,
    },
    /// A malformed field with a name: QoS 3, reserved CONNECT flag, will flags without will, and the like.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A property that this packet may not carry, or that appears twice [MQTT-2.2.2-2].
    #[error("property {id:#04x} not allowed in packet type {kind}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet type.
        kind: u8,
    },
    /// A property identifier the spec does not define.
    #[error("unknown property {0:#04x}")]
    UnknownProperty(u8),
    /// A property given twice that may appear once [MQTT-2.2.2-2].
    #[error("property {0:#04x} given twice")]
    DuplicateProperty(u8),
    /// A property with a value outside its range (a zero receive maximum, a payload format other than 0 or 1).
    #[error("property {0:#04x} has an invalid value")]
    PropertyValue(u8),
    /// A PUBLISH topic name with a wildcard [MQTT-3.3.2-2].
    #[error("topic name contains a wildcard")]
    TopicNameInvalid,
    /// A packet identifier of zero where one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter [MQTT-3.8.3-3, MQTT-3.10.3-2].
    #[error("no topic filter")]
    NoTopicFilter,
}

impl DecodeError {
    /// The MQTT 5.0 reason code for this error (DISCONNECT or CONNACK).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Self::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
            Self::PropertyNotAllowed { .. }
            | Self::DuplicateProperty(_)
            | Self::PropertyValue(_)
            | Self::ZeroPacketId
            | Self::NoTopicFilter => ReasonCode::PROTOCOL_ERROR,
            Self::BadRemainingLength
            | Self::ReservedPacketType(_)
            | Self::ReservedFlags { .. }
            | Self::Length(_)
            | Self::InvalidUtf8
            | Self::Malformed(_)
            | Self::UnknownProperty(_) => ReasonCode::MALFORMED_PACKET,
        }
    }
}
