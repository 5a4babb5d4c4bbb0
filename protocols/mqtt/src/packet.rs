//! The packets of MQTT 3.1, 3.1.1 and 5.0 as one set of types (spec §3). Fields a version lacks are left at
//! their defaults when decoding an older version and are not written when encoding one: v3 packets have no
//! properties and no reason codes except CONNACK's return code and SUBACK's failure code.

use bytes::Bytes;

use crate::{Properties, ReasonCode};

/// The protocol level negotiated by CONNECT (§3.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0.
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

/// Quality of service (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for bits 0-2; 3 is malformed [MQTT-3.3.1-4].
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// The will message in CONNECT (§3.1.2.5, §3.1.3.2-4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Will {
    /// Will topic.
    pub topic: String,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain.
    pub retain: bool,
    /// Will properties (v5).
    pub properties: Properties,
}

/// CONNECT (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version asked for.
    pub version: ProtocolVersion,
    /// Clean Session (v3) or Clean Start (v5).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: String,
    /// The will, if any.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<String>,
    /// Password (binary data).
    pub password: Option<Bytes>,
    /// CONNECT properties (v5).
    pub properties: Properties,
}

/// CONNACK (§3.2). In v3 `reason` is translated to and from the return code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session present.
    pub session_present: bool,
    /// The reason (v5) or the return code's meaning (v3).
    pub reason: ReasonCode,
    /// CONNACK properties (v5).
    pub properties: Properties,
}

/// PUBLISH (§3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// Duplicate delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// Retain.
    pub retain: bool,
    /// Topic name; may be empty in v5 when a topic alias stands for it.
    pub topic: String,
    /// Packet identifier, present for QoS 1 and 2.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (v5).
    pub properties: Properties,
    /// Application message (zero-copy from the read buffer).
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (§3.4-§3.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// Packet identifier.
    pub packet_id: u16,
    /// Reason code (v5; success in v3).
    pub reason: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

/// Retain handling of a subscription (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages on subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription is new.
    SendIfNew = 1,
    /// Never send them.
    DoNotSend = 2,
}

/// Subscription options (§3.8.3.1); v3 carries only the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters with their options, in order.
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// Properties (v5).
    pub properties: Properties,
}

/// SUBACK (§3.9) or UNSUBACK (§3.11): a reason code per filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    /// Packet identifier.
    pub packet_id: u16,
    /// One code per filter (v3 UNSUBACK has none on the wire).
    pub reasons: Vec<ReasonCode>,
    /// Properties (v5).
    pub properties: Properties,
}

/// UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters.
    pub filters: Vec<String>,
    /// Properties (v5).
    pub properties: Properties,
}

/// DISCONNECT (§3.14) or AUTH (§3.15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code (v5; normal in v3).
    pub reason: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// 1.
    Connect(Box<Connect>),
    /// 2.
    ConnAck(ConnAck),
    /// 3.
    Publish(Publish),
    /// 4.
    PubAck(Ack),
    /// 5.
    PubRec(Ack),
    /// 6.
    PubRel(Ack),
    /// 7.
    PubComp(Ack),
    /// 8.
    Subscribe(Subscribe),
    /// 9.
    SubAck(SubAck),
    /// 10.
    Unsubscribe(Unsubscribe),
    /// 11.
    UnsubAck(SubAck),
    /// 12.
    PingReq,
    /// 13.
    PingResp,
    /// 14.
    Disconnect(Disconnect),
    /// 15 (v5 only).
    Auth(Disconnect),
}

impl Packet {
    /// The packet type number (§2.1.2).
    pub fn kind(&self) -> u8 {
        match self {
            Self::Connect(_) => 1,
            Self::ConnAck(_) => 2,
            Self::Publish(_) => 3,
            Self::PubAck(_) => 4,
            Self::PubRec(_) => 5,
            Self::PubRel(_) => 6,
            Self::PubComp(_) => 7,
            Self::Subscribe(_) => 8,
            Self::SubAck(_) => 9,
            Self::Unsubscribe(_) => 10,
            Self::UnsubAck(_) => 11,
            Self::PingReq => 12,
            Self::PingResp => 13,
            Self::Disconnect(_) => 14,
            Self::Auth(_) => 15,
        }
    }
}
