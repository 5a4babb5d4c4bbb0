//! The message model shared by every protocol (RabbitMQ 4's message containers are the model): a body, the
//! neutral properties the core reads, application headers as an ordered multimap of typed values, and broker
//! annotations (death history, delivery count, origin, retain flag) kept apart from what the application set.
//!
//! A message is immutable once published and shared by `Arc` between every queue it reaches; the body is
//! `Bytes`, so it travels from the publisher's read buffer to every consumer without a copy. Each front end
//! converts its own frames into a [`Message`] once, on publish, and back once, on delivery, in one module of its
//! own (`amqp::convert` for AMQP 0-9-1). So that a hop between two clients of the same protocol costs no
//! conversion, the origin protocol's encoded properties travel along as [`Native`] bytes as long as nothing
//! the core changes invalidates them; the adapter delivering to its own protocol writes them back verbatim.
//!
//! The core's own encoding of a message for the store is in [`codec`]; the store sees only its bytes.

pub mod codec;
pub mod value;

use std::num::NonZeroU64;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub use value::{Header, Headers, Value};

/// The protocol a message was published with (or `Internal` for the broker's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Internal,
    Amqp091,
    Mqtt,
    Stomp,
    Sqs,
    Sns,
}

impl Protocol {
    pub(crate) fn code(self) -> u8 {
        match self {
            Protocol::Internal => 0,
            Protocol::Amqp091 => 1,
            Protocol::Mqtt => 2,
            Protocol::Stomp => 3,
            Protocol::Sqs => 4,
            Protocol::Sns => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Protocol> {
        Some(match code {
            0 => Protocol::Internal,
            1 => Protocol::Amqp091,
            2 => Protocol::Mqtt,
            3 => Protocol::Stomp,
            4 => Protocol::Sqs,
            5 => Protocol::Sns,
            _ => return None,
        })
    }
}

/// A per-message time to live, as given (relative) and as the absolute deadline it became on publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Milliseconds since the Unix epoch after which the message is dead.
    pub at_ms: u64,
    /// The TTL the publisher asked for, in milliseconds (AMQP `expiration`, MQTT message expiry interval).
    pub ttl_ms: u64,
}

impl Expiry {
    /// A TTL starting now.
    pub fn from_now(ttl_ms: u64) -> Self {
        Self::after(now_ms(), ttl_ms)
    }

    /// A TTL starting at `since_ms` (ms since the Unix epoch).
    pub fn after(since_ms: u64, ttl_ms: u64) -> Self {
        Self {
            at_ms: since_ms.saturating_add(ttl_ms),
            ttl_ms,
        }
    }

    /// Milliseconds left from `now_ms` (0 when past).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.at_ms.saturating_sub(now_ms)
    }
}

/// The neutral properties: what the core reads, and what every front end can say in its own terms. The
/// identifying and descriptive ones ([`TextProperties`]) are boxed apart, and only when one is set: most
/// messages carry none of them, and a message is moved and held by the million (see [`Message`]).
#[derive(Debug, Clone, Default)]
pub struct Properties {
    /// Journaled when it reaches a durable queue (AMQP delivery-mode 2, MQTT QoS > 0 to a persistent session).
    pub durable: bool,
    pub priority: Option<u8>,
    pub expiry: Option<Expiry>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: Option<u64>,
    /// The connection that published the message (its `ConnId`, truncated), while the broker runs: MQTT 5
    /// no-local subscriptions skip their own connection's messages [MQTT-3.8.3-3]. Not stored (0 once
    /// restored) and not compared; it lives here because it fits in padding (see [`Message`]).
    pub publisher: u32,
    /// The text properties, boxed once one is set: read them with [`Properties::text`], set them with
    /// [`Properties::set_text`] or [`Properties::text_mut`].
    pub text: Option<Box<TextProperties>>,
}

/// The identifying and descriptive properties (see [`Properties`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextProperties {
    pub message_id: Option<String>,
    /// Binary in MQTT 5 (correlation data) and AMQP 1.0; text in AMQP 0-9-1 and STOMP.
    pub correlation_id: Option<Bytes>,
    pub reply_to: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The publishing user as the publisher stated it (checked against the session's user).
    pub user_id: Option<String>,
    /// The application's message type name (AMQP 0-9-1 `type`, JMS type).
    pub kind: Option<String>,
    pub app_id: Option<String>,
    /// AMQP 0-9-1 `cluster-id`: reserved by the spec, still carried.
    pub cluster_id: Option<String>,
}

impl TextProperties {
    /// Every text property absent.
    pub const NONE: TextProperties = TextProperties {
        message_id: None,
        correlation_id: None,
        reply_to: None,
        content_type: None,
        content_encoding: None,
        user_id: None,
        kind: None,
        app_id: None,
        cluster_id: None,
    };

    pub fn is_empty(&self) -> bool {
        *self == Self::NONE
    }
}

static NO_TEXT: TextProperties = TextProperties::NONE;

impl Properties {
    /// The text properties (all absent when none is set).
    pub fn text(&self) -> &TextProperties {
        self.text.as_deref().unwrap_or(&NO_TEXT)
    }

