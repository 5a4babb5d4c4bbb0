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
//! dirty pages, so a second attempt that "succeeds" proves nothing. Before it reports the failure, the writer
//! leaves a marker file (`recovery::SYNC_FAILED_FILE`) so that the next start rewrites the head instead of
//! trusting its cached pages.
//!
//! Frames. The writer seals every record's frame as it copies it into the write buffer: the offset at which the
//! current write batch began (the head's synced length) and the checksum seeded with the head's number and salt
//! (see `record`). That is what lets recovery tell a torn last batch from damage to synced data.
//!
//! Segments. A new segment is created when the head would exceed the configured size: the old head is sealed
//! with its summary (see `summary`) and synced first (so every segment but the last is complete on disk), and
//! the new one starts with its header (a fresh random salt) and a checkpoint record (all definitions in force,
//! the next message id, the segments that exist), synced with its directory entry before anything is written
//! after it. That is what lets old segments be deleted as soon as their messages are settled: they never hold
//! the only copy of a definition. The index is locked only to take the checkpoint, never across the syncs. A
//! clean close seals the head too, so a restart after it reads summaries only.
//!
//! Space. Every ~100 ms between batches the writer deletes every segment the [`Index`] reports deletable, the
//! whole transitive set at once (deletion records synced first, then the files removed in dependency order,
//! then one directory sync), and goes on with a compaction (re-appending the live publish records of one old,
//! mostly dead segment to the head) for at most `Tuning::compact_per_pass` bytes, so neither holds up the
//! confirms queued behind it for long. Free disk space is watched by bytes written (see `disk`): an append that
//! uses up the headroom above the low-water mark blocks publishers at once. If the journal is opened on a disk
//! with no room for its head segment, it starts read-only (publishers blocked, appends queued, `healthy()`
//! says why) and creates the head as soon as there is room.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::SyncMode;
use super::disk::{DiskBudget, DiskWatch, set_blocked};
use super::fs::{SegmentFile, StoreFs};
use super::index::Index;
use super::record::{self, Checkpoint, FRAME_HEADER, Framing, PublishMeta};
use super::recovery::SYNC_FAILED_FILE;
use super::segment::{self, HeaderState, SegmentReader, Step};
use super::summary::SummaryBuilder;
use crate::store::{Definition, MsgId, QueueKey, StoreError, SyncPoint, SyncState};

/// How long settle records may wait for a batch that syncs before the writer writes them anyway.
const IDLE_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Queued bytes after which settles alone wake the writer.
const WAKE_BYTES: usize = 1024 * 1024;
/// Write buffer size: bytes gathered before one `write` call.
const FLUSH_BYTES: usize = 4 * 1024 * 1024;
/// While read-only, settles are dropped once this many bytes are queued.
const READ_ONLY_SETTLES: usize = 16 * 1024 * 1024;
/// How often a read-only journal tries again to create its head segment.
const READ_ONLY_RETRY: Duration = Duration::from_secs(1);

