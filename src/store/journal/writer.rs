//! The journal writer: one dedicated OS thread that owns the head segment, does group commit, rolls segments,
//! and keeps the space in check (compaction, deletion, the disk-free watch).
//!
//! Group commit. Appenders (any task, any thread) encode their record on their own thread, then take the inbox
//! lock only to push it and get the next [`SyncPoint`]; they never wait for the disk. The writer takes
//! everything queued, writes it in one go, runs one `fdatasync`, and publishes the last point it took on the
//! watch channel. While that sync runs, new appends pile up in the inbox and become the next batch, so the
//! number of syncs adapts to the disk: one per batch, not one per message. With [`SyncMode::BatchWindow`] the
//! writer also waits up to the window after the first record that needs a sync, to gather more. Settle records
//! never ask for a sync; they are written with the next batch that does (or after a second, or when a lot of
//! them pile up), because a lost settle means a redelivery, never a loss.
//!
//! Failure. Any write or sync error fails the journal for good: the inbox refuses further appends with
//! [`StoreError::Failed`], the watch channel reports `failed` with `synced` left where the last successful sync
//! put it, and the thread stops. Nothing is retried: after a failed `fdatasync` the kernel may have dropped the
//! dirty pages, so a second attempt that "succeeds" proves nothing.
//!
//! Segments. A new segment is created when the head would exceed the configured size: the old head is synced
//! first (so every segment but the last is complete on disk), and the new one starts with its header and a
//! checkpoint record (all definitions in force, the next message id, the segments that exist), synced with
//! its directory entry before anything is written after it. That is what lets old segments be deleted as
//! soon as their messages are settled: they never hold the only copy of a definition.
//!
//! Space. Every ~100 ms between batches the writer deletes segments the [`Index`] reports deletable (a
//! deletion record is synced first, then the file is removed and the directory synced) and compacts at most one
//! mostly dead segment by re-appending its live publish records to the head. Every second it compares the free
//! space with the low-water mark and flips the `blocked` watch.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::SyncMode;
use super::fs::{SegmentFile, StoreFs};
use super::index::Index;
use super::record::{self, Checkpoint};
use super::segment::{self, SegmentReader, Step};
use crate::store::{Definition, MsgId, QueueKey, StoreError, SyncPoint, SyncState};

/// How long settle records may wait for a batch that syncs before the writer writes them anyway.
const IDLE_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Queued bytes after which settles alone wake the writer.
const WAKE_BYTES: usize = 1024 * 1024;
/// Write buffer size: bytes gathered before one `write` call.
const FLUSH_BYTES: usize = 4 * 1024 * 1024;

/// One record waiting for the writer, with what the index needs to know about it.
#[derive(Debug)]
pub(crate) enum Op {
    Publish {
        id: MsgId,
        queues: Vec<QueueKey>,
        record: Bytes,
    },
    Settle {
        queue: QueueKey,
        id: MsgId,
        record: Bytes,
    },
    Define {
        definition: Definition,
        record: Bytes,
    },
}

impl Op {
    fn record(&self) -> &Bytes {
        match self {
            Op::Publish { record, .. } | Op::Settle { record, .. } | Op::Define { record, .. } => {
                record
            }
        }
    }

    fn needs_sync(&self) -> bool {
        !matches!(self, Op::Settle { .. })
    }
}

/// Whether the journal takes appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Open,
    Closing,
    Closed,
    Failed(String),
}

/// Records queued for the writer.
#[derive(Debug)]
pub(crate) struct Inbox {
    ops: Vec<Op>,
    /// The point handed to the last append.
    last_point: u64,
    /// When the oldest queued record that needs a sync arrived.
    first_sync_at: Option<Instant>,
    bytes: usize,
    pub(crate) life: Lifecycle,
}

