//! The memory alarm: every queue adds the bytes of the messages it holds (ready and unacked) to one gauge;
//! above the high-water mark publishers are blocked (AMQP connection.blocked, and their sockets are no longer
//! read) until usage falls back under 90 % of it. This bounds what publishers can make the broker hold, like
//! RabbitMQ's `vm_memory_high_watermark`. A limit of 0 turns the alarm off.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Bytes accounted per message besides its body (entry, `Arc`, properties): a rough, deliberate estimate.
pub const MESSAGE_OVERHEAD: u64 = 256;

/// See the module docs.
#[derive(Debug)]
pub struct MemoryGauge {
    used: AtomicU64,
    limit: u64,
    alarm: watch::Sender<bool>,
}

impl MemoryGauge {
    pub fn new(limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
            alarm: watch::Sender::new(false),
        }
    }

    /// Account for `bytes` more.
    pub fn add(&self, bytes: u64) {
        let now = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.limit > 0 && now > self.limit && !*self.alarm.borrow() {
            tracing::warn!(
                used = now,
                limit = self.limit,
                "memory alarm: blocking publishers"
            );
            self.alarm.send_replace(true);
        }
    }

    /// Account for `bytes` fewer.
    pub fn sub(&self, bytes: u64) {
        let now = self
            .used
            .fetch_sub(bytes, Ordering::Relaxed)
            .saturating_sub(bytes);
        if self.limit > 0 && now < self.limit / 10 * 9 && *self.alarm.borrow() {
            tracing::info!(used = now, limit = self.limit, "memory alarm cleared");
            self.alarm.send_replace(false);
        }
    }

    /// Bytes currently accounted.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Watch the alarm (true = publishers blocked).
    pub fn alarm(&self) -> watch::Receiver<bool> {
        self.alarm.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_sets_above_the_limit_and_clears_below_ninety_percent() {
        let gauge = MemoryGauge::new(1000);
        let alarm = gauge.alarm();
        gauge.add(900);
        assert!(!*alarm.borrow());
        gauge.add(200);
        assert!(*alarm.borrow());
        gauge.sub(150);
        assert!(*alarm.borrow(), "950 is above 90 %");
        gauge.sub(100);
        assert!(!*alarm.borrow());
        assert_eq!(gauge.used(), 850);
    }

    #[test]
    fn zero_limit_never_alarms() {
        let gauge = MemoryGauge::new(0);
        gauge.add(u64::MAX / 2);
        assert!(!*gauge.alarm().borrow());
    }
}
