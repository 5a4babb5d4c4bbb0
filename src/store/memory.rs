//! The in-memory store: every append is "durable" at once and nothing survives a restart. Used by tests that do
//! not exercise persistence and by `store.kind = "memory"`.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::{
    Definition, MsgId, QueueKey, Recovered, Store, StoreError, StoredMessage, SyncPoint, SyncState,
};

/// See the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    next: AtomicU64,
    state: watch::Sender<SyncState>,
    blocked: watch::Sender<bool>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(0),
            state: watch::Sender::new(SyncState::default()),
            blocked: watch::Sender::new(false),
        }
    }
}

impl MemoryStore {
    fn append(&self) -> SyncPoint {
        let point = SyncPoint(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        self.state.send_modify(|s| s.synced = s.synced.max(point));
        point
    }
}

impl Store for MemoryStore {
    fn publish(
        &self,
        _id: MsgId,
        _queues: &[QueueKey],
        _message: &StoredMessage,
    ) -> Result<SyncPoint, StoreError> {
        Ok(self.append())
    }
    fn settle(&self, _queue: &QueueKey, _id: MsgId) -> Result<(), StoreError> {
        Ok(())
    }
    fn define(&self, _definition: &Definition) -> Result<SyncPoint, StoreError> {
        Ok(self.append())
    }
    fn sync_state(&self) -> watch::Receiver<SyncState> {
        self.state.subscribe()
    }
    fn recover(&self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }
    /// The memory store keeps no bodies: queues never page messages that have no journal copy to read back.
    fn read(&self, id: MsgId) -> Result<StoredMessage, StoreError> {
        Err(StoreError::NotFound(id))
    }
    fn healthy(&self) -> Result<(), String> {
        Ok(())
    }
    fn blocked(&self) -> watch::Receiver<bool> {
        self.blocked.subscribe()
    }
    fn close(&self) {}
}
