//! The durable store: an append-only journal of segment files with group commit (the durability contract, shared design §5).
//!
//! [`open`] recovers whatever the data directory holds (verifying every record it reads, cutting a torn tail,
//! refusing damage a crash cannot explain, reading sealed segments' summaries instead of their bodies), starts a
//! fresh head segment, and starts the writer thread; the [`JournalStore`] it returns implements [`Store`]. Appends encode their record on the caller's thread and queue it; the writer batches everything
//! queued into one write and one `fdatasync` and then advances the synced point on the watch channel, which is
//! what releases confirms. Any write or sync error fails the journal for good (no blind retry, no confirm for
//! data that is not on disk); [`Store::healthy`] then says why.
//!
//! Memory. What grows with a backlog is 16 bytes per live message in the index (plus about 8 in the queue's
//! paged tail, see `core::queue`); bodies stay on disk. Measured with `scripts/bench-backlog.sh`: 10 million
//! queued 1 KiB messages, broker RSS 271 MB. A restart reads segment summaries, not bodies: about 110 ns of CPU
//! per live message (10 million: 1.1 s, the `bench_recovery_of_a_backlog` test), broker RSS 434 MB after
//! recovering 10 million (64-byte bodies, to fit the test machine's disk).
//!
//! Layout of this module, one concern per file:
//! - `disk`: free disk space (headroom, blocking publishers, the emergency reserve);
//! - `fs`: the file layer as traits (real, and a fault-injecting wrapper for tests);
//! - `simfs` (tests only): an in-memory file system that tells the page cache from the disk, for kill and
//!   power-cut tests;
//! - `record`: the bytes of one record (framing, CRC32C, payload encodings);
//! - `segment`: segment names, the versioned header, a reader over framed records;
//! - `summary`: the per-segment summaries sealed segments end with, so a restart need not read bodies;
//! - `index`: the in-memory view of the journal (live messages per segment, tombstone dependencies,
//!   folded definitions) shared by recovery and the writer;
//! - (`store::idmap`, beside it: the compact id-keyed map the index and recovery keep per live message);
//! - `recovery`: start-up scan, truncation, replay;
//! - `reader`: reading one message back by location ([`Store::read`], for queues that page bodies out);
//! - `writer`: the writer thread (group commit, roll, compaction, deletion, disk-free watch).

mod disk;
mod format1;
mod fs;
mod index;
mod metas;
mod reader;
mod record;
mod recovery;
mod segment;
#[cfg(test)]
mod simfs;
mod summary;
mod writer;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

pub use fs::{DirLock, RealFs, SegmentFile, StoreFs};

use self::reader::RecordReader;
use self::writer::{Op, Shared, Tuning, WriterConfig};
use super::{
    Definition, MsgId, QueueKey, Recovered, Store, StoreError, StoredMessage, SyncPoint, SyncState,
};

/// When the writer syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// As soon as there is a record that needs it, batching whatever queued up while the previous sync ran.
    /// This is the durability contract's default.
    Always,
    /// Wait up to this long after the first record that needs a sync, to gather a larger batch.
    BatchWindow(Duration),
}

/// How to open a journal. The composition root builds it from the `store` section of the config.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// The data directory (created if missing; locked while the journal is open).
    pub dir: PathBuf,
    /// A segment is rolled when the next record would take it past this size (a record larger than a whole
    /// segment gets a segment of its own).
    pub segment_size: u64,
    /// When to sync.
    pub sync: SyncMode,
    /// Publishers are blocked (`Store::blocked`, and `Store::healthy` says so) as soon as appends would take free
    /// disk space below this many bytes, so the journal never runs the disk full itself; it also keeps an
    /// emergency reserve file for starting on a full disk (see `disk`). 0 disables both.
    pub disk_low_water: u64,
}

/// Default free-disk low-water mark: 50 MB, RabbitMQ's default `disk_free_limit` (what users migrating from it
/// expect). The config file's default is this same value.
pub const DEFAULT_DISK_LOW_WATER: u64 = 50_000_000;

/// The smallest segment size accepted; smaller values are raised to it.
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// The largest segment size accepted; larger values are lowered to it. The index keeps record offsets in 32
/// bits (see `index::Live`), which this keeps true.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 31;

/// How long [`Store::read`] waits for the writer when a record is not in its file yet (still queued, or in the
/// batch being written): far longer than any group commit takes.
const READ_WAIT: Duration = Duration::from_secs(10);

impl JournalOptions {
    /// Defaults: 64 MiB segments, [`SyncMode::Always`], 50 MB low-water mark (as RabbitMQ's default
    /// `disk_free_limit`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_size: 64 * 1024 * 1024,
            sync: SyncMode::Always,
            disk_low_water: DEFAULT_DISK_LOW_WATER,
        }
    }
}

/// Opens (recovering) the journal in `opts.dir` on the real file system.
pub fn open(opts: JournalOptions) -> Result<Arc<JournalStore>, StoreError> {
    open_with_fs(opts, Arc::new(RealFs))
}

/// Opens the journal on the given file layer (tests use this to inject faults).
pub fn open_with_fs(
    opts: JournalOptions,
    fs: Arc<dyn StoreFs>,
) -> Result<Arc<JournalStore>, StoreError> {
    open_tuned(opts, fs, Tuning::default())
}

