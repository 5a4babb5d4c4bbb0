//! The persistence seam between the broker core and the disk.
//!
//! The core calls a [`Store`] for three things: durable definitions (vhosts, users, permissions, exchanges,
//! queues, bindings), persistent messages routed to durable queues, and the settlement (ack, drop, expiry,
//! dead-lettering) of those messages. Appends return a [`SyncPoint`]; a confirm for the append may be sent
//! only once [`Store::sync_state`] reports a synced point at or past it. That is how the durability contract
//! (the durability contract, shared design §5: "confirm only after an fdatasync covering the record") reaches every protocol: the
//! adapter waits on the watch channel instead of the store calling back into protocol code.
//!
//! This module owns the trait and the value types that cross it; `memory` is the implementation used when no
//! durability is wanted (tests, `--store memory`); `journal` is the durable one (segment files, group commit);
//! `idmap` is the compact id-keyed map the journal's index and every recovered queue keep per message.
//! It knows nothing of sockets, protocols or the core's message model: a message is a [`StoredMessage`] (an
//! opaque metadata blob the core encodes in its own versioned format, the body, and the few fields the store
//! needs to page and expire without reading the blob), and definition arguments are [`Opaque`] bytes too.

pub(crate) mod idmap;
pub mod journal;
pub mod memory;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

pub use memory::MemoryStore;

/// Which record layout wrote a blob of [`Opaque`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Format {
    /// The core's own versioned encoding (message metadata, argument tables).
    #[default]
    Current,
    /// Journal format 1, written before the core had its own encoding: a message's metadata is its exchange,
    /// routing key and AMQP 0-9-1 basic properties as `journal::format1` lays them out, and arguments are an
    /// AMQP 0-9-1 field table. The store does not decode them; the core's legacy reader does.
    Format1,
}

/// Bytes the store keeps for the core without reading them, and the format that wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Opaque {
    pub format: Format,
    pub bytes: Bytes,
}

impl Opaque {
    /// Bytes in the current format.
    pub fn current(bytes: Bytes) -> Self {
        Self {
            format: Format::Current,
            bytes,
        }
    }
}

/// A persistent message as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Everything but the body, in the core's encoding.
    pub meta: Opaque,
    pub body: Bytes,
    /// Its priority (0 when none): queues restore paged messages into their priority level without the blob.
    pub priority: u8,
    /// Milliseconds since the Unix epoch after which the message is dead, if it has a TTL.
    pub expires_at_ms: Option<u64>,
    /// Milliseconds since the Unix epoch when it was published (0 when unknown: format 1).
    pub published_at_ms: u64,
    /// Whether recovery hands `published_at_ms` back with the message ([`RecoveredQueue::published_at_ms`]):
    /// set when a queue it goes to counts a TTL from the publish, so the TTL does not restart at a restart.
    /// Few messages need it, so recovery keeps it aside for those only.
    pub recover_publish_time: bool,
}

/// Identifier of a persistent message, unique for the life of a data dir (recovery returns the next free one).
pub type MsgId = u64;

/// A durable queue, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub vhost: String,
    pub name: String,
}

impl QueueKey {
    pub fn new(vhost: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            vhost: vhost.into(),
            name: name.into(),
        }
    }
}

/// A position in the store's append order. Every append returns the point that must be synced for it to be
/// durable; points only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SyncPoint(pub u64);

/// What the store's writer has made durable so far, published on a watch channel.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// Every append at or before this point is on disk.
    pub synced: SyncPoint,
    /// Set once a write or sync failed: nothing after `synced` will ever become durable, and no further
    /// persistent write is accepted (the durability contract, shared design §5: never retried blindly, never ignored).
    pub failed: Option<Arc<StoreError>>,
}

impl SyncState {
    /// Whether an append at `point` is durable, still pending, or lost to a failure.
    pub fn status(&self, point: SyncPoint) -> SyncStatus {
        if point <= self.synced {
            SyncStatus::Durable
        } else if self.failed.is_some() {
            SyncStatus::Failed
        } else {
            SyncStatus::Pending
        }
    }
}

/// See [`SyncState::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    Durable,
    Pending,
    Failed,
}

/// Whether a binding's destination is a queue or an exchange (exchange-to-exchange bindings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Queue,
    Exchange,
}