/// One record waiting for the writer, with what the index needs to know about it.
#[derive(Debug)]
pub(crate) enum Op {
    Publish {
        id: MsgId,
        queues: Vec<QueueKey>,
        meta: PublishMeta,
        record: Bytes,
    },
    Settle {
        queue: QueueKey,
        id: MsgId,
        record: Bytes,
        /// Synced before the point returned for it is reported durable (a refused publish); other settles are
        /// synced lazily.
        synced: bool,
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
        !matches!(self, Op::Settle { synced: false, .. })
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
    /// Bytes that may still be appended before free space falls below the low-water mark.
    pub(crate) disk: DiskBudget,
    /// Set while the journal has no head segment because the disk is full (see [`spawn`]).
    read_only: AtomicBool,
    /// Settles dropped while read-only (their messages come back after a restart, as after a crash).
    dropped_settles: AtomicU64,
}

impl Shared {
    pub(crate) fn new(index: Index, disk_check: bool) -> Self {
        Self {
            disk: DiskBudget::new(disk_check),
            read_only: AtomicBool::new(false),
            dropped_settles: AtomicU64::new(0),
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
            blocked_tx: watch::Sender::new(false),
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

    /// Queues a record for the writer and returns the point that must be synced for it to be durable. An append
    /// that uses up the disk headroom blocks publishers at once (see `disk`). While the journal is read-only,
    /// settles beyond [`READ_ONLY_SETTLES`] queued bytes are dropped rather than held in memory.
    pub(crate) fn submit(&self, op: Op) -> Result<SyncPoint, StoreError> {
        let len = op.record().len();
        let mut inbox = self.inbox();
        match &inbox.life {
            Lifecycle::Open => {}
            Lifecycle::Failed(reason) => return Err(StoreError::Failed(reason.clone())),
            Lifecycle::Closing | Lifecycle::Closed => {
                return Err(StoreError::Failed("the journal is closed".into()));
            }
        }
        if !op.needs_sync() && inbox.bytes >= READ_ONLY_SETTLES && self.read_only() {
            if self.dropped_settles.fetch_add(1, Ordering::Relaxed) == 0 {
                warn!(
                    "journal read-only and its queue full: dropping settles (those messages come back after a restart)"
                );
            }
            return Ok(SyncPoint(inbox.last_point));
        }
        inbox.last_point += 1;
        let point = SyncPoint(inbox.last_point);
        inbox.bytes += len;
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
        let used_up = self.disk.take(len);
        if used_up {
            set_blocked(
                &self.blocked_tx,
                true,
                "queued appends would take free disk space below the low-water mark",
            );
        }
        if wake || used_up {
            self.wake.notify_one();
        }
        Ok(point)
    }

    /// Whether the journal is read-only (no head segment: the disk is full).
    pub(crate) fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Relaxed);
        if read_only {
            set_blocked(&self.blocked_tx, true, "journal read-only: disk full");
        } else {
            self.dropped_settles.store(0, Ordering::Relaxed);
        }
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

    /// Why the journal cannot confirm persistent messages now, if it cannot: it failed, it is closed, it is
    /// read-only, or publishers are blocked for disk space (what `/health/ready` reports).
    pub(crate) fn unhealthy(&self) -> Option<String> {
        match &self.inbox().life {
            Lifecycle::Open => {}
            Lifecycle::Failed(reason) => return Some(reason.clone()),
            Lifecycle::Closing | Lifecycle::Closed => return Some("the journal is closed".into()),
        }
        if self.read_only() {
            return Some(
                "the journal is read-only: the disk is full (publishers are blocked until space is freed)".into(),
            );
        }
        if *self.blocked_tx.borrow() {
            return Some(
                "disk free space is below the low-water mark: publishers are blocked".into(),
            );
        }
        None
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
    /// The longest the writer goes without looking at the free disk space (it also looks whenever the bytes
    /// written call for it, see `disk`).
    pub(crate) disk_check_every: Duration,
    /// How long a segment must have been sealed before it may be compacted.
    pub(crate) compact_after: Duration,
    /// Bytes of live records one compaction pass copies at most, so that a compaction does not hold up the
    /// batches (and confirms) queued behind it for long.
    pub(crate) compact_per_pass: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            maintenance_every: Duration::from_millis(100),
            disk_check_every: Duration::from_secs(1),
            compact_after: Duration::from_secs(10),
            compact_per_pass: 4 * 1024 * 1024,
        }
    }
}

/// The head segment: the only one written to.
#[derive(Debug)]
struct Head {
    number: u64,
    file: Box<dyn SegmentFile>,
    /// How its frames are sealed (its salt).
    framing: Framing,
    /// Bytes in the file plus bytes buffered for it.
    size: u64,
    /// Bytes covered by the last successful sync: where the batch being written began.
    synced: u64,
    /// Size right after its header and checkpoint; a head this small is never rolled.
    base: u64,
    /// Its records so far, summarised (written when it is sealed).
    summary: SummaryBuilder,
}

/// What the summary should say about a record being appended.
#[derive(Debug, Clone, Copy)]
enum Noted<'a> {
    Publish {
        id: MsgId,
        queues: &'a [QueueKey],
        meta: &'a PublishMeta,
    },
    Other,
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
    disk: DiskWatch,
    last_write: Instant,
    /// Segments whose deletion records are written but whose files are not removed yet: a checkpoint written
    /// meanwhile must not list them, or their (expected) absence would look like a lost file.
    doomed: Vec<u64>,
    /// When each sealed segment was sealed (recovered ones: when the journal was opened).
    sealed_at: HashMap<u64, Instant>,
    /// The compaction in progress, if any.
    compaction: Option<Compaction>,
}

