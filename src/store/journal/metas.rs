//! What recovery keeps of each live message besides the index (body size, priority, deadline, recovered publish
//! time), built on a thread of its own.
//!
//! Replay folds every record into two per-message maps: the index (where each message is, which queues hold
//! it) and this one. They are independent once replay has decided, record by record, whether a message is
//! inserted or forgotten, so replay sends those decisions here in batches ([`Metas::insert`],
//! [`Metas::forget`]) and a second thread applies them in order while the replaying thread goes on with the
//! index. On the two cores of a small machine, and on a loaded one where each runnable thread gets its own
//! share, that takes a fair part of the replay off its critical path. If the thread cannot be started the
//! batches are applied in place: the result is the same.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::store::idmap::IdMap;
use crate::store::{MsgId, RecoveredMeta, RecoveredQueue, StoreError};

/// Decisions sent to the thread at a time.
const BATCH: usize = 16 * 1024;
/// Batches in flight before replay waits for the thread.
const IN_FLIGHT: usize = 4;

/// What a queue needs of a message while its body stays on disk, packed in 8 bytes (the id is the key; the
/// deadline and the recovered publish time, which few messages have, are kept aside in [`Aside`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meta {
    pub(crate) size: u32,
    pub(crate) priority: u8,
    pub(crate) has_expiry: bool,
    pub(crate) has_publish_time: bool,
}

impl Meta {
    /// Appends the message to a recovered queue.
    pub(crate) fn push_to(self, id: MsgId, queue: &mut RecoveredQueue, aside: &Aside) {
        let lookup = |has: bool, map: &IdMap<u64>| has.then(|| map.get(id).copied()).flatten();
        queue.push(
            id,
            RecoveredMeta {
                size: self.size,
                priority: self.priority,
                expires_at_ms: lookup(self.has_expiry, &aside.deadlines),
                published_at_ms: lookup(self.has_publish_time, &aside.publish_times),
            },
        );
    }
}

/// The deadlines and recovered publish times (ms since the Unix epoch) of the messages that have them.
#[derive(Debug, Default)]
pub(crate) struct Aside {
    pub(crate) deadlines: IdMap<u64>,
    pub(crate) publish_times: IdMap<u64>,
}

/// One decision of replay about a message.
#[derive(Debug, Clone, Copy)]
enum Op {
    Insert {
        id: MsgId,
        meta: Meta,
        deadline: Option<u64>,
        published: Option<u64>,
    },
    Forget(MsgId),
}

/// The live messages, without their bodies (about 8 bytes each, in pages freed as they empty), and the
/// deadlines and publish times of those that have one.
#[derive(Debug, Default)]
pub(crate) struct MetaMaps {
    pub(crate) messages: IdMap<Meta>,
    pub(crate) aside: Aside,
}

impl MetaMaps {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Insert {
                id,
                meta,
                deadline,
                published,
            } => {
                if let Some(at) = deadline {
                    self.aside.deadlines.insert(id, at);
                }
                if let Some(at) = published {
                    self.aside.publish_times.insert(id, at);
                }
                self.messages.insert(id, meta);
            }
            Op::Forget(id) => {
                if let Some(m) = self.messages.remove(id) {
                    if m.has_expiry {
                        self.aside.deadlines.remove(id);
                    }
                    if m.has_publish_time {
                        self.aside.publish_times.remove(id);
                    }
                }
            }
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Metas {
    batch: Vec<Op>,
    worker: Option<(SyncSender<Vec<Op>>, JoinHandle<MetaMaps>)>,
    /// The maps, when no thread builds them.
    local: MetaMaps,
}

impl Metas {
    /// Starts the thread (or, if it cannot be started, builds the maps in place).
    pub(crate) fn spawn() -> Self {
        let (tx, rx) = sync_channel::<Vec<Op>>(IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("ferrymq-recovery".into())
            .spawn(move || build(rx))
            .inspect_err(|e| tracing::warn!(error = %e, "recovery runs on one thread"))
            .ok();
        Self {
            batch: Vec::with_capacity(BATCH),
            worker: worker.map(|handle| (tx, handle)),
            local: MetaMaps::default(),
        }
    }

    /// A message is live with this size and priority, this deadline and this recovered publish time.
    pub(crate) fn insert(
        &mut self,
        id: MsgId,
        size: u32,
        priority: u8,
        deadline: Option<u64>,
        published: Option<u64>,
    ) {
        let meta = Meta {
            size,
            priority,
            has_expiry: deadline.is_some(),
            has_publish_time: published.is_some(),
        };
        self.push(Op::Insert {
            id,
            meta,
            deadline,
            published,
        });
    }

    /// A message is no longer live.
    pub(crate) fn forget(&mut self, id: MsgId) {
        self.push(Op::Forget(id));
    }

    fn push(&mut self, op: Op) {
        if self.worker.is_none() {
            self.local.apply(op);
            return;
        }
        self.batch.push(op);
        if self.batch.len() >= BATCH {
            self.send();
        }
    }

    /// Hands the batch to the thread. (A send fails only if the thread is gone, which only a panic ends early:
    /// [`Metas::finish`] reports that.)
    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if let Some((tx, _)) = &self.worker {
            let _ = tx.send(batch);
        }
    }

