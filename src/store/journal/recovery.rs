//! Start-up recovery: read every segment in order, verify each record, cut a torn tail, refuse real damage, make
//! the last segment durable, and replay the records into what the broker needs ([`Recovered`]) and what the
//! writer needs (an [`Index`]).
//!
//! Policy, in the order checks happen:
//! - a segment from a newer format version is refused ([`StoreError::FutureVersion`]), wherever it is;
//! - a last segment too short to hold its header, or whose header is all zeros and nothing else was written
//!   (a crash while it was being created), is removed. This build creates segments under a temporary name and
//!   renames them into place once their header and checkpoint are synced, so only segments of the previous
//!   release can look like that; leftover temporary files are removed;
//! - the last segment may end in a torn record: the writer syncs each write batch before it writes the next,
//!   so a crash can tear only the batch that was never reported synced. A bad record followed by a valid
//!   record of a *later* batch (version 2 frames carry the offset their batch began at) is therefore damage to
//!   synced data, refused with [`StoreError::Damaged`]; a bad record with no later batch after it is the torn
//!   tail, cut and logged. (Version 1 segments, written by the previous release, carry no batch offsets: their
//!   torn tail is cut as before.);
//! - a bad record in any other segment is [`StoreError::Damaged`]: those segments were synced before the next
//!   one was created, so damage there is not a crash artifact;
//! - a segment that the newest checkpoint lists as existing, that no deletion record accounts for, and that is
//!   not on disk is [`StoreError::Corrupt`] (a lost file would otherwise silently lose its messages).
//!
//! Salvage. An empty file named [`SALVAGE_FILE`] in the store directory turns the two refusals into repairs,
//! once: a damaged segment is cut at the damage (the cut bytes are kept beside it in `<segment>.damaged-<offset>`)
//! and a missing segment is logged, each at error level; the file is removed when recovery succeeds.
//!
//! Durability of what was read. The previous run's last segment may hold bytes that were written and never
//! synced (a kill between a write and its `fdatasync`): recovery syncs it, and the directory, before anything
//! new is written, so a power cut after the restart cannot turn it into a damaged middle segment. If that sync
//! fails, or the previous run left [`SYNC_FAILED_FILE`] (its writer failed a write or sync, after which the
//! kernel may have marked pages clean that never reached the disk), the segment's records are rewritten into a
//! fresh file that replaces it, instead of trusting those pages.
//!
//! Segments are opened one at a time, so the number of segments is not bounded by the open-file limit.
//!
//! Replay: definitions in journal order, each checkpoint restarting from the state it records; publishes and
//! settles folded into per-queue lists of unsettled messages in id order (ids are handed out in publish
//! order); deleting a queue or vhost drops its messages. Progress (segments, records, MB/s, ETA) is logged
//! every second.
//!
//! Bodies. Replay keeps only what a queue needs without the body (id, size, priority, TTL) for each live
//! message, never the bodies themselves, so recovering a store larger than memory does not load it. After the
//! scan the first [`LOAD_BUDGET`] bytes (at most [`LOAD_BUDGET_MESSAGES`] messages) of live bodies (in id
//! order, which is publish order: the heads of the queues) are read back by location; every other message is
//! recovered with `message: None`, and its queue reads it with `Store::read` when it needs it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::fs::{SegmentFile, StoreFs};
use super::index::{Index, UNREADABLE_OFFSET};
use super::metas::{Aside, Meta, MetaMaps, Metas};
use super::reader::RecordReader;
use super::record::PublishMeta;
use super::record::{self, Record};
use super::segment::{self, HeaderState, SegmentReader, Step, read_full};
use super::summary::{self, Entry, Summary};
use crate::store::idmap::IdMap;
use crate::store::{MsgId, QueueKey, Recovered, RecoveredQueue, StoreError, StoredMessage};

/// Bytes of live bodies recovery loads into memory (the rest are read back on demand). A queue keeps at most
/// its own paging budget (8 MiB) loaded anyway, so loading more would be wasted; this only saves the first
/// reads after a restart.
pub(crate) const LOAD_BUDGET: u64 = 8 * 1024 * 1024;
/// At most this many bodies are loaded (a queue's message budget, for the same reason).
pub(crate) const LOAD_BUDGET_MESSAGES: u64 = 4096;

