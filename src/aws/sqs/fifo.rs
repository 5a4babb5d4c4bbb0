//! FIFO queue bookkeeping the core does not need to know: deduplication (a MessageDeduplicationId, or the
//! body's SHA-256 with ContentBasedDeduplication, seen in the last 5 minutes answers the first send's
//! MessageId without enqueueing again; per queue, or per message group with DeduplicationScope
//! `messageGroup`) and sequence numbers (per queue, increasing, 20 digits as SQS shows them).
//!
//! The window is a map for look-ups and a list in send order from whose front expired keys leave, so each send
//! costs the same however many keys the window holds; a queue keeps at most [`MAX_WINDOW`] keys (past that, the
//! oldest leave early: memory stays bounded at any send rate). Sequence numbers start from the wall clock in
//! microseconds when a queue is first used in a run, so they keep increasing across a restart (unless the queue
//! averaged over a million sends a second). The window is kept in memory and rebuilt after a restart from the
//! sends the queue's messages record ([`FifoState::restore`]; a message deleted before the restart is not
//! there to tell).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a deduplication id is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// Most deduplication keys one queue remembers.
pub const MAX_WINDOW: usize = 200_000;

/// What one earlier send answered.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: String,
    pub sequence: String,
    at: Instant,
}

impl Sent {
    fn new(message_id: String, sequence: String, at: Instant) -> Self {
        Self {
            message_id,
            sequence,
            at,
        }
    }
}

#[derive(Debug, Default)]
struct QueueFifo {
    seen: HashMap<String, Sent>,
    /// The keys of `seen` in the order they were remembered.
    order: VecDeque<(Instant, String)>,
    sequence: u64,
    /// Whether the window was rebuilt from the queue's recent messages in this run (see [`FifoState::restore`]).
    restored: bool,
}

impl QueueFifo {
    /// Forgets keys older than the window, and the oldest beyond [`MAX_WINDOW`].
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < DEDUP_WINDOW && self.order.len() <= MAX_WINDOW {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.seen.get(&key).is_some_and(|s| s.at == at)
            {
                self.seen.remove(&key);
            }
        }
    }
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
        q.expire(Instant::now());
        q.seen.get(key).cloned()
    }

    /// The next sequence number of `queue`.
    pub fn next_sequence(&self, queue: &str) -> String {
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        q.sequence = if q.sequence == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_micros() as u64)
        } else {
            q.sequence + 1
        };
        format!("{:020}", q.sequence)
    }

    /// Remembers a send under its deduplication key.
    pub fn remember(&self, queue: &str, key: String, message_id: String, sequence: String) {
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        let at = Instant::now();
        q.order.push_back((at, key.clone()));
        q.seen.insert(key, Sent::new(message_id, sequence, at));
        q.expire(at);
    }

    /// Whether `queue`'s window has not yet been rebuilt from its messages in this run.
    pub fn needs_restore(&self, queue: &str) -> bool {
        self.lock().get(queue).is_none_or(|q| !q.restored)
    }

    /// Rebuilds `queue`'s window from the sends its messages record: (key, message id, sequence number, sent
    /// at in ms since the epoch), any order. Keys already remembered in this run keep their entry. Sends older
    /// than the window are left out.
    pub fn restore(&self, queue: &str, mut sends: Vec<(String, String, String, u64)>) {
        sends.sort_by_key(|s| s.3);
        let now = Instant::now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        let mut older = VecDeque::with_capacity(sends.len());
        for (key, message_id, sequence, sent_ms) in sends {
            let Some(at) = now.checked_sub(Duration::from_millis(wall.saturating_sub(sent_ms)))
            else {
                continue;
            };
            if now.duration_since(at) >= DEDUP_WINDOW || q.seen.contains_key(&key) {
                continue;
            }
            older.push_back((at, key.clone()));
            q.seen.insert(key, Sent::new(message_id, sequence, at));
        }
        older.append(&mut q.order);
        q.order = older;
        q.restored = true;
        q.expire(now);
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

    #[test]
    fn sequences_start_from_the_clock_so_a_restart_keeps_them_increasing() {
        let before = FifoState::default().next_sequence("q");
        std::thread::sleep(Duration::from_millis(2));
        let after_restart = FifoState::default().next_sequence("q");
        assert!(after_restart > before, "{after_restart} <= {before}");
    }

    #[test]
    fn the_window_keeps_at_most_its_cap_and_forgets_the_oldest_first() {
        let f = FifoState::default();
        for i in 0..MAX_WINDOW + 10 {
            f.remember("q", format!("k{i}"), format!("id{i}"), String::new());
        }
        assert!(f.seen("q", "k0").is_none());
        assert!(f.seen("q", "k9").is_none());
        assert_eq!(
            f.seen("q", "k10").map(|s| s.message_id),
            Some("id10".to_owned())
        );
        let queues = f.lock();
        assert_eq!(queues["q"].seen.len(), MAX_WINDOW);
        assert_eq!(queues["q"].order.len(), MAX_WINDOW);
    }
}
