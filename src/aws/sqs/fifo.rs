//! FIFO queue bookkeeping the core does not need to know: deduplication (a MessageDeduplicationId, or the
//! body's SHA-256 with ContentBasedDeduplication, seen in the last 5 minutes answers the first send's
//! MessageId without enqueueing again; per queue, or per message group with DeduplicationScope
//! `messageGroup`) and sequence numbers (per queue, increasing, 20 digits as SQS shows them). Kept in memory:
//! a restart forgets the deduplication window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a deduplication id is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// What one earlier send answered.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: String,
    pub sequence: String,
    at: Instant,
}

#[derive(Debug, Default)]
struct QueueFifo {
    seen: HashMap<String, Sent>,
    sequence: u64,
}

/// Every FIFO queue's deduplication window and sequence counter.
#[derive(Debug, Default)]
pub struct FifoState {
    queues: Mutex<HashMap<String, QueueFifo>>,
}

impl FifoState {
    /// What an earlier send with this deduplication key answered, if within the window.
    pub fn seen(&self, queue: &str, key: &str) -> Option<Sent> {
        let mut queues = self.lock();
        let q = queues.get_mut(queue)?;
        let now = Instant::now();
        q.seen
            .retain(|_, s| now.duration_since(s.at) < DEDUP_WINDOW);
        q.seen.get(key).cloned()
    }

    /// The next sequence number of `queue`.
    pub fn next_sequence(&self, queue: &str) -> String {
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        q.sequence += 1;
        format!("{:020}", q.sequence)
    }

    /// Remembers a send under its deduplication key.
    pub fn remember(&self, queue: &str, key: String, message_id: String, sequence: String) {
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        q.seen.insert(
            key,
            Sent {
                message_id,
                sequence,
                at: Instant::now(),
            },
        );
    }

    /// The queue was deleted: its window goes with it.
    pub fn forget(&self, queue: &str) {
        self.lock().remove(queue);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueFifo>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_seen_again_and_sequences_increase() {
        let f = FifoState::default();
        assert!(f.seen("q", "k").is_none());
        let s1 = f.next_sequence("q");
        f.remember("q", "k".into(), "id1".into(), s1.clone());
        assert_eq!(
            f.seen("q", "k").map(|s| s.message_id),
            Some("id1".to_owned())
        );
        let s2 = f.next_sequence("q");
        assert!(s2 > s1);
        assert_eq!(s1.len(), 20);
        f.forget("q");
        assert!(f.seen("q", "k").is_none());
    }
}
