//! Paging: reading paged bodies back from the store ahead of need, in batches on `spawn_blocking` (at most
//! one batch in flight per queue, so the actor never blocks on a read), and the synchronous read a dead-letter
//! of a paged message needs.

use super::*;

impl Actor {
    /// Whether an expired message must be read back before it leaves (to be dead-lettered with its body).
    pub(super) fn expiry_needs_body(&self) -> bool {
        self.me.args.dead_letter_exchange.is_some()
    }

    /// Starts reading the next paged bodies back if none are in flight and a level needs them: first the level
    /// consumers are served from when its head is empty, then a level whose next message expired and waits for
    /// its body to be dead-lettered, then the consumers' level when its head is low.
    pub(super) fn read_ahead(&mut self, now: Instant) {
        if self.reading.is_some() {
            return;
        }
        let wanted =
            !self.consumers.is_empty() || !self.gets.is_empty() || !self.receives.is_empty();
        let top = self.top_level().filter(|_| wanted);
        let needs_body = self.expiry_needs_body();
        let level = top
            .filter(|l| self.levels[*l].waits_for_read())
            .or_else(|| {
                (0..self.levels.len()).rev().find(|l| {
                    let level = &self.levels[*l];
                    needs_body
                        && level.waits_for_read()
                        && level.front_deadline().is_some_and(|t| t <= now)
                })
            })
            .or_else(|| {
                top.filter(|l| {
                    let level = &self.levels[*l];
                    !level.tail().is_empty()
                        && level.head_len() < READ_LOW_MESSAGES
                        && level.head_bytes() < READ_LOW_BYTES
                })
            });
        let Some(level) = level else {
            return;
        };
        // Within the budget; a level with nothing loaded gets a small batch even when others hold it all.
        let room = PAGE_BUDGET_MESSAGES.saturating_sub(self.loaded);
        let room_bytes = PAGE_BUDGET_BYTES.saturating_sub(self.loaded_bytes);
        let starved = self.levels[level].head_len() == 0;
        let max_messages = if starved {
            room.max(READ_STARVED_MESSAGES)
        } else if room_bytes == 0 {
            0
        } else {
            room
        }
        .min(READ_BATCH_MESSAGES);
        let asked = self.levels[level]
            .tail()
            .paged_front(max_messages, room_bytes.min(READ_BATCH_BYTES));
        if asked.is_empty() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let store = self.store.clone();
        let ids = asked.clone();
        tokio::task::spawn_blocking(move || {
            let results: ReadResults = ids
                .into_iter()
                .map(|(tag, id)| (tag, read_message(store.as_ref(), id)))
                .collect();
            let _ = tx.send(results);
        });
        self.reading = Some(Reading { level, asked, rx });
    }

    /// A read-ahead batch came back: each body joins its level's head, if its message is still first in the
    /// tail (it may have expired, been dropped or purged meanwhile). A message that could not be read is
    /// dropped from the queue, not settled: it comes back after a restart.
    pub(super) fn on_read(&mut self, done: Result<ReadResults, oneshot::error::RecvError>) {
        let Some(reading) = self.reading.take() else {
            return;
        };
        let results = done.unwrap_or_else(|_| {
            let why = || StoreError::Failed("the read-ahead task ended without an answer".into());
            reading
                .asked
                .iter()
                .map(|(tag, _)| (*tag, Err(why())))
                .collect()
        });
        let level = reading.level;
        for (tag, result) in results {
            match result {
                Ok(message) => {
                    let Some(entry) = self.levels[level].loaded_read(tag, Arc::new(message)) else {
                        continue;
                    };
                    let (cost, size) = (entry.cost(), u64::from(entry.size));
                    self.memory.add(cost);
                    self.loaded += 1;
                    self.loaded_bytes += size;
                }
                Err(e) => {
                    let Some(entry) = self.levels[level].drop_unreadable(tag) else {
                        continue;
                    };
                    self.count_out(&entry);
                    error!(queue = %self.me.name, vhost = %self.me.vhost, id = ?entry.store_id.get(),
                        error = %e, "paged message could not be read back; dropped from the queue until the next restart");
                }
            }
        }
    }
}

/// Reads a paged entry's body back from the store (counting it in the memory gauge); true if it is loaded.
pub(super) fn load(
    store: &dyn Store,
    memory: &Held,
    queue: &QueueHandle,
    entry: &mut Entry,
) -> bool {
    if entry.message.is_some() {
        return true;
    }
    let Some(id) = entry.store_id.get() else {
        return false;
    };
    match read_message(store, id) {
        Ok(message) => {
            entry.message = Some(Arc::new(message));
            memory.add(entry.cost());
            true
        }
        Err(e) => {
            error!(queue = %queue.name, vhost = %queue.vhost, id, error = %e, "could not read a paged message back");
            false
        }
    }
}

/// Reads a paged message back and decodes it (blocking: file I/O).
pub(super) fn read_message(store: &dyn Store, id: MsgId) -> Result<Message, StoreError> {
    let stored = store.read(id)?;
    persist::restore(stored).map_err(|e| StoreError::Corrupt(e.to_string()))
}
