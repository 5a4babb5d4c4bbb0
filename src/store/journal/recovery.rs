//! Start-up recovery: read every segment in order, verify each record, cut a torn tail, refuse real damage, and
//! replay the records into what the broker needs ([`Recovered`]) and what the writer needs (an [`Index`]).
//!
//! Policy, in the order checks happen:
//! - a segment from a newer format version is refused ([`StoreError::FutureVersion`]), wherever it is;
//! - the last segment may end in a torn or damaged record (a crash while a batch was being written: nothing in
//!   it was ever reported synced). It is truncated at the first bad record and the cut is logged. A last
//!   segment too short to hold its header (a crash while it was being created) is removed;
//! - a bad record in any other segment is [`StoreError::Corrupt`]: those segments were synced before the next
//!   one was created, so damage there is not a crash artifact;
//! - a segment that the newest checkpoint lists as existing, that no deletion record accounts for, and that is
//!   not on disk is [`StoreError::Corrupt`] (a lost file would otherwise silently lose its messages).
//!
//! Replay: definitions in journal order, each checkpoint restarting from the state it records; publishes and
//! settles folded into per-queue lists of unsettled messages in id order (ids are handed out in publish
//! order); deleting a queue or vhost drops its messages. Progress (segments, records, MB/s, ETA) is logged
//! every second.
//!
//! Bodies. Replay keeps only what a queue needs without the body (id, size, priority, TTL) for each live
//! message, never the bodies themselves, so recovering a store larger than memory does not load it. After the
//! scan the first [`LOAD_BUDGET`] bytes (at most [`LOAD_BUDGET_MESSAGES`] messages) of live bodies (in id order, which is publish order: the heads of the
//! queues) are read back by location; every other message is recovered with `message: None`, and its queue
//! reads it with `Store::read` when it needs it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::fs::{SegmentFile, StoreFs};
use super::idmap::IdMap;
use super::index::Index;
use super::reader::RecordReader;
use super::record::{self, Record};
use super::segment::{self, HEADER_LEN, HeaderState, SegmentReader, Step};
use crate::store::{MsgId, QueueKey, Recovered, RecoveredQueue, StoreError, StoredMessage};

/// Bytes of live bodies recovery loads into memory (the rest are read back on demand). A queue keeps at most
/// its own paging budget (8 MiB) loaded anyway, so loading more would be wasted; this only saves the first
/// reads after a restart.
pub(crate) const LOAD_BUDGET: u64 = 8 * 1024 * 1024;
/// At most this many bodies are loaded (a queue's message budget, for the same reason).
pub(crate) const LOAD_BUDGET_MESSAGES: u64 = 4096;

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
    /// Live messages, without their bodies (id, size, priority, TTL: 24 bytes, in pages freed as they empty),
    /// as a large store has millions.
    messages: IdMap<Meta>,
    /// Bodies of the rare live records the index cannot locate for a later read (see `index::UNREADABLE_OFFSET`).
    unreadable: HashMap<MsgId, Arc<StoredMessage>>,
    /// The segments listed by the newest checkpoint, and the segment holding it.
    checkpoint: Option<(u64, Vec<u64>)>,
    deleted: BTreeSet<u64>,
    records: u64,
}

/// What a queue needs of a message while its body stays on disk, packed in 16 bytes (the id is the key).
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    /// Per-message deadline in milliseconds since the Unix epoch; `u64::MAX` for none.
    expiration: u64,
    size: u32,
    priority: u8,
}

impl Meta {
    fn of(message: &StoredMessage) -> Self {
        Self {
            expiration: message.expires_at_ms.unwrap_or(u64::MAX),
            size: u32::try_from(message.body.len()).unwrap_or(u32::MAX),
            priority: message.priority,
        }
    }

    /// Appends the message to a recovered queue.
    fn push_to(self, id: MsgId, queue: &mut RecoveredQueue) {
        let expiration = (self.expiration != u64::MAX).then_some(self.expiration);
        queue.push(id, self.size, self.priority, expiration);
    }
}

impl Replay {
    fn forget(&mut self, id: MsgId) {
        self.messages.remove(id);
        self.unreadable.remove(&id);
    }