/// State shared by the appenders, the writer thread and the store handle.
#[derive(Debug)]
pub(crate) struct Shared {
    inbox: Mutex<Inbox>,
    wake: Condvar,
    /// Notified (under the inbox lock) whenever the synced point advances or the journal fails: what
    /// [`Shared::wait_written`] sleeps on.
    synced_wake: Condvar,
    /// The journal's index, shared with readers ([`super::JournalStore`]'s `read`), who only look locations up.
    /// The writer updates it record by record; a location it holds is always in the file (see `compact`), except
    /// for records of the batch being written, which readers wait out with [`Shared::wait_written`].
    pub(crate) index: Mutex<Index>,
    pub(crate) sync_tx: watch::Sender<SyncState>,
    pub(crate) blocked_tx: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(blocked: bool, index: Index) -> Self {
        Self {
            index: Mutex::new(index),
            synced_wake: Condvar::new(),
            inbox: Mutex::new(Inbox {
                ops: Vec::new(),
                last_point: 0,
                first_sync_at: None,
                bytes: 0,
                life: Lifecycle::Open,
            }),
            wake: Condvar::new(),
            sync_tx: watch::Sender::new(SyncState::default()),
            blocked_tx: watch::Sender::new(blocked),
        }
    }

    /// The inbox, even if a thread panicked while holding it (its state is still consistent: every critical
    /// section is a few field updates).
    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index, even if a thread panicked while holding it (every critical section is one index call).
    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until every record appended so far is written and synced (so its location in the index is in the
    /// file), the journal fails, or `timeout` passes. Returns whether the records are written.
    pub(crate) fn wait_written(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inbox = self.inbox();
        let target = SyncPoint(inbox.last_point);
        loop {
            let state = self.sync_tx.borrow().clone();
            if state.synced >= target {
                return true;
            }
            let now = Instant::now();
            if state.failed.is_some() || now >= deadline {
                return false;
            }
            inbox = match self.synced_wake.wait_timeout(inbox, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Publishes a new synced point and wakes readers waiting for it.
    fn advance(&self, point: u64) {
        self.sync_tx
            .send_modify(|s| s.synced = s.synced.max(SyncPoint(point)));
        let _inbox = self.inbox();
        self.synced_wake.notify_all();
    }

    /// Queues a record for the writer and returns the point that must be synced for it to be durable.
    pub(crate) fn submit(&self, op: Op) -> Result<SyncPoint, StoreError> {
        let mut inbox = self.inbox();
        match &inbox.life {
            Lifecycle::Open => {}
            Lifecycle::Failed(reason) => return Err(StoreError::Failed(reason.clone())),
            Lifecycle::Closing | Lifecycle::Closed => {
                return Err(StoreError::Failed("the journal is closed".into()));
            }
        }
        inbox.last_point += 1;
        let point = SyncPoint(inbox.last_point);
        inbox.bytes += op.record().len();
        let wake = if op.needs_sync() {
            let first = inbox.first_sync_at.is_none();
            if first {
                inbox.first_sync_at = Some(Instant::now());
            }
            first
        } else {
            inbox.bytes >= WAKE_BYTES
        };
        inbox.ops.push(op);
        drop(inbox);
        if wake {
            self.wake.notify_one();
        }
        Ok(point)
    }

    /// Asks the writer to write what is queued, sync, and stop.
    pub(crate) fn request_close(&self) {
        let mut inbox = self.inbox();
        if inbox.life == Lifecycle::Open {
            inbox.life = Lifecycle::Closing;
        }
        drop(inbox);
        self.wake.notify_one();
    }

    /// Marks the journal failed for good: appends are refused and the watch channel reports the failure.
    fn fail(&self, reason: String) {
        error!(reason = %reason, "journal failed");
        {
            let mut inbox = self.inbox();
            inbox.life = Lifecycle::Failed(reason.clone());
            inbox.ops.clear();
            inbox.first_sync_at = None;
            inbox.bytes = 0;
        }
        self.sync_tx
            .send_modify(|s| s.failed = Some(Arc::new(StoreError::Failed(reason))));
        let _inbox = self.inbox();
        self.synced_wake.notify_all();
    }

    /// Why the journal takes no appends, if it does not.
    pub(crate) fn unhealthy(&self) -> Option<String> {
        match &self.inbox().life {
            Lifecycle::Open => None,
            Lifecycle::Failed(reason) => Some(reason.clone()),
            Lifecycle::Closing | Lifecycle::Closed => Some("the journal is closed".into()),
        }
    }
}

/// What the writer thread needs besides the shared state.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub(crate) dir: PathBuf,
    pub(crate) segment_size: u64,
    pub(crate) sync: SyncMode,
    pub(crate) disk_low_water: u64,
    pub(crate) tuning: Tuning,
}

/// Timings of the writer's housekeeping; only tests change them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// How often the writer looks at deletable and compactable segments.
    pub(crate) maintenance_every: Duration,
    /// How often the writer checks the free disk space.
    pub(crate) disk_check_every: Duration,
    /// How long a segment must have been sealed before it may be compacted.
    pub(crate) compact_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            maintenance_every: Duration::from_millis(100),
            disk_check_every: Duration::from_secs(1),
            compact_after: Duration::from_secs(10),
        }
    }
}

