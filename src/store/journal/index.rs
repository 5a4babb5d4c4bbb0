//! What the journal knows about its own contents, kept in memory: which messages are live in which queues and
//! which segment holds each one's current copy, per-segment live bytes and deletion dependencies, the folded
//! durable definitions, and the next free message id.
//!
//! Recovery builds it by replaying every record; the writer then keeps it current as it appends. Both go
//! through the same methods ([`Index::publish`], [`Index::settle`], [`Index::define`], [`Index::checkpoint`]),
//! so the writer's view after a restart is the one it had before.
//!
//! Deletion order matters. A settle (or a queue deletion, or a compacted copy) in segment `k` that retires a
//! message whose publish record sits in an older segment `j` is a tombstone: if `k` were deleted while `j`
//! still exists, the message would come back at the next recovery. So each segment records the older segments
//! its tombstones point into (`depends_on`), and a segment is deleted only when it has no live messages and
//! none of those segments exists any more. Compaction of old, mostly dead segments (rewriting their few live
//! messages into the head) is what eventually frees such chains; [`Index::compaction_candidate`] picks one.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

use crate::store::idmap::IdMap;
use crate::store::{Binding, Definition, DestinationKind, MsgId, QueueKey};

/// Per-segment accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    /// Bytes in the file (header included).
    pub(crate) size: u64,
    /// Bytes of publish records whose message is live with its current copy here.
    pub(crate) live_bytes: u64,
    /// Number of such messages.
    pub(crate) live_msgs: u64,
    /// Older segments holding publish records that tombstones in this segment retire.
    pub(crate) depends_on: BTreeSet<u64>,
}

/// Per-segment stats in segment order: a sorted vector (a journal has hundreds of segments, not millions) in
/// which the segment used last is checked before a binary search, since nearly every record goes to the head.
/// (A B-tree walk for each of the two look-ups per record was a tenth of recovery's time.)
#[derive(Debug, Default)]
struct Segments {
    list: Vec<(u64, SegmentStats)>,
    /// Where the segment used last sits in `list` (a hint: checked before use).
    hint: Cell<usize>,
}

impl Segments {
    /// Where `segment` sits in the list (`Ok`), or where it would go (`Err`).
    fn find(&self, segment: u64) -> Result<usize, usize> {
        let hint = self.hint.get();
        if self.list.get(hint).is_some_and(|(n, _)| *n == segment) {
            return Ok(hint);
        }
        let found = self.list.binary_search_by_key(&segment, |(n, _)| *n);
        if let Ok(at) = found {
            self.hint.set(at);
        }
        found
    }

    /// The stats of `segment`, added (empty) if it was not accounted for.
    fn or_default(&mut self, segment: u64) -> &mut SegmentStats {
        let at = self.find(segment).unwrap_or_else(|at| {
            self.list.insert(at, (segment, SegmentStats::default()));
            self.hint.set(at);
            at
        });
        &mut self.list[at].1
    }

    fn get(&self, segment: &u64) -> Option<&SegmentStats> {
        let at = self.find(*segment).ok()?;
        Some(&self.list[at].1)
    }

    fn get_mut(&mut self, segment: &u64) -> Option<&mut SegmentStats> {
        let at = self.find(*segment).ok()?;
        Some(&mut self.list[at].1)
    }

    fn remove(&mut self, segment: &u64) {
        if let Ok(at) = self.find(*segment) {
            self.list.remove(at);
        }
    }

    fn contains_key(&self, segment: &u64) -> bool {
        self.find(*segment).is_ok()
    }

    fn keys(&self) -> impl Iterator<Item = &u64> + '_ {
        self.list.iter().map(|(n, _)| n)
    }

    fn iter(&self) -> impl Iterator<Item = (&u64, &SegmentStats)> + '_ {
        self.list.iter().map(|(n, s)| (n, s))
    }
}

