//! Retained messages (MQTT 5.0 §3.3.1.3, 3.1.1 §3.3.1.3): per vhost, the last message published with the
//! retain flag to each routing key, handed to a new subscription whose pattern matches the key. A retained
//! message with an empty body deletes the key's entry [MQTT-3.3.1-6, MQTT-3.3.1-7]. Keys and patterns are the
//! core's (AMQP topic words: `.`-separated, `*` and `#`); the front end maps its own topics to them, so STOMP
//! or AMQP publishers could retain too. Matching reuses [`TopicTrie`] with the one pattern asked for.
//!
//! Durable: each change is journaled as a definition (`Definition::Retained` / `DeleteRetained`) while the
//! map's lock is held, so the journal's order is memory's order, and recovery replays them. A publisher that
//! must not answer before the retained message is on disk waits for the returned sync point. Each entry counts
//! in the memory gauge like a queued message; an expired one is not handed out [MQTT-3.3.2-5].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::memory::{MESSAGE_OVERHEAD, MemoryGauge};
use super::message::{Message, now_ms};
use super::topic::TopicTrie;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Retained {
    by_key: RwLock<HashMap<String, Arc<Message>>>,
}

fn cost(message: &Message) -> u64 {
    message.body.len() as u64 + MESSAGE_OVERHEAD
}

impl Retained {
    /// Retains `message` under its routing key, or clears the key when the body is empty, after `record`
    /// (which journals the change) succeeded, under the lock. Returns what `record` returned.
    pub(crate) fn set<T, E>(
        &self,
        message: Arc<Message>,
        gauge: &MemoryGauge,
        record: impl FnOnce(&Message) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut map = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        let recorded = record(&message)?;
        let old = if message.body.is_empty() {
            map.remove(&message.routing_key)
        } else {
            gauge.add(cost(&message));
            map.insert(message.routing_key.clone(), message)
        };
        if let Some(old) = &old {
            gauge.sub(cost(old));
        }
        Ok(recorded)
    }

    /// Every retained message whose key `pattern` matches, in no particular order.
    pub(crate) fn matching(&self, pattern: &str) -> Vec<Arc<Message>> {
        let mut trie = TopicTrie::default();
        trie.insert(pattern, ());
        let now = now_ms();
        let map = self.by_key.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, message)| message.properties.expiry.is_none_or(|e| e.at_ms > now))
            .filter(|(key, _)| {
                let mut hit = false;
                trie.route(key, &mut |_| hit = true);
                hit
            })
            .map(|(_, message)| message.clone())
            .collect()
    }
}