/// The head segment: the only one written to.
#[derive(Debug)]
struct Head {
    number: u64,
    file: Box<dyn SegmentFile>,
    /// Bytes in the file plus bytes buffered for it.
    size: u64,
    /// Size right after its header and checkpoint; a head this small is never rolled.
    base: u64,
}

/// A batch taken from the inbox.
#[derive(Debug)]
struct Batch {
    ops: Vec<Op>,
    point: u64,
    closing: bool,
}

/// The writer thread's state; see the module docs.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
    fs: Arc<dyn StoreFs>,
    config: WriterConfig,
    head: Head,
    buf: Vec<u8>,
    last_maintenance: Instant,
    last_disk_check: Instant,
    last_write: Instant,
    /// Segments whose deletion records are written but whose files are not removed yet: a checkpoint written
    /// meanwhile must not list them, or their (expected) absence would look like a lost file.
    doomed: Vec<u64>,
    /// When each sealed segment was sealed (recovered ones: when the journal was opened).
    sealed_at: HashMap<u64, Instant>,
}

impl Writer {
    /// Creates segment `first` as the head (after recovery, so the index is complete) and checks the disk.
    pub(crate) fn new(
        shared: Arc<Shared>,
        fs: Arc<dyn StoreFs>,
        config: WriterConfig,
        first: u64,
    ) -> Result<Self, StoreError> {
        let head = create_segment(fs.as_ref(), &config, &mut shared.index(), first, &[])?;
        let now = Instant::now();
        let sealed_at = shared
            .index()
            .segment_numbers()
            .into_iter()
            .filter(|n| *n != first)
            .map(|n| (n, now))
            .collect();
        let mut writer = Self {
            shared,
            fs,
            config,
            head,
            buf: Vec::new(),
            last_maintenance: now,
            last_disk_check: now,
            last_write: now,
            doomed: Vec::new(),
            sealed_at,
        };
        writer.check_disk();
        Ok(writer)
    }

    /// The thread body: batches until closed or failed.
    pub(crate) fn run(mut self) {
        let _guard = FailOnPanic(self.shared.clone());
        loop {
            let batch = self.next_batch();
            if !batch.ops.is_empty()
                && let Err(e) = self.write_batch(batch.ops, batch.point)
            {
                self.fail(&e);
                return;
            }
            if self.last_maintenance.elapsed() >= self.config.tuning.maintenance_every
                && let Err(e) = self.maintain()
            {
                self.fail(&e);
                return;
            }
            if batch.closing {
                self.shared.inbox().life = Lifecycle::Closed;
                debug!(segment = self.head.number, "journal writer stopped");
                return;
            }
        }
    }