/// The signal file that asks recovery to salvage a damaged journal instead of refusing to start.
pub(crate) const SALVAGE_FILE: &str = "SALVAGE";
/// The marker a failed writer leaves: the last segment's unsynced pages cannot be trusted.
pub(crate) const SYNC_FAILED_FILE: &str = "SYNC_FAILED";

/// What recovery does with damage no crash can explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DamagePolicy {
    /// Refuse to start ([`StoreError::Damaged`], [`StoreError::Corrupt`]).
    Refuse,
    /// Cut the damaged segment at the damage (keeping the cut bytes aside), log it, and go on.
    Salvage,
}

/// What recovery hands to the journal.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) recovered: Recovered,
    pub(crate) index: Index,
    /// The highest segment number on disk after recovery, if any.
    pub(crate) last_segment: Option<u64>,
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(fs: &dyn StoreFs, dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut numbers: Vec<u64> = fs
        .list(dir)?
        .iter()
        .filter_map(|n| segment::parse_name(n))
        .collect();
    numbers.sort_unstable();
    if let Some(n) = numbers.last().filter(|n| **n > segment::MAX_NUMBER) {
        return Err(StoreError::Corrupt(format!(
            "{} is numbered above the highest segment number this build supports ({})",
            segment::file_name(*n),
            segment::MAX_NUMBER
        )));
    }
    Ok(numbers)
}

/// Everything replay accumulates besides the index.
#[derive(Debug, Default)]
struct Replay {
    index: Index,
    definitions: Vec<crate::store::Definition>,
    /// Size, priority and TTL of the live messages (built on a thread of its own: see `metas`).
    metas: Metas,
    /// Bodies of the rare live records the index cannot locate for a later read (see `index::UNREADABLE_OFFSET`).
    unreadable: HashMap<MsgId, Arc<StoredMessage>>,
    /// The segments listed by the newest checkpoint, and the segment holding it.
    checkpoint: Option<(u64, Vec<u64>)>,
    deleted: BTreeSet<u64>,
    records: u64,
    /// Wall clock at the start of recovery (ms since the Unix epoch), for expiry deadlines.
    now_ms: u64,
}

/// A publish as replay sees it: from a scanned record (its queues by key, and its payload, decoded in full
/// only in the rare case its body must be kept) or from a summary (its queues by interned number).
struct Published<'a> {
    segment: u64,
    offset: u64,
    len: u64,
    id: MsgId,
    meta: PublishMeta,
    payload: Option<&'a [u8]>,
}

impl Replay {
    fn forget(&mut self, id: MsgId) {
        self.metas.forget(id);
        self.unreadable.remove(&id);
    }

    /// A publish whose queues are interned already.
    fn publish(&mut self, p: Published<'_>, queues: &[u32]) -> Result<(), StoreError> {
        self.records += 1;
        self.index.grow(p.segment, p.len);
        if !self.unreadable.is_empty() {
            self.unreadable.remove(&p.id);
        }
        if !self
            .index
            .publish_interned(p.segment, p.offset, p.len, p.id, queues)
        {
            self.forget(p.id);
            return Ok(());
        }
        let deadline = p.meta.deadline_ms(self.now_ms);
        self.metas.insert(
            p.id,
            p.meta.size,
            p.meta.priority,
            deadline,
            p.meta.published_at_ms,
        );
        if p.offset >= u64::from(UNREADABLE_OFFSET) {
            // Beyond the offsets the index keeps: only a full decode keeps this message.
            let message = p
                .payload
                .map(record::decode)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("message {}: {e}", p.id)))?;
            if let Some(Record::Publish(full)) = message {
                self.unreadable.insert(p.id, Arc::new(full.message));
            }
        }
        Ok(())
    }

    /// Any record. (Scans route publishes to [`Replay::publish`] without decoding bodies; a publish decoded in
    /// full, which a summary never holds, is replayed the same way and keeps its message if it must.)
    fn apply(
        &mut self,
        segment: u64,
        offset: u64,
        len: u64,
        record: Record,
    ) -> Result<(), StoreError> {
        let record = match record {
            Record::Publish(p) => {
                let queues: Vec<u32> = p.queues.iter().map(|q| self.index.intern(q)).collect();
                let published = Published {
                    segment,
                    offset,
                    len,
                    id: p.id,
                    meta: PublishMeta::of(&p.message),
                    payload: None,
                };
                self.publish(published, &queues)?;
                // Live (the index and the metadata hold the same ids) but not locatable.
                if self.index.locate(p.id).is_none() && self.index.location(p.id).is_some() {
                    self.unreadable.insert(p.id, Arc::new(p.message));
                }
                return Ok(());
            }
            other => other,
        };
        self.records += 1;
        self.index.grow(segment, len);
        match record {
            Record::Publish(_) | Record::Summary => {}
            Record::Settle { queue, id } => {
                if self.index.settle(segment, &queue, id) {
                    self.forget(id);
                }
            }
            Record::Define(def) => {
                for id in self.index.define(segment, &def) {
                    self.forget(id);
                }
                self.definitions.push(def);
            }
            Record::Checkpoint(cp) => {
                self.index.checkpoint(cp.next_id, &cp.definitions);
                self.definitions = cp.definitions;
                self.checkpoint = Some((segment, cp.segments));
            }
            Record::SegmentDeleted { segment: gone } => {
                self.deleted.insert(gone);
            }
        }
        Ok(())
    }
}

