//! Deadlines by publish time: the messages of a queue whose expiry deadline falls at or after a given time,
//! wherever
//! they are (ready, delayed, or out under a lease), bodies read back from the store for paged ones. A message
//! with a fixed time to live was published recently exactly when its deadline is late, so a front end that
//! keeps state about recent publishes (SQS FIFO deduplication) rebuilds it from this after a restart, reading
//! only those messages. The entries are chosen by deadline without reading anything (the newest ones when
//! there are more than asked for); the reads run on `spawn_blocking`, so the actor goes on, and keep what a
//! message says of itself but not its body, so memory holds one body at a time.

use super::*;

impl Actor {
    /// Answers `reply` with up to `max` messages whose deadline is at or after `after`, in queue order for
    /// each place (ready levels, delayed, leased).
    pub(super) fn recent(
        &self,
        after: Instant,
        max: usize,
        reply: oneshot::Sender<Vec<Arc<Message>>>,
    ) {
        let late = |d: Deadline| d.get().is_some_and(|t| t >= after);
        let ready = self.levels.iter().flat_map(Level::each);
        let aside = self
            .delayed
            .entries()
            .chain(self.outstanding.values().map(|o| &o.entry))
            .map(|e| (e.expires_at, e.message.as_ref(), e.store_id.get()));
        // The newest `max` are kept: the oldest leave from the front as newer ones come.
        let mut found: VecDeque<Found> = VecDeque::new();
        for (deadline, message, id) in ready.chain(aside) {
            if max == 0 || !late(deadline) {
                continue;
            }
            let one = match (message, id) {
                (Some(m), _) => Found::Loaded(Arc::clone(m)),
                (None, Some(id)) => Found::Paged(id),
                (None, None) => continue,
            };
            if found.len() == max {
                found.pop_front();
            }
            found.push_back(one);
        }
        if found.iter().all(|f| matches!(f, Found::Loaded(_))) {
            let loaded = found.into_iter().filter_map(Found::loaded).collect();
            let _ = reply.send(loaded);
            return;
        }
        let store = Arc::clone(&self.store);
        let queue = self.me.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(found.len());
            for f in found {
                match f {
                    Found::Loaded(m) => out.push(m),
                    Found::Paged(id) => match paging::read_message(store.as_ref(), id) {
                        Ok(mut m) => {
                            // What is wanted is what the message says of itself: its body is not kept.
                            m.body = bytes::Bytes::new();
                            out.push(Arc::new(m));
                        }
                        // Settled since, or unreadable: the caller rebuilds from what is there.
                        Err(e) => {
                            debug!(queue = %queue, id, error = %e, "a recent message could not be read")
                        }
                    },
                }
            }
            let _ = reply.send(out);
        });
    }
}

impl Actor {
    /// Moves by `delta_ms` the deadline of every message whose deadline is before `before` (ready, delayed or
    /// out under a lease). With a fixed time to live, those are the messages published before a time: a
    /// front end whose retention changes (SQS MessageRetentionPeriod) moves theirs by the change. Moving them
    /// all by one amount keeps their order; the timers pick the new deadlines up on the next turn.
    pub(super) fn shift_deadlines(&mut self, before: Instant, delta_ms: i64) {
        let shift = |d: &mut Deadline| {
            if let Some(t) = d.get().filter(|t| *t < before) {
                let by = Duration::from_millis(delta_ms.unsigned_abs());
                let moved = if delta_ms >= 0 {
                    t.checked_add(by)
                } else {
                    t.checked_sub(by)
                };
                *d = Deadline::new(Some(moved.unwrap_or(t)));
            }
        };
        for level in &mut self.levels {
            level.each_deadline_mut(shift);
        }
        self.delayed
            .entries_mut()
            .chain(self.outstanding.values_mut().map(|o| &mut o.entry))
            .for_each(|e| shift(&mut e.expires_at));
    }
}

/// A message [`Actor::recent`] found: in memory, or to be read back.
enum Found {
    Loaded(Arc<Message>),
    Paged(MsgId),
}

impl Found {
    fn loaded(self) -> Option<Arc<Message>> {
        match self {
            Found::Loaded(m) => Some(m),
            Found::Paged(_) => None,
        }
    }
}