fn open_tuned(
    opts: JournalOptions,
    fs: Arc<dyn StoreFs>,
    tuning: Tuning,
) -> Result<Arc<JournalStore>, StoreError> {
    fs::create_dir_durably(fs.as_ref(), &opts.dir)?;
    let lock = fs.lock_dir(&opts.dir)?;
    let outcome = recovery::recover(fs.clone(), &opts.dir)?;
    let first = outcome.last_segment.map_or(1, |n| n + 1);
    let shared = Arc::new(Shared::new(outcome.index, opts.disk_low_water > 0));
    let reader = RecordReader::new(fs.clone(), &opts.dir);
    let config = WriterConfig {
        dir: opts.dir.clone(),
        segment_size: opts.segment_size.clamp(MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE),
        sync: opts.sync,
        disk_low_water: opts.disk_low_water,
        tuning,
    };
    let handle = writer::spawn(shared.clone(), fs, config, first)?;
    info!(dir = %opts.dir.display(), head = first, "journal open");
    Ok(Arc::new(JournalStore {
        shared,
        reader,
        writer: Mutex::new(Some(handle)),
        recovered: Mutex::new(Some(outcome.recovered)),
        dir: opts.dir,
        lock: Mutex::new(Some(lock)),
    }))
}

/// The journal-backed [`Store`]; see the module docs.
pub struct JournalStore {
    shared: Arc<Shared>,
    reader: RecordReader,
    writer: Mutex<Option<JoinHandle<()>>>,
    recovered: Mutex<Option<Recovered>>,
    dir: PathBuf,
    /// Held until [`Store::close`] returns, so a closed journal can be reopened in the same process.
    lock: Mutex<Option<DirLock>>,
}

impl fmt::Debug for JournalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl JournalStore {
    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// One attempt at [`Store::read`]: look the current copy up and read it.
    fn read_once(&self, id: MsgId) -> Result<StoredMessage, StoreError> {
        let loc = self
            .shared
            .index()
            .locate(id)
            .ok_or(StoreError::NotFound(id))?;
        self.reader.read(id, loc, &self.shared.index)
    }

    fn submit_settle(
        &self,
        queue: &QueueKey,
        id: MsgId,
        synced: bool,
    ) -> Result<SyncPoint, StoreError> {
        let record = Self::encoded(record::encode_settle(queue, id))?;
        self.shared.submit(Op::Settle {
            queue: queue.clone(),
            id,
            record,
            synced,
        })
    }

    fn encoded<T>(r: Result<T, record::DecodeError>) -> Result<T, StoreError> {
        r.map_err(|e| StoreError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e.0)))
    }
}

impl Store for JournalStore {
    fn publish(
        &self,
        id: MsgId,
        queues: &[QueueKey],
        message: &StoredMessage,
    ) -> Result<SyncPoint, StoreError> {
        let record = Self::encoded(record::encode_publish(id, queues, message))?;
        self.shared.submit(Op::Publish {
            id,
            queues: queues.to_vec(),
            meta: record::PublishMeta::of(message),
            record,
        })
    }

    fn settle(&self, queue: &QueueKey, id: MsgId) -> Result<(), StoreError> {
        self.submit_settle(queue, id, false).map(|_| ())
    }

    fn settle_synced(&self, queue: &QueueKey, id: MsgId) -> Result<SyncPoint, StoreError> {
        self.submit_settle(queue, id, true)
    }

    fn define(&self, definition: &Definition) -> Result<SyncPoint, StoreError> {
        let record = Self::encoded(record::encode_define(definition))?;
        self.shared.submit(Op::Define {
            definition: definition.clone(),
            record,
        })
    }

    fn sync_state(&self) -> watch::Receiver<SyncState> {
        self.shared.sync_tx.subscribe()
    }

    fn recover(&self) -> Result<Recovered, StoreError> {
        self.recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                StoreError::Failed("the journal was already recovered; recover() runs once".into())
            })
    }

    /// Looks the message's current copy up in the index and reads it. If that fails, the location may have been
    /// stale: the record may still be queued for the writer or in the batch it is writing (queues page a
    /// message as soon as its publish is journaled, without waiting for the sync), or compaction may have moved
    /// it and deleted the old segment between the look-up and the read. So on failure it waits until everything
    /// appended so far is written and synced (at most one group commit; compaction updates the index only after
    /// its copies are synced), then looks up and reads again; a second failure is real.
    fn read(&self, id: MsgId) -> Result<StoredMessage, StoreError> {
        match self.read_once(id) {
            Ok(m) => Ok(m),
            Err(first) => {
                if !self.shared.wait_written(READ_WAIT) {
                    return Err(first);
                }
                self.read_once(id)
            }
        }
    }

    fn pages(&self) -> bool {
        true
    }

    fn healthy(&self) -> Result<(), String> {
        self.shared.unhealthy().map_or(Ok(()), Err)
    }

    fn blocked(&self) -> watch::Receiver<bool> {
        self.shared.blocked_tx.subscribe()
    }

    fn close(&self) {
        self.shared.request_close();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            error!("journal writer thread panicked");
        }
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for JournalStore {
    fn drop(&mut self) {
        self.close();
    }
}