    fn apply(&mut self, segment: u64, offset: u64, len: u64, record: Record) {
        self.records += 1;
        self.index.grow(segment, len);
        match record {
            Record::Publish(p) => {
                self.unreadable.remove(&p.id);
                if self.index.publish(segment, offset, len, p.id, &p.queues) {
                    self.messages.insert(p.id, Meta::of(&p.message));
                    if self.index.locate(p.id).is_none() {
                        self.unreadable.insert(p.id, Arc::new(p.message));
                    }
                } else {
                    self.messages.remove(p.id);
                }
            }
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

/// Reads the journal in `dir`; see the module docs.
pub(crate) fn recover(fs_arc: Arc<dyn StoreFs>, dir: &Path) -> Result<Outcome, StoreError> {
    let fs = fs_arc.as_ref();
    let started = Instant::now();
    let mut numbers = list_segments(fs, dir)?;
    let mut files = Vec::with_capacity(numbers.len());
    let mut total_bytes = 0;
    for n in &numbers {
        let file = fs.open(&segment::path(dir, *n))?;
        total_bytes += file.len()?;
        files.push(file);
    }
    let mut progress = Progress {
        started,
        last: started,
        total_bytes,
        done_bytes: 0,
        segments: numbers.len(),
    };
    let mut replay = Replay::default();
    let count = numbers.len();
    let mut removed = None;
    for (i, (number, file)) in numbers.iter().copied().zip(files.iter_mut()).enumerate() {
        let last = i + 1 == count;
        match segment::check_header(file.as_ref(), number)? {
            HeaderState::Valid => {}
            HeaderState::Short if last => {
                warn!(segment = %segment::file_name(number), "removing a last segment whose header was never completely written");
                fs.remove(&segment::path(dir, number))?;
                fs.sync_dir(dir)?;
                removed = Some(number);
                continue;
            }
            HeaderState::Short => {
                return Err(StoreError::Corrupt(format!(
                    "{} is shorter than a segment header but is not the last segment",
                    segment::file_name(number)
                )));
            }
        }
        replay.index.add_segment(number, HEADER_LEN);
        let size = replay_segment(&mut replay, file.as_mut(), number, last, i, &mut progress)?;
        progress.done_bytes += size;
    }
    if let Some(n) = removed {
        numbers.retain(|x| *x != n);
    }
    check_missing(&replay, &numbers)?;

    let Replay {
        index,
        definitions,
        messages,
        mut unreadable,
        records,
        ..
    } = replay;
    let reader = RecordReader::new(fs_arc.clone(), dir);
    let index = Mutex::new(index);
    let mut budget = LOAD_BUDGET;
    let mut loaded = 0u64;
    // Group by interned queue number (no key clones per message), into lists sized exactly: a large store makes
    // these lists large, and growing them by doubling would hold up to twice the memory. The replay's map is
    // drained page by page as the lists fill, so the two are never both whole.
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    {
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        for (id, _) in messages.iter() {
            for n in index.live_queue_numbers(id) {
                *sizes.entry(*n).or_default() += 1;
            }
        }
    }
    let mut per_number: HashMap<u32, RecoveredQueue> = sizes
        .into_iter()
        .map(|(n, len)| (n, RecoveredQueue::with_capacity(len)))
        .collect();
    for (id, meta) in messages.drain() {
        let mut body = unreadable.remove(&id);
        if body.is_none() && u64::from(meta.size) <= budget && loaded < LOAD_BUDGET_MESSAGES {
            let loc = index.lock().unwrap_or_else(|e| e.into_inner()).locate(id);
            if let Some(loc) = loc {
                body = Some(Arc::new(reader.read(id, loc, &index)?));
                budget -= u64::from(meta.size);
                loaded += 1;
            }
        }
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        for n in index.live_queue_numbers(id) {
            if let Some(queue) = per_number.get_mut(n) {
                meta.push_to(id, queue);
                if let Some(body) = &body {
                    queue.bodies.insert(id, body.clone());
                }
            }
        }
    }
    let per_queue: HashMap<QueueKey, RecoveredQueue> = {
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        per_number
            .into_iter()
            .filter_map(|(n, list)| Some((index.queue_key(n)?.clone(), list)))
            .collect()
    };
    let index = index.into_inner().unwrap_or_else(|e| e.into_inner());
    info!(
        segments = numbers.len(),
        records,
        messages = index.live_messages(),
        loaded,
        index_mb = index.heap_bytes() as f64 / 1e6,
        definitions = definitions.len(),
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

/// Replays one segment; returns its size after any truncation.
fn replay_segment(
    replay: &mut Replay,
    file: &mut dyn SegmentFile,
    number: u64,
    last: bool,
    segment_index: usize,
    progress: &mut Progress,
) -> Result<u64, StoreError> {
    let name = segment::file_name(number);
    let (bad, file_len) = {
        let mut reader = SegmentReader::new(&*file)?;
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
                    let rec = record::decode(payload).map_err(|e| {
                        StoreError::Corrupt(format!(
                            "{name} offset {offset}: record has a valid CRC but does not decode: {e}"
                        ))
                    })?;
                    replay.apply(number, offset, len, rec);
                    progress.tick(segment_index, offset + len, replay.records);
                }
            }
        };
        (bad, file_len)
    };
    let Some((offset, reason)) = bad else {
        return Ok(file_len);
    };
    if !last {
        return Err(StoreError::Corrupt(format!(
            "{name} is damaged at offset {offset} ({reason}); it is not the last segment, so this is not a torn \
             write from a crash"
        )));
    }
    warn!(
        segment = %name,
        offset,
        bytes_cut = file_len - offset,
        reason = %reason,
        "truncating the torn tail of the journal (records after the last sync, never confirmed)"
    );
    file.truncate(offset)?;
    file.sync_data()?;
    Ok(offset)
}

/// Every segment the newest checkpoint says existed must still be there unless a deletion was recorded.
fn check_missing(replay: &Replay, present: &[u64]) -> Result<(), StoreError> {
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
    Err(StoreError::Corrupt(format!(
        "journal segment(s) {} missing: {} lists them as live and no deletion was recorded; restore them or \
         move the data directory aside",
        missing.join(", "),
        segment::file_name(*holder)
    )))
}
