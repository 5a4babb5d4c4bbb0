//! The message model shared by every protocol: immutable once published, shared by `Arc` between every queue
//! it reaches, body as `Bytes` so it travels from the publisher's read buffer to every consumer without a copy.
//! Properties are AMQP basic properties plus the headers table: the common representation other protocols map
//! into and out of (ARCHITECTURE.md §2).

use bytes::Bytes;
use ferrymq_amqp_codec::BasicProperties;

/// A published message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Exchange it was published to (`""` for the default exchange).
    pub exchange: String,
    /// Routing key it was published with.
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Bytes,
}

impl Message {
    /// AMQP delivery-mode 2 marks a message persistent; it is journaled when it reaches a durable queue.
    pub fn is_persistent(&self) -> bool {
        self.properties.delivery_mode == Some(2)
    }
}