    /// Waits for work: a record that needs a sync (immediately, or when the batch window closes), a pile of
    /// settles, a close request, or maintenance time.
    fn next_batch(&self) -> Batch {
        let mut inbox = self.shared.inbox();
        loop {
            let now = Instant::now();
            if matches!(
                inbox.life,
                Lifecycle::Closing | Lifecycle::Closed | Lifecycle::Failed(_)
            ) {
                return take(&mut inbox, true);
            }
            let wait = match (inbox.first_sync_at, self.config.sync) {
                (Some(_), SyncMode::Always) => return take(&mut inbox, false),
                (Some(first), SyncMode::BatchWindow(window)) => {
                    let deadline = first + window;
                    if now >= deadline {
                        return take(&mut inbox, false);
                    }
                    deadline - now
                }
                (None, _) if inbox.bytes >= WAKE_BYTES => return take(&mut inbox, false),
                (None, _) => {
                    let due = self.last_maintenance + self.config.tuning.maintenance_every;
                    if now >= due {
                        // Write idle settles once in a while so they do not sit in memory.
                        let flush_settles =
                            !inbox.ops.is_empty() && self.last_write.elapsed() >= IDLE_FLUSH_EVERY;
                        return if flush_settles {
                            take(&mut inbox, false)
                        } else {
                            Batch {
                                ops: Vec::new(),
                                point: inbox.last_point,
                                closing: false,
                            }
                        };
                    }
                    due - now
                }
            };
            inbox = match self.shared.wake.wait_timeout(inbox, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Writes a batch, syncs once, and publishes the new synced point.
    fn write_batch(&mut self, ops: Vec<Op>, point: u64) -> io::Result<()> {
        for op in ops {
            let len = op.record().len() as u64;
            let (segment, offset) = self.append(op.record())?;
            let mut index = self.shared.index();
            match op {
                Op::Publish { id, queues, .. } => {
                    index.publish(segment, offset, len, id, &queues);
                }
                Op::Settle { queue, id, .. } => {
                    index.settle(segment, &queue, id);
                }
                Op::Define { definition, .. } => {
                    index.define(segment, &definition);
                }
            }
        }
        self.sync()?;
        self.last_write = Instant::now();
        self.shared.advance(point);
        Ok(())
    }

    /// Appends one framed record to the head (rolling first if it would overflow); returns the segment it went
    /// to and its offset there. The bytes may still be in the write buffer.
    fn append(&mut self, record: &[u8]) -> io::Result<(u64, u64)> {
        let len = record.len() as u64;
        if self.head.size + len > self.config.segment_size && self.head.size > self.head.base {
            self.roll()?;
        }
        let offset = self.head.size;
        self.buf.extend_from_slice(record);
        self.head.size += len;
        self.shared.index().grow(self.head.number, len);
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok((self.head.number, offset))
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.head.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.head.file.sync_data()
    }

    /// Seals the head (synced, so only the last segment can ever be torn) and starts the next segment.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let next = self.head.number + 1;
        if next > segment::MAX_NUMBER {
            return Err(io::Error::other(
                "journal segment numbers exhausted (the data dir has used 2^32 segments)",
            ));
        }
        let head = create_segment(
            self.fs.as_ref(),
            &self.config,
            &mut self.shared.index(),
            next,
            &self.doomed,
        )
        .map_err(into_io)?;
        debug!(
            sealed = self.head.number,
            head = next,
            "journal segment rolled"
        );
        self.sealed_at.insert(self.head.number, Instant::now());
        self.head = head;
        Ok(())
    }

    /// Deletion, compaction and the disk check; see the module docs.
    fn maintain(&mut self) -> io::Result<()> {
        self.last_maintenance = Instant::now();
        if self.last_disk_check.elapsed() >= self.config.tuning.disk_check_every {
            self.last_disk_check = Instant::now();
            self.check_disk();
        }
        let min_age = self.config.tuning.compact_after;
        let sealed_at = &self.sealed_at;
        let old_enough = |n: u64| sealed_at.get(&n).is_some_and(|t| t.elapsed() >= min_age);
        let victim = self
            .shared
            .index()
            .compaction_candidate(self.head.number, old_enough);
        if let Some(victim) = victim {
            self.compact(victim)?;
        }
        self.delete_dead()
    }

    /// Deletes every deletable segment: deletion records first (synced), then the files, then the directory.
    fn delete_dead(&mut self) -> io::Result<()> {
        loop {
            let dead = self.shared.index().deletable(self.head.number);
            if dead.is_empty() {
                return Ok(());
            }
            self.doomed.clone_from(&dead);
            for n in &dead {
                let rec = record::encode_segment_deleted(*n).map_err(|e| io::Error::other(e.0))?;
                self.append(&rec)?;
            }
            self.sync()?;
            self.doomed.clear();
            for n in dead {
                let path = segment::path(&self.config.dir, n);
                if let Err(e) = self.fs.remove(&path) {
                    warn!(segment = %path.display(), error = %e, "could not delete a dead journal segment");
                    return Ok(());
                }
                self.shared.index().remove_segment(n);
                self.sealed_at.remove(&n);
                debug!(segment = n, "deleted dead journal segment");
            }
            self.fs.sync_dir(&self.config.dir)?;
        }
    }

    /// Re-appends the live publish records of `victim` to the head (with their queue lists narrowed to the
    /// queues still holding them) and syncs, leaving `victim` with no live messages. The index learns the new
    /// locations only after the sync, so a reader never looks up a copy that is still in the write buffer.
    fn compact(&mut self, victim: u64) -> io::Result<()> {
        let started = Instant::now();
        let path = segment::path(&self.config.dir, victim);
        let file = self.fs.open(&path)?;
        let mut reader = SegmentReader::new(file.as_ref())?;
        let (mut copied, mut bytes) = (0u64, 0u64);
        let mut moved = Vec::new();
        loop {
            let (kind, id, part) = match reader.next_step()? {
                Step::End => break,
                Step::Bad { offset, reason } => {
                    error!(segment = %path.display(), offset, reason = %reason, "sealed journal segment is damaged; compaction skipped");
                    break;
                }
                Step::Record { payload, .. } => match record::decode_publish_head(payload) {
                    Ok(Some(head)) if self.shared.index().location(head.id) == Some(victim) => {
                        (head.kind, head.id, head.part.to_vec())
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        error!(segment = %path.display(), error = %e, "undecodable record; compaction skipped");
                        break;
                    }
                },
            };
            let queues = self.shared.index().live_queues(id).unwrap_or_default();
            let head = record::PublishHead {
                kind,
                id,
                queues: Vec::new(),
                part: &part,
            };
            let rec =
                record::reencode_publish(&head, &queues).map_err(|e| io::Error::other(e.0))?;
            let len = rec.len() as u64;
            let (segment, offset) = self.append(&rec)?;
            moved.push((segment, offset, len, id, queues));
            copied += 1;
            bytes += len;
        }
        self.sync()?;
        let mut index = self.shared.index();
        for (segment, offset, len, id, queues) in moved {
            index.publish(segment, offset, len, id, &queues);
        }
        drop(index);
        info!(
            segment = victim,
            messages = copied,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted journal segment"
        );
        Ok(())
    }

    /// Flips the `blocked` watch when free space crosses the low-water mark.
    fn check_disk(&mut self) {
        if self.config.disk_low_water == 0 {
            return;
        }
        match self.fs.available_space(&self.config.dir) {
            Ok(free) => {
                let low = free < self.config.disk_low_water;
                let changed = self
                    .shared
                    .blocked_tx
                    .send_if_modified(|b| std::mem::replace(b, low) != low);
                if changed && low {
                    warn!(
                        free,
                        low_water = self.config.disk_low_water,
                        "disk free space below the low-water mark; blocking publishers"
                    );
                } else if changed {
                    info!(
                        free,
                        low_water = self.config.disk_low_water,
                        "disk free space back above the low-water mark"
                    );
                }
            }
            Err(e) => warn!(error = %e, "could not read free disk space"),
        }
    }

    /// Fails the journal for good; see the module docs.
    fn fail(&mut self, e: &io::Error) {
        let reason = format!(
            "journal write or sync failed in segment {}: {e}; no further persistent writes are accepted",
            segment::file_name(self.head.number)
        );
        self.shared.fail(reason);
    }
}

/// Fails the journal if the writer thread panics, so appends are refused instead of waiting forever.
struct FailOnPanic(Arc<Shared>);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(
                "the journal writer thread panicked; no further persistent writes are accepted"
                    .into(),
            );
        }
    }
}