/// A compaction in progress (see [`Writer::compact`]).
#[derive(Debug)]
struct Compaction {
    victim: u64,
    /// Where the next pass goes on (`None`: at the first record).
    offset: Option<u64>,
    copied: u64,
    bytes: u64,
    started: Instant,
}

/// Starts the writer thread. Its head segment `first` is created here, after recovery (so the index is
/// complete), and the disk is looked at first: on a disk below the low-water mark the emergency reserve is
/// released before the head is created. If the head cannot be created for want of space, the journal starts
/// read-only: publishers are blocked, appends wait in the inbox, and the thread tries again every second until
/// there is room (or the journal is closed).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    fs: Arc<dyn StoreFs>,
    config: WriterConfig,
    first: u64,
) -> Result<JoinHandle<()>, StoreError> {
    let mut disk = DiskWatch::new(
        fs.as_ref(),
        &config.dir,
        config.disk_low_water,
        config.tuning.disk_check_every,
    );
    let full = disk.enabled()
        && fs
            .available_space(&config.dir)
            .is_ok_and(|free| free < config.disk_low_water);
    if full {
        disk.release_reserve(fs.as_ref(), &config.dir);
    }
    let head = match create_segment(fs.as_ref(), &config, &shared, first, &[]) {
        Ok(head) => Some(head),
        Err(e) if out_of_space(&e) => {
            warn!(error = %e, "no room on the disk for a new journal segment: starting read-only");
            shared.set_read_only(true);
            None
        }
        Err(e) => return Err(e),
    };
    if head.is_some() {
        disk.check(
            fs.as_ref(),
            &config.dir,
            &shared.disk,
            0,
            &shared.blocked_tx,
        );
    }
    let body = move || {
        let head = match head {
            Some(head) => head,
            None => match wait_for_space(&shared, fs.as_ref(), &config, first, &mut disk) {
                Some(head) => {
                    let checked = disk.check(
                        fs.as_ref(),
                        &config.dir,
                        &shared.disk,
                        0,
                        &shared.blocked_tx,
                    );
                    if checked.is_none() {
                        set_blocked(&shared.blocked_tx, false, "the journal is writable again");
                    }
                    head
                }
                None => return,
            },
        };
        Writer::new(shared, fs, config, head, disk).run();
    };
    Ok(std::thread::Builder::new()
        .name("ferrymq-journal".into())
        .spawn(body)?)
}

/// Whether an error is the disk being full.
fn out_of_space(e: &StoreError) -> bool {
    matches!(e, StoreError::Io(io) if io.kind() == io::ErrorKind::StorageFull)
}

/// The read-only journal's loop: tries to create the head every [`READ_ONLY_RETRY`] until it can, the journal
/// is closed, or something other than space fails.
fn wait_for_space(
    shared: &Shared,
    fs: &dyn StoreFs,
    config: &WriterConfig,
    number: u64,
    disk: &mut DiskWatch,
) -> Option<Head> {
    loop {
        {
            let mut inbox = shared.inbox();
            if inbox.life == Lifecycle::Closing {
                inbox.life = Lifecycle::Closed;
            }
            if inbox.life != Lifecycle::Open {
                return None;
            }
            drop(shared.wake.wait_timeout(inbox, READ_ONLY_RETRY));
        }
        disk.release_reserve(fs, &config.dir);
        match create_segment(fs, config, shared, number, &[]) {
            Ok(head) => {
                info!(
                    segment = number,
                    "room on the disk again: the journal is writable"
                );
                shared.set_read_only(false);
                return Some(head);
            }
            Err(e) if out_of_space(&e) => {}
            Err(e) => {
                shared.fail(format!("could not create the journal's head segment: {e}"));
                return None;
            }
        }
    }
}