    /// The text properties, to be changed (boxed on first use).
    pub fn text_mut(&mut self) -> &mut TextProperties {
        self.text.get_or_insert_with(Box::default)
    }

    /// Sets every text property at once (nothing is boxed when none is set).
    pub fn set_text(&mut self, text: TextProperties) {
        self.text = (!text.is_empty()).then(|| Box::new(text));
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        self.durable == other.durable
            && self.priority == other.priority
            && self.expiry == other.expiry
            && self.timestamp_ms == other.timestamp_ms
            && self.text() == other.text()
    }
}

/// Why a message was dead-lettered (RabbitMQ's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::Maxlen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rejected" => DeathReason::Rejected,
            "expired" => DeathReason::Expired,
            "maxlen" => DeathReason::Maxlen,
            "delivery_limit" => DeathReason::DeliveryLimit,
            _ => return None,
        })
    }
}

/// One entry of the death history: a message died in `queue` for `reason` `count` times.
#[derive(Debug, Clone, PartialEq)]
pub struct Death {
    pub queue: String,
    pub reason: DeathReason,
    /// The exchange and routing keys the message had when it died there for the first time.
    pub exchange: String,
    pub routing_keys: Vec<String>,
    pub count: u64,
    /// Seconds since the Unix epoch of the latest death.
    pub time: u64,
    /// The per-message TTL the message had before it was dead-lettered (it is removed on dead-lettering).
    pub original_expiration_ms: Option<u64>,
}

/// Where a message died first and last (RabbitMQ's x-first-death-* / x-last-death-*).
#[derive(Debug, Clone, PartialEq)]
pub struct DeathSite {
    pub queue: String,
    pub reason: DeathReason,
    pub exchange: String,
}

/// Where a message died first and last.
#[derive(Debug, Clone, PartialEq)]
pub struct DeathSites {
    pub first: DeathSite,
    pub last: DeathSite,
}

/// What the broker knows about a message beyond what its publisher set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Annotations {
    /// One entry per (queue, reason), most recent first.
    pub deaths: Vec<Death>,
    /// Where it died first and last; boxed, like the history: most messages never die.
    pub death_sites: Option<Box<DeathSites>>,
    /// Not handed to consumers before this time (ms since the Unix epoch, never 0): SQS DelaySeconds. Queues
    /// hold such a message aside until then (see `queue::actor::delay`).
    pub deliver_at: Option<NonZeroU64>,
    /// Times the message was delivered and given back (MQTT/SQS receive counts).
    pub delivery_count: u32,
    pub origin: Protocol,
    /// A retained MQTT message.
    pub retain: bool,
    /// The QoS an MQTT publisher sent the message with (0 for other protocols): an MQTT subscriber gets the
    /// lower of it and its subscription's [MQTT-3.8.4-8].
    pub qos: u8,
}

/// The origin protocol's own encoding of the properties and headers, valid while they are unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Native {
    pub protocol: Protocol,
    pub bytes: Bytes,
}

/// A published message (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// Exchange it was published to (`""` for the default exchange).
    pub exchange: String,
    /// Routing key it was published with (MQTT topic, STOMP destination, SQS queue, as the adapter maps it).
    pub routing_key: String,
    pub properties: Properties,
    pub headers: Headers,
    pub annotations: Annotations,
    pub body: Bytes,
    /// See [`Native`]; `None` once the core changed properties or headers.
    pub native: Option<Native>,
}

impl Message {
    /// A message with a body and routing address; everything else empty.
    pub fn new(exchange: impl Into<String>, routing_key: impl Into<String>, body: Bytes) -> Self {
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            body,
            ..Self::default()
        }
    }

    /// Journaled when it reaches a durable queue.
    pub fn is_persistent(&self) -> bool {
        self.properties.durable
    }

    /// The native encoding for `protocol`, if it is still valid.
    pub fn native_for(&self, protocol: Protocol) -> Option<&Bytes> {
        self.native
            .as_ref()
            .filter(|n| n.protocol == protocol)
            .map(|n| &n.bytes)
    }

    /// Headers, to be changed: the native encoding no longer matches afterwards and is dropped.
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.native = None;
        &mut self.headers
    }

    /// Properties, to be changed (drops the native encoding, as [`Message::headers_mut`]).
    pub fn properties_mut(&mut self) -> &mut Properties {
        self.native = None;
        &mut self.properties
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved on every publish and held by the million: keep it at 248 bytes (what most messages lack is boxed).
    #[test]
    fn a_message_is_248_bytes() {
        assert_eq!(std::mem::size_of::<Message>(), 248);
    }

    #[test]
    fn text_properties_are_boxed_only_when_one_is_set() {
        let mut p = Properties::default();
        p.set_text(TextProperties::default());
        assert!(p.text.is_none());
        assert_eq!(p.text().reply_to, None);
        p.text_mut().reply_to = Some("r".into());
        assert!(p.text.is_some());
        let mut q = Properties::default();
        q.set_text(TextProperties {
            reply_to: Some("r".into()),
            ..TextProperties::default()
        });
        assert_eq!(p, q);
        assert_ne!(p, Properties::default());
    }
}
