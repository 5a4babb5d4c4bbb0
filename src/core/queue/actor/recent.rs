//! Recent messages: the messages of a queue whose expiry deadline falls at or after a given time, wherever
//! they are (ready, delayed, or out under a lease), bodies read back from the store for paged ones. A message
//! with a fixed time to live was published recently exactly when its deadline is late, so a front end that
//! keeps state about recent publishes (SQS FIFO deduplication) rebuilds it from this after a restart, reading
//! only those messages. The entries are chosen by deadline without reading anything; the reads run on
//! `spawn_blocking`, so the actor goes on.

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
        let mut loaded = Vec::new();
        let mut paged = Vec::new();
        for (deadline, message, id) in ready.chain(aside) {
            if loaded.len() + paged.len() >= max {
                break;
            }
            if !late(deadline) {
                continue;
            }
            match (message, id) {
                (Some(m), _) => loaded.push(Arc::clone(m)),
                (None, Some(id)) => paged.push(id),
                (None, None) => {}
            }
        }
        if paged.is_empty() {
            let _ = reply.send(loaded);
            return;
        }
        let store = Arc::clone(&self.store);
        let queue = self.me.name.clone();
        tokio::task::spawn_blocking(move || {
            for id in paged {
                match paging::read_message(store.as_ref(), id) {
                    Ok(m) => loaded.push(Arc::new(m)),
                    // Settled since, or unreadable: the caller rebuilds from what is there.
                    Err(e) => {
                        debug!(queue = %queue, id, error = %e, "a recent message could not be read")
                    }
                }
            }
            let _ = reply.send(loaded);
        });
    }
}