impl Writer {
    /// A writer on `head` (freshly created; the index is complete).
    fn new(
        shared: Arc<Shared>,
        fs: Arc<dyn StoreFs>,
        config: WriterConfig,
        head: Head,
        disk: DiskWatch,
    ) -> Self {
        let now = Instant::now();
        let sealed_at = shared
            .index()
            .segment_numbers()
            .into_iter()
            .filter(|n| *n != head.number)
            .map(|n| (n, now))
            .collect();
        Self {
            shared,
            fs,
            config,
            head,
            buf: Vec::new(),
            last_maintenance: now,
            disk,
            last_write: now,
            doomed: Vec::new(),
            sealed_at,
            compaction: None,
        }
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
                let closing = self.shared.inbox().life == Lifecycle::Closing;
                if closing && let Err(e) = self.seal_head().and_then(|()| self.sync()) {
                    self.fail(&e);
                    return;
                }
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
            let noted = match &op {
                Op::Publish {
                    id, queues, meta, ..
                } => Noted::Publish {
                    id: *id,
                    queues,
                    meta,
                },
                _ => Noted::Other,
            };
            let (segment, offset) = self.append(op.record(), noted)?;
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
        if self.disk.due(&self.shared.disk) {
            self.check_disk();
        }
        Ok(())
    }

    /// Appends one framed record to the head (rolling first if it would overflow) and notes it in the head's
    /// summary; returns the segment it went to and its offset there. The bytes may still be in the write buffer.
    fn append(&mut self, record: &[u8], noted: Noted<'_>) -> io::Result<(u64, u64)> {
        let len = record.len() as u64;
        if self.head.size + len > self.config.segment_size && self.head.size > self.head.base {
            self.roll()?;
        }
        let offset = self.push(record)?;
        match noted {
            Noted::Publish { id, queues, meta } => self.head.summary.publish(len, id, queues, meta),
            Noted::Other => self.head.summary.other(len, &record[FRAME_HEADER..]),
        }
        Ok((self.head.number, offset))
    }

    /// Puts one framed record at the end of the head, sealing its frame; returns its offset.
    fn push(&mut self, record: &[u8]) -> io::Result<u64> {
        let len = record.len() as u64;
        let offset = self.head.size;
        let at = self.buf.len();
        self.buf.extend_from_slice(record);
        // Segments stay below 4 GiB (MAX_SEGMENT_SIZE plus one record), so the batch offset fits.
        let batch = u32::try_from(self.head.synced).unwrap_or(u32::MAX);
        self.head.framing.seal(&mut self.buf[at..], batch);
        self.head.size += len;
        self.shared.index().grow(self.head.number, len);
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(offset)
    }

