//! `[memory]`: the memory alarm on message data held by queues.

use serde::{Deserialize, Serialize};

/// The memory alarm: above the high-water mark, publishers are blocked (AMQP `connection.blocked`) until
/// consumers bring the memory held by queued messages back down.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Bytes of message data held by queues above which publishers are blocked; 0 disables the alarm.
    pub high_water: u64,
}

impl Default for MemoryConfig {
    /// 2 GiB: publishers are held back long before a backlog of transient messages exhausts a small host
    /// (RabbitMQ's `vm_memory_high_watermark` plays the same role).
    fn default() -> Self {
        Self {
            high_water: 2 << 30,
        }
    }
}