/// Logs recovery progress at most once a second.
#[derive(Debug)]
struct Progress {
    started: Instant,
    last: Instant,
    total_bytes: u64,
    done_bytes: u64,
    segments: usize,
}

impl Progress {
    fn tick(&mut self, segment_index: usize, bytes_in_segment: u64, records: u64) {
        let now = Instant::now();
        if now.duration_since(self.last) < Duration::from_secs(1) {
            return;
        }
        self.last = now;
        let done = self.done_bytes + bytes_in_segment;
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            self.total_bytes.saturating_sub(done) as f64 / rate
        } else {
            0.0
        };
        info!(
            segment = segment_index + 1,
            segments = self.segments,
            records,
            mb_per_s = format!("{:.1}", rate / 1e6),
            eta_s = format!("{eta:.0}"),
            "recovering journal"
        );
    }
}

/// The names of the files in `dir` that matter to recovery.
struct DirListing {
    segments: Vec<u64>,
    salvage: bool,
    sync_failed: bool,
}

/// Lists `dir`, removing leftovers of an interrupted segment creation or rewrite.
fn list_dir(fs: &dyn StoreFs, dir: &Path) -> Result<DirListing, StoreError> {
    let names = fs.list(dir)?;
    for leftover in names.iter().filter(|n| n.ends_with(segment::TEMP_SUFFIX)) {
        warn!(file = %leftover, "removing the leftover of an interrupted segment creation or rewrite");
        fs.remove(&dir.join(leftover))?;
    }
    Ok(DirListing {
        segments: list_segments(fs, dir)?,
        salvage: names.iter().any(|n| n == SALVAGE_FILE),
        sync_failed: names.iter().any(|n| n == SYNC_FAILED_FILE),
    })
}

/// Reads the journal in `dir`; see the module docs.
pub(crate) fn recover(fs_arc: Arc<dyn StoreFs>, dir: &Path) -> Result<Outcome, StoreError> {
    let fs = fs_arc.as_ref();
    let started = Instant::now();
    let listing = list_dir(fs, dir)?;
    let policy = damage_policy(&listing, dir);
    let (replay, numbers) = replay_segments(fs, dir, &listing, policy, started)?;
    fs.sync_dir(dir)?;
    check_missing(&replay, &numbers, policy)?;
    clear_signals(fs, dir, &listing)?;
    let Replay {
        index,
        definitions,
        metas,
        unreadable,
        records,
        ..
    } = replay;
    let MetaMaps { messages, aside } = metas.finish()?;
    let replayed_ms = started.elapsed().as_millis() as u64;
    let (mut queues, preload) = group(&index, messages, &aside, unreadable);
    drop(aside);
    let index = Mutex::new(index);
    let loaded = load_bodies(
        &RecordReader::new(fs_arc.clone(), dir),
        &index,
        &preload,
        &mut queues,
    );
    let index = index.into_inner().unwrap_or_else(|e| e.into_inner());
    let per_queue: HashMap<QueueKey, RecoveredQueue> = queues
        .into_iter()
        .enumerate()
        .filter(|(_, q)| !q.messages.is_empty())
        .filter_map(|(n, q)| Some((index.queue_key(u32::try_from(n).ok()?)?.clone(), q)))
        .collect();
    info!(
        segments = numbers.len(),
        records,
        messages = index.live_messages(),
        loaded,
        index_mb = index.heap_bytes() as f64 / 1e6,
        definitions = definitions.len(),
        replayed_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "journal recovered"
    );
    Ok(Outcome {
        recovered: Recovered {
            definitions,
            messages: per_queue,
            next_id: index.next_id(),
        },
        index,
        last_segment: numbers.last().copied(),
    })
}