    /// Waits for the thread to apply every decision and returns the maps.
    pub(crate) fn finish(mut self) -> Result<MetaMaps, StoreError> {
        let Some((tx, handle)) = self.worker.take() else {
            return Ok(self.local);
        };
        let _ = tx.send(std::mem::take(&mut self.batch));
        drop(tx);
        handle.join().map_err(|_| {
            StoreError::Failed(
                "the recovery thread that builds the live messages' metadata panicked".into(),
            )
        })
    }
}

/// The thread body: applies batches in order until replay is done.
fn build(rx: Receiver<Vec<Op>>) -> MetaMaps {
    let mut maps = MetaMaps::default();
    for batch in rx {
        for op in batch {
            maps.apply(op);
        }
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_applies_every_decision_in_order_across_batches() -> Result<(), StoreError> {
        let mut metas = Metas::spawn();
        let n = 3 * BATCH as u64 + 17;
        for id in 0..n {
            metas.insert(
                id,
                id as u32,
                0,
                (id % 10 == 0).then_some(id),
                (id % 6 == 0).then_some(id + 1),
            );
        }
        // Forget every other one, then bring one back with another size: order matters.
        for id in (0..n).step_by(2) {
            metas.forget(id);
        }
        metas.insert(4, 99, 0, None, None);
        let maps = metas.finish()?;
        assert_eq!(maps.messages.len() as u64, n / 2 + 1);
        assert_eq!(maps.messages.get(4).map(|m| m.size), Some(99));
        assert_eq!(maps.messages.get(5).map(|m| m.size), Some(5));
        assert!(maps.messages.get(6).is_none());
        // Deadlines and publish times of forgotten messages go with them (ids multiple of 10 or 6 are even, so
        // all were forgotten).
        assert_eq!(maps.aside.deadlines.len(), 0);
        assert_eq!(maps.aside.publish_times.len(), 0);
        Ok(())
    }

    #[test]
    fn without_a_thread_the_maps_are_built_in_place() -> Result<(), StoreError> {
        let mut metas = Metas::default();
        metas.insert(1, 10, 0, Some(1_000), None);
        metas.insert(2, 20, 0, None, Some(500));
        metas.insert(3, 30, 0, None, Some(700));
        metas.forget(2);
        let maps = metas.finish()?;
        assert_eq!(maps.messages.len(), 2);
        assert_eq!(maps.aside.deadlines.get(1), Some(&1_000));
        assert_eq!(maps.aside.publish_times.get(2), None);
        assert_eq!(maps.aside.publish_times.get(3), Some(&700));
        let mut queue = RecoveredQueue::default();
        for (id, meta) in maps.messages.drain() {
            meta.push_to(id, &mut queue, &maps.aside);
        }
        let times: Vec<_> = queue
            .messages
            .iter()
            .map(|m| (m.id, queue.expires_at_ms(m), queue.published_at_ms(m)))
            .collect();
        assert_eq!(times, vec![(1, Some(1_000), None), (3, None, Some(700))]);
        Ok(())
    }
}