    /// Ends the head with its summary and the trailer pointing at it (see `summary`), unless the summary would
    /// save little: more than half the segment, or offsets past 4 GiB. Nothing is appended to a sealed head.
    fn seal_head(&mut self) -> io::Result<()> {
        let size = self.head.size;
        if self.head.summary.len() as u64 * 2 > size || size > u64::from(u32::MAX) / 2 {
            return Ok(());
        }
        let summary = self
            .head
            .summary
            .encode()
            .map_err(|e| io::Error::other(e.0))?;
        let end = record::encode_summary_end(size).map_err(|e| io::Error::other(e.0))?;
        self.shared.disk.take(summary.len() + end.len());
        self.push(&summary)?;
        self.push(&end)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.head.file.write_all(&self.buf)?;
            self.disk.wrote(self.buf.len() as u64);
            self.buf.clear();
        }
        Ok(())
    }

    /// Appends a record the writer makes itself (not queued by an appender, so not yet taken from the disk
    /// headroom).
    fn append_own(&mut self, record: &[u8], noted: Noted<'_>) -> io::Result<(u64, u64)> {
        self.shared.disk.take(record.len());
        self.append(record, noted)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.head.file.sync_data()?;
        self.head.synced = self.head.size;
        Ok(())
    }

    /// Seals the head (synced, so only the last segment can ever be torn) and starts the next segment.
    fn roll(&mut self) -> io::Result<()> {
        self.seal_head()?;
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
            &self.shared,
            next,
            &self.doomed,
        )
        .map_err(into_io)?;
        self.shared.disk.take(head.size as usize);
        self.disk.wrote(head.size);
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
        if self.disk.due(&self.shared.disk) {
            self.check_disk();
        }
        if self.compaction.is_none() {
            self.compaction = self.next_compaction();
        }
        if let Some(c) = self.compaction.take() {
            self.compaction = self.compact(c)?;
        }
        self.delete_dead()
    }

    /// The segment to compact next, if one is worth it and its copies fit in the disk headroom (plus half the
    /// low-water mark: see `disk`).
    fn next_compaction(&self) -> Option<Compaction> {
        let min_age = self.config.tuning.compact_after;
        let sealed_at = &self.sealed_at;
        let old_enough = |n: u64| sealed_at.get(&n).is_some_and(|t| t.elapsed() >= min_age);
        let index = self.shared.index();
        let victim = index.compaction_candidate(self.head.number, old_enough)?;
        let need = i64::try_from(index.live_bytes(victim)).unwrap_or(i64::MAX);
        drop(index);
        let room = self.shared.disk.headroom()
            + i64::try_from(self.config.disk_low_water / 2).unwrap_or(i64::MAX);
        if self.disk.enabled() && room < need {
            debug!(
                segment = victim,
                need, room, "compaction postponed: not enough disk headroom"
            );
            return None;
        }
        Some(Compaction {
            victim,
            offset: None,
            copied: 0,
            bytes: 0,
            started: Instant::now(),
        })
    }

    /// Deletes every deletable segment, the whole transitive set at once: deletion records first (one sync),
    /// then the files in dependency order, then the directory (one sync).
    fn delete_dead(&mut self) -> io::Result<()> {
        let dead = self.shared.index().deletable(self.head.number);
        if dead.is_empty() {
            return Ok(());
        }
        self.doomed.clone_from(&dead);
        for n in &dead {
            let rec = record::encode_segment_deleted(*n).map_err(|e| io::Error::other(e.0))?;
            self.append_own(&rec, Noted::Other)?;
        }
        self.sync()?;
        self.doomed.clear();
        let mut removed = 0;
        for n in dead {
            let path = segment::path(&self.config.dir, n);
            if let Err(e) = self.fs.remove(&path) {
                warn!(segment = %path.display(), error = %e, "could not delete a dead journal segment");
                break;
            }
            self.shared.index().remove_segment(n);
            self.sealed_at.remove(&n);
            removed += 1;
        }
        self.fs.sync_dir(&self.config.dir)?;
        debug!(segments = removed, "deleted dead journal segments");
        if self.disk.enabled() {
            self.check_disk();
        }
        Ok(())
    }

    /// One pass of a compaction: re-appends the next live publish records of the victim to the head (with their
    /// queue lists narrowed to the queues still holding them), at most `Tuning::compact_per_pass` bytes, and syncs.
    /// Returns the compaction if there is more to do; when it is done the victim has no live messages left. The
    /// index learns the new locations only after the sync, so a reader never looks up a copy that is still in the
    /// write buffer.
    fn compact(&mut self, mut c: Compaction) -> io::Result<Option<Compaction>> {
        if !self.shared.index().has_segment(c.victim) {
            return Ok(None);
        }
        let path = segment::path(&self.config.dir, c.victim);
        let file = self.fs.open(&path)?;
        let HeaderState::Valid(framing) =
            segment::check_header(file.as_ref(), c.victim).map_err(into_io)?
        else {
            error!(segment = %path.display(), "sealed journal segment has no valid header; compaction skipped");
            return Ok(None);
        };
        let start = c.offset.unwrap_or_else(|| segment::data_start(framing));
        let mut reader = SegmentReader::at(file.as_ref(), framing, start)?;
        let mut moved = Vec::new();
        let mut pass = 0u64;
        let done = loop {
            if pass >= self.config.tuning.compact_per_pass {
                break false;
            }
            let (kind, id, part) = match reader.next_step()? {
                Step::End => break true,
                Step::Bad { offset, reason } => {
                    error!(segment = %path.display(), offset, reason = %reason, "sealed journal segment is damaged; compaction stopped");
                    break true;
                }
                Step::Record {
                    offset,
                    len,
                    payload,
                } => {
                    c.offset = Some(offset + len);
                    match record::decode_publish_head(payload) {
                        Ok(Some(head))
                            if self.shared.index().location(head.id) == Some(c.victim) =>
                        {
                            (head.kind, head.id, head.part.to_vec())
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            error!(segment = %path.display(), error = %e, "undecodable record; compaction stopped");
                            break true;
                        }
                    }
                }
            };
            let meta = match record::message_part_meta(kind, &part) {
                Ok(meta) => meta,
                Err(e) => {
                    error!(segment = %path.display(), error = %e, "undecodable message; compaction stopped");
                    break true;
                }
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
            let noted = Noted::Publish {
                id,
                queues: &queues,
                meta: &meta,
            };
            let (segment, offset) = self.append_own(&rec, noted)?;
            moved.push((segment, offset, len, id, queues));
            c.copied += 1;
            c.bytes += len;
            pass += len;
        };
        drop(reader);
        drop(file);
        self.sync()?;
        let mut index = self.shared.index();
        for (segment, offset, len, id, queues) in moved {
            index.publish(segment, offset, len, id, &queues);
        }
        drop(index);
        if !done {
            return Ok(Some(c));
        }
        info!(
            segment = c.victim,
            messages = c.copied,
            bytes = c.bytes,
            elapsed_ms = c.started.elapsed().as_millis() as u64,
            "compacted journal segment"
        );
        Ok(None)
    }

    /// Looks at the free disk space (see `disk`).
    fn check_disk(&mut self) {
        let queued = self.shared.inbox().bytes as u64;
        self.disk.check(
            self.fs.as_ref(),
            &self.config.dir,
            &self.shared.disk,
            queued,
            &self.shared.blocked_tx,
        );
    }

    /// Fails the journal for good; see the module docs. First leaves [`SYNC_FAILED_FILE`] behind (if the disk
    /// still takes it), so that the next start rewrites the head rather than trust pages the kernel may have
    /// marked clean after the failed write or sync; only then is the failure reported (a broker killed as soon
    /// as it reports the failure still leaves the marker).
    fn fail(&mut self, e: &io::Error) {
        let reason = format!(
            "journal write or sync failed in segment {}: {e}; no further persistent writes are accepted",
            segment::file_name(self.head.number)
        );
        let marker = self.config.dir.join(SYNC_FAILED_FILE);
        let left = match self.fs.create(&marker) {
            Ok(mut f) => f.sync_data(),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
        .and_then(|()| self.fs.sync_dir(&self.config.dir));
        if let Err(e) = left {
            warn!(error = %e, "could not leave the sync-failed marker for the next start");
        }
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

/// Creates segment `number` with a fresh salt, its header and checkpoint: written to a temporary file, synced,
/// renamed into place and the directory synced, so a segment file never shows an incomplete header, whatever
/// the crash. The index is locked only to take the checkpoint and to account for the new segment, never across the
/// syncs (readers look locations up meanwhile).
fn create_segment(
    fs: &dyn StoreFs,
    config: &WriterConfig,
    shared: &Shared,
    number: u64,
    doomed: &[u64],
) -> Result<Head, StoreError> {
    let checkpoint = {
        let index = shared.index();
        Checkpoint {
            next_id: index.next_id(),
            segments: index
                .segment_numbers()
                .into_iter()
                .filter(|n| !doomed.contains(n))
                .collect(),
            definitions: index.definitions(),
        }
    };
    let cp = record::encode_checkpoint(&checkpoint).map_err(|e| StoreError::Failed(e.0))?;
    let salt: u64 = rand::random();
    let framing = Framing::v2(number, salt);
    let mut bytes = Vec::with_capacity(segment::HEADER_LEN as usize + cp.len());
    bytes.extend_from_slice(&segment::header(number, salt));
    bytes.extend_from_slice(&cp);
    framing.seal(&mut bytes[segment::HEADER_LEN as usize..], 0);
    let path = segment::path(&config.dir, number);
    let tmp = segment::temp_path(&config.dir, number);
    let mut file = fs.create(&tmp)?;
    let written = file
        .write_all(&bytes)
        .and_then(|()| file.sync_data())
        .and_then(|()| fs.rename(&tmp, &path))
        .and_then(|()| fs.sync_dir(&config.dir));
    if let Err(e) = written {
        // Leave no half-made segment behind (a read-only journal tries again with the same number).
        drop(file);
        let _ = fs.remove(&tmp);
        let _ = fs.remove(&path);
        return Err(e.into());
    }
    let size = bytes.len() as u64;
    shared.index().add_segment(number, size);
    let mut summary = SummaryBuilder::default();
    summary.other(cp.len() as u64, &cp[FRAME_HEADER..]);
    Ok(Head {
        number,
        file,
        framing,
        size,
        synced: size,
        base: size,
        summary,
    })
}