/// A durable definition change, journaled in order and replayed in order at recovery.
#[derive(Debug, Clone, PartialEq)]
pub enum Definition {
    VHost {
        name: String,
    },
    DeleteVHost {
        name: String,
    },
    User {
        name: String,
        password_hash: String,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    Permission {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
    },
    DeletePermission {
        user: String,
        vhost: String,
    },
    Exchange {
        vhost: String,
        name: String,
        kind: String,
        auto_delete: bool,
        internal: bool,
        arguments: Opaque,
    },
    DeleteExchange {
        vhost: String,
        name: String,
    },
    Queue {
        vhost: String,
        name: String,
        auto_delete: bool,
        arguments: Opaque,
    },
    DeleteQueue {
        vhost: String,
        name: String,
    },
    Bind(Binding),
    Unbind(Binding),
    /// A retained message (MQTT): the last one published with retain to `key` in `vhost`, replacing any
    /// earlier one; `meta` in the core's encoding, like a message's.
    Retained {
        vhost: String,
        key: String,
        meta: Opaque,
        body: Bytes,
    },
    /// The retained message of `key` cleared.
    DeleteRetained {
        vhost: String,
        key: String,
    },
}

/// A binding as journaled (exchange.bind / queue.bind and their unbinds).
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_kind: DestinationKind,
    pub routing_key: String,
    pub arguments: Opaque,
}

/// A message restored at start-up; it was unacked when the broker stopped, so it is delivered as redelivered.
///
/// Only what a queue needs without the body, in 16 bytes (a large store recovers millions of these): the
/// per-message deadline and publish time, which few messages have, are kept aside in [`RecoveredQueue`], and
/// so are the bodies recovery loaded for the first messages; the rest stay on disk and are read with
/// [`Store::read`] when the queue needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredMessage {
    pub id: MsgId,
    /// Body length in bytes.
    pub size: u32,
    /// The message's priority property (0 when absent).
    pub priority: u8,
    /// Whether [`RecoveredQueue::expires_at_ms`] has a deadline for it.
    has_expiration: bool,
    /// Whether [`RecoveredQueue::published_at_ms`] has its publish time.
    has_publish_time: bool,
}

/// One durable queue's unsettled messages, in publish order, with the per-message deadlines of those that have
/// one and the messages recovery loaded in full for some of them.
#[derive(Debug, Clone, Default)]
pub struct RecoveredQueue {
    pub messages: Vec<RecoveredMessage>,
    pub bodies: HashMap<MsgId, Arc<StoredMessage>>,
    expirations: ById,
    publish_times: ById,
}

/// Values by message id for the messages of one recovered queue that have one: sorted by id, 16 bytes each
/// (messages are pushed in publish order, so in id order, and looked up in that order too; a queue's ids are
/// spread over the whole id space when many queues were published to at once, where an id-paged map would
/// spend a page on a handful of them).
#[derive(Debug, Clone, Default)]
struct ById(Vec<(MsgId, u64)>);

impl ById {
    fn insert(&mut self, id: MsgId, value: u64) {
        match self.0.last() {
            Some(&(last, _)) if last >= id => match self.0.binary_search_by_key(&id, |e| e.0) {
                Ok(i) => self.0[i].1 = value,
                Err(i) => self.0.insert(i, (id, value)),
            },
            _ => self.0.push((id, value)),
        }
    }

    fn get(&self, id: MsgId) -> Option<u64> {
        let i = self.0.binary_search_by_key(&id, |e| e.0).ok()?;
        Some(self.0[i].1)
    }
}

/// What a recovered queue needs to know of one message besides its id (see [`RecoveredQueue::push`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveredMeta {
    /// Body length in bytes.
    pub size: u32,
    pub priority: u8,
    /// Its deadline (ms since the Unix epoch), if it has one.
    pub expires_at_ms: Option<u64>,
    /// Its publish time (ms since the Unix epoch), if it was journaled with `recover_publish_time`.
    pub published_at_ms: Option<u64>,
}

impl RecoveredQueue {
    /// An empty queue with room for `n` messages.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            messages: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// Appends a message described by its id and `meta`.
    pub fn push(&mut self, id: MsgId, meta: RecoveredMeta) {
        if let Some(at) = meta.expires_at_ms {
            self.expirations.insert(id, at);
        }
        if let Some(at) = meta.published_at_ms {
            self.publish_times.insert(id, at);
        }
        self.messages.push(RecoveredMessage {
            id,
            size: meta.size,
            priority: meta.priority,
            has_expiration: meta.expires_at_ms.is_some(),
            has_publish_time: meta.published_at_ms.is_some(),
        });
    }

    /// Appends `message` (kept whole in [`RecoveredQueue::bodies`] when `keep_body` is set).
    pub fn push_message(&mut self, id: MsgId, message: Arc<StoredMessage>, keep_body: bool) {
        self.push(
            id,
            RecoveredMeta {
                size: u32::try_from(message.body.len()).unwrap_or(u32::MAX),
                priority: message.priority,
                expires_at_ms: message.expires_at_ms,
                published_at_ms: message
                    .recover_publish_time
                    .then_some(message.published_at_ms),
            },
        );
        if keep_body {
            self.bodies.insert(id, message);
        }
    }

    /// The deadline of a message (ms since the Unix epoch), if it has one.
    pub fn expires_at_ms(&self, m: &RecoveredMessage) -> Option<u64> {
        if m.has_expiration {
            self.expirations.get(m.id)
        } else {
            None
        }
    }