/// Salvage if asked to (logged loudly), refuse otherwise.
fn damage_policy(listing: &DirListing, dir: &Path) -> DamagePolicy {
    if !listing.salvage {
        return DamagePolicy::Refuse;
    }
    error!(
        dir = %dir.display(),
        "{SALVAGE_FILE} is present: damaged journal segments will be cut at the damage instead of refusing to \
         start (confirmed messages after the damage are lost)"
    );
    DamagePolicy::Salvage
}

/// Removes the signal files recovery has acted on (salvage is one-shot; the rewrite is done).
fn clear_signals(fs: &dyn StoreFs, dir: &Path, listing: &DirListing) -> Result<(), StoreError> {
    let signals = [
        (SALVAGE_FILE, listing.salvage),
        (SYNC_FAILED_FILE, listing.sync_failed),
    ];
    for (signal, _) in signals.iter().filter(|(_, present)| *present) {
        fs.remove(&dir.join(signal))?;
    }
    fs.sync_dir(dir)?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Replays every segment in order, one open at a time, and makes the last one durable. Returns the replay and
/// the segments left on disk.
fn replay_segments(
    fs: &dyn StoreFs,
    dir: &Path,
    listing: &DirListing,
    policy: DamagePolicy,
    started: Instant,
) -> Result<(Replay, Vec<u64>), StoreError> {
    let mut numbers = listing.segments.clone();
    let mut total_bytes = 0;
    for n in &numbers {
        total_bytes += fs.open(&segment::path(dir, *n))?.len()?;
    }
    let mut progress = Progress {
        started,
        last: started,
        total_bytes,
        done_bytes: 0,
        segments: numbers.len(),
    };
    let mut replay = Replay {
        now_ms: now_ms(),
        metas: Metas::spawn(),
        ..Replay::default()
    };
    let count = numbers.len();
    let mut removed = None;
    for (i, number) in numbers.iter().copied().enumerate() {
        let last = i + 1 == count;
        let mut file = fs.open(&segment::path(dir, number))?;
        let Some(framing) = usable_header(fs, dir, file.as_ref(), number, last, policy)? else {
            removed = Some(number);
            continue;
        };
        replay
            .index
            .add_segment(number, segment::data_start(framing));
        let scan = SegmentScan {
            fs,
            dir,
            number,
            framing,
            last,
            policy,
        };
        let size = scan.replay(&mut replay, file.as_mut(), i, &mut progress)?;
        if last {
            make_durable(fs, dir, number, file, size, listing.sync_failed)?;
        }
        progress.done_bytes += size;
    }
    if let Some(n) = removed {
        numbers.retain(|x| *x != n);
    }
    Ok((replay, numbers))
}

/// The framing of segment `number` from its header; `None` if it was a last segment whose creation a crash
/// interrupted (it is removed).
fn usable_header(
    fs: &dyn StoreFs,
    dir: &Path,
    file: &dyn SegmentFile,
    number: u64,
    last: bool,
    policy: DamagePolicy,
) -> Result<Option<record::Framing>, StoreError> {
    let name = segment::file_name(number);
    match segment::check_header(file, number)? {
        HeaderState::Valid(framing) => Ok(Some(framing)),
        state if last && unfinished_creation(file, &state, policy)? => {
            warn!(segment = %name, header = ?state, "removing a last segment whose creation never completed");
            fs.remove(&segment::path(dir, number))?;
            fs.sync_dir(dir)?;
            Ok(None)
        }
        state => Err(StoreError::Corrupt(format!(
            "{name}: {} header, and it is not a last segment whose creation a crash interrupted",
            if state == HeaderState::Short {
                "a truncated"
            } else {
                "an all-zero"
            }
        ))),
    }
}

/// Groups the live messages by queue (by interned number), in id order, into lists sized exactly: a large store
/// makes these lists large, and growing them by doubling would hold up to twice the memory. The replay's map is
/// drained page by page as the lists fill, so the two are never both whole. Returns the lists and the messages
/// whose bodies to load: the first ones, up to [`LOAD_BUDGET`] bytes and [`LOAD_BUDGET_MESSAGES`] messages.
fn group(
    index: &Index,
    messages: IdMap<Meta>,
    aside: &Aside,
    mut unreadable: HashMap<MsgId, Arc<StoredMessage>>,
) -> (Vec<RecoveredQueue>, Vec<MsgId>) {
    let mut queues: Vec<RecoveredQueue> = queue_sizes(index)
        .into_iter()
        .map(RecoveredQueue::with_capacity)
        .collect();
    let mut preload = Vec::new();
    let mut budget = LOAD_BUDGET;
    // The replay's map and the index hold the same ids (a message is live in both or in neither), so they are
    // walked side by side, both in id order, without a look-up per message.
    let mut live = index.live().peekable();
    for (id, meta) in messages.drain() {
        while live.peek().is_some_and(|(at, _)| *at < id) {
            live.next();
        }
        let holders = match live.peek() {
            Some((at, holders)) if *at == id => {
                let holders = *holders;
                live.next();
                holders
            }
            _ => index.live_queue_numbers(id),
        };
        let body = if unreadable.is_empty() {
            None
        } else {
            unreadable.remove(&id)
        };
        if body.is_none()
            && u64::from(meta.size) <= budget
            && (preload.len() as u64) < LOAD_BUDGET_MESSAGES
        {
            budget -= u64::from(meta.size);
            preload.push(id);
        }
        for n in holders {
            if let Some(queue) = queues.get_mut(*n as usize) {
                meta.push_to(id, queue, aside);
                if let Some(body) = &body {
                    queue.bodies.insert(id, body.clone());
                }
            }
        }
    }
    (queues, preload)
}

/// How many live messages each interned queue holds. With a single queue, the common backlog, that is every
/// live message, and the walk over the index is skipped.
fn queue_sizes(index: &Index) -> Vec<usize> {
    if index.queue_count() == 1 {
        return vec![index.live_messages()];
    }
    let mut sizes = vec![0usize; index.queue_count()];
    for (_, queues) in index.live() {
        for n in queues {
            if let Some(size) = sizes.get_mut(*n as usize) {
                *size += 1;
            }
        }
    }
    sizes
}

/// Reads the bodies of `ids` back into their queues; returns how many it loaded. A summarised segment's bodies
/// are checked when they are read: a damaged one is reported here and each time its queue tries to read it, and
/// stays in the journal (it is never settled).
fn load_bodies(
    reader: &RecordReader,
    index: &Mutex<Index>,
    ids: &[MsgId],
    queues: &mut [RecoveredQueue],
) -> u64 {
    let mut loaded = 0;
    for id in ids {
        let loc = index.lock().unwrap_or_else(|e| e.into_inner()).locate(*id);
        let Some(loc) = loc else { continue };
        let body = match reader.read(*id, loc, index) {
            Ok(message) => Arc::new(message),
            Err(e) => {
                error!(id, error = %e, "a recovered message could not be read back");
                continue;
            }
        };
        loaded += 1;
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        for n in index.live_queue_numbers(*id) {
            if let Some(queue) = queues.get_mut(*n as usize) {
                queue.bodies.insert(*id, body.clone());
            }
        }
    }
    loaded
}

/// Whether a last segment with this unusable header is one whose creation a crash interrupted: too short to
/// hold a header, or all zeros (with salvage, whatever follows a zeroed header). A zeroed header followed by
/// other bytes is damage, not a crash artifact: the writer appends nothing to a segment before its header and
/// checkpoint are synced.
fn unfinished_creation(
    file: &dyn SegmentFile,
    state: &HeaderState,
    policy: DamagePolicy,
) -> Result<bool, StoreError> {
    match state {
        HeaderState::Short => Ok(true),
        HeaderState::Zeroed => Ok(policy == DamagePolicy::Salvage || all_zero(file)?),
        HeaderState::Valid(_) => Ok(false),
    }
}

/// Whether every byte of the file is zero.
fn all_zero(file: &dyn SegmentFile) -> Result<bool, StoreError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    loop {
        let n = read_full(file, &mut buf, at)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Syncs the last segment (and then the directory): the previous run may have been killed between a write and
/// its sync. If the sync fails, or the previous run's writer failed, its records are rewritten instead.
fn make_durable(
    fs: &dyn StoreFs,
    dir: &Path,
    number: u64,
    mut file: Box<dyn SegmentFile>,
    len: u64,
    sync_failed: bool,
) -> Result<(), StoreError> {
    let name = segment::file_name(number);
    if sync_failed {
        warn!(segment = %name, "the previous run's writer failed a write or sync: rewriting the last segment rather than trusting its cached pages");
    } else {
        match file.sync_data() {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!(segment = %name, error = %e, "syncing the last segment failed: rewriting it rather than trusting pages the kernel may have marked clean");
            }
        }
    }
    rewrite_segment(fs, dir, number, file.as_ref(), len)
}

/// Copies the first `len` bytes of segment `number` into a new file, syncs it and renames it over the segment.
fn rewrite_segment(
    fs: &dyn StoreFs,
    dir: &Path,
    number: u64,
    file: &dyn SegmentFile,
    len: u64,
) -> Result<(), StoreError> {
    let path = segment::path(dir, number);
    let tmp = segment::temp_path(dir, number);
    let mut out = fs.create(&tmp)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let want = usize::try_from(len - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = read_full(file, &mut buf[..want], at)?;
        if n < want {
            return Err(StoreError::Corrupt(format!(
                "{} shrank while being rewritten",
                segment::file_name(number)
            )));
        }
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    out.sync_data()?;
    drop(out);
    fs.rename(&tmp, &path)?;
    fs.sync_dir(dir)?;
    info!(segment = %segment::file_name(number), bytes = len, "rewrote the last journal segment");
    Ok(())
}

/// One segment being replayed, and what to do with damage in it.
struct SegmentScan<'a> {
    fs: &'a dyn StoreFs,
    dir: &'a Path,
    number: u64,
    framing: record::Framing,
    last: bool,
    policy: DamagePolicy,
}

/// Where a walk over a segment stopped early.
struct BadRecord {
    offset: u64,
    reason: String,
    /// A valid record of a later write batch after it, if any.
    later_batch: Option<u64>,
}

impl SegmentScan<'_> {
    /// Replays the segment; returns its size after any cut.
    fn replay(
        &self,
        replay: &mut Replay,
        file: &mut dyn SegmentFile,
        segment_index: usize,
        progress: &mut Progress,
    ) -> Result<u64, StoreError> {
        let name = segment::file_name(self.number);
        let start = segment::data_start(self.framing);
        let len = file.len()?;
        if let Some((body, at)) = summary::read(&*file, self.framing, start, len)? {
            self.replay_summary(replay, &body, start, at, len)?;
            progress.tick(segment_index, len, replay.records);
            return Ok(len);
        }
        let (bad, file_len) = {
            let mut reader = SegmentReader::new(&*file, self.framing)?;
            let file_len = reader.file_len();
            let bad = loop {
                match reader.next_step()? {
                    Step::End => break None,
                    Step::Bad { offset, reason } => break Some((offset, reason)),
                    Step::Record {
                        offset,
                        len,
                        payload,
                    } => {
                        self.replay_record(replay, offset, len, payload)
                            .map_err(|e| {
                                StoreError::Corrupt(format!(
                                    "{name} offset {offset}: record has a valid CRC but does not decode: {e}"
                                ))
                            })??;
                        progress.tick(segment_index, offset + len, replay.records);
                    }
                }
            };
            let bad = match bad {
                Some((offset, reason)) => Some(BadRecord {
                    later_batch: reader.later_batch(offset)?,
                    offset,
                    reason,
                }),
                None => None,
            };
            (bad, file_len)
        };
        let Some(bad) = bad else {
            return Ok(file_len);
        };
        if self.last && bad.later_batch.is_none() {
            warn!(
                segment = %name,
                offset = bad.offset,
                bytes_cut = file_len - bad.offset,
                reason = %bad.reason,
                "truncating the torn tail of the journal (records after the last sync, never confirmed)"
            );
            file.truncate(bad.offset)?;
            return Ok(bad.offset);
        }
        let detail = match bad.later_batch {
            Some(at) => format!(
                "{}; a record written in a later batch follows at offset {at}, so the damaged one had been synced",
                bad.reason
            ),
            None => format!("{}; it is not the last segment", bad.reason),
        };
        if self.policy == DamagePolicy::Refuse {
            return Err(StoreError::Damaged {
                segment: name,
                offset: bad.offset,
                detail,
            });
        }
        self.salvage(file, bad.offset, file_len, &detail)?;
        Ok(bad.offset)
    }

    /// A publish record of this segment.
    fn published<'p>(
        &self,
        offset: u64,
        len: u64,
        id: MsgId,
        meta: PublishMeta,
        payload: Option<&'p [u8]>,
    ) -> Published<'p> {
        Published {
            segment: self.number,
            offset,
            len,
            id,
            meta,
            payload,
        }
    }

    /// Replays one scanned record: a publish from its head and properties only (its body is not copied), any
    /// other record decoded in full.
    fn replay_record(
        &self,
        replay: &mut Replay,
        offset: u64,
        len: u64,
        payload: &[u8],
    ) -> Result<Result<(), StoreError>, record::DecodeError> {
        if let Some((id, queues, meta)) = record::decode_publish_meta(payload)? {
            let queues: Vec<u32> = queues.iter().map(|q| replay.index.intern(q)).collect();
            let published = self.published(offset, len, id, meta, Some(payload));
            return Ok(replay.publish(published, &queues));
        }
        let record = record::decode(payload)?;
        Ok(replay.apply(self.number, offset, len, record))
    }

    /// Replays a sealed segment from its summary (see `summary`): records start at `start`, the summary record
    /// at `at`, and it and its trailer end the `len`-byte file.
    fn replay_summary(
        &self,
        replay: &mut Replay,
        body: &[u8],
        start: u64,
        at: u64,
        len: u64,
    ) -> Result<(), StoreError> {
        let name = segment::file_name(self.number);
        let corrupt = |e: record::DecodeError| {
            StoreError::Corrupt(format!(
                "{name}: its summary has a valid CRC but does not decode: {e}"
            ))
        };
        let mut summary = Summary::parse(body).map_err(corrupt)?;
        let numbers: Vec<u32> = summary
            .queues()
            .iter()
            .map(|q| replay.index.intern(q))
            .collect();
        let mut offset = start;
        let mut queues = Vec::new();
        let mut interned = Vec::new();
        while let Some(entry) = summary.next_entry(&mut queues).map_err(corrupt)? {
            match entry {
                Entry::Publish { len, id, meta } => {
                    interned.clear();
                    for q in &queues {
                        let n = numbers.get(*q as usize).copied();
                        interned.push(
                            n.ok_or_else(|| corrupt(record::DecodeError("queue index".into())))?,
                        );
                    }
                    replay.publish(self.published(offset, len, id, meta, None), &interned)?;
                    offset += len;
                }
                Entry::Other { len, payload } => {
                    let record = record::decode(payload).map_err(corrupt)?;
                    replay.apply(self.number, offset, len, record)?;
                    offset += len;
                }
            }
        }
        if offset != at {
            return Err(corrupt(record::DecodeError(format!(
                "its records end at offset {offset}, the summary starts at {at}"
            ))));
        }
        replay.index.grow(self.number, len - offset);
        Ok(())
    }

    /// Keeps the bytes from `offset` on in a side file, then cuts the segment there.
    fn salvage(
        &self,
        file: &mut dyn SegmentFile,
        offset: u64,
        file_len: u64,
        detail: &str,
    ) -> Result<(), StoreError> {
        let name = segment::file_name(self.number);
        let side = self.dir.join(format!("{name}.damaged-{offset}"));
        let mut out = self.fs.create(&side)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = offset;
        while at < file_len {
            let want = usize::try_from(file_len - at)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = read_full(file, &mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        out.sync_data()?;
        file.truncate(offset)?;
        file.sync_data()?;
        error!(
            segment = %name,
            offset,
            bytes_cut = file_len - offset,
            kept_in = %side.display(),
            detail,
            "SALVAGE: cut a damaged journal segment; messages and settlements recorded after the damage are lost"
        );
        Ok(())
    }
}

/// Every segment the newest checkpoint says existed must still be there unless a deletion was recorded.
fn check_missing(replay: &Replay, present: &[u64], policy: DamagePolicy) -> Result<(), StoreError> {
    let Some((holder, listed)) = &replay.checkpoint else {
        return Ok(());
    };
    let present: BTreeSet<u64> = present.iter().copied().collect();
    let missing: Vec<String> = listed
        .iter()
        .filter(|n| !present.contains(n) && !replay.deleted.contains(n))
        .map(|n| segment::file_name(*n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if policy == DamagePolicy::Salvage {
        error!(
            missing = %missing.join(", "),
            "SALVAGE: journal segments are missing; their messages are lost"
        );
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "journal segment(s) {} missing: {} lists them as live and no deletion was recorded; restore them or \
         move the data directory aside",
        missing.join(", "),
        segment::file_name(*holder)
    )))
}