/// A live message: where its current copy is (segment, byte offset of its framed record, record length) and
/// which queues still hold it. 16 bytes, no allocation of its own for a message in one queue: a backlog of
/// millions of messages is millions of these (in an [`IdMap`], so about 16 bytes each in all).
#[derive(Debug, Clone, Copy, Default)]
struct Live {
    /// Segment numbers fit in 32 bits: the writer refuses to create segment `u32::MAX + 1` (see
    /// `segment::MAX_NUMBER`).
    segment: u32,
    offset: u32,
    len: u32,
    queues: QueuesRef,
}

/// The queues holding a live message (never empty): one interned queue number inline, the common case, or
/// with [`MANY`] set the index of a sorted list in [`Index::lists`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct QueuesRef(u32);

const MANY: u32 = 1 << 31;

/// The multi-queue lists of messages routed to several durable queues, in a slab with a free list.
#[derive(Debug, Default)]
struct Lists {
    slots: Vec<Vec<u32>>,
    free: Vec<u32>,
}

impl Lists {
    /// A reference for a sorted, deduplicated list; `None` for an empty one.
    fn make(&mut self, mut sorted: Vec<u32>) -> Option<QueuesRef> {
        match sorted.len() {
            0 => None,
            1 => sorted.pop().map(QueuesRef),
            _ => {
                let at = match self.free.pop() {
                    Some(at) => {
                        self.slots[at as usize] = sorted;
                        at
                    }
                    None => {
                        self.slots.push(sorted);
                        u32::try_from(self.slots.len() - 1).unwrap_or(MANY - 1)
                    }
                };
                Some(QueuesRef(at | MANY))
            }
        }
    }