    /// The publish time of a message (ms since the Unix epoch), if it was journaled to be recovered.
    pub fn published_at_ms(&self, m: &RecoveredMessage) -> Option<u64> {
        if m.has_publish_time {
            self.publish_times.get(m.id)
        } else {
            None
        }
    }
}

/// Everything the store hands back at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Definition changes in journal order, to be replayed as they were made.
    pub definitions: Vec<Definition>,
    /// Unsettled persistent messages per durable queue, in publish order.
    pub messages: HashMap<QueueKey, RecoveredQueue>,
    /// The first message id not used by any recovered record.
    pub next_id: MsgId,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("store is failed and accepts no persistent writes: {0}")]
    Failed(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A journal segment is damaged where no crash can have torn it: it is not the last segment, or records
    /// written after a later sync follow the damage. Start-up is refused rather than drop confirmed messages.
    #[error(
        "journal segment {segment} is damaged at offset {offset} ({detail}); this is not a torn write from a \
         crash, so the journal refuses to start. To start anyway, dropping the rest of that segment (its bytes \
         are kept in {segment}.damaged-{offset}), create an empty file named SALVAGE in the store directory"
    )]
    Damaged {
        segment: String,
        offset: u64,
        detail: String,
    },
    #[error("unsupported store format version {found} (this build reads up to {supported})")]
    FutureVersion { found: u32, supported: u32 },
    #[error("disk free space below the low-water mark")]
    DiskLow,
    #[error("message {0} is not in the store")]
    NotFound(MsgId),
}

/// The persistence seam. Implementations must be cheap to call from many tasks at once: appends only enqueue
/// work for the writer and never wait for the disk (waiting is done on [`Store::sync_state`]).
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Journal a persistent message once, referenced by every durable queue in `queues`.
    fn publish(
        &self,
        id: MsgId,
        queues: &[QueueKey],
        message: &StoredMessage,
    ) -> Result<SyncPoint, StoreError>;
    /// Settle (ack, drop, expire, dead-letter) a message in one queue. Synced lazily: after a crash the
    /// message may come back as redelivered, never be lost.
    fn settle(&self, queue: &QueueKey, id: MsgId) -> Result<(), StoreError>;
    /// Settle a message whose publisher is told it was refused (a nack): synced like a publish, so the
    /// returned point must be durable before the refusal is reported, and a crash cannot bring back a message
    /// its publisher was told was not taken. Stores that keep no messages need no sync.
    fn settle_synced(&self, queue: &QueueKey, id: MsgId) -> Result<SyncPoint, StoreError> {
        self.settle(queue, id).map(|_| SyncPoint::default())
    }
    /// Journal a definition change.
    fn define(&self, definition: &Definition) -> Result<SyncPoint, StoreError>;
    /// Watch what has been synced so far (and whether the store failed).
    fn sync_state(&self) -> watch::Receiver<SyncState>;
    /// Read back everything durable, once, before any append.
    fn recover(&self) -> Result<Recovered, StoreError>;
    /// Read back a live persistent message by id (queues page bodies out of memory and read them back before
    /// delivery). Always reads the message's current copy, wherever compaction has moved it. A publish that is
    /// still queued for the writer is waited for (at most one group commit), so this may be called for any id
    /// whose [`Store::publish`] returned `Ok`. Blocks the calling thread on file I/O. Stores that keep no bodies
    /// (the default) answer [`StoreError::NotFound`] and say so with [`Store::pages`].
    fn read(&self, id: MsgId) -> Result<StoredMessage, StoreError> {
        Err(StoreError::NotFound(id))
    }
    /// Whether [`Store::read`] can return bodies, i.e. whether queues may page them out of memory.
    fn pages(&self) -> bool {
        false
    }
    /// Whether the store accepts persistent writes right now (health/ready).
    fn healthy(&self) -> Result<(), String>;
    /// Whether publishers should be blocked (disk below the low-water mark).
    fn blocked(&self) -> watch::Receiver<bool>;
    /// Sync and stop the writer; called once at shutdown.
    fn close(&self);
}

#[cfg(test)]
mod by_id_tests {
    use super::ById;

    #[test]
    fn values_are_found_by_id_whatever_the_order_they_came_in() {
        let mut m = ById::default();
        for id in [10, 20, 30] {
            m.insert(id, id * 100);
        }
        m.insert(15, 1_500);
        m.insert(5, 500);
        m.insert(20, 2_001);
        assert_eq!(m.get(5), Some(500));
        assert_eq!(m.get(15), Some(1_500));
        assert_eq!(m.get(20), Some(2_001), "a second value replaces the first");
        assert_eq!(m.get(30), Some(3_000));
        assert_eq!(m.get(25), None);
        assert_eq!(m.0.len(), 5);
        assert!(m.0.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
