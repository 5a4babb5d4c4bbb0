//! `[memory]`: the memory alarm on what the broker holds for clients, and the cap on what one connection may
//! hold.

use serde::{Deserialize, Serialize};

use super::{ConfigError, MIB};

/// The memory alarm: above the high-water mark, publishers are blocked (AMQP `connection.blocked`, and their
/// sockets are no longer read) until consumers bring the memory held back down. Counted: queued messages,
/// deliveries not yet written to consumers, each connection's buffers, unfinished messages and uncommitted
/// transactions.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Bytes held for clients above which publishers are blocked; 0 disables the alarm.
    pub high_water: u64,
    /// Bytes of unfinished messages and uncommitted transactions one connection may hold; beyond it the
    /// publish is refused (AMQP: the channel is closed with 406 PRECONDITION_FAILED). 0 = no cap. At least
    /// `amqp.max_message_size`, so that one message of the largest size always fits.
    pub max_per_connection: u64,
}

impl Default for MemoryConfig {
    /// 2 GiB: publishers are held back long before a backlog of transient messages exhausts a small host
    /// (RabbitMQ's `vm_memory_high_watermark` plays the same role). 128 MiB per connection: eight messages of
    /// the default largest size, or a transaction of that much.
    fn default() -> Self {
        Self {
            high_water: 2 << 30,
            max_per_connection: 128 * MIB,
        }
    }
}

impl MemoryConfig {
    /// `max_message_size` is the largest message the protocols accept (`amqp.max_message_size`).
    pub(super) fn validate(&self, max_message_size: u64) -> Result<(), ConfigError> {
        if self.max_per_connection != 0 && self.max_per_connection < max_message_size {
            return Err(ConfigError::invalid(
                "memory.max_per_connection",
                format!(
                    "{} is below amqp.max_message_size ({max_message_size}): a message of the largest size could \
                     never be published",
                    self.max_per_connection
                ),
            ));
        }
        Ok(())
    }
}