    /// The queue numbers behind `r` (borrowed from `r` itself when inline).
    fn get<'a>(&'a self, r: &'a QueuesRef) -> &'a [u32] {
        if r.0 & MANY == 0 {
            return std::slice::from_ref(&r.0);
        }
        self.slots
            .get((r.0 & !MANY) as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Frees the list behind `r` (nothing for an inline one).
    fn release(&mut self, r: QueuesRef) {
        if r.0 & MANY != 0 {
            let at = r.0 & !MANY;
            if let Some(list) = self.slots.get_mut(at as usize) {
                *list = Vec::new();
                self.free.push(at);
            }
        }
    }

    /// The list behind `r` without the queues `gone` accepts, as a reference (`r` is released if it
    /// changed); `None` if no queue is left.
    fn without(&mut self, r: QueuesRef, gone: impl Fn(u32) -> bool) -> Option<QueuesRef> {
        if r.0 & MANY == 0 {
            return (!gone(r.0)).then_some(r);
        }
        let list = self.get(&r);
        if !list.iter().any(|q| gone(*q)) {
            return Some(r);
        }
        let rest: Vec<u32> = list.iter().copied().filter(|q| !gone(*q)).collect();
        self.release(r);
        self.make(rest)
    }
}

/// Where the current copy of a live message's publish record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// Offsets are kept in 32 bits; the journal caps its segment size so that every record starts below this.
/// A record recovered from an older, larger segment at a higher offset is marked with it and cannot be read back
/// (it is still recovered, with its body, the slow way: see `recovery`).
pub(crate) const UNREADABLE_OFFSET: u32 = u32::MAX;

/// A segment number as the index keeps it (see [`Live::segment`]). The writer and recovery never let a segment
/// number above `u32::MAX` exist, so the fallback is never taken.
fn segment_u32(segment: u64) -> u32 {
    u32::try_from(segment).unwrap_or(u32::MAX)
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Index {
    queue_ids: HashMap<QueueKey, u32>,
    queue_keys: Vec<QueueKey>,
    messages: IdMap<Live>,
    lists: Lists,
    segments: Segments,
    definitions: Definitions,
    next_id: MsgId,
}

impl Index {
    /// Starts accounting for a segment of `size` bytes (its header and anything already in it).
    pub(crate) fn add_segment(&mut self, segment: u64, size: u64) {
        self.segments.or_default(segment).size = size;
    }

    /// Records that `bytes` were appended to `segment`.
    pub(crate) fn grow(&mut self, segment: u64, bytes: u64) {
        self.segments.or_default(segment).size += bytes;
    }

    /// Forgets a deleted segment.
    pub(crate) fn remove_segment(&mut self, segment: u64) {
        self.segments.remove(&segment);
    }

    /// The segments being accounted for, oldest first.
    pub(crate) fn segment_numbers(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Whether `segment` is being accounted for (exists, or is about to be deleted).
    pub(crate) fn has_segment(&self, segment: u64) -> bool {
        self.segments.contains_key(&segment)
    }

    #[cfg(test)]
    pub(crate) fn segment(&self, segment: u64) -> Option<&SegmentStats> {
        self.segments.get(&segment)
    }

    /// The first message id no record has used.
    pub(crate) fn next_id(&self) -> MsgId {
        self.next_id
    }

    /// The folded definitions, in an order that replays to the current state.
    pub(crate) fn definitions(&self) -> Vec<Definition> {
        self.definitions.current()
    }

    /// Number of live messages.
    pub(crate) fn live_messages(&self) -> usize {
        self.messages.len()
    }

    /// Bytes the per-message part of the index holds (what grows with a backlog).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.messages.heap_bytes()
            + self
                .lists
                .slots
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
    }

    fn see_id(&mut self, id: MsgId) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// The number a queue is known by in this index (given one on first sight).
    pub(crate) fn intern(&mut self, q: &QueueKey) -> u32 {
        if let Some(n) = self.queue_ids.get(q) {
            return *n;
        }
        let n = u32::try_from(self.queue_keys.len()).unwrap_or(u32::MAX);
        self.queue_ids.insert(q.clone(), n);
        self.queue_keys.push(q.clone());
        n
    }

    /// The queues still holding a live message, or `None` if it is not live.
    pub(crate) fn live_queues(&self, id: MsgId) -> Option<Vec<QueueKey>> {
        let live = self.messages.get(id)?;
        Some(
            self.lists
                .get(&live.queues)
                .iter()
                .filter_map(|n| self.queue_keys.get(*n as usize).cloned())
                .collect(),
        )
    }

    /// The interned numbers of the queues still holding a live message (empty if it is not live).
    pub(crate) fn live_queue_numbers(&self, id: MsgId) -> &[u32] {
        self.messages
            .get(id)
            .map_or(&[], |l| self.lists.get(&l.queues))
    }

    /// The queue an interned number stands for.
    pub(crate) fn queue_key(&self, n: u32) -> Option<&QueueKey> {
        self.queue_keys.get(n as usize)
    }

    /// The segment holding the current copy of a live message.
    pub(crate) fn location(&self, id: MsgId) -> Option<u64> {
        self.messages.get(id).map(|l| u64::from(l.segment))
    }

    /// Where exactly the current copy of a live message is, if it can be read back.
    pub(crate) fn locate(&self, id: MsgId) -> Option<Location> {
        let live = self.messages.get(id)?;
        (live.offset != UNREADABLE_OFFSET).then_some(Location {
            segment: u64::from(live.segment),
            offset: u64::from(live.offset),
            len: live.len,
        })
    }

    /// Retires the copy of `live` in its segment; `by` is the segment holding the record that retires it.
    fn retire(&mut self, live: &Live, by: u64) {
        let copy_in = u64::from(live.segment);
        if let Some(s) = self.segments.get_mut(&copy_in) {
            s.live_bytes = s.live_bytes.saturating_sub(u64::from(live.len));
            s.live_msgs = s.live_msgs.saturating_sub(1);
        }
        if copy_in != by
            && let Some(s) = self.segments.get_mut(&by)
        {
            s.depends_on.insert(copy_in);
        }
    }

    /// A publish record of `len` bytes at `offset` in `segment`. A second record for a live id is a compacted
    /// copy: it moves the message and narrows its queues to the ones listed. Returns whether the message is live
    /// afterwards.
    pub(crate) fn publish(
        &mut self,
        segment: u64,
        offset: u64,
        len: u64,
        id: MsgId,
        queues: &[QueueKey],
    ) -> bool {
        let interned: Vec<u32> = queues.iter().map(|q| self.intern(q)).collect();
        self.publish_interned(segment, offset, len, id, &interned)
    }

    /// [`Index::publish`] with the queues given by their interned numbers (see [`Index::intern`]); allocates
    /// nothing for a message in one queue (recovery calls this for every live message).
    pub(crate) fn publish_interned(
        &mut self,
        segment: u64,
        offset: u64,
        len: u64,
        id: MsgId,
        interned: &[u32],
    ) -> bool {
        // An id at or past `next_id` has never been seen: nothing to replace (the common case, by far).
        let seen = id < self.next_id;
        self.see_id(id);
        if let Some(old) = seen.then(|| self.messages.remove(id)).flatten() {
            self.retire(&old, segment);
            self.lists.release(old.queues);
        }
        let queues = match interned {
            [] => return false,
            [one] => QueuesRef(*one),
            many => {
                let mut sorted = many.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                match self.lists.make(sorted) {
                    Some(r) => r,
                    None => return false,
                }
            }
        };
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        if let Some(s) = self.segments.get_mut(&segment) {
            s.live_bytes += u64::from(len);
            s.live_msgs += 1;
        }
        self.messages.insert(
            id,
            Live {
                segment: segment_u32(segment),
                offset: u32::try_from(offset).unwrap_or(UNREADABLE_OFFSET),
                len,
                queues,
            },
        );
        true
    }

    /// How many queues have been interned (their numbers are below this).
    pub(crate) fn queue_count(&self) -> usize {
        self.queue_keys.len()
    }

    /// The live messages in id order, with the interned numbers of the queues holding each.
    pub(crate) fn live(&self) -> impl Iterator<Item = (MsgId, &[u32])> + '_ {
        self.messages
            .iter()
            .map(|(id, live)| (id, self.lists.get(&live.queues)))
    }

    /// A settle record in `segment`. Returns `true` when this made the message dead in every queue.
    pub(crate) fn settle(&mut self, segment: u64, queue: &QueueKey, id: MsgId) -> bool {
        self.see_id(id);
        let Some(&q) = self.queue_ids.get(queue) else {
            return false;
        };
        let Some(live) = self.messages.get(id).copied() else {
            return false;
        };
        if !self.lists.get(&live.queues).contains(&q) {
            return false;
        }
        match self.lists.without(live.queues, |n| n == q) {
            Some(rest) => {
                if let Some(l) = self.messages.get_mut(id) {
                    l.queues = rest;
                }
                let copy_in = u64::from(live.segment);
                if copy_in != segment
                    && let Some(s) = self.segments.get_mut(&segment)
                {
                    // The narrowing is a tombstone too: without it the message would come back in this queue.
                    s.depends_on.insert(copy_in);
                }
                false
            }
            None => {
                self.messages.remove(id);
                self.retire(&live, segment);
                true
            }
        }
    }

    /// A definition record in `segment`. Deleting a queue (or its vhost) drops its messages; returns the ids
    /// that became dead.
    pub(crate) fn define(&mut self, segment: u64, def: &Definition) -> Vec<MsgId> {
        self.definitions.apply(def);
        let doomed: Box<dyn Fn(&QueueKey) -> bool> = match def {
            Definition::DeleteQueue { vhost, name } => {
                let key = QueueKey::new(vhost.clone(), name.clone());
                Box::new(move |q| *q == key)
            }
            Definition::DeleteVHost { name } => {
                let vhost = name.clone();
                Box::new(move |q| q.vhost == vhost)
            }
            _ => return Vec::new(),
        };
        let gone: Vec<u32> = self
            .queue_keys
            .iter()
            .enumerate()
            .filter(|(_, q)| doomed(q))
            .filter_map(|(n, _)| u32::try_from(n).ok())
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        let mut touched = Vec::new();
        let mut dead = Vec::new();
        let lists = &mut self.lists;
        for (id, live) in self.messages.iter_mut() {
            if !lists.get(&live.queues).iter().any(|n| gone.contains(n)) {
                continue;
            }
            touched.push(u64::from(live.segment));
            match lists.without(live.queues, |n| gone.contains(&n)) {
                Some(rest) => live.queues = rest,
                None => dead.push(id),
            }
        }
        for id in &dead {
            if let Some(old) = self.messages.remove(*id) {
                self.retire(&old, segment);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        if let Some(s) = self.segments.get_mut(&segment) {
            s.depends_on
                .extend(touched.into_iter().filter(|t| *t != segment));
        }
        dead
    }

    /// A checkpoint record: the definitions in force when its segment was started.
    pub(crate) fn checkpoint(&mut self, next_id: MsgId, definitions: &[Definition]) {
        self.next_id = self.next_id.max(next_id);
        self.definitions = Definitions::default();
        for d in definitions {
            self.definitions.apply(d);
        }
    }

    /// Segments other than `head` that can be deleted now, transitively: a segment with no live messages whose
    /// tombstones point only into segments that are gone or deleted with it (before it: the list is in an order
    /// in which every segment comes after the segments its tombstones point into, the order the files must be
    /// removed in). Kahn's topological sort, linear in segments and dependencies, so a long chain goes in one
    /// pass.
    pub(crate) fn deletable(&self, head: u64) -> Vec<u64> {
        let candidate =
            |n: &u64| *n != head && self.segments.get(n).is_some_and(|s| s.live_msgs == 0);
        let mut waiting: HashMap<u64, usize> = HashMap::new();
        let mut dependents: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut ready = Vec::new();
        for (n, s) in self.segments.iter().filter(|(n, _)| candidate(n)) {
            let deps: Vec<u64> = s
                .depends_on
                .iter()
                .copied()
                .filter(|d| self.segments.contains_key(d))
                .collect();
            if deps.iter().any(|d| !candidate(d)) {
                continue;
            }
            if deps.is_empty() {
                ready.push(*n);
            }
            waiting.insert(*n, deps.len());
            for d in deps {
                dependents.entry(d).or_default().push(*n);
            }
        }
        let mut order = Vec::new();
        while let Some(n) = ready.pop() {
            order.push(n);
            for dependent in dependents.get(&n).into_iter().flatten() {
                if let Some(w) = waiting.get_mut(dependent) {
                    *w -= 1;
                    if *w == 0 {
                        ready.push(*dependent);
                    }
                }
            }
        }
        order
    }

    /// Bytes of live messages whose current copy is in `segment`.
    pub(crate) fn live_bytes(&self, segment: u64) -> u64 {
        self.segments.get(&segment).map_or(0, |s| s.live_bytes)
    }

    /// The sealed segment most worth compacting, if any: the oldest of the segments `eligible` accepts (the
    /// writer leaves recently sealed ones alone, their messages are usually about to be consumed) whose live
    /// bytes are less than half of what compacting it frees (its own dead bytes plus the dead segments that its
    /// deletion unpins).
    pub(crate) fn compaction_candidate(
        &self,
        head: u64,
        eligible: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let mut pinned: HashMap<u64, u64> = HashMap::new();
        for (n, s) in self.segments.iter() {
            if *n == head || s.live_msgs != 0 {
                continue;
            }
            for d in s
                .depends_on
                .iter()
                .filter(|d| self.segments.contains_key(d))
            {
                *pinned.entry(*d).or_default() += s.size;
            }
        }
        let mut sealed = self
            .segments
            .keys()
            .copied()
            .filter(|n| *n != head && eligible(*n));
        sealed.find(|n| {
            let Some(s) = self.segments.get(n) else {
                return false;
            };
            let frees = s.size.saturating_sub(s.live_bytes) + pinned.get(n).copied().unwrap_or(0);
            s.live_msgs > 0 && s.live_bytes.saturating_mul(2) < frees
        })
    }
}

/// Identity of a definition, for folding: a later definition with the same key replaces an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DefKey {
    VHost(String),
    User(String),
    Permission {
        user: String,
        vhost: String,
    },
    Exchange {
        vhost: String,
        name: String,
    },
    Queue {
        vhost: String,
        name: String,
    },
    Binding {
        vhost: String,
        source: String,
        destination: String,
        to_exchange: bool,
        key: String,
        args: Vec<u8>,
    },
    Retained {
        vhost: String,
        key: String,
    },
}

impl DefKey {
    fn vhost(&self) -> Option<&str> {
        match self {
            DefKey::VHost(v)
            | DefKey::Permission { vhost: v, .. }
            | DefKey::Exchange { vhost: v, .. }
            | DefKey::Queue { vhost: v, .. }
            | DefKey::Binding { vhost: v, .. }
            | DefKey::Retained { vhost: v, .. } => Some(v),
            DefKey::User(_) => None,
        }
    }
}

fn binding_key(b: &Binding) -> DefKey {
    let mut raw = Vec::with_capacity(1 + b.arguments.bytes.len());
    raw.push(u8::from(
        b.arguments.format == crate::store::Format::Format1,
    ));
    raw.extend_from_slice(&b.arguments.bytes);
    DefKey::Binding {
        vhost: b.vhost.clone(),
        source: b.source.clone(),
        destination: b.destination.clone(),
        to_exchange: b.destination_kind == DestinationKind::Exchange,
        key: b.routing_key.clone(),
        args: raw,
    }
}

/// The durable definitions in force, folded from a sequence of changes with RabbitMQ's cascades (deleting a
/// vhost removes everything in it, deleting a user its permissions, deleting an exchange or queue the bindings
/// that name it). Entries keep the position of their first declaration, so replaying [`Definitions::current`]
/// declares exchanges and queues before the bindings that need them.
#[derive(Debug, Default)]
struct Definitions {
    entries: Vec<Option<(DefKey, Definition)>>,
    positions: HashMap<DefKey, usize>,
    removed: usize,
}

impl Definitions {
    fn current(&self) -> Vec<Definition> {
        self.entries
            .iter()
            .flatten()
            .map(|(_, d)| d.clone())
            .collect()
    }

    fn upsert(&mut self, key: DefKey, def: &Definition) {
        match self.positions.get(&key) {
            Some(i) => self.entries[*i] = Some((key, def.clone())),
            None => {
                self.positions.insert(key.clone(), self.entries.len());
                self.entries.push(Some((key, def.clone())));
            }
        }
    }

    fn remove_where(&mut self, doomed: impl Fn(&DefKey) -> bool) {
        for slot in &mut self.entries {
            if let Some((key, _)) = slot
                && doomed(key)
            {
                self.positions.remove(key);
                *slot = None;
                self.removed += 1;
            }
        }
        if self.removed > 64 && self.removed * 2 > self.entries.len() {
            self.entries.retain(Option::is_some);
            self.removed = 0;
            self.positions = self
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|(k, _)| (k.clone(), i)))
                .collect();
        }
    }

    fn apply(&mut self, def: &Definition) {
        match def {
            Definition::VHost { name } => self.upsert(DefKey::VHost(name.clone()), def),
            Definition::DeleteVHost { name } => {
                self.remove_where(|k| k.vhost() == Some(name.as_str()))
            }
            Definition::User { name, .. } => self.upsert(DefKey::User(name.clone()), def),
            Definition::DeleteUser { name } => self.remove_where(|k| match k {
                DefKey::User(u) | DefKey::Permission { user: u, .. } => u == name,
                _ => false,
            }),
            Definition::Permission { user, vhost, .. } => self.upsert(
                DefKey::Permission {
                    user: user.clone(),
                    vhost: vhost.clone(),
                },
                def,
            ),
            Definition::DeletePermission { user, vhost } => {
                let key = DefKey::Permission {
                    user: user.clone(),
                    vhost: vhost.clone(),
                };
                self.remove_where(|k| *k == key)
            }
            Definition::Exchange { vhost, name, .. } => self.upsert(
                DefKey::Exchange {
                    vhost: vhost.clone(),
                    name: name.clone(),
                },
                def,
            ),
            Definition::DeleteExchange { vhost, name } => self.remove_where(|k| match k {
                DefKey::Exchange { vhost: v, name: n } => v == vhost && n == name,
                DefKey::Binding {
                    vhost: v,
                    source,
                    destination,
                    to_exchange,
                    ..
                } => v == vhost && (source == name || (*to_exchange && destination == name)),
                _ => false,
            }),
            Definition::Queue { vhost, name, .. } => self.upsert(
                DefKey::Queue {
                    vhost: vhost.clone(),
                    name: name.clone(),
                },
                def,
            ),
            Definition::DeleteQueue { vhost, name } => self.remove_where(|k| match k {
                DefKey::Queue { vhost: v, name: n } => v == vhost && n == name,
                DefKey::Binding {
                    vhost: v,
                    destination,
                    to_exchange,
                    ..
                } => v == vhost && !*to_exchange && destination == name,
                _ => false,
            }),
            Definition::Bind(b) => self.upsert(binding_key(b), def),
            Definition::Unbind(b) => {
                let key = binding_key(b);
                self.remove_where(|k| *k == key)
            }
            Definition::Retained { vhost, key, .. } => self.upsert(
                DefKey::Retained {
                    vhost: vhost.clone(),
                    key: key.clone(),
                },
                def,
            ),
            Definition::DeleteRetained { vhost, key } => {
                let gone = DefKey::Retained {
                    vhost: vhost.clone(),
                    key: key.clone(),
                };
                self.remove_where(|k| *k == gone)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> QueueKey {
        QueueKey::new("/", name)
    }

    #[test]
    fn settle_in_a_later_segment_pins_it_behind_the_publish_segment() {
        let mut ix = Index::default();
        ix.add_segment(1, 100);
        ix.add_segment(2, 100);
        ix.add_segment(3, 16);
        ix.publish(1, 0, 40, 1, &[q("a")]);
        ix.publish(1, 0, 40, 2, &[q("a")]);
        ix.settle(2, &q("a"), 1);
        assert_eq!(
            ix.segment(1).map(|s| (s.live_msgs, s.live_bytes)),
            Some((1, 40))
        );
        // Segment 2 has no live messages but its tombstone points into segment 1.
        assert!(ix.deletable(3).is_empty());
        // Compact message 2 into the head: segment 1 empties, and segment 2 goes with it, after it.
        ix.publish(3, 0, 40, 2, &[q("a")]);
        assert_eq!(ix.deletable(3), vec![1, 2]);
    }

    #[test]
    fn a_long_dependency_chain_is_deletable_in_one_pass_in_removal_order() {
        let mut ix = Index::default();
        let n = 123;
        for s in 1..=n + 1 {
            ix.add_segment(s, 100);
        }
        // Segment s holds message s and the settle of message s - 1: each segment pins the next one, and
        // message 0 in segment 1 pins them all.
        ix.publish(1, 0, 10, 0, &[q("a")]);
        for s in 1..=n {
            ix.publish(s, 0, 10, s, &[q("a")]);
            if s > 1 {
                ix.settle(s, &q("a"), s - 1);
            }
        }
        ix.settle(n + 1, &q("a"), n);
        assert!(ix.deletable(n + 1).is_empty(), "message 0 is live");
        ix.settle(n + 1, &q("a"), 0);
        assert_eq!(ix.deletable(n + 1), (1..=n).collect::<Vec<_>>());
        // A segment whose tombstone points into a live segment is not deletable, nor what depends on it.
        let mut ix = Index::default();
        for s in 1..=4 {
            ix.add_segment(s, 100);
        }
        ix.publish(1, 0, 10, 1, &[q("a")]);
        ix.publish(1, 0, 10, 2, &[q("a")]);
        ix.settle(2, &q("a"), 2);
        ix.publish(2, 0, 10, 3, &[q("a")]);
        ix.settle(3, &q("a"), 3);
        assert!(ix.deletable(4).is_empty());
    }

    #[test]
    fn a_live_message_costs_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Live>(), 16);
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        for id in 0..1_000_000 {
            ix.publish(1, 16 + id * 100, 100, id, &[q("a")]);
        }
        let per = ix.heap_bytes() as f64 / 1e6;
        assert!(per < 17.0, "{per} bytes per live message");
    }

    #[test]
    fn a_message_in_several_queues_is_live_until_settled_in_each() {
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        ix.publish(1, 16, 10, 7, &[q("a"), q("b"), q("c")]);
        assert!(!ix.settle(1, &q("b"), 7));
        assert!(!ix.settle(1, &q("b"), 7), "settling twice changes nothing");
        assert_eq!(ix.live_queues(7), Some(vec![q("a"), q("c")]));
        assert!(!ix.settle(1, &q("a"), 7));
        assert_eq!(
            ix.locate(7),
            Some(Location {
                segment: 1,
                offset: 16,
                len: 10
            })
        );
        assert!(ix.settle(1, &q("c"), 7));
        assert_eq!(ix.live_queues(7), None);
    }

    #[test]
    fn delete_queue_drops_its_messages_only() {
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        ix.publish(1, 0, 10, 1, &[q("a"), q("b")]);
        ix.publish(1, 0, 10, 2, &[q("a")]);
        let dead = ix.define(
            1,
            &Definition::DeleteQueue {
                vhost: "/".into(),
                name: "a".into(),
            },
        );
        assert_eq!(dead, vec![2]);
        assert_eq!(ix.live_queues(1), Some(vec![q("b")]));
        assert_eq!(ix.next_id(), 3);
    }

    #[test]
    fn definitions_fold_with_cascades_and_keep_declaration_order() {
        let mut ix = Index::default();
        let t = crate::store::Opaque::default();
        let bind = |dest: &str| {
            Definition::Bind(Binding {
                vhost: "/".into(),
                source: "e".into(),
                destination: dest.into(),
                destination_kind: DestinationKind::Queue,
                routing_key: "k".into(),
                arguments: t.clone(),
            })
        };
        let ex = Definition::Exchange {
            vhost: "/".into(),
            name: "e".into(),
            kind: "direct".into(),
            auto_delete: false,
            internal: false,
            arguments: t.clone(),
        };
        let queue = |n: &str| Definition::Queue {
            vhost: "/".into(),
            name: n.into(),
            auto_delete: false,
            arguments: t.clone(),
        };
        for d in [
            ex.clone(),
            queue("a"),
            queue("b"),
            bind("a"),
            bind("b"),
            bind("b"),
        ] {
            ix.define(1, &d);
        }
        ix.define(
            1,
            &Definition::DeleteQueue {
                vhost: "/".into(),
                name: "a".into(),
            },
        );
        assert_eq!(ix.definitions(), vec![ex.clone(), queue("b"), bind("b")]);
        ix.define(
            1,
            &Definition::DeleteExchange {
                vhost: "/".into(),
                name: "e".into(),
            },
        );
        assert_eq!(ix.definitions(), vec![queue("b")]);
        ix.define(1, &Definition::DeleteVHost { name: "/".into() });
        assert!(ix.definitions().is_empty());
    }

    #[test]
    fn compaction_prefers_old_mostly_dead_segments() {
        let mut ix = Index::default();
        for s in 1..=5 {
            ix.add_segment(s, 1000);
        }
        ix.publish(1, 0, 10, 1, &[q("a")]); // 1% live: candidate
        ix.publish(2, 0, 900, 2, &[q("a")]); // 90% live: not worth it
        ix.publish(4, 0, 10, 3, &[q("a")]); // too recent
        let old = |n: u64| n < 4;
        assert_eq!(ix.compaction_candidate(5, old), Some(1));
        ix.publish(5, 0, 10, 1, &[q("a")]);
        assert_eq!(ix.compaction_candidate(5, old), None);
    }
}
