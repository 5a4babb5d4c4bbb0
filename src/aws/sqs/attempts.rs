//! FIFO receive attempts (ReceiveMessage's ReceiveRequestAttemptId): a receive that names an attempt
//! remembers its answer and the leases it took for 5 minutes, and a retry with the same id, while every one
//! of those messages is still out under the lease that receive gave it, gets the same messages with the same
//! receipt handles and restarts their visibility timeout, instead of receiving anew. This is what lets a
//! client whose answer was lost retry without waiting out the visibility timeout of its message groups.
//!
//! Answers are held whole (bodies included), so what all attempts hold together is bounded: at most
//! [`MAX_ATTEMPTS`] attempts and [`MAX_BYTES`] of answers; past either, the oldest are forgotten early (a
//! retry of a forgotten attempt is an ordinary receive, as after the 5 minutes).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::aws::error::AwsError;

/// How long an attempt id is remembered.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
/// Most attempts remembered at once (all queues).
pub const MAX_ATTEMPTS: usize = 10_000;
/// Most bytes of answers (bodies and attributes as rendered) remembered at once.
pub const MAX_BYTES: usize = 32 << 20;

/// One remembered receive.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The messages it handed out: delivery tag and the receive count their receipt handles carry.
    pub leases: Vec<(u64, u32)>,
    /// The answer as sent.
    pub answer: Value,
    bytes: usize,
    at: Instant,
}

impl Attempt {
    pub fn new(leases: Vec<(u64, u32)>, answer: Value, bytes: usize) -> Self {
        Self {
            leases,
            answer,
            bytes,
            at: Instant::now(),
        }
    }
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Window {
    attempts: HashMap<Key, Attempt>,
    /// Keys in the order they were remembered, with the instant that tells a stale entry.
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            let young = now.duration_since(*at) < ATTEMPT_WINDOW;
            // `order` also holds stale keys (forgotten or remembered again): it is bounded too.
            let within = self.attempts.len() <= MAX_ATTEMPTS
                && self.order.len() <= 2 * MAX_ATTEMPTS
                && self.bytes <= MAX_BYTES;
            if young && within {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.attempts.get(&key).is_some_and(|a| a.at == at)
                && let Some(a) = self.attempts.remove(&key)
            {
                self.bytes -= a.bytes;
            }
        }
    }
}

/// Every queue's remembered receive attempts.
#[derive(Debug, Default)]
pub struct Attempts {
    window: Mutex<Window>,
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The attempt `id` on `queue`, if remembered and younger than the window.
    pub fn get(&self, queue: &str, id: &str) -> Option<Attempt> {
        let mut w = self.lock();
        w.expire(Instant::now());
        w.attempts.get(&(queue.to_owned(), id.to_owned())).cloned()
    }

    /// Forgets an attempt whose messages moved on (deleted, received again, visible again).
    pub fn forget(&self, queue: &str, id: &str) {
        let mut w = self.lock();
        if let Some(a) = w.attempts.remove(&(queue.to_owned(), id.to_owned())) {
            w.bytes -= a.bytes;
        }
    }

    /// A deleted queue's attempts go with it (a queue created again under its name hands out the same
    /// delivery tags).
    pub fn forget_queue(&self, queue: &str) {
        let mut w = self.lock();
        let mut freed = 0;
        w.attempts.retain(|(q, _), a| {
            let keep = q != queue;
            if !keep {
                freed += a.bytes;
            }
            keep
        });
        w.bytes -= freed;
    }

    /// Remembers a receive's answer under its attempt id.
    pub fn remember(&self, queue: &str, id: &str, attempt: Attempt) {
        let mut w = self.lock();
        let key = (queue.to_owned(), id.to_owned());
        w.bytes += attempt.bytes;
        w.order.push_back((attempt.at, key.clone()));
        if let Some(old) = w.attempts.insert(key, attempt) {
            w.bytes -= old.bytes;
        }
        w.expire(Instant::now());
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let w = self.lock();
        (w.attempts.len(), w.bytes)
    }
}

/// A ReceiveRequestAttemptId as SQS takes it: 1 to 128 characters, letters, digits and punctuation.
pub fn check_id(id: &str) -> Result<(), AwsError> {
    let valid = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(AwsError::invalid_parameter(&format!(
            "Value {id} for parameter ReceiveRequestAttemptId is invalid. Reason: \
             ReceiveRequestAttemptId can only contain alphanumeric characters and punctuation, \
             and must be at most 128 characters long."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_found_by_queue_and_id_until_forgotten() {
        let a = Attempts::default();
        a.remember("q", "one", Attempt::new(vec![(7, 1)], Value::Null, 10));
        assert_eq!(a.get("q", "one").map(|x| x.leases), Some(vec![(7, 1)]));
        assert!(a.get("other", "one").is_none());
        assert!(a.get("q", "two").is_none());
        a.forget("q", "one");
        assert!(a.get("q", "one").is_none());
        assert_eq!(a.held(), (0, 0));
    }

    #[test]
    fn the_oldest_attempts_leave_first_past_the_byte_bound() {
        let a = Attempts::default();
        let big = MAX_BYTES / 4 + 1;
        for i in 0..4 {
            a.remember("q", &i.to_string(), Attempt::new(vec![], Value::Null, big));
        }
        assert!(a.get("q", "0").is_none(), "the oldest is forgotten first");
        assert!(a.get("q", "3").is_some());
        let (n, bytes) = a.held();
        assert_eq!(n, 3);
        assert!(bytes <= MAX_BYTES);
    }

    #[test]
    fn the_count_bound_holds_and_a_replaced_attempt_is_counted_once() {
        let a = Attempts::default();
        for i in 0..MAX_ATTEMPTS + 50 {
            a.remember("q", &i.to_string(), Attempt::new(vec![], Value::Null, 1));
        }
        assert_eq!(a.held().0, MAX_ATTEMPTS);
        a.remember("q", "x", Attempt::new(vec![], Value::Null, 5));
        a.remember("q", "x", Attempt::new(vec![], Value::Null, 7));
        // 9,999 one-byte attempts are left beside it, and only its second answer counts.
        assert_eq!(a.held(), (MAX_ATTEMPTS, MAX_ATTEMPTS - 1 + 7));
        assert_eq!(a.get("q", "x").map(|x| x.bytes), Some(7));
    }

    #[test]
    fn a_deleted_queue_takes_its_attempts_and_stale_keys_stay_bounded() {
        let a = Attempts::default();
        a.remember("q", "one", Attempt::new(vec![(7, 1)], Value::Null, 10));
        a.remember("other", "one", Attempt::new(vec![(7, 1)], Value::Null, 5));
        a.forget_queue("q");
        assert!(a.get("q", "one").is_none());
        assert_eq!(a.held(), (1, 5));
        for _ in 0..3 * MAX_ATTEMPTS {
            a.remember("q", "again", Attempt::new(vec![], Value::Null, 1));
            a.forget("q", "again");
        }
        assert!(a.lock().order.len() <= 2 * MAX_ATTEMPTS + 1);
    }

    #[test]
    fn ids_are_checked_as_sqs_does() {
        assert!(check_id("abc-123_!?").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id(&"a".repeat(129)).is_err());
        assert!(check_id("has space").is_err());
        assert!(check_id("é").is_err());
    }
}