/// Takes everything queued.
fn take(inbox: &mut Inbox, closing: bool) -> Batch {
    inbox.first_sync_at = None;
    inbox.bytes = 0;
    Batch {
        ops: std::mem::take(&mut inbox.ops),
        point: inbox.last_point,
        closing,
    }
}

fn into_io(e: StoreError) -> io::Error {
    match e {
        StoreError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Creates segment `number` with its header and checkpoint, synced together with its directory entry.
fn create_segment(
    fs: &dyn StoreFs,
    config: &WriterConfig,
    index: &mut Index,
    number: u64,
    doomed: &[u64],
) -> Result<Head, StoreError> {
    let checkpoint = Checkpoint {
        next_id: index.next_id(),
        segments: index
            .segment_numbers()
            .into_iter()
            .filter(|n| !doomed.contains(n))
            .collect(),
        definitions: index.definitions(),
    };
    let cp = record::encode_checkpoint(&checkpoint).map_err(|e| StoreError::Failed(e.0))?;
    let mut bytes = Vec::with_capacity(segment::HEADER_LEN as usize + cp.len());
    bytes.extend_from_slice(&segment::header(number));
    bytes.extend_from_slice(&cp);
    let mut file = fs.create(&segment::path(&config.dir, number))?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    fs.sync_dir(&config.dir)?;
    let size = bytes.len() as u64;
    index.add_segment(number, size);
    Ok(Head {
        number,
        file,
        size,
        base: size,
    })
}
